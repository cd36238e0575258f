#!/usr/bin/env bash
# integration.mount: instant access. `ferry mount` serves one disk of a
# backup read-only over NBD, straight from the repository; real clients
# from Debian read it (nbdcopy also with 4 connections x 64 requests at
# once): nbdcopy and qemu-img convert give exactly the
# backed-up bytes, nbdinfo --map shows the backup's holes as holes, a
# write is refused, TLS is mutual with the Ferry CA (a client of another
# CA is refused), a corrupt block is an EIO on the reads that touch it and
# never wrong bytes, and an agent may mount only its own backups.
source "$(dirname "$0")/lib.sh"
command -v nbdcopy >/dev/null && command -v nbdinfo >/dev/null || {
  echo "SKIP: nbdcopy/nbdinfo (libnbd-bin) are not installed"; exit 77; }

make_certs
"$FERRY" ca issue "$T/pki" agent2 --role agent >/dev/null
"$FERRY" ca issue "$T/pki" mounthost --san 127.0.0.1 --role agent >/dev/null
start_repo
sed "s|/agent1\.|/agent2.|g" "$T/agent.conf" >"$T/agent2.conf"
# 9 MiB and a bit: data, a 3 MiB hole, data, a partial last block.
mkimage create "$T/d.img" $((9 * 1048576 + 12345)) --seed 41
dd if=/dev/zero of="$T/d.img" bs=1M seek=3 count=3 conv=notrunc status=none
fallocate --punch-hole --offset $((3 * 1048576)) --length $((3 * 1048576)) "$T/d.img"
backup_json "$T/d.img"
id=$(json "$T/last.json" 'j["backup_id"]')

