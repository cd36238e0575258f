#!/usr/bin/env bash
# hotadd.cbt_incr: CBT incrementals end to end on the simulated vCenter
# (govmomi's simulator extended in tests/vcsim: its QueryChangedDiskAreas
# compares real block contents of the disk files between change IDs). The
# proxy's guest is emulated (tests/hotadd/lib.sh); the agent, the
# repository and the disk reads are the production code.
#
# A full backup, then writes to both disks, then an incremental: only the
# changed areas are read, every other block comes from the parent manifest,
# and each backup restores to the disk as it was at its time. Then the
# fallbacks, each read in full with its reason: --full, a change ID from
# before a CBT reset, a disk that grew, a disk that moved (the simulator's
# /ferry-test/resize and /ferry-test/move play the admin).
source "$(dirname "$0")/lib.sh"

make_certs
start_repo
start_vcsim_guest
vm=$(ready "R['vms']['vm-two-disks']['moref']")
key0=$(ready "R['vms']['vm-two-disks']['disks'][0]['key']")
key1=$(ready "R['vms']['vm-two-disks']['disks'][1]['key']")
size=$(ready "R['vms']['vm-two-disks']['disks'][0]['size']")

# copy_live N OUT: the disk's live flat file as it is now.
copy_live() {
  local flat
  flat=$(control GET "disks?vm=vm-two-disks" |
    python3 -c "import json,sys; print(json.load(sys.stdin)['disks'][$1]['live']['flat_path'])")
  cp --sparse=always "$flat" "$2"
}
backup() { # backup OUT.json [ARGS...]
  local out=$1
  shift
  "$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks --json --quiet "$@" >"$out" 2>"$out.log" ||
    { cat "$out.log"; fail "backup $* failed"; }

}
d() { json "$1" "j['disks'][$2]['$3']"; }
# write_disk KEY OFFSET FILE: the guest writes FILE into the live disk.
write_disk() {
  curl -sS -k --fail -X POST --data-binary @"$3" \
    "$(ready "R['control']")/write?vm=vm-two-disks&disk=$1&offset=$2" >/dev/null ||
    fail "write to disk $1 failed"
}

note "CBT off, --enable-cbt: enabled and said so; a full backup, no parent yet"
backup "$T/b1.json" --enable-cbt
grep -q "changed block tracking enabled" <<<"$(json "$T/b1.json" 'j["notes"]')" ||
  fail "enabling CBT not noted: $(cat "$T/b1.json")"
control GET "disks?vm=vm-two-disks" | grep -q '"change_tracking": *true' || fail "CBT not enabled"
[[ $(d "$T/b1.json" 0 incremental) == False ]] || fail "first backup incremental: $(cat "$T/b1.json")"
[[ $(d "$T/b1.json" 0 full_reason) == "no earlier backup of vm-two-disks" ]] ||
  fail "reason for the full read: $(d "$T/b1.json" 0 full_reason)"
id1=$(json "$T/b1.json" 'j["backup_id"]')
copy_live 0 "$T/t1-d0.img"
copy_live 1 "$T/t1-d1.img"

note "the guest writes: 64 KiB and 4 KiB on disk 0, 1 MiB on disk 1"
head -c 65536 /dev/urandom >"$T/w1"
head -c 4096 /dev/urandom >"$T/w2"
head -c 1048576 /dev/urandom >"$T/w3"
write_disk "$key0" $((5 * 1048576 + 8192)) "$T/w1"
write_disk "$key0" $((40 * 1048576)) "$T/w2"
write_disk "$key1" $((3 * 1048576)) "$T/w3"
copy_live 0 "$T/t2-d0.img"
copy_live 1 "$T/t2-d1.img"
cmp -s "$T/t1-d0.img" "$T/t2-d0.img" && fail "the writes did not land"
# The simulator gives the snapshot after enabling CBT change IDs at once
# (vCenter does after the stun of that snapshot), so the first backup
# already recorded them.

note "incremental: only the changed areas are read"
backup "$T/b2.json"
cat "$T/b2.json"
id2=$(json "$T/b2.json" 'j["backup_id"]')
[[ $(json "$T/b2.json" 'j["parent_id"]') == "$id1" ]] || fail "parent is not $id1"
for i in 0 1; do
  [[ $(d "$T/b2.json" $i incremental) == True ]] || fail "disk $i not incremental: $(d "$T/b2.json" $i full_reason)"
done
# 1 MiB blocks: two blocks changed on disk 0, one on disk 1.
[[ $(d "$T/b2.json" 0 bytes_read) -gt 0 && $(d "$T/b2.json" 0 bytes_read) -le $((2 * 1048576)) ]] ||
  fail "disk 0 read $(d "$T/b2.json" 0 bytes_read) bytes for two changed blocks"
[[ $(d "$T/b2.json" 1 bytes_read) -gt 0 && $(d "$T/b2.json" 1 bytes_read) -le 1048576 ]] ||
  fail "disk 1 read $(d "$T/b2.json" 1 bytes_read) bytes for one changed block"
[[ $(( $(d "$T/b2.json" 0 bytes_unchanged) + $(d "$T/b2.json" 0 bytes_read) )) -ge $((size - 2 * 1048576)) ]] ||
  fail "disk 0: unchanged blocks not taken from the parent"

