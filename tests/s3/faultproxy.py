#!/usr/bin/env python3
"""faultproxy.py: an HTTP/1.1 proxy between an S3 client and radosgw on
loopback that injects faults into chosen requests (python3 stdlib only).

  faultproxy.py --upstream http://127.0.0.1:RGWPORT [--port 0] [--port-file F]
                [--control-port 0] [--control-port-file F] [--rules FILE]
                [--log FILE]

Requests are forwarded byte for byte (the Host header and everything else
unchanged, so SigV4 signatures stay valid), one upstream connection per
client connection, with keep-alive, Content-Length and chunked bodies in
both directions, and Expect: 100-continue passed through to radosgw.

A rule is a JSON object:
  {"match": {"method": "PUT", "path_re": "^/bucket/packs/",
             "query_re": "uploadId=", "headers": {"x-amz-foo": "re"}},
   "action": "503", "count": 2, "skip": 0, "delay_ms": 2000,
   "after_bytes": 65536}
Every match field is optional; path_re is searched in the path, query_re in
the query string, without their percent-decoding. Of the requests a rule
matches, the first `skip` pass and the next `count` (default 1; -1: every
one) get the action; then the rule expires. The first live rule that
matches applies. Actions:
  503             answer 503 SlowDown (S3 XML error body)
  500             answer 500 InternalError
  reset           close the client's connection with a TCP RST before
                  anything is forwarded (SO_LINGER 0)
  reset_mid_body  forward the headers and `after_bytes` of the request body
                  (default: half of it) to radosgw, then reset both
                  connections: an upload cut off in the middle
  reset_mid_response
                  forward the request, relay the response headers and
                  `after_bytes` of its body (default: half), then reset the
                  client's connection: a download cut off in the middle
  delay           wait delay_ms, then forward
  drop            accept the request and never answer: read and discard
                  until the client closes (or delay_ms, default 10 min)

Rules come from --rules FILE (a JSON list, or one rule; read again when the
file changes, which replaces the rule set) and from the control port:
  POST   /rules   add a rule or a list of rules
  PUT    /rules   replace the rule set
  DELETE /rules   remove every rule
  GET    /rules   the rules and how many faults each has left
  GET    /log     the request log so far
Every request is logged to --log (default stderr), one line each:
  TIME CONN METHOD TARGET ACTION STATUS
ACTION is "forward" or the fault, with "-aborted" appended when the
exchange broke off otherwise (radosgw killed or refusing connections, the
client gone; the client's connection is then reset); STATUS the status the
client got ("-" when it got none). A test asserts on these lines.
"""
import argparse
import json
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_HEAD = 256 * 1024
IO_TIMEOUT = 600


class Closed(Exception):
    """The peer closed the connection or sent something not HTTP."""


def reset(sock):
    """Close with a TCP RST (SO_LINGER with a zero timeout)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Conn:
    """A socket with a read buffer: HTTP heads, exact lengths, chunks."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise Closed("closed")
        self.buf += data

    def read_head(self, allow_eof=False):
        """Bytes up to and including the blank line; None at a clean EOF."""
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head, self.buf = self.buf[: i + 4], self.buf[i + 4:]
                return head
            if len(self.buf) > MAX_HEAD:
                raise Closed("head too large")
            try:
                self.fill()
            except Closed:
                if allow_eof and not self.buf:
                    return None
                raise

    def read_line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[: i + 2], self.buf[i + 2:]
                return line
            if len(self.buf) > MAX_HEAD:
                raise Closed("line too long")
            self.fill()

    def read_some(self, n):
        """Up to n bytes (at least one)."""
        if not self.buf:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def send(self, data):
        self.sock.sendall(data)


def parse_head(head):
    """(start line, [(name, value)]) of an HTTP head."""
    lines = head[:-4].split(b"\r\n")
    start = lines[0].decode("latin-1")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().decode("latin-1").lower(), value.strip().decode("latin-1")))
    return start, headers


def header(headers, name):
    for n, v in headers:
        if n == name:
            return v
    return None


def body_kind(headers):
    """("chunked", None) | ("length", N) | ("none", 0)."""
    te = header(headers, "transfer-encoding")
    if te and "chunked" in te.lower():
        return "chunked", None
    cl = header(headers, "content-length")
    if cl is not None:
        return "length", int(cl)
    return "none", 0


