#!/bin/bash
# The S3 client (s3/) through s3tool against a real radosgw: a one-node
# Ceph cluster started by tests/s3/ceph-up, buckets made and results read
# back by tests/s3/s3admin.py (boto3, an independent client). Path style
# over http://127.0.0.1. Checks what the fake cannot vouch for: that real
# radosgw accepts our signatures (keys that need encoding, continuation
# tokens, multipart), honours Range, If-None-Match and Object Lock, and
# that a multipart upload asked to be locked ends up locked (radosgw 16.2
# ignores the lock headers of CreateMultipartUpload; the client sets the
# retention after completing).
#
# Uses the cluster of the ctest fixture s3.ceph_up when CEPH_ENV names its
# env file, else starts its own. Skipped (77) without Ceph's daemons or
# boto3.
set -euo pipefail

: "${S3TOOL:?}"
HERE=$(cd "$(dirname "$0")" && pwd)
for b in ceph-mon ceph-osd radosgw python3; do
	command -v "$b" >/dev/null || { echo "SKIP: no $b"; exit 77; }
done
python3 -c 'import boto3' 2>/dev/null || { echo "SKIP: no boto3"; exit 77; }

# Short: ceph-up's admin socket paths must stay under 107 bytes.
WORK=$(mktemp -d /tmp/fys3.XXXXXX)
BP=ferry-plain-$RANDOM$RANDOM
BL=ferry-lock-$RANDOM$RANDOM
cleanup() {
	if [[ -n "${CEPH_ENV:-}" ]]; then
		python3 "$HERE/s3admin.py" rb "$BP" >/dev/null 2>&1 || true
		python3 "$HERE/s3admin.py" rb "$BL" >/dev/null 2>&1 || true
	else
		"$HERE/ceph-down" "$WORK/ceph" >/dev/null 2>&1 || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

if [[ -z "${CEPH_ENV:-}" ]]; then
	"$HERE/ceph-up" "$WORK/ceph" >"$WORK/ceph-up.log" 2>&1 ||
		fail "ceph-up: $(tail -20 "$WORK/ceph-up.log")"
	CEPH_ENV=$WORK/ceph/env
fi
set -a
. "$CEPH_ENV"
set +a
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
ADMIN="python3 $HERE/s3admin.py"
$ADMIN mb $BP >/dev/null
$ADMIN mb $BL --object-lock >/dev/null
P=$S3_ENDPOINT/$BP
L=$S3_ENDPOINT/$BL

RC=0
s3() {
	RC=0
	"$S3TOOL" "$@" >"$WORK/stdout" 2>"$WORK/stderr" || RC=$?
	cat "$WORK/stdout" "$WORK/stderr" >>"$WORK/all"
}
ok() {
	s3 "$@"
	[ "$RC" -eq 0 ] || fail "s3tool $*: exit $RC: $(cat "$WORK/stderr")"
}
refused() {
	local want=$1
	shift
	s3 "$@"
	[ "$RC" -eq 1 ] && grep -q "\[$want\]" "$WORK/stderr" ||
		fail "s3tool $*: wanted $want: $(cat "$WORK/stderr")"
}

head -c 1000 /dev/urandom >"$WORK/small"
head -c $((12 << 20)) /dev/urandom >"$WORK/mid"

# Round trips, read back by boto3 as well.
ok "$P" putmem small "$WORK/small"
$ADMIN get $BP small | cmp - "$WORK/small" || fail "boto3 reads another small object"
ok "$P" getmem small 1000
cmp "$WORK/stdout" "$WORK/small" || fail "small object differs"
ok --part-size 5MiB "$P" put mid "$WORK/mid"
$ADMIN get $BP mid | cmp - "$WORK/mid" || fail "boto3 reads another multipart object"
ok "$P" get mid "$WORK/mid.back"
cmp "$WORK/mid" "$WORK/mid.back" || fail "multipart object differs"
ok "$P" uploads
[ ! -s "$WORK/stdout" ] || fail "uploads left: $(cat "$WORK/stdout")"

ok "$P" range mid $((6 << 20)) 4096
cmp "$WORK/stdout" <(tail -c +$(((6 << 20) + 1)) "$WORK/mid" | head -c 4096) || fail "range differs"
refused EBADMSG "$P" range small 990 20
refused EBADMSG "$P" range small 1000 1
refused ENOENT "$P" head nothing

# Keys that need encoding, listed three to a page.
keys=('l/a' 'l/b b' 'l/c+c' 'l/d=d&x' 'l/e%20' 'l/f/g' 'l/h~' 'l/ü' 'l/../x' 'l/z')
for k in "${keys[@]}"; do
	printf '%s' "$k" >"$WORK/key"
	ok "$P" putmem "$k" "$WORK/key"
done
ok --page-keys 3 "$P" list l/
[ "$(wc -l <"$WORK/stdout")" -eq ${#keys[@]} ] || fail "list: $(cat "$WORK/stdout")"
$ADMIN ls $BP l/ | diff - "$WORK/stdout" || fail "our listing differs from boto3's"
ok "$P" delete 'l/b b'
refused ENOENT "$P" head 'l/b b'
refused EEXIST --if-none-match "$P" putmem small "$WORK/small"
ok "$P" lock
grep -qx disabled "$WORK/stdout" || fail "lock on a plain bucket: $(cat "$WORK/stdout")"

# Object Lock.
ok "$L" lock
grep -qx enabled "$WORK/stdout" || fail "lock: $(cat "$WORK/stdout")"
until=$(($(date +%s) + 3600))
ok --lock-mode governance --retain-until "$until" "$L" putmem one "$WORK/small"
ok "$L" head one
grep -q "mode=1 until=$until" "$WORK/stdout" || fail "head: $(cat "$WORK/stdout")"
version=$(sed -n 's/.* version=\([^ ]*\) .*/\1/p' "$WORK/stdout")
[ -n "$version" ] || fail "no version id in a locked bucket"
refused EPERM "$L" delete one "$version"
grep -q "Object Lock retention" "$WORK/stderr" || fail "EPERM: $(cat "$WORK/stderr")"
ok "$L" retention one governance $((until + 60)) "$version"
$ADMIN retention $BL one --version-id "$version" | grep -q '^GOVERNANCE ' ||
	fail "retention not set"
ok "$L" head one
grep -q "until=$((until + 60))" "$WORK/stdout" || fail "retention not extended: $(cat "$WORK/stdout")"
ok --part-size 5MiB --lock-mode governance --retain-until "$until" "$L" put big "$WORK/mid"
ok "$L" head big
grep -q "mode=1 until=$until" "$WORK/stdout" || fail "multipart not locked: $(cat "$WORK/stdout")"
ok "$L" delete one
ok "$L" versions
grep -q '^one .* marker$' "$WORK/stdout" || fail "versions: $(cat "$WORK/stdout")"

# What the server says about wrong credentials, and none of them printed.
AWS_SECRET_ACCESS_KEY=wrongSecretKeyDoNotPrint123 s3 "$P" getmem small 1000
[ "$RC" -eq 1 ] && grep -q "SignatureDoesNotMatch.*check the access key and secret" "$WORK/stderr" ||
	fail "wrong secret: $(cat "$WORK/stderr")"
for secret in "$S3_SECRET_KEY" wrongSecretKeyDoNotPrint123 "$S3_ACCESS_KEY"; do
	! grep -qF "$secret" "$WORK/all" || fail "a credential was printed"
done
echo "PASS: s3 client against radosgw"
