#!/usr/bin/env bash
# The https transport end to end against the simulated vCenter
# (build/bin/ferry-vcsim): test_ds_sim for the source itself, then
# ferry-agent: `transports`, a backup of a VM disk file through
# `--source 'vsphere-ds:[ds1] ...'` restored with `ferry restore` and
# compared with the flat file byte for byte, a session expired in the
# middle of the backup, a missing file (404), a delta disk refused with
# the reason, `--transport` lists that cannot work failing before the
# repository is contacted, and the VDDK path with nbdkit's file plugin
# standing in for the vddk plugin (VDDK itself is proprietary).
#
# usage: https.sh [--esx]   (BIN, TESTS, TOOLS, SRC in the environment)
set -euo pipefail
: "${SRC:?SRC must point at the source tree}"
source "$SRC/tests/integration/lib.sh"
: "${TESTS:?TESTS must point at build/tests}"
MODE=${1:-}
VCSIM="$BIN/ferry-vcsim"
[[ -x "$VCSIM" ]] || { echo "SKIP: $VCSIM is not built (tests/vcsim)"; exit 77; }

"$VCSIM" --listen 127.0.0.1:0 --datadir "$T/vc" --ready-file "$T/ready.json" \
  $MODE >"$T/vcsim.log" 2>&1 &
VCSIM_PID=$!
CLEANUP_CMDS+=('kill "$VCSIM_PID" 2>/dev/null; wait "$VCSIM_PID" 2>/dev/null')
for _ in $(seq 1 300); do
  [[ -s "$T/ready.json" ]] && break
  kill -0 "$VCSIM_PID" 2>/dev/null || fail "ferry-vcsim exited at start: $(cat "$T/vcsim.log")"
  sleep 0.1
done
[[ -s "$T/ready.json" ]] || fail "ferry-vcsim did not start"
python3 "$SRC/tests/vsphere/ready2conf.py" "$T/ready.json" "$T" >"$T/test.conf"
echo "test.samples=$SRC/tests/fuzz/fuzz_vmdk.seeds" >>"$T/test.conf"
get() { grep "^$1=" "$T/test.conf" | head -n1 | cut -d= -f2-; }

note "the https source against ferry-vcsim (test_ds_sim)"
"$TESTS/test_ds_sim" "$T/test.conf" $MODE

FILE=$(get test.vms.vm-two-disks.disks.0.file)
FLAT=$(get test.vms.vm-two-disks.disks.0.flat_path)
DS1=$(get test.datastores.ds1)
CONTROL=$(get test.control)
control() { curl -sS --fail -k -X "$1" "$CONTROL/$2"; }

make_certs
start_repo
# The agent's file: the repository, then the vCenter (no test.* keys).
# hotadd looks at this machine's DMI data: an empty root makes it "not a
# VMware VM" wherever the test runs.
grep -v '^test\.' "$T/test.conf" >>"$T/agent.conf"
mkdir -p "$T/nosys"
echo "ferry.hotadd.sysfsRoot=$T/nosys" >>"$T/agent.conf"
export TMPDIR="$T/tmp"
mkdir -p "$TMPDIR"

restore_and_compare() {
  local id; id=$(json "$T/last.json" 'j["backup_id"]')
  "$FERRY" --config "$T/agent.conf" restore "$id" --disk 0 --output "$T/r.img"
  same_file "$FLAT" "$T/r.img"
  rm -f "$T/r.img"
}
backup_vm() {
  "$AGENT" backup --config "$T/agent.conf" --source "vsphere-ds:$FILE" --json --quiet "$@" >"$T/last.json"
}

note "ferry-agent transports"
# No LUN of this machine must count: san looks at an empty sysfs.
mkdir -p "$T/nosan/sys/block"
echo "ferry.san.sysfsRoot=$T/nosan" >>"$T/agent.conf"
out=$("$AGENT" transports --config "$T/agent.conf")
[[ "$out" == https ]] || fail "transports: '$out'"
out=$("$AGENT" transports --config "$T/agent.conf" --verbose)
# hotadd's reason is the job's own: this machine is no VM of the simulator.
grep -q "^hotadd: .*ferry.proxy.moref" <<<"$out" || fail "no hotadd reason: $out"
grep -q "^san: no VMFS LUN is visible on this proxy" <<<"$out" || fail "no san reason: $out"
grep -q "^nbd: needs VMware's VDDK, which is not configured: set libDir" <<<"$out" || fail "no nbd reason: $out"
"$AGENT" transports --config "$T/agent.conf" --json >"$T/tr.json"
[[ $(json "$T/tr.json" 'j["modes"]') == https ]] || fail "json: $(cat "$T/tr.json")"
[[ $(json "$T/tr.json" '[t["name"] for t in j["transports"]]') == "['san', 'hotadd', 'nbdssl', 'nbd', 'https']" ]] ||
  fail "json order: $(cat "$T/tr.json")"