def relay_body(src, dst, kind, length, limit=None):
    """Copy a body from src to dst as it is framed; with limit, stop after
    about that many bytes and return False (the body was cut)."""
    sent = 0
    if kind == "length":
        remaining = length
        while remaining > 0:
            n = min(remaining, 65536)
            if limit is not None:
                n = min(n, limit - sent)
                if n <= 0:
                    return False
            data = src.read_some(n)
            dst.send(data)
            remaining -= len(data)
            sent += len(data)
        return True
    if kind == "chunked":
        while True:
            line = src.read_line()
            dst.send(line)
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers up to the blank line
                    t = src.read_line()
                    dst.send(t)
                    if t == b"\r\n":
                        return True
            remaining = size + 2  # the chunk and its CRLF
            while remaining > 0:
                n = min(remaining, 65536)
                if limit is not None:
                    n = min(n, limit - sent)
                    if n <= 0:
                        return False
                data = src.read_some(n)
                dst.send(data)
                remaining -= len(data)
                sent += len(data)
    if kind == "eof":
        while True:
            if limit is not None and sent >= limit:
                return False
            try:
                data = src.read_some(65536)
            except Closed:
                return True
            dst.send(data)
            sent += len(data)
    return True


def discard_body(src, kind, length):
    class Null:
        def send(self, data):
            pass

    relay_body(src, Null(), kind, length)


def s3_error(status, code, message):
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
        "<RequestId>faultproxy-%d</RequestId></Error>" % (code, message, time.time_ns())
    ).encode()
    reason = {503: "Slow Down", 500: "Internal Server Error"}[status]
    head = (
        "HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n"
        "x-amz-request-id: faultproxy\r\nConnection: close\r\n\r\n" % (status, reason, len(body))
    ).encode()
    return head + body


class Rules:
    def __init__(self, path=None):
        self.lock = threading.Lock()
        self.rules = []
        self.path = path
        self.mtime = None

    @staticmethod
    def check(rule):
        if not isinstance(rule, dict) or "action" not in rule:
            raise ValueError("a rule needs an action")
        if rule["action"] not in ("503", "500", "reset", "reset_mid_body", "reset_mid_response", "delay", "drop"):
            raise ValueError("unknown action %r" % rule["action"])
        r = dict(rule)
        r["action"] = str(r["action"])
        m = r.setdefault("match", {})
        for key in ("path_re", "query_re"):
            if key in m:
                re.compile(m[key])
        r["left"] = int(r.get("count", 1))
        r["skip_left"] = int(r.get("skip", 0))
        return r

    def set(self, rules, append=False):
        if isinstance(rules, dict):
            rules = [rules]
        checked = [self.check(r) for r in rules]
        with self.lock:
            self.rules = (self.rules if append else []) + checked

    def reload(self):
        if not self.path:
            return
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime == self.mtime:
            return
        self.mtime = mtime
        if mtime is None:
            self.set([])
            return
        try:
            with open(self.path) as f:
                text = f.read()
            self.set(json.loads(text) if text.strip() else [])
        except (ValueError, OSError) as e:
            print("faultproxy: %s: %s" % (self.path, e), file=sys.stderr)

    def pick(self, method, path, query, headers):
        """The rule whose fault this request gets, counted, or None."""
        self.reload()
        with self.lock:
            for r in self.rules:
                if r["left"] == 0:
                    continue
                m = r["match"]
                if "method" in m and m["method"].upper() != method.upper():
                    continue
                if "path_re" in m and not re.search(m["path_re"], path):
                    continue
                if "query_re" in m and not re.search(m["query_re"], query):
                    continue
                if any(not re.search(v, header(headers, k.lower()) or "") for k, v in m.get("headers", {}).items()):
                    continue
                if r["skip_left"] > 0:
                    r["skip_left"] -= 1
                    continue
                if r["left"] > 0:
                    r["left"] -= 1
                return r
        return None

    def dump(self):
        with self.lock:
            return [dict(r) for r in self.rules]


class Log:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.path = path
        self.lines = []
        self.f = open(path, "a", buffering=1) if path else sys.stderr

    def write(self, conn_id, method, target, action, status):
        line = "%.3f %d %s %s %s %s" % (time.time(), conn_id, method, target, action, status)
        with self.lock:
            self.lines.append(line)
            self.f.write(line + "\n")
            self.f.flush()


