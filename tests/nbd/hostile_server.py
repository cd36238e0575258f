#!/usr/bin/env python3
"""An NBD server for Ferry's tests that misbehaves on request.

    hostile_server.py DIR REFERENCE

Writes the export's contents to REFERENCE, then listens on one Unix
socket per scenario, DIR/SCENARIO.sock, and serves each connection
according to its socket's scenario until killed; DIR/ready appears once
all of them listen. Some scenarios are well-behaved but unusual (replies
out of order, no structured replies, no NBD_OPT_GO); the rest break the
protocol in one specific way each. The export is 16 MiB + 1234 bytes of
4 KiB blocks alternating between data and zeros, so block status has
plenty to say.
"""
import os
import select
import socket
import struct
import sys
import threading
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OLDSTYLE = 0x00420281861253
REP_MAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
CHUNK_MAGIC = 0x668E33EF

OPT_EXPORT_NAME, OPT_ABORT, OPT_STARTTLS = 1, 2, 5
OPT_GO, OPT_STRUCTURED_REPLY, OPT_SET_META_CONTEXT = 7, 8, 10
REP_ACK, REP_INFO, REP_META_CONTEXT = 1, 3, 4
ERR = 1 << 31
ERR_UNSUP, ERR_POLICY, ERR_UNKNOWN = ERR | 1, ERR | 2, ERR | 6
CMD_READ, CMD_WRITE, CMD_DISC, CMD_BLOCK_STATUS = 0, 1, 2, 7
T_NONE, T_DATA, T_HOLE, T_STATUS, T_ERROR = 0, 1, 2, 5, 0x8001
DONE = 1
TX_FLAGS = 1 | 2  # HAS_FLAGS | READ_ONLY


def tx_flags(sc):
    """The write- scenarios serve a writable export."""
    return 1 if sc.startswith("write-") else TX_FLAGS
META_ID = 42
ESHUTDOWN = 108

BLOCK = 4096
SIZE = 16 * 1024 * 1024 + 1234
NBLOCKS = (SIZE + BLOCK - 1) // BLOCK


def zero_block(i):
    return i % 2 == 1 and i != NBLOCKS - 1