MOUNT_PID=""
CLEANUP_CMDS+=('[[ -n "$MOUNT_PID" ]] && kill $MOUNT_PID 2>/dev/null; wait $MOUNT_PID 2>/dev/null')
mount_start() { # mount_start CONF ARGS...: ferry mount in the background
  local conf=$1; shift
  rm -f "$T/mount.ready"
  "$FERRY" --config "$conf" mount "$id" --disk 0 --ready-file "$T/mount.ready" "$@" \
    >"$T/mount.log" 2>&1 &
  MOUNT_PID=$!
  for _ in $(seq 1 200); do
    [[ -s "$T/mount.ready" ]] && return 0
    kill -0 "$MOUNT_PID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
mount_stop() { kill "$MOUNT_PID"; wait "$MOUNT_PID" || fail "ferry mount exited $?"; MOUNT_PID=""; }

note "plain NBD on an address other machines reach is warned about"
# 192.0.2.1 (TEST-NET-1) is no address of this machine: the bind fails
# after the warning, and nothing listens beyond the loopback.
if timeout 30 "$FERRY" --config "$T/agent.conf" mount "$id" --disk 0 --listen 192.0.2.1:0 2>"$T/warn.log"; then
  fail "a mount bound 192.0.2.1"
fi
grep -q "warning: 192.0.2.1:0 is not a loopback address and --tls is not given" "$T/warn.log" ||
  fail "no warning: $(cat "$T/warn.log")"

note "plain TCP: nbdcopy and qemu-img read exactly the backup"
mount_start "$T/agent.conf" --listen 127.0.0.1:0 || fail "mount did not start: $(cat "$T/mount.log")"
grep -q "warning" "$T/mount.log" && fail "a loopback mount warned: $(cat "$T/mount.log")"
URI="nbd://$(cat "$T/mount.ready")/"
nbdcopy "$URI" "$T/copy.img"
same_file "$T/d.img" "$T/copy.img"
# A 32 MiB read comes back in several data chunks (structured replies),
# one per block, each sent straight from its cache slot: still exactly.
nbdcopy --request-size=$((32 << 20)) --requests=2 "$URI" "$T/copy32.img"
same_file "$T/d.img" "$T/copy32.img"
qemu-img convert -f raw -O raw "$URI" "$T/qemu.img"
# qemu rounds an export up to whole 512-byte sectors (of zeros).
cmp -n $((9 * 1048576 + 12345)) "$T/d.img" "$T/qemu.img" || fail "qemu-img read other bytes"
[[ $(nbdinfo --size "$URI") == $((9 * 1048576 + 12345)) ]] || fail "size: $(nbdinfo --size "$URI")"
nbdinfo --json "$URI" >"$T/info.json"
[[ $(json "$T/info.json" 'j["exports"][0]["is_read_only"]') == True ]] || fail "not read-only: $(cat "$T/info.json")"

note "4 connections x 64 requests at once, a cache of 34 MiB for 40 MiB: reads share, pin and wait for blocks"
head -c $((40 * 1048576)) /dev/urandom >"$T/big.img"
backup_json "$T/big.img"
id_small=$id
id=$(json "$T/last.json" 'j["backup_id"]')
id_big=$id
mount_stop
mount_start "$T/agent.conf" --listen 127.0.0.1:0 --cache-mb 34 || fail "mount did not start: $(cat "$T/mount.log")"
BURI="nbd://$(cat "$T/mount.ready")/"
nbdcopy --connections=4 --requests=64 "$BURI" "$T/big-copy.img"
same_file "$T/big.img" "$T/big-copy.img"
# Read-ahead is for readers going forward: random reads on a fresh mount
# fetch only their own blocks; a read at the disk's start, or after a
# cached block, also asks for the next 4.
mount_stop
mount_start "$T/agent.conf" --socket "$T/ra.sock" --log-level 4 || fail "mount did not start: $(cat "$T/mount.log")"
python3 - "$T/ra.sock" "$T/big.img" <<'PY' || fail "reads for read-ahead"
import os, sys
sys.path.insert(0, os.environ["TOOLS"])
from nbdsimple import Client
c = Client(sys.argv[1])
want = open(sys.argv[2], "rb").read()
for i, off in enumerate(((20 << 20) + 100, (30 << 20) + 5000, (9 << 20) + 1)):
    assert c.read(i + 1, off, 4096) == (0, want[off:off + 4096]), off
PY
mount_stop
grep -q "mount: 3 blocks fetched" "$T/mount.log" || fail "random reads read ahead: $(cat "$T/mount.log")"
mount_start "$T/agent.conf" --socket "$T/ra.sock" --log-level 4 || fail "mount did not start: $(cat "$T/mount.log")"
nbdcopy "nbd+unix:///?socket=$T/ra.sock" "$T/ra.img" --request-size=65536 --connections=1 --requests=1
same_file "$T/big.img" "$T/ra.img"
mount_stop
# 40 blocks read in order, each fetched once: most of them read ahead.
grep -q "mount: 40 blocks fetched" "$T/mount.log" || fail "a sequential read: $(cat "$T/mount.log")"
mount_start "$T/agent.conf" --listen 127.0.0.1:0 --cache-mb 34 || fail "mount did not start: $(cat "$T/mount.log")"
# A client still connected (idle in the handshake) at the stop: its
# connection is cut and its thread waited for, and the export exits 0.
hp=$(cat "$T/mount.ready")
python3 -c 'import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.recv(18)
time.sleep(60)' "${hp%:*}" "${hp##*:}" &
idle=$!
CLEANUP_CMDS+=("kill $idle")
sleep 0.5
mount_stop
grep -q "still busy" "$T/mount.log" && fail "the stop waited in vain: $(cat "$T/mount.log")"
kill "$idle" 2>/dev/null || true
id=$id_small
mount_start "$T/agent.conf" --listen 127.0.0.1:0 || fail "mount did not start: $(cat "$T/mount.log")"
URI="nbd://$(cat "$T/mount.ready")/"

note "nbdinfo --map: the backup's holes (every all-zero block) are holes"
nbdinfo --map --json "$URI" >"$T/map.json"
python3 - "$T/map.json" "$T/d.img" <<'PY' || fail "map: $(cat "$T/map.json")"
import json, sys
m = json.load(open(sys.argv[1]))
data = open(sys.argv[2], "rb").read()
want, B = [], 1 << 20
for off in range(0, len(data), B):
    n = min(B, len(data) - off)
    hole = data[off:off + n] == bytes(n)
    if want and want[-1][2] == hole:
        want[-1][1] += n
    else:
        want.append([off, n, hole])
got = [[e["offset"], e["length"], bool(e["type"] & 1)] for e in m]
assert got == want, (got, want)
assert [3 << 20, 3 << 20] in [w[:2] for w in want] or any(
    w[2] and w[0] <= 3 << 20 and w[0] + w[1] >= 6 << 20 for w in want), want
PY

note "a write is refused"
python3 - "$(cat "$T/mount.ready")" <<'PY' || fail "a write went through"
import socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=10)
def rd(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b)); assert c, "closed"; b += c
    return b
assert rd(18)[:16] == b"NBDMAGICIHAVEOPT"
s.sendall(struct.pack(">I", 3))                       # fixed newstyle, no zeroes
s.sendall(b"IHAVEOPT" + struct.pack(">II", 1, 0))    # NBD_OPT_EXPORT_NAME ""
size, flags = struct.unpack(">QH", rd(10))
assert flags & 2, "not read-only"
s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 1, 7, 0, 4) + b"evil")  # WRITE
magic, err, handle = struct.unpack(">IIQ", rd(16))
assert magic == 0x67446698 and handle == 7 and err == 1, (magic, err, handle)  # EPERM
PY
mount_stop

