#!/usr/bin/env bash
# integration.restore_vm: a whole VM back from a backup (issue 13), on the
# simulated vCenter. `ferry-agent restore-vm` creates the VM from the
# backup's record (CreateVM_Task, ferry-vcsim creating the disk files) and
# writes its disks over https (/folder PUT). Then the restored VM is backed
# up again: every disk of the second backup equals the first's, block for
# block, and its recorded hardware equals the original's but for the name
# and the MAC addresses. Refused: a name in use, transports that cannot write
# here (hotadd without a proxy VM; nbd, not built),
# a backup without a record, a mistyped --network, --folder or
# --resource-pool. The placement and hardware options (--host,
# --resource-pool, --folder, --keep-mac, --network, --disk-provisioning)
# show in the restored VM's own backup record; on a terminal each disk has
# a progress line that fits it. A corrupt repository block fails the
# restore by name and the half-restored VM is destroyed.
source "$(dirname "$0")/lib.sh"
[[ -x "$BIN/ferry-vcsim" ]] || { echo "ferry-vcsim not built"; exit 77; }

make_certs
start_repo
start_vcsim --disk-size 4194304
mkdir -p "$T/state"
grep -v '^test\.' "$T/test.conf" >>"$T/agent.conf"
echo "ferry.stateDirectory=$T/state" >>"$T/agent.conf"
CERT=$(python3 -c "import json; print(json.load(open('$T/ready.json'))['cert_file'])")
URL=$(python3 -c "import json; print(json.load(open('$T/ready.json'))['url'].replace('/sdk', ''))")
vmdisks() { curl -sS --fail --cacert "$CERT" "$URL/ferry-test/disks?vm=$1"; }
restore_vm() { "$AGENT" restore-vm --config "$T/agent.conf" "$@"; }
backup_vm() {
  "$AGENT" backup --config "$T/agent.conf" --vm "$@" --transport https --json --quiet >"$T/b-$1.json" 2>"$T/b-$1.log" ||
    { cat "$T/b-$1.log" "$T/b-$1.json" >&2; fail "backup of $1 failed"; }
  json "$T/b-$1.json" 'j["backup_id"]'
}
vm_count() { "$AGENT" inventory --config "$T/agent.conf" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["vms"]))'; }

note "back up two VMs"
# vm-two-disks' disks get some changes first, so holes and data both move.
printf 'ferry restore-vm test' | curl -sS --fail --cacert "$CERT" --data-binary @- \
  "$URL/ferry-test/write?vm=vm-two-disks&disk=2000&offset=1048576" >/dev/null
two=$(backup_vm vm-two-disks)
# Its independent disk cannot be in a backup (snapshots leave it out).
hw=$(backup_vm vm-hardware --disk 0 --disk 1)

note "restore-vm vm-two-disks as a new VM over https"
before=$(vm_count)
restore_vm "$two" --name two-restored --transport hotadd:https --json >"$T/r1.json" 2>"$T/r1.log" ||
  { cat "$T/r1.log" "$T/r1.json"; fail "restore-vm failed"; }
[[ $(json "$T/r1.json" '(j["ok"], j["vm"], j["source"], j["datastore"], j["powered_on"], [(d["restored"], d["backup_disk"], d["transport"]) for d in j["disks"]])') == \
  "(True, 'two-restored', 'vm-two-disks', 'ds1', False, [(True, 0, 'https'), (True, 1, 'https')])" ]] ||
  fail "result: $(cat "$T/r1.json")"
# No proxy VM here (no emulated guest): hotadd says why and https writes.
grep -q "hotadd cannot write here" "$T/r1.log" || fail "hotadd was not reported as impossible: $(cat "$T/r1.log")"
[[ $(vm_count) == $((before + 1)) ]] || fail "expected one more VM"
vmdisks two-restored >"$T/d1.json"
[[ $(json "$T/d1.json" 'j["power_state"]') == poweredOff ]] || fail "the restored VM is not powered off: $(cat "$T/d1.json")"
vmdisks vm-two-disks >"$T/d0.json"
for i in 0 1; do
  cmp "$(json "$T/d0.json" "j['disks'][$i]['live']['flat_path']")" \
      "$(json "$T/d1.json" "j['disks'][$i]['live']['flat_path']")" || fail "restored disk $i differs from the original"
