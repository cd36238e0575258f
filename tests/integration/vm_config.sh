#!/usr/bin/env bash
# integration.vm_config: what a VM backup records of the VM (issue 13),
# end to end on the simulated vCenter. A backup written before records
# existed (tests/data/repo-vm-v1) lists and shows "not recorded" and
# restores. `ferry-agent backup --vm vm-hardware` (EFI with secure boot,
# LSI SAS and paravirtual SCSI with bus sharing, SATA, two NIC kinds, two
# empty CD-ROMs, an independent disk left out, extraConfig with a secret
# that must stay out) records a configuration that `ferry show --json`
# and `ferry list --json` report exactly as the vCenter does, read back
# through SOAP by vm_config_check.py. The repository refuses records it
# cannot read before it commits. Disks are read over https (no root).
source "$(dirname "$0")/lib.sh"
[[ -x "$BIN/ferry-vcsim" ]] || { echo "ferry-vcsim not built"; exit 77; }
DATA="$INTEGRATION_TESTS/../data/repo-vm-v1"
OLD=20261205T070940Z-afba562e
SEEDS="$INTEGRATION_TESTS/../fuzz/fuzz_vmconfig.seeds"

make_certs
mkdir -p "$T/repo/tmp"
cp -r "$DATA/config" "$DATA/backups" "$DATA/blocks" "$DATA/groups" "$T/repo/"
: >"$T/repo/lock"
start_repo
start_vcsim --disk-size 1048576
mkdir -p "$T/state"
grep -v '^test\.' "$T/test.conf" >>"$T/agent.conf"
echo "ferry.stateDirectory=$T/state" >>"$T/agent.conf"
ready() { python3 -c "import json; R=json.load(open('$T/ready.json')); print($1)"; }

note "a VM backup from before records: listed and shown without one, restored"
"$FERRY" --config "$T/agent.conf" list --json >"$T/l0.json"
[[ $(json "$T/l0.json" '[(b["id"], b["source_kind"], b["vm_config"]) for b in j]') == "[('$OLD', 'vm', None)]" ]] ||
  fail "old backup listed as: $(cat "$T/l0.json")"
"$FERRY" --config "$T/agent.conf" list >"$T/l0.txt"
grep -Eq "^$OLD .* none +agent1 +vm-two-disks$" "$T/l0.txt" || fail "list: $(cat "$T/l0.txt")"
"$FERRY" --config "$T/agent.conf" show "$OLD" >"$T/s0.txt"
grep -q "^VM configuration: not recorded (made before Ferry recorded it); the disks restore as usual$" "$T/s0.txt" ||
  fail "show: $(cat "$T/s0.txt")"
"$FERRY" --config "$T/agent.conf" show "$OLD" --json >"$T/s0.json"
[[ $(json "$T/s0.json" 'j["vm_config"]') == None ]] || fail "show --json: $(cat "$T/s0.json")"
"$FERRY" --config "$T/agent.conf" restore "$OLD" --disk 0 --output "$T/old0.img"
# The sample's disk was vm-two-disks' disk 0 of a 1 MiB ferry-vcsim: the
# simulator fills it the same way every run.
[[ $(sha256sum <"$T/old0.img" | cut -d' ' -f1) == 8ece6134999b08042c7602dae745551f4bd8fc60e89e9d4d6a56d6e1feb2b127 ]] ||
  fail "old backup restored wrong bytes"
cmp "$T/old0.img" "$(ready "R['vms']['vm-two-disks']['disks'][0]['flat_path']")" ||
  fail "old backup differs from the simulator's disk"

note "backup --vm takes --compression-level as backup --source does"
if "$AGENT" backup --config "$T/agent.conf" --vm vm-hardware --transport https \
  --compression-level 99 --json --quiet >"$T/bad.json" 2>"$T/bad.log"; then
  fail "--compression-level 99 was taken with --vm"
fi
grep -q "compressionLevel" "$T/bad.log" "$T/bad.json" ||
  fail "--compression-level 99 refused without naming the key: $(cat "$T/bad.log" "$T/bad.json")"

