#!/usr/bin/env python3
"""A misbehaving vSphere /folder endpoint for the https transport's tests.

/folder/<mode>/disk.vmdk is a good descriptor naming disk-flat.vmdk (1 MiB
of a fixed pattern); how /folder/<mode>/disk-flat.vmdk answers a Range GET
depends on <mode>: ok, ignore-range, bad-range, bad-total, no-range-header,
oversize, short, auth-once, auth-always, stall, big-error. Two more modes
misbehave on the descriptor itself: desc-big (200 with 100 KiB, Range
ignored), desc-missing (404). The server stops after 120 s whatever
happens.

usage: hostile_folder.py CERT KEY PORTFILE
"""
import re
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIZE = 1 << 20
DATA = bytes((i * 7 + (i >> 9)) & 0xFF for i in range(SIZE))
DESCRIPTOR = (b'# Disk DescriptorFile\nversion=1\nCID=fffffffe\n'
              b'parentCID=ffffffff\ncreateType="vmfs"\n\n'
              b'RW 2048 VMFS "disk-flat.vmdk"\n')
auth_once_seen = set()
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send(self, status, body, headers=(), length=None):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def parts(self):
        m = re.match(r"^/folder/([^/]+)/([^?]+)\?dcPath=dc&dsName=ds$", self.path)
        return (m.group(1), m.group(2)) if m else (None, None)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        mode, name = self.parts()
        if mode is None or "vmware_soap_session=ok" not in self.headers.get("Cookie", ""):
            self.send(404 if mode is None else 401, b"no")
            return
        if name == "disk.vmdk":
            if mode == "desc-big":
                self.send(200, b"#" * (100 << 10))
            elif mode == "desc-missing":
                self.send(404, b"<html>not found</html>")
            else:
                self.send(206, DESCRIPTOR, [("Content-Range", "bytes 0-%d/%d" % (len(DESCRIPTOR) - 1, len(DESCRIPTOR)))])
            return
        if name != "disk-flat.vmdk":
            self.send(404, b"no")
            return
        if self.command == "HEAD":
            self.send(200, b"", length=SIZE)
            return
        m = re.match(r"bytes=(\d+)-(\d+)$", self.headers.get("Range", ""))
        if not m:
            self.send(200, DATA)
            return
        a, b = int(m.group(1)), int(m.group(2))
        body = DATA[a:b + 1]
        cr = [("Content-Range", "bytes %d-%d/%d" % (a, b, SIZE))]
        if mode == "ok":
            self.send(206, body, cr)
        elif mode == "ignore-range":
            self.send(200, DATA)
        elif mode == "bad-range":
            self.send(206, body, [("Content-Range", "bytes %d-%d/%d" % (a + 512, b + 512, SIZE))])
        elif mode == "bad-total":
            self.send(206, body, [("Content-Range", "bytes %d-%d/%d" % (a, b, SIZE + 512))])
        elif mode == "no-range-header":
            self.send(206, body)
        elif mode == "oversize":
            self.send(206, body + b"x" * 100, cr)
        elif mode == "short":
            self.send(206, body[:-100], cr, length=len(body))
            self.close_connection = True
        elif mode == "auth-once":
            with lock:
                first = self.path not in auth_once_seen
                auth_once_seen.add(self.path)
            if first:
                self.send(401, b"expired")
            else:
                self.send(206, body, cr)
        elif mode == "auth-always":
            self.send(401, b"expired")
        elif mode == "stall":
            self.send_response(206)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:1000])
            self.wfile.flush()
            time.sleep(20)
        elif mode == "big-error":
            self.send(500, b"E" * (1 << 20))
        else:
            self.send(404, b"no")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Clients hang up on purpose (a body too long, a stall): quiet.
        pass


def main():
    cert, key, portfile = sys.argv[1:4]
    srv = Server(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.rename(portfile + ".tmp", portfile)
    threading.Timer(120, srv.shutdown).start()
    srv.serve_forever()


main()
