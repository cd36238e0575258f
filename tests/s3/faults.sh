#!/usr/bin/env bash
# A repository in a radosgw bucket when the object store fails as object
# stores do. Between ferry-repo and the real radosgw sits
# tests/s3/faultproxy.py (the emulated part: it forwards byte for byte and
# injects 503 SlowDown, connection resets mid-upload, drops), and radosgw
# itself is killed with SIGKILL in the middle of a backup and restarted.
# Each time: a backup either commits complete or fails with the store's
# error and leaves no listed backup behind; the next backup and every
# restore are exact; gc then clears what a failed backup left in the bucket.
# ferry-repo itself killed -9 between uploads and commit: the same.
source "$(dirname "$0")/../integration/lib.sh"
S3DIR=$(cd "$(dirname "$0")" && pwd)
: "${CEPH_ENV:?CEPH_ENV must name the env file of tests/s3/ceph-up}"
: "${CEPH_DIR:?CEPH_DIR must name the directory of tests/s3/ceph-up}"
set -a
# shellcheck disable=SC1090
source "$CEPH_ENV"
set +a
ADMIN=(python3 "$S3DIR/s3admin.py")
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
B=ferry-faults-$RANDOM$RANDOM
CLEANUP_CMDS+=('"${ADMIN[@]}" rb "$B" >/dev/null 2>&1'
  '[[ -n "${PROXY_PID:-}" ]] && kill "$PROXY_PID" 2>/dev/null; wait "${PROXY_PID:-}" 2>/dev/null'
  # A failed test must not leave radosgw down for the next one.
  '"$S3DIR/ceph-rgw-restart" --start "$CEPH_DIR" >/dev/null 2>&1')

make_certs
printf 'access_key_id=%s\nsecret_access_key=%s\n' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >"$T/creds"
chmod 600 "$T/creds"
"${ADMIN[@]}" mb "$B" >/dev/null

python3 "$S3DIR/faultproxy.py" --upstream "$S3_ENDPOINT" --port 0 --port-file "$T/proxy.port" \
  --control-port 0 --control-port-file "$T/control.port" --log "$T/proxy.log" 2>>"$T/proxy.err" &
PROXY_PID=$!
for _ in $(seq 1 100); do [[ -s "$T/proxy.port" && -s "$T/control.port" ]] && break; sleep 0.1; done
[[ -s "$T/proxy.port" ]] || fail "faultproxy did not start: $(cat "$T/proxy.err")"
PROXY=http://127.0.0.1:$(cat "$T/proxy.port")
CONTROL=http://127.0.0.1:$(cat "$T/control.port")
rule() { curl -sf -X POST --data "$1" "$CONTROL/rules" >/dev/null || fail "rule $1 refused"; }
no_rules() { curl -sf -X DELETE "$CONTROL/rules" >/dev/null; }
faulted() { grep -c " $1 " "$T/proxy.log" || true; }

"$REPO" init --root "$T/repo" --s3 "$PROXY/$B" --path-style --s3-credentials "$T/creds" \
  >/dev/null 2>&1 || fail "init through the proxy"
start_repo
head -c $((40 * 1048576)) /dev/urandom >"$T/a.img"
images=()

# restore_all: every listed backup restores to the image it was taken of.
restore_all() {
  local i id
  for i in "${!images[@]}"; do
    id=${images[$i]%%:*}
    "$FERRY" --config "$T/agent.conf" restore "$id" --disk 0 --output "$T/r.img" --force >/dev/null ||
      fail "restore of $id"
    same_file "${images[$i]#*:}" "$T/r.img"
  done
}
# change_and_backup: new data in 8 blocks, a backup that must commit.
change_and_backup() {
  head -c $((8 * 1048576)) /dev/urandom | dd of="$T/a.img" bs=1M seek=$((RANDOM % 32)) conv=notrunc status=none
  backup_json "$T/a.img" || fail "backup ${#images[@]}: $(tail -3 "$T/repo.log")"
  local id
  id=$(json "$T/last.json" 'j["backup_id"]')
  cp "$T/a.img" "$T/img.${#images[@]}"
  images+=("$id:$T/img.${#images[@]}")
}

note "two 503 SlowDown answers to each of the first pack uploads: retried, committed"
rule '{"match": {"method": "PUT", "path_re": "/packs/"}, "action": "503", "count": 2}'
change_and_backup
[[ $(faulted 503) -ge 2 ]] || fail "the proxy answered no 503: $(cat "$T/proxy.log")"
grep -q "retry\|attempt" "$T/repo.log" || fail "the retries were not logged"

note "a pack upload reset in the middle of its body: retried from the start"
no_rules
rule '{"match": {"method": "PUT", "path_re": "/packs/"}, "action": "reset_mid_body", "count": 1}'
change_and_backup
[[ $(faulted reset_mid_body) -ge 1 ]] || fail "no upload was cut off"
restore_all

note "the store answering 503 to every pack upload: the backup fails, nothing is listed"
no_rules
rule '{"match": {"method": "PUT", "path_re": "/packs/"}, "action": "503", "count": -1}'
before=$(backup_count)
change_and_backup_fails() {
  head -c $((8 * 1048576)) /dev/urandom | dd of="$T/a.img" bs=1M seek=4 conv=notrunc status=none
  if "$AGENT" backup --config "$T/agent.conf" --source "$T/a.img" --json --quiet >"$T/fail.json" 2>"$T/fail.err"; then
    fail "a backup committed although no pack could be stored"
  fi
}
change_and_backup_fails
grep -qi "SlowDown\|503" "$T/fail.err" "$T/repo.log" || fail "the failure does not name the store's answer: $(cat "$T/fail.err")"
[[ $(backup_count) == "$before" ]] || fail "a failed backup was listed"
no_rules
change_and_backup
restore_all

