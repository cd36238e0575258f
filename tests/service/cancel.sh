#!/usr/bin/env bash
# service.cancel: `ferry cancel` in the middle of a job (a disk attached to
# the proxy, the snapshot taken, the VM's methods disabled) makes the job
# undo everything: no disk attached to the proxy, no snapshot, methods
# re-enabled, an empty journal; `ferry backup` exits 1 saying it was
# cancelled and `ferry jobs` says so too; the service keeps serving and the
# next backup of the VM works. A `ferry cleanup` while the job runs leaves
# the job's disk and snapshot alone. The job is held after its first attach by
# the agent's test hook FERRY_HOTADD_TEST_HOLD (docs/HOTADD.md) while a
# file exists, so nothing here depends on speed. Emulated: the vCenter
# (ferry-vcsim) and the proxy's guest (tests/service/lib.sh).
source "$(dirname "$0")/lib.sh"

make_certs
service_certs
start_repo
start_vcsim_guest
touch "$T/hold"
start_service FERRY_HOTADD_TEST_HOLD="$T/hold"

note "a backup, held right after its first attach"
ctl backup --vm vm-two-disks --json >"$T/backup.json" 2>"$T/backup.err" &
BACKUP=$!
CLEANUP_CMDS+=("kill $BACKUP 2>/dev/null")
wait_for "the first attach" attach_journaled
job=$(ctl jobs --json | python3 -c 'import json,sys; print([x["job_id"] for x in json.load(sys.stdin) if x["state"]=="running"][0])')
[[ $(proxy_disk_count_vs) == 2 ]] || fail "no disk attached to the proxy"
[[ $(vm_chain_len vm-two-disks) == 2 ]] || fail "no snapshot taken"
[[ -n "$(disabled_methods vm-two-disks)" ]] || fail "no method disabled during the job"
ctl agent status --json >"$T/status.json"
[[ $(json "$T/status.json" '[x["job_id"] for x in j["jobs"]]') == "['$job']" ]] ||
  fail "status does not list the running job: $(cat "$T/status.json")"

note "ferry cleanup while the job runs leaves the job's disk and snapshot alone"
ctl cleanup --json >"$T/cleanup.json" || fail "cleanup failed"
[[ $(json "$T/cleanup.json" 'j["numCleanedUp"]') == 0 ]] || fail "cleanup undid something: $(cat "$T/cleanup.json")"
(( $(json "$T/cleanup.json" 'j["numRemaining"]') > 0 )) || fail "the live job's entries not counted: $(cat "$T/cleanup.json")"
[[ $(proxy_disk_count_vs) == 2 && $(vm_chain_len vm-two-disks) == 2 ]] || fail "cleanup touched the running job"

note "ferry cancel $job"
ctl cancel "$job" >"$T/cancel.out" || fail "cancel failed"
grep -q "cancelling" "$T/cancel.out" || fail "cancel said: $(cat "$T/cancel.out")"
rm -f "$T/hold"
if wait $BACKUP; then fail "the cancelled backup exited 0: $(cat "$T/backup.err")"; fi
grep -q "backup cancelled" "$T/backup.err" || fail "not reported as cancelled: $(cat "$T/backup.err")"
[[ $(json "$T/backup.json" 'j["cancelled"]') == True ]] || fail "JSON: $(cat "$T/backup.json")"
ctl jobs --json >"$T/jobs.json"
[[ $(json "$T/jobs.json" "[x['state'] for x in j if x['job_id']=='$job']") == "['cancelled']" ]] ||
  fail "job state: $(cat "$T/jobs.json")"

note "everything undone"
nothing_left vm-two-disks
grep -q "job $job: cancel asked by central" "$T/service.log" || fail "cancel not logged"

note "cancel of a finished job and of an unknown one"
ctl cancel "$job" | grep -q "already ended: cancelled" || fail "second cancel: $(ctl cancel "$job")"
if ctl cancel no-such-job 2>"$T/c.err"; then fail "cancel of an unknown job succeeded"; fi
grep -q "no job no-such-job" "$T/c.err" || fail "unknown job: $(cat "$T/c.err")"

note "the service still works: a backup of the same VM"
ctl backup --vm vm-two-disks --disk 1 --quiet >/dev/null 2>"$T/again.err" || fail "backup after cancel: $(cat "$T/again.err")"
nothing_left vm-two-disks
echo "service cancel: OK"
