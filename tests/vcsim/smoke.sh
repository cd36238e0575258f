#!/usr/bin/env bash
# vcsim.smoke: start ferry-vcsim, drive it over SOAP with curl the way a
# backup proxy does, and check the answers against the disk files.
#   login, devices, CBT on, snapshot, QueryChangedDiskAreas "*" and since a
#   change ID after writing to the live disk, DisableMethods/EnableMethods
#   around RelocateVM_Task, /folder with Range, snapshot removal.
source "$(dirname "$0")/lib.sh"

VM_NAME=vm-two-disks
start_vcsim
VM=$(json "R['vms']['$VM_NAME']['moref']")
SIZE=$(json "R['vms']['$VM_NAME']['disks'][0]['size']")
DC=$(json 'R["datacenter"]')

step "service content and login"
service_content
[[ "$API_TYPE" == VirtualCenter ]] || fail "apiType $API_TYPE"
soap "<QueryChangedDiskAreas xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this><deviceKey>2000</deviceKey><startOffset>0</startOffset><changeId>*</changeId></QueryChangedDiskAreas>"
expect_fault NotAuthenticated
soap "<Login xmlns=\"urn:vim25\"><_this type=\"SessionManager\">$SM</_this><userName>$(json 'R["username"]')</userName><password>wrong</password></Login>"
expect_fault InvalidLogin
login

step "devices of $VM_NAME"
props VirtualMachine "$VM" config.hardware.device
q disks >"$WORK/devs.txt"
python3 - "$WORK/devs.txt" "$WORK/ready.json" "$VM_NAME" <<'EOF'
import json, sys
devs = {l.split("\t")[0]: l.rstrip("\n").split("\t") for l in open(sys.argv[1])}
vm = json.load(open(sys.argv[2]))["vms"][sys.argv[3]]
assert len(devs) == 2, devs
for d in vm["disks"]:
    got = devs[str(d["key"])]
    assert got[1] == d["file"], (got, d)
    assert got[2] == d["uuid"] and got[2].startswith("6000C29"), got
    assert got[3] == "", "no changeId before CBT is on"
    assert got[5] == str(d["controller_key"]) and got[6] == str(d["unit"]), got
EOF

step "enable changed block tracking"
run_task "<ReconfigVM_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this><spec><changeTrackingEnabled>true</changeTrackingEnabled></spec></ReconfigVM_Task>"
expect_task_ok
props VirtualMachine "$VM" config.changeTrackingEnabled config.hardware.device
[[ "$(q prop config.changeTrackingEnabled)" == true ]] || fail "config.changeTrackingEnabled not true"
DISKS=$(q disks)
grep -Eq '^52( [0-9a-f]{2}){7}-[0-9a-f]{2}( [0-9a-f]{2}){7}/[0-9]+$' <<<"$(cut -f4 <<<"$DISKS")" || fail "bad changeId: $DISKS"

step "snapshot 1 freezes the base disk"
run_task "<CreateSnapshot_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this><name>backup-1</name><memory>false</memory><quiesce>false</quiesce></CreateSnapshot_Task>"
expect_task_ok
SNAP1=$TASK_RESULT
props VirtualMachine "$VM" config.hardware.device
LIVE=$(q disks | awk -F'\t' '$1 == 2000 {print $2 "|" $5}')
[[ "$LIVE" == "[ds1] $VM_NAME/$VM_NAME-000001.vmdk|[ds1] $VM_NAME/$VM_NAME.vmdk" ]] || fail "live disk after snapshot: $LIVE"
props VirtualMachineSnapshot "$SNAP1" config.hardware.device
FROZEN=$(q disks | awk -F'\t' '$1 == 2000 {print $2}')
CHANGE1=$(q disks | awk -F'\t' '$1 == 2000 {print $4}')
CHANGE1B=$(q disks | awk -F'\t' '$1 == 2016 {print $4}')
[[ "$FROZEN" == "[ds1] $VM_NAME/$VM_NAME.vmdk" ]] || fail "snapshot disk is $FROZEN"
[[ -n "$CHANGE1" ]] || fail "snapshot disk has no changeId"

