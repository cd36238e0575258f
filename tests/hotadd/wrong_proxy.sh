#!/usr/bin/env bash
# hotadd.wrong_proxy: the VM named as the proxy must be this machine. With
# ferry.proxy.moref pointing at another VM, none of its NICs' MACs is an
# address of the (emulated) guest: the job is refused before anything is
# attached or snapshotted, and the message names both sides. The normal
# path (the proxy found by its BIOS UUID, MAC matching) is hotadd.backup.
source "$(dirname "$0")/lib.sh"

make_certs
start_repo
start_vcsim_guest

other=$(ready "R['vms']['vm-two-disks']['moref']")
cp "$T/agent.conf" "$T/wrong.conf"
echo "ferry.proxy.moref=$other" >>"$T/wrong.conf"

note "ferry.proxy.moref=$other (vm-two-disks): refused"
if "$AGENT" backup --config "$T/wrong.conf" --vm vm-independent --transport hotadd \
  >"$T/out" 2>"$T/agent.log"; then
  fail "a backup through the wrong proxy succeeded: $(cat "$T/agent.log")"
fi
grep -q "proxy VM vm-two-disks ($other) is not this machine" "$T/agent.log" ||
  fail "no clear refusal: $(cat "$T/agent.log")"
grep -q "00:50:56:aa:bb:11" "$T/agent.log" || fail "the VM's MAC is not named: $(cat "$T/agent.log")"
grep -q "eth0 00:50:56:aa:bb:01" "$T/agent.log" || fail "the guest's MAC is not named: $(cat "$T/agent.log")"
[[ $(vm_chain_len vm-independent) == 1 ]] || fail "a snapshot was taken"
[[ $(vm_chain_len vm-two-disks) == 1 ]] || fail "vm-two-disks was touched"
[[ $(proxy_disk_count_vs) == 1 ]] || fail "something was attached to the proxy"

note "the same for cleanup"
"$AGENT" cleanup --config "$T/wrong.conf" >"$T/out" 2>"$T/cleanup.log" &&
  fail "cleanup through the wrong proxy ran: $(cat "$T/cleanup.log")"
grep -q "is not this machine" "$T/cleanup.log" || fail "cleanup: $(cat "$T/cleanup.log")"

note "the right proxy by moref passes the check"
proxy=$(ready "R['vms']['ferry-proxy']['moref']")
cp "$T/agent.conf" "$T/right.conf"
echo "ferry.proxy.moref=$proxy" >>"$T/right.conf"
"$AGENT" cleanup --config "$T/right.conf" >"$T/out" 2>"$T/cleanup.log" ||
  fail "cleanup through the right proxy failed: $(cat "$T/cleanup.log")"
echo "hotadd wrong_proxy: OK"
