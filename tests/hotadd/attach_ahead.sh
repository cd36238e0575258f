#!/usr/bin/env bash
# hotadd.attach_ahead: while one disk of a VM is read, the next is attached
# (ferry.hotadd.parallelDisks, default 2). Every reconfigure of the proxy is
# slowed to 1 s (as a real vCenter is slow, and so the overlap is wide
# enough to see): polling the journal must find both of vm-two-disks' disks
# attached at one moment (an attach entry gets its device key when the
# reconfigure returned and goes when the detach returned), the restore is
# byte-identical and nothing is left. With parallelDisks=1 the same poll
# never sees two: the test can tell the difference.
source "$(dirname "$0")/lib.sh"

make_certs
start_repo
start_vcsim_guest

proxy=$(ready "R['vms']['ferry-proxy']['moref']")
control POST "faults?method=ReconfigVM_Task&entity=$proxy&delay_ms=1000&count=-1" >/dev/null

# attached_keys: attach entries in the journal whose reconfigure returned.
attached_keys() {
  awk -F'\t' '$2 == "attach" && $4 != "-1" { n++ } END { print n + 0 }' "$T/state/journal" 2>/dev/null || echo 0
}
# backup_polled LOG [--set ...]: backs up vm-two-disks while polling the
# journal; prints the most disks seen attached to the proxy at once.
backup_polled() {
  local log=$1 max=0 n pid
  shift
  "$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks --transport hotadd --json \
    --log-level 4 "$@" >"$T/backup.json" 2>"$log" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    n=$(attached_keys)
    (( n > max )) && max=$n
    sleep 0.05
  done
  wait "$pid" || fail "backup failed: $(cat "$log")"
  echo "$max"
}

note "parallelDisks=2 (the default): the second disk is attached while the first is read"
max=$(backup_polled "$T/agent.log")
[[ $max == 2 ]] || fail "want both of vm-two-disks' disks attached at once, saw at most $max: $(cat "$T/agent.log")"
id=$(json "$T/backup.json" 'j["backup_id"]')
[[ $(json "$T/backup.json" 'len(j["disks"])') == 2 ]] || fail "not two disks: $(cat "$T/backup.json")"
for i in 0 1; do
  flat=$(ready "R['vms']['vm-two-disks']['disks'][$i]['flat_path']")
  "$FERRY" --config "$T/agent.conf" restore "$id" --disk $i --output "$T/r$i.img"
  cmp "$T/r$i.img" "$flat" || fail "disk $i differs from $flat"
done
[[ $(proxy_disk_count_vs) == 1 ]] || fail "the proxy still has $(proxy_disk_count_vs) disks"
[[ $(vm_chain_len vm-two-disks) == 1 ]] || fail "the snapshot was not removed"
[[ $(our_loops) == 0 ]] || fail "loop devices left: $(losetup -l)"
[[ $(journal_entries) == 0 ]] || fail "journal not empty: $(cat "$T/state/journal")"
[[ -z "$(ls -A "$T/run")" ]] || fail "udev guard markers left: $(ls -A "$T/run")"
[[ $(ls "$T/guest/sys/block") == sda ]] || fail "devices left in the guest: $(ls "$T/guest/sys/block")"

note "parallelDisks=1: one disk of the job at a time"
max=$(backup_polled "$T/agent1.log" --set ferry.hotadd.parallelDisks=1)
[[ $max == 1 ]] || fail "want one attached disk at a time, saw $max"
[[ $(journal_entries) == 0 ]] || fail "journal not empty: $(cat "$T/state/journal")"

note "parallelDisks out of range is refused"
"$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks --set ferry.hotadd.parallelDisks=9 \
  >/dev/null 2>"$T/bad.log" && fail "parallelDisks=9 accepted"
grep -q "ferry.hotadd.parallelDisks" "$T/bad.log" || fail "no message naming the key: $(cat "$T/bad.log")"
[[ $(vm_chain_len vm-two-disks) == 1 ]] || fail "a snapshot was left"
[[ $(journal_entries) == 0 ]] || fail "journal not empty: $(cat "$T/state/journal")"
note "the attach ahead fails while the first disk is read: the job fails, nothing is left"
control DELETE faults >/dev/null
touch "$T/hold"
FERRY_HOTADD_TEST_HOLD="$T/hold" "$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks \
  --transport hotadd --log-level 4 >/dev/null 2>"$T/fail.log" &
pid=$!
CLEANUP_CMDS+=("kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null")
for _ in $(seq 1 200); do
  [[ $(attached_keys) == 1 ]] && break
  kill -0 "$pid" 2>/dev/null || fail "agent exited early: $(cat "$T/fail.log")"
  sleep 0.05
done
[[ $(attached_keys) == 1 ]] || fail "the first disk was not attached: $(cat "$T/fail.log")"
# The first disk is attached and held: the next reconfigure of the proxy is
# the attach of the second disk (the first one's detach waits for the
# proxy's reconfigure lock the attach holds).
control POST "faults?method=ReconfigVM_Task&entity=$proxy&fault=FileFault&message=ferry-test+no+room&count=1" >/dev/null
rm -f "$T/hold"
wait "$pid" && fail "the backup succeeded although an attach failed"
grep -q "attach of \[ds1\] vm-two-disks/vm-two-disks_1.vmdk to proxy $proxy.*ferry-test no room" "$T/fail.log" ||
  fail "the failed attach is not named: $(cat "$T/fail.log")"
grep -q "detached \[ds1\] vm-two-disks/vm-two-disks.vmdk" "$T/fail.log" || fail "the first disk was not detached: $(cat "$T/fail.log")"
[[ $(proxy_disk_count_vs) == 1 ]] || fail "the proxy still has $(proxy_disk_count_vs) disks"
[[ $(vm_chain_len vm-two-disks) == 1 ]] || fail "the snapshot was not removed"
[[ $(our_loops) == 0 ]] || fail "loop devices left: $(losetup -l)"
[[ $(journal_entries) == 0 ]] || fail "journal not empty: $(cat "$T/state/journal")"
[[ $(ls "$T/guest/sys/block") == sda ]] || fail "devices left in the guest: $(ls "$T/guest/sys/block")"
echo "hotadd attach_ahead: OK"
