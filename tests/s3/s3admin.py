#!/usr/bin/env python3
"""The S3 tests' independent client (boto3 from Debian): sets up buckets and
checks from outside what Ferry wrote.

  s3admin.py [--endpoint URL] [--access-key K] [--secret-key S] [--other] CMD ...
    buckets                          list the user's buckets
    mb BUCKET [--object-lock] [--versioning]
                                     create a bucket (Object Lock enables
                                     versioning, as S3 requires)
    rb BUCKET                        empty it (every version and delete marker,
                                     bypassing GOVERNANCE), then delete it
    ls BUCKET [PREFIX]               KEY SIZE a line
    put BUCKET KEY FILE|-            upload (with Content-MD5)
    get BUCKET KEY [--version-id V]  the object's bytes on stdout
    delete BUCKET KEY [--version-id V] [--bypass-governance]
                                     on failure prints the S3 error code
                                     (e.g. AccessDenied) and exits 1
    retention BUCKET KEY [--version-id V]
                                     "MODE RETAIN-UNTIL" (ISO 8601) or "none"
    versions BUCKET [PREFIX]         KEY VERSION-ID SIZE|DELETE-MARKER latest|-

Endpoint and keys come from the options, else from S3_ENDPOINT, S3_ACCESS_KEY,
S3_SECRET_KEY (with --other: S3_OTHER_ACCESS_KEY, S3_OTHER_SECRET_KEY), as
written by tests/s3/ceph-up into DIR/env. Exit status: 0 ok, 1 an S3 error
(its code printed on stderr, and on stdout for delete), 2 usage.
"""
import argparse
import base64
import hashlib
import os
import sys

import boto3
import botocore.config
import botocore.exceptions


def client(a):
    endpoint = a.endpoint or os.environ.get("S3_ENDPOINT")
    if a.other:
        ak = a.access_key or os.environ.get("S3_OTHER_ACCESS_KEY")
        sk = a.secret_key or os.environ.get("S3_OTHER_SECRET_KEY")
    else:
        ak = a.access_key or os.environ.get("S3_ACCESS_KEY")
        sk = a.secret_key or os.environ.get("S3_SECRET_KEY")
    if not (endpoint and ak and sk):
        sys.exit("s3admin: need --endpoint/--access-key/--secret-key or S3_ENDPOINT/S3_ACCESS_KEY/S3_SECRET_KEY")
    cfg = botocore.config.Config(
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ak,
        aws_secret_access_key=sk,
        region_name=os.environ.get("S3_REGION", "us-east-1"),
        config=cfg,
    )


def all_versions(s3, bucket, prefix=""):
    """Every (key, version_id, size or None for a delete marker, is_latest)."""
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for v in page.get("Versions", []):
            out.append((v["Key"], v["VersionId"], v["Size"], v["IsLatest"]))
        for m in page.get("DeleteMarkers", []):
            out.append((m["Key"], m["VersionId"], None, m["IsLatest"]))
    return out


def cmd_buckets(s3, a):
    for b in s3.list_buckets().get("Buckets", []):
        print(b["Name"])


def cmd_mb(s3, a):
    kw = {"Bucket": a.bucket}
    if a.object_lock:
        kw["ObjectLockEnabledForBucket"] = True
    s3.create_bucket(**kw)
    if a.versioning and not a.object_lock:
        s3.put_bucket_versioning(Bucket=a.bucket, VersioningConfiguration={"Status": "Enabled"})


def cmd_rb(s3, a):
    failed = []
    # versions (also in unversioned buckets, where the version id is "null")
    for key, vid, _size, _latest in all_versions(s3, a.bucket):
        kw = {"Bucket": a.bucket, "Key": key}
        if vid and vid != "null":
            kw["VersionId"] = vid
        try:
            s3.delete_object(BypassGovernanceRetention=True, **kw)
        except botocore.exceptions.ClientError as e:
            failed.append("%s %s: %s" % (key, vid, e.response["Error"]["Code"]))
    # objects of an unversioned bucket not listed as versions
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=a.bucket):
        for o in page.get("Contents", []):
            try:
                s3.delete_object(Bucket=a.bucket, Key=o["Key"])
            except botocore.exceptions.ClientError as e:
                failed.append("%s: %s" % (o["Key"], e.response["Error"]["Code"]))
    # multipart uploads left behind
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=a.bucket):
        for u in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=a.bucket, Key=u["Key"], UploadId=u["UploadId"])
    if failed:
        for f in failed:
            print("s3admin rb: cannot delete " + f, file=sys.stderr)
        print("s3admin rb: %s not removed (objects under COMPLIANCE or legal hold?)" % a.bucket, file=sys.stderr)
        return 1
    s3.delete_bucket(Bucket=a.bucket)


