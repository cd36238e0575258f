#!/usr/bin/env bash
# transport.vm_https: a whole VM backup job (ferry-agent backup --vm) over
# the https mode, end to end on the simulated vCenter: snapshot, each
# frozen disk read through the datastore's /folder access, repository,
# snapshot removed. This proxy is not a VM of that vCenter, so hotadd
# cannot work and says why; the list's next mode reads. Needs no root:
# nothing is attached. What a snapshot freezes against later guest writes
# is checked in test_vm_transport.
source "$(dirname "$0")/../integration/lib.sh"
: "${VCSIM:?VCSIM must point at ferry-vcsim}"
VCSIM_PID=""
CLEANUP_CMDS+=("[[ -n \"\$VCSIM_PID\" ]] && kill \$VCSIM_PID && wait \$VCSIM_PID")

make_certs
start_repo
"$VCSIM" --listen 127.0.0.1:0 --datadir "$T/vcdata" --ready-file "$T/vcready.json" \
  --disk-size 16777216 >"$T/vcsim.log" 2>&1 &
VCSIM_PID=$!
for _ in $(seq 1 300); do
  [[ -s "$T/vcready.json" ]] && break
  sleep 0.1
done
[[ -s "$T/vcready.json" ]] || fail "ferry-vcsim did not start: $(cat "$T/vcsim.log")"
mkdir -p "$T/vc" "$T/state"
python3 "$(dirname "$0")/../vsphere/ready2conf.py" "$T/vcready.json" "$T/vc" | grep -v '^test\.' >>"$T/agent.conf"
echo "ferry.stateDirectory=$T/state" >>"$T/agent.conf"
ready() { python3 -c "import json,sys; R=json.load(open('$T/vcready.json')); print($1)"; }

note "backup --vm over san:hotadd:https: san and hotadd say why not, https reads"
"$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks --transport san:hotadd:https \
  --json --quiet --log-level 4 >"$T/b.json" 2>"$T/b.log" || { cat "$T/b.log"; fail "backup failed"; }
for i in 0 1; do
  [[ $(json "$T/b.json" "j['disks'][$i]['transport']") == https ]] || fail "disk $i: $(cat "$T/b.json")"
done
# Not VMFS, or (before that is asked) no VMFS LUN on this machine at all.
grep -Eq "san[: ].*(datastore ds1 is .*, not VMFS|no VMFS LUN is visible)" "$T/b.log" || fail "san's reason not logged: $(cat "$T/b.log")"
grep -q "hotadd" "$T/b.log" || fail "hotadd's reason not logged"
id=$(json "$T/b.json" 'j["backup_id"]')
for i in 0 1; do
  "$FERRY" --config "$T/agent.conf" restore "$id" --disk $i --output "$T/r$i.img"
  flat=$(ready "R['vms']['vm-two-disks']['disks'][$i]['flat_path']")
  cmp "$T/r$i.img" "$flat" || fail "disk $i restore differs from $flat"
done
"$FERRY" --config "$T/agent.conf" list --json >"$T/list.json"
grep -q '"transport":"https"' "$T/list.json" || fail "manifest transport: $(cat "$T/list.json")"

note "the snapshot is gone and the methods are enabled again"
"$AGENT" inventory --config "$T/agent.conf" --vm vm-two-disks --json >"$T/inv.json"
python3 - "$T/inv.json" <<'PY' || fail "after the job: $(cat "$T/inv.json")"
import json, sys
vm = json.load(open(sys.argv[1]))["vms"][0]
assert not vm.get("snapshots"), vm.get("snapshots")
PY

note "no mode can read: every reason named, nothing left"
rc=0
"$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks --transport san:nbdssl \
  --quiet 2>"$T/none.log" || rc=$?
[[ $rc == 1 ]] || fail "exit $rc"
grep -Eq "san[: ].*(datastore ds1 is .*, not VMFS|no VMFS LUN is visible)" "$T/none.log" && grep -q "nbdssl: needs VMware's VDDK" "$T/none.log" ||
  fail "reasons: $(cat "$T/none.log")"
note "a snapshot of another VM, a disk listed twice: refused, nothing left"
rc=0
"$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks --transport https \
  --snapshot snapshot-99999 --quiet 2>"$T/snap.log" || rc=$?
[[ $rc == 1 ]] && grep -q "snapshot snapshot-99999 is not a snapshot of vm-two-disks" "$T/snap.log" ||
  fail "foreign snapshot: exit $rc: $(cat "$T/snap.log")"
rc=0
"$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks --transport https \
  --disk 1 --disk 1 --quiet 2>"$T/dup.log" || rc=$?
[[ $rc == 1 ]] && grep -q "disk 1 is listed twice" "$T/dup.log" || fail "disk twice: exit $rc: $(cat "$T/dup.log")"
"$AGENT" inventory --config "$T/agent.conf" --vm vm-two-disks --json >"$T/inv2.json"
python3 -c 'import json,sys; assert not json.load(open(sys.argv[1]))["vms"][0]["snapshots"]' "$T/inv2.json" ||
  fail "a snapshot was left: $(cat "$T/inv2.json")"
echo "transport vm_https: OK"