done

note "the restored VM backs up to the same blocks"
again=$(backup_vm two-restored)
for i in 0 1; do
  "$FERRY" --config "$T/agent.conf" restore "$two" --disk $i --output "$T/a$i.img"
  "$FERRY" --config "$T/agent.conf" restore "$again" --disk $i --output "$T/b$i.img"
  cmp "$T/a$i.img" "$T/b$i.img" || fail "disk $i of the second backup differs from the first"
done
"$FERRY" --config "$T/agent.conf" list --json >"$T/l.json"
python3 - "$T/l.json" "$two" "$again" <<'PY' || fail "block maps differ"
import json, sys
by_id = {b["id"]: b for b in json.load(open(sys.argv[1]))}
a, b = by_id[sys.argv[2]], by_id[sys.argv[3]]
for da, db in zip(a["disks"], b["disks"]):
    for k in ("size", "data_blocks", "hole_blocks"):
        assert da[k] == db[k], (k, da, db)
PY

note "restore-vm --into the restored VM, disk 0, over https: the whole disk"
printf 'scribbled after the restore' | curl -sS --fail --cacert "$CERT" --data-binary @- \
  "$URL/ferry-test/write?vm=two-restored&disk=$(json "$T/d1.json" "j['disks'][0]['key']")&offset=4096" >/dev/null
restore_vm "$two" --into two-restored --disk 0 --json >"$T/into.json" 2>"$T/into.log" ||
  { cat "$T/into.log" "$T/into.json"; fail "restore-vm --into failed"; }
[[ $(json "$T/into.json" '(j["into"], [(d["backup_disk"], d["transport"], d["changed_only"], d["full_reason"]) for d in j["disks"]])') == \
  "(True, [(0, 'https', False, 'https writes whole disks')])" ]] || fail "into: $(cat "$T/into.json")"
cmp "$(json "$T/d0.json" "j['disks'][0]['live']['flat_path']")" \
    "$(json "$T/d1.json" "j['disks'][0]['live']['flat_path']")" || fail "disk 0 not rolled back"

note "restore-vm --into, disk 0, over nbd: VDDK's path with nbdkit's file plugin standing in for vddk"
# The stand-in serves the one file it is given (docs/TRANSPORTS.md): the
# disk being rolled back. What is tested is Ferry's side (nbdkit started
# writable, the NBD writes, the flush), not VDDK.
command -v nbdkit >/dev/null || fail "nbdkit is not installed (scripts/deps installs it)"
mkdir -p "$T/vddk-lib"
flat0=$(json "$T/d1.json" "j['disks'][0]['live']['flat_path']")
cp "$T/agent.conf" "$T/vddk.conf"
cat >>"$T/vddk.conf" <<CONF
libDir=$T/vddk-lib
ferry.nbd.vddkPlugin=file
ferry.nbd.vddkPluginArgs=file=$flat0
CONF
printf 'scribbled before the nbd rollback' | curl -sS --fail --cacert "$CERT" --data-binary @- \
  "$URL/ferry-test/write?vm=two-restored&disk=$(json "$T/d1.json" "j['disks'][0]['key']")&offset=8192" >/dev/null
"$AGENT" restore-vm --config "$T/vddk.conf" "$two" --into two-restored --disk 0 --transport nbdssl:https \
  --json >"$T/into-nbd.json" 2>"$T/into-nbd.log" || { cat "$T/into-nbd.log" "$T/into-nbd.json"; fail "restore-vm over nbd failed"; }
[[ $(json "$T/into-nbd.json" '[(d["backup_disk"], d["transport"]) for d in j["disks"]]') == "[(0, 'nbdssl')]" ]] ||
  fail "into over nbdssl: $(cat "$T/into-nbd.json")"
