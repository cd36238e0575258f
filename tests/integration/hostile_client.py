#!/usr/bin/env python3
"""A misbehaving client for ferry-repo: each case connects over mutual TLS
(or tries to), sends something wrong, and checks that the server answers
with an Error frame or closes the connection. The caller then checks that
no partial backup is listed and that the server still serves others.

usage: hostile_client.py HOST:PORT PKI_DIR OTHER_PKI_DIR
"""
import hashlib
import socket
import ssl
import struct
import sys


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def field_bytes(num, data):
    return varint((num << 3) | 2) + varint(len(data)) + data


def field_int(num, value):
    return varint(num << 3) + varint(value)


def frame(num, body):
    msg = field_bytes(num, body)
    return struct.pack(">I", len(msg)) + msg


HELLO = frame(1, field_int(1, 1) + field_bytes(2, b"hostile"))


def begin_backup(disks=1):
    return frame(3, field_bytes(1, b"hostile-source") + field_bytes(2, b"file")
                 + field_int(5, 1 << 20) + field_int(6, disks))


def begin_disk(size):
    return frame(5, field_int(1, 0) + field_bytes(2, b"d0") + field_int(3, size))


def put_block(digest, data):
    return frame(8, field_bytes(1, digest) + field_int(2, len(data))
                 + field_int(3, 0) + field_bytes(4, data))


def map_chunk(digests):
    body = field_int(1, 0) + field_int(2, 0)
    for d in digests:
        body += field_bytes(3, d)
    return frame(9, body)


END_DISK = frame(10, field_int(1, 0))
COMMIT = frame(11, b"")


def connect(addr, pki, cert_name, ca_dir=None):
    host, port = addr.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(f"{pki}/ca.crt")
    ctx.check_hostname = False
    if cert_name:
        d = ca_dir or pki
        ctx.load_cert_chain(f"{d}/{cert_name}.crt", f"{d}/{cert_name}.key")
    s = socket.create_connection((host, int(port)), timeout=10)
    return ctx.wrap_socket(s)


def read_all(conn):
    """Reads until the server closes; returns what came."""
    got = b""
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
    except (ssl.SSLError, ConnectionError, socket.timeout, OSError):
        pass
    return got


def expect_refusal(name, payload, pki, addr, want=b""):
    conn = connect(addr, pki, "agent1")
    try:
        conn.sendall(payload)
    except (ssl.SSLError, ConnectionError, OSError):
        pass
    got = read_all(conn)
    conn.close()
    # An Error frame is field 19 of Frame: tag 0x9a 0x01.
    if b"\x9a\x01" not in got and got:
        # A reply that is not an error is only fine for the greeting.
        if want not in got:
            sys.exit(f"{name}: server answered without an error: {got[:80]!r}")
    if want and want not in got:
        sys.exit(f"{name}: error does not say {want!r}: {got[-200:]!r}")
    print(f"{name}: refused as expected")


def main():
    addr, pki, other = sys.argv[1:4]

    # No client certificate, and one from another CA: the handshake fails.
    for name, cert, ca_dir in (("no client certificate", None, None),
                               ("certificate of another CA", "intruder", other)):
        try:
            conn = connect(addr, pki, cert, ca_dir)
            conn.sendall(HELLO)
            if conn.recv(100):
                sys.exit(f"{name}: server talked to us")
        except (ssl.SSLError, ConnectionError, OSError):
            pass
        print(f"{name}: refused as expected")

    block = b"x" * 4096
    good = hashlib.sha256(block).digest()
    wrong = hashlib.sha256(b"y").digest()
    unknown = hashlib.sha256(b"never sent").digest()

    cases = [
        ("oversized length", HELLO + struct.pack(">I", 0xFFFFFFF0), b"outside"),
        ("garbage frame", HELLO + struct.pack(">I", 8) + b"\xff" * 8, b""),
        ("unknown version", frame(1, field_int(1, 99)), b"protocol"),
        ("wrong digest", HELLO + begin_backup() + begin_disk(4096)
         + put_block(wrong, block), b"hashes to"),
        ("digest of the wrong length", HELLO + begin_backup() + begin_disk(4096)
         + put_block(good[:20], block), b"digest"),
        ("map entry for a block never sent", HELLO + begin_backup()
         + begin_disk(4096) + map_chunk([unknown]) + END_DISK + COMMIT,
         b"does not have"),
        ("map before BeginDisk", HELLO + begin_backup() + map_chunk([good]),
         b"outside"),
        ("commit before the disks", HELLO + begin_backup(2) + COMMIT, b"Commit"),
        ("missing map entries", HELLO + begin_backup() + begin_disk(3 << 20)
         + put_block(good, block) + map_chunk([good]) + END_DISK, b""),
        ("truncated frame", HELLO + begin_backup() + struct.pack(">I", 1000)
         + b"\x42" * 10, b""),
    ]
    for name, payload, want in cases:
        expect_refusal(name, payload, pki, addr, want)


if __name__ == "__main__":
    main()
