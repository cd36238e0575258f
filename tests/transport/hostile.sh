#!/usr/bin/env bash
# The https transport against a misbehaving /folder (hostile_folder.py):
# Range ignored, wrong Content-Range, too long, too short, stalled, 401s.
set -euo pipefail
: "${TESTS:?TESTS must point at build/tests}"
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/ferry-dsh.XXXXXX")
PID=""
cleanup() {
  local rc=$?
  if [[ -n "$PID" ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$T"
  exit $rc
}
trap cleanup EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$T/key.pem" -out "$T/cert.pem" \
  >/dev/null 2>&1
TP=$(openssl x509 -in "$T/cert.pem" -noout -fingerprint -sha256 | cut -d= -f2)
python3 "$HERE/hostile_folder.py" "$T/cert.pem" "$T/key.pem" "$T/port" &
PID=$!
for _ in $(seq 1 100); do [[ -s "$T/port" ]] && break; sleep 0.1; done
[[ -s "$T/port" ]] || { echo "FAIL: hostile server did not start"; exit 1; }
"$TESTS/test_ds_hostile" "https://127.0.0.1:$(cat "$T/port")" "$TP"