note "each backup restores to the disk at its time"
for id in 1 2; do
  bid=$id1; [[ $id == 2 ]] && bid=$id2
  for i in 0 1; do
    "$FERRY" --config "$T/agent.conf" restore "$bid" --disk $i --output "$T/r$id-d$i.img"
    cmp "$T/r$id-d$i.img" "$T/t$id-d$i.img" || fail "backup $id disk $i differs from the disk at its time"
  done
done
"$FERRY" --config "$T/agent.conf" list --json >"$T/list.json"
python3 - "$T/list.json" "$id2" "$id1" <<'PY' || fail "listing: $(cat "$T/list.json")"
import json, sys
L = {b["id"]: b for b in json.load(open(sys.argv[1]))}
b = L[sys.argv[2]]
assert b["parent_id"] == sys.argv[3], b
assert all(d["disk_id"] for d in b["disks"]), b
PY

note "--full: read in full, and said why"
backup "$T/b3.json" --full
[[ $(d "$T/b3.json" 0 incremental) == False ]] || fail "--full was incremental"
[[ $(d "$T/b3.json" 0 full_reason) == "a full backup was asked for" ]] || fail "reason: $(d "$T/b3.json" 0 full_reason)"
[[ $(json "$T/b3.json" 'j["parent_id"]') == "" ]] || fail "--full has a parent"

note "CBT reset (off and on): the stored change ID is foreign, full read"
python3 "$HOTADD_TESTS/soap.py" "$T/vcready.json" cbt-off "$vm"
python3 "$HOTADD_TESTS/soap.py" "$T/vcready.json" cbt "$vm"
backup "$T/b4.json" --incremental
[[ $(d "$T/b4.json" 0 incremental) == False ]] || fail "incremental across a CBT reset"
grep -q "reset" <<<"$(d "$T/b4.json" 0 full_reason)" || fail "reason: $(d "$T/b4.json" 0 full_reason)"
id4=$(json "$T/b4.json" 'j["backup_id"]')
"$FERRY" --config "$T/agent.conf" restore "$id4" --disk 0 --output "$T/r4-d0.img"
cmp "$T/r4-d0.img" "$T/t2-d0.img" || fail "backup after the reset differs"

note "disk 1 grows by 16 MiB: read in full and said why; disk 0 stays incremental"
curl -sS -k --fail -X POST "$(ready "R['control']")/resize?vm=vm-two-disks&disk=$key1&size=$((size + 16 * 1048576))" >/dev/null ||
  fail "resize failed"
head -c 4096 /dev/urandom >"$T/w4"
write_disk "$key1" $((size + 8 * 1048576)) "$T/w4"
copy_live 1 "$T/t5-d1.img"
backup "$T/b5.json" --incremental
[[ $(d "$T/b5.json" 0 incremental) == True ]] || fail "disk 0: $(d "$T/b5.json" 0 full_reason)"
[[ $(d "$T/b5.json" 0 bytes_read) == 0 ]] || fail "disk 0 read $(d "$T/b5.json" 0 bytes_read) bytes, nothing changed"
[[ $(d "$T/b5.json" 1 incremental) == False ]] || fail "a resized disk was read incrementally"
grep -q "resized from $size to $((size + 16 * 1048576)) bytes" <<<"$(d "$T/b5.json" 1 full_reason)" ||
  fail "reason: $(d "$T/b5.json" 1 full_reason)"
id5=$(json "$T/b5.json" 'j["backup_id"]')
"$FERRY" --config "$T/agent.conf" restore "$id5" --disk 1 --output "$T/r5-d1.img"
cmp "$T/r5-d1.img" "$T/t5-d1.img" || fail "the resized disk's backup differs"

note "disk 0 moves to another folder (Storage vMotion): read in full and said why"
curl -sS -k --fail -X POST "$(ready "R['control']")/move?vm=vm-two-disks&disk=$key0&dir=moved" >/dev/null ||
  fail "move failed"
copy_live 0 "$T/t6-d0.img"
backup "$T/b6.json" --incremental
[[ $(d "$T/b6.json" 0 incremental) == False ]] || fail "a moved disk was read incrementally"
[[ $(d "$T/b6.json" 0 full_reason) == "it moved from [ds1] vm-two-disks/vm-two-disks.vmdk to [ds1] moved/vm-two-disks.vmdk since backup $id5" ]] ||
  fail "reason: $(d "$T/b6.json" 0 full_reason)"
[[ $(d "$T/b6.json" 1 incremental) == True ]] || fail "disk 1: $(d "$T/b6.json" 1 full_reason)"
id6=$(json "$T/b6.json" 'j["backup_id"]')
"$FERRY" --config "$T/agent.conf" restore "$id6" --disk 0 --output "$T/r6-d0.img"
cmp "$T/r6-d0.img" "$T/t6-d0.img" || fail "the moved disk's backup differs"

[[ $(vm_chain_len vm-two-disks) == 1 ]] || fail "a snapshot was left"
[[ $(journal_entries) == 0 ]] || fail "journal: $(cat "$T/state/journal")"
echo "hotadd cbt_incr: OK"
