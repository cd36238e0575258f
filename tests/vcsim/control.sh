#!/usr/bin/env bash
# vcsim.control: the /ferry-test control endpoints and what they script:
# expired sessions and re-login, FindByUuid, injected SOAP faults and
# delays, /folder failures and truncation, writing to a disk, powering off
# for QueryChangedDiskAreas without a snapshot.
source "$(dirname "$0")/lib.sh"

start_vcsim
service_content
login
VM=$(json "R['vms']['vm-three-disks']['moref']")
SIZE=$(json "R['vms']['vm-three-disks']['disks'][0]['size']")
DC=$(json 'R["datacenter"]')

step "/ferry-test/info repeats the ready file"
control GET info >"$WORK/info.json"
[[ "$(xq "$WORK/info.json" json "R == __import__('json').load(open('$WORK/ready.json'))")" == True ]] ||
  fail "info differs from the ready file"

step "expired sessions answer NotAuthenticated until the client logs in again"
control POST expire-sessions >"$WORK/expired.json"
[[ "$(xq "$WORK/expired.json" json 'R["expired"]')" -ge 1 ]] ||
  fail "no session expired"
props_call VirtualMachine "$VM" name
expect_fault NotAuthenticated
props_call SessionManager "$SM" currentSession
expect_ok
[[ -z "$(q prop currentSession)" ]] || fail "currentSession set without a session"
CODE=$(curl -sS --cacert "$CERT" -b "$WORK/cookies" -o /dev/null -w '%{http_code}' \
  "$BASE/folder/vm-three-disks/vm-three-disks.vmdk?dcPath=$DC&dsName=ds1")
[[ "$CODE" == 401 ]] || fail "/folder with an expired session answered $CODE"
login
props VirtualMachine "$VM" name
[[ "$(q prop name)" == vm-three-disks ]] || fail "re-login did not work"

step "FindByUuid by BIOS and by instance UUID"
BIOS=$(json "R['vms']['vm-three-disks']['bios_uuid']")
INST=$(json "R['vms']['vm-three-disks']['instance_uuid']")
soap "<FindByUuid xmlns=\"urn:vim25\"><_this type=\"SearchIndex\">$SEARCH</_this><uuid>${BIOS^^}</uuid><vmSearch>true</vmSearch></FindByUuid>"
expect_ok
[[ "$(q text returnval)" == "$VM" ]] || fail "BIOS UUID found '$(q text returnval)'"
soap "<FindByUuid xmlns=\"urn:vim25\"><_this type=\"SearchIndex\">$SEARCH</_this><uuid>$INST</uuid><vmSearch>true</vmSearch><instanceUuid>true</instanceUuid></FindByUuid>"
[[ "$(q text returnval)" == "$VM" ]] || fail "instance UUID found '$(q text returnval)'"
soap "<FindByUuid xmlns=\"urn:vim25\"><_this type=\"SearchIndex\">$SEARCH</_this><uuid>$INST</uuid><vmSearch>true</vmSearch><instanceUuid>false</instanceUuid></FindByUuid>"
[[ -z "$(q text returnval)" ]] || fail "an instance UUID matched as a BIOS UUID"

step "a scripted fault fails the next CreateSnapshot_Task only"
control POST "faults?method=CreateSnapshot_Task&fault=FileFault&message=disk%20full&entity=$VM" >/dev/null
SNAP_BODY="<CreateSnapshot_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this><name>s</name><memory>false</memory><quiesce>false</quiesce></CreateSnapshot_Task>"
run_task "$SNAP_BODY"
expect_task_fault FileFault
[[ "$TASK_MESSAGE" == "disk full" ]] || fail "task message '$TASK_MESSAGE'"
props VirtualMachine "$VM" snapshot
[[ -z "$(q prop snapshot)" ]] || fail "the failed snapshot exists"
control POST faults -d '{"method":"RemoveSnapshot_Task","fault":"TaskInProgress","in_call":true}' >/dev/null
control GET faults >"$WORK/faults.json"
[[ "$(xq "$WORK/faults.json" json 'len(R)')" == 1 ]] || fail "rule list"
run_task "$SNAP_BODY"
expect_task_ok
SNAP=$TASK_RESULT
soap "<RemoveSnapshot_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachineSnapshot\">$SNAP</_this><removeChildren>false</removeChildren></RemoveSnapshot_Task>"
expect_fault TaskInProgress
run_task "<RemoveSnapshot_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachineSnapshot\">$SNAP</_this><removeChildren>false</removeChildren></RemoveSnapshot_Task>"
expect_task_ok
CODE=$(curl -sS --cacert "$CERT" -o /dev/null -w '%{http_code}' -X POST "$CONTROL/faults?method=Login&fault=NoSuchFault")
[[ "$CODE" == 400 ]] || fail "an unknown fault type was accepted ($CODE)"

step "a delay rule stalls the call"
control POST "faults?method=RetrievePropertiesEx&delay_ms=700" >/dev/null
T0=$(date +%s%N)
props VirtualMachine "$VM" name
T1=$(date +%s%N)
(((T1 - T0) / 1000000 >= 700)) || fail "the call was not delayed"