def cmd_ls(s3, a):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=a.bucket, Prefix=a.prefix or ""):
        for o in page.get("Contents", []):
            print(o["Key"], o["Size"])


def cmd_put(s3, a):
    data = sys.stdin.buffer.read() if a.file == "-" else open(a.file, "rb").read()
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    r = s3.put_object(Bucket=a.bucket, Key=a.key, Body=data, ContentMD5=md5)
    if r.get("VersionId"):
        print(r["VersionId"])


def cmd_get(s3, a):
    kw = {"Bucket": a.bucket, "Key": a.key}
    if a.version_id:
        kw["VersionId"] = a.version_id
    body = s3.get_object(**kw)["Body"]
    for chunk in iter(lambda: body.read(1 << 20), b""):
        sys.stdout.buffer.write(chunk)


def cmd_delete(s3, a):
    kw = {"Bucket": a.bucket, "Key": a.key}
    if a.version_id:
        kw["VersionId"] = a.version_id
    if a.bypass_governance:
        kw["BypassGovernanceRetention"] = True
    try:
        r = s3.delete_object(**kw)
    except botocore.exceptions.ClientError as e:
        print(e.response["Error"]["Code"])
        return 1
    if r.get("DeleteMarker"):
        print("delete-marker " + r.get("VersionId", ""))


def cmd_retention(s3, a):
    kw = {"Bucket": a.bucket, "Key": a.key}
    if a.version_id:
        kw["VersionId"] = a.version_id
    try:
        r = s3.get_object_retention(**kw)["Retention"]
    except botocore.exceptions.ClientError as e:
        err = e.response["Error"]
        if err["Code"] in ("NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError") or (
            err["Code"] == "InvalidRequest" and "object lock" in err.get("Message", "")
        ):
            print("none")
            return 0
        raise
    until = r.get("RetainUntilDate")
    print(r.get("Mode", "none"), until.isoformat() if until else "-")


def cmd_versions(s3, a):
    for key, vid, size, latest in sorted(all_versions(s3, a.bucket, a.prefix or "")):
        print(key, vid, "DELETE-MARKER" if size is None else size, "latest" if latest else "-")


def main():
    p = argparse.ArgumentParser(prog="s3admin.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint")
    p.add_argument("--access-key")
    p.add_argument("--secret-key")
    p.add_argument("--other", action="store_true", help="act as the second user (S3_OTHER_*)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("buckets")
    q = sub.add_parser("mb")
    q.add_argument("bucket")
    q.add_argument("--object-lock", action="store_true")
    q.add_argument("--versioning", action="store_true")
    q = sub.add_parser("rb")
    q.add_argument("bucket")
    q = sub.add_parser("ls")
    q.add_argument("bucket")
    q.add_argument("prefix", nargs="?")
    q = sub.add_parser("put")
    q.add_argument("bucket")
    q.add_argument("key")
    q.add_argument("file")
    for name in ("get", "delete", "retention"):
        q = sub.add_parser(name)
        q.add_argument("bucket")
        q.add_argument("key")
        q.add_argument("--version-id")
        if name == "delete":
            q.add_argument("--bypass-governance", action="store_true")
    q = sub.add_parser("versions")
    q.add_argument("bucket")
    q.add_argument("prefix", nargs="?")
    a = p.parse_args()
    s3 = client(a)
    try:
        rc = globals()["cmd_" + a.cmd](s3, a)
        sys.stdout.flush()
    except botocore.exceptions.ClientError as e:
        err = e.response.get("Error", {})
        print("s3admin %s: %s: %s" % (a.cmd, err.get("Code"), err.get("Message", "")), file=sys.stderr)
        return 1
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError) as e:
        print("s3admin %s: %s" % (a.cmd, e), file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader had what it wanted (`| grep -q`, `| head`): not an
        # error, or a test's `set -o pipefail` would take it for one.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