note "backup --vm vm-hardware records its configuration"
"$AGENT" backup --config "$T/agent.conf" --vm vm-hardware --disk 0 --disk 1 --transport https \
  --compression-level 19 --json --quiet >"$T/b.json" 2>"$T/b.log" || { cat "$T/b.log"; fail "backup failed"; }
id=$(json "$T/b.json" 'j["backup_id"]')
grep -q "not recorded" "$T/b.json" && fail "the job noted no record: $(cat "$T/b.json")"
"$FERRY" --config "$T/agent.conf" show "$id" --json >"$T/s.json"
# What the simulator was told to build (tests/vcsim/inventory.go), so a
# simulator that changed under the test is noticed too.
[[ $(json "$T/s.json" '(lambda c: (c["name"], c["guest_id"], c["hardware_version"], c["firmware"], c["secure_boot"], c["cpus"], c["cores_per_socket"], c["memory_mb"]))(j["vm_config"])') == \
  "('vm-hardware', 'windows9_64Guest', 'vmx-19', 'efi', True, 4, 2, 4096)" ]] || fail "hardware: $(cat "$T/s.json")"
[[ $(json "$T/s.json" 'sorted(c["type"] for c in j["vm_config"]["controllers"])') == \
  "['ide', 'ide', 'lsilogic-sas', 'pvscsi', 'sata']" ]] || fail "controllers: $(cat "$T/s.json")"
[[ $(json "$T/s.json" '[(d["key"], d["provisioning"], d["mode"], d["backup_disk"]) for d in j["vm_config"]["disks"]]') == \
  "[(2000, 'thick-eager', 'persistent', 0), (2001, 'thick-lazy', 'persistent', 1), (2016, 'thin', 'independent_persistent', None)]" ]] ||
  fail "disks: $(cat "$T/s.json")"
[[ $(json "$T/s.json" '[(n["adapter"], n["mac_type"], n["mac"]) for n in j["vm_config"]["nics"]]') == \
  "[('vmxnet3', 'manual', '00:50:56:aa:bb:14'), ('e1000e', 'generated', '00:50:56:aa:bb:15')]" ]] ||
  fail "nics: $(cat "$T/s.json")"
[[ $(json "$T/s.json" '[(c["controller_key"], c["unit"]) for c in j["vm_config"]["cdroms"]]') == "[(201, 0), (15000, 0)]" ]] ||
  fail "cdroms: $(cat "$T/s.json")"
[[ $(json "$T/s.json" 'j["vm_config"]["extra_config"]') == "{'disk.EnableUUID': 'TRUE', 'svga.present': 'FALSE'}" ]] ||
  fail "extraConfig: $(cat "$T/s.json")"
grep -q "guestinfo\|c2VjcmV0\|govcsim" "$T/s.json" && fail "a key outside the allow-list was recorded"

note "the record is what the vCenter reports, field by field"
python3 "$INTEGRATION_TESTS/vm_config_check.py" "$T/ready.json" vm-hardware "$T/s.json" 2000 2001 ||
  fail "record and vCenter differ"
# The check itself can fail: a record with one CPU less does not match.
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); j["vm_config"]["cpus"]-=1; json.dump(j,open(sys.argv[2],"w"))' \
  "$T/s.json" "$T/wrong.json"
if python3 "$INTEGRATION_TESTS/vm_config_check.py" "$T/ready.json" vm-hardware "$T/wrong.json" 2000 2001 >/dev/null; then
  fail "vm_config_check.py accepted a wrong CPU count"
fi

