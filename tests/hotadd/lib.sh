# Shared helpers for the hotadd tests: ferry-repo as in the integration
# tests (tests/integration/lib.sh), plus a ferry-vcsim whose proxy VM has an
# emulated guest (--guest-root): disks hot-added to the proxy appear as
# read-only loop devices under $T/guest/sys/block and $T/guest/dev, and the
# agent's config points ferry.hotadd.sysfsRoot/devRoot there. Everything on
# the agent's side is the production code. Needs root (losetup, mknod).
HOTADD_TESTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HOTADD_TESTS/../integration/lib.sh"

: "${VCSIM:?VCSIM must point at ferry-vcsim}"
[[ $(id -u) == 0 ]] || { echo "SKIP: hotadd tests need root (loop devices)"; exit 77; }
command -v losetup >/dev/null || { echo "SKIP: losetup missing"; exit 77; }

VCSIM_PID=""
stop_vcsim() {
  [[ -n "$VCSIM_PID" ]] || return 0
  kill -TERM "$VCSIM_PID" 2>/dev/null || true
  wait "$VCSIM_PID" 2>/dev/null || true
  VCSIM_PID=""
}
# Whatever happens, no loop device onto this test's files survives it.
sweep_loops() {
  local dev file
  while read -r dev file; do
    [[ "$file" == "$T"/* ]] && { blockdev --setrw "$dev" 2>/dev/null; losetup -d "$dev" 2>/dev/null; } || true
  done < <(losetup -l -n -O NAME,BACK-FILE 2>/dev/null)
}
CLEANUP_CMDS+=("stop_vcsim" "sweep_loops" "[[ \$rc -eq 0 ]] || { echo '--- ferry-vcsim log'; tail -n 40 \"\$T/vcsim.log\"; }")

# start_vcsim_guest [VCSIM OPTION ...]: ferry-vcsim with the guest under
# $T/guest; writes the vCenter and hotadd keys into $T/agent.conf (after
# start_repo).
start_vcsim_guest() {
  "$VCSIM" --listen 127.0.0.1:0 --datadir "$T/vcdata" --ready-file "$T/vcready.json" \
    --guest-root "$T/guest" "$@" >"$T/vcsim.log" 2>&1 &
  VCSIM_PID=$!
  # Big --disk-size values take the simulator a while to write.
  for _ in $(seq 1 $((${VCSIM_START_SECONDS:-30} * 10))); do
    [[ -s "$T/vcready.json" ]] && break
    kill -0 "$VCSIM_PID" 2>/dev/null || fail "ferry-vcsim exited at start: $(cat "$T/vcsim.log")"
    sleep 0.1
  done
  [[ -s "$T/vcready.json" ]] || fail "ferry-vcsim did not start"
  mkdir -p "$T/vc"
  python3 "$HOTADD_TESTS/../vsphere/ready2conf.py" "$T/vcready.json" "$T/vc" | grep -v '^test\.' >>"$T/agent.conf"
  cat >>"$T/agent.conf" <<CONF
ferry.stateDirectory=$T/state
ferry.hotadd.sysfsRoot=$T/guest
ferry.hotadd.devRoot=$T/guest
ferry.hotadd.discoverTimeoutSeconds=20
ferry.hotadd.runDirectory=$T/run
ferry.san.sysfsRoot=$T/nosan
CONF
  # No LUN of this machine counts for san (the san tests attach VMFS loop
  # devices, maybe while this test runs): san looks at an empty sysfs.
  mkdir -p "$T/nosan/sys/block"
}

ready() { python3 -c "import json,sys; R=json.load(open('$T/vcready.json')); print($1)"; }
control() {
  curl -sS -k -X "$1" "$(ready "R['control']")/$2"
}
# proxy_disks: the device keys and files on the proxy, one "key file" a line.
vm_chain_len() {
  control GET "disks?vm=$1" | python3 -c "import json,sys; D=json.load(sys.stdin); print(max(len(d['chain']) for d in D['disks']))"
}
proxy_disk_count() {
  control GET "disks?vm=ferry-proxy" | python3 -c "import json,sys; print(len(json.load(sys.stdin)['disks']))"
}
journal_entries() { grep -cv -e '^ferry-journal' -e '	own	' "$T/state/journal" 2>/dev/null || true; }
our_loops() { losetup -l -n -O BACK-FILE 2>/dev/null | grep -c "^$T/" || true; }
# proxy_disk_count_vs: the disks vSphere lists on the proxy VM.
proxy_disk_count_vs() {
  "$AGENT" inventory --config "$T/agent.conf" --vm ferry-proxy --json 2>/dev/null |
    python3 -c "import json,sys; R=json.load(sys.stdin); print(len(R['vms'][0]['disks']))"
}
# disabled_methods VM: the VM's disabledMethod list, one a line.
disabled_methods() {
  python3 "$HOTADD_TESTS/soap.py" "$T/vcready.json" disabled "$(ready "R['vms']['$1']['moref']")"
}
