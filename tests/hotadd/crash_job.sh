#!/usr/bin/env bash
# hotadd.crash_https, hotadd.crash_nbd, hotadd.crash_hotadd: a VM job killed
# with SIGKILL in the middle of reading, whatever its transport, leaves a
# journal from which `ferry-agent cleanup` removes the snapshot and
# re-enables RelocateVM_Task (and, for hotadd, detaches the disk):
# numCleanedUp > 0, numRemaining = 0, and the next backup of the VM works.
#
#   https   the read is slowed by the simulator (every /folder answer waits
#           1.5 s); this machine is no VM of the simulator (an empty sysfs
#           root), so hotadd cannot work here: the cleanup runs without a
#           proxy, as on a physical or foreign proxy.
#   nbd     VDDK is proprietary: a stand-in run as ferry.nbd.nbdkit serves
#           the frozen file's flat extent with the real nbdkit's file plugin
#           behind its delay filter (1 s a read); what is emulated is VDDK's
#           NFC, the process handling and the job are the production code.
#           nbdkit must go with the agent (--exit-with-parent).
#   hotadd  held right after the attach (FERRY_HOTADD_TEST_HOLD, as
#           hotadd.crash), killed with the disk attached.
#
# usage: crash_job.sh https|nbd|hotadd
source "$(dirname "$0")/lib.sh"
MODE=${1:?usage: crash_job.sh https|nbd|hotadd}

make_certs
start_repo
start_vcsim_guest
VM=vm-two-disks
CONF="$T/agent.conf"
ENVV=()
ARGS=(--transport "$MODE")

case "$MODE" in
https)
  mkdir -p "$T/nosys"
  sed "s|^ferry.hotadd.sysfsRoot=.*|ferry.hotadd.sysfsRoot=$T/nosys|" "$T/agent.conf" >"$T/https.conf"
  CONF="$T/https.conf"
  control POST "faults?method=folder&delay_ms=1500&count=-1" >/dev/null
  ;;
nbd)
  command -v nbdkit >/dev/null || { echo "SKIP: nbdkit is not installed"; exit 77; }
  nbdkit --dump-plugin file >/dev/null 2>&1 && nbdkit --filter=delay null --run true >/dev/null 2>&1 ||
    { echo "SKIP: nbdkit's file plugin or delay filter is missing"; exit 77; }
  mkdir -p "$T/vddk/lib64"
  : >"$T/vddk/lib64/libvixDiskLib.so.8"
  cat >"$T/fake-nbdkit" <<'SH'
#!/bin/sh
# Stands in for nbdkit + its vddk plugin + VDDK: serves the flat extent of
# the file= it is given, from the simulator's datastore, slowly.
for a in "$@"; do [ "$a" = --dump-plugin ] && exit 0; done
unix= pidf= file=
for a in "$@"; do
  case "$a" in
    --unix=*) unix="$a" ;;
    --pidfile=*) pidf="$a" ;;
    file=*) file="${a#file=}" ;;
  esac
done
ds=${file#\[}; ds=${ds%%\]*}; rel=${file#*\] }
flat="$FAKE_VDDK_DSROOT/$ds/${rel%.vmdk}-flat.vmdk"
[ -f "$flat" ] || { echo "fake VDDK: no $flat for $file"; exit 1; }
[ -n "$FAKE_VDDK_DELAY" ] ||
  exec nbdkit --exit-with-parent --readonly --tls=off "$unix" "$pidf" file "$flat"
exec nbdkit --exit-with-parent --readonly --tls=off "$unix" "$pidf" --filter=delay file "$flat" \
  rdelay="$FAKE_VDDK_DELAY"
SH
  chmod 755 "$T/fake-nbdkit"
  cat >>"$T/agent.conf" <<CONF
libDir=$T/vddk
ferry.nbd.nbdkit=$T/fake-nbdkit
CONF
  export FAKE_VDDK_DSROOT="$T/vcdata"
  ENVV=(FAKE_VDDK_DELAY=1)
  ARGS+=(--disk 0)
  ;;
hotadd)
  touch "$T/hold"
  ENVV=(FERRY_HOTADD_TEST_HOLD="$T/hold")
  ;;
*) fail "unknown mode $MODE" ;;
esac

