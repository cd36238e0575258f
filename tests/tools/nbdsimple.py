"""A minimal NBD client over a Unix socket that negotiates nothing: the
fixed newstyle handshake ending in NBD_OPT_EXPORT_NAME, so the server gives
simple replies (no structured replies), as the kernel's nbd client gets.
For tests that need exact control of each read.

    c = Client(path)
    err, data = c.read(handle, offset, length)   # err 0: data is the bytes
"""
import socket
import struct

REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698


class Client:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self._recv(18)  # NBDMAGIC, IHAVEOPT, handshake flags
        self.s.sendall(struct.pack(">I", 3) + b"IHAVEOPT" + struct.pack(">II", 1, 0))
        self._recv(10)  # export size, transmission flags

    def _recv(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            assert c, "the server closed the connection"
            b += c
        return b

    def read(self, handle, offset, length):
        self.s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, 0, handle, offset, length))
        magic, err, h = struct.unpack(">IIQ", self._recv(16))
        assert magic == SIMPLE_REPLY_MAGIC and h == handle, (magic, h)
        return err, (self._recv(length) if err == 0 else b"")