# An NBD export in the job is readable without VDDK.
out=$("$AGENT" transports --config "$T/agent.conf" --source "nbd://127.0.0.1/x")
[[ "$out" == nbd:https ]] || fail "with an nbd:// source: '$out'"
out=$("$AGENT" transports --config "$T/agent.conf" --source "nbds://127.0.0.1/x")
[[ "$out" == nbdssl:https ]] || fail "with an nbds:// source: '$out'"
out=$("$AGENT" transports --set ferry.repository=x:1)
[[ -z "$out" ]] || fail "no vCenter, no VDDK, yet '$out'"
# A proxy VM named in the configuration is checked as a job checks it: its
# MAC must be this machine's, unless the check is turned off.
PROXY=$(get test.vms.ferry-proxy.moref)
out=$("$AGENT" transports --config "$T/agent.conf" --set ferry.proxy.moref="$PROXY" --verbose)
grep -q "^hotadd: cannot check that proxy VM .* is this machine" <<<"$out" || fail "with a foreign proxy VM: '$out'"
out=$("$AGENT" transports --config "$T/agent.conf" --set ferry.proxy.moref="$PROXY" --set ferry.hotadd.checkProxyMac=false)
[[ "$out" == hotadd:https ]] || fail "with a proxy VM: '$out'"

note "a VM disk file through https: backup, restore, byte for byte"
backup_vm --transport https
[[ $(json "$T/last.json" 'j["disks"][0]["transport"]') == https ]] || fail "$(cat "$T/last.json")"
[[ $(json "$T/last.json" 'j["disks"][0]["size"]') == $(stat -c %s "$FLAT") ]] || fail "wrong size"
restore_and_compare
[[ -n "$MODE" ]] && { echo "https ($MODE): ok"; exit 0; }
# The one default (san:hotadd:nbdssl:nbd) leaves https out: it is tried
# only when a list names it, here through ferry.transports.
if backup_vm 2>"$T/err"; then fail "the default list read over https"; fi
grep -qF "no transport in san:hotadd:nbdssl:nbd can read" "$T/err" || fail "$(cat "$T/err")"
backup_vm --set ferry.transports=nbd:https
[[ $(json "$T/last.json" 'j["disks"][0]["transport"]') == https ]] || fail "$(cat "$T/last.json")"

note "the session expires in the middle of the backup and is renewed"
# The descriptor request passes the session check, then waits 1.5 s; the
# session is expired meanwhile, so every later request meets a 401.
control POST "faults?method=folder&delay_ms=1500&count=1" >/dev/null
"$AGENT" backup --config "$T/agent.conf" --source "vsphere-ds:$FILE" --transport https \
  --json --quiet --log-level 4 >"$T/last.json" 2>"$T/expire.log" &
agent=$!
for _ in $(seq 1 200); do
  [[ $(control GET faults) == "[]" ]] && break
  sleep 0.05
done
control POST expire-sessions >/dev/null
wait "$agent" || fail "backup across an expired session: $(cat "$T/expire.log")"
grep -q "the session expired; logging in again" "$T/expire.log" || fail "no re-login: $(cat "$T/expire.log")"
restore_and_compare

note "a missing file is a clear 404"
n=$(backup_count)
if "$AGENT" backup --config "$T/agent.conf" --source "vsphere-ds:[ds1] vm-two-disks/missing.vmdk" \
  --transport https --quiet 2>"$T/err"; then fail "a missing file was backed up"; fi
grep -qF "[ds1] vm-two-disks/missing.vmdk not found (HTTP 404" "$T/err" || fail "$(cat "$T/err")"
[[ $(backup_count) == "$n" ]] || fail "a failed backup was listed"

note "a delta disk (SEsparse) is refused with the reason"
cp "$SRC/tests/fuzz/fuzz_vmdk.seeds/sesparse_delta.vmdk" "$DS1/vm-two-disks/vm-two-disks-000009.vmdk"
if "$AGENT" backup --config "$T/agent.conf" --source "vsphere-ds:[ds1] vm-two-disks/vm-two-disks-000009.vmdk" \
  --transport https --quiet 2>"$T/err"; then fail "a delta disk was backed up"; fi
grep -qF "delta disk (SEsparse) chains are not supported by the https transport yet; use hotadd or nbd" "$T/err" ||
  fail "$(cat "$T/err")"

