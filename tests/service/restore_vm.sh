#!/usr/bin/env bash
# service.restore_vm: `ferry restore-vm` asks `ferry-agent run` for a
# whole-VM restore, as `ferry backup` asks for a backup: the job's phases
# and JSON result come back, `ferry jobs` lists it as a restore-vm job, the
# restored VM's disks equal the original's. A name in use is refused by the
# job; a bad option by ferry itself. `restore-vm --into` rolls a
# powered-off VM back: over hotadd only the blocks CBT reports changed since
# the backup, over https the whole disk; the disks then equal the backup's
# and CBT is reset; a running VM is refused. The agent killed with a hotadd
# restore's disk attached: its next start detaches it and destroys the
# half-restored VM. `ferry cancel` in the middle of the
# write phase (the simulator's /folder slowed down) stops the job and the
# half-restored VM is destroyed. Disks are written over hotadd (attached
# to the proxy persistent, written through the guest's block device; the
# proxy is left as it was) and over https. Emulated: the vCenter
# (ferry-vcsim) and the proxy's guest (tests/service/lib.sh).
source "$(dirname "$0")/lib.sh"

make_certs
service_certs
start_repo
start_vcsim_guest
start_service
vm_exists() { "$AGENT" inventory --config "$T/agent.conf" --vm "$1" >/dev/null 2>&1; }

note "a backup to restore from"
ctl backup --vm vm-two-disks --transport https --json >"$T/b.json" 2>"$T/b.err" ||
  fail "backup failed: $(cat "$T/b.err")"
id=$(json "$T/b.json" 'j["backup_id"]')

note "ferry restore-vm through the agent service: hotadd, the new disks attached to this proxy"
ctl restore-vm "$id" --name svc-restored --json >"$T/r.json" 2>"$T/r.err" ||
  fail "restore-vm failed: $(cat "$T/r.err" "$T/r.json")"
[[ $(json "$T/r.json" '(j["kind"], j["ok"], j["vm"], j["source"], [(d["restored"], d["backup_disk"], d["transport"]) for d in j["disks"]])') == \
  "('restore-vm', True, 'svc-restored', 'vm-two-disks', [(True, 0, 'hotadd'), (True, 1, 'hotadd')])" ]] ||
  fail "result: $(cat "$T/r.json")"
# Holes are not written over hotadd: a new disk reads as zeros already.
[[ $(json "$T/r.json" 'all(0 < d["bytes_written"] < d["capacity"] and d["bytes_zero"] == 0 for d in j["disks"])') == True ]] ||
  fail "holes written over hotadd: $(cat "$T/r.json")"
nothing_left svc-restored
for phase in connect create write; do
  grep -q "job .*: $phase" "$T/r.err" || fail "phase $phase not reported: $(cat "$T/r.err")"
done
control GET "disks?vm=vm-two-disks" >"$T/d0.json"
control GET "disks?vm=svc-restored" >"$T/d1.json"
for i in 0 1; do
  cmp "$(json "$T/d0.json" "j['disks'][$i]['live']['flat_path']")" \
      "$(json "$T/d1.json" "j['disks'][$i]['live']['flat_path']")" || fail "restored disk $i differs"
done
ctl jobs --json >"$T/jobs.json"
[[ $(json "$T/jobs.json" '[(x["kind"], x["vm"], x["state"]) for x in j]') == \
  "[('restore-vm', 'svc-restored', 'succeeded'), ('backup', 'vm-two-disks', 'succeeded')]" ]] ||
  fail "jobs: $(cat "$T/jobs.json")"
ctl restore-vm "$id" --name svc-text --transport https >"$T/t.out" 2>/dev/null || fail "restore-vm (text) failed"
grep -q "^restored backup $id (VM vm-two-disks) as VM svc-text" "$T/t.out" || fail "text: $(cat "$T/t.out")"
grep -q "backup disk 1 over https" "$T/t.out" || fail "text: $(cat "$T/t.out")"
control GET "disks?vm=svc-text" >"$T/d2.json"
for i in 0 1; do
  cmp "$(json "$T/d0.json" "j['disks'][$i]['live']['flat_path']")" \
      "$(json "$T/d2.json" "j['disks'][$i]['live']['flat_path']")" || fail "disk $i written over https differs"
done

note "refused: a name in use (by the job), a bad option (by ferry)"
rc=0; ctl restore-vm "$id" --name vm-two-disks 2>"$T/e1" || rc=$?
[[ $rc == 1 ]] && grep -q "a VM named vm-two-disks exists" "$T/e1" || fail "name in use: exit $rc: $(cat "$T/e1")"
rc=0; ctl restore-vm "$id" --name x --disk-provisioning fat 2>"$T/e2" || rc=$?
[[ $rc == 2 ]] && grep -q "disk-provisioning" "$T/e2" || fail "bad provisioning: exit $rc: $(cat "$T/e2")"
rc=0; ctl restore-vm "$id" 2>"$T/e3" || rc=$?
[[ $rc == 2 ]] || fail "no --name: exit $rc"

note "restore-vm --into: vm-two-disks rolled back, only what changed since the backup (CBT)"
ctl backup --vm vm-two-disks --transport https --enable-cbt --json >"$T/b2.json" 2>"$T/b2.err" ||
  fail "backup with CBT failed: $(cat "$T/b2.err")"
id2=$(json "$T/b2.json" 'j["backup_id"]')
key0=$(json "$T/d0.json" 'j["disks"][0]["key"]')
head -c 65536 /dev/urandom >"$T/w1"
curl -sS -k --fail -X POST --data-binary @"$T/w1" \
  "$(ready "R['control']")/write?vm=vm-two-disks&disk=$key0&offset=$((5 * 1048576 + 8192))" >/dev/null ||
  fail "write into vm-two-disks failed"
