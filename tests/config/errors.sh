#!/usr/bin/env bash
# Configuration file errors as an admin sees them on the command line:
# `ferry-agent backup`, `ferry-agent backup --vm`, `ferry-agent cleanup`
# and `ferry list` on files with a malformed line, a value out of range, a
# value of the wrong kind and an unknown key. Each error names the file
# and line (and the range); an unknown key of ferry.* is an error naming
# the closest known key, one of VDDK's (vixDiskLib.*) a warning naming the
# key and its line, and the command goes on.
# usage: errors.sh   (BIN, TOOLS in the environment)
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh"

cd "$T"
# expect_error NAME WANT CMD...: CMD fails and its stderr holds WANT.
expect_error() {
  local name=$1 want=$2 out rc=0
  shift 2
  out=$("$@" 2>&1) || rc=$?
  [[ $rc -ne 0 ]] || fail "$name: '$*' succeeded: $out"
  grep -qF -- "$want" <<<"$out" || fail "$name: '$*' said '$out', not '$want'"
  echo "ok: $name: $(head -n1 <<<"$out")"
}

printf '# a comment\nferry.repository=127.0.0.1:1\n\nthis line has no equals sign\n' >malformed.conf
printf 'ferry.repository=127.0.0.1:1\n  =no name\n' >noname.conf
printf 'ferry.repository=127.0.0.1:1\nvixDiskLib.transport.LogLevel=9\n' >loglevel.conf
printf 'ferry.repository=127.0.0.1:1\n# blocks\nferry.compressionLevel=42\n' >level.conf
printf 'ferry.repository=127.0.0.1:1\nferry.blockSize=1M\n' >notint.conf
printf 'ferry.repository=127.0.0.1:1\nferry.blockSize=1000000\n' >notpow2.conf
printf 'ferry.repository=127.0.0.1:1\nvixDiskLib.disklib.EnableCache=2\n' >cache.conf
printf 'ferry.repository=127.0.0.1:1\nferry.noSuchKey=1\nvixDiskLib.disklib.EnableCach=1\n' >unknown.conf
dd if=/dev/zero of=disk.img bs=64k count=1 status=none

for cmd in "backup --source disk.img" "backup --vm vm-1" "cleanup"; do
  # shellcheck disable=SC2086
  set -- $cmd
  expect_error "malformed line, $cmd" "malformed.conf:4: expected name=value" \
    "$AGENT" "$@" --config malformed.conf
  expect_error "missing name, $cmd" "noname.conf:2: missing name before '='" \
    "$AGENT" "$@" --config noname.conf
  expect_error "log level out of range, $cmd" \
    "vixDiskLib.transport.LogLevel=9 (from loglevel.conf:2) is out of range: 0..6" \
    "$AGENT" "$@" --config loglevel.conf
done
for cmd in "backup --source disk.img" "backup --vm vm-1"; do
  # shellcheck disable=SC2086
  set -- $cmd
  expect_error "compression level out of range, $cmd" \
    "ferry.compressionLevel=42 (from level.conf:3) is out of range: 1..19" \
    "$AGENT" "$@" --config level.conf
  expect_error "not an integer, $cmd" \
    "ferry.blockSize=1M (from notint.conf:2) is not a decimal integer" \
    "$AGENT" "$@" --config notint.conf
  expect_error "not a power of two, $cmd" \
    "ferry.blockSize=1000000 (from notpow2.conf:2) is not a power of two in 65536..8388608" \
    "$AGENT" "$@" --config notpow2.conf
  expect_error "EnableCache out of range, $cmd" \
    "vixDiskLib.disklib.EnableCache=2 (from cache.conf:2) is out of range: 0..1" \
    "$AGENT" "$@" --config cache.conf
done
# The service reads the same file the same way (once it is built).
if "$AGENT" --help 2>&1 | grep -q '^ *run '; then
  expect_error "malformed line, run" "malformed.conf:4: expected name=value" \
    timeout 20 "$AGENT" run --config malformed.conf
  expect_error "log level out of range, run" \
    "vixDiskLib.transport.LogLevel=9 (from loglevel.conf:2) is out of range: 0..6" \
    timeout 20 "$AGENT" run --config loglevel.conf
