#!/bin/sh
# Reconnecting: nbdkit is killed in the middle of a read and started
# again on the same socket (the read completes with the right data and
# counts a reconnect); killed and never started again (the read fails
# after the configured attempts, saying so); reconnecting disabled.
NAME=reconnect
. "$NBD_TESTS/lib.sh"
need "${NBDKIT:-}"

# 8 MiB read in 128 KiB requests, two at a time, each delayed 100 ms by
# the server: about 3 s of reading, killed after the first 1 MiB, so
# requests are in flight when the server goes, with a wide margin.
make_random "$T/disk.img" 8388608
S="$T/s.sock"
U="nbd+unix:///?socket=$S"

server() {
	start_nbdkit srv -U "$S" --filter=delay file "$T/disk.img" rdelay=100ms
}

# reader ATTEMPTS COMMAND ARG [OPTION...]: the probe in the background,
# touching $T/marker once 1 MiB has been read; its output and exit
# status end up in $T/reader.log once reader_wait returns.
reader() {
	attempts=$1
	cmd=$2
	arg=$3
	shift 3
	rm -f "$T/marker"
	"$NBD_PROBE" --in-flight 2 --io-size 131072 --attempts "$attempts" \
		--base-ms 100 --marker "$T/marker" --marker-at 1048576 "$@" \
		"$cmd" "$U" "$arg" >"$T/reader.log" 2>&1 &
	READER=$!
	PIDS="$PIDS $READER"
}

reader_wait() {
	wait "$READER"
	echo "exit status $?" >>"$T/reader.log"
}

server
reader 8 read "$T/disk.img" --expect-reconnects 1
wait_for "$T/marker" "$READER"
stop srv KILL
sleep 0.3
server
reader_wait
check_log "killed mid-read, restarted: the read completes, reconnected" \
	"$T/reader.log" "reconnects=[1-9]" "^ok$" "exit status 0"
stop srv

server
reader 3 fail-read "gave up after 3 reconnect attempts"
wait_for "$T/marker" "$READER"
stop srv KILL
reader_wait
# A server killed with requests unread in its socket resets the
# connection (ECONNRESET) instead of closing it (EOF); either is the
# server going away, and the client must say which.
check_log "killed for good: the read fails after 3 attempts" \
	"$T/reader.log" "the server closed the connection\|receive failed: Connection reset by peer" \
	"gave up after 3 reconnect attempts (last: .*/s.sock" \
	"reconnect attempt 3 of 3 failed" "^ok$" "exit status 0"

server
reader 0 fail-read "reconnecting is disabled"
wait_for "$T/marker" "$READER"
stop srv KILL
reader_wait
check_log "reconnecting disabled: the read fails at once" \
	"$T/reader.log" "reconnecting is disabled" "^ok$" "exit status 0"

summary
