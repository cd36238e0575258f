#!/usr/bin/env python3
"""A guestfwd helper: QEMU runs it for each connection the guest opens to a
forwarded address, with the connection on stdin/stdout; it relays the bytes
to 127.0.0.1:PORT and back. Loopback only, by construction.

  loopfwd.py PORT
"""
import os
import selectors
import socket
import sys


def main():
    port = int(sys.argv[1])
    s = socket.create_connection(("127.0.0.1", port))
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ)
    sel.register(s, selectors.EVENT_READ)
    open_in = True
    while True:
        for key, _ in sel.select():
            if key.fileobj == 0:
                b = os.read(0, 65536)
                if not b:
                    sel.unregister(0)
                    open_in = False
                    s.shutdown(socket.SHUT_WR)
                    continue
                s.sendall(b)
            else:
                b = s.recv(65536)
                if not b:
                    return
                view = memoryview(b)
                while view:
                    n = os.write(1, view)
                    view = view[n:]
        if not open_in and not sel.get_map():
            return


if __name__ == "__main__":
    main()
