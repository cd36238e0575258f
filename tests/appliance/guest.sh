#!/usr/bin/env bash
# ova.guest: the appliance booted from its own .ova in QEMU (TCG), configured
# by its OVF properties on an ISO, driven from the host as the central
# backup server would. One boot (plus the reboot of the reset case) serves
# every check, because a TCG boot costs 20-60 s on a shared 2-core machine.
#
#   guest.sh OVA BIN_DIR [--reset]
#
# 1. the first-boot unit took its configuration from the ISO: the agent
#    inside answers `ferry agent status` over mutual TLS with the
#    certificates given as properties, through the forwarded control port;
#    its self-cleanup at start reached the simulated vCenter;
# 2. `ferry backup --vm vm-two-disks --transport hotadd`: ferry-vcsim
#    (--guest-qmp) hot-plugs both frozen disks into the guest's paravirtual
#    SCSI controller, the guest's kernel and udev show them, the agent finds
#    them by their serial (VPD 0x80), reads them, detaches them; the restore
#    on the host is byte-identical to the frozen files;
# 3. `ferry restore-vm` of that backup as a new VM over hotadd: its new
#    disks are hot-plugged into the guest writable and written there; they
#    equal the frozen files, and nothing stays attached;
# 4. with --reset (as ctest runs it): QMP system_reset while a disk is
#    attached: after the reboot the
#    agent's startup cleanup detaches it (ferry-vcsim unplugs it from the
#    guest), removes the snapshot, re-enables the methods; `ferry agent
#    status` says numCleanedUp > 0, numRemaining = 0.
# Emulated: the vCenter (ferry-vcsim) and the hypervisor (QEMU: pvscsi,
# vmxnet3, SMBIOS as VMware's, the OVF "iso" transport). The guest reaches
# only ferry-vcsim and ferry-repo on this machine's loopback (user network,
# restrict=on, guestfwd). A guest that does not boot in time fails the test.
set -euo pipefail
OVA=$1
BIN=$2
RESET=${3:-}
HERE=$(cd "$(dirname "$0")" && pwd)
export BIN TOOLS=$HERE/../tools
source "$HERE/../integration/lib.sh"
VCSIM=$BIN/ferry-vcsim
GUEST=$T/qemu
BOOT_TIMEOUT=${FERRY_GUEST_BOOT_TIMEOUT:-420}
[[ $(id -u) == 0 ]] || fail "needs root (the appliance tests run as root in CI)"
[[ -s "$OVA" ]] || fail "$OVA does not exist: run scripts/appliance first"
for p in qemu-system-x86_64 genisoimage openssl; do
  command -v $p >/dev/null || fail "$p is missing (scripts/deps installs it)"
done

VCSIM_PID=""
stop_all() {
  python3 "$HERE/qemu_guest.py" stop "$GUEST" 2>/dev/null || true
  if [[ -n "$VCSIM_PID" ]]; then kill "$VCSIM_PID" 2>/dev/null || true; wait "$VCSIM_PID" 2>/dev/null || true; fi
}
CLEANUP_CMDS+=("stop_all" "[[ \$rc -eq 0 ]] || { echo '--- guest console (last 60 lines)'; tail -n 60 \"$GUEST/serial.log\" 2>/dev/null | tr -d '\\000'; echo '--- ferry-vcsim log (last 40 lines)'; tail -n 40 \"$T/vcsim.log\"; }")