fi
# A flag's value is named as coming from the command line.
expect_error "--set out of range" \
  "ferry.compressionLevel=0 (from command line) is out of range: 1..19" \
  "$AGENT" backup --source disk.img --config level.conf --set ferry.compressionLevel=0
# ferry reads the same file the same way.
expect_error "ferry list, malformed line" "malformed.conf:4: expected name=value" \
  "$FERRY" --config malformed.conf list
expect_error "ferry list, out of range" \
  "ferry.compressionLevel=42 (from level.conf:3) is out of range: 1..19" \
  "$FERRY" --config level.conf list

# Unknown keys: one of Ferry's own namespace (ferry.*) is an error naming
# the closest known key, before anything runs; VDDK's keys keep VDDK's
# tolerance (a warning per key with its line, the command goes on, here to
# fail on the unreachable repository or the missing vCenter).
printf 'ferry.repository=127.0.0.1:1\nferry.blocksize=65536\nvixDiskLib.disklib.EnableCach=1\n' >misspelt.conf
printf 'ferry.repository=127.0.0.1:1\nvixDiskLib.disklib.EnableCach=1\n' >vddk-typo.conf
for cmd in "backup --source disk.img" "backup --vm vm-1" "cleanup" "transports"; do
  # shellcheck disable=SC2086
  set -- $cmd
  expect_error "unknown ferry key, $cmd" \
    "unknown configuration key 'ferry.noSuchKey' (unknown.conf:2); the closest known key is '" \
    "$AGENT" "$@" --config unknown.conf
  expect_error "misspelt ferry key, $cmd" \
    "unknown configuration key 'ferry.blocksize' (misspelt.conf:2); the closest known key is 'ferry.blockSize'" \
    "$AGENT" "$@" --config misspelt.conf
  out=$("$AGENT" "$@" --config misspelt.conf 2>&1) || true
  grep -qF "unknown configuration key 'vixDiskLib.disklib.EnableCach' (misspelt.conf:3)" <<<"$out" ||
    fail "unknown keys, $cmd: no warning for the misspelt EnableCache: $out"
  [[ $cmd == transports ]] && continue
  out=$("$AGENT" "$@" --config vddk-typo.conf 2>&1) && fail "vddk typo, $cmd: succeeded"
  grep -qF "unknown configuration key 'vixDiskLib.disklib.EnableCach' (vddk-typo.conf:2)" <<<"$out" ||
    fail "vddk typo, $cmd: no warning for the misspelt EnableCache: $out"
  grep -q "unknown configuration key.*closest" <<<"$out" && fail "vddk typo, $cmd: an error: $out"
  echo "ok: VDDK's typo, $cmd: warned, went on to: $(tail -n1 <<<"$out")"
done
expect_error "misspelt ferry key, ferry list" \
  "unknown configuration key 'ferry.blocksize' (misspelt.conf:2); the closest known key is 'ferry.blockSize'" \
  "$FERRY" --config misspelt.conf list

# VDDK's documented InitEx keys, its sample configuration as is: known, no
# warning (the VDDK path passes them on to VDDK).
cat >vddk-sample.conf <<'CONF'
ferry.repository=127.0.0.1:1
tmpDirectory="/tmp"
vixDiskLib.transport.LogLevel=3
vixDiskLib.disklib.EnableCache=0
vixDiskLib.linuxSSL.verifyCertificates=1
vixDiskLib.nfc.AcceptTimeoutMs=180000
vixDiskLib.nfc.RequestTimeoutMs=180000
vixDiskLib.nfc.ReadTimeoutMs=60000
vixDiskLib.nfc.WriteTimeoutMs=600000
vixDiskLib.nfcFssrvr.TimeoutMs=0
vixDiskLib.nfcFssrvrWrite.TimeoutMs=0
vixDiskLib.nfc.LogLevel=1
vixDiskLib.nfcAio.Session.BufSizeIn64KB=16
vixDiskLib.nfcAio.Session.BufCount=4
vixDiskLib.transport.hotadd.NoNfcSession=1
vixDiskLib.transport.san.blacklist=all
CONF
out=$("$AGENT" transports --config vddk-sample.conf 2>&1) || fail "transports on VDDK's sample: $out"
grep -q "unknown" <<<"$out" && fail "VDDK's own keys warned about: $out"
echo "ok: VDDK's documented keys, no warning"
echo "config errors: all ok"
