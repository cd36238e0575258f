#!/usr/bin/env python3
"""An attacker with a valid certificate of the repository's CA (another
agent's): speaks the repository protocol by hand to do what `ferry` and
`ferry-agent` would never ask for. Each action prints what the server
answered, one line: "REFUSED <code> <message>" or "ACCEPTED <detail>".
The calling test decides which answer it wants.

usage: forge_client.py ADDR PKI CERT_NAME ACTION ARGS...
  backup SOURCE KIND PARENT_ID DISK_ID CHANGE_ID PAYLOAD_FILE [VM_CONFIG_FILE]
      a whole backup of one disk holding PAYLOAD_FILE's bytes (one block
      of 1 MiB, padded with zeros), with the ids given (copied from the
      victim's `ferry list --json`); ACCEPTED <backup id> if committed.
      VM_CONFIG_FILE's bytes go in Commit.vm_config as they are.
  wide N SOURCE        N backups of 256 disks of one hole each, every disk
      with the longest label, change id and disk id the protocol allows:
      listings of them need several pages; ACCEPTED <N> when all committed
  getmap BACKUP_ID     the block map of someone's backup
  getblocks DIGEST_HEX a block by digest, without a map first
  list                 ACCEPTED <n> <ids...>: what the server lists
  listid ID            ListBackups for one backup (every namespace):
      ACCEPTED <n> more=<0|1> <ids...>
"""
import hashlib
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile_client import (connect, field_bytes, field_int, frame,  # noqa: E402
                            varint)

BLOCK = 1 << 20


def hello():
    return frame(1, field_int(1, 1) + field_bytes(2, b"forge"))


def read_varint(buf, pos):
    shift = value = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def fields(body):
    """(number, wire type, value) of each field of a message."""
    pos, out = 0, []
    while pos < len(body):
        tag, pos = read_varint(body, pos)
        num, wt = tag >> 3, tag & 7
        if wt == 0:
            v, pos = read_varint(body, pos)
        elif wt == 2:
            n, pos = read_varint(body, pos)
            v, pos = body[pos:pos + n], pos + n
        else:
            raise ValueError(f"wire type {wt}")
        out.append((num, wt, v))
    return out


def recv_frame(conn):
    """(oneof field number of the Frame, its body)."""
    hdr = b""
    while len(hdr) < 4:
        chunk = conn.recv(4 - len(hdr))
        if not chunk:
            return None, b""
        hdr += chunk
    (n,) = struct.unpack(">I", hdr)
    body = b""
    while len(body) < n:
        chunk = conn.recv(n - len(body))
        if not chunk:
            return None, b""
        body += chunk
    (num, _, inner), = fields(body)
    return num, inner


def refused_or(num, body, want):
    if num == 19:  # Error
        code, msg = 0, b""
        for f, _, v in fields(body):
            if f == 1:
                code = v - (1 << 64) if v >= 1 << 63 else v
            elif f == 2:
                msg = v
        print(f"REFUSED {code} {msg.decode(errors='replace')}")
        return None
    if num is None:
        print("REFUSED closed")
        return None
    if num != want:
        print(f"UNEXPECTED frame {num}")
        sys.exit(1)
    return body


def session(addr, pki, name):
    conn = connect(addr, pki, name)
    conn.sendall(hello())
    num, body = recv_frame(conn)
    if refused_or(num, body, 2) is None:
        sys.exit(0)
    return conn


def backup(conn, source, kind, parent, disk_id, change_id, payload_file, vm_config_file=None):
    data = open(payload_file, "rb").read()[:BLOCK]
    data += b"\0" * (BLOCK - len(data))
    digest = hashlib.sha256(data).digest()
    conn.sendall(frame(3, field_bytes(1, source.encode()) + field_bytes(2, kind.encode())
                       + field_bytes(3, parent.encode()) + field_int(4, 1)
                       + field_int(5, BLOCK) + field_int(6, 1)))
    num, body = recv_frame(conn)
    if refused_or(num, body, 4) is None:
        return
    conn.sendall(frame(5, field_int(1, 0) + field_bytes(2, b"disk 0") + field_int(3, BLOCK)
                       + field_bytes(4, change_id.encode()) + field_bytes(5, b"hotadd")
                       + field_bytes(6, disk_id.encode())))
    conn.sendall(frame(8, field_bytes(1, digest) + field_int(2, BLOCK) + field_int(3, 0)
                       + field_bytes(4, data)))
    conn.sendall(frame(9, field_int(1, 0) + field_int(2, 0) + field_bytes(3, digest)))
    conn.sendall(frame(10, field_int(1, 0)))
    record = open(vm_config_file, "rb").read() if vm_config_file else b""
    conn.sendall(frame(11, field_bytes(1, record) if record else b""))
    num, body = recv_frame(conn)
    body = refused_or(num, body, 12)
    if body is not None:
        bid = [v for f, _, v in fields(body) if f == 1][0]
        print(f"ACCEPTED {bid.decode()}")


def wide(conn, n, source):
    disks = 256
    for _ in range(int(n)):
        conn.sendall(frame(3, field_bytes(1, source.encode()) + field_bytes(2, b"vm")
                           + field_int(5, 1 << 16) + field_int(6, disks)))
        num, body = recv_frame(conn)
        if refused_or(num, body, 4) is None:
            return
        for d in range(disks):
            label = (f"[ds1] {d:03d}/" + "x" * 1023)[:1023].encode()
            conn.sendall(frame(5, field_int(1, d) + field_bytes(2, label) + field_int(3, 1 << 16)
                               + field_bytes(4, b"c" * 255) + field_bytes(5, b"https")
                               + field_bytes(6, b"u" * 127)))
            conn.sendall(frame(9, field_int(1, d) + field_bytes(3, b"")))
            conn.sendall(frame(10, field_int(1, d)))
        conn.sendall(frame(11, b""))
        num, body = recv_frame(conn)
        if refused_or(num, body, 12) is None:
            return
    print(f"ACCEPTED {n}")


def main():
    addr, pki, name, action = sys.argv[1:5]
    args = sys.argv[5:]
    conn = session(addr, pki, name)
    if action == "backup":
        backup(conn, *args)
    elif action == "wide":
        wide(conn, *args)
    elif action == "getmap":
        conn.sendall(frame(15, field_bytes(1, args[0].encode()) + field_int(2, 0)))
        num, body = recv_frame(conn)
        if refused_or(num, body, 9) is not None:
            print("ACCEPTED map")
    elif action == "getblocks":
        conn.sendall(frame(17, field_bytes(1, bytes.fromhex(args[0]))))
        num, body = recv_frame(conn)
        if refused_or(num, body, 18) is not None:
            print("ACCEPTED block")
    elif action in ("list", "listid"):
        req = b""
        if action == "listid":
            req = field_int(2, 1) + field_bytes(3, args[0].encode())
        conn.sendall(frame(13, req))
        num, body = recv_frame(conn)
        body = refused_or(num, body, 14)
        if body is not None:
            ids, more = [], 0
            for f, _, v in fields(body):
                if f == 1:
                    ids += [x.decode() for g, _, x in fields(v) if g == 1]
                elif f == 2:
                    more = v
            if action == "listid":
                print("ACCEPTED", len(ids), f"more={more}", *ids)
            else:
                print("ACCEPTED", len(ids), *ids)
    else:
        sys.exit(f"unknown action {action}")
    conn.close()


if __name__ == "__main__":
    main()