note "a transport list that cannot work fails at once, before the repository"
if "$AGENT" backup --config "$T/agent.conf" --repository 127.0.0.1:1 --source "vsphere-ds:$FILE" \
  --transport hotadd --quiet 2>"$T/err"; then fail "hotadd claimed to work"; fi
grep -qF "no transport in hotadd can read $FILE: hotadd: cannot tell which VM this proxy is" "$T/err" || fail "$(cat "$T/err")"
# hotadd works on a VM's snapshot (backup --vm), not on a disk file.
if "$AGENT" backup --config "$T/agent.conf" --repository 127.0.0.1:1 --source "vsphere-ds:$FILE" \
  --transport hotadd --set ferry.proxy.moref="$PROXY" --set ferry.hotadd.checkProxyMac=false \
  --quiet 2>"$T/err"; then fail "hotadd read a file"; fi
grep -qF "hotadd: reads whole VMs (ferry-agent backup --vm), not a single disk file" "$T/err" || fail "$(cat "$T/err")"
if "$AGENT" backup --config "$T/agent.conf" --repository 127.0.0.1:1 --source "vsphere-ds:$FILE" \
  --transport san:nbd --quiet 2>"$T/err"; then fail "san:nbd claimed to work"; fi
grep -qF "san: no VMFS LUN is visible on this proxy" "$T/err" && grep -qF "nbd: needs VMware's VDDK, which is not configured" "$T/err" || fail "$(cat "$T/err")"
if "$AGENT" backup --config "$T/agent.conf" --source "vsphere-ds:$FILE" --transport https:bogus \
  --quiet 2>"$T/err"; then fail "a bogus mode was accepted"; fi
grep -qF "'bogus' is not a transport mode (san, hotadd, nbdssl, nbd, https)" "$T/err" || fail "$(cat "$T/err")"
# An NBD URI says its own mode; the list must allow it.
if "$AGENT" backup --config "$T/agent.conf" --source "nbd+unix:///?socket=$T/none.sock" \
  --transport https --quiet 2>"$T/err"; then fail "nbd read despite --transport https"; fi
grep -qF "is read with the nbd transport, which --transport https does not allow" "$T/err" || fail "$(cat "$T/err")"

note "the VDDK path, nbdkit's file plugin standing in for vddk"
command -v nbdkit >/dev/null || fail "nbdkit is not installed (scripts/deps installs it)"
{
  mkdir -p "$T/vddk-lib"
  cp "$T/agent.conf" "$T/vddk.conf"
  cat >>"$T/vddk.conf" <<CONF
libDir=$T/vddk-lib
ferry.nbd.vddkPlugin=file
ferry.nbd.vddkPluginArgs=file=$FLAT
CONF
  out=$("$AGENT" transports --config "$T/vddk.conf")
  [[ "$out" == nbdssl:nbd:https ]] || fail "transports with VDDK configured: '$out'"
  "$AGENT" backup --config "$T/vddk.conf" --source "vsphere-ds:$FILE" --transport nbd:https \
    --json --quiet >"$T/last.json"
  [[ $(json "$T/last.json" 'j["disks"][0]["transport"]') == nbd ]] || fail "$(cat "$T/last.json")"
  restore_and_compare
  [[ -z "$(ls -A "$TMPDIR")" ]] || fail "left behind in TMPDIR: $(ls -A "$TMPDIR")"
  # A plugin that cannot start: the next mode in the list takes over ...
  sed -i "s|^ferry.nbd.vddkPluginArgs=.*|ferry.nbd.vddkPluginArgs=file=$T/no-such-file|" "$T/vddk.conf"
  "$AGENT" backup --config "$T/vddk.conf" --source "vsphere-ds:$FILE" --transport nbdssl:https \
    --json --quiet >"$T/last.json"
  [[ $(json "$T/last.json" 'j["disks"][0]["transport"]') == https ]] || fail "$(cat "$T/last.json")"
  # ... and alone it fails with nbdkit's own words.
  if "$AGENT" backup --config "$T/vddk.conf" --source "vsphere-ds:$FILE" --transport nbdssl \
    --quiet 2>"$T/err"; then fail "a failing nbdkit read"; fi
  grep -qF "nbdssl: vddk: nbdkit (file plugin) exited with status" "$T/err" || fail "$(cat "$T/err")"
  grep -qF "no-such-file" "$T/err" || fail "nbdkit's reason is missing: $(cat "$T/err")"
  [[ -z "$(ls -A "$TMPDIR")" ]] || fail "left behind in TMPDIR: $(ls -A "$TMPDIR")"
}
echo "https: ok"
