#!/usr/bin/env bash
# service.cleanup: the agent's self-cleanup outside the start.
# - A job that could not undo its snapshot (RemoveSnapshot_Task fails once)
#   leaves it in the journal under the agent's own pid; with no other job
#   running, the agent cleans up after the job at once: nothing is left,
#   and Status reports that cleanup.
# - `ferry cleanup` whose cleanup takes longer than the controller's
#   ferry.timeoutSeconds (a Login stalled 32 s, the controller waits 25 s
#   for a read) still gets its answer: the agent keeps the connection alive.
# - SIGTERM while a cleanup runs: the service lets it end, then exits 0;
#   with a cleanup that outlasts the bound (ferry.timeoutSeconds of the
#   agent), it exits 0 without it.
# The job is held after its first attach by FERRY_HOTADD_TEST_HOLD
# (docs/HOTADD.md). Emulated: the vCenter (ferry-vcsim) and the proxy's
# guest (tests/service/lib.sh).
source "$(dirname "$0")/lib.sh"

make_certs
service_certs
start_repo
start_vcsim_guest
touch "$T/hold"
start_service FERRY_HOTADD_TEST_HOLD="$T/hold"

asked_count() { grep -c "self-cleanup asked by" "$T/service.log"; }
cleanup_asked() { (( $(asked_count) > asked )); }

note "a cancelled job whose snapshot removal fails: the agent cleans up after it"
ctl backup --vm vm-two-disks --json >"$T/backup.json" 2>"$T/backup.err" &
BACKUP=$!
CLEANUP_CMDS+=("kill $BACKUP 2>/dev/null")
wait_for "the first attach" attach_journaled
control POST "faults?method=RemoveSnapshot_Task&fault=InvalidState&count=1" >/dev/null
job=$(ctl jobs --json | python3 -c 'import json,sys; print([x["job_id"] for x in json.load(sys.stdin) if x["state"]=="running"][0])')
ctl cancel "$job" >/dev/null || fail "cancel failed"
rm -f "$T/hold"
if wait $BACKUP; then fail "the cancelled backup exited 0"; fi
wait_for "the snapshot removal to fail" grep -q "removing snapshot .*the next cleanup will retry" "$T/service.log"
wait_for "the cleanup after the job" grep -q "self-cleanup: numCleanedUp=[1-9]" "$T/service.log"
grep -q "self-cleanup after the failed job" "$T/service.log" || fail "the cleanup after the job is not logged"
nothing_left vm-two-disks
ctl agent status --json >"$T/status.json"
(( $(json "$T/status.json" 'j["last_cleanup"]["numCleanedUp"]') > 0 )) ||
  fail "status does not report the cleanup after the job: $(cat "$T/status.json")"
# It ran as a job of kind cleanup, listed with the others.
ctl jobs --json >"$T/jobs1.json"
[[ $(json "$T/jobs1.json" 'len([x for x in j if x["kind"] == "cleanup" and x["state"] == "succeeded" and x["client"] == "the agent"])') == 1 ]] ||
  fail "the cleanup after the job is not a listed job: $(cat "$T/jobs1.json")"

note "a cleanup longer than the controller's read timeout"
echo "ferry.timeoutSeconds=25" >>"$T/central.conf"
control POST "faults?method=Login&delay_ms=32000&count=1" >/dev/null
start=$SECONDS
ctl cleanup --json >"$T/cleanup.json" 2>"$T/cleanup.err" ||
  fail "ferry cleanup failed after $((SECONDS - start)) s: $(cat "$T/cleanup.err")"
(( SECONDS - start >= 30 )) || fail "the Login was not stalled ($((SECONDS - start)) s)"
[[ $(json "$T/cleanup.json" 'j["numRemaining"]') == 0 ]] || fail "cleanup: $(cat "$T/cleanup.json")"
ctl jobs --json >"$T/jobs2.json"
[[ $(json "$T/jobs2.json" 'len([x for x in j if x["kind"] == "cleanup" and x["state"] == "succeeded" and x["client"] != "the agent"])') == 1 ]] ||
  fail "ferry cleanup is not a listed job: $(cat "$T/jobs2.json")"
ctl jobs >"$T/jobs2.txt"
grep -q "succeeded.*(cleanup)" "$T/jobs2.txt" || fail "ferry jobs: $(cat "$T/jobs2.txt")"

note "SIGTERM while a cleanup runs: it ends first"
asked=$(asked_count)
control POST "faults?method=Login&delay_ms=8000&count=1" >/dev/null
ctl cleanup --json >"$T/cleanup2.json" 2>"$T/cleanup2.err" &
CL=$!
wait_for "the cleanup to start" cleanup_asked
kill -TERM "$AGENT_PID"
rc=0; wait "$AGENT_PID" || rc=$?
AGENT_PID=""
[[ $rc == 0 ]] || fail "ferry-agent run exited $rc after SIGTERM"
grep -q "stopping: waiting (at most 300 s) for the self-cleanup" "$T/service.log" || fail "no wait for the cleanup logged"
wait $CL || fail "the cleanup's controller got no answer: $(cat "$T/cleanup2.err")"
[[ $(json "$T/cleanup2.json" 'j["numRemaining"]') == 0 ]] || fail "cleanup: $(cat "$T/cleanup2.json")"
grep -q "ferry-agent run: stopped" "$T/service.log" || fail "no stop logged"

note "SIGTERM while a cleanup outlasts the agent's bound: exits without it"
echo "ferry.timeoutSeconds=2" >>"$T/agent.conf"
start_service
asked=$(asked_count)
control POST "faults?method=Login&delay_ms=15000&count=1" >/dev/null
ctl cleanup >/dev/null 2>&1 &
CL=$!
wait_for "the cleanup to start" cleanup_asked
start=$SECONDS
kill -TERM "$AGENT_PID"
rc=0; wait "$AGENT_PID" || rc=$?
AGENT_PID=""
[[ $rc == 0 ]] || fail "ferry-agent run exited $rc after SIGTERM"
(( SECONDS - start < 12 )) || fail "the service waited $((SECONDS - start)) s for the cleanup"
grep -q "still busy; exiting without them" "$T/service.log" || fail "no exit without the cleanup logged"
wait $CL 2>/dev/null || true
echo "service cleanup: OK"
