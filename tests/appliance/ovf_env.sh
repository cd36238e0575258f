#!/usr/bin/env bash
# appliance.ovf_env: `ferry-agent ovf-env` turns an OVF environment into the
# appliance's files, and refuses every broken input with the property's
# name, writing nothing.
#   ovf_env.sh BIN_DIR
set -euo pipefail
BIN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/ferry-ovfenv.XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$BIN/ferry" ca init "$T/pki" >/dev/null
"$BIN/ferry" ca issue "$T/pki" proxy1 --role agent >/dev/null
"$BIN/ferry" ca issue "$T/pki" other --role agent >/dev/null
"$BIN/ferry" ca init "$T/pki2" >/dev/null
"$BIN/ferry" ca issue "$T/pki2" stranger --role agent >/dev/null
KEY="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@host"

good=(--file-prop ferry.tls.ca="$T/pki/ca.crt" --file-prop ferry.tls.cert="$T/pki/proxy1.crt"
      --file-prop ferry.tls.key="$T/pki/proxy1.key"
      ferry.repository=repo.example.org:7300 ferry.control.listen=0.0.0.0:7301
      ferry.vcenter.server=vc.example.org ferry.vcenter.user=backup@vsphere.local
      ferry.vcenter.password='s3cret p@ss' network.hostname=proxy-7
      network.address=192.0.2.10/24 network.gateway=192.0.2.1 network.dns=192.0.2.53,192.0.2.54
      "appliance.sshAuthorizedKey=$KEY")

# ---- a good environment: every file, with its mode ------------------------
python3 "$HERE/ovfenv.py" "${good[@]}" >"$T/env.xml"
R=$T/root
"$BIN/ferry-agent" ovf-env --root "$R" "$T/env.xml" >"$T/out" 2>"$T/err" || { cat "$T/err"; fail "good env refused"; }
[[ ! -s "$T/err" ]] || { cat "$T/err"; fail "warnings on a good env"; }
[[ $(grep -c '^changed ' "$T/out") -eq 8 ]] || { cat "$T/out"; fail "expected 8 files written"; }
cmp "$R/etc/ferry/pki/agent.key" "$T/pki/proxy1.key" || fail "key differs"
cmp "$R/etc/ferry/pki/ca.crt" "$T/pki/ca.crt" || fail "ca differs"
[[ $(stat -c %a "$R/etc/ferry/pki/agent.key") == 600 ]] || fail "agent.key not 0600"
[[ $(stat -c %a "$R/etc/ferry/vcenter.password") == 600 ]] || fail "password not 0600"
[[ $(stat -c %a "$R/root/.ssh/authorized_keys") == 600 ]] || fail "authorized_keys not 0600"
[[ $(stat -c %a "$R/root/.ssh") == 700 ]] || fail "/root/.ssh not 0700"
[[ $(cat "$R/etc/ferry/vcenter.password") == 's3cret p@ss' ]] || fail "password content"
[[ $(cat "$R/etc/hostname") == proxy-7 ]] || fail "hostname"
grep -qx 'Address=192.0.2.10/24' "$R/etc/systemd/network/10-ferry.network" || fail "address"
grep -qx 'Gateway=192.0.2.1' "$R/etc/systemd/network/10-ferry.network" || fail "gateway"
[[ $(grep -c '^DNS=' "$R/etc/systemd/network/10-ferry.network") -eq 2 ]] || fail "dns"
grep -qx "$KEY" "$R/root/.ssh/authorized_keys" || fail "ssh key"
grep -qx 'ferry.repository=repo.example.org:7300' "$R/etc/ferry/agent.conf" || fail "repository"
grep -qx 'ferry.vcenter.passwordFile=/etc/ferry/vcenter.password' "$R/etc/ferry/agent.conf" || fail "passwordFile"
if grep -q 's3cret' "$R/etc/ferry/agent.conf"; then fail "password in agent.conf"; fi
# The written configuration is one the agent loads without a word (paths
# pointed into the test's root).
sed "s|=/etc/ferry/|=$R/etc/ferry/|" "$R/etc/ferry/agent.conf" >"$T/agent.conf"
out=$("$BIN/ferry-agent" transports --config "$T/agent.conf" 2>&1 >/dev/null) || fail "agent.conf refused: $out"
[[ -z "$out" ]] || fail "agent.conf warns: $out"
echo "ok: a good environment writes 8 files with their modes"

