#!/usr/bin/env bash
# service.backup: `ferry backup` drives `ferry-agent run` over mutual TLS:
# a full backup of a VM with two disks over hotadd, its progress events and
# JSON result, then `ferry restore` of both disks equals the frozen files,
# `ferry jobs` lists the job, and nothing is left (no disk on the proxy, no
# snapshot, methods re-enabled, no loop device, empty journal). Emulated:
# the vCenter (ferry-vcsim) and the proxy's guest (tests/service/lib.sh).
source "$(dirname "$0")/lib.sh"

make_certs
service_certs
start_repo
start_vcsim_guest
start_service

note "the self-cleanup ran at start and status says so"
ctl agent status --json >"$T/status.json" || fail "status failed"
[[ $(json "$T/status.json" 'j["last_cleanup"]["ran"] and j["last_cleanup"]["ok"]') == True ]] ||
  fail "cleanup at start: $(cat "$T/status.json")"
grep -q "self-cleanup: numCleanedUp=0 numRemaining=0" "$T/service.log" || fail "cleanup not logged"
# The same rules as the job: hotadd works on this (emulated) proxy VM,
# found by its BIOS UUID, and status says so as ferry-agent transports does.
[[ $(json "$T/status.json" '[t["available"] for t in j["transport_modes"] if t["name"] == "hotadd"][0]') == True ]] ||
  fail "status calls hotadd unavailable: $(cat "$T/status.json")"
[[ $(json "$T/status.json" 'j["transports"]') == "$("$AGENT" transports --config "$T/agent.conf")" ]] ||
  fail "status and ferry-agent transports differ: $(cat "$T/status.json")"

note "ferry backup --vm vm-two-disks --full --json"
ctl backup --vm vm-two-disks --transport hotadd --full --json >"$T/backup.json" 2>"$T/backup.err" ||
  fail "backup failed: $(cat "$T/backup.err")"
id=$(json "$T/backup.json" 'j["backup_id"]')
[[ -n "$id" ]] || fail "no backup id: $(cat "$T/backup.json")"
[[ $(json "$T/backup.json" 'j["ok"]') == True ]] || fail "not ok: $(cat "$T/backup.json")"
[[ $(json "$T/backup.json" 'len(j["disks"])') == 2 ]] || fail "not two disks: $(cat "$T/backup.json")"
for i in 0 1; do
  [[ $(json "$T/backup.json" "j['disks'][$i]['transport']") == hotadd ]] || fail "disk $i not over hotadd"
  [[ $(json "$T/backup.json" "j['disks'][$i]['size']") -gt 0 ]] || fail "disk $i has no size"
done
grep -q "^job .*: started\|backup of VM vm-two-disks started" "$T/backup.err" || fail "no job id on stderr: $(cat "$T/backup.err")"
for phase in connect snapshot read commit cleanup; do
  grep -q ": $phase" "$T/backup.err" || fail "phase $phase not reported: $(cat "$T/backup.err")"
done
job=$(sed -n 's/^job \([^:]*\): backup of VM.*/\1/p' "$T/backup.err" | head -1)

note "ferry restore of both disks equals the frozen files"
for i in 0 1; do
  flat=$(ready "R['vms']['vm-two-disks']['disks'][$i]['flat_path']")
  ctl restore "$id" --disk $i --output "$T/r$i.img" 2>/dev/null
  cmp "$T/r$i.img" "$flat" || fail "disk $i differs from $flat"
done

note "ferry jobs lists it as succeeded"
ctl jobs --json >"$T/jobs.json"
[[ $(json "$T/jobs.json" "[x['state'] for x in j if x['job_id']=='$job']") == "['succeeded']" ]] ||
  fail "job $job not succeeded: $(cat "$T/jobs.json")"
[[ $(json "$T/jobs.json" "[x['backup_id'] for x in j if x['job_id']=='$job'][0]") == "$id" ]] ||
  fail "job $job backup id: $(cat "$T/jobs.json")"
ctl jobs | grep -q "$job *succeeded" || fail "jobs table: $(ctl jobs)"

note "nothing left behind"
nothing_left vm-two-disks

note "a failing job: exit status 1 and the job's error on stderr"
if ctl backup --vm no-such-vm >"$T/bad.out" 2>"$T/bad.err"; then fail "backup of a missing VM succeeded"; fi
grep -q "no-such-vm" "$T/bad.err" || fail "error does not name the VM: $(cat "$T/bad.err")"
if ctl backup --vm vm-two-disks --disk 9 >"$T/bad2.out" 2>"$T/bad2.err"; then fail "backup of disk 9 succeeded"; fi
grep -qi "disk" "$T/bad2.err" || fail "error does not name the disk: $(cat "$T/bad2.err")"
nothing_left vm-two-disks
kill -0 "$AGENT_PID" || fail "the service died"
echo "service backup: OK"