rc=0; ctl restore-vm "$id2" --into vm-two-disks 2>"$T/e4" || rc=$?
[[ $rc == 1 ]] && grep -q "VM vm-two-disks is poweredOn: restore-vm --into writes only a powered-off VM" "$T/e4" ||
  fail "into a running VM: exit $rc: $(cat "$T/e4")"
control POST "power?vm=vm-two-disks&state=off" >/dev/null || fail "power off failed"
ctl restore-vm "$id2" --into vm-two-disks --json >"$T/i.json" 2>"$T/i.err" ||
  fail "restore-vm --into failed: $(cat "$T/i.err" "$T/i.json")"
[[ $(json "$T/i.json" '(j["into"], j["vm"], [(d["backup_disk"], d["transport"], d["changed_only"]) for d in j["disks"]])') == \
  "(True, 'vm-two-disks', [(0, 'hotadd', True), (1, 'hotadd', True)])" ]] || fail "into: $(cat "$T/i.json")"
# One backup block (1 MiB) held the write on disk 0; nothing changed on disk 1.
[[ $(json "$T/i.json" '[d["bytes_written"] for d in j["disks"]]') == "[1048576, 0]" ]] ||
  fail "not only what changed was written: $(cat "$T/i.json")"
grep -q "changed block tracking was reset" "$T/i.json" || fail "CBT reset not noted: $(cat "$T/i.json")"
control GET "disks?vm=vm-two-disks" >"$T/d3.json"
for i in 0 1; do
  ctl restore "$id2" --disk $i --output "$T/id2-$i.img" 2>/dev/null
  cmp "$T/id2-$i.img" "$(json "$T/d3.json" "j['disks'][$i]['live']['flat_path']")" ||
    fail "disk $i after the rollback differs from the backup"
done
nothing_left vm-two-disks
note "restore-vm --into over https, disk 1 only: the whole disk"
ctl restore-vm "$id" --into vm-two-disks --disk 1 --transport https --json >"$T/i2.json" 2>"$T/i2.err" ||
  fail "restore-vm --into over https failed: $(cat "$T/i2.err" "$T/i2.json")"
[[ $(json "$T/i2.json" '[(d["backup_disk"], d["changed_only"], d["full_reason"], d["bytes_written"] == d["capacity"]) for d in j["disks"]]') == \
  "[(1, False, 'https writes whole disks', True)]" ]] || fail "into over https: $(cat "$T/i2.json")"
ctl restore "$id" --disk 1 --output "$T/id-1.img" 2>/dev/null
cmp "$T/id-1.img" "$(json "$T/d3.json" "j['disks'][1]['live']['flat_path']")" || fail "disk 1 differs after the https rollback"
rc=0; ctl restore-vm "$id" --into vm-two-disks --name x 2>"$T/e5" || rc=$?
[[ $rc == 2 ]] && grep -q "are for a new VM" "$T/e5" || fail "--into with --name: exit $rc: $(cat "$T/e5")"

note "ferry cancel in the write phase: the half-restored VM is destroyed"
control POST "faults?method=folder&delay_ms=1500&count=-1" >/dev/null
job=$(ctl restore-vm "$id" --name svc-cancelled --transport https --detach)
wait_for "the write phase" bash -c "'$FERRY' --config '$T/central.conf' jobs --json | grep -q '\"phase\":\"write\"'"
ctl cancel "$job" --wait >"$T/c.out" || fail "cancel failed: $(cat "$T/c.out")"
control DELETE faults >/dev/null
ctl jobs --json >"$T/jobs2.json"
[[ $(json "$T/jobs2.json" "[x['state'] for x in j if x['job_id'] == '$job']") == "['cancelled']" ]] ||
  fail "not cancelled: $(cat "$T/jobs2.json")"
ctl watch "$job" --json >"$T/w.json" 2>/dev/null && fail "watch of a cancelled job exited 0"
grep -q "half-restored VM svc-cancelled was destroyed" "$T/w.json" || fail "not destroyed: $(cat "$T/w.json")"
vm_exists svc-cancelled && fail "the cancelled restore's VM is still there"
vm_exists svc-restored || fail "the restored VM is gone"
note "kill -9 of the agent with a hotadd restore's disk attached: the next start cleans up"
stop_agent
touch "$T/hold"
start_service FERRY_HOTADD_TEST_HOLD="$T/hold"
job=$(ctl restore-vm "$id" --name svc-crashed --detach)
wait_for "the new disk's attach" attach_journaled
grep -qP '\trestore\t' "$T/state/journal" || fail "the new VM is not journaled: $(cat "$T/state/journal")"
stop_agent
rm -f "$T/hold"
[[ $(proxy_disk_count_vs) == 2 ]] || fail "the killed restore had no disk attached"
start_service
grep -q "destroyed the half-restored VM svc-crashed" "$T/service.log" || fail "not cleaned at start: $(tail -n 20 "$T/service.log")"
vm_exists svc-crashed && fail "the crashed restore's VM is still there"
[[ $(proxy_disk_count_vs) == 1 ]] || fail "the proxy still has $(proxy_disk_count_vs) disks"
[[ $(our_loops) == 0 ]] || fail "loop devices left: $(losetup -l)"
[[ $(journal_entries) == 0 ]] || fail "journal not empty: $(cat "$T/state/journal")"
echo "restore_vm: OK"