# ---- every boot: unchanged properties rewrite nothing; changed ones do ----
"$BIN/ferry-agent" ovf-env --root "$R" "$T/env.xml" >"$T/out"
[[ ! -s "$T/out" ]] || { cat "$T/out"; fail "unchanged env rewrote files"; }
python3 "$HERE/ovfenv.py" --file-prop ferry.tls.ca="$T/pki/ca.crt" --file-prop ferry.tls.cert="$T/pki/proxy1.crt" \
  --file-prop ferry.tls.key="$T/pki/proxy1.key" ferry.repository=repo.example.org:7300 \
  ferry.vcenter.server=vc.example.org ferry.vcenter.user=backup@vsphere.local \
  ferry.vcenter.password='s3cret p@ss' network.hostname=proxy-8 >"$T/env2.xml"
"$BIN/ferry-agent" ovf-env --root "$R" "$T/env2.xml" >"$T/out"
sort "$T/out" >"$T/out.sorted"
printf 'changed etc/hostname\nchanged etc/systemd/network/10-ferry.network\nchanged root/.ssh/authorized_keys\n' >"$T/want"
diff "$T/want" "$T/out.sorted" || fail "changed files on the second boot"
[[ ! -e "$R/etc/systemd/network/10-ferry.network" ]] || fail "static network file left for DHCP"
[[ ! -e "$R/root/.ssh/authorized_keys" ]] || fail "authorized_keys left without a key"
echo "ok: a second boot rewrites only what changed (hostname, DHCP, no SSH key)"

# ---- broken inputs: one message naming the property, nothing written ---
expect_refused() {
  local what=$1 pattern=$2 file=$3
  rm -rf "$T/r2"
  if "$BIN/ferry-agent" ovf-env --root "$T/r2" "$file" >"$T/out" 2>"$T/err"; then
    fail "$what: accepted"
  fi
  grep -q -- "$pattern" "$T/err" || { cat "$T/err"; fail "$what: no '$pattern' in the message"; }
  [[ ! -e "$T/r2" ]] || fail "$what: something was written"
  echo "ok: $what: $(grep -m1 -- "$pattern" "$T/err")"
}
with() { python3 "$HERE/ovfenv.py" "$@" >"$T/bad.xml"; echo "$T/bad.xml"; }
base=(--file-prop ferry.tls.ca="$T/pki/ca.crt" ferry.repository=r:1
      ferry.vcenter.server=vc ferry.vcenter.user=u ferry.vcenter.password=p)

expect_refused "missing file" "No such file" "$T/nonexistent.xml"
: >"$T/empty.xml"; expect_refused "empty file" "is empty" "$T/empty.xml"
printf '<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"><PropertySection>' >"$T/trunc.xml"
expect_refused "truncated XML" "not well-formed" "$T/trunc.xml"
printf '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"/>' >"$T/dtd.xml"
expect_refused "a DOCTYPE" "DOCTYPE" "$T/dtd.xml"
printf '<Environment><PropertySection/></Environment>' >"$T/nons.xml"
expect_refused "no namespace" "not an OVF environment" "$T/nons.xml"
head -c $((1024 * 1024 + 10)) /dev/zero | tr '\0' ' ' >"$T/big.xml"
expect_refused "over 1 MiB" "larger than the limit of 1048576" "$T/big.xml"
expect_refused "missing certificate" "property ferry.tls.cert: is required" "$(with "${base[@]}" --file-prop ferry.tls.key="$T/pki/proxy1.key")"
expect_refused "bad base64" "property ferry.tls.cert: is not base64" \
  "$(with "${base[@]}" ferry.tls.cert='LS0tLS1CRUdJTi!!' --file-prop ferry.tls.key="$T/pki/proxy1.key")"