note "a $MODE backup of $VM, killed with SIGKILL while it reads"
env "${ENVV[@]}" "$AGENT" backup --config "$CONF" --vm "$VM" "${ARGS[@]}" --log-level 4 \
  >"$T/agent.out" 2>&1 &
AGENT_PID=$!
CLEANUP_CMDS+=("kill -9 $AGENT_PID 2>/dev/null; wait $AGENT_PID 2>/dev/null")
reading() {
  case "$MODE" in
  hotadd) grep -qP '\tattach\t[0-9]+\t[0-9]+\t' "$T/state/journal" 2>/dev/null ;;
  *) grep -q "job $VM: read" "$T/agent.out" ;;
  esac
}
for _ in $(seq 1 300); do
  reading && break
  kill -0 "$AGENT_PID" 2>/dev/null || fail "agent exited early: $(cat "$T/agent.out")"
  sleep 0.1
done
reading || fail "the job never got to its read: $(cat "$T/agent.out")"
sleep 0.5
kill -0 "$AGENT_PID" 2>/dev/null || fail "the job ended before the kill: $(cat "$T/agent.out")"
kill -9 "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
rm -f "$T/hold"
control DELETE faults >/dev/null

[[ $(vm_chain_len "$VM") == 2 ]] || fail "no snapshot left by the crash"
grep -qP '\tsnapshot\t[0-9]+\t-1\tvm-[0-9]+\tsnapshot-' "$T/state/journal" ||
  fail "snapshot not journaled: $(cat "$T/state/journal")"
grep -qP '\tdisable\t' "$T/state/journal" || fail "DisableMethods not journaled: $(cat "$T/state/journal")"
[[ $(disabled_methods "$VM") == RelocateVM_Task ]] || fail "RelocateVM_Task is not disabled: $(disabled_methods "$VM")"
if [[ $MODE == nbd ]]; then
  for _ in $(seq 1 50); do
    pgrep -af nbdkit | grep -qF "$T/" || break
    sleep 0.1
  done
  ! pgrep -af nbdkit | grep -qF "$T/" || fail "nbdkit outlived the agent: $(pgrep -af nbdkit)"
fi

note "ferry-agent cleanup undoes it"
"$AGENT" cleanup --config "$CONF" --json >"$T/cleanup.json" 2>"$T/cleanup.log" ||
  fail "cleanup failed: $(cat "$T/cleanup.log")"
cat "$T/cleanup.json"; echo
want=2
[[ $MODE == hotadd ]] && want=3
[[ $(json "$T/cleanup.json" 'j["numCleanedUp"]') == "$want" ]] || fail "numCleanedUp: $(cat "$T/cleanup.json")"
[[ $(json "$T/cleanup.json" 'j["numRemaining"]') == 0 ]] || fail "numRemaining: $(cat "$T/cleanup.json")"
log=$(json "$T/cleanup.json" 'j["log"]')
[[ "$log" == *"removed snapshot ferry-$AGENT_PID-"* ]] || fail "snapshot removal not reported: $log"
[[ "$log" == *"re-enabled the methods ferry-agent-$AGENT_PID-"* ]] || fail "methods not re-enabled: $log"
[[ $(vm_chain_len "$VM") == 1 ]] || fail "the snapshot is still there"
[[ -z "$(disabled_methods "$VM")" ]] || fail "methods still disabled: $(disabled_methods "$VM")"
[[ $(journal_entries) == 0 ]] || fail "journal: $(cat "$T/state/journal")"
[[ $(proxy_disk_count) == 1 ]] || fail "a disk is still attached to the proxy"
[[ $(control GET "disks?vm=$VM" | python3 -c "import json,sys; print(json.load(sys.stdin)['consolidation_needed'])") == False ]] ||
  fail "$VM needs consolidation"

note "the next $MODE backup of $VM works"
"$AGENT" backup --config "$CONF" --vm "$VM" "${ARGS[@]}" --json >"$T/again.json" 2>"$T/again.log" ||
  fail "backup after cleanup: $(cat "$T/again.log")"
[[ $(json "$T/again.json" 'j["disks"][0]["transport"]') == "$MODE" ]] || fail "$(cat "$T/again.json")"
[[ $(vm_chain_len "$VM") == 1 ]] || fail "the second backup left its snapshot"
echo "hotadd crash_job $MODE: OK"
