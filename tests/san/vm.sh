#!/usr/bin/env bash
# san.vm: ferry-agent backup --vm --transport san end to end on the
# simulated vCenter. ds1 is a VMFS datastore on two LUN images
# (ferry-vcsim --san-lun; the images are rebuilt with mkvmfs6 whenever a
# snapshot freezes a disk); the proxy sees them as read-only loop devices
# whose NAA ids sit in an emulated sysfs (ferry.san.sysfsRoot). A thin VM
# (vm-two-disks) full with CBT, then a CBT incremental after guest writes;
# a thick VM (vm-independent, its snapshot-able disk); each restored
# byte-identical to the frozen disk; stale LUN bytes never in a backup; a
# disk on a datastore that is not VMFS refused with its reason.
#
# Emulated: the VMFS volume is written by tests/tools/mkvmfs6 from the
# simulator's files, not by ESXi; the LUNs are loop devices, their SCSI
# identity an emulated sysfs.
source "$(dirname "$0")/../integration/lib.sh"
: "${VCSIM:?VCSIM must point at ferry-vcsim}"
if [[ $(id -u) -ne 0 ]] || ! command -v losetup >/dev/null; then
  echo "san vm: skipped (needs root and losetup for the LUNs)"
  exit 77
fi
VCSIM_PID=""
CLEANUP_CMDS+=("[[ -n \"\$VCSIM_PID\" ]] && kill \$VCSIM_PID && wait \$VCSIM_PID")
MARKER="FERRY-STALE-MARKER"

make_certs
start_repo
"$VCSIM" --listen 127.0.0.1:0 --datadir "$T/vcdata" --ready-file "$T/vcready.json" \
  --disk-size 16777216 --san-lun "ds1=$T/lun0.img,$T/lun1.img" \
  --mkvmfs6 "$TOOLS/mkvmfs6" --san-thick vm-independent >"$T/vcsim.log" 2>&1 &
VCSIM_PID=$!
for _ in $(seq 1 600); do
  [[ -s "$T/vcready.json" ]] && break
  kill -0 "$VCSIM_PID" 2>/dev/null || fail "ferry-vcsim exited: $(cat "$T/vcsim.log")"
  sleep 0.1
done
[[ -s "$T/vcready.json" ]] || fail "ferry-vcsim did not start: $(cat "$T/vcsim.log")"
mkdir -p "$T/state" "$T/vc"
python3 "$(dirname "$0")/../vsphere/ready2conf.py" "$T/vcready.json" "$T/vc" | grep -v '^test\.' >>"$T/agent.conf"
echo "ferry.stateDirectory=$T/state" >>"$T/agent.conf"
ready() { python3 -c "import json,sys; R=json.load(open('$T/vcready.json')); print($1)"; }
grep -q "$MARKER" "$T/lun0.img" || fail "the LUN holds no stale bytes to leak"

note "the LUNs as read-only loop devices, known by their NAA ids"
mkdir -p "$T/sysroot/sys/block"
for i in 0 1; do
  dev=$(losetup -f --show -r "$T/lun$i.img")
  CLEANUP_CMDS+=("losetup -d $dev")
  name=$(basename "$dev")
  naa=$(python3 -c "import hashlib,sys; print('naa.6000c29' + hashlib.sha256(b'ferry-vcsim san ds1 %d' % int(sys.argv[1])).hexdigest()[:25])" "$i")
  mkdir -p "$T/sysroot/sys/block/$name/device"
  cp "/sys/block/$name/size" "/sys/block/$name/dev" "$T/sysroot/sys/block/$name/"
  echo "$naa" >"$T/sysroot/sys/block/$name/device/wwid"
done
echo "ferry.san.sysfsRoot=$T/sysroot" >>"$T/agent.conf"

"$AGENT" transports --config "$T/agent.conf" --verbose >"$T/tr.txt" 2>&1 || true
grep -q "^san" "$T/tr.txt" && ! grep -q "^san: " "$T/tr.txt" || fail "san not listed: $(cat "$T/tr.txt")"

