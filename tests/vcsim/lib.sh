# Shared helpers for the ferry-vcsim test scripts: start the simulator on a
# random loopback port, talk SOAP to it with curl, read answers with xmlq.py.
# Sourced by the scripts; expects VCSIM (the binary) in the environment to
# start one, or VCSIM_READY (a ready file) to use a running one.

set -euo pipefail

VCSIM_TESTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-vcsim-test.XXXXXX")
VCSIM_PID=""
XQ_PID=""
STEP=0

cleanup() {
  local rc=$?
  if [[ -n "$VCSIM_PID" ]] && kill -0 "$VCSIM_PID" 2>/dev/null; then
    kill -TERM "$VCSIM_PID" 2>/dev/null || true
    wait "$VCSIM_PID" 2>/dev/null || true
  fi
  exec 7>&- 8<&- 2>/dev/null || true
  [[ -n "$XQ_PID" ]] && { wait "$XQ_PID" 2>/dev/null || true; }
  if [[ $rc -ne 0 ]]; then
    echo "--- ferry-vcsim log ---" >&2
    cat "$WORK/vcsim.log" >&2 2>/dev/null || true
    echo "--- last response ---" >&2
    cat "$WORK/resp.xml" >&2 2>/dev/null || true
    echo >&2
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# One python3 answers every query of the script (xmlq.py --serve): a fresh
# interpreter per query costs more than the test itself on a busy machine.
mkfifo "$WORK/xq.in" "$WORK/xq.out"
python3 "$VCSIM_TESTS/xmlq.py" --serve <"$WORK/xq.in" >"$WORK/xq.out" &
XQ_PID=$!
exec 7>"$WORK/xq.in" 8<"$WORK/xq.out"

# xq FILE CMD ARGS...: run an xmlq.py command in the helper. The whole
# answer is read before any of it is printed, so a reader that stops early
# (grep -q) cannot leave half an answer in the pipe for the next query.
# Still, capture answers rather than piping them into grep -q: under
# pipefail the writer's SIGPIPE fails the pipeline.
xq() {
  local IFS=$'\t' line answer=""
  printf '%s\n' "$*" >&7
  while IFS= read -r line <&8; do
    if [[ "$line" == __XMLQ_END__ ]]; then
      [[ -z "$answer" ]] || printf '%s' "$answer"
      return 0
    fi
    [[ "$line" == xmlq-error:* ]] && fail "$line"
    answer+="$line"$'\n'
  done
  fail "the xmlq helper died"
}
step() { STEP=$((STEP + 1)); echo "[$STEP] $*"; }

# json EXPR: evaluate a Python expression over the ready file as R.
json() { xq "$WORK/ready.json" json "$1"; }

read_ready() {
  URL=$(json 'R["url"]')
  CONTROL=$(json 'R["control"]')
  CERT=$(json 'R["cert_file"]')
  BASE=${URL%/sdk}
}

# use_vcsim READY: talk to a simulator someone else started (a fixture).
use_vcsim() {
  [[ -s "$1" ]] || fail "no ready file $1"
  cp "$1" "$WORK/ready.json"
  read_ready
}

# start_vcsim [ARGS...]: start the simulator and wait for its ready file.
start_vcsim() {
  : "${VCSIM:?VCSIM must point at the ferry-vcsim binary}"
  "$VCSIM" --listen 127.0.0.1:0 --datadir "$WORK/data" --ready-file "$WORK/ready.json" "$@" \
    >"$WORK/vcsim.log" 2>&1 7>&- 8<&- &
  VCSIM_PID=$!
  for _ in $(seq 1 300); do
    [[ -s "$WORK/ready.json" ]] && break
    kill -0 "$VCSIM_PID" 2>/dev/null || fail "ferry-vcsim exited before it was ready"
    sleep 0.1
  done
  [[ -s "$WORK/ready.json" ]] || fail "no ready file after 30 s"
  read_ready
}

# soap BODY: POST a SOAP envelope around BODY to /sdk with the session
# cookie jar; the answer lands in $WORK/resp.xml, the status in $HTTP.
soap() {
  local envelope='<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"><soapenv:Body>'"$1"'</soapenv:Body></soapenv:Envelope>'
  HTTP=$(curl -sS --cacert "$CERT" -b "$WORK/cookies" -c "$WORK/cookies" \
    -H 'Content-Type: text/xml; charset=utf-8' -H 'SOAPAction: "urn:vim25/6.5"' \
    --data-binary "$envelope" -o "$WORK/resp.xml" -w '%{http_code}' "$URL")
}

q() { xq "$WORK/resp.xml" "$@"; }

# expect_fault TYPE: the last answer must be a SOAP fault of TYPE.
expect_fault() {
  local got
  got=$(q fault)
  [[ "$HTTP" == 500 && "$got" == "$1" ]] || fail "expected fault $1, got HTTP $HTTP fault '$got'"
}

expect_ok() {
  [[ "$HTTP" == 200 ]] || fail "expected success, got HTTP $HTTP fault '$(q fault)'"
}

login() {
  local user pass
  user=$(json 'R["username"]')
  pass=$(json 'R["password"]')
  soap "<Login xmlns=\"urn:vim25\"><_this type=\"SessionManager\">$SM</_this><userName>$user</userName><password>$pass</password></Login>"
  expect_ok
}

# service_content: fetch the ServiceContent and remember the managers.
service_content() {
  soap '<RetrieveServiceContent xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this></RetrieveServiceContent>'
  expect_ok
  SM=$(q text sessionManager)
  PC=$(q text propertyCollector)
  AUTHZ=$(q text authorizationManager)
  SEARCH=$(q text searchIndex)
  API_TYPE=$(q text apiType)
}

# props TYPE MOREF PATH...: RetrievePropertiesEx of PATHs on one object;
# props_call does not insist on success.
props() {
  props_call "$@"
  expect_ok
}

props_call() {
  local type=$1 moref=$2
  shift 2
  local paths=""
  for p in "$@"; do paths+="<pathSet>$p</pathSet>"; done
  soap "<RetrievePropertiesEx xmlns=\"urn:vim25\"><_this type=\"PropertyCollector\">$PC</_this><specSet><propSet><type>$type</type>$paths</propSet><objectSet><obj type=\"$type\">$moref</obj></objectSet></specSet><options/></RetrievePropertiesEx>"
}

# wait_task TASK: poll the task until it leaves queued/running; sets
# TASK_STATE and TASK_RESULT (the result, or the fault type on error).
wait_task() {
  local task=$1
  for _ in $(seq 1 100); do
    props Task "$task" info
    local out
    out=$(q task)
    TASK_STATE=$(sed -n 1p <<<"$out")
    TASK_RESULT=$(sed -n 2p <<<"$out")
    TASK_MESSAGE=$(sed -n 3p <<<"$out")
    case "$TASK_STATE" in
      success | error) return 0 ;;
    esac
    sleep 0.05
  done
  fail "task $task did not finish"
}

