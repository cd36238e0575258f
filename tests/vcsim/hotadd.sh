#!/usr/bin/env bash
# vcsim.hotadd: the hot-add life cycle against ferry-vcsim: attach a frozen
# snapshot disk to the proxy, the locks and slot checks a real host makes,
# removing the snapshot while the disk is attached (consolidation needed),
# consolidating after detaching; independent disks; CBT with snapshots.
source "$(dirname "$0")/lib.sh"

start_vcsim
service_content
login
VM=$(json "R['vms']['vm-two-disks']['moref']")
PROXY=$(json "R['vms']['ferry-proxy']['moref']")
UUID=$(json "R['vms']['vm-two-disks']['disks'][0]['uuid']")

# attach_body FILE UNIT MODE [CONTROLLER]: a ReconfigVM_Task that hot-adds
# FILE to the proxy (paravirtual controller 1000 by default), without
# fileOperation.
attach_body() {
  echo "<ReconfigVM_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$PROXY</_this><spec><deviceChange><operation>add</operation><device xsi:type=\"VirtualDisk\"><key>-100</key><backing xsi:type=\"VirtualDiskFlatVer2BackingInfo\"><fileName>$1</fileName><diskMode>$3</diskMode></backing><controllerKey>${4:-1000}</controllerKey><unitNumber>$2</unitNumber><capacityInKB>0</capacityInKB></device></deviceChange></spec></ReconfigVM_Task>"
}

step "snapshot the target"
run_task "<CreateSnapshot_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this><name>hotadd</name><memory>false</memory><quiesce>false</quiesce></CreateSnapshot_Task>"
expect_task_ok
SNAP=$TASK_RESULT
BASE="[ds1] vm-two-disks/vm-two-disks.vmdk"
DELTA="[ds1] vm-two-disks/vm-two-disks-000001.vmdk"

step "the host refuses unit 7, a taken unit, the live delta, and a writable frozen disk"
run_task "$(attach_body "$BASE" 7 independent_nonpersistent)"
expect_task_fault InvalidDeviceSpec
run_task "$(attach_body "$BASE" 0 independent_nonpersistent)"
expect_task_fault InvalidDeviceSpec
run_task "$(attach_body "$DELTA" 1 independent_nonpersistent)"
expect_task_fault FileLocked
run_task "$(attach_body "$BASE" 1 persistent)"
expect_task_fault FileLocked
run_task "$(attach_body "$BASE" 1 independent_nonpersistent 200)"
expect_task_fault DeviceHotPlugNotSupported
# The proxy's host (esx1) does not mount ds2.
run_task "$(attach_body "[ds2] vm-three-disks/vm-three-disks.vmdk" 1 independent_nonpersistent)"
expect_task_fault FileNotFound

step "hot-add the frozen base read-only"
run_task "$(attach_body "$BASE" 1 independent_nonpersistent)"
expect_task_ok
props VirtualMachine "$PROXY" config.hardware.device
ADDED=$(q disks | awk -F'\t' -v f="$BASE" '$2 == f')
[[ -n "$ADDED" ]] || fail "no disk with $BASE on the proxy: $(q disks)"
[[ "$(cut -f3 <<<"$ADDED")" == "$UUID" ]] || fail "hot-added disk uuid $(cut -f3 <<<"$ADDED"), want $UUID"
[[ "$(cut -f7 <<<"$ADDED")" == 1 ]] || fail "hot-added disk not on unit 1"
ADDED_KEY=$(cut -f1 <<<"$ADDED")
grep -qx "$(json "R['vms']['vm-two-disks']['disks'][0]['size']")" <<<"$(q all capacityInBytes)" ||
  fail "hot-added disk has no capacity"

step "removing the snapshot while attached leaves consolidation needed"
run_task "<RemoveSnapshot_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachineSnapshot\">$SNAP</_this><removeChildren>false</removeChildren></RemoveSnapshot_Task>"
expect_task_ok
props VirtualMachine "$VM" runtime.consolidationNeeded snapshot config.hardware.device
[[ "$(q prop runtime.consolidationNeeded)" == true ]] || fail "consolidationNeeded not set"
[[ -z "$(q prop snapshot)" ]] || fail "the snapshot is still listed"
LIVE=$(q disks | awk -F'\t' '$1 == 2000 {print $2 "|" $5}')
[[ "$LIVE" == "$DELTA|$BASE" ]] || fail "live disk while the merge is blocked: $LIVE"
disks_json vm-two-disks
[[ "$(dj 'D["disks"][0]["chain"][0].get("orphan")')" == True ]] || fail "base not an orphan"
# The other disk was not attached anywhere and merged normally.
[[ "$(dj 'len(D["disks"][1]["chain"])')" == 1 ]] || fail "disk 2016 did not merge"

step "ConsolidateVMDisks_Task fails with FileLocked while the proxy holds the disk"
run_task "<ConsolidateVMDisks_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this></ConsolidateVMDisks_Task>"
expect_task_fault FileLocked
[[ "$TASK_MESSAGE" == *"$BASE"* ]] || fail "FileLocked message does not name the file: $TASK_MESSAGE"

