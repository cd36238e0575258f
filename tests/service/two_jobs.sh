#!/usr/bin/env bash
# service.two_jobs: one agent service runs two backup jobs of two VMs at
# once (ferry.jobs.max=2): both are listed as running together; a second
# job on a VM that already has one is refused even when the VM is named by
# its moref instead of its name; a third job beyond ferry.jobs.max is
# refused with a clear error; both jobs then finish, restore byte for byte
# and leave nothing behind. The first job is held after its first attach
# by FERRY_HOTADD_TEST_HOLD (docs/HOTADD.md) so that the jobs overlap
# whatever the speed. Emulated: the vCenter and the proxy's guest.
source "$(dirname "$0")/lib.sh"

make_certs
service_certs
start_repo
start_vcsim_guest
touch "$T/hold"
start_service FERRY_HOTADD_TEST_HOLD="$T/hold"
running() { ctl jobs --json | python3 -c 'import json,sys; print(sum(x["state"]=="running" for x in json.load(sys.stdin)))'; }
two_running() { [[ $(running) == 2 ]]; }

note "job A: vm-two-disks, held after its first attach"
ctl backup --vm vm-two-disks --json >"$T/a.json" 2>"$T/a.err" &
A=$!
CLEANUP_CMDS+=("kill $A 2>/dev/null")
wait_for "A's first attach" attach_journaled

note "a second job on vm-two-disks, named by its moref: refused"
moref=$(ready "R['vms']['vm-two-disks']['moref']")
if ctl backup --vm "$moref" >"$T/dup.out" 2>"$T/dup.err"; then fail "a second job on one VM ran"; fi
grep -q "already has job .* running" "$T/dup.err" || fail "duplicate: $(cat "$T/dup.err")"

note "job B: vm-independent, at the same time"
ctl backup --vm vm-independent --disk 0 --json >"$T/b.json" 2>"$T/b.err" &
B=$!
CLEANUP_CMDS+=("kill $B 2>/dev/null")
wait_for "two jobs running at once" two_running
ctl agent status --json >"$T/status.json"
[[ $(json "$T/status.json" 'len(j["jobs"])') == 2 ]] || fail "status: $(cat "$T/status.json")"

note "a third job: over ferry.jobs.max"
if ctl backup --vm vm-three-disks --disk 0 >"$T/c.out" 2>"$T/c.err"; then fail "a third job ran"; fi
grep -q "2 job(s) already running, the most ferry.jobs.max allows" "$T/c.err" || fail "limit: $(cat "$T/c.err")"

note "release: both finish"
rm -f "$T/hold"
wait $A || fail "job A: $(cat "$T/a.err")"
wait $B || fail "job B: $(cat "$T/b.err")"
[[ $(json "$T/a.json" 'len(j["disks"])') == 2 ]] || fail "job A disks: $(cat "$T/a.json")"
[[ $(json "$T/b.json" 'j["disks"][0]["transport"]') == hotadd ]] || fail "job B transport"
for i in 0 1; do
  ctl restore "$(json "$T/a.json" 'j["backup_id"]')" --disk $i --output "$T/a$i.img" 2>/dev/null
  cmp "$T/a$i.img" "$(ready "R['vms']['vm-two-disks']['disks'][$i]['flat_path']")" || fail "job A disk $i differs"
done
ctl restore "$(json "$T/b.json" 'j["backup_id"]')" --disk 0 --output "$T/b0.img" 2>/dev/null
cmp "$T/b0.img" "$(ready "R['vms']['vm-independent']['disks'][0]['flat_path']")" || fail "job B disk differs"
[[ $(running) == 0 ]] || fail "jobs still running"
nothing_left vm-two-disks
nothing_left vm-independent
echo "service two_jobs: OK"
