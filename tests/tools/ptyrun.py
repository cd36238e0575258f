#!/usr/bin/env python3
"""Runs a command on a pseudo-terminal of a given width, as a user would see
it, and checks its progress lines fit.

    ptyrun.py COLS CMD [ARG...]

The terminal's size is set in the child before CMD runs (it reads it at its
first line). Every progress line CMD draws (those with "% of", each redraw
after a carriage return) is printed on stdout, one per line, without the
erase-to-end-of-line escape. Exits with CMD's status; 1 when CMD drew no
progress line or a line as wide as the terminal (which would wrap),
saying which on stderr.
"""
import fcntl
import os
import pty
import re
import struct
import sys
import termios


def main():
    cols, argv = int(sys.argv[1]), sys.argv[2:]
    pid, fd = pty.fork()
    if pid == 0:
        fcntl.ioctl(2, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
        os.execv(argv[0], argv)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    text = out.decode(errors="replace").replace("\x1b[K", "")
    lines = [l for l in re.split(r"[\r\n]", text) if "% of" in l]
    for l in lines:
        print(l)
    if os.WEXITSTATUS(status):
        sys.stderr.write(text)
        return os.WEXITSTATUS(status)
    if not lines:
        sys.stderr.write(f"no progress line in: {text}\n")
        return 1
    wide = [l for l in lines if len(l) >= cols]
    if wide:
        sys.stderr.write(f"{len(wide[0])} columns on a {cols}-column terminal: {wide[0]}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
