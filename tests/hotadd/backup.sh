#!/usr/bin/env bash
# hotadd.backup: a full backup over hotadd of a VM with two disks on two
# controllers (LSI Logic bus 0, paravirtual bus 1), restored byte-identical;
# afterwards nothing is left: no disk on the proxy, no snapshot, no loop
# device, no journal entry. The guest is emulated (tests/hotadd/lib.sh).
source "$(dirname "$0")/lib.sh"

make_certs
start_repo
start_vcsim_guest

note "backup vm-two-disks over hotadd"
"$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks --transport hotadd --json --log-level 4 \
  >"$T/backup.json" 2>"$T/agent.log" || { cat "$T/agent.log"; fail "backup failed"; }
id=$(json "$T/backup.json" 'j["backup_id"]')
[[ $(json "$T/backup.json" 'len(j["disks"])') == 2 ]] || fail "not two disks: $(cat "$T/backup.json")"
for i in 0 1; do
  [[ $(json "$T/backup.json" "j['disks'][$i]['transport']") == hotadd ]] || fail "disk $i not read over hotadd"
done
grep -q "attached \[ds1\] vm-two-disks/vm-two-disks.vmdk" "$T/agent.log" || fail "no attach logged: $(cat "$T/agent.log")"
grep -q "is $T/guest/dev/sd[b-z] in the guest" "$T/agent.log" || fail "not found in the guest: $(cat "$T/agent.log")"
[[ -d "$T/run" && -z "$(ls -A "$T/run")" ]] || fail "udev guard markers not made or not removed: $(ls -A "$T/run" 2>&1)"

note "restore both disks and compare with the frozen files"
for i in 0 1; do
  flat=$(ready "R['vms']['vm-two-disks']['disks'][$i]['flat_path']")
  "$FERRY" --config "$T/agent.conf" restore "$id" --disk $i --output "$T/r$i.img"
  cmp "$T/r$i.img" "$flat" || fail "disk $i differs from $flat"
done
"$FERRY" --config "$T/agent.conf" list --json >"$T/list.json"
[[ $(json "$T/list.json" 'j[0]["disks"][1]["label"]') == "[ds1] vm-two-disks/vm-two-disks_1.vmdk" ]] ||
  fail "disk label: $(json "$T/list.json" 'j[0]["disks"]')"

note "nothing left behind"
[[ $(proxy_disk_count_vs) == 1 ]] || fail "the proxy still has $(proxy_disk_count_vs) disks"
[[ $(vm_chain_len vm-two-disks) == 1 ]] || fail "the snapshot was not removed"
[[ $(our_loops) == 0 ]] || fail "loop devices left: $(losetup -l)"
[[ $(journal_entries) == 0 ]] || fail "journal not empty: $(cat "$T/state/journal")"
grep -q "	own	" "$T/state/journal" || fail "the proxy's own disk was not recorded"
ls "$T/guest/sys/block" | grep -qx sda || fail "the proxy's own disk left the guest"
[[ $(ls "$T/guest/sys/block") == sda ]] || fail "devices left in the guest: $(ls "$T/guest/sys/block")"
echo "hotadd backup: OK"