disks_json "$VM_NAME"
BASE_FLAT=$(dj 'D["disks"][0]["chain"][0]["flat_path"]')
LIVE_FLAT=$(dj 'D["disks"][0]["live"]["flat_path"]')
[[ "$(dj 'D["disks"][0]["chain"][0]["snapshot"]')" == "$SNAP1" ]] || fail "chain[0] not frozen by $SNAP1"
cmp -s "$BASE_FLAT" "$LIVE_FLAT" || fail "live copy differs from the frozen base"

step "QueryChangedDiskAreas '*' lists the allocated areas, in windows"
qcda "$VM" "$SNAP1" 2000 '*' "$SIZE"
((QCDA_CALLS > 1)) || fail "one call covered the whole disk; clients must loop"
python3 - "$BASE_FLAT" "$WORK/areas.txt" <<'EOF'
import sys
want, blk = [], 64 << 10
with open(sys.argv[1], "rb") as f:
    off = 0
    while True:
        b = f.read(blk)
        if not b:
            break
        if any(b):
            if want and want[-1][0] + want[-1][1] == off:
                want[-1][1] += len(b)
            else:
                want.append([off, len(b)])
        off += len(b)
got = [list(map(int, l.split())) for l in open(sys.argv[2]) if l.strip()]
assert got == want, ("allocated areas differ", got[:5], want[:5])
assert 0 < sum(n for _, n in got) < off, "expected holes and data"
EOF

step "a write to the live disk leaves the frozen base alone"
WRITE_AT=$((5 * 1024 * 1024 + 100))
python3 - "$LIVE_FLAT" "$WRITE_AT" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]))
    f.write(b"FERRY-SMOKE-WRITE!" * 200)
EOF
cmp -s "$BASE_FLAT" "$LIVE_FLAT" && fail "the write did not reach the live file"
python3 -c "
import sys
f = open('$BASE_FLAT', 'rb'); f.seek($WRITE_AT)
assert b'FERRY-SMOKE-WRITE' not in f.read(4096), 'frozen base changed'
"

step "snapshot 2; QueryChangedDiskAreas since snapshot 1 finds only the write"
run_task "<CreateSnapshot_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this><name>backup-2</name><memory>false</memory><quiesce>false</quiesce></CreateSnapshot_Task>"
expect_task_ok
SNAP2=$TASK_RESULT
props VirtualMachineSnapshot "$SNAP2" config.hardware.device
CHANGE2=$(q disks | awk -F'\t' '$1 == 2000 {print $4}')
[[ "${CHANGE2%/*}" == "${CHANGE1%/*}" && "${CHANGE2##*/}" -gt "${CHANGE1##*/}" ]] || fail "change IDs $CHANGE1 -> $CHANGE2"
qcda "$VM" "$SNAP2" 2000 "$CHANGE1" "$SIZE"
[[ "$(cat "$WORK/areas.txt")" == "$((5 * 1024 * 1024)) 65536" ]] || fail "changed areas: $(cat "$WORK/areas.txt")"
qcda "$VM" "$SNAP2" 2016 "$CHANGE1B" "$SIZE"
[[ ! -s "$WORK/areas.txt" ]] || fail "untouched disk 2016 reports changes: $(cat "$WORK/areas.txt")"

step "QueryChangedDiskAreas faults"
FOREIGN="52 00 11 22 33 44 55 66-77 88 99 aa bb cc dd ee/3"
soap "<QueryChangedDiskAreas xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this><snapshot type=\"VirtualMachineSnapshot\">$SNAP2</snapshot><deviceKey>2000</deviceKey><startOffset>0</startOffset><changeId>$FOREIGN</changeId></QueryChangedDiskAreas>"
expect_fault FileFault
soap "<QueryChangedDiskAreas xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this><snapshot type=\"VirtualMachineSnapshot\">$SNAP2</snapshot><deviceKey>2000</deviceKey><startOffset>0</startOffset><changeId>$CHANGE1B</changeId></QueryChangedDiskAreas>"
expect_fault FileFault
soap "<QueryChangedDiskAreas xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this><snapshot type=\"VirtualMachineSnapshot\">$SNAP2</snapshot><deviceKey>4000</deviceKey><startOffset>0</startOffset><changeId>*</changeId></QueryChangedDiskAreas>"
expect_fault InvalidArgument

