#!/usr/bin/env bash
# A repository in a bucket of a real Ceph RADOS Gateway (format 3,
# docs/S3.md), with the real binaries: init (credentials from a 0600 file
# only), backup, incremental, list, restore byte-identical; what lands in
# the bucket, checked with an independent client (boto3); one server per
# bucket; the cache lost and rebuilt (by serve and by rebuild-cache); a
# small cache that evicts pack data and restores from the bucket; verify,
# prune and gc on the bucket; a pack deleted behind Ferry's back named by
# verify; Object Lock: retention on every object, a delete refused with the
# repository's own credentials, prune and gc keeping what is retained.
#
# Needs the cluster of tests/s3/ceph-up (CEPH_ENV names its env file; the
# ctest fixture s3.ceph_up starts it).
source "$(dirname "$0")/../integration/lib.sh"
S3DIR=$(cd "$(dirname "$0")" && pwd)
: "${CEPH_ENV:?CEPH_ENV must name the env file of tests/s3/ceph-up}"
set -a
# shellcheck disable=SC1090
source "$CEPH_ENV"
set +a
ADMIN=(python3 "$S3DIR/s3admin.py")
# boto EXPR: evaluates EXPR with s3, a boto3 client of the user "ferry".
boto() {
  python3 -c 'import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id=os.environ["S3_ACCESS_KEY"],
                  aws_secret_access_key=os.environ["S3_SECRET_KEY"])
r = eval(sys.argv[1])
if not isinstance(r, dict): print(r)' "$1"
}
# Never in Ferry's environment: the repository reads the file named at init.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
B1=ferry-repo-$RANDOM$RANDOM
B2=ferry-lock-$RANDOM$RANDOM
B3=ferry-small-$RANDOM$RANDOM
CLEANUP_CMDS+=('for b in "$B1" "$B2" "$B3"; do "${ADMIN[@]}" rb "$b" >/dev/null 2>&1; done')

make_certs
printf 'access_key_id=%s\nsecret_access_key=%s\n' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >"$T/creds"
chmod 644 "$T/creds"
"${ADMIN[@]}" mb "$B1" >/dev/null

note "init: credentials only from a file of mode 0600, never logged"
if "$REPO" init --root "$T/repo" --s3 "$S3_ENDPOINT/$B1" --path-style \
  --s3-credentials "$T/creds" >"$T/init.out" 2>&1; then
  fail "init took a credentials file of mode 0644"
fi
grep -q "chmod 600" "$T/init.out" || fail "mode refusal: $(cat "$T/init.out")"
chmod 600 "$T/creds"
if "$REPO" init --root "$T/repo" --s3 "$S3_ENDPOINT/no-such-bucket-$RANDOM" --path-style \
  --s3-credentials "$T/creds" >"$T/init.out" 2>&1; then
  fail "init took a bucket that does not exist"
fi
grep -qi "NoSuchBucket\|no such bucket\|not found" "$T/init.out" || fail "missing bucket: $(cat "$T/init.out")"
rm -rf "$T/repo"
"$REPO" init --root "$T/repo" --s3 "$S3_ENDPOINT/$B1" --path-style \
  --s3-credentials "$T/creds" >"$T/init.out" 2>&1 || fail "init: $(cat "$T/init.out")"
grep -q "plain http.*loopback" "$T/init.out" || fail "no warning for plain http: $(cat "$T/init.out")"
[[ $(head -1 "$T/repo/config") == "ferry-repository 3" ]] || fail "not format 3"
grep -q "$S3_SECRET_KEY" "$T/repo/config" && fail "the secret is in the config"
"${ADMIN[@]}" ls "$B1" | grep -q "^ferry-repository " || fail "no identity in the bucket"

