#!/usr/bin/env bash
# Any NBD server is a backup source: ferry-agent backs up nbdkit and
# qemu-nbd exports (plain, over a Unix socket, and over TLS) into the
# repository; the restores equal the exported files, and the holes the
# server reports through block status are never read.
source "$(dirname "$0")/lib.sh"
command -v nbdkit >/dev/null && command -v qemu-nbd >/dev/null || { echo "needs nbdkit and qemu-nbd"; exit 77; }

make_certs
start_repo
size=$((32 * 1024 * 1024 + 8192))
mkimage create "$T/disk.img" "$size" --seed 5 --sparse

restore_and_compare() {
  local id; id=$(json "$T/last.json" 'j["backup_id"]')
  "$FERRY" --config "$T/agent.conf" restore "$id" --disk 0 --output "$T/r.img" --force
  same_file "$T/disk.img" "$T/r.img"
}

note "nbdkit file plugin over a Unix socket"
nbdkit -U "$T/nbd.sock" -P "$T/nbdkit.pid" file "$T/disk.img"
CLEANUP_CMDS+=('kill $(cat "$T/nbdkit.pid") 2>/dev/null')
backup_json "nbd+unix:///?socket=$T/nbd.sock"
[[ $(json "$T/last.json" 'j["disks"][0]["transport"]') == nbd ]] || fail "transport not nbd: $(cat "$T/last.json")"
[[ $(json "$T/last.json" 'j["disks"][0]["size"]') == "$size" ]] || fail "wrong size"
read_bytes=$(json "$T/last.json" 'j["disks"][0]["bytes_read"]')
[[ "$read_bytes" -lt "$size" ]] || fail "holes were read over NBD ($read_bytes of $size)"
restore_and_compare
kill "$(cat "$T/nbdkit.pid")"

note "nbdkit with TLS required: nbds:// verified against our CA"
mkdir -p "$T/nbdtls"
cp "$T/pki/ca.crt" "$T/nbdtls/ca-cert.pem"
cp "$T/pki/127.0.0.1.crt" "$T/nbdtls/server-cert.pem"
cp "$T/pki/127.0.0.1.key" "$T/nbdtls/server-key.pem"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nbdkit -i 127.0.0.1 -p "$port" -P "$T/nbdkit.pid" --tls=require \
  --tls-certificates="$T/nbdtls" file "$T/disk.img"
echo "ferry.nbd.TlsCa=$T/pki/ca.crt" >>"$T/agent.conf"
backup_json "nbds://127.0.0.1:$port/"
[[ $(json "$T/last.json" 'j["disks"][0]["transport"]') == nbdssl ]] || fail "transport not nbdssl: $(cat "$T/last.json")"
restore_and_compare
note "the same server refuses a plain nbd:// client, and the agent says why"
if "$AGENT" backup --config "$T/agent.conf" --source "nbd://127.0.0.1:$port/" --quiet 2>"$T/err"; then
  fail "plain client got data from a TLS-only server"
fi
grep -qi "tls" "$T/err" || fail "unclear error: $(cat "$T/err")"
kill "$(cat "$T/nbdkit.pid")"

note "qemu-nbd, two disks of one backup: one NBD export and one file"
qemu-nbd -f raw -k "$T/qemu.sock" --persistent --pid-file "$T/qemu.pid" --fork "$T/disk.img"
CLEANUP_CMDS+=('kill $(cat "$T/qemu.pid") 2>/dev/null')
mkimage create "$T/disk2.img" $((5 * 1024 * 1024)) --seed 6
backup_json "nbd+unix:///?socket=$T/qemu.sock" "$T/disk2.img"
restore_and_compare
id=$(json "$T/last.json" 'j["backup_id"]')
"$FERRY" --config "$T/agent.conf" restore "$id" --disk 1 --output "$T/r2.img"
same_file "$T/disk2.img" "$T/r2.img"
[[ $(json "$T/last.json" 'j["disks"][0]["blocks_sent"]') == 0 ]] || fail "same data sent again over qemu-nbd"
echo "nbd_source: ok"
