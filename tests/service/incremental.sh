#!/usr/bin/env bash
# service.incremental: CBT through the service. `ferry backup --full
# --enable-cbt`, then the VM's first disk changes (64 KiB written through
# the simulator), then `ferry backup --incremental`: the result names the
# full backup as parent, reads only the changed area of disk 0 and nothing
# of disk 1, and `ferry restore` of each backup equals the disk at its
# time. Emulated: the vCenter (ferry-vcsim: exact CBT) and the proxy's
# guest.
source "$(dirname "$0")/lib.sh"

make_certs
service_certs
start_repo
start_vcsim_guest
start_service
live_flat() {
  control GET "disks?vm=vm-two-disks" | python3 -c "import json,sys; print(json.load(sys.stdin)['disks'][$1]['live']['flat_path'])"
}

note "full backup, turning CBT on"
ctl backup --vm vm-two-disks --full --enable-cbt --json >"$T/full.json" 2>"$T/full.err" ||
  fail "full backup: $(cat "$T/full.err")"
full=$(json "$T/full.json" 'j["backup_id"]')
for i in 0 1; do cp --sparse=always "$(live_flat $i)" "$T/before$i.img"; done

note "64 KiB change in disk 0"
head -c 65536 /dev/urandom >"$T/chunk"
curl -sS -k -X POST --data-binary @"$T/chunk" "$(ready "R['control']")/write?vm=vm-two-disks&disk=2000&offset=4194304" >/dev/null

note "incremental backup"
ctl backup --vm vm-two-disks --incremental --json >"$T/inc.json" 2>"$T/inc.err" ||
  fail "incremental backup: $(cat "$T/inc.err")"
inc=$(json "$T/inc.json" 'j["backup_id"]')
[[ $(json "$T/inc.json" 'j["parent_id"]') == "$full" ]] || fail "parent: $(cat "$T/inc.json")"
[[ $(json "$T/inc.json" 'j["disks"][0]["incremental"]') == True ]] || fail "disk 0 not incremental: $(cat "$T/inc.json")"
read0=$(json "$T/inc.json" 'j["disks"][0]["bytes_read"]')
(( read0 > 0 && read0 <= 1048576 )) || fail "disk 0 read $read0 bytes for a 64 KiB change"
[[ $(json "$T/inc.json" 'j["disks"][1]["bytes_read"]') == 0 ]] || fail "disk 1 was read: $(cat "$T/inc.json")"

note "each backup restores the disks as they were"
for i in 0 1; do
  ctl restore "$full" --disk $i --output "$T/full$i.img" 2>/dev/null
  cmp "$T/full$i.img" "$T/before$i.img" || fail "full backup, disk $i differs"
  ctl restore "$inc" --disk $i --output "$T/inc$i.img" 2>/dev/null
  cmp "$T/inc$i.img" "$(live_flat $i)" || fail "incremental backup, disk $i differs"
done
cmp -s "$T/inc0.img" "$T/before0.img" && fail "the change is not in the incremental"
nothing_left vm-two-disks
echo "service incremental: OK"