step "detach without fileOperation, then consolidate"
run_task "<ReconfigVM_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$PROXY</_this><spec><deviceChange><operation>remove</operation><device xsi:type=\"VirtualDisk\"><key>$ADDED_KEY</key><controllerKey>1000</controllerKey><unitNumber>1</unitNumber><capacityInKB>0</capacityInKB></device></deviceChange></spec></ReconfigVM_Task>"
expect_task_ok
[[ -s "$(json "R['vms']['vm-two-disks']['disks'][0]['flat_path']")" ]] || fail "detach deleted the source disk"
run_task "<ConsolidateVMDisks_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this></ConsolidateVMDisks_Task>"
expect_task_ok
props VirtualMachine "$VM" runtime.consolidationNeeded config.hardware.device
[[ "$(q prop runtime.consolidationNeeded)" == false ]] || fail "consolidationNeeded still set"
LIVE=$(q disks | awk -F'\t' '$1 == 2000 {print $2 "|" $5}')
[[ "$LIVE" == "$BASE|" ]] || fail "live disk after consolidation: $LIVE"

step "the consolidation flag can be set by hand and consolidated away"
control POST "consolidation-needed?vm=vm-two-disks" >/dev/null
props VirtualMachine "$VM" runtime.consolidationNeeded
[[ "$(q prop runtime.consolidationNeeded)" == true ]] || fail "control endpoint did not set the flag"
run_task "<ConsolidateVMDisks_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this></ConsolidateVMDisks_Task>"
expect_task_ok
props VirtualMachine "$VM" runtime.consolidationNeeded
[[ "$(q prop runtime.consolidationNeeded)" == false ]] || fail "flag not cleared"

step "a disk created with fileOperation=create gets real files and a UUID"
run_task "<ReconfigVM_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$PROXY</_this><spec><deviceChange><operation>add</operation><fileOperation>create</fileOperation><device xsi:type=\"VirtualDisk\"><key>-101</key><backing xsi:type=\"VirtualDiskFlatVer2BackingInfo\"><fileName>[ds1] ferry-proxy/scratch.vmdk</fileName><diskMode>persistent</diskMode><thinProvisioned>true</thinProvisioned></backing><controllerKey>1000</controllerKey><unitNumber>2</unitNumber><capacityInKB>2048</capacityInKB></device></deviceChange></spec></ReconfigVM_Task>"
expect_task_ok
props VirtualMachine "$PROXY" config.hardware.device
NEWUUID=$(q disks | awk -F'\t' '$2 == "[ds1] ferry-proxy/scratch.vmdk" {print $3}')
[[ "$NEWUUID" == 6000C29* ]] || fail "created disk uuid '$NEWUUID'"
DS1=$(json "R['datastores']['ds1']")
[[ "$(stat -c %s "$DS1/ferry-proxy/scratch-flat.vmdk")" == 2097152 ]] || fail "created extent size"
grep -q "^RW 4096 VMFS \"scratch-flat.vmdk\"" "$DS1/ferry-proxy/scratch.vmdk" || fail "created descriptor: $(cat "$DS1/ferry-proxy/scratch.vmdk")"

step "independent disks stay out of snapshots and change tracking"
IVM=$(json "R['vms']['vm-independent']['moref']")
run_task "<ReconfigVM_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$IVM</_this><spec><changeTrackingEnabled>true</changeTrackingEnabled></spec></ReconfigVM_Task>"
expect_task_ok
run_task "<CreateSnapshot_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$IVM</_this><name>i</name><memory>false</memory><quiesce>false</quiesce></CreateSnapshot_Task>"
expect_task_ok
ISNAP=$TASK_RESULT
props VirtualMachine "$IVM" config.hardware.device
q disks >"$WORK/idisks.txt"
grep -q "^2000	\[ds1\] vm-independent/vm-independent-000001.vmdk	" "$WORK/idisks.txt" || fail "normal disk not on a delta: $(cat "$WORK/idisks.txt")"
grep -q "^2001	\[ds1\] vm-independent/vm-independent_1.vmdk	[^	]*		" "$WORK/idisks.txt" || fail "independent disk moved or tracked: $(cat "$WORK/idisks.txt")"
props VirtualMachineSnapshot "$ISNAP" config.hardware.device
grep -q "^2001	\[ds1\] vm-independent/vm-independent_1.vmdk	" <<<"$(q disks)" || fail "snapshot does not show the independent disk's live file"
soap "<QueryChangedDiskAreas xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$IVM</_this><snapshot type=\"VirtualMachineSnapshot\">$ISNAP</snapshot><deviceKey>2001</deviceKey><startOffset>0</startOffset><changeId>*</changeId></QueryChangedDiskAreas>"
expect_fault InvalidArgument

step "change tracking cannot be toggled while snapshots exist"
run_task "<ReconfigVM_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$IVM</_this><spec><changeTrackingEnabled>false</changeTrackingEnabled></spec></ReconfigVM_Task>"
expect_task_fault InvalidState
run_task "<RemoveAllSnapshots_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$IVM</_this></RemoveAllSnapshots_Task>"
expect_task_ok
run_task "<ReconfigVM_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$IVM</_this><spec><changeTrackingEnabled>false</changeTrackingEnabled></spec></ReconfigVM_Task>"
expect_task_ok
props VirtualMachine "$IVM" config.hardware.device
[[ -z "$(q disks | cut -f4 | tr -d '\n')" ]] || fail "change IDs left after disabling tracking"

echo "vcsim hotadd: OK"
