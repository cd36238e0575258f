#!/usr/bin/env bash
# hotadd.crash: kill -9 of the agent after it attached a disk and before it
# detached it; `ferry-agent cleanup` then detaches the disk (guest first),
# removes Ferry's snapshot, re-enables the methods PrepareForAccess disabled
# and prints numCleanedUp/numRemaining; the proxy's own disk is untouched
# even when the journal claims it was attached. A later backup works.
source "$(dirname "$0")/lib.sh"

make_certs
start_repo
start_vcsim_guest

note "backup, held right after the first attach (FERRY_HOTADD_TEST_HOLD)"
touch "$T/hold"
FERRY_HOTADD_TEST_HOLD="$T/hold" "$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks \
  >"$T/agent.out" 2>&1 &
AGENT_PID=$!
CLEANUP_CMDS+=("kill -9 $AGENT_PID 2>/dev/null; wait $AGENT_PID 2>/dev/null")
for _ in $(seq 1 200); do
  grep -qP '\tattach\t[0-9]+\t[0-9]+\t' "$T/state/journal" 2>/dev/null && break
  kill -0 "$AGENT_PID" 2>/dev/null || fail "agent exited early: $(cat "$T/agent.out")"
  sleep 0.1
done
grep -qP '\tattach\t[0-9]+\t[0-9]+\t' "$T/state/journal" || fail "no attach journaled: $(cat "$T/agent.out")"
kill -9 "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
rm -f "$T/hold"
[[ $(proxy_disk_count_vs) == 2 ]] || fail "the crash left $(proxy_disk_count_vs) disks on the proxy, want 2"
[[ $(vm_chain_len vm-two-disks) == 2 ]] || fail "no snapshot left by the crash"
grep -qP '\tsnapshot\t.*\tsnapshot-' "$T/state/journal" || fail "snapshot not journaled"
grep -qP '\tdisable\t' "$T/state/journal" || fail "DisableMethods not journaled"

note "the journal also (wrongly) claims the proxy's own disk was attached"
own=$(grep -P '\town\t' "$T/state/journal" | head -1)
own_key=$(cut -f4 <<<"$own"); own_vm=$(cut -f5 <<<"$own"); own_file=$(cut -f7 <<<"$own")
printf '900\tattach\t1\t%s\t%s\t-\t%s\n' "$own_key" "$own_vm" "$own_file" >>"$T/state/journal"

note "ferry-agent cleanup"
"$AGENT" cleanup --config "$T/agent.conf" --json >"$T/cleanup.json" 2>"$T/cleanup.log" ||
  fail "cleanup failed: $(cat "$T/cleanup.log")"
cat "$T/cleanup.json"
[[ $(json "$T/cleanup.json" 'j["numCleanedUp"]') == 3 ]] || fail "numCleanedUp: $(cat "$T/cleanup.json")"
[[ $(json "$T/cleanup.json" 'j["numRemaining"]') == 1 ]] || fail "numRemaining: $(cat "$T/cleanup.json")"
log=$(json "$T/cleanup.json" 'j["log"]')
[[ "$log" == *"detached [ds1] vm-two-disks/vm-two-disks.vmdk"* ]] || fail "detach not reported: $log"
[[ "$log" == *"removed snapshot ferry-"* ]] || fail "snapshot removal not reported: $log"
[[ "$log" == *"re-enabled the methods ferry-agent-$AGENT_PID"* ]] || fail "methods not re-enabled: $log"
[[ "$log" == *"one of the proxy's own disks: refusing"* ]] || fail "own disk not refused: $log"

note "the proxy keeps its own disk; nothing else is left"
[[ $(proxy_disk_count_vs) == 1 ]] || fail "the proxy has $(proxy_disk_count_vs) disks, want its own 1"
[[ -s "$(ready "R['vms']['ferry-proxy']['disks'][0]['flat_path']")" ]] || fail "the proxy's disk file is gone"
[[ $(ls "$T/guest/sys/block") == sda ]] || fail "devices left in the guest: $(ls "$T/guest/sys/block")"
[[ $(vm_chain_len vm-two-disks) == 1 ]] || fail "the snapshot is still there"
[[ $(our_loops) == 0 ]] || fail "loop devices left: $(losetup -l)"
[[ -s "$(ready "R['vms']['vm-two-disks']['disks'][0]['flat_path']")" ]] || fail "detach deleted the source disk"

note "a second cleanup has only the refused entry; a new backup works"
"$AGENT" cleanup --config "$T/agent.conf" >"$T/cleanup2.txt" 2>&1 || fail "second cleanup: $(cat "$T/cleanup2.txt")"
grep -q "numCleanedUp=0 numRemaining=1" "$T/cleanup2.txt" || fail "second cleanup: $(cat "$T/cleanup2.txt")"
"$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks --disk 1 --quiet 2>"$T/again.log" ||
  fail "backup after cleanup: $(cat "$T/again.log")"
echo "hotadd crash: OK"
