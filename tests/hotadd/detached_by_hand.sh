#!/usr/bin/env bash
# hotadd.detached_by_hand: a journal entry whose disk an admin already
# detached (the agent died, then someone removed the disk in the vSphere
# client). Cleanup clears the entry, removes the snapshot and re-enables the
# methods without complaining about the missing disk; the VM says
# consolidationNeeded, so cleanup consolidates its disks too.
source "$(dirname "$0")/lib.sh"

make_certs
start_repo
start_vcsim_guest

touch "$T/hold"
FERRY_HOTADD_TEST_HOLD="$T/hold" "$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks --disk 0 \
  >"$T/agent.out" 2>&1 &
AGENT_PID=$!
CLEANUP_CMDS+=("kill -9 $AGENT_PID 2>/dev/null; wait $AGENT_PID 2>/dev/null")
for _ in $(seq 1 200); do
  grep -qP '\tattach\t[0-9]+\t[0-9]+\t' "$T/state/journal" 2>/dev/null && break
  sleep 0.1
done
entry=$(grep -P '\tattach\t' "$T/state/journal") || fail "no attach journaled: $(cat "$T/agent.out")"
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null || true
rm -f "$T/hold"

note "detach by hand (ReconfigVM_Task remove, no fileOperation)"
key=$(cut -f4 <<<"$entry"); proxy=$(cut -f5 <<<"$entry")
python3 "$HOTADD_TESTS/soap.py" "$T/vcready.json" detach "$proxy" "$key"
[[ $(proxy_disk_count_vs) == 1 ]] || fail "hand detach did not work"
control POST "consolidation-needed?vm=vm-two-disks" >/dev/null

"$AGENT" cleanup --config "$T/agent.conf" >"$T/cleanup.txt" 2>&1 || fail "cleanup: $(cat "$T/cleanup.txt")"
cat "$T/cleanup.txt"
grep -q "journal entry for \[ds1\] vm-two-disks/vm-two-disks.vmdk cleared" "$T/cleanup.txt" || fail "entry not cleared"
grep -q "consolidated the disks of vm-two-disks" "$T/cleanup.txt" || fail "no consolidation"
grep -q "numCleanedUp=4 numRemaining=0" "$T/cleanup.txt" || fail "counts"
[[ $(control GET "disks?vm=vm-two-disks" | python3 -c "import json,sys; print(json.load(sys.stdin)['consolidation_needed'])") == False ]] ||
  fail "consolidationNeeded still set"
[[ $(journal_entries) == 0 ]] || fail "journal not empty: $(cat "$T/state/journal")"
[[ $(vm_chain_len vm-two-disks) == 1 ]] || fail "snapshot left"
echo "hotadd detached_by_hand: OK"
