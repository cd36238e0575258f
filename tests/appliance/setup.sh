#!/usr/bin/env bash
# ova.setup: the appliance's first-boot unit (/usr/lib/ferry-appliance/setup)
# run from the shipped .ova's own root file system, for the cases a QEMU boot
# cannot give cheaply:
#
# 1. the com.vmware.guestInfo transport: a stand-in `vmtoolsd` answers
#    `--cmd "info-get guestinfo.ovfEnv"` with the environment, as VMware
#    Tools does on ESXi (QEMU has no guestinfo RPC). The setup takes it,
#    writes agent.conf, the certificates and the host name, and the console
#    banner (/etc/issue) says "Configured from VMware Tools";
# 2. a broken environment (a certificate that is not base64): the unit
#    fails, the banner says NOT CONFIGURED and names the property, and
#    nothing of the good configuration was overwritten; the agent's unit
#    requires the setup unit, so systemd does not start it;
# 3. no environment at all (vmtoolsd answers nothing, no CD): NOT
#    CONFIGURED, and the banner says how to deploy.
#
#   setup.sh OVA BIN_DIR
#
# Emulated: VMware Tools' RPC (the stand-in) and the boot (the script runs
# in a chroot on a copy of the image, in private mount and UTS namespaces,
# with a minimal /dev without CD drives). The script, ferry-agent and every
# file they write are the shipped ones.
set -euo pipefail
OVA=$1
BIN=$2
HERE=$(cd "$(dirname "$0")" && pwd)
export BIN TOOLS=$HERE/../tools
source "$HERE/../integration/lib.sh"
[[ $(id -u) == 0 ]] || fail "needs root (loop mount and chroot; the appliance tests run as root in CI)"
[[ -s "$OVA" ]] || fail "$OVA does not exist: run scripts/appliance first"
for p in qemu-img unshare chroot; do
  command -v $p >/dev/null || fail "$p is missing (scripts/deps installs it)"
done

note "the image: the .ova's VMDK as a raw copy, its root partition mounted"
vmdk=$(tar -tf "$OVA" | grep '\.vmdk$' | head -n1)
[[ -n "$vmdk" ]] || fail "no .vmdk in $OVA"
tar -xf "$OVA" -C "$T" "$vmdk"
qemu-img convert -f vmdk -O raw "$T/$vmdk" "$T/root.raw"
rm -f "$T/$vmdk"
# One partition at sector 2048 (scripts/appliance).
ROOT=$T/root
mkdir -p "$ROOT"
mount -o loop,offset=$((2048 * 512)) "$T/root.raw" "$ROOT"
CLEANUP_CMDS+=("umount -R '$ROOT'")
[[ -x "$ROOT/usr/lib/ferry-appliance/setup" ]] || fail "the image has no /usr/lib/ferry-appliance/setup"
grep -q '^Requires=ferry-appliance-setup.service' \
  "$ROOT/etc/systemd/system/ferry-agent.service.d/appliance.conf" ||
  fail "ferry-agent.service does not require the setup unit: a broken environment would start the agent"

# The stand-in for VMware Tools: prints the environment in $ROOT/stand-in
# for exactly the call the setup makes, fails otherwise (as vmtoolsd does
# outside a VMware VM). /usr/local/sbin comes first in the setup's PATH.
mkdir -p "$ROOT/usr/local/sbin"
cat >"$ROOT/usr/local/sbin/vmtoolsd" <<'EOF'
#!/bin/sh
[ "$1" = "--cmd" ] && [ "$2" = "info-get guestinfo.ovfEnv" ] && [ -s /stand-in/ovfEnv ] || exit 1
cat /stand-in/ovfEnv
EOF
chmod 0755 "$ROOT/usr/local/sbin/vmtoolsd"
mkdir -p "$ROOT/stand-in"

# run_setup: the unit's command, as systemd runs it (root, PATH of a
# service), with /proc and a /dev of the usual nodes but no CD drive.
run_setup() {
  unshare --mount --uts --propagation private sh -c '
    set -e
    root=$1
    mount -t proc proc "$root/proc"
    mount -t tmpfs -o mode=0755 dev "$root/dev"
    for n in null:1:3 zero:1:5 random:1:8 urandom:1:9; do
      mknod -m 0666 "$root/dev/${n%%:*}" c $(echo "${n#*:}" | tr : " ")
    done
    mount -t tmpfs -o mode=0755 run "$root/run"
    exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      chroot "$root" /usr/lib/ferry-appliance/setup' sh "$ROOT" >"$T/setup.out" 2>&1
}