note "one pack of a backup stored, a later one refused: the backup fails, the stored one is deleted"
# 70 MiB of new data: two packs of 32 MiB and a small one, uploaded while
# the backup goes on. The first pack's PUT passes, every later one is
# answered 503.
packs_before=$("${ADMIN[@]}" ls "$B" packs/ | wc -l)
rule '{"match": {"method": "PUT", "path_re": "/packs/"}, "action": "503", "skip": 1, "count": -1}'
head -c $((70 * 1048576)) /dev/urandom >"$T/d.img"
before=$(backup_count)
if "$AGENT" backup --config "$T/agent.conf" --source "$T/d.img" --json --quiet >/dev/null 2>"$T/fail.err"; then
  fail "a backup committed although one of its packs could not be stored"
fi
no_rules
[[ $(backup_count) == "$before" ]] || fail "a failed backup was listed"
packs_after=$("${ADMIN[@]}" ls "$B" packs/ | wc -l)
[[ $packs_after == "$packs_before" ]] || fail "the failed backup left $((packs_after - packs_before)) packs in the bucket"
[[ $(grep -c "PUT .*/packs/.* forward " "$T/proxy.log") -ge 1 ]] || fail "no pack upload completed: $(grep PUT "$T/proxy.log")"

note "radosgw killed in the middle of a backup and started again"
head -c $((160 * 1048576)) /dev/urandom >"$T/b.img"
"$AGENT" backup --config "$T/agent.conf" --source "$T/b.img" --json --quiet >"$T/b.json" 2>"$T/b.err" &
agent=$!
# Kill it once the first packs are being uploaded.
for _ in $(seq 1 200); do
  [[ $(grep -c "PUT .*/packs/" "$T/proxy.log") -ge 1 ]] && break
  sleep 0.05
done
rgw_pid() { awk '$1 == "client.rgw.a" {print $2}' "$CEPH_DIR/pids"; }
old_pid=$(rgw_pid)
"$S3DIR/ceph-rgw-restart" --kill "$CEPH_DIR" >/dev/null
sleep 1
"$S3DIR/ceph-rgw-restart" --start "$CEPH_DIR" >/dev/null || fail "radosgw did not come back"
# Gone, or a zombie its parent has not reaped yet (PID 1 here is slow).
old_state=$(awk '{print $3}' "/proc/$old_pid/stat" 2>/dev/null || true)
[[ $(rgw_pid) != "$old_pid" && ( -z $old_state || $old_state == Z || $old_state == X ) ]] ||
  fail "radosgw $old_pid was not killed (state $old_state)"
if wait "$agent"; then
  id=$(json "$T/b.json" 'j["backup_id"]')
  images+=("$id:$T/b.img")
  note "(the backup rode out the restart on its retries)"
else
  note "(the backup failed: $(tail -1 "$T/b.err"))"
  [[ $(backup_count) == "${#images[@]}" ]] || fail "a failed backup was listed"
fi
change_and_backup
restore_all

note "radosgw down: a backup still in the cache restores, a new one fails cleanly"
"$S3DIR/ceph-rgw-restart" --kill "$CEPH_DIR" >/dev/null
last=${images[-1]}
"$FERRY" --config "$T/agent.conf" restore "${last%%:*}" --disk 0 --output "$T/r.img" --force >/dev/null ||
  fail "a cached backup did not restore with the store down"
same_file "${last#*:}" "$T/r.img"
before=$(backup_count)
change_and_backup_fails
[[ $(backup_count) == "$before" ]] || fail "a backup was listed with the store down"
"$S3DIR/ceph-rgw-restart" --start "$CEPH_DIR" >/dev/null || fail "radosgw did not come back"

note "ferry-repo killed -9 while it uploads a backup's packs"
# New data (blocks already stored are not uploaded again); the second of
# its pack uploads held back until the server is gone.
head -c $((80 * 1048576)) /dev/urandom >"$T/c.img"
rule '{"match": {"path_re": "/packs/"}, "action": "delay", "delay_ms": 5000, "skip": 1, "count": 1}'
"$AGENT" backup --config "$T/agent.conf" --source "$T/c.img" --json --quiet >/dev/null 2>&1 &
agent=$!
# The proxy logs a request when it ends: the rule's count going to 0
# says the held-back upload has begun.
held=0
for _ in $(seq 1 300); do
  curl -sf "$CONTROL/rules" | grep -q '"left": 0' && { held=1; break; }
  sleep 0.05
done
((held)) || fail "no pack upload was held back"
kill9_repo
wait "$agent" && fail "the backup committed although its server was killed"
no_rules
start_repo
[[ $(backup_count) == "${#images[@]}" ]] || fail "the killed backup was listed"
"$REPO" gc --root "$T/repo" >"$T/gc.out" 2>&1 || fail "gc: $(cat "$T/gc.out")"
cat "$T/gc.out"
restore_all
"$REPO" verify --root "$T/repo" >"$T/v.out" 2>&1 || fail "verify: $(cat "$T/v.out")"
change_and_backup
restore_all
note "ok"
