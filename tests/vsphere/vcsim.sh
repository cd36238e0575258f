#!/usr/bin/env bash
# Starts the simulated vCenter (build/bin/ferry-vcsim) on a free loopback
# port, turns its ready file into a config and runs test_vs_sim, then
# `ferry-agent inventory` against it.
# usage: vcsim.sh [--esx]    (BIN, TESTS, TOOLS in the environment)
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh"
: "${TESTS:?TESTS must point at build/tests}"
MODE=${1:-}
if [[ ! -x "$BIN/ferry-vcsim" ]]; then
  echo "SKIP: $BIN/ferry-vcsim is not built (tests/vcsim)"
  exit 77
fi

start_vcsim $MODE

"$TESTS/test_vs_sim" "$T/test.conf" $MODE

[[ -z "$MODE" ]] || exit 0

# The admin's view: ferry-agent inventory, text and JSON.
INV="$BIN/ferry-agent inventory"
out=$($INV --config "$T/test.conf" 2>&1) || fail "inventory: $out"
grep -q "proxy: unknown proxy" <<<"$out" || fail "no 'unknown proxy' without a proxy: $out"
PROXY=$(grep '^test.vms.ferry-proxy.moref=' "$T/test.conf" | cut -d= -f2)
$INV --config "$T/test.conf" --proxy "$PROXY" --json >"$T/inv.json" \
  || fail "inventory --json failed"
python3 - "$T/inv.json" <<'PY' || fail "inventory --json content"
import json, sys
inv = json.load(open(sys.argv[1]))
vms = {v["name"]: v for v in inv["vms"]}
assert inv["proxy"]["name"] == "ferry-proxy", inv["proxy"]
def rule(vm, key):
    return [d for d in vms[vm]["disks"] if d["key"] == key][0]["hotadd"]["rule"]
assert rule("vm-two-disks", 2000) == "ok"
assert rule("vm-three-disks", 3000) == "IDE disk"
assert rule("vm-three-disks", 2001).startswith("datastore not mounted")
assert rule("vm-independent", 2001) == "independent disk"
assert rule("ferry-proxy", 2000) == "proxy is the target"
ds = {d["name"]: d for d in inv["datastores"]}
assert len(ds["ds1"]["hosts"]) == 2 and len(ds["ds2"]["hosts"]) == 1
ctrl = {c["key"]: c for c in vms["vm-two-disks"]["controllers"]}
assert ctrl[1000]["kind"] == "scsi" and ctrl[1001]["bus"] == 1
print("inventory --json: ok")
PY
one=$($INV --config "$T/test.conf" --vm vm-three-disks --proxy "$PROXY" 2>&1) \
  || fail "inventory --vm: $one"
grep -q "IDE controller, which cannot be hot-added" <<<"$one" || fail "no IDE rule: $one"
[[ $(grep -c '^VM ' <<<"$one") -eq 1 ]] || fail "--vm printed other VMs"
if $INV --config "$T/test.conf" --vm no-such-vm >"$T/err" 2>&1; then
  fail "inventory --vm no-such-vm succeeded"
fi
grep -q "no virtual machine named 'no-such-vm'" "$T/err" || fail "$(cat "$T/err")"
# The password never reaches the output, even at the most verbose level.
$INV --config "$T/test.conf" --log-level 6 >"$T/verbose" 2>&1 || true
if grep -qF "$(cat "$T/password")" "$T/verbose"; then fail "password in output"; fi
echo "vcsim tests passed"
