#!/usr/bin/env bash
# A repository (format 2) on a 24 MiB file system: a 40 MiB backup fails
# cleanly, the error the agent gets says the repository is out of space,
# what it holds and what frees space; the failed backup's packs are gone
# at once, so the next, smaller backup fits without any gc. Needs root
# for the small tmpfs (skipped, 77, otherwise).
source "$(dirname "$0")/lib.sh"
[[ $(id -u) == 0 ]] || { echo "no_space: needs root to mount a small tmpfs"; exit 77; }

make_certs
mkdir "$T/repo"
mount -t tmpfs -o size=24m,mode=0700 ferry-test "$T/repo" || fail "cannot mount a small tmpfs"
CLEANUP_CMDS+=("umount -l '$T/repo'")
"$REPO" init --root "$T/repo" >/dev/null
start_repo
head -c $((40 * 1048576)) /dev/urandom >"$T/big.img"
if "$AGENT" backup --config "$T/agent.conf" --source "$T/big.img" --quiet >"$T/ns.out" 2>"$T/ns.err"; then
  fail "a 40 MiB backup fit in 24 MiB"
fi
grep -q "out of space" "$T/ns.err" || fail "no out-of-space explanation: $(cat "$T/ns.err")"
grep -q "ferry-repo gc" "$T/ns.err" || fail "the agent was not told what frees space: $(cat "$T/ns.err")"
for _ in $(seq 1 100); do [[ -z "$(ls -A "$T/repo/tmp")" ]] && break; sleep 0.05; done
[[ -z "$(ls -A "$T/repo/tmp")" ]] || fail "the failed backup left $(ls "$T/repo/tmp")"
[[ $(find "$T/repo/packs" -name '*.pack' | wc -l) == 0 ]] || fail "the failed backup left packs"
# The space came back: a smaller backup fits now, without any gc.
head -c $((8 * 1048576)) /dev/urandom >"$T/small.img"
backup_json "$T/small.img"
"$REPO" verify --root "$T/repo" >/dev/null || fail "verify after running out of space"
echo "no_space: ok"