expect_refused "truncated base64" "property ferry.tls.key: is not base64" \
  "$(with "${base[@]}" --file-prop ferry.tls.cert="$T/pki/proxy1.crt" ferry.tls.key="$(base64 -w0 "$T/pki/proxy1.key" | head -c 101)")"
expect_refused "base64 of no PEM" "property ferry.tls.cert: decodes to no PEM certificate" \
  "$(with "${base[@]}" ferry.tls.cert="$(echo hello | base64 -w0)" --file-prop ferry.tls.key="$T/pki/proxy1.key")"
expect_refused "key of another certificate" "property ferry.tls.key: does not match the certificate" \
  "$(with "${base[@]}" --file-prop ferry.tls.cert="$T/pki/proxy1.crt" --file-prop ferry.tls.key="$T/pki/other.key")"
expect_refused "certificate of another CA" "property ferry.tls.cert: is not signed by ferry.tls.ca" \
  "$(with "${base[@]}" --file-prop ferry.tls.cert="$T/pki2/stranger.crt" --file-prop ferry.tls.key="$T/pki2/stranger.key")"
ok=("${base[@]}" --file-prop ferry.tls.cert="$T/pki/proxy1.crt" --file-prop ferry.tls.key="$T/pki/proxy1.key")
expect_refused "a key given twice" "property ferry.repository is given twice" "$(with "${ok[@]}" ferry.repository=x:2)"
expect_refused "repository without port" "property ferry.repository: \"repo\" is not HOST:PORT" \
  "$(with --file-prop ferry.tls.ca="$T/pki/ca.crt" ferry.repository=repo ferry.vcenter.server=vc ferry.vcenter.user=u ferry.vcenter.password=p --file-prop ferry.tls.cert="$T/pki/proxy1.crt" --file-prop ferry.tls.key="$T/pki/proxy1.key")"
expect_refused "bad CIDR" "property network.address" "$(with "${ok[@]}" network.address=192.0.2.300/24)"
expect_refused "gateway without address" "property network.gateway: is set but network.address is empty" \
  "$(with "${ok[@]}" network.gateway=192.0.2.1)"
expect_refused "bad hostname" "property network.hostname" "$(with "${ok[@]}" network.hostname=-bad-)"
expect_refused "bad thumbprint" "property ferry.vcenter.thumbprint" "$(with "${ok[@]}" ferry.vcenter.thumbprint=abcd)"
expect_refused "bad ssh key" "property appliance.sshAuthorizedKey" \
  "$(with "${ok[@]}" 'appliance.sshAuthorizedKey=command="sh" ssh-ed25519 AAAA')"
expect_refused "newline in a value" "property ferry.vcenter.user: holds a control character" \
  "$(with "${base[@]/ferry.vcenter.user=u/ferry.vcenter.user=$'a\nferry.tls.key=/tmp/x'}" --file-prop ferry.tls.cert="$T/pki/proxy1.crt" --file-prop ferry.tls.key="$T/pki/proxy1.key")"
# Several problems at once: each is named.
with ferry.repository=bad --file-prop ferry.tls.ca="$T/pki/ca.crt" >/dev/null
if "$BIN/ferry-agent" ovf-env --root "$T/r3" "$T/bad.xml" 2>"$T/err"; then fail "accepted"; fi
for k in ferry.repository ferry.tls.cert ferry.tls.key ferry.vcenter.server ferry.vcenter.user ferry.vcenter.password; do
  grep -q "property $k:" "$T/err" || { cat "$T/err"; fail "no problem named for $k"; }
done
echo "ok: several problems are each named"
echo "PASS"
