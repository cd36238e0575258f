#!/usr/bin/env bash
# vcsim.esx: ferry-vcsim --esx, the "connected straight to a host" case:
# apiType HostAgent, no DisableMethods, while snapshots, change tracking
# and /folder work as on vCenter.
source "$(dirname "$0")/lib.sh"

start_vcsim --esx
service_content
[[ "$API_TYPE" == HostAgent ]] || fail "apiType $API_TYPE"
[[ "$(json 'R["username"]')" == root ]] || fail "default user on ESXi is not root"
[[ "$(json 'len(R["hosts"])')" == 1 ]] || fail "ESXi mode has more than one host"
[[ "$(json 'sorted(list(R["hosts"].values())[0]["datastores"])')" == "['ds1', 'ds2']" ]] || fail "datastores of the host"
login
VM=$(json "R['vms']['vm-three-disks']['moref']")
SIZE=$(json "R['vms']['vm-three-disks']['disks'][1]['size']")
DC=$(json 'R["datacenter"]')

step "DisableMethods and EnableMethods are vCenter-only"
soap "<DisableMethods xmlns=\"urn:internalvim25\"><_this type=\"AuthorizationManager\">$AUTHZ</_this><entity type=\"VirtualMachine\">$VM</entity><method><method>RelocateVM_Task</method></method><sourceId>ferry-esx</sourceId></DisableMethods>"
expect_fault NotSupported
soap "<EnableMethods xmlns=\"urn:internalvim25\"><_this type=\"AuthorizationManager\">$AUTHZ</_this><entity type=\"VirtualMachine\">$VM</entity><method>RelocateVM_Task</method><sourceId>ferry-esx</sourceId></EnableMethods>"
expect_fault NotSupported

step "change tracking, snapshot and QueryChangedDiskAreas on the ds2 disk"
run_task "<ReconfigVM_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this><spec><changeTrackingEnabled>true</changeTrackingEnabled></spec></ReconfigVM_Task>"
expect_task_ok
run_task "<CreateSnapshot_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this><name>esx</name><memory>false</memory><quiesce>false</quiesce></CreateSnapshot_Task>"
expect_task_ok
SNAP=$TASK_RESULT
props VirtualMachineSnapshot "$SNAP" config.hardware.device
[[ "$(q disks | awk -F'\t' '$1 == 2001 {print $2}')" == "[ds2] vm-three-disks/vm-three-disks.vmdk" ]] || fail "ds2 disk: $(q disks)"
CHANGE=$(q disks | awk -F'\t' '$1 == 2001 {print $4}')
control POST "write?vm=vm-three-disks&disk=2001&offset=0" --data-binary "esx was here" >/dev/null
run_task "<CreateSnapshot_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this><name>esx-2</name><memory>false</memory><quiesce>false</quiesce></CreateSnapshot_Task>"
expect_task_ok
qcda "$VM" "$TASK_RESULT" 2001 "$CHANGE" "$SIZE"
[[ "$(cat "$WORK/areas.txt")" == "0 65536" ]] || fail "changed areas: $(cat "$WORK/areas.txt")"

step "reverting to the newest snapshot restores its data; older ones are refused"
control POST "write?vm=vm-three-disks&disk=2001&offset=0" --data-binary "overwritten!" >/dev/null
run_task "<RevertToCurrentSnapshot_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this></RevertToCurrentSnapshot_Task>"
expect_task_ok
disks_json vm-three-disks
[[ "$(head -c 12 "$(dj 'D["disks"][1]["live"]["flat_path"]')")" == "esx was here" ]] || fail "revert did not restore the data"
run_task "<RevertToSnapshot_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachineSnapshot\">$SNAP</_this></RevertToSnapshot_Task>"
expect_task_fault NotSupported

step "/folder on the host"
CODE=$(curl -sS --cacert "$CERT" -b "$WORK/cookies" -o "$WORK/head.bin" -w '%{http_code}' -r 0-11 \
  "$BASE/folder/vm-three-disks/vm-three-disks-000001-flat.vmdk?dcPath=$DC&dsName=ds2")
[[ "$CODE" == 206 && "$(cat "$WORK/head.bin")" == "esx was here" ]] || fail "/folder answered $CODE: $(head -c 40 "$WORK/head.bin")"

echo "vcsim esx: OK"