step "DisableMethods makes RelocateVM_Task fail with MethodDisabled"
soap "<DisableMethods xmlns=\"urn:internalvim25\"><_this type=\"AuthorizationManager\">$AUTHZ</_this><entity type=\"VirtualMachine\">$VM</entity><method><method>RelocateVM_Task</method><reasonId>backup</reasonId></method><sourceId>ferry-smoke</sourceId></DisableMethods>"
expect_ok
props VirtualMachine "$VM" disabledMethod
grep -qx RelocateVM_Task <<<"$(q all string)" || fail "disabledMethod lacks RelocateVM_Task"
soap "<RelocateVM_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this><spec/></RelocateVM_Task>"
expect_fault MethodDisabled
[[ "$(q faultfield source)" == ferry-smoke ]] || fail "MethodDisabled.source is '$(q faultfield source)'"
soap "<DisableMethods xmlns=\"urn:internalvim25\"><_this type=\"AuthorizationManager\">$AUTHZ</_this><entity type=\"VirtualMachine\">$VM</entity><method><method>RelocateVM_Task</method></method><sourceId>other-backup</sourceId></DisableMethods>"
expect_fault MethodAlreadyDisabledFault
[[ "$(q faultfield sourceId)" == ferry-smoke ]] || fail "MethodAlreadyDisabledFault.sourceId is '$(q faultfield sourceId)'"
soap "<EnableMethods xmlns=\"urn:internalvim25\"><_this type=\"AuthorizationManager\">$AUTHZ</_this><entity type=\"VirtualMachine\">$VM</entity><method>RelocateVM_Task</method><sourceId>ferry-smoke</sourceId></EnableMethods>"
expect_ok
run_task "<RelocateVM_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this><spec/></RelocateVM_Task>"
expect_task_ok

step "/folder serves the frozen flat file with Range, to sessions only"
FOLDER="$BASE/folder/$VM_NAME/$VM_NAME-flat.vmdk?dcPath=$DC&dsName=ds1"
CODE=$(curl -sS --cacert "$CERT" -o /dev/null -w '%{http_code}' -r 0-15 "$FOLDER")
[[ "$CODE" == 401 ]] || fail "/folder without a session answered $CODE"
RANGE_AT=$((SIZE - 3 * 65536 + 17))
CODE=$(curl -sS --cacert "$CERT" -b "$WORK/cookies" -o "$WORK/range.bin" -w '%{http_code}' \
  -r "$RANGE_AT-$((RANGE_AT + 99999))" "$FOLDER")
[[ "$CODE" == 206 ]] || fail "/folder Range answered $CODE"
python3 -c "
f = open('$BASE_FLAT', 'rb'); f.seek($RANGE_AT); want = f.read(100000)
got = open('$WORK/range.bin', 'rb').read()
assert len(want) == 100000 and got == want and any(got), 'range bytes differ'
"

step "removing the snapshots merges the chain back into the base"
run_task "<RemoveSnapshot_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachineSnapshot\">$SNAP2</_this><removeChildren>false</removeChildren></RemoveSnapshot_Task>"
expect_task_ok
run_task "<RemoveSnapshot_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachineSnapshot\">$SNAP1</_this><removeChildren>false</removeChildren></RemoveSnapshot_Task>"
expect_task_ok
props VirtualMachine "$VM" config.hardware.device snapshot runtime.consolidationNeeded
LIVE=$(q disks | awk -F'\t' '$1 == 2000 {print $2 "|" $5}')
[[ "$LIVE" == "[ds1] $VM_NAME/$VM_NAME.vmdk|" ]] || fail "live disk after removal: $LIVE"
[[ "$(q prop runtime.consolidationNeeded)" == false ]] || fail "consolidationNeeded after a clean removal"
python3 -c "
f = open('$BASE_FLAT', 'rb'); f.seek($WRITE_AT)
assert f.read(17) == b'FERRY-SMOKE-WRITE', 'the write did not survive the merge'
"
[[ ! -e "$LIVE_FLAT" ]] || fail "delta $LIVE_FLAT left behind"

echo "vcsim smoke: OK"