note "an agent may not mount another agent's backup"
if mount_start "$T/agent2.conf" --listen 127.0.0.1:0; then fail "agent2 mounted agent1's backup"; fi
grep -q "no backup $id that agent2 may read" "$T/mount.log" || fail "refusal: $(cat "$T/mount.log")"

note "TLS: the Ferry CA's certificates, both ways"
mount_start "$T/agent.conf" --listen 127.0.0.1:0 --tls --nbd-cert "$T/pki/mounthost.crt" \
  --nbd-key "$T/pki/mounthost.key" || fail "TLS mount did not start: $(cat "$T/mount.log")"
mkdir -p "$T/good" "$T/bad"
cp "$T/pki/ca.crt" "$T/good/ca-cert.pem"
cp "$T/pki/agent1.crt" "$T/good/client-cert.pem"; cp "$T/pki/agent1.key" "$T/good/client-key.pem"
cp "$T/pki/ca.crt" "$T/bad/ca-cert.pem"
cp "$T/other/intruder.crt" "$T/bad/client-cert.pem"; cp "$T/other/intruder.key" "$T/bad/client-key.pem"
TURI="nbds://$(cat "$T/mount.ready")/?tls-certificates=$T/good"
nbdcopy "$TURI" "$T/tls.img"
same_file "$T/d.img" "$T/tls.img"
if nbdinfo "nbd://$(cat "$T/mount.ready")/" >/dev/null 2>&1; then fail "a plain client read a TLS export"; fi
if nbdinfo "nbds://$(cat "$T/mount.ready")/?tls-certificates=$T/bad" >/dev/null 2>&1; then
  fail "a client of another CA was served"
fi
grep -q "nbd: TLS from .* refused" "$T/mount.log" || fail "the refusal is not logged: $(cat "$T/mount.log")"
mount_stop
# Many reads in flight over TLS: the export's workers reply at once while
# its client thread reads the next requests, through one TLS session. A
# 48 MiB cache lends 10 slots at most: past them the workers copy, so
# replies from loans and from buffers interleave.
id=$id_big
mount_start "$T/agent.conf" --listen 127.0.0.1:0 --tls --nbd-cert "$T/pki/mounthost.crt" \
  --nbd-key "$T/pki/mounthost.key" --cache-mb 48 || fail "TLS mount did not start: $(cat "$T/mount.log")"
nbdcopy --connections=4 --requests=64 "nbds://$(cat "$T/mount.ready")/?tls-certificates=$T/good" "$T/tls-big.img"
same_file "$T/big.img" "$T/tls-big.img"
mount_stop
id=$id_small

note "a corrupt block: EIO on its reads, the others still served"
hex=$(dd if="$T/d.img" bs=1M skip=7 count=1 status=none | sha256sum | cut -d' ' -f1)
corrupt_block "$hex" 40 'XXXX'
mount_start "$T/agent.conf" --socket "$T/nbd.sock" || fail "unix mount: $(cat "$T/mount.log")"
SURI="nbd+unix:///?socket=$T/nbd.sock"
if nbdcopy "$SURI" "$T/corrupt.img" 2>"$T/c.err"; then fail "a corrupt block was copied"; fi
grep -qi "input/output error\|EIO" "$T/c.err" || fail "not an EIO: $(cat "$T/c.err")"
# On a fresh mount (nothing cached) the first 7 MiB do not touch it and
# still read exactly, though their fetch reads ahead into block 7; a read
# of the corrupt block is an EIO and the connection goes on.
mount_stop
mount_start "$T/agent.conf" --socket "$T/nbd.sock" || fail "unix mount: $(cat "$T/mount.log")"
python3 - "$T/nbd.sock" "$T/d.img" <<'PY' || fail "reads around the corrupt block"
import os, sys
sys.path.insert(0, os.environ["TOOLS"])
from nbdsimple import Client
c = Client(sys.argv[1])
want = open(sys.argv[2], "rb").read()
err, got = c.read(1, 0, 7 << 20)
assert err == 0 and got == want[:7 << 20], err
err, _ = c.read(2, (7 << 20) + 100, 1000)
assert err == 5, err  # EIO
err, got = c.read(3, 8 << 20, 1 << 20)
assert err == 0 and got == want[8 << 20:9 << 20], err
PY
grep -q "block 7 of the disk" "$T/mount.log" || fail "the corrupt block is not named: $(cat "$T/mount.log")"
mount_stop
echo "mount: OK"
