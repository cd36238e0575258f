#!/usr/bin/env python3
"""A FAKE repository, named as one: it speaks just enough of Ferry's
repository protocol (proto/ferry.proto) to take one backup, and announces
in HelloReply whatever limits it is given, so that a test can play a
repository stricter than ferry-repo (or an older one that announces none)
and check that the agent honours them. It stores nothing: every queried
block is "missing", every PutBlock is counted and dropped.

usage: fake_repo.py PKI READY_FILE LOG MAX_FRAME MIN_BLOCK MAX_BLOCK

Listens on 127.0.0.1 (port written to READY_FILE as HOST:PORT), serves one
connection after another until killed, with PKI/127.0.0.1.crt (a
repository certificate of PKI's CA) and requires a client certificate of
that CA. Each connection appends to LOG: "max_seen N" each time a frame
is larger than any before it (written before the fake replies to
anything, so a client that has its reply finds its frames logged), and "oversize NAME N" if a frame exceeded MAX_FRAME (then the
connection is closed, as a real repository refuses such a frame).
"""
import os
import socket
import ssl
import struct
import sys

from forge_client import fields
from hostile_client import field_bytes, field_int, frame

NAMES = {1: "Hello", 3: "BeginBackup", 5: "BeginDisk", 6: "QueryBlocks",
         8: "PutBlock", 9: "MapChunk", 10: "EndDisk", 11: "Commit"}


def recv_exact(conn, n):
    got = b""
    while len(got) < n:
        chunk = conn.recv(n - len(got))
        if not chunk:
            raise EOFError
        got += chunk
    return got


def serve(conn, log, max_frame, min_block, max_block):
    max_seen = 0
    try:
        while True:
            n = struct.unpack(">I", recv_exact(conn, 4))[0]
            limit = max_frame or (16 << 20) + (64 << 10)
            if n > limit:
                log.write(f"oversize frame {n}\n")
                return
            body = recv_exact(conn, n)
            if n > max_seen:
                # Logged before any reply: when the agent has its commit
                # reply, every frame it sent is in the log.
                max_seen = n
                log.write(f"max_seen {max_seen}\n")
                log.flush()
            num, _, inner = fields(body)[0]
            if num == 1:
                reply = (field_int(1, 1) + field_bytes(2, b"fake-repo") +
                         field_bytes(4, b"fake"))
                for f, v in ((5, max_frame), (6, min_block), (7, max_block)):
                    if v:
                        reply += field_int(f, v)
                conn.sendall(frame(2, reply))
            elif num == 3:
                conn.sendall(frame(4, field_bytes(1, b"fake-backup")))
            elif num == 6:
                seq, count = 0, 0
                for f, _, v in fields(inner):
                    if f == 1:
                        seq = v
                    elif f == 2:
                        count += 1
                bitmap = bytes([0xFF] * ((count + 7) // 8))
                conn.sendall(frame(7, field_int(1, seq) +
                                   field_bytes(2, bitmap)))
            elif num == 11:
                conn.sendall(frame(12, field_bytes(1, b"fake-backup")))
            elif num not in NAMES:
                log.write(f"unexpected frame {num}\n")
                return
    except (EOFError, ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        log.flush()


def main():
    pki, ready, logpath = sys.argv[1:4]
    max_frame, min_block, max_block = (int(v) for v in sys.argv[4:7])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(f"{pki}/127.0.0.1.crt", f"{pki}/127.0.0.1.key")
    ctx.load_verify_locations(f"{pki}/ca.crt")
    ctx.verify_mode = ssl.CERT_REQUIRED
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    with open(ready + ".tmp", "w") as f:
        f.write(f"127.0.0.1:{srv.getsockname()[1]}\n")
    os.rename(ready + ".tmp", ready)
    with open(logpath, "a") as log:
        while True:
            raw, _ = srv.accept()
            try:
                conn = ctx.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                raw.close()
                continue
            serve(conn, log, max_frame, min_block, max_block)
            conn.close()


if __name__ == "__main__":
    main()
