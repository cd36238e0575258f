#!/usr/bin/env bash
# integration.file_restore: file-level restore through instant access. An
# ext4 file system image (made with mkfs.ext4 -d, no mount needed) is
# backed up; `ferry mount` exports the backup over a Unix socket; QEMU's
# NBD client (qemu-storage-daemon, its FUSE export standing in for the
# kernel's nbd driver, which these machines' kernel lacks) turns it into a
# file, a read-only loop device mounts it, and a file inside reads back
# exactly. Needs root (mount) and qemu-storage-daemon.
source "$(dirname "$0")/lib.sh"
[[ $(id -u) == 0 ]] || { echo "SKIP: needs root to mount"; exit 77; }
command -v qemu-storage-daemon >/dev/null || { echo "SKIP: no qemu-storage-daemon"; exit 77; }

make_certs
start_repo
mkdir -p "$T/fs/etc" "$T/mnt"
head -c 3000000 /dev/urandom >"$T/fs/etc/important.bin"
echo "the file an admin needs back" >"$T/fs/etc/motd"
truncate -s 64M "$T/fs.img"
mkfs.ext4 -q -F -d "$T/fs" "$T/fs.img"
backup_json "$T/fs.img"
id=$(json "$T/last.json" 'j["backup_id"]')

"$FERRY" --config "$T/agent.conf" mount "$id" --disk 0 --socket "$T/nbd.sock" \
  --ready-file "$T/mount.ready" >"$T/mount.log" 2>&1 &
MPID=$!
CLEANUP_CMDS+=('umount "$T/mnt" 2>/dev/null; kill $QPID $MPID 2>/dev/null; wait $QPID $MPID 2>/dev/null')
for _ in $(seq 1 200); do [[ -s "$T/mount.ready" ]] && break; sleep 0.05; done
[[ -s "$T/mount.ready" ]] || fail "ferry mount did not start: $(cat "$T/mount.log")"

: >"$T/export"
qemu-storage-daemon \
  --blockdev "{\"driver\":\"nbd\",\"node-name\":\"backup\",\"read-only\":true,\"server\":{\"type\":\"unix\",\"path\":\"$T/nbd.sock\"}}" \
  --export "type=fuse,id=e,node-name=backup,mountpoint=$T/export,writable=off" \
  >"$T/qsd.log" 2>&1 &
QPID=$!
for _ in $(seq 1 200); do [[ $(stat -c %s "$T/export") == 67108864 ]] && break; sleep 0.05; done
[[ $(stat -c %s "$T/export") == 67108864 ]] || fail "the FUSE export did not appear: $(cat "$T/qsd.log")"

note "mount the backup's file system read-only and read the files back"
mount -o loop,ro,noload -t ext4 "$T/export" "$T/mnt"
same_file "$T/fs/etc/important.bin" "$T/mnt/etc/important.bin"
same_file "$T/fs/etc/motd" "$T/mnt/etc/motd"
umount "$T/mnt"
grep -q "\"action\":\"read\"" "$T/repo/audit.log" || fail "the read is not audited"
echo "file_restore: OK"
