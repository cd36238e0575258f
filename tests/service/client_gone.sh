#!/usr/bin/env bash
# service.client_gone: the controller that started a job dies (kill -9)
# while the job runs: the job is not held up and finishes; `ferry watch JOB`
# from another controller picks the job's events up again and gets its
# result; `ferry backup --detach` returns the job id at once and the job
# runs on; watching a finished job returns its result at once; an unknown
# job is an error. The job is held after its first attach by
# FERRY_HOTADD_TEST_HOLD (docs/HOTADD.md) so that the controller dies
# mid-job whatever the speed. Emulated: the vCenter and the proxy's guest.
source "$(dirname "$0")/lib.sh"

make_certs
service_certs
start_repo
start_vcsim_guest
touch "$T/hold"
start_service FERRY_HOTADD_TEST_HOLD="$T/hold"
state_of() { ctl jobs --json | python3 -c "import json,sys; print([x['state'] for x in json.load(sys.stdin) if x['job_id']=='$1'][0])"; }

note "a backup whose controller is killed mid-job"
ctl backup --vm vm-two-disks >"$T/a.out" 2>"$T/a.err" &
A=$!
wait_for "the first attach" attach_journaled
job=$(sed -n 's/^job \([^:]*\): backup of VM.*/\1/p' "$T/a.err" | head -1)
[[ -n "$job" ]] || fail "no job id: $(cat "$T/a.err")"
kill -9 $A
wait $A 2>/dev/null || true
[[ $(state_of "$job") == running ]] || fail "the job did not keep running"

note "ferry watch $job from another controller"
ctl watch "$job" --json >"$T/w.json" 2>"$T/w.err" &
W=$!
CLEANUP_CMDS+=("kill $W 2>/dev/null")
wait_for "the watcher to replay the phases" grep -q ": snapshot" "$T/w.err"
rm -f "$T/hold"
wait $W || fail "watch: $(cat "$T/w.err")"
[[ $(json "$T/w.json" 'j["ok"]') == True ]] || fail "watched result: $(cat "$T/w.json")"
[[ $(state_of "$job") == succeeded ]] || fail "job state $(state_of "$job")"
id=$(json "$T/w.json" 'j["backup_id"]')
for i in 0 1; do
  ctl restore "$id" --disk $i --output "$T/r$i.img" 2>/dev/null
  cmp "$T/r$i.img" "$(ready "R['vms']['vm-two-disks']['disks'][$i]['flat_path']")" || fail "disk $i differs"
done

note "ferry backup --detach: the job id at once, the job runs on"
ctl backup --vm vm-independent --disk 0 --detach --json >"$T/d.json" || fail "backup --detach"
djob=$(json "$T/d.json" 'j["job_id"]')
ctl watch "$djob" --json --quiet >"$T/d2.json" || fail "watch of the detached job"
[[ $(json "$T/d2.json" 'j["ok"]') == True ]] || fail "detached job: $(cat "$T/d2.json")"

note "watching a finished job, and an unknown one"
ctl watch "$job" --json --quiet >"$T/w2.json" || fail "watch of a finished job"
[[ $(json "$T/w2.json" 'j["backup_id"]') == "$id" ]] || fail "finished job's result: $(cat "$T/w2.json")"
if ctl watch no-such-job 2>"$T/n.err"; then fail "watch of an unknown job succeeded"; fi
grep -q "no job no-such-job on this agent" "$T/n.err" || fail "unknown job: $(cat "$T/n.err")"
nothing_left vm-two-disks
echo "service client_gone: OK"
