#!/usr/bin/env bash
# hotadd.decide: every disk's transport is decided before the VM is
# touched (issue 12, "Decide before touching the VM").
#
# vm-three-disks has disk 0 on ds1 (paravirtual SCSI), disk 1 on ds2, which
# the proxy's host does not mount, and disk 2 on IDE. With --transport
# hotadd the job used to snapshot the VM and upload disk 0 before failing on
# disk 1; now it fails at once, naming disks 1 and 2 with their rules, and
# leaves no snapshot, no journal entry, no attached disk and no backup.
# --transport nbd (no VDDK here) fails the same way. With hotadd:https the
# two disks hotadd cannot read fall back to https, which the job's notes
# say. ferry-agent transports, inventory and the job agree that hotadd works
# on this (emulated) proxy, found by its BIOS UUID.
source "$(dirname "$0")/lib.sh"

make_certs
start_repo
start_vcsim_guest

nothing_touched() {
  [[ $(vm_chain_len vm-three-disks) == 1 ]] || fail "$1: a snapshot was taken"
  [[ $(journal_entries) == 0 ]] || fail "$1: journal: $(cat "$T/state/journal")"
  [[ $(proxy_disk_count) == 1 ]] || fail "$1: a disk was attached to the proxy"
  [[ $(backup_count) == 0 ]] || fail "$1: a backup was listed"
  [[ -z "$(disabled_methods vm-three-disks)" ]] || fail "$1: methods left disabled: $(disabled_methods vm-three-disks)"
}

note "--transport hotadd: refused before the snapshot, every failing disk named"
rc=0
"$AGENT" backup --config "$T/agent.conf" --vm vm-three-disks --transport hotadd 2>"$T/err" || rc=$?
cat "$T/err"
[[ $rc == 1 ]] || fail "exit code $rc, want 1"
grep -q "2 of 3 disk(s) of vm-three-disks cannot be read by any transport of \"hotadd\"; nothing was done to the VM (no snapshot)" "$T/err" ||
  fail "not refused up front: $(cat "$T/err")"
grep -qF "disk 1 ([ds2] vm-three-disks/vm-three-disks.vmdk): hotadd: rule \"datastore not mounted on proxy's host\" failed" "$T/err" ||
  fail "disk 1's rule is not named"
grep -qF "| disk 2 ([ds1] vm-three-disks/vm-three-disks_1.vmdk): hotadd: rule \"IDE disk\" failed" "$T/err" ||
  fail "disk 2's rule is not named"
grep -q "disk 0 (" "$T/err" && fail "disk 0, which hotadd can read, is named"
nothing_touched "--transport hotadd"

note "--transport nbd without VDDK: refused before the snapshot"
rc=0
"$AGENT" backup --config "$T/agent.conf" --vm vm-three-disks --transport nbd 2>"$T/err" || rc=$?
[[ $rc == 1 ]] || fail "exit code $rc, want 1"
grep -q "3 of 3 disk(s) of vm-three-disks cannot be read" "$T/err" || fail "$(cat "$T/err")"
grep -q "nbd: needs VMware's VDDK" "$T/err" || fail "$(cat "$T/err")"
nothing_touched "--transport nbd"

note "hotadd:https: disks 1 and 2 fall back to https, and the notes say so"
"$AGENT" backup --config "$T/agent.conf" --vm vm-three-disks --transport hotadd:https --json \
  >"$T/job.json" 2>"$T/err" || fail "hotadd:https failed: $(cat "$T/err")"
json() { python3 -c "import json,sys; j=json.load(open('$1')); print($2)"; }
[[ $(json "$T/job.json" '",".join(d["transport"] for d in j["disks"])') == hotadd,https,https ]] ||
  fail "transports: $(cat "$T/job.json")"
notes=$(json "$T/job.json" 'j["notes"]')
grep -q "disk 1 (.*) read over https, not the mode before it: hotadd: rule" <<<"$notes" || fail "notes: $notes"
grep -q "disk 2 (.*) read over https, not the mode before it: hotadd: rule" <<<"$notes" || fail "notes: $notes"
id=$(json "$T/job.json" 'j["backup_id"]')
for i in 0 1 2; do
  "$FERRY" --config "$T/agent.conf" restore "$id" --disk $i --output "$T/r$i.img"
  flat=$(control GET "disks?vm=vm-three-disks" | python3 -c "import json,sys; print(json.load(sys.stdin)['disks'][$i]['chain'][-1]['flat_path'])")
  cmp "$T/r$i.img" "$flat" || fail "disk $i differs from $flat"
  rm -f "$T/r$i.img"
done
[[ $(vm_chain_len vm-three-disks) == 1 ]] || fail "the snapshot was left"
[[ $(journal_entries) == 0 ]] || fail "journal: $(cat "$T/state/journal")"

note "the same rules answer transports and inventory"
out=$("$AGENT" transports --config "$T/agent.conf")
[[ "$out" == hotadd:https ]] || fail "transports: '$out'"
"$AGENT" inventory --config "$T/agent.conf" --vm vm-three-disks --json >"$T/inv.json"
[[ $(json "$T/inv.json" '",".join(str(d["hotadd"]["ok"]) for d in j["vms"][0]["disks"])') == True,False,False ]] ||
  fail "inventory hot-add: $(cat "$T/inv.json")"
[[ $(json "$T/inv.json" 'j["proxy"]["name"]') == ferry-proxy ]] || fail "inventory proxy: $(cat "$T/inv.json")"
[[ $(json "$T/inv.json" '";".join(",".join(t["name"] for t in d["transports"] if t["possible"]) for d in j["vms"][0]["disks"])') == "hotadd,https;https;https" ]] ||
  fail "inventory transports: $(cat "$T/inv.json")"
"$AGENT" inventory --config "$T/agent.conf" --vm vm-three-disks >"$T/inv.txt"
grep -q "transports here: hotadd, https" "$T/inv.txt" || fail "inventory text: $(cat "$T/inv.txt")"
echo "hotadd decide: OK"
