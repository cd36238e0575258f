#!/usr/bin/env bash
# hotadd.no_slot: the proxy's only SCSI controller is full (units 0-15
# without 7). The job fails naming the rule that failed and the reason of
# every other mode of its list (nbd needs VDDK, which is not here), and
# leaves no snapshot and nothing in the journal.
source "$(dirname "$0")/lib.sh"

make_certs
start_repo
start_vcsim_guest

note "fill the proxy's controller with disks of its own"
proxy=$(ready "R['vms']['ferry-proxy']['moref']")
python3 "$HOTADD_TESTS/soap.py" "$T/vcready.json" fill "$proxy" 1000

rc=0
"$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks --transport hotadd:nbd 2>"$T/err.txt" || rc=$?
cat "$T/err.txt"
[[ $rc == 1 ]] || fail "exit code $rc, want 1"
grep -q 'rule "no free SCSI slot" failed' "$T/err.txt" || fail "the rule is not named"
grep -q "nbd: needs VMware's VDDK" "$T/err.txt" || fail "the next mode's reason is not named"
[[ $(vm_chain_len vm-two-disks) == 1 ]] || fail "a snapshot was taken"
[[ $(journal_entries) == 0 ]] || fail "journal: $(cat "$T/state/journal")"

rc=0
"$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks --transport nbd 2>"$T/err2.txt" || rc=$?
grep -q "nbd: needs VMware's VDDK" "$T/err2.txt" || fail "network modes for --vm: $(cat "$T/err2.txt")"
[[ $(vm_chain_len vm-two-disks) == 1 ]] || fail "a snapshot was left"
echo "hotadd no_slot: OK"
