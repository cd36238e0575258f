#!/usr/bin/env bash
# transport.vm_access: what a VM job does when PrepareForAccess cannot
# work, and when removing its snapshot leaves the VM needing consolidation
# (issue 12, "Also in the VM job"). https jobs against ferry-vcsim; no root.
#
#  - DisableMethods refused with NoPermission, or unknown to the server
#    (MethodNotFound), or the server an ESXi host (--esx): the job warns,
#    says so in its notes and backs up (advisory, as VDDK's sample does);
#    with ferry.vcenter.prepareForAccess=required it fails before any
#    snapshot; a value that is neither is refused.
#  - --snapshot MOREF: the disks are decided on that snapshot's frozen
#    files (its flat bases: https reads them); without it, a VM with an
#    older snapshot is refused by https before a new snapshot is taken.
#  - RemoveSnapshot leaving runtime.consolidationNeeded (the simulator's
#    leave_consolidation rule, as when a frozen file is still locked): the
#    job consolidates and says so; when ConsolidateVMDisks fails too, the
#    notes say so, the snapshot's journal entry stays, and the next
#    cleanup consolidates.
source "$(dirname "$0")/../integration/lib.sh"
: "${VCSIM:?VCSIM must point at ferry-vcsim}"
SOAP="$(dirname "$0")/../hotadd/soap.py"
VCSIM_PID=""
stop_vc() { [[ -n "$VCSIM_PID" ]] && kill "$VCSIM_PID" && wait "$VCSIM_PID"; VCSIM_PID=""; }
CLEANUP_CMDS+=("stop_vc || true")

make_certs
start_repo
cp "$T/agent.conf" "$T/base.conf"
# start_vc [--esx]: a fresh simulator and $T/agent.conf for it.
start_vc() {
  stop_vc || true
  rm -rf "$T/vcdata" "$T/vcready.json" "$T/state"
  "$VCSIM" --listen 127.0.0.1:0 --datadir "$T/vcdata" --ready-file "$T/vcready.json" \
    --disk-size 4194304 "$@" >"$T/vcsim.log" 2>&1 &
  VCSIM_PID=$!
  for _ in $(seq 1 300); do
    [[ -s "$T/vcready.json" ]] && break
    sleep 0.1
  done
  [[ -s "$T/vcready.json" ]] || fail "ferry-vcsim did not start: $(cat "$T/vcsim.log")"
  mkdir -p "$T/vc" "$T/state" "$T/nosys"
  cp "$T/base.conf" "$T/agent.conf"
  python3 "$(dirname "$0")/../vsphere/ready2conf.py" "$T/vcready.json" "$T/vc" | grep -v '^test\.' >>"$T/agent.conf"
  printf 'ferry.stateDirectory=%s/state\nferry.hotadd.sysfsRoot=%s/nosys\nferry.vcenter.prepareRetries=1\nferry.vcenter.prepareRetrySeconds=0\n' \
    "$T" "$T" >>"$T/agent.conf"
}
ready() { python3 -c "import json,sys; R=json.load(open('$T/vcready.json')); print($1)"; }
control() { curl -sS --fail -k -X "$1" "$(ready "R['control']")/$2"; }
chain_len() {
  control GET "disks?vm=$1" | python3 -c "import json,sys; D=json.load(sys.stdin); print(max(len(d['chain']) for d in D['disks']))"
}
needs_consolidation() {
  control GET "disks?vm=$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['consolidation_needed'])"
}
disabled() { python3 "$SOAP" "$T/vcready.json" disabled "$(ready "R['vms']['$1']['moref']")"; }
journal_entries() { grep -cv -e '^ferry-journal' -e '	own	' "$T/state/journal" 2>/dev/null || true; }
job() { "$AGENT" backup --config "$T/agent.conf" --vm vm-two-disks --transport https --json "$@"; }

# advisory CASE WORDS: the job backs up, its notes say WORDS, nothing stays.
advisory() {
  job >"$T/job.json" 2>"$T/err" || fail "$1: the job failed: $(cat "$T/err")"
  local notes; notes=$(json "$T/job.json" 'j["notes"]')
  grep -qF "$2" <<<"$notes" || fail "$1: notes: $notes"
  grep -q "warning: .*PrepareForAccess" "$T/err" || fail "$1: no warning: $(cat "$T/err")"
  [[ $(chain_len vm-two-disks) == 1 ]] || fail "$1: snapshot left"
  [[ -z "$(disabled vm-two-disks)" ]] || fail "$1: methods left disabled"
  [[ $(journal_entries) == 0 ]] || fail "$1: journal: $(cat "$T/state/journal")"
}
# required CASE WORDS: with prepareForAccess=required the job fails, names
# WORDS, and takes no snapshot.
required() {
  if job --set ferry.vcenter.prepareForAccess=required >"$T/job.json" 2>"$T/err"; then
    fail "$1: prepareForAccess=required went on"
  fi
  grep -qF "$2" "$T/err" || fail "$1: $(cat "$T/err")"
  [[ $(chain_len vm-two-disks) == 1 ]] || fail "$1: a snapshot was taken"
  [[ $(journal_entries) == 0 ]] || fail "$1: journal: $(cat "$T/state/journal")"
}