backup() { # backup VM OUT.json [ARGS...]
  local vm=$1 out=$2
  shift 2
  "$AGENT" backup --config "$T/agent.conf" --vm "$vm" --transport san --json --quiet \
    --log-level 4 "$@" >"$out" 2>"$out.log" || { cat "$out.log"; fail "backup of $vm $* failed"; }
}
d() { json "$1" "j['disks'][$2]['$3']"; }
live_flat() { # live_flat VM DISK: the disk's live flat file in the simulator
  control GET "disks?vm=$1" |
    python3 -c "import json,sys; print(json.load(sys.stdin)['disks'][$2]['live']['flat_path'])"
}
control() { curl -sS -k --fail -X "$1" "$(ready "R['control']")/$2"; }
check_restore() { # check_restore ID DISK EXPECTED
  rm -f "$T/r.img"
  "$FERRY" --config "$T/agent.conf" restore "$1" --disk "$2" --output "$T/r.img" >/dev/null
  cmp "$T/r.img" "$3" || fail "backup $1 disk $2 differs from $3"
  if grep -q "$MARKER" "$T/r.img"; then fail "stale LUN bytes in backup $1 disk $2"; fi
}

note "thin VM, full, CBT turned on"
backup vm-two-disks "$T/b1.json" --enable-cbt
for i in 0 1; do
  [[ $(d "$T/b1.json" $i transport) == san ]] || fail "disk $i: $(cat "$T/b1.json")"
  cp --sparse=always "$(live_flat vm-two-disks $i)" "$T/t1-d$i.img"
done
id1=$(json "$T/b1.json" 'j["backup_id"]')
for i in 0 1; do check_restore "$id1" $i "$T/t1-d$i.img"; done
grep -q "san: .* read from 2 LUN(s)" "$T/b1.json.log" || fail "san's LUNs not logged: $(cat "$T/b1.json.log")"

note "the guest writes; a CBT incremental reads only what changed, through san"
head -c 65536 /dev/urandom >"$T/w1"
head -c 1048576 /dev/urandom >"$T/w2"
key0=$(ready "R['vms']['vm-two-disks']['disks'][0]['key']")
curl -sS -k --fail -X POST --data-binary @"$T/w1" \
  "$(ready "R['control']")/write?vm=vm-two-disks&disk=$key0&offset=$((3 * 1048576 + 8192))" >/dev/null
curl -sS -k --fail -X POST --data-binary @"$T/w2" \
  "$(ready "R['control']")/write?vm=vm-two-disks&disk=$key0&offset=$((9 * 1048576))" >/dev/null
backup vm-two-disks "$T/b2.json"
id2=$(json "$T/b2.json" 'j["backup_id"]')
[[ $(json "$T/b2.json" 'j["parent_id"]') == "$id1" ]] || fail "not an incremental of $id1: $(cat "$T/b2.json")"
[[ $(d "$T/b2.json" 0 transport) == san && $(d "$T/b2.json" 0 incremental) == True ]] ||
  fail "disk 0: $(cat "$T/b2.json")"
read0=$(d "$T/b2.json" 0 bytes_read)
(( read0 > 0 && read0 <= 4 * 1048576 )) || fail "incremental read $read0 bytes of disk 0"
for i in 0 1; do cp --sparse=always "$(live_flat vm-two-disks $i)" "$T/t2-d$i.img"; done
cmp -s "$T/t1-d0.img" "$T/t2-d0.img" && fail "the guest's writes did not land"
for i in 0 1; do check_restore "$id2" $i "$T/t2-d$i.img"; done

note "thick VM (its snapshot-able disk)"
backup vm-independent "$T/b3.json" --disk 0
[[ $(d "$T/b3.json" 0 transport) == san ]] || fail "thick: $(cat "$T/b3.json")"
check_restore "$(json "$T/b3.json" 'j["backup_id"]')" 0 "$(live_flat vm-independent 0)"

note "a disk on a datastore that is not VMFS: refused before the snapshot"
rc=0
"$AGENT" backup --config "$T/agent.conf" --vm vm-three-disks --transport san --quiet 2>"$T/ds2.log" || rc=$?
[[ $rc == 1 ]] || fail "exit $rc"
grep -q "san: datastore ds2 is .*, not VMFS" "$T/ds2.log" || fail "reason: $(cat "$T/ds2.log")"
"$AGENT" inventory --config "$T/agent.conf" --vm vm-three-disks --json >"$T/inv.json"
python3 -c 'import json,sys; assert not json.load(open(sys.argv[1]))["vms"][0]["snapshots"]' "$T/inv.json" ||
  fail "a snapshot was taken: $(cat "$T/inv.json")"
echo "san vm: ok"
