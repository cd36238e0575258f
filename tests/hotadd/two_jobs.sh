#!/usr/bin/env bash
# hotadd.two_jobs: two agents back up two VMs through one proxy at once;
# their attaches are serialized (no two reconfigures pick one slot), neither
# cleans up the other's live entries at start, and first without a limit
# then with ferry.hotadd.maxAttached=1 (never two disks in the guest).
source "$(dirname "$0")/lib.sh"

make_certs
start_repo
start_vcsim_guest

"$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks --json >"$T/a.json" 2>"$T/a.log" &
A=$!
"$AGENT" backup --config "$T/agent.conf" --vm vm-independent --disk 0 --json >"$T/b.json" 2>"$T/b.log" &
B=$!
wait $A || fail "job A: $(cat "$T/a.log")"
wait $B || fail "job B: $(cat "$T/b.log")"
[[ $(json "$T/a.json" 'len(j["disks"])') == 2 ]] || fail "job A disks"
[[ $(json "$T/b.json" 'j["disks"][0]["transport"]') == hotadd ]] || fail "job B transport"
id=$(json "$T/b.json" 'j["backup_id"]')
"$FERRY" --config "$T/agent.conf" restore "$id" --disk 0 --output "$T/b0.img"
cmp "$T/b0.img" "$(ready "R['vms']['vm-independent']['disks'][0]['flat_path']")" || fail "job B disk differs"
[[ $(proxy_disk_count_vs) == 1 ]] || fail "disks left on the proxy"
[[ $(journal_entries) == 0 ]] || fail "journal: $(cat "$T/state/journal")"
[[ $(our_loops) == 0 ]] || fail "loop devices left"

note "again with ferry.hotadd.maxAttached=1"
before=$(wc -l <"$T/vcsim.log")
"$AGENT" backup --config "$T/agent.conf" --set ferry.hotadd.maxAttached=1 --vm vm-two-disks --quiet 2>"$T/a2.log" &
A=$!
"$AGENT" backup --config "$T/agent.conf" --set ferry.hotadd.maxAttached=1 --vm vm-independent --disk 0 --quiet 2>"$T/b2.log" &
B=$!
wait $A || fail "job A (limit 1): $(cat "$T/a2.log")"
wait $B || fail "job B (limit 1): $(cat "$T/b2.log")"
published=$(tail -n +"$((before + 1))" "$T/vcsim.log" | grep -c " is disk " || true)
[[ $published == 3 ]] || fail "want 3 disks presented, got $published"
tail -n +"$((before + 1))" "$T/vcsim.log" | grep -q "sdc is disk" && fail "two disks were in the guest at once"
[[ $(journal_entries) == 0 ]] || fail "journal: $(cat "$T/state/journal")"
echo "hotadd two_jobs: OK"