t_start=$SECONDS
phase() { echo "--- [$((SECONDS - t_start)) s] $*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

phase "certificates: CA, repository (also 10.0.2.101, its address in the guest), proxy (127.0.0.1, where the control port is forwarded), central server"
"$FERRY" ca init "$T/pki" >/dev/null
"$FERRY" ca issue "$T/pki" 127.0.0.1 --san localhost,10.0.2.101 --role repository >/dev/null
"$FERRY" ca issue "$T/pki" proxy1 --san 127.0.0.1 --role agent >/dev/null
"$FERRY" ca issue "$T/pki" central --role controller >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$T/vc.key" -out "$T/vc.crt" 2>/dev/null
thumb=$(openssl x509 -in "$T/vc.crt" -noout -fingerprint -sha256 | cut -d= -f2)

start_repo
# The central server restores what the proxy backs up: a read grant on
# proxy1's groups, as an admin would give it (docs/SECURITY.md).
"$REPO" acl grant --root "$T/repo" --client central --owner proxy1 >/dev/null
VCPORT=$(free_port)
CTLPORT=$(free_port)
UUID=$(python3 -c 'import uuid; print(uuid.uuid4())')
MAC=$(printf '00:50:56:%02x:%02x:%02x' $((RANDOM % 64)) $((RANDOM % 256)) $((RANDOM % 256)))

phase "the OVF environment (ISO transport) and the guest (UUID $UUID, MAC $MAC)"
python3 "$HERE/ovfenv.py" \
  --file-prop ferry.tls.ca="$T/pki/ca.crt" --file-prop ferry.tls.cert="$T/pki/proxy1.crt" \
  --file-prop ferry.tls.key="$T/pki/proxy1.key" \
  ferry.repository=10.0.2.101:7300 ferry.control.listen=0.0.0.0:7301 \
  ferry.control.allowedClients=central \
  ferry.vcenter.server=10.0.2.100:443 "ferry.vcenter.thumbprint=$thumb" \
  ferry.vcenter.user=administrator@vsphere.local ferry.vcenter.password=ferry-vcsim-pw \
  network.hostname=proxy-under-test network.address=10.0.2.15/24 network.gateway=10.0.2.2 \
  >"$T/ovf-env.xml"
mkdir -p "$GUEST"
repo_port=${ADDR##*:}
t_boot=$SECONDS
python3 "$HERE/qemu_guest.py" boot --no-wait --ova "$OVA" --dir "$GUEST" --env "$T/ovf-env.xml" \
  --uuid "$UUID" --mac "$MAC" --guestfwd "10.0.2.100:443=$VCPORT" \
  --guestfwd "10.0.2.101:7300=$repo_port" --hostfwd "$CTLPORT=7301"

phase "ferry-vcsim --guest-qmp: the proxy VM is the guest"
"$VCSIM" --listen "127.0.0.1:$VCPORT" --datadir "$T/vcdata" --ready-file "$T/vcready.json" \
  --cert "$T/vc.crt" --key "$T/vc.key" --guest-qmp "$GUEST/qmp.sock" >"$T/vcsim.log" 2>&1 &
VCSIM_PID=$!
for _ in $(seq 1 300); do
  [[ -s "$T/vcready.json" ]] && break
  kill -0 "$VCSIM_PID" 2>/dev/null || fail "ferry-vcsim exited: $(cat "$T/vcsim.log")"
  sleep 0.1
done
[[ -s "$T/vcready.json" ]] || fail "ferry-vcsim did not start"
proxy_mac=$(json "$T/vcready.json" "j['vms']['ferry-proxy']['nics'][0]['mac']")
[[ "$proxy_mac" == "$MAC" ]] || fail "the proxy VM's MAC is $proxy_mac, the guest's $MAC"
control() { curl -sS -k -X "$1" "$(json "$T/vcready.json" "j['control']")/$2"; }

phase "boot (TCG; at most $BOOT_TIMEOUT s)"
python3 "$HERE/qemu_guest.py" wait "$GUEST" --timeout "$BOOT_TIMEOUT" || fail "the guest did not boot in time"
grep -aq "ferry-appliance-setup: configured" "$GUEST/serial.log" ||
  fail "the first-boot unit did not configure the agent: $(grep -a ferry-appliance-setup "$GUEST/serial.log")"
boot_s=$((SECONDS - t_boot))

cat >"$T/central.conf" <<CONF
ferry.agent=127.0.0.1:$CTLPORT
ferry.repository=$ADDR
ferry.tls.cert=$T/pki/central.crt
ferry.tls.key=$T/pki/central.key
ferry.tls.ca=$T/pki/ca.crt
CONF
ctl() { "$FERRY" --config "$T/central.conf" "$@"; }
# wait_status SECONDS: until the agent answers (it starts after the setup
# unit, and runs its self-cleanup first).
wait_status() {
  local deadline=$((SECONDS + $1))
  while ((SECONDS < deadline)); do
    ctl agent status --json >"$T/status.json" 2>"$T/status.err" && return 0
    sleep 2
  done
  fail "the agent in the guest does not answer: $(cat "$T/status.err")"
}
phase "ferry agent status over mutual TLS, through the forwarded port"
wait_status 180
agent_s=$((SECONDS - t_boot))
[[ $(json "$T/status.json" 'j["last_cleanup"]["ran"] and j["last_cleanup"]["ok"]') == True ]] ||
  fail "the self-cleanup at start did not reach the vCenter: $(cat "$T/status.json")"
echo "agent status: $(cat "$T/status.json")"
# The controller checks the agent's certificate: another CA's is refused.
"$FERRY" ca init "$T/other" >/dev/null
"$FERRY" ca issue "$T/other" central --role controller >/dev/null
sed -e "s|$T/pki/central|$T/other/central|" "$T/central.conf" >"$T/intruder.conf"
if "$FERRY" --config "$T/intruder.conf" agent status >/dev/null 2>&1; then
  fail "a controller with another CA's certificate was served"
fi
echo "ok: booted in ${boot_s} s, agent answering after ${agent_s} s; another CA's client is refused"

phase "ferry backup --vm vm-two-disks --transport hotadd (disks hot-plugged into the guest)"
t_b=$SECONDS
ctl backup --vm vm-two-disks --transport hotadd --full --json >"$T/backup.json" 2>"$T/backup.err" ||
  fail "backup failed: $(cat "$T/backup.err")"
backup_s=$((SECONDS - t_b))
cat "$T/backup.err"
id=$(json "$T/backup.json" 'j["backup_id"]')
for i in 0 1; do
  [[ $(json "$T/backup.json" "j['disks'][$i]['transport']") == hotadd ]] || fail "disk $i not read over hotadd"
done
grep -q "plugged as ferry-disk" "$T/vcsim.log" || fail "ferry-vcsim plugged nothing into the guest"
grep -q "unplugged" "$T/vcsim.log" || fail "ferry-vcsim unplugged nothing"
for i in 0 1; do
  flat=$(json "$T/vcready.json" "j['vms']['vm-two-disks']['disks'][$i]['flat_path']")
  ctl restore "$id" --disk $i --output "$T/r$i.img" 2>/dev/null
  cmp "$T/r$i.img" "$flat" || fail "restored disk $i differs from $flat"
done
# What vSphere lists on the proxy VM, asked from the host as any client would.
mkdir -p "$T/vc"
python3 "$HERE/../vsphere/ready2conf.py" "$T/vcready.json" "$T/vc" | grep -v '^test\.' >"$T/host.conf"
proxy_disks() {
  "$AGENT" inventory --config "$T/host.conf" --vm ferry-proxy --json 2>/dev/null |
    python3 -c "import json,sys; R=json.load(sys.stdin); print(len(R['vms'][0]['disks']))"
}
chain_len() { control GET "disks?vm=$1" | python3 -c "import json,sys; D=json.load(sys.stdin); print(max(len(d['chain']) for d in D['disks']))"; }
[[ $(proxy_disks) == 1 ]] || fail "disks left on the proxy"
[[ $(chain_len vm-two-disks) == 1 ]] || fail "a snapshot is left"
echo "ok: backup over hot-add in the guest in ${backup_s} s; both disks restored byte-identical"

phase "ferry restore-vm --transport hotadd: the new VM's disks plugged into the guest writable"
t_r=$SECONDS
ctl restore-vm "$id" --name restored-in-guest --transport hotadd --json >"$T/rv.json" 2>"$T/rv.err" ||
  fail "restore-vm failed: $(cat "$T/rv.err") $(cat "$T/rv.json" 2>/dev/null)"
restore_s=$((SECONDS - t_r))
[[ $(json "$T/rv.json" '(j["ok"], [(d["restored"], d["transport"]) for d in j["disks"]])') == \
  "(True, [(True, 'hotadd'), (True, 'hotadd')])" ]] || fail "restore-vm result: $(cat "$T/rv.json")"
grep -q "(read-only false)" "$T/vcsim.log" || fail "ferry-vcsim plugged no disk writable into the guest"
control GET "disks?vm=restored-in-guest" >"$T/rvd.json"
for i in 0 1; do
  flat=$(json "$T/vcready.json" "j['vms']['vm-two-disks']['disks'][$i]['flat_path']")
  cmp "$(json "$T/rvd.json" "j['disks'][$i]['live']['flat_path']")" "$flat" ||
    fail "disk $i of the restored VM differs from $flat"
done
[[ $(proxy_disks) == 1 ]] || fail "disks left on the proxy after the restore"
echo "ok: restore-vm over hot-add in the guest in ${restore_s} s; both new disks byte-identical, nothing left attached"

if [[ "$RESET" != --reset ]]; then
  echo "PASS (total $((SECONDS - t_start)) s; without the reset case, which runs with --reset)"
  exit 0
fi
phase "QMP system_reset while a disk of vm-two-disks is attached"
plugs_before=$(grep -c "plugged as" "$T/vcsim.log" || true)
ctl backup --vm vm-two-disks --transport hotadd --full >"$T/b2.out" 2>"$T/b2.err" &
b2=$!
attached=0
# The simulator logs each hot-plug into the guest: reset right after one.
for _ in $(seq 1 1200); do
  if [[ $(grep -c "plugged as" "$T/vcsim.log" || true) -gt $plugs_before ]]; then attached=1; break; fi
  kill -0 $b2 2>/dev/null || break
  sleep 0.05
done
[[ $attached == 1 ]] || fail "no disk was attached during the second backup: $(cat "$T/b2.err")"
: >"$GUEST/serial.log"
python3 "$HERE/qemu_guest.py" qmp "$GUEST" system_reset >/dev/null
t_reset=$SECONDS
# Checked at once: the rebooted agent's startup cleanup may detach it
# before the client below notices the lost connection.
[[ $(proxy_disks) -gt 1 ]] || fail "the reset did not leave a disk attached (nothing to clean up)"
# The client would wait minutes for the lost job to time out: the central
# server's side is not under test here, so stop it (it must not have
# reported success).
if ! kill -0 $b2 2>/dev/null; then
  if wait $b2; then fail "the backup survived a reset of the proxy"; fi
else
  kill $b2 2>/dev/null || true
  wait $b2 2>/dev/null || true
fi
python3 "$HERE/qemu_guest.py" wait "$GUEST" --timeout "$BOOT_TIMEOUT" || fail "the guest did not come back after the reset"
wait_status 180
for _ in $(seq 1 60); do
  [[ $(json "$T/status.json" 'j["last_cleanup"]["ran"]') == True ]] && break
  sleep 2
  ctl agent status --json >"$T/status.json"
done
echo "agent status after the reset: $(cat "$T/status.json")"
[[ $(json "$T/status.json" 'j["last_cleanup"]["numCleanedUp"]') -gt 0 ]] || fail "cleanup cleaned nothing"
[[ $(json "$T/status.json" 'j["last_cleanup"]["numRemaining"]') == 0 ]] || fail "cleanup left something"
[[ $(proxy_disks) == 1 ]] || fail "disks still on the proxy after the cleanup"
[[ $(chain_len vm-two-disks) == 1 ]] || fail "the snapshot was not removed"
dm=$(python3 "$HERE/../service/vsphere_props.py" "$T/vcready.json" vm-two-disks disabledMethod)
[[ -z "$dm" ]] || fail "methods still disabled: $dm"
echo "ok: after the reset ($((SECONDS - t_reset)) s to clean up) nothing is attached, no snapshot, no disabled method"
echo "PASS (total $((SECONDS - t_start)) s)"