cmp "$(json "$T/d0.json" "j['disks'][0]['live']['flat_path']")" "$flat0" || fail "disk 0 not rolled back over nbd"
# VDDK completes its writes in its close: nbdkit's exit status after the
# writes is the restore's last word. A stand-in nbdkit that serves, then
# exits 3 as a failed close would, fails the restore, naming it; the list
# does not go on to https once a disk was written.
cat >"$T/nbdkit-failclose" <<'SH'
#!/bin/sh
nbdkit "$@"; rc=$?
case " $* " in *" --filter=exitlast "*) echo "stand-in: VDDK's close failed" >&2; exit 3;; esac
exit $rc
SH
chmod +x "$T/nbdkit-failclose"
cp "$T/vddk.conf" "$T/vddk-fail.conf"
echo "ferry.nbd.nbdkit=$T/nbdkit-failclose" >>"$T/vddk-fail.conf"
rc=0; "$AGENT" restore-vm --config "$T/vddk-fail.conf" "$two" --into two-restored --disk 0 --transport nbdssl:https \
  --json >"$T/into-fail.json" 2>"$T/into-fail.log" || rc=$?
[[ $rc == 1 ]] || fail "a failed close: exit $rc: $(cat "$T/into-fail.log" "$T/into-fail.json")"
grep -q "nbdkit ended with status 3 after the writes: .*stand-in: VDDK's close failed" "$T/into-fail.log" ||
  fail "a failed close not named: $(cat "$T/into-fail.log")"
if grep -q "https" "$T/into-fail.json"; then fail "went on to https after the writes: $(cat "$T/into-fail.json")"; fi

# Without VDDK's path configured the list goes on, saying why.
"$AGENT" restore-vm --config "$T/agent.conf" "$two" --into two-restored --disk 0 --transport nbd:https \
  --json >"$T/into-nonbd.json" 2>"$T/into-nonbd.log" || fail "restore-vm nbd:https failed: $(cat "$T/into-nonbd.log")"
grep -q "nbd cannot write here: needs VMware's VDDK" "$T/into-nonbd.log" || fail "no reason for passing over nbd: $(cat "$T/into-nonbd.log")"
[[ $(json "$T/into-nonbd.json" 'j["disks"][0]["transport"]') == https ]] || fail "$(cat "$T/into-nonbd.json")"

rc=0; restore_vm "$two" --into two-restored --datastore ds1 2>"$T/e0" || rc=$?
[[ $rc == 2 ]] && grep -q "are for a new VM" "$T/e0" || fail "--into with --datastore: exit $rc: $(cat "$T/e0")"
rc=0; restore_vm "$two" --name x0 --disk 0 2>"$T/e0" || rc=$?
[[ $rc == 2 ]] && grep -q "\-\-disk goes with \-\-into" "$T/e0" || fail "--disk without --into: exit $rc: $(cat "$T/e0")"

note "restore-vm vm-hardware: the recorded hardware comes back, with new MACs"
restore_vm "$hw" --name hw-restored --datastore ds2 --host esx2.ferry.test --power-on --json >"$T/r2.json" 2>"$T/r2.log" ||
  { cat "$T/r2.log" "$T/r2.json"; fail "restore-vm of vm-hardware failed"; }
[[ $(json "$T/r2.json" '(j["datastore"], j["powered_on"], [d["restored"] for d in j["disks"]])') == \
  "('ds2', True, [True, True, False])" ]] || fail "result: $(cat "$T/r2.json")"
vmdisks hw-restored >"$T/d2.json"
[[ $(json "$T/d2.json" '(j["power_state"], j["host"])') == "('poweredOn', 'esx2.ferry.test')" ]] ||
  fail "not powered on, or not on --host: $(cat "$T/d2.json")"
