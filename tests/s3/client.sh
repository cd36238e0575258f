#!/bin/bash
# The S3 client (s3/) through s3tool against s3fake.py, the fake S3 server
# that checks every request's SigV4 signature: round trips from memory and
# from files (multipart at 16 MiB and at a small part size), Range reads
# and their bounds, listings over several pages with keys that need
# encoding, conditional writes, Object Lock headers and a refused delete,
# virtual-host style, and scripted faults: 503 SlowDown twice (retried,
# each retry logged), SlowDown without end (given up after max attempts),
# connections reset mid-body, and 403 RequestTimeTooSkewed and a wrong
# secret (no retry, a message that says what to fix). No credential may
# appear in anything s3tool prints.
#
# Needs S3TOOL and S3FAKE (set by ctest); skipped (77) without python3.
set -euo pipefail

: "${S3TOOL:?}" "${S3FAKE:?}"
command -v python3 >/dev/null || { echo "SKIP: no python3"; exit 77; }

WORK=$(mktemp -d)
FAKE_PID=
cleanup() {
	if [ -n "$FAKE_PID" ]; then
		kill "$FAKE_PID" 2>/dev/null || true
		wait "$FAKE_PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

export AWS_ACCESS_KEY_ID=AKIDFERRYS3TEST01
export AWS_SECRET_ACCESS_KEY='ferry/Fake+Secret=Key/DoNotPrint42'

python3 "$S3FAKE" --port-file "$WORK/port" --bucket ferry-test \
	--bucket other-bucket 2>"$WORK/fake.log" &
FAKE_PID=$!
for _ in $(seq 100); do
	[ -s "$WORK/port" ] && break
	sleep 0.1
done
[ -s "$WORK/port" ] || fail "s3fake did not start: $(cat "$WORK/fake.log")"
PORT=$(cat "$WORK/port")
URL="http://127.0.0.1:$PORT/ferry-test"

# Every s3tool run's output lands in $WORK/all too, checked for
# credentials at the end. s3 CMD...: stdout to $WORK/stdout, stderr to
# $WORK/stderr, exit status in $RC.
RC=0
s3() {
	RC=0
	"$S3TOOL" --base-delay-ms 5 "$@" >"$WORK/stdout" 2>"$WORK/stderr" || RC=$?
	cat "$WORK/stdout" "$WORK/stderr" >>"$WORK/all"
}
ok() {
	s3 "$@"
	[ "$RC" -eq 0 ] || fail "s3tool $*: exit $RC: $(cat "$WORK/stderr")"
}
refused() { # refused ERRNO-NAME ARGS...
	local want=$1
	shift
	s3 "$@"
	[ "$RC" -eq 1 ] || fail "s3tool $*: exit $RC, wanted a failure"
	grep -q "\[$want\]" "$WORK/stderr" ||
		fail "s3tool $*: wanted $want: $(cat "$WORK/stderr")"
}
stat_of() {
	python3 -c 'import json,sys,urllib.request
print(json.load(urllib.request.urlopen(sys.argv[1]))[sys.argv[2]])' \
		"http://127.0.0.1:$PORT/_fake/stats" "$1"
}
fault() {
	python3 -c 'import sys,urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b"", method="POST")).read()' \
		"http://127.0.0.1:$PORT/_fake/fault?kind=$1&count=$2"
}

# ---- round trips -------------------------------------------------------------
head -c 1000 /dev/urandom >"$WORK/small"
: >"$WORK/empty"
ok "$URL" putmem small "$WORK/small"
ok "$URL" get small "$WORK/small.back"
cmp "$WORK/small" "$WORK/small.back" || fail "small object differs"
[ "$(stat -c %a "$WORK/small.back")" = 600 ] || fail "get_file's file is not 0600"
ok "$URL" put small.file "$WORK/small"
ok "$URL" getmem small.file 1000
cmp "$WORK/small" "$WORK/stdout" || fail "small object from a file differs"
refused EBADMSG "$URL" getmem small.file 999
ok "$URL" putmem empty "$WORK/empty"
ok "$URL" getmem empty 10
[ ! -s "$WORK/stdout" ] || fail "the empty object is not empty"
ok "$URL" head small
grep -q '^size=1000 ' "$WORK/stdout" || fail "head: $(cat "$WORK/stdout")"

# Multipart: 40 MiB in 16 MiB parts (FY_S3_PART_SIZE), 11 MiB in 5 MiB.
head -c $((40 << 20)) /dev/urandom >"$WORK/big"
before=$(stat_of requests)
ok "$URL" put big "$WORK/big"
after=$(stat_of requests)
# create + 3 parts + complete
[ $((after - before)) -eq 5 ] || fail "40 MiB took $((after - before)) requests, not 5"
ok "$URL" get big "$WORK/big.back"
cmp "$WORK/big" "$WORK/big.back" || fail "40 MiB object differs"
head -c $((11 << 20)) /dev/urandom >"$WORK/mid"
ok --part-size 5MiB "$URL" put mid "$WORK/mid"
ok "$URL" get mid "$WORK/mid.back"
cmp "$WORK/mid" "$WORK/mid.back" || fail "11 MiB multipart object differs"
ok "$URL" uploads
[ ! -s "$WORK/stdout" ] || fail "uploads left behind: $(cat "$WORK/stdout")"

# ---- ranges ------------------------------------------------------------------
ok "$URL" range big 1000 5000
cmp "$WORK/stdout" <(tail -c +1001 "$WORK/big" | head -c 5000) || fail "range differs"
ok "$URL" range big $(((40 << 20) - 1)) 1
cmp "$WORK/stdout" <(tail -c 1 "$WORK/big") || fail "last byte differs"
refused EBADMSG "$URL" range small 990 20
grep -q "shorter" "$WORK/stderr" || fail "short range: $(cat "$WORK/stderr")"
refused EBADMSG "$URL" range small 1000 1
refused ENOENT "$URL" range nothing 0 1

# ---- listings ----------------------------------------------------------------
for k in 'l/a' 'l/b b' 'l/c+c' 'l/d=d&x' 'l/e%20' 'l/f/g' 'l/h~' 'l/ü' 'l/z' 'l/zz'; do
	printf '%s' "$k" >"$WORK/key"
	ok "$URL" putmem "$k" "$WORK/key"
done
before=$(stat_of requests)
ok --page-keys 3 "$URL" list l/
after=$(stat_of requests)
[ "$(wc -l <"$WORK/stdout")" -eq 10 ] || fail "listed $(wc -l <"$WORK/stdout") keys, not 10"
[ $((after - before)) -eq 4 ] || fail "10 keys at 3 a page took $((after - before)) pages, not 4"
grep -qx 'l/d=d&x 7' "$WORK/stdout" || fail "list: $(cat "$WORK/stdout")"
grep -qx 'l/ü 4' "$WORK/stdout" || fail "list: no l/ü"
LC_ALL=C sort -c <(cut -d' ' -f1 "$WORK/stdout") 2>/dev/null ||
	LC_ALL=C sort -C "$WORK/stdout" || fail "list is not in key order"
ok --page-keys 4 "$URL" versions l/
[ "$(wc -l <"$WORK/stdout")" -eq 10 ] || fail "versions: $(cat "$WORK/stdout")"
grep -qx 'l/a null 3' "$WORK/stdout" || fail "versions: $(cat "$WORK/stdout")"
ok "$URL" list nothing-here/
[ ! -s "$WORK/stdout" ] || fail "empty prefix listed something"

# ---- deletes, conditions, Object Lock -------------------------------------
ok "$URL" delete 'l/b b'
refused ENOENT "$URL" head 'l/b b'
refused EEXIST --if-none-match "$URL" putmem small "$WORK/small"
ok --if-none-match "$URL" putmem fresh "$WORK/small"
until=$(($(date +%s) + 3600))
ok --lock-mode governance --retain-until "$until" "$URL" putmem locked "$WORK/small"
ok "$URL" head locked
grep -q "mode=1 until=$until" "$WORK/stdout" || fail "head locked: $(cat "$WORK/stdout")"
refused EPERM "$URL" delete locked null
grep -q "Object Lock retention" "$WORK/stderr" || fail "EPERM message: $(cat "$WORK/stderr")"
ok "$URL" retention locked compliance $((until + 60))
ok "$URL" head locked
grep -q "mode=2 until=$((until + 60))" "$WORK/stdout" || fail "retention: $(cat "$WORK/stdout")"
ok "$URL" lock
grep -qx disabled "$WORK/stdout" || fail "lock: $(cat "$WORK/stdout")"
refused ENOENT "http://127.0.0.1:$PORT/no-such-bucket" head small

# Virtual-host style: the bucket in the host name (curl resolves
# *.localhost to the loopback address itself).
ok --virtual-host "http://localhost:$PORT/ferry-test" getmem small 1000
cmp "$WORK/small" "$WORK/stdout" || fail "virtual-host read differs"

# ---- faults ------------------------------------------------------------------
fault slowdown 2
ok "$URL" putmem retried "$WORK/small"
[ "$(grep -c 'attempt [12] of 6 failed: HTTP 503 SlowDown' "$WORK/stderr")" -eq 2 ] ||
	fail "two logged retries wanted: $(cat "$WORK/stderr")"
grep -q 'PUT ferry-test/retried' "$WORK/stderr" || fail "retry log names no key"
ok "$URL" getmem retried 1000
cmp "$WORK/small" "$WORK/stdout" || fail "retried PUT stored something else"

fault slowdown 100
refused EIO --max-attempts 3 "$URL" head small
grep -q 'after 3 attempts' "$WORK/stderr" || fail "give-up message: $(cat "$WORK/stderr")"
[ "$(grep -c 'retrying in' "$WORK/stderr")" -eq 2 ] || fail "3 attempts, 2 retries"
fault slowdown 0

# A reset in the middle of a GET's body, and during a PUT's body: the
# retry sends the body again from its start.
fault reset 1
ok "$URL" get big "$WORK/big.back2"
cmp "$WORK/big" "$WORK/big.back2" || fail "GET after a reset differs"
grep -q 'connection reset' "$WORK/stderr" || fail "reset not logged: $(cat "$WORK/stderr")"
fault reset 1
ok --part-size 5MiB "$URL" put mid2 "$WORK/mid"
ok "$URL" get mid2 "$WORK/mid.back2"
cmp "$WORK/mid" "$WORK/mid.back2" || fail "multipart after a reset differs"

fault skew 1
refused EACCES "$URL" getmem small 1000
grep -q "RequestTimeTooSkewed" "$WORK/stderr" || fail "skew: $(cat "$WORK/stderr")"
grep -q "clock differs from the server's: fix the time (NTP)" "$WORK/stderr" ||
	fail "skew hint: $(cat "$WORK/stderr")"
! grep -q 'retrying' "$WORK/stderr" || fail "a 403 was retried"
# A HEAD's 403 has no error document: the message lists the causes.
fault skew 1
refused EACCES "$URL" head small
grep -q "clock" "$WORK/stderr" || fail "HEAD 403: $(cat "$WORK/stderr")"

bad_before=$(stat_of signatures_bad)
AWS_SECRET_ACCESS_KEY='wrong/Secret+Key=AlsoDoNotPrint' s3 "$URL" getmem small 1000
[ "$RC" -eq 1 ] || fail "a wrong secret was accepted"
grep -q "SignatureDoesNotMatch.*check the access key and secret" "$WORK/stderr" ||
	fail "wrong secret: $(cat "$WORK/stderr")"
[ "$(stat_of signatures_bad)" -eq $((bad_before + 1)) ] || fail "fake did not count the bad signature"
AWS_ACCESS_KEY_ID=AKIDNOSUCHKEY0001 s3 "$URL" getmem small 1000
[ "$RC" -eq 1 ] && grep -q "InvalidAccessKeyId.*check the access key and secret" "$WORK/stderr" ||
	fail "unknown key: $(cat "$WORK/stderr")"

# Every request this test made with the right credentials was verified:
# only the two wrong ones were refused.
[ "$(stat_of signatures_bad)" -eq $((bad_before + 2)) ] || fail "bad signatures seen"
[ "$(stat_of signatures_ok)" -gt 50 ] || fail "too few signatures checked"

# ---- credentials ---------------------------------------------------------------
printf 'access_key_id=%s\nsecret_access_key=%s\n' "$AWS_ACCESS_KEY_ID" \
	"$AWS_SECRET_ACCESS_KEY" >"$WORK/cred"
chmod 644 "$WORK/cred"
refused EACCES --credentials "$WORK/cred" "$URL" head small
grep -q "mode 0644" "$WORK/stderr" || fail "mode message: $(cat "$WORK/stderr")"
chmod 600 "$WORK/cred"
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY \
	"$S3TOOL" --credentials "$WORK/cred" "$URL" head small >>"$WORK/all" 2>&1 ||
	fail "credentials file refused"
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY \
	"$S3TOOL" --log-level 6 "$URL" head small >>"$WORK/all" 2>&1 &&
	fail "no credentials accepted"

for secret in "$AWS_SECRET_ACCESS_KEY" 'wrong/Secret+Key=AlsoDoNotPrint' \
	"$AWS_ACCESS_KEY_ID" AKIDNOSUCHKEY0001; do
	! grep -qF "$secret" "$WORK/all" || fail "a credential was printed: $secret"
done
# And at the most verbose level.
"$S3TOOL" --log-level 6 "$URL" head small >"$WORK/verbose" 2>&1
! grep -qF "$AWS_SECRET_ACCESS_KEY" "$WORK/verbose" || fail "verbose output has the secret"
! grep -qF "$AWS_ACCESS_KEY_ID" "$WORK/verbose" || fail "verbose output has the key id"

echo "PASS: s3 client against s3fake"
