# Shared helpers for Ferry's integration tests. Every test runs real
# processes on loopback: ferry-repo, ferry-agent, ferry, with certificates
# made by `ferry ca`. Sourced by each test; BIN is build/bin.
set -euo pipefail

: "${BIN:?BIN must point at build/bin}"
: "${TOOLS:?TOOLS must point at tests/tools}"
INTEGRATION_TESTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FERRY="$BIN/ferry"
AGENT="$BIN/ferry-agent"
REPO="$BIN/ferry-repo"

T=$(mktemp -d "${TMPDIR:-/tmp}/ferry-test.XXXXXX")
REPO_PID=""
cleanup() {
  local rc=$?
  if [[ -n "$REPO_PID" ]]; then
    kill -9 "$REPO_PID" 2>/dev/null || true
    wait "$REPO_PID" 2>/dev/null || true
  fi
  for f in "${CLEANUP_CMDS[@]:-}"; do [[ -n "$f" ]] && eval "$f" || true; done
  if [[ $rc -ne 0 && -f "$T/repo.log" ]]; then
    echo "--- repository log (last 30 lines)"; tail -n 30 "$T/repo.log"
  fi
  rm -rf "$T"
  exit $rc
}
CLEANUP_CMDS=()
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "--- $*"; }

# Certificates: a CA, the repository (127.0.0.1), an agent, and a second CA
# whose certificates the repository must refuse.
make_certs() {
  "$FERRY" ca init "$T/pki" >/dev/null
  "$FERRY" ca issue "$T/pki" 127.0.0.1 --san localhost --role repository >/dev/null
  "$FERRY" ca issue "$T/pki" agent1 --role agent >/dev/null
  "$FERRY" ca init "$T/other" >/dev/null
  "$FERRY" ca issue "$T/other" intruder --role agent >/dev/null
}

# corrupt_block HEX AT BYTES: overwrites BYTES (a printf format) AT bytes
# into the stored object of block HEX (its 16-byte header first,
# docs/FORMAT.md), wherever the repository keeps it: a block file
# (format 1) or a place in a pack (format 2), as 'ferry-repo locate' says.
corrupt_block() {
  local loc file off len
  loc=$("$REPO" locate --root "$T/repo" --digest "$1") || fail "block $1 is not stored"
  read -r file off len <<<"$loc"
  [[ -f $file && $2 -lt $len ]] || fail "locate gave '$loc' for block $1"
  printf "$3" | dd of="$file" bs=1 seek=$((off + $2)) conv=notrunc status=none
}

# block_stored HEX: whether the repository has block HEX.
block_stored() { "$REPO" locate --root "$T/repo" --digest "$1" >/dev/null 2>&1; }

# start_repo [extra serve flags]: starts ferry-repo on a free loopback port.
start_repo() {
  # REPO_FORMAT=1: a repository of the old format (a file per block).
  [[ -d "$T/repo" ]] || "$REPO" init --root "$T/repo" ${REPO_FORMAT:+--format "$REPO_FORMAT"} >/dev/null
  rm -f "$T/ready"
  "$REPO" serve --root "$T/repo" --listen 127.0.0.1:0 \
    --cert "$T/pki/127.0.0.1.crt" --key "$T/pki/127.0.0.1.key" \
    --ca "$T/pki/ca.crt" --ready-file "$T/ready" --log-level 4 "$@" \
    >>"$T/repo.log" 2>&1 &
  REPO_PID=$!
  for _ in $(seq 1 200); do
    [[ -s "$T/ready" ]] && break
    kill -0 "$REPO_PID" 2>/dev/null || fail "ferry-repo exited at start"
    sleep 0.05
  done
  [[ -s "$T/ready" ]] || fail "ferry-repo did not start"
  ADDR=$(head -n1 "$T/ready")
  cat >"$T/agent.conf" <<CONF
# written by tests/integration/lib.sh
ferry.repository=$ADDR
ferry.tls.cert=$T/pki/agent1.crt
ferry.tls.key=$T/pki/agent1.key
ferry.tls.ca=$T/pki/ca.crt
CONF
}

stop_repo() {
  [[ -n "$REPO_PID" ]] || return 0
  kill "$REPO_PID" 2>/dev/null || true
  wait "$REPO_PID" 2>/dev/null || true
  REPO_PID=""
}

kill9_repo() {
  kill -9 "$REPO_PID" 2>/dev/null || true
  wait "$REPO_PID" 2>/dev/null || true
  REPO_PID=""
}

# backup_json SOURCE... : runs a backup and leaves its JSON in $T/last.json.
backup_json() {
  local args=()
  for s in "$@"; do args+=(--source "$s"); done
  "$AGENT" backup --config "$T/agent.conf" "${args[@]}" --json --quiet >"$T/last.json"
}

# json FILE EXPR: evaluates a Python expression on the parsed JSON `j`.
json() {
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

backup_count() {
  "$FERRY" --config "$T/agent.conf" list --json >"$T/list.json"
  json "$T/list.json" 'len(j)'
}

same_file() { cmp "$1" "$2" >/dev/null || fail "$1 and $2 differ"; }

# start_vcsim [FERRY-VCSIM OPTION...]: starts a simulated vCenter of the
# test's own (BIN/ferry-vcsim) on a free loopback port, waits for its ready
# file $T/ready.json and turns it into $T/test.conf (the ferry.vcenter.*
# keys, and the ready file under "test.": tests/vsphere/ready2conf.py). It
# is stopped at exit, and its log's tail printed if the test failed.
start_vcsim() {
  "$BIN/ferry-vcsim" --listen 127.0.0.1:0 --datadir "$T/vc" \
    --ready-file "$T/ready.json" "$@" >"$T/vcsim.log" 2>&1 &
  VCSIM_PID=$!
  CLEANUP_CMDS+=('kill "$VCSIM_PID" 2>/dev/null; wait "$VCSIM_PID" 2>/dev/null'
    '[[ $rc -eq 0 ]] || { echo "--- ferry-vcsim log (last 30 lines)"; tail -n 30 "$T/vcsim.log"; }')
  for _ in $(seq 1 300); do
    [[ -s "$T/ready.json" ]] && break
    kill -0 "$VCSIM_PID" 2>/dev/null || fail "ferry-vcsim exited at start"
    sleep 0.1
  done
  [[ -s "$T/ready.json" ]] || fail "ferry-vcsim did not start"
  python3 "$INTEGRATION_TESTS/../vsphere/ready2conf.py" "$T/ready.json" "$T" >"$T/test.conf"
}

mkimage() { python3 "$TOOLS/mkimage.py" "$@"; }