hw2=$(backup_vm hw-restored --disk 0 --disk 1)
"$FERRY" --config "$T/agent.conf" show "$hw" --json >"$T/s1.json"
"$FERRY" --config "$T/agent.conf" show "$hw2" --json >"$T/s2.json"
python3 - "$T/s1.json" "$T/s2.json" <<'PY' || fail "records differ: $(cat "$T/s1.json" "$T/s2.json")"
import json, sys
a, b = (json.load(open(p))["vm_config"] for p in sys.argv[1:3])
assert b["name"] == "hw-restored", b["name"]
for k in ("guest_id", "hardware_version", "firmware", "secure_boot", "cpus", "cores_per_socket",
          "memory_mb", "extra_config"):
    assert a[k] == b[k], (k, a[k], b[k])
ctl = lambda c: sorted((x["type"], x["bus"], x.get("sharing", "")) for x in c["controllers"])
assert ctl(a) == ctl(b), (ctl(a), ctl(b))
dsk = lambda c: [(d["unit"], d["capacity"], d["provisioning"], d["mode"]) for d in c["disks"]]
assert dsk(a) == dsk(b), (dsk(a), dsk(b))
assert [n["adapter"] for n in a["nics"]] == [n["adapter"] for n in b["nics"]]
assert not set(n["mac"] for n in a["nics"]) & set(n["mac"] for n in b["nics"]), "MACs kept without --keep-mac"
assert len(a["cdroms"]) == len(b["cdroms"])
PY
for i in 0 1; do
  "$FERRY" --config "$T/agent.conf" restore "$hw" --disk $i --output "$T/h$i.img"
  "$FERRY" --config "$T/agent.conf" restore "$hw2" --disk $i --output "$T/k$i.img"
  cmp "$T/h$i.img" "$T/k$i.img" || fail "vm-hardware disk $i came back different"
done

note "placement and options: --host, --resource-pool, --folder, --keep-mac, --network, --disk-provisioning"
# restored_record NAME FOLDER POOL ARGS...: vm-hardware restored as NAME
# with ARGS, checked to be in FOLDER and POOL, then backed up: its record
# in $T/s-NAME.json.
restored_record() {
  local name=$1 folder=$2 pool=$3; shift 3
  restore_vm "$hw" --name "$name" "$@" --json >"$T/r-$name.json" 2>"$T/r-$name.log" ||
    { cat "$T/r-$name.log" "$T/r-$name.json"; fail "restore-vm $name $* failed"; }
  vmdisks "$name" >"$T/d-$name.json"
  [[ $(json "$T/d-$name.json" '(j["folder"], j["resource_pool"])') == "('$folder', '$pool')" ]] ||
    fail "$name is not in $folder, $pool: $(cat "$T/d-$name.json")"
  "$FERRY" --config "$T/agent.conf" show "$(backup_vm "$name" --disk 0 --disk 1)" --json >"$T/s-$name.json"
}
restored_record hw-opts restored Resources --folder /ferry-dc/vm/restored --keep-mac \
  --network "VM Network=Backup Network" --disk-provisioning thin
python3 - "$T/s1.json" "$T/s-hw-opts.json" <<'PY' || fail "options not applied: $(cat "$T/s-hw-opts.json")"
import json, sys
a, b = (json.load(open(p))["vm_config"] for p in sys.argv[1:3])
assert [n["mac"] for n in a["nics"]] == [n["mac"] for n in b["nics"]], "--keep-mac: MACs changed"
assert [n["network"] for n in b["nics"]] == ["Backup Network"] * len(a["nics"]), [n["network"] for n in b["nics"]]
assert len(b["disks"]) == 3 and all(d["provisioning"] == "thin" for d in b["disks"]), b["disks"]
PY
restored_record hw-pool vm restores --resource-pool /ferry-dc/host/ferry-cluster/Resources/restores \
  --disk-provisioning thick
[[ $(json "$T/s-hw-pool.json" '[d["provisioning"].startswith("thick") for d in j["vm_config"]["disks"]]') == "[True, True, True]" ]] ||
  fail "--disk-provisioning thick: $(cat "$T/s-hw-pool.json")"
