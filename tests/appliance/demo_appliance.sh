# The appliance part of scripts/demo (sourced by it: uses BIN, D, addr,
# step and the demo's CA in $D/pki). Builds or reuses the .ova, boots it in
# QEMU (TCG) with its OVF properties on an ISO, lets ferry-vcsim hot-plug
# vm-two-disks' snapshot disks into it, backs the VM up through the agent
# inside, restores on the host and compares; prints where the time went.
# Sets appl_summary for the demo's summary.

now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

step "The proxy appliance: scripts/appliance --reuse (builds the .ova when an input changed)"
t0=$(now)
ova=$(scripts/appliance --reuse | tail -n 1)
t_build=$(secs "$t0" "$(now)")
python3 tests/appliance/check_ova.py "$ova"

step "Boot it in QEMU (TCG) from its own disk, OVF properties on an ISO"
"$BIN/ferry" ca issue "$D/pki" appliance --san 127.0.0.1 --role agent >/dev/null
[[ -f "$D/pki/central.crt" ]] || "$BIN/ferry" ca issue "$D/pki" central --role controller >/dev/null
# The central server restores what the appliance backs up (docs/SECURITY.md).
"$BIN/ferry-repo" acl grant --root "$D/repo" --client central --owner appliance >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$D/vc.key" -out "$D/vc.crt" 2>/dev/null
thumb=$(openssl x509 -in "$D/vc.crt" -noout -fingerprint -sha256 | cut -d= -f2)
vcport=$(free_port)
ctlport=$(free_port)
python3 tests/appliance/ovfenv.py \
  --file-prop ferry.tls.ca="$D/pki/ca.crt" --file-prop ferry.tls.cert="$D/pki/appliance.crt" \
  --file-prop ferry.tls.key="$D/pki/appliance.key" \
  ferry.repository=10.0.2.101:7300 ferry.vcenter.server=10.0.2.100:443 \
  "ferry.vcenter.thumbprint=$thumb" ferry.vcenter.user=administrator@vsphere.local \
  ferry.vcenter.password=ferry-vcsim-pw network.hostname=ferry-demo-proxy \
  network.address=10.0.2.15/24 network.gateway=10.0.2.2 >"$D/ovf-env.xml"
mkdir -p "$D/qemu"
t0=$(now)
python3 tests/appliance/qemu_guest.py boot --no-wait --ova "$ova" --dir "$D/qemu" --env "$D/ovf-env.xml" \
  --uuid "$(python3 -c 'import uuid; print(uuid.uuid4())')" --mac 00:50:56:3f:00:01 \
  --guestfwd "10.0.2.100:443=$vcport" --guestfwd "10.0.2.101:7300=${addr##*:}" --hostfwd "$ctlport=7301"
# The demo's first simulator stays; this one's proxy VM is the guest.
"$BIN/ferry-vcsim" --listen "127.0.0.1:$vcport" --datadir "$D/vcdata2" --ready-file "$D/vcready2.json" \
  --cert "$D/vc.crt" --key "$D/vc.key" --guest-qmp "$D/qemu/qmp.sock" 2>"$D/vcsim2.log" &
vcsim2_pid=$!
for _ in $(seq 1 300); do [[ -s "$D/vcready2.json" ]] && break; sleep 0.1; done
[[ -s "$D/vcready2.json" ]] || { cat "$D/vcsim2.log"; exit 1; }
python3 tests/appliance/qemu_guest.py wait "$D/qemu" --timeout 420
grep -a "ferry-appliance-setup" "$D/qemu/serial.log" | tr -d '\000' | tail -n 4
t_boot=$(secs "$t0" "$(now)")
cat >"$D/central2.conf" <<CONF
ferry.agent=127.0.0.1:$ctlport
ferry.repository=$addr
ferry.tls.cert=$D/pki/central.crt
ferry.tls.key=$D/pki/central.key
ferry.tls.ca=$D/pki/ca.crt
CONF
for _ in $(seq 1 90); do
  "$BIN/ferry" --config "$D/central2.conf" agent status >/dev/null 2>&1 && break
  sleep 2
done
"$BIN/ferry" --config "$D/central2.conf" agent status
t_agent=$(secs "$t0" "$(now)")

step "ferry backup --vm vm-two-disks through the appliance: hot-add into the guest's kernel"
t0=$(now)
vm2_rc=0
# Its own group name: the demo's first part backed vm-two-disks up as
# demo-agent, and a group belongs to the certificate that made it.
"$BIN/ferry" --config "$D/central2.conf" backup --vm vm-two-disks --name appliance-vm-two-disks \
  --transport hotadd --json \
  >"$D/vm2.json" 2> >(while IFS= read -r line; do printf '%s %s\n' "$(now)" "$line"; done >"$D/vm2.err") || vm2_rc=$?
if [[ $vm2_rc != 0 ]]; then
  sleep 0.2
  echo "the backup through the appliance failed (exit $vm2_rc):" >&2
  cat "$D/vm2.err" "$D/vm2.json" >&2
  echo "--- ferry-vcsim (the appliance's vCenter), last 40 lines" >&2
  tail -n 40 "$D/vcsim2.log" >&2
  echo "--- the appliance's serial console, last 40 lines" >&2
  tr -d '\000' <"$D/qemu/serial.log" | tail -n 40 >&2
  python3 tests/appliance/qemu_guest.py stop "$D/qemu" || true
  kill "$vcsim2_pid" 2>/dev/null; wait "$vcsim2_pid" 2>/dev/null || true
  exit 1
fi
t_backup=$(secs "$t0" "$(now)")
sleep 0.2
python3 - "$t0" "$D/vm2.err" "$D/vcsim2.log" <<'PY'
import datetime, re, sys
t0 = float(sys.argv[1])
events = []
for line in open(sys.argv[2]):
    ts, _, msg = line.rstrip("\n").partition(" ")
    events.append((float(ts) - t0, "ferry  ", msg))
day = datetime.date.today()
for line in open(sys.argv[3]):
    m = re.match(r"ferry-vcsim: (\d+):(\d+):(\d+\.\d+) (guest: .*(plugged|unplugged).*)", line)
    if m:
        t = datetime.datetime.combine(day, datetime.time(int(m[1]), int(m[2]))).timestamp() + float(m[3])
        events.append((t - t0, "vcsim  ", m[4]))
print("where the time went (seconds since the backup was asked for):")
for t, who, msg in sorted(events):
    if t >= -1:
        print(f"  {t:7.1f}  {who}{msg}")
PY
vm2_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["backup_id"])' "$D/vm2.json")
for i in 0 1; do
  flat=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vms"]["vm-two-disks"]["disks"][int(sys.argv[2])]["flat_path"])' "$D/vcready2.json" $i)
  "$BIN/ferry" --config "$D/central2.conf" restore "$vm2_id" --disk $i --output "$D/vm2-disk$i.img" 2>/dev/null
  cmp "$flat" "$D/vm2-disk$i.img"
done
echo "both disks read inside the appliance restored byte-identical"
python3 tests/appliance/qemu_guest.py stop "$D/qemu"
kill "$vcsim2_pid" 2>/dev/null; wait "$vcsim2_pid" 2>/dev/null || true
appl_summary="  appliance            .ova ready in ${t_build} s, booted (TCG) in ${t_boot} s, agent answering at ${t_agent} s, VM backup through it ${t_backup} s, restored byte-identical"