note "backup, incremental, list and restore through the bucket"
start_repo
head -c $((16 * 1048576)) /dev/urandom >"$T/a.img"
truncate -s 24M "$T/a.img"
backup_json "$T/a.img"
b1=$(json "$T/last.json" 'j["backup_id"]')
# 12 of its 16 data blocks (the first 16 MiB are data) change: after a
# prune of the first backup its pack is mostly garbage.
head -c $((12 * 1048576)) /dev/urandom | dd of="$T/a.img" bs=1M seek=2 conv=notrunc status=none
cp "$T/a.img" "$T/a2.img"
sleep 1.1
backup_json "$T/a.img"
b2=$(json "$T/last.json" 'j["backup_id"]')
[[ $(json "$T/last.json" 'j["disks"][0]["blocks_sent"]') == 12 ]] || fail "the second backup sent other than the 12 changed blocks"
[[ $(backup_count) == 2 ]] || fail "list shows $(backup_count) backups, not 2"
"$FERRY" --config "$T/agent.conf" restore "$b2" --disk 0 --output "$T/r2.img" >/dev/null
same_file "$T/a2.img" "$T/r2.img"
"${ADMIN[@]}" ls "$B1" >"$T/bucket.txt"
grep -q "^backups/$b1.manifest " "$T/bucket.txt" || fail "manifest of $b1 not in the bucket"
grep -q "^backups/$b2.manifest " "$T/bucket.txt" || fail "manifest of $b2 not in the bucket"
grep -Eq "^packs/[0-9a-f]{2}/[0-9a-f]{32}\.pack " "$T/bucket.txt" || fail "no pack in the bucket"
grep -q "^lease " "$T/bucket.txt" || fail "the serving repository holds no lease"
# Each pack in the bucket is byte for byte the cache's copy.
key=$(grep -E "^packs/" "$T/bucket.txt" | awk 'NR == 1' | cut -d' ' -f1)
"${ADMIN[@]}" get "$B1" "$key" >"$T/pack.bin"
same_file "$T/pack.bin" "$T/repo/$key"

note "a second server on the same bucket is refused"
"$REPO" init --root "$T/repo2" --s3 "$S3_ENDPOINT/$B1" --path-style \
  --s3-credentials "$T/creds" >"$T/init2.out" 2>&1 || fail "init of a second cache: $(cat "$T/init2.out")"
grep -q "$(sed -n 's/^id=//p' "$T/repo/config")" "$T/repo2/config" || fail "the second cache has another repository id"
if timeout 60 "$REPO" serve --root "$T/repo2" --listen 127.0.0.1:0 --cert "$T/pki/127.0.0.1.crt" \
  --key "$T/pki/127.0.0.1.key" --ca "$T/pki/ca.crt" >"$T/serve2.out" 2>&1; then
  fail "a second server started on the same bucket"
fi
grep -q "in use by another repository cache" "$T/serve2.out" || fail "second server: $(cat "$T/serve2.out")"
stop_repo
"${ADMIN[@]}" ls "$B1" | grep -q "^lease " && fail "the stopped server kept its lease"

note "the cache lost: serve rebuilds it from the bucket"
rm -rf "$T/repo/packs" "$T/repo/index" "$T/repo/backups"
start_repo
grep -q "cache matches the bucket (.* 2 backups, 2 manifests fetched" "$T/repo.log" || fail "serve did not rebuild the cache"
[[ $(backup_count) == 2 ]] || fail "after the rebuild list shows $(backup_count) backups"
used=$(du -sk "$T/repo/packs" | cut -f1)
((used < 1024)) || fail "the rebuilt cache holds ${used} KiB: the packs were downloaded, not their trailers"
"$FERRY" --config "$T/agent.conf" restore "$b1" --disk 0 --output "$T/r1.img" >/dev/null
"$FERRY" --config "$T/agent.conf" restore "$b2" --disk 0 --output "$T/r2b.img" >/dev/null
same_file "$T/a2.img" "$T/r2b.img"
cmp -s "$T/r1.img" "$T/a2.img" && fail "the first backup restored the changed image"
if "$REPO" rebuild-cache --root "$T/repo" >"$T/rb.out" 2>&1; then fail "rebuild-cache under a running server"; fi
grep -q "stop it first" "$T/rb.out" || fail "rebuild-cache refusal: $(cat "$T/rb.out")"
stop_repo
"$REPO" rebuild-cache --root "$T/repo" >"$T/rb.out" 2>&1 || fail "rebuild-cache: $(cat "$T/rb.out")"
grep -q "rebuilt the cache of .*: 2 backups" "$T/rb.out" || fail "rebuild-cache: $(cat "$T/rb.out")"
"$REPO" verify --root "$T/repo" >"$T/v.out" 2>&1 || fail "verify: $(cat "$T/v.out")"
grep -q "2 backups.* 0 corrupt, 0 missing" "$T/v.out" || fail "verify: $(cat "$T/v.out")"

note "prune and gc on the bucket"
"$REPO" prune --root "$T/repo" --keep-last 1 >"$T/prune.out" 2>&1 || fail "prune: $(cat "$T/prune.out")"
"${ADMIN[@]}" ls "$B1" backups/ | grep -q "$b1" && fail "prune left $b1's manifest in the bucket"
packs_before=$("${ADMIN[@]}" ls "$B1" packs/ | wc -l)
"$REPO" gc --root "$T/repo" >"$T/gc.out" 2>&1 || fail "gc: $(cat "$T/gc.out")"
cat "$T/gc.out"
grep -q "repacked 1 mostly" "$T/gc.out" || fail "gc did not repack the first pack"
packs_after=$("${ADMIN[@]}" ls "$B1" packs/ | wc -l)
((packs_after <= packs_before)) || fail "gc added packs ($packs_before -> $packs_after)"
start_repo
"$FERRY" --config "$T/agent.conf" restore "$b2" --disk 0 --output "$T/r2c.img" >/dev/null
same_file "$T/a2.img" "$T/r2c.img"
stop_repo