# A mistyped network, folder or pool is refused before anything is made.
before=$(vm_count)
rc=0; restore_vm "$hw" --name x5 --network "VM Netwrk=Backup Network" 2>"$T/e8" || rc=$?
[[ $rc == 1 ]] && grep -q 'no network adapter of the backup is on network "VM Netwrk" (its adapters are on: "VM Network", "VM Network")' "$T/e8" ||
  fail "a mistyped --network: exit $rc: $(cat "$T/e8")"
rc=0; restore_vm "$hw" --name x6 --folder /ferry-dc/vm/nowhere 2>"$T/e9" || rc=$?
[[ $rc == 1 ]] && grep -q "nowhere" "$T/e9" || fail "an unknown --folder: exit $rc: $(cat "$T/e9")"
rc=0; restore_vm "$hw" --name x7 --resource-pool /ferry-dc/host/ferry-cluster/Resources/nowhere 2>"$T/e10" || rc=$?
[[ $rc == 1 ]] && grep -q "nowhere" "$T/e10" || fail "an unknown --resource-pool: exit $rc: $(cat "$T/e10")"
[[ $(vm_count) == "$before" ]] || fail "a refused restore left a VM"

note "on a terminal: a progress line per disk, fitted to 60 columns, each ending at 100%"
out=$(python3 "$TOOLS/ptyrun.py" 60 "$AGENT" restore-vm --config "$T/agent.conf" "$two" --name two-tty) ||
  fail "restore-vm progress on a terminal: $out"
python3 - "$out" <<'PY' || fail "restore-vm progress lines: $out"
import re, sys
last = {}
for l in sys.argv[1].splitlines():
    m = re.match(r"disk (\d)/2 +(\d+)% of", l)
    assert m, l
    last[m.group(1)] = int(m.group(2))
assert last == {"1": 100, "2": 100}, last
PY

note "refused: a name in use, a transport not built yet, unknown options"
before=$(vm_count)
rc=0; restore_vm "$two" --name vm-two-disks 2>"$T/e1" || rc=$?
[[ $rc == 1 ]] && grep -q "a VM named vm-two-disks exists: restore-vm never overwrites a VM" "$T/e1" ||
  fail "name in use: exit $rc: $(cat "$T/e1")"
rc=0; restore_vm "$two" --name x1 --transport hotadd:nbd 2>"$T/e2" || rc=$?
[[ $rc == 1 ]] && grep -q "no mode of the list can write the disks here: hotadd (.*), nbd (needs VMware.s VDDK, which is not configured: set libDir to the directory VDDK was unpacked in" "$T/e2" ||
  fail "hotadd:nbd: exit $rc: $(cat "$T/e2")"
rc=0; restore_vm "$two" --name x2 --disk-provisioning fat 2>"$T/e3" || rc=$?
[[ $rc == 2 ]] || fail "--disk-provisioning fat: exit $rc"
rc=0; restore_vm "$two" --name x3 --host esx-nowhere 2>"$T/e4" || rc=$?
[[ $rc == 1 ]] && grep -q "no host named esx-nowhere" "$T/e4" || fail "unknown host: exit $rc: $(cat "$T/e4")"
[[ $(vm_count) == "$before" ]] || fail "a refused restore left a VM"

note "a backup without a record is refused"
printf 'not a vm' >"$T/f.img"
"$AGENT" backup --config "$T/agent.conf" --source "$T/f.img" --json --quiet >"$T/bf.json"
fid=$(json "$T/bf.json" 'j["backup_id"]')
rc=0; restore_vm "$fid" --name x4 2>"$T/e5" || rc=$?
[[ $rc == 1 ]] && grep -q "is of a file, not a VM" "$T/e5" || fail "file backup: exit $rc: $(cat "$T/e5")"

