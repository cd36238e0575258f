#!/bin/sh
# The NBD source against qemu-nbd: whole reads, a sparse raw file (block
# status, and holes in read replies), several connections, and TLS with
# tls-creds-x509 with and without a client certificate.
NAME=qemu
. "$NBD_TESTS/lib.sh"
need "${QEMU_NBD:-}" "${OPENSSL:-}"

make_random "$T/disk.img" 7340032
make_sparse "$T/sparse.img"
S="$T/s.sock"
U="nbd+unix:///?socket=$S"

start_qemu plain -f raw -r -t --shared=4 --socket="$S" "$T/disk.img"
check "qemu-nbd: whole read" $P read "$U" "$T/disk.img"
check "qemu-nbd: several connections" \
	$P --conns 3 --expect-conns 3 --io-size 262144 \
	read "$U" "$T/disk.img"
stop_qemu plain

start_qemu sparse -f raw -r -t --socket="$S" "$T/sparse.img"
check "qemu-nbd: sparse file, extents, then only data is read" \
	$P sparse "$U" "$T/sparse.img"
check "qemu-nbd: sparse file read whole (holes come as hole chunks)" \
	sh -c "$P read '$U' '$T/sparse.img' | grep 'holes=[1-9]'"
stop_qemu sparse

make_certs "$T/pki" || { echo "cannot make certificates"; exit 1; }
CA="--ca $T/pki/ca-cert.pem"
start_qemu tls -f raw -r -t --socket="$S" \
	--object "tls-creds-x509,id=tls0,dir=$T/pki,endpoint=server,verify-peer=off" \
	--tls-creds tls0 "$T/disk.img"
check "qemu-nbd TLS: nbds+unix:// read" \
	$P $CA --server-name localhost --expect-tls \
	read "nbds+unix:///?socket=$S" "$T/disk.img"
check "qemu-nbd TLS: refused without TLS" \
	$P fail-open "$U" "requires TLS"
check "qemu-nbd TLS: wrong CA refused" \
	$P --ca "$T/pki/other/ca-cert.pem" \
	fail-open "nbds+unix:///?socket=$S" "not trusted"
stop_qemu tls

start_qemu peer -f raw -r -t --socket="$S" \
	--object "tls-creds-x509,id=tls0,dir=$T/pki,endpoint=server,verify-peer=on" \
	--tls-creds tls0 "$T/disk.img"
check "qemu-nbd TLS with a client certificate" \
	$P $CA --cert "$T/pki/client-cert.pem" --key "$T/pki/client-key.pem" \
	--expect-tls read "nbds+unix:///?socket=$S" "$T/disk.img"
stop_qemu peer

summary