note "list --json carries the same record; the tables say which backups have one"
"$FERRY" --config "$T/agent.conf" list --json >"$T/l.json"
python3 - "$T/l.json" "$T/s.json" "$id" "$OLD" <<'PY' || fail "list --json: $(cat "$T/l.json")"
import json, sys
lst, show = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
by_id = {b["id"]: b for b in lst}
assert by_id[sys.argv[3]] == show, "list and show differ"
assert by_id[sys.argv[4]]["vm_config"] is None
PY
"$FERRY" --config "$T/agent.conf" list >"$T/l.txt"
grep -Eq "^$id .* yes +agent1 +vm-hardware$" "$T/l.txt" || fail "list: $(cat "$T/l.txt")"
"$FERRY" --config "$T/agent.conf" show "$id" >"$T/s.txt"
for line in "firmware          efi, secure boot" "CPUs              4 (2 per socket)" \
  "memory            4096 MB" "CD-ROMs           2 (recorded empty)" "disk.EnableUUID = TRUE" \
  "not in this backup"; do
  grep -qF "$line" "$T/s.txt" || fail "show lacks '$line': $(cat "$T/s.txt")"
done
grep -Eq "^ +4001 +e1000e +VM Network +MAC generated 00:50:56:aa:bb:15$" "$T/s.txt" || fail "show NIC: $(cat "$T/s.txt")"
rc=0
"$FERRY" --config "$T/agent.conf" show 20991231T000000Z-00000000 2>"$T/e" || rc=$?
[[ $rc == 1 ]] && grep -q "no backup 20991231T000000Z-00000000 that this certificate may read" "$T/e" ||
  fail "show of no backup: exit $rc: $(cat "$T/e")"

note "the disks of a backup with a record restore as ever"
for i in 0 1; do
  "$FERRY" --config "$T/agent.conf" restore "$id" --disk $i --output "$T/r$i.img"
  cmp "$T/r$i.img" "$(ready "R['vms']['vm-hardware']['disks'][$i]['flat_path']")" || fail "disk $i differs"
done

note "the repository reads a record before it commits"
forge() { python3 "$INTEGRATION_TESTS/forge_client.py" "$ADDR" "$T/pki" agent1 backup "$@"; }
head -c 4096 /dev/urandom >"$T/payload"
printf '\x08\x01\xff' >"$T/garbage.rec"
out=$(forge forged-a vm "" "" "" "$T/payload" "$T/garbage.rec")
[[ $out == REFUSED*"VM configuration: not a VmConfig message"* ]] || fail "garbage record: $out"
# The seed's record names backup disks 0 and 1; this backup has one disk.
out=$(forge forged-b vm "" "" "" "$T/payload" "$SEEDS/sample.vmconfig")
[[ $out == REFUSED*"disk 2016 is backup disk 1, but the backup has 1 disks"* ]] || fail "foreign disk: $out"
out=$(forge forged-c file "" "" "" "$T/payload" "$SEEDS/sample.vmconfig")
[[ $out == REFUSED*"a VM configuration record in a backup of kind 'file'"* ]] || fail "file backup: $out"
"$FERRY" --config "$T/agent.conf" list --json >"$T/l2.json"
[[ $(json "$T/l2.json" 'sorted(b["source"] for b in j)') == "['vm-hardware', 'vm-two-disks']" ]] ||
  fail "a refused backup was committed: $(cat "$T/l2.json")"
# A later version's record is kept as it is and shown as newer.
out=$(forge forged-d vm "" "" "" "$T/payload" "$SEEDS/newer.vmconfig")
[[ $out == ACCEPTED* ]] || fail "newer record: $out"
"$FERRY" --config "$T/agent.conf" show "${out#ACCEPTED }" >"$T/s3.txt"
grep -q "^VM configuration (record version 7)$" "$T/s3.txt" && grep -q "recorded by a newer Ferry" "$T/s3.txt" ||
  fail "newer: $(cat "$T/s3.txt")"
"$FERRY" --config "$T/agent.conf" list >"$T/l3.txt"
grep -Eq "^${out#ACCEPTED } .* newer +agent1 +forged-d$" "$T/l3.txt" || fail "list newer: $(cat "$T/l3.txt")"
"$REPO" verify --root "$T/repo" >"$T/v" || { cat "$T/v"; fail "verify"; }
echo "vm_config: OK"