note "a name vSphere escapes: restored, then known as in use"
# vSphere lists it as "two%2frestored 100%25".
odd='two/restored 100%'
restore_vm "$two" --name "$odd" --json >"$T/r6.json" 2>"$T/e6" || fail "restore as '$odd': $(cat "$T/e6" "$T/r6.json")"
"$AGENT" inventory --config "$T/agent.conf" --vm "$odd" >/dev/null 2>&1 || fail "'$odd' not found by its name"
rc=0; restore_vm "$two" --name "$odd" 2>"$T/e7" || rc=$?
[[ $rc != 0 ]] || fail "a second VM named '$odd' was restored"
grep -qF "a VM named $odd exists" "$T/e7" || fail "a name in use not refused clearly: $(cat "$T/e7")"

note "a corrupt block fails the restore by name; the half-restored VM is destroyed"
# The first data block of disk 0 of vm-two-disks' backup, damaged on disk.
"$FERRY" --config "$T/agent.conf" restore "$two" --disk 0 --output "$T/c0.img"
bs=$(json "$T/l.json" "[b['block_size'] for b in j if b['id'] == '$two'][0]")
digest=$(python3 - "$T/c0.img" "$bs" <<'PY'
import hashlib, sys
d = open(sys.argv[1], "rb").read()
bs = int(sys.argv[2])
for off in range(0, len(d), bs):
    b = d[off:off + bs]
    if any(b):
        print(hashlib.sha256(b).hexdigest()); break
PY
)
corrupt_block "$digest" 20 '\xff\xff\xff\xff'
rc=0; restore_vm "$two" --name broken --json >"$T/r3.json" 2>"$T/r3.log" || rc=$?
[[ $rc == 1 ]] || fail "restore from a corrupt block: exit $rc"
grep -q "half-restored VM broken was destroyed" "$T/r3.log" || fail "not destroyed: $(cat "$T/r3.log")"
grep -qi "block" "$T/r3.log" || fail "the error does not name the block: $(cat "$T/r3.log")"
[[ $(json "$T/r3.json" 'j["ok"]') == False ]] || fail "--json said ok"
rc=0; "$AGENT" inventory --config "$T/agent.conf" --vm broken >/dev/null 2>&1 || rc=$?
[[ $rc != 0 ]] || fail "the half-restored VM is still there"
note "kill -9 in the write phase: the next self-cleanup destroys the half-restored VM"
# A name with what vSphere escapes ('/' and '%'): it lists the VM as
# "crashed%2f1 100%25", and the name-in-use check and the self-cleanup must
# still know it as the name given.
crashed='crashed/1 100%'
curl -sS --fail --cacert "$CERT" -X POST "$URL/ferry-test/faults?method=folder&delay_ms=1500&count=-1" >/dev/null
"$AGENT" restore-vm --config "$T/agent.conf" "$two" --name "$crashed" --quiet >/dev/null 2>"$T/crash.log" &
pid=$!
for _ in $(seq 1 300); do
  grep -qP '\trestore\t' "$T/state/journal" 2>/dev/null && break
  sleep 0.1
done
grep -qP '\trestore\t' "$T/state/journal" || fail "no restore entry journaled: $(cat "$T/crash.log")"
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
curl -sS --fail --cacert "$CERT" -X DELETE "$URL/ferry-test/faults" >/dev/null
"$AGENT" inventory --config "$T/agent.conf" --vm "$crashed" >/dev/null 2>&1 || fail "the crashed restore's VM is not there"
"$AGENT" cleanup --config "$T/agent.conf" >"$T/cleanup.out" 2>&1 || fail "cleanup failed: $(cat "$T/cleanup.out")"
grep -qF "destroyed the half-restored VM $crashed" "$T/cleanup.out" || fail "cleanup: $(cat "$T/cleanup.out")"
grep -q "numCleanedUp=1 numRemaining=0" "$T/cleanup.out" || fail "cleanup counts: $(cat "$T/cleanup.out")"
rc=0; "$AGENT" inventory --config "$T/agent.conf" --vm "$crashed" >/dev/null 2>&1 || rc=$?
[[ $rc != 0 ]] || fail "the half-restored VM survived the cleanup"
grep -qP '\trestore\t' "$T/state/journal" && fail "the restore entry stayed: $(cat "$T/state/journal")"
echo "restore_vm: OK"
