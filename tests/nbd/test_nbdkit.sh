#!/bin/sh
# The NBD source against nbdkit: whole reads byte-identical to the
# source, block status on sparse exports (fewer bytes over the wire than
# the disk holds), multi-conn, block size constraints, simple replies,
# oldstyle refusal, injected read errors and read timeouts.
NAME=nbdkit
. "$NBD_TESTS/lib.sh"
need "${NBDKIT:-}" "${PYTHON3:-}"

make_random "$T/disk.img" 9000000
make_sparse "$T/sparse.img"
S="$T/s.sock"
U="nbd+unix:///?socket=$S"

start_nbdkit file -U "$S" file "$T/disk.img"
check "file plugin over a Unix socket: whole read" \
	$P read "$U" "$T/disk.img"
check "several connections with multi-conn" \
	$P --conns 4 --in-flight 4 --io-size 65536 --expect-conns 4 \
	--expect-multi-conn read "$U" "$T/disk.img"
check "one request in flight" \
	$P --in-flight 1 --io-size 100000 read "$U" "$T/disk.img"
stop file

PORT=$(free_port)
start_nbdkit tcp -i 127.0.0.1 -p "$PORT" file "$T/disk.img"
check "file plugin over TCP on a loopback port: whole read" \
	$P read "nbd://127.0.0.1:$PORT/" "$T/disk.img"
check "file plugin over TCP by name" \
	$P read "nbd://localhost:$PORT" "$T/disk.img"
stop tcp

start_nbdkit sparse -U "$S" file "$T/sparse.img"
check "sparse file: extents, then only data is read" \
	$P sparse "$U" "$T/sparse.img"
check "sparse file on 4 connections, a thread each: the same" \
	$P --conns 4 --expect-conns 4 sparse "$U" "$T/sparse.img"
check "one read larger than the largest request (32 MiB) is split" \
	$P --io-size 50331648 read "$U" "$T/sparse.img"
stop sparse

# The plugin gives unaligned partial-block reads other bytes than whole
# ones, so it gets whole reads only; the reference comes from qemu-img.
start_nbdkit srandom -U "$S" sparse-random 64M seed=42 runlength=1048576
if command -v qemu-img >/dev/null 2>&1; then
	qemu-img convert -f raw -O raw "$U" "$T/srandom.img"
	check "sparse-random: extents, then only data is read" \
		$P sparse "$U" "$T/srandom.img"
	check "sparse-random: whole read" \
		$P --no-odd read "$U" "$T/srandom.img"
fi
stop srandom

start_nbdkit memory -U "$S" memory 32M
head -c 33554432 /dev/zero >"$T/zero.img"
check "memory plugin: an empty disk crosses the wire as extents only" \
	$P sparse "$U" "$T/zero.img"
stop memory

"$PYTHON3" -c 'import sys
d = bytearray(4 << 20)
d[4096:4101] = b"hello"
d[1 << 20:(1 << 20) + 65536] = b"\x55" * 65536
d[(4 << 20) - 1] = 0xaa
sys.stdout.buffer.write(d)' >"$T/data.img"
start_nbdkit data -U "$S" data \
	"@4096 \"hello\" @1048576 0x55*65536 @4194303 0xaa" size=4M
check "data plugin: whole read" $P read "$U" "$T/data.img"
check "data plugin: extents" $P sparse "$U" "$T/data.img"
stop data

# The server refuses requests not aligned to 4 KiB and longer than
# 64 KiB; odd reads by the caller must still work. (The export size is
# a multiple of 4 KiB, as the spec asks of such servers.)
make_random "$T/disk4k.img" 9003008
start_nbdkit bs -U "$S" --filter=blocksize-policy file "$T/disk4k.img" \
	blocksize-minimum=4096 blocksize-preferred=16384 \
	blocksize-maximum=65536 blocksize-error-policy=error
check "block size constraints: aligned and split requests" \
	$P --expect-block 4096 read "$U" "$T/disk4k.img"
stop bs

start_nbdkit nosr -U "$S" --no-sr file "$T/disk.img"
check "no structured replies: simple replies" \
	$P read "$U" "$T/disk.img"
check "no structured replies: extents() is ENOTSUP" \
	$P no-extents "$U"
stop nosr

start_nbdkit old -U "$S" -o file "$T/disk.img"
check "oldstyle server refused" $P fail-open "$U" "oldstyle"
stop old

# Writing (restore-vm's nbd/nbdssl modes): into nbdkit's memory plugin,
# read back through the source; a read-only export and a refused write
# are errors that say so.
start_nbdkit mem -U "$S" memory 9000000
check "writer: the file written over the export reads back the same" \
	$P --io-size 1048576 write "$U" "$T/disk.img"
check "writer: what was written reads back" \
	$P read "$U" "$T/disk.img"
stop mem
start_nbdkit ro -U "$S" --readonly file "$T/disk.img"
check "writer: a read-only export is refused" \
	$P fail-write "$U" "the export is read-only"
stop ro
cp "$T/disk.img" "$T/disk-w.img"
start_nbdkit werr -U "$S" --filter=error file "$T/disk-w.img" \
	error-pwrite=ENOSPC error-pwrite-rate=100%
check "writer: a refused write names itself and the server's error" \
	$P fail-write "$U" "refused the write of 65536 bytes at 0"
stop werr

start_nbdkit err -U "$S" --filter=error file "$T/disk.img" \
	error-pread-rate=100%
check "injected read errors fail the read clearly" \
	$P fail-read "$U" "failed: Input/output error"
check "injected read errors on 4 connections: the batch fails with the message" \
	$P --conns 4 --expect-conns 4 fail-read "$U" "failed: Input/output error"
stop err

start_nbdkit errx -U "$S" --filter=error file "$T/sparse.img" \
	error-extents=ENOSPC error-extents-rate=100%
check "injected block status errors fail extents() clearly" \
	$P fail-extents "$U" "block status of"
check "the server's error is named" \
	$P fail-extents "$U" "No space left on device"
stop errx

start_nbdkit delay -U "$S" --filter=delay file "$T/disk.img" rdelay=5
check "a silent server hits the read timeout" \
	$P --read-timeout-ms 300 --attempts 1 --base-ms 10 \
	fail-read "$U" "no reply from the server for 300 ms"
stop delay

start_nbdkit slow -U "$S" --filter=delay file "$T/disk.img" rdelay=50ms
check "a slow server within the timeout" \
	$P --read-timeout-ms 5000 --io-size 1048576 read "$U" "$T/disk.img"
stop slow

summary
