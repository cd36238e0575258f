# Shared by the NBD test scripts (POSIX sh). Sourced after setting
# NAME; provides a scratch directory, server start/stop that never
# leaves a process behind, and check/summary helpers.
#
# Environment (set by tests/nbd/nbd.cmake): NBD_PROBE, NBD_TESTS,
# NBDKIT, QEMU_NBD, OPENSSL, PYTHON3.

set -u

: "${NBD_PROBE:?}" "${NBD_TESTS:?}"
T=$(mktemp -d "${TMPDIR:-/tmp}/ferry-nbd-$NAME.XXXXXX")
PIDS=""
PASSED=0
FAILED=0

cleanup() {
	for p in $PIDS; do
		kill -9 "$p" 2>/dev/null
	done
	for p in $PIDS; do
		wait "$p" 2>/dev/null
	done
	for f in "$T"/*.pid; do
		[ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
	done
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# need PROGRAM...: skip the whole script (exit 77) when one is missing.
need() {
	for p in "$@"; do
		if [ -z "$p" ] || ! command -v "$p" >/dev/null 2>&1; then
			echo "SKIP: $p not found"
			exit 77
		fi
	done
}

# wait_for FILE [PID]: up to 20 s for FILE (a socket or pid file) to
# appear, giving up at once if process PID is gone.
wait_for() {
	i=0
	while [ ! -e "$1" ]; do
		i=$((i + 1))
		if [ $i -gt 400 ] ||
			{ [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; }; then
			echo "gave up waiting for $1"
			return 1
		fi
		sleep 0.05
	done
}

# A loopback port nobody listens on right now.
free_port() {
	"$PYTHON3" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# start_nbdkit TAG ARGS...: nbdkit in the foreground of a background job,
# tied to this shell; returns once it listens (its pid file exists).
start_nbdkit() {
	tag=$1
	shift
	rm -f "$T/$tag.pid"
	"$NBDKIT" -f --exit-with-parent -P "$T/$tag.pid" "$@" \
		>"$T/$tag.log" 2>&1 &
	PIDS="$PIDS $!"
	eval "PID_$tag=$!"
	wait_for "$T/$tag.pid" $! || sed 's/^/    /' "$T/$tag.log"
}

# stop TAG [SIGNAL]: signal (default TERM) a server started here, wait
# for it, and remove the sockets a killed server leaves behind.
stop() {
	eval "p=\$PID_$1"
	kill "-${2:-TERM}" "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	rm -f "$T/$1.pid" "$T"/*.sock
}

# check DESCRIPTION COMMAND...: runs the command (output to a log),
# counts a pass or a failure, shows the log on failure.
check() {
	desc=$1
	shift
	if timeout 90 "$@" >"$T/check.log" 2>&1; then
		PASSED=$((PASSED + 1))
		echo "PASS: $desc"
		[ -z "${NBD_TEST_VERBOSE:-}" ] || sed 's/^/    /' "$T/check.log"
	else
		FAILED=$((FAILED + 1))
		echo "FAIL: $desc"
		sed 's/^/    /' "$T/check.log"
	fi
}

# The probe, for use inside check (timeout runs programs, not functions).
P=$NBD_PROBE

summary() {
	echo "$PASSED passed, $FAILED failed"
	[ "$FAILED" -eq 0 ]
}

# make_random FILE BYTES
make_random() {
	head -c "$2" /dev/urandom >"$1"
}

# make_sparse FILE: 64 MiB with a few islands of random data.
make_sparse() {
	rm -f "$1"
	truncate -s 64M "$1"
	for mib in 1 5 17 40 63; do
		head -c 300000 /dev/urandom |
			dd of="$1" bs=1M seek=$mib conv=notrunc status=none
	done
}

# make_certs DIR: a test CA, a server certificate for localhost and
# 127.0.0.1, a client certificate, and an unrelated CA, in the file names
# nbdkit and qemu-nbd look for (ca-cert.pem, server-cert.pem, ...).
make_certs() {
	d=$1
	mkdir -p "$d" "$d/other"
	key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
	"$OPENSSL" req -x509 $key -keyout "$d/ca-key.pem" \
		-out "$d/ca-cert.pem" -days 2 -subj "/CN=Ferry test CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
	"$OPENSSL" req -x509 $key -keyout "$d/other/ca-key.pem" \
		-out "$d/other/ca-cert.pem" -days 2 -subj "/CN=Some other CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
	for who in server client; do
		"$OPENSSL" req $key -keyout "$d/$who-key.pem" \
			-out "$d/$who.csr" -subj "/CN=$who.ferry.test" \
			2>/dev/null
		if [ $who = server ]; then
			printf '%s\n' \
				"subjectAltName=DNS:localhost,IP:127.0.0.1" \
				"extendedKeyUsage=serverAuth" \
				"keyUsage=critical,digitalSignature,keyEncipherment" \
				>"$d/$who.ext"
		else
			printf '%s\n' \
				"extendedKeyUsage=clientAuth" \
				"keyUsage=critical,digitalSignature,keyEncipherment" \
				>"$d/$who.ext"
		fi
		"$OPENSSL" x509 -req -in "$d/$who.csr" -CA "$d/ca-cert.pem" \
			-CAkey "$d/ca-key.pem" -CAcreateserial -days 2 \
			-out "$d/$who-cert.pem" -extfile "$d/$who.ext" \
			2>/dev/null || return 1
	done
	chmod 600 "$d"/*-key.pem
}

# start_qemu TAG ARGS...: qemu-nbd forked into the background once its
# socket is ready; its pid file lets cleanup() stop it.
start_qemu() {
	tag=$1
	shift
	rm -f "$T/$tag.pid"
	"$QEMU_NBD" --fork --pid-file="$T/$tag.pid" "$@" \
		>"$T/$tag.log" 2>&1 || { sed 's/^/    /' "$T/$tag.log"; return 1; }
	wait_for "$T/$tag.pid"
}

# stop_qemu TAG
stop_qemu() {
	if [ -f "$T/$1.pid" ]; then
		p=$(cat "$T/$1.pid")
		kill "$p" 2>/dev/null
		i=0
		while kill -0 "$p" 2>/dev/null && [ $i -lt 200 ]; do
			sleep 0.05
			i=$((i + 1))
		done
		kill -9 "$p" 2>/dev/null
		rm -f "$T/$1.pid"
	fi
	rm -f "$T"/*.sock
}

# check_log DESCRIPTION FILE PATTERN...: passes when FILE has a line
# matching each (grep) pattern; shows FILE otherwise.
check_log() {
	desc=$1
	file=$2
	shift 2
	for pat in "$@"; do
		if ! grep -q -- "$pat" "$file"; then
			FAILED=$((FAILED + 1))
			echo "FAIL: $desc (no line matches '$pat')"
			sed 's/^/    /' "$file"
			return
		fi
	done
	PASSED=$((PASSED + 1))
	echo "PASS: $desc"
	[ -z "${NBD_TEST_VERBOSE:-}" ] || sed 's/^/    /' "$file"
}