class Proxy:
    def __init__(self, upstream, rules, log):
        u = urllib.parse.urlsplit(upstream)
        if u.scheme != "http":
            raise SystemExit("faultproxy: upstream must be http://HOST:PORT")
        self.up_addr = (u.hostname, u.port or 80)
        self.rules = rules
        self.log = log
        self.next_id = 0
        self.id_lock = threading.Lock()
        self.current = {}  # connection id: (method, target, action) under way

    def serve(self, listener):
        while True:
            sock, _ = listener.accept()
            with self.id_lock:
                self.next_id += 1
                cid = self.next_id
            threading.Thread(target=self.connection, args=(sock, cid), daemon=True).start()

    def connection(self, sock, cid):
        sock.settimeout(IO_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = Conn(sock)
        upstream = None
        try:
            while True:
                head = client.read_head(allow_eof=True)
                if head is None:
                    break
                keep, upstream = self.request(cid, client, head, upstream)
                self.current.pop(cid, None)
                if not keep:
                    break
        except (Closed, OSError, ValueError) as e:
            # a request cut short by either side (radosgw killed, the
            # client gone): logged as "ACTION-aborted", the client reset
            cur = self.current.pop(cid, None)
            if cur:
                self.log.write(cid, cur[0], cur[1], cur[2] + "-aborted", "-")
                reset(sock)
        finally:
            for s in (sock, upstream.sock if upstream else None):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    def connect_upstream(self):
        s = socket.create_connection(self.up_addr, timeout=IO_TIMEOUT)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Conn(s)

    def request(self, cid, client, head, upstream):
        """Handle one request; returns (keep the client connection, upstream)."""
        start, headers = parse_head(head)
        parts = start.split(" ")
        if len(parts) != 3:
            raise Closed("bad request line")
        method, target, version = parts
        path, _, query = target.partition("?")
        kind, length = body_kind(headers)
        expect = (header(headers, "expect") or "").lower() == "100-continue"
        close_asked = (header(headers, "connection") or "").lower() == "close" or version == "HTTP/1.0"
        rule = self.rules.pick(method, path, query, headers)
        action = rule["action"] if rule else "forward"
        self.current[cid] = (method, target, action)

        if action in ("503", "500"):
            if not expect:
                discard_body(client, kind, length)
            if action == "503":
                resp = s3_error(503, "SlowDown", "Please reduce your request rate. (faultproxy)")
            else:
                resp = s3_error(500, "InternalError", "We encountered an internal error. Please try again. (faultproxy)")
            self.log.write(cid, method, target, action, action)
            self.current.pop(cid, None)
            client.send(resp)
            # the body may be unread (Expect: 100-continue): half-close and
            # drain briefly so that closing does not turn into an RST
            try:
                client.sock.shutdown(socket.SHUT_WR)
                client.sock.settimeout(2)
                while client.sock.recv(65536):
                    pass
            except OSError:
                pass
            return False, upstream
        if action in ("reset", "drop"):
            self.current.pop(cid, None)
        if action == "reset":
            self.log.write(cid, method, target, action, "-")
            reset(client.sock)
            return False, upstream
        if action == "drop":
            self.log.write(cid, method, target, action, "-")
            end = time.monotonic() + rule.get("delay_ms", 600000) / 1000.0
            try:
                while time.monotonic() < end:
                    client.sock.settimeout(max(0.01, min(1.0, end - time.monotonic())))
                    try:
                        if not client.sock.recv(65536):
                            break
                    except socket.timeout:
                        continue
            except OSError:
                pass
            return False, upstream
        if action == "delay":
            time.sleep(rule.get("delay_ms", 1000) / 1000.0)

        # forward: the head as it came, then the body
        if upstream is None:
            upstream = self.connect_upstream()
        try:
            upstream.send(head)
        except OSError:  # radosgw closed the idle kept-alive connection: once more
            upstream.sock.close()
            upstream = self.connect_upstream()
            upstream.send(head)

        if action == "reset_mid_body":
            cut = rule.get("after_bytes")
            if cut is None:
                cut = max(1, (length or 2) // 2)
            if expect:
                rstart, rheaders, rhead = self.read_response_head(upstream)
                if not rstart.split(" ")[1] == "100":
                    cut = 0
                else:
                    client.send(rhead)
            try:
                relay_body(client, upstream, kind, length, limit=cut)
            except (Closed, OSError):
                pass
            self.current.pop(cid, None)
            self.log.write(cid, method, target, action, "-")
            reset(upstream.sock)
            reset(client.sock)
            return False, None

        final = None
        refused = False  # radosgw answered before the body: its fate is unknown
        if expect:
            rstart, rheaders, rhead = self.read_response_head(upstream)
            if rstart.split(" ")[1] == "100":
                client.send(rhead)
            else:
                final = (rstart, rheaders, rhead)
                refused = kind == "chunked" or length != 0
        if final is None:
            relay_body(client, upstream, kind, length)
            final = self.read_response_head(upstream)
            while final[0].split(" ")[1] == "100":  # a 100 nobody asked for
                final = self.read_response_head(upstream)
        rstart, rheaders, rhead = final
        status = rstart.split(" ")[1]
        rkind, rlength = body_kind(rheaders)
        if method == "HEAD" or status in ("204", "304") or status.startswith("1"):
            rkind, rlength = "none", 0
        elif rkind == "none" and header(rheaders, "content-length") is None:
            rkind = "eof"

        if action == "reset_mid_response":
            cut = rule.get("after_bytes")
            if cut is None:
                cut = max(1, (rlength or 2) // 2)
            client.send(rhead)
            try:
                relay_body(upstream, client, rkind, rlength, limit=cut)
            except (Closed, OSError):
                pass
            self.current.pop(cid, None)
            self.log.write(cid, method, target, action, status)
            reset(client.sock)
            reset(upstream.sock)
            return False, None

        client.send(rhead)
        relay_body(upstream, client, rkind, rlength)
        self.log.write(cid, method, target, action, status)
        rclose = (header(rheaders, "connection") or "").lower() == "close" or rkind == "eof"
        if rclose:
            upstream.sock.close()
            upstream = None
        if close_asked or rclose or refused:
            return False, upstream
        return True, upstream

    @staticmethod
    def read_response_head(upstream):
        rhead = upstream.read_head()
        rstart, rheaders = parse_head(rhead)
        return rstart, rheaders, rhead


def control_server(rules, log, port):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, code, obj):
            body = (json.dumps(obj, indent=1) + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n) or b"[]")

        def do_GET(self):
            if self.path == "/rules":
                self.reply(200, rules.dump())
            elif self.path == "/log":
                with log.lock:
                    self.reply(200, list(log.lines))
            else:
                self.reply(404, {"error": "GET /rules or /log"})

        def change(self, append):
            try:
                rules.set(self.body(), append=append)
            except (ValueError, re.error, TypeError) as e:
                self.reply(400, {"error": str(e)})
                return
            self.reply(200, rules.dump())

        def do_POST(self):
            self.change(True)

        def do_PUT(self):
            self.change(False)

        def do_DELETE(self):
            rules.set([])
            self.reply(200, [])

    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


def write_port(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True, help="http://127.0.0.1:RGWPORT")
    p.add_argument("--port", type=int, default=0, help="listen on 127.0.0.1:PORT (0: pick one)")
    p.add_argument("--port-file", help="write the listening port there")
    p.add_argument("--control-port", type=int, help="the control endpoint's port (0: pick one)")
    p.add_argument("--control-port-file", help="write the control port there")
    p.add_argument("--rules", help="a JSON file of rules, read again when it changes")
    p.add_argument("--log", help="the request log (default: stderr)")
    a = p.parse_args()

    rules = Rules(a.rules)
    rules.reload()
    log = Log(a.log)
    proxy = Proxy(a.upstream, rules, log)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", a.port))
    listener.listen(128)
    port = listener.getsockname()[1]
    cport = None
    if a.control_port is not None or a.control_port_file:
        cport = control_server(rules, log, a.control_port or 0)
        if a.control_port_file:
            write_port(a.control_port_file, cport)
    if a.port_file:
        write_port(a.port_file, port)
    print(port if cport is None else "%d %d" % (port, cport), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        proxy.serve(listener)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
