#!/usr/bin/env bash
# SIGKILL the repository in the middle of a backup, restart it: no partial
# backup is listed, verify is clean, no temporary file is left. Then
# SIGKILL the agent mid-backup: the same, and the server keeps serving.
# Format 2 (the default): nothing of the killed backups stays (their packs
# were in tmp/), so the next backup sends every block again. Format 1
# (REPO_FORMAT=1, integration.crash_format1): the blocks stored before
# the kill stay, and the next backup sends only the rest.
source "$(dirname "$0")/lib.sh"
format=${REPO_FORMAT:-2}

make_certs
start_repo

mkimage create "$T/small.img" $((4 * 1024 * 1024)) --seed 1
backup_json "$T/small.img"
[[ $(backup_count) == 1 ]] || fail "baseline backup missing"

# Random data at zstd's slowest level: a backup that takes seconds, long
# enough to be killed in the middle without any sleep in the product.
head -c $((96 * 1024 * 1024)) /dev/urandom >"$T/big.img"
if [[ $format == 1 ]]; then
  blocks_stored() { find "$T/repo/blocks" -type f | wc -l; }
  # progress: block files appear
  written() { blocks_stored; }
else
  blocks_stored() { find "$T/repo/packs" -type f -name '*.pack' | wc -l; }
  # progress: MiB written into the session's packs in tmp/
  written() { echo $(( $(du -sb "$T/repo/tmp" | cut -f1) / 1048576 + before )); }
fi
before=$(blocks_stored)

note "kill -9 the repository mid-backup"
"$AGENT" backup --config "$T/agent.conf" --source "$T/big.img" --quiet \
  --compression-level 19 --json >"$T/killed.json" 2>"$T/killed.err" &
agent=$!
for _ in $(seq 1 600); do
  [[ $(written) -ge $((before + 8)) ]] && break
  sleep 0.05
done
[[ $(written) -ge $((before + 8)) ]] || fail "backup made no progress"
kill9_repo
if wait "$agent"; then fail "agent reported success after the repository died"; fi
note "agent said: $(cat "$T/killed.err")"

start_repo
stored_mid=$(( $(blocks_stored) - before ))
if [[ $format == 1 ]]; then
  [[ "$stored_mid" -lt 96 ]] || fail "the whole backup got through before the kill"
else
  [[ "$stored_mid" == 0 ]] || fail "the killed backup left $stored_mid packs in packs/"
fi
[[ -z "$(ls -A "$T/repo/tmp")" ]] || fail "temporary files survived the restart: $(ls "$T/repo/tmp")"
[[ $(backup_count) == 1 ]] || fail "a partial backup is listed"
"$REPO" verify --root "$T/repo" >"$T/verify.out" || { cat "$T/verify.out"; fail "verify after crash"; }

note "the next backup sends only what was missing"
backup_json "$T/big.img"
sent=$(json "$T/last.json" 'j["disks"][0]["blocks_sent"]')
if [[ $format == 1 ]]; then
  [[ "$sent" -eq $((96 - stored_mid)) ]] || fail "sent $sent blocks, expected $((96 - stored_mid)) (stored before the kill: $stored_mid)"
else
  [[ "$sent" -eq 96 ]] || fail "sent $sent blocks, expected all 96 (nothing of the killed backup stays)"
fi
id=$(json "$T/last.json" 'j["backup_id"]')
"$FERRY" --config "$T/agent.conf" restore "$id" --disk 0 --output "$T/r.img"
same_file "$T/big.img" "$T/r.img"

note "kill -9 the agent mid-backup"
head -c $((64 * 1024 * 1024)) /dev/urandom >"$T/big2.img"
before=$(blocks_stored)
"$AGENT" backup --config "$T/agent.conf" --source "$T/big2.img" --quiet \
  --compression-level 19 >/dev/null 2>&1 &
agent=$!
for _ in $(seq 1 600); do
  [[ $(written) -ge $((before + 4)) ]] && break
  sleep 0.05
done
kill -9 "$agent"; wait "$agent" 2>/dev/null || true
# The server notices the dropped connection and abandons the session.
for _ in $(seq 1 100); do
  [[ -z "$(ls -A "$T/repo/tmp")" ]] && break
  sleep 0.05
done
[[ -z "$(ls -A "$T/repo/tmp")" ]] || fail "abandoned session left temporary files: $(ls "$T/repo/tmp")"
[[ $(backup_count) == 2 ]] || fail "a partial backup is listed after the agent died"
if [[ $format == 2 ]]; then
  [[ $(blocks_stored) == "$before" ]] || fail "the abandoned backup's packs stayed"
fi
kill -0 "$REPO_PID" || fail "ferry-repo died with the agent"
backup_json "$T/small.img"
[[ $(backup_count) == 3 ]] || fail "the server does not serve after the agent died"
"$REPO" verify --root "$T/repo" >/dev/null || fail "verify after agent crash"
echo "crash: ok"