"$FERRY" ca init "$T/pki" >/dev/null
"$FERRY" ca issue "$T/pki" proxy1 --role agent >/dev/null
env_args=(--file-prop ferry.tls.ca="$T/pki/ca.crt" --file-prop ferry.tls.key="$T/pki/proxy1.key"
  ferry.repository=10.0.2.101:7300 ferry.control.allowedClients=central
  ferry.vcenter.server=10.0.2.100:443 ferry.vcenter.user=administrator@vsphere.local
  ferry.vcenter.password=guestinfo-pw network.hostname=proxy-guestinfo
  network.address=10.0.2.15/24 network.gateway=10.0.2.2)

note "1. the guestinfo transport (stand-in vmtoolsd)"
python3 "$HERE/ovfenv.py" "${env_args[@]}" --file-prop ferry.tls.cert="$T/pki/proxy1.crt" >"$ROOT/stand-in/ovfEnv"
run_setup || fail "the setup failed with a good environment: $(cat "$T/setup.out")"
grep -q 'OVF environment from VMware Tools (guestinfo.ovfEnv)' "$T/setup.out" ||
  fail "the setup did not take the environment from guestinfo: $(cat "$T/setup.out")"
grep -q 'Configured from VMware Tools (guestinfo.ovfEnv)' "$ROOT/etc/issue" ||
  fail "the banner does not say where the configuration came from: $(cat "$ROOT/etc/issue")"
# agetty's escapes stay escapes: \n is the host name, \l the terminal.
head -n1 "$ROOT/etc/issue" | grep -qF '(Debian GNU/Linux 12) \n \l' ||
  fail "the banner's first line lost agetty's escapes: $(head -n2 "$ROOT/etc/issue")"
grep -qx 'ferry.repository=10.0.2.101:7300' "$ROOT/etc/ferry/agent.conf" ||
  fail "agent.conf does not hold the repository property: $(cat "$ROOT/etc/ferry/agent.conf")"
[[ $(cat "$ROOT/etc/hostname") == proxy-guestinfo ]] || fail "the host name is $(cat "$ROOT/etc/hostname")"
cmp -s "$ROOT/etc/ferry/pki/agent.crt" "$T/pki/proxy1.crt" ||
  fail "the agent's certificate is not the one given as ferry.tls.cert"
cp "$ROOT/etc/ferry/agent.conf" "$T/agent.conf.good"
echo "banner:"; sed 's/^/  /' "$ROOT/etc/issue"

note "2. a broken environment: ferry.tls.cert is not base64"
python3 "$HERE/ovfenv.py" "${env_args[@]}" ferry.tls.cert='not*base64!' >"$ROOT/stand-in/ovfEnv"
if run_setup; then fail "the setup succeeded with a broken certificate: $(cat "$T/setup.out")"; fi
grep -q 'NOT CONFIGURED: the backup agent is not running.' "$ROOT/etc/issue" ||
  fail "the banner does not say the agent is not configured: $(cat "$ROOT/etc/issue")"
grep -q 'property ferry.tls.cert' "$ROOT/etc/issue" ||
  fail "the banner does not name the bad property: $(cat "$ROOT/etc/issue")"
cmp -s "$ROOT/etc/ferry/agent.conf" "$T/agent.conf.good" ||
  fail "a broken environment changed agent.conf"
echo "banner:"; sed 's/^/  /' "$ROOT/etc/issue"

note "3. no environment: vmtoolsd answers nothing and there is no CD"
rm -f "$ROOT/stand-in/ovfEnv"
if run_setup; then fail "the setup succeeded without an environment: $(cat "$T/setup.out")"; fi
grep -q 'no OVF environment' "$ROOT/etc/issue" ||
  fail "the banner does not say the environment is missing: $(cat "$ROOT/etc/issue")"
echo "ova.setup: guestinfo transport, broken and missing environments: ok"