note "gc: a pack only in the bucket and an unfinished multipart upload"
# What a server killed between a pack's upload and its commit leaves: a
# pack the cache does not know (here a copy of a real one under a new
# id), and an upload never completed.
key=$("${ADMIN[@]}" ls "$B1" packs/ | awk 'NR == 1' | cut -d' ' -f1)
"${ADMIN[@]}" get "$B1" "$key" >"$T/stray.pack"
"${ADMIN[@]}" put "$B1" packs/ee/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.pack "$T/stray.pack" >/dev/null
boto "s3.create_multipart_upload(Bucket='$B1', Key='packs/dd/dddddddddddddddddddddddddddddddd.pack')"
"$REPO" gc --root "$T/repo" >"$T/gc.out" 2>&1 || fail "gc: $(cat "$T/gc.out")"
grep -q "1 packs were in the bucket but not in the cache" "$T/gc.out" || fail "gc: $(cat "$T/gc.out")"
grep -q "aborted 1 unfinished multipart uploads" "$T/gc.out" || fail "gc: $(cat "$T/gc.out")"
"${ADMIN[@]}" ls "$B1" packs/ | grep -q eeeeeeee && fail "gc left the stray pack in the bucket"
[[ $(boto "len(s3.list_multipart_uploads(Bucket='$B1').get('Uploads', []))") == 0 ]] || fail "an upload is left"
"$REPO" verify --root "$T/repo" >"$T/v.out" 2>&1 || fail "verify after gc: $(cat "$T/v.out")"

note "a pack lost from the bucket: verify names the damaged backup"
key=$("${ADMIN[@]}" ls "$B1" packs/ | awk 'NR == 1' | cut -d' ' -f1)
"${ADMIN[@]}" delete "$B1" "$key" >/dev/null
# The cache still has its trailer; its data must come from the bucket.
rm -rf "$T/repo/packs" "$T/repo/index"
"$REPO" rebuild-cache --root "$T/repo" >/dev/null 2>&1 || true
if "$REPO" verify --root "$T/repo" >"$T/v.out" 2>&1; then fail "verify passed with a pack gone"; fi
grep -q "$b2" "$T/v.out" || fail "verify did not name $b2: $(cat "$T/v.out")"

note "a small cache: pack data is evicted and read back from the bucket"
"${ADMIN[@]}" mb "$B3" >/dev/null
rm -rf "$T/repo"
"$REPO" init --root "$T/repo" --s3 "$S3_ENDPOINT/$B3" --path-style --cache-size 64M \
  --s3-credentials "$T/creds" >/dev/null 2>&1 || fail "init with a small cache"
start_repo
head -c $((120 * 1048576)) /dev/urandom >"$T/big.img"
backup_json "$T/big.img"
bb=$(json "$T/last.json" 'j["backup_id"]')
used=$(du -sk "$T/repo/packs" | cut -f1)
((used <= 64 * 1024)) || fail "the cache holds ${used} KiB of packs, above its 64 MiB"
"$FERRY" --config "$T/agent.conf" restore "$bb" --disk 0 --output "$T/rbig.img" >/dev/null
same_file "$T/big.img" "$T/rbig.img"
stop_repo
rm -f "$T/big.img" "$T/rbig.img"
# A backup removed from the bucket behind the server's back: the next
# start drops it from the cache (the bucket is the truth).
"${ADMIN[@]}" delete "$B3" "backups/$bb.manifest" >/dev/null
start_repo
grep -q "1 removed)" "$T/repo.log" || fail "serve kept a manifest the bucket lost"
[[ $(backup_count) == 0 ]] || fail "a backup gone from the bucket is still listed"
stop_repo

note "Object Lock: every object retained, a delete refused, prune and gc keep them"
"${ADMIN[@]}" mb "$B1-nolock" >/dev/null
CLEANUP_CMDS+=('"${ADMIN[@]}" rb "$B1-nolock" >/dev/null 2>&1')
if "$REPO" init --root "$T/lrepo" --s3 "$S3_ENDPOINT/$B1-nolock" --path-style --object-lock-days 1 \
  --s3-credentials "$T/creds" >"$T/init.out" 2>&1; then
  fail "--object-lock-days on a bucket without Object Lock"
