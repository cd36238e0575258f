#!/usr/bin/env python3
"""A misbehaving vCenter for the vsphere client's tests: the first path
component of a POST picks the misbehaviour (/stall/sdk, /html/sdk, ...).
Every loop is bounded; the server stops after 120 s whatever happens.

usage: hostile_server.py CERT KEY PORTFILE
"""
import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

ENV = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
       'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
       'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>')
SERVICE_CONTENT = ENV + (
    '<RetrieveServiceContentResponse xmlns="urn:vim25"><returnval>'
    '<rootFolder type="Folder">group-d1</rootFolder>'
    '<propertyCollector type="PropertyCollector">propertyCollector</propertyCollector>')


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send(self, status, ctype, body, length=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        mode = self.path.strip("/").split("/")[0]
        if mode == "stall":
            # Accept the request, answer nothing.
            time.sleep(20)
        elif mode == "stall-mid":
            # Headers and part of the body, then silence.
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(SERVICE_CONTENT.encode()[:200])
            self.wfile.flush()
            time.sleep(20)
        elif mode == "html":
            self.send(503, "text/html", b"<!DOCTYPE html><html><head><title>503 Service "
                      b"Unavailable</title></head><body>busy</body></html>")
        elif mode == "huge":
            # 300 MB announced: refused before it is read.
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(300 << 20))
            self.end_headers()
            chunk = b"<a>" + b"x" * 65530 + b"</a>"
            try:
                for _ in range(300 << 20 // len(chunk)):
                    self.wfile.write(chunk)
            except OSError:
                pass
        elif mode == "huge-chunked":
            # 300 MB with no length: cut by the client at its limit.
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"<a>" + b"x" * 65530 + b"</a>"
            try:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(SERVICE_CONTENT), SERVICE_CONTENT.encode()))
                for _ in range((300 << 20) // len(chunk)):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
        elif mode == "truncated":
            self.send(200, "text/xml", SERVICE_CONTENT.encode())
        elif mode == "malformed":
            self.send(200, "text/xml", (ENV + "<RetrieveServiceContentResponse><returnval>"
                                        "</wrong></soapenv:Body></soapenv:Envelope>").encode())
        elif mode == "laughs":
            body = ('<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
                    + "".join('<!ENTITY %s "%s">' % (chr(98 + i), ("&%s;" % chr(97 + i)) * 10)
                              for i in range(9))
                    + ']>' + ENV[ENV.index("<soapenv:Envelope"):] + "&j;</soapenv:Body></soapenv:Envelope>")
            self.send(200, "text/xml", body.encode())
        elif mode == "deep":
            body = ENV + "<a>" * 100000 + "</a>" * 100000 + "</soapenv:Body></soapenv:Envelope>"
            self.send(200, "text/xml", body.encode())
        elif mode == "close":
            self.close_connection = True
            self.connection.shutdown(2)
        else:
            self.send(404, "text/plain", b"no such mode")


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Timer(120, srv.shutdown).start()
    with open(sys.argv[3] + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.rename(sys.argv[3] + ".tmp", sys.argv[3])
    srv.serve_forever()


main()