start_vc
note "a vCenter that disables methods: no note about it"
job >"$T/job.json" 2>"$T/err" || fail "plain job: $(cat "$T/err")"
[[ $(json "$T/job.json" 'j["notes"]') != *PrepareForAccess* ]] || fail "$(cat "$T/job.json")"

note "DisableMethods refused with NoPermission"
control POST "faults?method=DisableMethods&fault=NoPermission&count=-1" >/dev/null
advisory NoPermission "PrepareForAccess failed, backup went on"
grep -qF "NoPermission" <<<"$(json "$T/job.json" 'j["notes"]')" || fail "the fault is not named"
required NoPermission "(ferry.vcenter.prepareForAccess=required)"
control DELETE faults >/dev/null

note "a server that does not know DisableMethods"
control POST "faults?method=DisableMethods&fault=MethodNotFound&count=-1" >/dev/null
advisory MethodNotFound "MethodNotFound"
required MethodNotFound "MethodNotFound"
control DELETE faults >/dev/null

note "a value that is neither advisory nor required"
if job --set ferry.vcenter.prepareForAccess=maybe >/dev/null 2>"$T/err"; then fail "maybe accepted"; fi
grep -qF "ferry.vcenter.prepareForAccess=maybe: want advisory" "$T/err" || fail "$(cat "$T/err")"

note "the snapshot removal leaves consolidationNeeded: the job consolidates"
control POST "faults?method=RemoveSnapshot_Task&leave_consolidation=true" >/dev/null
job >"$T/job.json" 2>"$T/err" || fail "$(cat "$T/err")"
grep -qF "needed consolidation after the snapshot removal: consolidated" <<<"$(json "$T/job.json" 'j["notes"]')" ||
  fail "notes: $(cat "$T/job.json")"
[[ $(needs_consolidation vm-two-disks) == False ]] || fail "still needs consolidation"
[[ $(journal_entries) == 0 ]] || fail "journal: $(cat "$T/state/journal")"

note "... and when consolidating fails too, the next cleanup retries"
control POST "faults?method=RemoveSnapshot_Task&leave_consolidation=true" >/dev/null
control POST "faults?method=ConsolidateVMDisks_Task&fault=FileLocked" >/dev/null
job >"$T/job.json" 2>"$T/err" || fail "$(cat "$T/err")"
notes=$(json "$T/job.json" 'j["notes"]')
grep -qF "needs consolidation after the snapshot removal, which failed" <<<"$notes" || fail "notes: $notes"
grep -qF "the next cleanup retries" <<<"$notes" || fail "notes: $notes"
[[ $(needs_consolidation vm-two-disks) == True ]] || fail "the fault did not hold"
grep -qP '\tsnapshot\t' "$T/state/journal" || fail "the snapshot's entry was dropped"
"$AGENT" cleanup --config "$T/agent.conf" --json >"$T/cleanup.json" 2>"$T/cleanup.log" ||
  fail "cleanup: $(cat "$T/cleanup.log")"
cat "$T/cleanup.json"; echo
[[ $(json "$T/cleanup.json" 'j["numCleanedUp"]') == 1 ]] || fail "$(cat "$T/cleanup.json")"
[[ $(json "$T/cleanup.json" 'j["numRemaining"]') == 0 ]] || fail "$(cat "$T/cleanup.json")"
[[ $(json "$T/cleanup.json" 'j["log"]') == *"consolidated the disks of vm-two-disks"* ]] || fail "$(cat "$T/cleanup.json")"
[[ $(needs_consolidation vm-two-disks) == False ]] || fail "cleanup did not consolidate"
[[ $(journal_entries) == 0 ]] || fail "journal: $(cat "$T/state/journal")"

note "--snapshot: decided on the snapshot's own frozen disks"
snap=$(python3 "$SOAP" "$T/vcready.json" snapshot "$(ready "R['vms']['vm-two-disks']['moref']")" admin-snap)
job --snapshot "$snap" >"$T/job.json" 2>"$T/err" || fail "--snapshot $snap over https: $(cat "$T/err")"
[[ $(json "$T/job.json" '",".join(d["transport"] for d in j["disks"])') == https,https ]] || fail "$(cat "$T/job.json")"
[[ $(chain_len vm-two-disks) == 2 ]] || fail "the caller's snapshot was removed"
note "... and without it, the VM's next snapshot would freeze deltas: https refuses up front"
if job >"$T/job.json" 2>"$T/err"; then fail "https read a delta"; fi
grep -qF "2 of 2 disk(s) of vm-two-disks cannot be read by any transport of \"https\"; nothing was done to the VM" "$T/err" ||
  fail "$(cat "$T/err")"
grep -qF "the VM has older snapshots, and delta chains are not supported by the https transport yet" "$T/err" ||
  fail "$(cat "$T/err")"
[[ $(chain_len vm-two-disks) == 2 ]] || fail "a snapshot was taken"
[[ $(journal_entries) == 0 ]] || fail "journal: $(cat "$T/state/journal")"

start_vc --esx
note "an ESXi host cannot disable methods"
advisory ESXi "PrepareForAccess impossible"
grep -qF "ESXi host" <<<"$(json "$T/job.json" 'j["notes"]')" || fail "$(cat "$T/job.json")"
required ESXi "cannot disable methods, and ferry.vcenter.prepareForAccess=required"
echo "vm_access: OK"
