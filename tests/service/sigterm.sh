#!/usr/bin/env bash
# service.sigterm: SIGTERM to `ferry-agent run` during a job: the service
# stops accepting, cancels the job, waits until it has undone everything
# (detach, snapshot removal, EndAccess) and exits 0; the controller gets
# the job's final event (cancelled). Afterwards no disk is attached to the
# proxy, no snapshot, methods re-enabled, the journal empty. Held after the
# first attach by FERRY_HOTADD_TEST_HOLD (docs/HOTADD.md), so nothing here
# depends on speed. Emulated: the vCenter and the proxy's guest.
source "$(dirname "$0")/lib.sh"

make_certs
service_certs
start_repo
start_vcsim_guest
touch "$T/hold"
start_service FERRY_HOTADD_TEST_HOLD="$T/hold"

note "a backup, held right after its first attach"
ctl backup --vm vm-two-disks >"$T/backup.out" 2>"$T/backup.err" &
BACKUP=$!
CLEANUP_CMDS+=("kill $BACKUP 2>/dev/null")
wait_for "the first attach" attach_journaled
[[ $(proxy_disk_count_vs) == 2 ]] || fail "no disk attached to the proxy"

note "SIGTERM to the service"
kill -TERM "$AGENT_PID"
wait_for "the service to say it stops" grep -q "stopping: cancelling 1 job" "$T/service.log"
rm -f "$T/hold"
rc=0; wait "$AGENT_PID" || rc=$?
AGENT_PID=""
[[ $rc == 0 ]] || fail "ferry-agent run exited $rc after SIGTERM"
rc=0
if wait $BACKUP; then fail "the interrupted backup exited 0"; fi
grep -q "backup cancelled" "$T/backup.err" || fail "controller not told: $(cat "$T/backup.err")"
grep -q "ferry-agent run: stopped" "$T/service.log" || fail "no clean stop logged"

note "everything undone"
nothing_left vm-two-disks
echo "service sigterm: OK"
