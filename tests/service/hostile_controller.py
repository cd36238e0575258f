#!/usr/bin/env python3
"""A controller that breaks the control protocol on purpose.

usage: hostile_controller.py ADDR CA CERT|- KEY|- SCENARIO [GO]

Speaks TLS 1.3 to `ferry-agent run` (with the client certificate CERT/KEY,
or none with "-"), then plays SCENARIO and prints what the agent answered,
one line: "ERROR <code> <message>", "REPLY <field number>", "CLOSED" or
"TLS <reason>". Scenario status-pause asks for Status, writes GO.waiting,
waits until the file GO exists, then asks again. Frames are built by hand (proto/control.proto's field
numbers) so that they can be wrong in ways a protobuf library refuses.
"""
import os
import socket
import ssl
import struct
import sys
import time

addr, ca, cert, key, scenario = sys.argv[1:6]
host, port = addr.rsplit(":", 1)


def varint(n):
    n &= (1 << 64) - 1
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wire, payload):
    tag = varint(num << 3 | wire)
    if wire == 0:
        return tag + varint(payload)
    return tag + varint(len(payload)) + payload


def frame(body):
    return struct.pack(">I", len(body)) + body


def hello(version=1):
    return frame(field(1, 2, field(1, 0, version) + field(2, 2, b"hostile 1")))


def read_varint(b, i):
    shift = n = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return n, i


def parse(body):
    """The top-level field of a ControlFrame and, for Error, code and text."""
    tag, i = read_varint(body, 0)
    num = tag >> 3
    length, i = read_varint(body, i)
    inner = body[i:i + length]
    if num != 15:
        return "REPLY %d" % num
    code, text, j = 0, "", 0
    while j < len(inner):
        t, j = read_varint(inner, j)
        if t & 7 == 0:
            v, j = read_varint(inner, j)
            code = v - (1 << 64) if v >= 1 << 63 else v
        else:
            n, j = read_varint(inner, j)
            text = inner[j:j + n].decode(errors="replace")
            j += n
    return "ERROR %d %s" % (code, text)


def recv_frame(s):
    hdr = b""
    while len(hdr) < 4:
        chunk = s.recv(4 - len(hdr))
        if not chunk:
            return None
        hdr += chunk
    n = struct.unpack(">I", hdr)[0]
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return body


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_verify_locations(ca)
ctx.check_hostname = False
if cert != "-":
    ctx.load_cert_chain(cert, key)
raw = socket.create_connection((host, int(port)), timeout=30)
if scenario == "plain-garbage":
    # Not even TLS.
    raw.sendall(b"GET / HTTP/1.0\r\n\r\n" + b"\x00" * 100)
    try:
        answer = raw.recv(1000)
    except ConnectionResetError:
        answer = b""
    # A TLS alert is all a server may send to a client that is no TLS.
    print("CLOSED" if not answer or answer[:1] == b"\x15" else "ANSWERED %r" % answer[:20])
    sys.exit(0)
try:
    s = ctx.wrap_socket(raw, server_hostname=host)
except (ssl.SSLError, OSError) as e:
    print("TLS %s" % e)
    sys.exit(0)

steps = {
    # a length over the 1 MiB bound, before any byte of a body
    "oversized": [struct.pack(">I", 0x7FFFFFFF)],
    "zero-length": [struct.pack(">I", 0)],
    # bytes that are no protobuf
    "garbage": [frame(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")],
    "no-hello": [frame(field(3, 2, b""))],
    "bad-version": [hello(99)],
    # a request over a string bound, after a good greeting
    "long-vm": [hello(), frame(field(5, 2, field(1, 2, b"v" * 2000)))],
    # 65 disk indexes (packed), over the 64 the protocol allows
    "many-disks": [hello(), frame(field(5, 2, field(1, 2, b"vm") +
                                       field(2, 2, b"".join(varint(i) for i in range(65)))))],
    "bad-mode": [hello(), frame(field(5, 2, field(1, 2, b"vm") + field(5, 0, 7)))],
    # disk 0 twice
    "dup-disks": [hello(), frame(field(5, 2, field(1, 2, b"vm") +
                                      field(2, 2, varint(0) + varint(0))))],
    # Hello, Status; then (see below) a second Status once GO exists
    "status-pause": [hello(), frame(field(3, 2, b""))],
    # an answer where a request belongs: refused, the connection stays
    "not-a-request": [hello(), frame(field(4, 2, b"")), frame(field(3, 2, b""))],
    # a frame cut short: the agent waits, then gives up on us
    "truncated": [hello(), struct.pack(">I", 100) + b"\x2a\x00"],
}
try:
    for chunk in steps[scenario]:
        s.sendall(chunk)
    if scenario == "truncated":
        s.close()
        print("CLOSED")
        sys.exit(0)
    answers = []
    if scenario == "status-pause":
        answers = [parse(b) if b else "CLOSED" for b in (recv_frame(s), recv_frame(s))]
        go = sys.argv[6]
        open(go + ".waiting", "w").close()
        for _ in range(600):
            if os.path.exists(go):
                break
            time.sleep(0.1)
        s.sendall(frame(field(3, 2, b"")))
    while True:
        body = recv_frame(s)
        if body is None:
            answers.append("CLOSED")
            break
        answers.append(parse(body))
        if answers[-1].startswith("ERROR") and scenario != "not-a-request":
            break
        if scenario == "not-a-request" and len(answers) == 3:
            break
    print(" | ".join(answers))
except (ssl.SSLError, OSError) as e:
    print("TLS %s" % e)
