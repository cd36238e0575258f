#!/usr/bin/env bash
# Runs a test program against a misbehaving HTTPS server written in Python:
# makes a self-signed certificate for 127.0.0.1, starts SERVER_PY on a free
# port, and runs TESTS/PROGRAM URL SHA256_THUMBPRINT [CERT_FILE].
#   hostile_https.sh SERVER_PY PROGRAM [--pass-cert]
set -euo pipefail
: "${TESTS:?TESTS must point at build/tests}"
server=$1 program=$2 pass_cert=${3:-}
T=$(mktemp -d "${TMPDIR:-/tmp}/ferry-hostile-https.XXXXXX")
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
python3 "$server" "$T/cert.pem" "$T/key.pem" "$T/port" &
PID=$!
for _ in $(seq 1 100); do [[ -s "$T/port" ]] && break; sleep 0.1; done
[[ -s "$T/port" ]] || { echo "FAIL: hostile server did not start"; exit 1; }
args=("https://127.0.0.1:$(cat "$T/port")" "$TP")
[[ "$pass_cert" == --pass-cert ]] && args+=("$T/cert.pem")
"$TESTS/$program" "${args[@]}"
