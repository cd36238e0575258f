#!/usr/bin/env bash
# VM disks over the network transport modes (agent/vm_transport.c) against
# a fresh simulated vCenter of its own (it takes snapshots, writes disks and
# powers VMs off): starts build/bin/ferry-vcsim with 16 MiB disks, turns its
# ready file into a config and runs test_vm_transport in a private
# directory (its TMPDIR, where nbdkit's directories must not outlive it).
#
# usage: vm_transport.sh [--esx]   (BIN, TESTS, SRC in the environment)
set -euo pipefail
: "${BIN:?BIN must point at build/bin}"
: "${TESTS:?TESTS must point at build/tests}"
: "${SRC:?SRC must point at the source tree}"
VCSIM="$BIN/ferry-vcsim"
MODE=${1:-}
[[ -x "$VCSIM" ]] || { echo "SKIP: $VCSIM is not built (tests/vcsim)"; exit 77; }

T=$(mktemp -d "${TMPDIR:-/tmp}/ferry-vmtr.XXXXXX")
PID=""
cleanup() {
  local rc=$?
  if [[ -n "$PID" ]]; then
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -f "$T/vcsim.log" ]]; then
    echo "--- ferry-vcsim log (last 30 lines)"; tail -n 30 "$T/vcsim.log"
  fi
  rm -rf "$T"
  exit $rc
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$VCSIM" --listen 127.0.0.1:0 --datadir "$T/data" --ready-file "$T/ready.json" \
  --disk-size 16777216 $MODE >"$T/vcsim.log" 2>&1 &
PID=$!
for _ in $(seq 1 300); do
  [[ -s "$T/ready.json" ]] && break
  kill -0 "$PID" 2>/dev/null || fail "ferry-vcsim exited at start"
  sleep 0.1
done
[[ -s "$T/ready.json" ]] || fail "ferry-vcsim did not start"
python3 "$SRC/tests/vsphere/ready2conf.py" "$T/ready.json" "$T" >"$T/test.conf"
mkdir "$T/work"
"$TESTS/test_vm_transport" "$T/test.conf" "$T/work"
