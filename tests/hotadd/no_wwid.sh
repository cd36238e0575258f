#!/usr/bin/env bash
# hotadd.no_wwid: a proxy without disk.EnableUUID (ferry-vcsim
# --guest-no-wwid: no disk in the guest has a device/wwid). The attached
# disk is found by its controller's PCI slot (slotInfo.pciSlotNumber ->
# sys/bus/pci/slots/N/address) and its unit (the SCSI target in the path
# sys/block/sdX/device resolves to); the backup restores byte-identical.
# After a crash, cleanup finds the disk in the guest the same way and
# removes it there before the detach. Without the slots in the guest, the
# job fails saying what is missing and leaves nothing.
source "$(dirname "$0")/lib.sh"

make_certs
start_repo
start_vcsim_guest --guest-no-wwid
[[ ! -e "$T/guest/sys/block/sda/device/wwid" ]] || fail "the emulated guest still shows wwids"

note "backup vm-two-disks found by PCI slot and unit"
"$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks --transport hotadd --json --log-level 4 \
  >"$T/backup.json" 2>"$T/agent.log" || { cat "$T/agent.log"; fail "backup failed"; }
[[ $(grep -c "no wwids in the guest; sd[b-z] found by PCI slot 160 (0000:03:00) unit [0-9]*" "$T/agent.log") == 2 ]] ||
  fail "not found by PCI slot: $(cat "$T/agent.log")"
id=$(json "$T/backup.json" 'j["backup_id"]')
for i in 0 1; do
  flat=$(ready "R['vms']['vm-two-disks']['disks'][$i]['flat_path']")
  "$FERRY" --config "$T/agent.conf" restore "$id" --disk $i --output "$T/r$i.img"
  cmp "$T/r$i.img" "$flat" || fail "disk $i differs from $flat"
done
[[ $(proxy_disk_count_vs) == 1 ]] || fail "the proxy still has $(proxy_disk_count_vs) disks"
[[ $(our_loops) == 0 ]] || fail "loop devices left: $(losetup -l)"
[[ $(journal_entries) == 0 ]] || fail "journal not empty: $(cat "$T/state/journal")"

note "crash with a disk in the guest: cleanup finds it by PCI slot, removes it from the guest first"
before=$(wc -l <"$T/vcsim.log")
touch "$T/hold"
FERRY_HOTADD_TEST_HOLD="$T/hold" "$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks \
  >/dev/null 2>"$T/crash.log" &
pid=$!
CLEANUP_CMDS+=("kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null")
for _ in $(seq 1 200); do
  grep -qP '\tattach\t[0-9]+\t[0-9]+\t' "$T/state/journal" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || fail "agent exited early: $(cat "$T/crash.log")"
  sleep 0.05
done
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
rm -f "$T/hold"
echo "- - -" >"$T/guest/sys/class/scsi_host/host0/scan"
for _ in $(seq 1 100); do [[ -e "$T/guest/sys/block/sdb" ]] && break; sleep 0.05; done
[[ -e "$T/guest/sys/block/sdb" ]] || fail "the attached disk did not appear in the guest"
"$AGENT" cleanup --config "$T/agent.conf" >"$T/cleanup.out" 2>"$T/cleanup.log" || fail "cleanup: $(cat "$T/cleanup.log")"
grep -q "detached \[ds1\] vm-two-disks/vm-two-disks.vmdk" "$T/cleanup.out" || fail "cleanup: $(cat "$T/cleanup.out")"
tail -n +"$((before + 1))" "$T/vcsim.log" | grep -q "sdb withdrawn" || fail "the disk was not removed from the guest"
tail -n +"$((before + 1))" "$T/vcsim.log" | grep -q "removed from the proxy while still in the guest" && fail "cleanup detached the disk from under the guest"
[[ $(ls "$T/guest/sys/block") == sda ]] || fail "devices left in the guest: $(ls "$T/guest/sys/block")"
[[ $(proxy_disk_count_vs) == 1 ]] || fail "the proxy still has $(proxy_disk_count_vs) disks"
[[ $(journal_entries) == 0 ]] || fail "journal not empty: $(cat "$T/state/journal")"

note "no PCI slots in the guest either: the job fails and says so"
rm -r "$T/guest/sys/bus/pci/slots"
"$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks --transport hotadd \
  --set ferry.hotadd.discoverTimeoutSeconds=2 >/dev/null 2>"$T/fail.log" &&
  fail "the backup succeeded without a way to find the disk"
grep -q "has a device/wwid, and none sits at the attached disk's PCI slot 160 (not in sys/bus/pci/slots) unit [0-9]*: the proxy VM needs disk.EnableUUID=TRUE" "$T/fail.log" ||
  fail "message: $(cat "$T/fail.log")"
[[ $(proxy_disk_count_vs) == 1 ]] || fail "the proxy still has $(proxy_disk_count_vs) disks"
[[ $(vm_chain_len vm-two-disks) == 1 ]] || fail "the snapshot was not removed"
[[ $(our_loops) == 0 ]] || fail "loop devices left: $(losetup -l)"
[[ $(journal_entries) == 0 ]] || fail "journal not empty: $(cat "$T/state/journal")"
[[ $(ls "$T/guest/sys/block") == sda ]] || fail "devices left in the guest: $(ls "$T/guest/sys/block")"
echo "hotadd no_wwid: OK"
