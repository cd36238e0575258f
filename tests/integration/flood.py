#!/usr/bin/env python3
"""Connections that never authenticate, held open against a Ferry server.

    flood.py HOST:PORT IDLE STALLED READY_FILE STOP_FILE

Opens IDLE plain TCP connections that never send a byte and STALLED TLS
connections that send a real ClientHello (Python's ssl, TLS 1.3) and then
nothing, writes READY_FILE ("IDLE STALLED") once all are opened, and holds
them until STOP_FILE appears (at most 120 s), then closes them all.
Loopback only: the host must be 127.0.0.1. Exit 0, or 1 with a reason.
"""
import os
import socket
import ssl
import sys
import time


def main():
    hostport, idle, stalled, ready, stop = sys.argv[1:6]
    host, port = hostport.rsplit(":", 1)
    if host != "127.0.0.1":
        sys.exit("flood.py: loopback only, not %s" % host)
    port = int(port)
    held = []
    for _ in range(int(idle)):
        held.append(socket.create_connection((host, port), timeout=10))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    hellos = 0
    for _ in range(int(stalled)):
        s = socket.create_connection((host, port), timeout=10)
        s.setblocking(False)
        t = ctx.wrap_socket(s, do_handshake_on_connect=False)
        try:
            t.do_handshake()  # sends the ClientHello, then would wait
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            hellos += 1
        except (ssl.SSLError, OSError):
            hellos += 1  # the server already dropped it: fine
        held.append(t)
    with open(ready + ".tmp", "w") as f:
        f.write("%d %d\n" % (int(idle), hellos))
    os.rename(ready + ".tmp", ready)
    deadline = time.monotonic() + 120
    while not os.path.exists(stop) and time.monotonic() < deadline:
        time.sleep(0.1)
    for s in held:
        try:
            s.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