def build():
    base = bytes(range(256)) * (BLOCK // 256)
    parts = []
    for i in range(NBLOCKS):
        if zero_block(i):
            parts.append(bytes(BLOCK))
        else:
            r = (i * 7) % 256
            parts.append(base[r:] + base[:r])
    return b"".join(parts)[:SIZE]


SCENARIOS = [
    # legal
    "good", "ooo", "simple", "go-unsup", "no-meta", "extents-short",
    "eshutdown-once",
    # broken handshakes
    "bad-greeting", "oldstyle", "no-fixed", "opt-bad-magic", "opt-oversize",
    "opt-wrong-option", "unknown-export", "endless-info", "bad-block-size",
    "go-no-export", "close-greeting", "silent-greeting",
    # broken replies
    "reply-bad-magic", "unknown-cookie", "unknown-type-oversize",
    "unknown-error-type", "chunk-oversize", "chunk-outside", "truncated",
    "stall", "short-success", "bad-context",
    # broken replies to writes (a writable export)
    "write-data", "write-cookie", "write-close",
]

DATA = build()
lock = threading.Lock()
connections = {}


class Closed(Exception):
    pass


def recvall(c, n):
    buf = b""
    while len(buf) < n:
        got = c.recv(n - len(buf))
        if not got:
            raise Closed()
        buf += got
    return buf


def reply(c, opt, typ, payload=b""):
    c.sendall(struct.pack(">QIII", REP_MAGIC, opt, typ, len(payload)) +
              payload)


def chunk(c, flags, typ, cookie, payload=b""):
    c.sendall(struct.pack(">IHHQI", CHUNK_MAGIC, flags, typ, cookie,
                          len(payload)) + payload)


def handshake(c, sc):
    """Returns whether structured replies were agreed, or raises Closed."""
    if sc == "bad-greeting":
        c.sendall(b"HELLO, WORLD! This is no NBD server.")
        raise Closed()
    if sc == "oldstyle":
        c.sendall(struct.pack(">QQQI", NBDMAGIC, OLDSTYLE, SIZE, 1) +
                  bytes(124))
        raise Closed()
    if sc == "silent-greeting":
        time.sleep(60)
        raise Closed()
    if sc == "close-greeting":
        raise Closed()
    c.sendall(struct.pack(">QQH", NBDMAGIC, IHAVEOPT,
                          0 if sc == "no-fixed" else 3))
    cflags = struct.unpack(">I", recvall(c, 4))[0]
    structured = False
    while True:
        _, opt, length = struct.unpack(">QII", recvall(c, 16))
        recvall(c, length)
        if opt == OPT_STARTTLS:
            reply(c, opt, ERR_POLICY, b"no TLS on this server")
            continue
        if sc == "opt-bad-magic":
            c.sendall(struct.pack(">QIII", 0x1234, opt, REP_ACK, 0))
            raise Closed()
        if sc == "opt-oversize":
            c.sendall(struct.pack(">QIII", REP_MAGIC, opt, REP_ACK,
                                  256 << 20) + bytes(1000))
            raise Closed()
        if sc == "opt-wrong-option":
            reply(c, opt + 100, REP_ACK)
            raise Closed()
        if opt == OPT_STRUCTURED_REPLY:
            if sc in ("simple", "go-unsup"):
                reply(c, opt, ERR_UNSUP)
            else:
                structured = True
                reply(c, opt, REP_ACK)
        elif opt == OPT_SET_META_CONTEXT:
            if sc != "no-meta":
                reply(c, opt, REP_META_CONTEXT,
                      struct.pack(">I", META_ID) + b"base:allocation")
            reply(c, opt, REP_ACK)
        elif opt == OPT_GO:
            if sc == "go-unsup":
                reply(c, opt, ERR_UNSUP)
                continue
            if sc == "unknown-export":
                reply(c, opt, ERR_UNKNOWN, b"nothing by that name")
                continue
            if sc == "endless-info":
                for _ in range(1000):
                    reply(c, opt, REP_INFO, struct.pack(">H", 2) + b"more")
                raise Closed()
            if sc != "go-no-export":
                reply(c, opt, REP_INFO,
                      struct.pack(">HQH", 0, SIZE, tx_flags(sc)))
            min_block = 3 if sc == "bad-block-size" else 1
            reply(c, opt, REP_INFO,
                  struct.pack(">HIII", 3, min_block, 4096, 1 << 20))
            reply(c, opt, REP_ACK)
            return structured
        elif opt == OPT_EXPORT_NAME:
            c.sendall(struct.pack(">QH", SIZE, tx_flags(sc)) +
                      (b"" if cflags & 2 else bytes(124)))
            return structured
        elif opt == OPT_ABORT:
            reply(c, opt, REP_ACK)
            raise Closed()
        else:
            reply(c, opt, ERR_UNSUP)


def runs(off, end):
    """Splits [off, end) into (start, length, is_zero) runs."""
    out = []
    pos = off
    while pos < end:
        i = pos // BLOCK
        z = zero_block(i)
        stop = min(end, (i + 1) * BLOCK)
        if out and out[-1][2] == z:
            out[-1] = (out[-1][0], stop - out[-1][0], z)
        else:
            out.append((pos, stop - pos, z))
        pos = stop
    return out


def read_reply(c, sc, cookie, off, length, conn_no):
    data = DATA[off:off + length]
    if sc == "reply-bad-magic":
        c.sendall(struct.pack(">IIQ", 0xBADBAD00, 0, cookie))
    elif sc == "unknown-cookie":
        chunk(c, DONE, T_NONE, cookie ^ 0xDEAD0000)
    elif sc == "unknown-type-oversize":
        c.sendall(struct.pack(">IHHQI", CHUNK_MAGIC, 0, 0x55, cookie,
                              16 << 20))
    elif sc == "unknown-error-type":
        msg = b"weird failure"
        chunk(c, DONE, 0x8055, cookie, struct.pack(">IH", 5, len(msg)) + msg)
    elif sc == "chunk-oversize":
        c.sendall(struct.pack(">IHHQI", CHUNK_MAGIC, DONE, T_DATA, cookie,
                              length + 8 + 100))
    elif sc == "chunk-outside":
        chunk(c, DONE, T_DATA, cookie, struct.pack(">Q", off + length) +
              bytes(10))
    elif sc == "truncated":
        c.sendall(struct.pack(">IHHQIQ", CHUNK_MAGIC, DONE, T_DATA, cookie,
                              length + 8, off) + data[:length // 2])
        raise Closed()
    elif sc == "stall":
        pass
    elif sc == "short-success":
        chunk(c, 0, T_DATA, cookie,
              struct.pack(">Q", off) + data[:length // 2])
        chunk(c, DONE, T_NONE, cookie)
    elif sc == "eshutdown-once" and conn_no == 1:
        msg = b"going down"
        chunk(c, DONE, T_ERROR, cookie,
              struct.pack(">IH", ESHUTDOWN, len(msg)) + msg)
    else:
        pieces = runs(off, off + length)
        if sc == "ooo":
            pieces.reverse()
        for start, n, z in pieces:
            if z:
                chunk(c, 0, T_HOLE, cookie, struct.pack(">QI", start, n))
            else:
                chunk(c, 0, T_DATA, cookie, struct.pack(">Q", start) +
                      DATA[start:start + n])
        chunk(c, DONE, T_NONE, cookie)


def status_reply(c, sc, cookie, off, length):
    if sc == "bad-context":
        chunk(c, DONE, T_STATUS, cookie,
              struct.pack(">III", 99, 4096, 0))
        return
    limit = 7 if sc == "extents-short" else 5000
    desc = []
    # The last extent may run past the request, as the spec allows.
    for start, n, z in runs(off, min(SIZE, off + length + BLOCK)):
        if len(desc) == limit or start >= off + length:
            break
        desc.append(struct.pack(">II", n, 3 if z else 0))
    chunk(c, DONE, T_STATUS, cookie,
          struct.pack(">I", META_ID) + b"".join(desc))


def transmission(c, sc, structured, conn_no):
    pending = []
    while True:
        if not pending:
            pending.append(recvall(c, 28))
        # Gather what else has arrived, to answer it out of order.
        while sc == "ooo" and len(pending) < 16 and \
                select.select([c], [], [], 0.005)[0]:
            pending.append(recvall(c, 28))
        if sc == "ooo":
            pending.reverse()
        for req in pending:
            magic, _, typ, cookie, off, length = struct.unpack(">IHHQQI",
                                                               req)
            if magic != REQ_MAGIC or typ == CMD_DISC:
                raise Closed()
            if typ == CMD_WRITE:
                recvall(c, length)
                if sc == "write-data":
                    # Data in the reply to a write: not allowed.
                    chunk(c, DONE, T_DATA, cookie,
                          struct.pack(">Q", off) + bytes(16))
                elif sc == "write-cookie":
                    c.sendall(struct.pack(">IIQ", SIMPLE_MAGIC, 0, cookie + 1))
                elif sc == "write-close":
                    raise Closed()
                else:
                    c.sendall(struct.pack(">IIQ", SIMPLE_MAGIC, 0, cookie))
            elif typ == CMD_BLOCK_STATUS:
                status_reply(c, sc, cookie, off, length)
            elif not structured:
                c.sendall(struct.pack(">IIQ", SIMPLE_MAGIC, 0, cookie) +
                          DATA[off:off + length])
            else:
                read_reply(c, sc, cookie, off, length, conn_no)
        pending = []


def serve(c, sc):
    with lock:
        connections[sc] = connections.get(sc, 0) + 1
        conn_no = connections[sc]
    try:
        structured = handshake(c, sc)
        transmission(c, sc, structured, conn_no)
    except (Closed, OSError):
        pass
    finally:
        c.close()


def listen(sc, s):
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, sc), daemon=True).start()


def main():
    where, ref = sys.argv[1:3]
    with open(ref, "wb") as f:
        f.write(DATA)
    for sc in SCENARIOS:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(os.path.join(where, sc + ".sock"))
        s.listen(16)
        threading.Thread(target=listen, args=(sc, s), daemon=True).start()
    open(os.path.join(where, "ready"), "w").close()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