fi
grep -q "Object Lock" "$T/init.out" || fail "lock refusal: $(cat "$T/init.out")"
rm -rf "$T/lrepo"
"${ADMIN[@]}" mb "$B2" --object-lock >/dev/null
rm -rf "$T/repo"
"$REPO" init --root "$T/repo" --s3 "$S3_ENDPOINT/$B2" --path-style --object-lock-days 2 \
  --object-lock-mode governance --s3-credentials "$T/creds" >/dev/null 2>&1 || fail "init with Object Lock"
start_repo
head -c $((3 * 1048576)) /dev/urandom >"$T/l.img"
backup_json "$T/l.img"
l1=$(json "$T/last.json" 'j["backup_id"]')
sleep 1.1
head -c $((3 * 1048576)) /dev/urandom >"$T/l.img"
backup_json "$T/l.img"
stop_repo
key=$("${ADMIN[@]}" ls "$B2" packs/ | awk 'NR == 1' | cut -d' ' -f1)
read -r mode until <<<"$("${ADMIN[@]}" retention "$B2" "$key")"
[[ $mode == GOVERNANCE ]] || fail "pack $key has retention '$mode $until'"
"${ADMIN[@]}" retention "$B2" "backups/$l1.manifest" | grep -q "^GOVERNANCE " || fail "manifest not retained"
version=$("${ADMIN[@]}" versions "$B2" "$key" | awk 'NR==1{print $2}')
if out=$("${ADMIN[@]}" delete "$B2" "$key" --version-id "$version" 2>&1); then
  fail "the repository's own credentials deleted a retained pack"
fi
grep -q "AccessDenied" <<<"$out" || fail "retained delete: $out"
"$REPO" prune --root "$T/repo" --keep-last 1 >"$T/prune.out" 2>&1 || fail "prune: $(cat "$T/prune.out")"
grep -q "kept $l1: .*Object Lock retention until" "$T/prune.out" || fail "prune: $(cat "$T/prune.out")"
[[ $("${ADMIN[@]}" ls "$B2" backups/ | wc -l) == 2 ]] || fail "prune removed a retained manifest"
# Retention running out on a pack kept backups use: gc extends it (to two
# days from now). Shortened here with the governance bypass, standing in
# for the days that would pass.
boto "s3.put_object_retention(Bucket='$B2', Key='$key', VersionId='$version', BypassGovernanceRetention=True, Retention={'Mode': 'GOVERNANCE', 'RetainUntilDate': __import__('datetime').datetime.utcnow() + __import__('datetime').timedelta(hours=3)})"
"$REPO" gc --root "$T/repo" >"$T/gc.out" 2>&1 || fail "gc: $(cat "$T/gc.out")"
grep -q "extended the Object Lock retention of [1-9]" "$T/gc.out" || fail "gc did not extend retention: $(cat "$T/gc.out")"
read -r mode until <<<"$("${ADMIN[@]}" retention "$B2" "$key")"
left=$(python3 -c 'import sys, datetime as d; u = d.datetime.fromisoformat(sys.argv[1].replace("Z", "+00:00")); print(int((u - d.datetime.now(d.timezone.utc)).total_seconds()))' "$until")
((left > 40 * 3600)) || fail "retention of $key not extended: $mode $until"
"$REPO" verify --root "$T/repo" >"$T/v.out" 2>&1 || fail "verify after gc: $(cat "$T/v.out")"
# A retained pack no backup references (what a backup killed before its
# commit leaves under Object Lock): gc sees it, keeps it and says so.
"${ADMIN[@]}" get "$B2" "$key" >"$T/stray.pack"
boto "s3.put_object(Bucket='$B2', Key='packs/ee/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.pack', Body=open('$T/stray.pack', 'rb').read(), ObjectLockMode='GOVERNANCE', ObjectLockRetainUntilDate=__import__('datetime').datetime.utcnow() + __import__('datetime').timedelta(hours=1))"
"$REPO" gc --root "$T/repo" >"$T/gc.out" 2>&1 || fail "gc: $(cat "$T/gc.out")"
grep -q "1 packs with unreferenced blocks kept: Object Lock retention" "$T/gc.out" || fail "gc: $(cat "$T/gc.out")"
"${ADMIN[@]}" ls "$B2" packs/ | grep -q eeeeeeee || fail "gc deleted a retained pack"

note "the secret key appears in no log and no output"
if grep -rl -- "$S3_SECRET_KEY" "$T" --exclude=creds 2>/dev/null | grep -v "/creds$"; then
  fail "the secret key was written to the files above"
fi
note "ok"
