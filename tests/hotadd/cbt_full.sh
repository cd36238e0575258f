#!/usr/bin/env bash
# hotadd.cbt_full: with changed block tracking on, a full backup over hotadd
# reads only what QueryChangedDiskAreas("*") reports as allocated in the
# snapshot (the simulator's disks have holes), restores byte-identical, and
# records the snapshot disk's change ID in the manifest; with CBT off the
# whole disk is read. The guest is emulated (tests/hotadd/lib.sh).
source "$(dirname "$0")/lib.sh"

make_certs
start_repo
start_vcsim_guest
vm=$(ready "R['vms']['vm-two-disks']['moref']")
size=$(ready "R['vms']['vm-two-disks']['disks'][0]['size']")

note "CBT off: the whole disk is read"
"$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks --disk 0 --json --quiet >"$T/off.json" 2>"$T/off.log" ||
  { cat "$T/off.log"; fail "backup without CBT failed"; }
[[ $(json "$T/off.json" 'j["disks"][0]["bytes_read"]') == "$size" ]] || fail "not the whole disk: $(cat "$T/off.json")"

note "CBT on: only the allocated areas are read"
python3 "$HOTADD_TESTS/soap.py" "$T/vcready.json" cbt "$vm"
"$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks --disk 0 --json --log-level 4 >"$T/on.json" 2>"$T/on.log" ||
  { cat "$T/on.log"; fail "backup with CBT failed"; }
read_bytes=$(json "$T/on.json" 'j["disks"][0]["bytes_read"]')
[[ "$read_bytes" -lt "$size" ]] || fail "CBT's allocated areas were not used ($read_bytes of $size): $(cat "$T/on.log")"
grep -q "CBT reports" "$T/on.log" || fail "no CBT line in the log"
id=$(json "$T/on.json" 'j["backup_id"]')
"$FERRY" --config "$T/agent.conf" restore "$id" --disk 0 --output "$T/r0.img"
flat=$(ready "R['vms']['vm-two-disks']['disks'][0]['flat_path']")
cmp "$T/r0.img" "$flat" || fail "restore differs from $flat"
"$FERRY" --config "$T/agent.conf" list --json >"$T/list.json"
cid=$(python3 -c 'import json,sys; L=json.load(open(sys.argv[1])); print([b for b in L if b["id"]==sys.argv[2]][0]["disks"][0]["change_id"])' "$T/list.json" "$id")
[[ "$cid" == */* ]] || fail "no change ID recorded: '$cid'"
[[ $(vm_chain_len vm-two-disks) == 1 ]] || fail "the snapshot was not removed"
echo "hotadd cbt_full: OK"