step "/folder: injected status and a transfer cut short"
FOLDER="$BASE/folder/vm-three-disks/vm-three-disks-flat.vmdk?dcPath=$DC&dsName=ds2"
control POST "faults?method=folder&status=503" >/dev/null
CODE=$(curl -sS --cacert "$CERT" -b "$WORK/cookies" -o /dev/null -w '%{http_code}' "$FOLDER")
[[ "$CODE" == 503 ]] || fail "injected status: $CODE"
control POST "faults?method=folder&truncate_after=1000000" >/dev/null
set +e
curl -sS --cacert "$CERT" -b "$WORK/cookies" -o "$WORK/cut.bin" "$FOLDER" 2>/dev/null
RC=$?
set -e
[[ $RC -ne 0 ]] || fail "a truncated transfer looked complete"
(($(stat -c %s "$WORK/cut.bin") <= 1000000)) || fail "more than the allowed bytes arrived"
CODE=$(curl -sS --cacert "$CERT" -b "$WORK/cookies" -o "$WORK/full.bin" -w '%{http_code}' "$FOLDER")
[[ "$CODE" == 200 ]] && cmp -s "$WORK/full.bin" "$(json "R['datastores']['ds2']")/vm-three-disks/vm-three-disks-flat.vmdk" ||
  fail "the full download after the rules ($CODE) differs"

CODE=$(curl -sS --cacert "$CERT" -b "$WORK/cookies" -o /dev/null -w '%{http_code}' \
  "$BASE/folder/vm-three-disks/vm-three-disks-flat.vmdk?dcPath=$DC&dsName=ds9")
[[ "$CODE" == 404 ]] || fail "/folder with an unknown datastore answered $CODE"

step "DisableMethods argument faults"
soap "<DisableMethods xmlns=\"urn:internalvim25\"><_this type=\"AuthorizationManager\">$AUTHZ</_this><entity type=\"VirtualMachine\">vm-9999</entity><method><method>RelocateVM_Task</method></method><sourceId>x</sourceId></DisableMethods>"
expect_fault ManagedObjectNotFound
soap "<DisableMethods xmlns=\"urn:internalvim25\"><_this type=\"AuthorizationManager\">$AUTHZ</_this><entity type=\"VirtualMachine\">$VM</entity><method><method>RelocateVM_Task</method></method><sourceId></sourceId></DisableMethods>"
expect_fault InvalidArgument

step "write endpoint, power off, QueryChangedDiskAreas without a snapshot"
run_task "<ReconfigVM_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this><spec><changeTrackingEnabled>true</changeTrackingEnabled></spec></ReconfigVM_Task>"
expect_task_ok
props VirtualMachine "$VM" config.hardware.device
CHANGE=$(q disks | awk -F'\t' '$1 == 3000 {print $4}')
head -c 200000 /dev/urandom >"$WORK/blob"
control POST "write?vm=vm-three-disks&disk=3000&offset=$((SIZE - 200000))" --data-binary @"$WORK/blob" >/dev/null
soap "<QueryChangedDiskAreas xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this><deviceKey>3000</deviceKey><startOffset>0</startOffset><changeId>$CHANGE</changeId></QueryChangedDiskAreas>"
expect_fault FileFault
control POST "power?vm=vm-three-disks&state=off" >/dev/null
props VirtualMachine "$VM" runtime.powerState
[[ "$(q prop runtime.powerState)" == poweredOff ]] || fail "power state $(q prop runtime.powerState)"
OFF=0
AREAS=""
while ((OFF < SIZE)); do
  soap "<QueryChangedDiskAreas xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$VM</_this><deviceKey>3000</deviceKey><startOffset>$OFF</startOffset><changeId>$CHANGE</changeId></QueryChangedDiskAreas>"
  expect_ok
  read -r S L <<<"$(q areas | sed -n 1p)"
  AREAS+=$(q areas | sed -n '2,$p')
  OFF=$((S + L))
done
FIRST=$(((SIZE - 200000) / 65536 * 65536))
[[ "$(tr '\n' ' ' <<<"$AREAS" | xargs)" == "$FIRST $((SIZE - FIRST))" ]] || fail "changed areas: $AREAS"
control POST "power?vm=vm-three-disks&state=on" >/dev/null
CODE=$(curl -sS --cacert "$CERT" -o /dev/null -w '%{http_code}' -X POST "$CONTROL/write?vm=vm-three-disks&disk=3000&offset=$SIZE" --data-binary @"$WORK/blob")
[[ "$CODE" == 400 ]] || fail "a write past the end answered $CODE"

step "a destroyed inventory VM leaves the harness too"
IVM=$(json "R['vms']['vm-independent']['moref']")
run_task "<Destroy_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$IVM</_this></Destroy_Task>"
expect_task_fault InvalidPowerState
control POST "power?vm=vm-independent&state=off" >/dev/null
run_task "<Destroy_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$IVM</_this></Destroy_Task>"
expect_task_ok
CODE=$(curl -sS --cacert "$CERT" -o /dev/null -w '%{http_code}' "$CONTROL/disks?vm=vm-independent")
[[ "$CODE" == 404 ]] || fail "disks of a destroyed VM answered $CODE"
[[ ! -e "$(json "R['vms']['vm-independent']['disks'][0]['flat_path']")" ]] || fail "destroy left the disk file"

echo "vcsim control: OK"
