#!/bin/sh
# TLS against nbdkit: nbds:// verifies the server against the CA and the
# host name or address; a wrong CA or name is refused; a server that
# requires TLS refuses a plain client; a plain server is refused when TLS
# is required (no downgrade); client certificates work.
NAME=tls
. "$NBD_TESTS/lib.sh"
need "${NBDKIT:-}" "${OPENSSL:-}" "${PYTHON3:-}"

make_certs "$T/pki" || { echo "cannot make certificates"; exit 1; }
make_random "$T/disk.img" 5000000
PORT=$(free_port)
CA="--ca $T/pki/ca-cert.pem"

start_nbdkit tls -i 127.0.0.1 -p "$PORT" --tls=require \
	--tls-certificates="$T/pki" file "$T/disk.img"
check "nbds:// to an address: read over TLS" \
	$P $CA --expect-tls read "nbds://127.0.0.1:$PORT/" "$T/disk.img"
check "nbds:// to a name, two connections" \
	$P $CA --expect-tls --conns 2 --expect-conns 2 \
	read "nbds://localhost:$PORT" "$T/disk.img"
check "nbd:// with TLS required by option" \
	$P $CA --tls-required --expect-tls \
	read "nbd://127.0.0.1:$PORT/" "$T/disk.img"
check "a certificate from another CA is refused" \
	$P --ca "$T/pki/other/ca-cert.pem" \
	fail-open "nbds://127.0.0.1:$PORT/" "not trusted"
check "a certificate for another name is refused" \
	$P $CA --server-name other.example \
	fail-open "nbds://127.0.0.1:$PORT/" "not trusted"
check "tls-hostname= in the URI is checked too" \
	$P $CA fail-open "nbds://127.0.0.1:$PORT/?tls-hostname=nope.example" \
	"nope.example"
check "without TLS the server's demand for it is reported" \
	$P fail-open "nbd://127.0.0.1:$PORT/" "requires TLS"
stop tls

S="$T/s.sock"
start_nbdkit tlsunix -U "$S" --tls=require --tls-certificates="$T/pki" \
	file "$T/disk.img"
check "nbds+unix:// over a Unix socket" \
	$P $CA --expect-tls read "nbds+unix:///?socket=$S" "$T/disk.img"
check "nbds+unix:// with the name checked" \
	$P $CA --server-name localhost --expect-tls \
	read "nbds+unix:///?socket=$S" "$T/disk.img"
stop tlsunix

start_nbdkit plain -U "$S" file "$T/disk.img"
check "a plain-text server is refused for nbds://" \
	$P $CA fail-open "nbds+unix:///?socket=$S" "refused TLS"
check "a plain-text server is refused when TLS is required" \
	$P $CA --tls-required fail-open "nbd+unix:///?socket=$S" \
	"refused TLS"
stop plain

start_nbdkit peer -U "$S" --tls=require --tls-certificates="$T/pki" \
	--tls-verify-peer file "$T/disk.img"
check "a server that wants a client certificate, given one" \
	$P $CA --cert "$T/pki/client-cert.pem" --key "$T/pki/client-key.pem" \
	--expect-tls read "nbds+unix:///?socket=$S" "$T/disk.img"
check "a server that wants a client certificate, given none" \
	$P $CA fail-open "nbds+unix:///?socket=$S" "nbd:"
stop peer

summary
