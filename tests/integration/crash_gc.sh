#!/usr/bin/env bash
# kill -9 of `ferry-repo gc` (deleting and repacking packs) and of
# `ferry-repo migrate` (format 1 to 2) at several moments, each on a fresh
# copy of the same repository: whatever moment the kill hits, verify finds
# every block of every kept backup intact, the command run again completes,
# and the backups restore byte for byte. The moments are delays after the
# start, not hooks in the code: the test checks that at least one kill cut
# a run short (so it cannot pass without testing a crash), and runs enough
# data that the kills land in the middle of the copying. A kill, not a
# power cut: what was written stays in the page cache, so this checks the
# order of renames and deletions, not the fsyncs (docs/FORMAT.md argues
# those).
source "$(dirname "$0")/lib.sh"

make_certs

# repository FORMAT: two backups of a 96 MiB image (three packs of 32
# blocks in format 2), the second after 19 blocks of each 32 changed, then
# the first pruned: in format 2 each old pack is 13/32 live, so gc repacks
# all three (39 MiB copied). Leaves the repository stopped, $b2 its kept
# backup and $T/a.img its content.
repository() {
  rm -rf "$T/repo"
  REPO_FORMAT=$1 start_repo
  head -c $((96 * 1048576)) /dev/urandom >"$T/a.img"
  backup_json "$T/a.img"
  sleep 1.1 # ids order backups by the second they began
  for p in 0 32 64; do
    head -c $((19 * 1048576)) /dev/urandom | dd of="$T/a.img" bs=1M seek=$p conv=notrunc status=none
  done
  backup_json "$T/a.img"
  b2=$(json "$T/last.json" 'j["backup_id"]')
  stop_repo
}

# crash_runs NAME "DELAYS" CMD...: for each delay, a fresh copy of
# $T/pristine, CMD killed -9 after the delay, then verify, CMD again,
# verify.
crash_runs() {
  local name=$1 delays=$2 cut=0 d pid
  shift 2
  for d in $delays; do
    rm -rf "$T/repo"
    cp -a "$T/pristine" "$T/repo"
    "$REPO" "$@" --root "$T/repo" >"$T/run.out" 2>&1 &
    pid=$!
    sleep "$d"
    if kill -9 "$pid" 2>/dev/null; then
      cut=$((cut + 1))
      echo "$name killed after ${d}s"
    fi
    wait "$pid" 2>/dev/null || true
    # The format may be either side of migrate's switch: verify reads both.
    "$REPO" verify --root "$T/repo" >"$T/v.out" 2>&1 || { cat "$T/run.out" "$T/v.out"; fail "$name killed after ${d}s: verify"; }
    "$REPO" "$@" --root "$T/repo" >"$T/again.out" 2>&1 || { cat "$T/again.out"; fail "$name killed after ${d}s: it does not complete again"; }
    "$REPO" verify --root "$T/repo" >"$T/v.out" 2>&1 || { cat "$T/v.out"; fail "$name killed after ${d}s: verify after the second run"; }
    [[ $(head -1 "$T/repo/config") == "ferry-repository 2" ]] || fail "$name: format $(head -1 "$T/repo/config")"
  done
  [[ $cut -gt 0 ]] || fail "no kill cut a $name short: the machine outran every delay ($delays)"
  # The last copy serves its backup exactly, and gc left nothing to do.
  start_repo
  "$FERRY" --config "$T/agent.conf" restore "$b2" --disk 0 --output "$T/r.img" --force
  same_file "$T/a.img" "$T/r.img"
  stop_repo
}

note "gc killed while it deletes and repacks packs"
repository 2
"$REPO" prune --root "$T/repo" --keep-last 1 >/dev/null
"$REPO" gc --root "$T/repo" --dry-run | grep -q "repack 3 " || fail "gc would not repack the three packs"
cp -a "$T/repo" "$T/pristine"
# gc takes about a tenth of a second here: kills close together.
crash_runs gc "0.01 0.02 0.03 0.045 0.06 0.075 0.09 0.11 0.14 0.2" gc
"$REPO" gc --root "$T/repo" --dry-run | grep -q "would delete 0 without a referenced block and repack 0 " || fail "gc left work"
rm -rf "$T/pristine"

note "migrate killed while it copies block files into packs"
repository 1
cp -a "$T/repo" "$T/pristine"
crash_runs migrate "0.02 0.08 0.15 0.25 0.4 0.6 0.9" migrate
echo "crash_gc: ok"
