#!/usr/bin/env python3
"""s3fake: a FAKE S3 server for Ferry's tests. Not an S3 implementation.

It keeps one or more buckets in memory, listens on 127.0.0.1 only, and
answers the requests Ferry's S3 client (s3/) sends: PUT, GET (with Range),
HEAD and DELETE of objects, ListObjectsV2, ListObjectVersions (one "null"
version per key), multipart uploads (create, part, complete, abort, list),
PutObjectRetention and GetObjectLockConfiguration.

Every request's AWS Signature Version 4 is checked independently of the
client's signer (canonical request, string to sign, signing key, payload
hash against the body, Content-MD5), so a signer bug fails the test
instead of passing against a lenient server.

Faults are scripted through a control endpoint that no S3 bucket name can
reach (bucket names cannot start with "_"):

    POST /_fake/fault?kind=slowdown&count=N   next N requests: 503 SlowDown
    POST /_fake/fault?kind=reset&count=N      next N requests: the
                                              connection is reset mid-body
    POST /_fake/fault?kind=skew&count=N       next N requests: 403
                                              RequestTimeTooSkewed
    GET  /_fake/stats                         JSON: requests seen, faults
                                              given, signatures checked

or with --slowdown/--reset/--skew N at start. Standard library only.

Usage: s3fake.py --port-file FILE --bucket NAME [--bucket NAME...]
                 [--access-key K --secret-key S] [--object-lock]
(credentials default to AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_BODY = 256 << 20
SKEW_LIMIT = 15 * 60


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.access_key = args.access_key
        self.secret_key = args.secret_key
        self.region = args.region
        self.object_lock = args.object_lock
        self.buckets = {b: {} for b in args.bucket}
        self.uploads = {}  # upload id -> dict(bucket, key, parts, headers)
        self.faults = {"slowdown": args.slowdown, "reset": args.reset,
                       "skew": args.skew}
        self.stats = {"requests": 0, "signatures_ok": 0,
                      "signatures_bad": 0, "faults": 0,
                      "slowdown": 0, "reset": 0, "skew": 0}

    def take_fault(self):
        with self.lock:
            for kind in ("slowdown", "reset", "skew"):
                if self.faults[kind] > 0:
                    self.faults[kind] -= 1
                    self.stats["faults"] += 1
                    self.stats[kind] += 1
                    return kind
        return None


def quote(s):
    return urllib.parse.quote(s, safe="-_.~")


def sha256_hex(b):
    return hashlib.sha256(b).hexdigest()


def iso8601(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z")


def parse_iso8601(s):
    s = s.rstrip("Z")
    if "." in s:
        s = s.split(".")[0]
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def xml_text(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;")
            .replace(">", "&gt;"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "s3fake"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("s3fake: " + (fmt % args) + "\n")

    # ---- plumbing ----------------------------------------------------------

    def send(self, status, body=b"", headers=None, head_only=False):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head_only:
            self.wfile.write(body)

    def error(self, status, code, message, extra=""):
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
                "<Message>%s</Message>%s<RequestId>%s</RequestId></Error>" %
                (code, xml_text(message), extra, uuid.uuid4().hex)).encode()
        self.send(status, body, {"Content-Type": "application/xml"},
                  head_only=self.command == "HEAD")

    def xml(self, text, headers=None):
        h = {"Content-Type": "application/xml"}
        h.update(headers or {})
        self.send(200, ('<?xml version="1.0" encoding="UTF-8"?>\n' + text)
                  .encode(), h)

    def reset_connection(self):
        """Close with RST, as a crashed or cut-off server does."""
        try:
            self.wfile.flush()
        except OSError:
            pass
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                   struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def read_body(self):
        if self.headers.get("Transfer-Encoding"):
            raise ValueError("chunked bodies are not supported by the fake")
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise ValueError("body too large for the fake")
        return self.rfile.read(n) if n else b""

    # ---- SigV4, checked independently of the client ----------------------

    def check_signature(self, path, query, body):
        st = self.server.state
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return ("AccessDenied", "no SigV4 Authorization header")
        fields = {}
        for part in auth[len("AWS4-HMAC-SHA256 "):].split(","):
            k, _, v = part.strip().partition("=")
            fields[k] = v
        try:
            cred = fields["Credential"].split("/")
            signed = fields["SignedHeaders"].split(";")
            signature = fields["Signature"]
        except KeyError:
            return ("AuthorizationHeaderMalformed", "incomplete header")
        if len(cred) != 5 or cred[4] != "aws4_request" or cred[3] != "s3":
            return ("AuthorizationHeaderMalformed", "bad credential scope")
        if cred[0] != st.access_key:
            return ("InvalidAccessKeyId",
                    "The AWS Access Key Id you provided does not exist in our records.")
        if cred[2] != st.region:
            return ("AuthorizationHeaderMalformed", "wrong region " + cred[2])
        for need in ("host", "x-amz-date", "x-amz-content-sha256"):
            if need not in signed:
                return ("AccessDenied", need + " is not signed")
        if signed != sorted(signed):
            return ("SignatureDoesNotMatch", "SignedHeaders not sorted")
        amz_date = self.headers.get("x-amz-date", "")
        try:
            t = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            return ("AccessDenied", "bad x-amz-date")
        if abs(t - time.time()) > SKEW_LIMIT:
            return ("RequestTimeTooSkewed",
                    "The difference between the request time and the current time is too large.")
        if cred[1] != amz_date[:8]:
            return ("SignatureDoesNotMatch", "scope date differs")
        payload = self.headers.get("x-amz-content-sha256", "")
        if payload != "UNSIGNED-PAYLOAD" and payload != sha256_hex(body):
            return ("XAmzContentSHA256Mismatch",
                    "The provided 'x-amz-content-sha256' header does not match what was computed.")
        md5 = self.headers.get("Content-MD5")
        if md5 is not None and md5 != base64.b64encode(
                hashlib.md5(body).digest()).decode():
            return ("BadDigest", "The Content-MD5 you specified did not match what we received.")

        params = []
        if query:
            for item in query.split("&"):
                if not item:
                    continue
                k, _, v = item.partition("=")
                params.append((quote(urllib.parse.unquote(k)),
                               quote(urllib.parse.unquote(v))))
        params.sort()
        canon_query = "&".join("%s=%s" % kv for kv in params)
        lines = []
        for name in signed:
            values = self.headers.get_all(name)
            if values is None:
                return ("AccessDenied", "signed header %s is missing" % name)
            v = ",".join(" ".join(x.split()) for x in values)
            lines.append("%s:%s\n" % (name, v))
        canonical = "\n".join([self.command, path, canon_query,
                               "".join(lines), ";".join(signed), payload])
        scope = "/".join(cred[1:])
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             sha256_hex(canonical.encode())])
        key = ("AWS4" + st.secret_key).encode()
        for part in (cred[1], cred[2], cred[3], "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        want = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, signature):
            # Like AWS, the answer shows what was signed (and the key id):
            # a client must not copy any of it into its own messages.
            return ("SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided.",
                    "<AWSAccessKeyId>%s</AWSAccessKeyId><StringToSign>%s</StringToSign>"
                    "<CanonicalRequest>%s</CanonicalRequest>" %
                    (xml_text(st.access_key), xml_text(to_sign),
                     xml_text(canonical)))
        return None

    # ---- dispatch ----------------------------------------------------------

    def handle_any(self):
        raw_path, _, query = self.path.partition("?")
        if raw_path.startswith("/_fake/"):
            return self.control(raw_path, query)
        st = self.server.state
        with st.lock:
            st.stats["requests"] += 1
        try:
            body = b"" if self.command in ("GET", "HEAD", "DELETE") and \
                not self.headers.get("Content-Length") else self.read_body()
        except ValueError as e:
            return self.error(400, "InvalidRequest", str(e))
        fault = st.take_fault()
        if fault == "reset":
            if self.command == "GET":
                self.send_response(200)
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                self.wfile.write(b"x" * 1000)
            return self.reset_connection()
        if fault == "slowdown":
            return self.error(503, "SlowDown", "Please reduce your request rate.")
        if fault == "skew":
            return self.error(403, "RequestTimeTooSkewed",
                              "The difference between the request time and the current time is too large.")
        bad = self.check_signature(raw_path, query, body)
        with st.lock:
            st.stats["signatures_bad" if bad else "signatures_ok"] += 1
        if bad:
            status = 400 if bad[0] in ("AuthorizationHeaderMalformed",
                                       "XAmzContentSHA256Mismatch",
                                       "BadDigest", "InvalidRequest") else 403
            return self.error(status, bad[0], bad[1],
                              bad[2] if len(bad) > 2 else "")

        # Path style (/bucket/key) or virtual-host style (bucket.host).
        host = self.headers.get("Host", "").split(":")[0]
        path = urllib.parse.unquote(raw_path)
        vhost = host.split(".")[0] if "." in host else None
        if vhost in st.buckets:
            bucket, key = vhost, path[1:]
        else:
            bucket, _, key = path[1:].partition("/")
        if bucket not in st.buckets:
            return self.error(404, "NoSuchBucket", "The specified bucket does not exist")
        q = {}
        for item in query.split("&") if query else []:
            k, _, v = item.partition("=")
            q[urllib.parse.unquote(k)] = urllib.parse.unquote(v)
        objects = st.buckets[bucket]
        m = self.command
        if not key:
            if m == "GET" and q.get("list-type") == "2":
                return self.list_v2(objects, q)
            if m == "GET" and "versions" in q:
                return self.list_versions(objects, q)
            if m == "GET" and "uploads" in q:
                return self.list_uploads(bucket, q)
            if m == "GET" and "object-lock" in q:
                if not st.object_lock:
                    return self.error(404, "ObjectLockConfigurationNotFoundError",
                                      "Object Lock configuration does not exist for this bucket")
                return self.xml('<ObjectLockConfiguration xmlns="%s"><ObjectLockEnabled>'
                                "Enabled</ObjectLockEnabled></ObjectLockConfiguration>" % NS)
            return self.error(400, "InvalidRequest", "the fake does not do that")
        if m == "PUT" and "partNumber" in q:
            return self.put_part(q, body)
        if m == "PUT" and "retention" in q:
            return self.put_retention(objects, key, body)
        if m == "PUT":
            return self.put_object(objects, key, body)
        if m == "POST" and "uploads" in q:
            return self.create_upload(bucket, key)
        if m == "POST" and "uploadId" in q:
            return self.complete_upload(objects, key, q["uploadId"], body)
        if m == "DELETE" and "uploadId" in q:
            with st.lock:
                if st.uploads.pop(q["uploadId"], None) is None:
                    return self.error(404, "NoSuchUpload", "The specified upload does not exist.")
            return self.send(204)
        if m == "DELETE":
            return self.delete_object(objects, key, q.get("versionId"))
        if m in ("GET", "HEAD"):
            return self.get_object(objects, key)
        return self.error(405, "MethodNotAllowed", "not in the fake")

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    def control(self, path, query):
        st = self.server.state
        q = dict(urllib.parse.parse_qsl(query))
        if path == "/_fake/fault" and self.command == "POST":
            self.read_body()
            kind, count = q.get("kind"), int(q.get("count", "1"))
            if kind not in st.faults:
                return self.send(400, b"unknown fault kind\n")
            with st.lock:
                st.faults[kind] = count
            return self.send(200, b"ok\n")
        if path == "/_fake/stats":
            with st.lock:
                data = json.dumps(st.stats).encode() + b"\n"
            return self.send(200, data, {"Content-Type": "application/json"})
        return self.send(404, b"no such control\n")

    # ---- objects -----------------------------------------------------------

    def put_object(self, objects, key, body):
        st = self.server.state
        with st.lock:
            if self.headers.get("If-None-Match") == "*" and key in objects:
                return self.error(412, "PreconditionFailed",
                                  "At least one of the pre-conditions you specified did not hold")
            objects[key] = self.new_object(body, self.headers)
            etag = objects[key]["etag"]
        self.send(200, b"", {"ETag": etag})

    @staticmethod
    def new_object(data, headers):
        mode = headers.get("x-amz-object-lock-mode")
        until = headers.get("x-amz-object-lock-retain-until-date")
        return {"data": data, "etag": '"%s"' % hashlib.md5(data).hexdigest(),
                "mode": mode, "until": parse_iso8601(until) if until else None}

    def get_object(self, objects, key):
        st = self.server.state
        with st.lock:
            obj = objects.get(key)
        if obj is None:
            return self.error(404, "NoSuchKey", "The specified key does not exist.")
        data = obj["data"]
        headers = {"ETag": obj["etag"], "x-amz-version-id": "null",
                   "Content-Type": "application/octet-stream"}
        if obj["mode"]:
            headers["x-amz-object-lock-mode"] = obj["mode"]
            headers["x-amz-object-lock-retain-until-date"] = iso8601(obj["until"])
        rng = self.headers.get("Range")
        if rng and self.command == "GET":
            a, _, b = rng[len("bytes="):].partition("-")
            a = int(a)
            b = int(b) if b else len(data) - 1
            if a >= len(data):
                return self.error(416, "InvalidRange", "The requested range is not satisfiable")
            b = min(b, len(data) - 1)
            headers["Content-Range"] = "bytes %d-%d/%d" % (a, b, len(data))
            return self.send(206, data[a:b + 1], headers)
        if self.command == "HEAD":
            headers["Content-Length"] = str(len(data))
            return self.send(200, b"", headers, head_only=True)
        return self.send(200, data, headers)

    def delete_object(self, objects, key, version):
        st = self.server.state
        with st.lock:
            obj = objects.get(key)
            if obj and version and obj["until"] and obj["until"] > time.time():
                return self.error(403, "AccessDenied", "Access Denied because object protected by object lock.")
            objects.pop(key, None)
        self.send(204)

    def put_retention(self, objects, key, body):
        st = self.server.state
        root = ET.fromstring(body)
        mode = root.find("{%s}Mode" % NS).text
        until = parse_iso8601(root.find("{%s}RetainUntilDate" % NS).text)
        with st.lock:
            obj = objects.get(key)
            if obj is None:
                return self.error(404, "NoSuchKey", "The specified key does not exist.")
            if obj["until"] and until < obj["until"] and obj["mode"] == "COMPLIANCE":
                return self.error(403, "AccessDenied", "cannot shorten COMPLIANCE retention")
            obj["mode"], obj["until"] = mode, until
        self.send(200)

    # ---- listings ----------------------------------------------------------

    def list_v2(self, objects, q):
        st = self.server.state
        prefix = q.get("prefix", "")
        max_keys = int(q.get("max-keys", "1000"))
        after = ""
        if q.get("continuation-token"):
            after = base64.b64decode(q["continuation-token"]).decode()
        with st.lock:
            keys = sorted(k for k in objects if k.startswith(prefix) and k > after)
            page = [(k, len(objects[k]["data"])) for k in keys[:max_keys]]
        out = ['<ListBucketResult xmlns="%s"><Prefix>%s</Prefix><KeyCount>%d</KeyCount>'
               "<MaxKeys>%d</MaxKeys>" % (NS, xml_text(prefix), len(page), max_keys)]
        for k, size in page:
            out.append("<Contents><Key>%s</Key><Size>%d</Size>"
                       "<StorageClass>STANDARD</StorageClass></Contents>" % (xml_text(k), size))
        if len(keys) > max_keys:
            # Base64 with '/', '+' and '=' in it: the client must encode it.
            token = base64.b64encode(("%s" % page[-1][0]).encode()).decode()
            out.append("<IsTruncated>true</IsTruncated><NextContinuationToken>%s"
                       "</NextContinuationToken>" % token)
        else:
            out.append("<IsTruncated>false</IsTruncated>")
        out.append("</ListBucketResult>")
        self.xml("".join(out))

    def list_versions(self, objects, q):
        st = self.server.state
        prefix = q.get("prefix", "")
        max_keys = int(q.get("max-keys", "1000"))
        after = q.get("key-marker", "")
        with st.lock:
            keys = sorted(k for k in objects if k.startswith(prefix) and k > after)
            page = [(k, len(objects[k]["data"])) for k in keys[:max_keys]]
        out = ['<ListVersionsResult xmlns="%s">' % NS]
        for k, size in page:
            out.append("<Version><Key>%s</Key><VersionId>null</VersionId><IsLatest>true"
                       "</IsLatest><Size>%d</Size></Version>" % (xml_text(k), size))
        if len(keys) > max_keys:
            out.append("<IsTruncated>true</IsTruncated><NextKeyMarker>%s</NextKeyMarker>"
                       % xml_text(page[-1][0]))
        else:
            out.append("<IsTruncated>false</IsTruncated>")
        out.append("</ListVersionsResult>")
        self.xml("".join(out))

    # ---- multipart ---------------------------------------------------------

    def create_upload(self, bucket, key):
        st = self.server.state
        upload_id = "2~" + uuid.uuid4().hex
        with st.lock:
            st.uploads[upload_id] = {"bucket": bucket, "key": key, "parts": {},
                                     "headers": dict(self.headers),
                                     "initiated": time.time()}
        self.xml('<InitiateMultipartUploadResult xmlns="%s"><Bucket>%s</Bucket>'
                 "<Key>%s</Key><UploadId>%s</UploadId></InitiateMultipartUploadResult>"
                 % (NS, bucket, xml_text(key), upload_id))

    def put_part(self, q, body):
        st = self.server.state
        with st.lock:
            up = st.uploads.get(q.get("uploadId"))
            if up is None:
                return self.error(404, "NoSuchUpload", "The specified upload does not exist.")
            etag = '"%s"' % hashlib.md5(body).hexdigest()
            up["parts"][int(q["partNumber"])] = (etag, body)
        self.send(200, b"", {"ETag": etag})

    def complete_upload(self, objects, key, upload_id, body):
        st = self.server.state
        root = ET.fromstring(body)
        wanted = [(int(p.find("{%s}PartNumber" % NS).text), p.find("{%s}ETag" % NS).text)
                  for p in root.findall("{%s}Part" % NS)]
        with st.lock:
            up = st.uploads.get(upload_id)
            if up is None:
                return self.error(404, "NoSuchUpload", "The specified upload does not exist.")
            data = []
            for n, etag in wanted:
                have = up["parts"].get(n)
                if have is None or have[0] != etag:
                    return self.error(400, "InvalidPart", "part %d is missing or its ETag differs" % n)
                data.append(have[1])
            if [n for n, _ in wanted] != sorted(n for n, _ in wanted):
                return self.error(400, "InvalidPartOrder", "parts out of order")
            if self.headers.get("If-None-Match") == "*" and key in objects:
                return self.error(412, "PreconditionFailed", "the object exists")
            obj = self.new_object(b"".join(data), {
                k.lower(): v for k, v in up["headers"].items()})
            obj["etag"] = '"%s-%d"' % (hashlib.md5(b"".join(
                bytes.fromhex(e.strip('"')) for _, e in wanted)).hexdigest(), len(wanted))
            objects[key] = obj
            del st.uploads[upload_id]
        self.xml('<CompleteMultipartUploadResult xmlns="%s"><Key>%s</Key><ETag>%s</ETag>'
                 "</CompleteMultipartUploadResult>" % (NS, xml_text(key), xml_text(obj["etag"])))

    def list_uploads(self, bucket, q):
        st = self.server.state
        prefix = q.get("prefix", "")
        with st.lock:
            ups = sorted((u["key"], i, u["initiated"]) for i, u in st.uploads.items()
                         if u["bucket"] == bucket and u["key"].startswith(prefix))
        out = ['<ListMultipartUploadsResult xmlns="%s"><IsTruncated>false</IsTruncated>' % NS]
        for k, i, t in ups:
            out.append("<Upload><Key>%s</Key><UploadId>%s</UploadId><Initiated>%s"
                       "</Initiated></Upload>" % (xml_text(k), i, iso8601(t)))
        out.append("</ListMultipartUploadsResult>")
        self.xml("".join(out))


def main():
    ap = argparse.ArgumentParser(description="A FAKE S3 server for tests.")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--bucket", action="append", required=True)
    ap.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID"))
    ap.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY"))
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--object-lock", action="store_true")
    ap.add_argument("--slowdown", type=int, default=0)
    ap.add_argument("--reset", type=int, default=0)
    ap.add_argument("--skew", type=int, default=0)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if not args.access_key or not args.secret_key:
        ap.error("credentials: --access-key/--secret-key or AWS_* variables")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.state = State(args)
    server.verbose = args.verbose
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % server.server_address[1])
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
