#!/bin/sh
# A misbehaving server (hostile_server.py): every protocol violation is a
# clear error naming it, never a crash, a hang or a wrong read; the odd
# but legal ones (replies out of order, simple replies, no NBD_OPT_GO,
# short block status answers, NBD_ESHUTDOWN) read correctly.
NAME=hostile
. "$NBD_TESTS/lib.sh"
need "${PYTHON3:-}"

REF="$T/ref.img"
# One reconnect, quickly: a violation must not turn into a long wait.
FAST="--attempts 1 --base-ms 10"

# One server, one socket per scenario.
mkdir "$T/h"
"$PYTHON3" "$NBD_TESTS/hostile_server.py" "$T/h" "$REF" >"$T/server.log" 2>&1 &
HPID=$!
PIDS="$PIDS $HPID"
wait_for "$T/h/ready" "$HPID" || { sed 's/^/    /' "$T/server.log"; exit 1; }

# scenario NAME: point $U at that scenario's socket.
scenario() {
	U="nbd+unix:///?socket=$T/h/$1.sock"
}

# Legal but unusual.
scenario ooo
check "replies and chunks out of order, holes as hole chunks" \
	$P --in-flight 16 --io-size 262144 read "$U" "$REF"
scenario good
check "block status over more extents than one answer keeps" \
	$P sparse "$U" "$REF"
check "a well-behaved server, read whole" $P read "$U" "$REF"
scenario simple
check "no structured replies: simple replies" $P read "$U" "$REF"
check "no structured replies: no extents" $P no-extents "$U"
scenario go-unsup
check "no NBD_OPT_GO: NBD_OPT_EXPORT_NAME instead" $P read "$U" "$REF"
scenario no-meta
check "structured replies without base:allocation: no extents" \
	$P no-extents "$U"
scenario extents-short
check "short block status answers are continued" $P sparse "$U" "$REF"
scenario eshutdown-once
check "NBD_ESHUTDOWN: reconnect and read again" \
	$P --expect-reconnects 1 read "$U" "$REF"

# Broken handshakes.
scenario bad-greeting
check "not an NBD server" $P fail-open "$U" "not an NBD server"
scenario oldstyle
check "oldstyle handshake refused" $P fail-open "$U" "oldstyle handshake"
scenario no-fixed
check "no fixed newstyle" $P fail-open "$U" "fixed newstyle"
scenario opt-bad-magic
check "bad option reply magic" $P fail-open "$U" "bad option reply magic"
scenario opt-oversize
check "oversized option reply refused before allocating" \
	$P fail-open "$U" "carries 268435456 bytes (limit 65536)"
scenario opt-wrong-option
check "reply to an option never sent" $P fail-open "$U" "reply to option"
scenario unknown-export
check "unknown export named" $P fail-open "$U" "has no export ''"
scenario endless-info
check "endless option replies cut off" $P fail-open "$U" "more than 64"
scenario bad-block-size
check "impossible block size" $P fail-open "$U" "minimum block size 3"
scenario go-no-export
check "NBD_OPT_GO without the export's size" \
	$P fail-open "$U" "without NBD_INFO_EXPORT"
scenario close-greeting
check "closed before the greeting" $P fail-open "$U" "closed the connection"
scenario silent-greeting
check "silent server: negotiation times out" \
	$P --negotiate-timeout-ms 300 fail-open "$U" "timed out"
scenario simple
check "TLS required, server has none: refused, no downgrade" \
	$P --tls-required fail-open "$U" "refused TLS"

# Broken replies.
scenario reply-bad-magic
check "bad reply magic" $P $FAST fail-read "$U" "bad reply magic"
scenario unknown-cookie
check "reply for a cookie never sent" \
	$P $FAST fail-read "$U" "which no request in flight carries"
scenario unknown-type-oversize
check "unknown chunk type, oversized" \
	$P $FAST fail-read "$U" "unknown chunk type 85"
scenario unknown-error-type
check "unknown error chunk type fails the read with its message" \
	$P $FAST fail-read "$U" "weird failure"
scenario chunk-oversize
check "data chunk longer than the request" \
	$P $FAST fail-read "$U" "OFFSET_DATA chunk of"
scenario chunk-outside
check "data chunk outside the request" \
	$P $FAST fail-read "$U" "outside the request"
scenario short-success
check "success claimed with data missing" \
	$P $FAST fail-read "$U" "ended the read reply after"
scenario truncated
check "reply cut short by a closed connection" \
	$P $FAST fail-read "$U" "gave up after 1 reconnect attempt"
scenario stall
check "no reply at all: read timeout" \
	$P $FAST --read-timeout-ms 300 fail-read "$U" "no reply from the server"
scenario bad-context
check "block status for a context never agreed" \
	$P $FAST fail-extents "$U" "context id 99"

# Writing (fy_nbd_writer): a read-only export is refused before any
# write; a broken reply to a write fails it, naming what was wrong.
scenario good
check "writer: a read-only export" \
	$P fail-write "$U" "the export is read-only"
scenario write-data
check "writer: data in the reply to a write" \
	$P fail-write "$U" "data chunk in reply to a write"
scenario write-cookie
check "writer: a reply to another request" \
	$P fail-write "$U" "which no request in flight carries"
scenario write-close
check "writer: the server hangs up during a write" \
	$P fail-write "$U" "closed the connection in the middle of a request"

summary