# run_task BODY: call a *_Task method and wait for it.
run_task() {
  soap "$1"
  expect_ok
  local task
  task=$(q text returnval)
  [[ -n "$task" ]] || fail "no task in the answer"
  wait_task "$task"
}

expect_task_ok() {
  [[ "$TASK_STATE" == success ]] || fail "task failed with $TASK_RESULT: $TASK_MESSAGE"
}

expect_task_fault() {
  [[ "$TASK_STATE" == error && "$TASK_RESULT" == "$1" ]] ||
    fail "expected the task to fail with $1, got $TASK_STATE $TASK_RESULT"
}

# control METHOD PATH [CURL ARGS...]: call a /ferry-test endpoint.
control() {
  local method=$1 path=$2
  shift 2
  curl -sS --fail --cacert "$CERT" -X "$method" "$@" "$CONTROL/$path"
}

# disks_json VM: the harness's view of the VM's disk chains.
disks_json() { control GET "disks?vm=$1" >"$WORK/disks.json"; }
dj() { xq "$WORK/disks.json" json "${1//D\[/R[}"; }

# qcda VM SNAPSHOT KEY CHANGEID SIZE: query the whole disk, continuing
# from startOffset + length like a real client; writes "start length" per
# changed area to $WORK/areas.txt and the number of calls to QCDA_CALLS.
qcda() {
  local vm=$1 snap=$2 key=$3 change=$4 size=$5 off=0 out=""
  local calls=0
  while ((off < size)); do
    soap "<QueryChangedDiskAreas xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$vm</_this><snapshot type=\"VirtualMachineSnapshot\">$snap</snapshot><deviceKey>$key</deviceKey><startOffset>$off</startOffset><changeId>$change</changeId></QueryChangedDiskAreas>"
    expect_ok
    local lines start len
    lines=$(q areas)
    read -r start len <<<"$(sed -n 1p <<<"$lines")"
    [[ "$start" == "$off" && "$len" -gt 0 ]] || fail "QueryChangedDiskAreas at $off answered $start+$len"
    out+=$(sed -n '2,$p' <<<"$lines")
    out+=$'\n'
    off=$((start + len))
    calls=$((calls + 1))
  done
  QCDA_CALLS=$calls
  # Join areas that one window ended and the next began.
  awk 'NF == 2 {
         if (n && s + l == $1) { l += $2 } else { if (n) print s, l; s = $1; l = $2; n = 1 }
       }
       END { if (n) print s, l }' <<<"$out" >"$WORK/areas.txt"
}
