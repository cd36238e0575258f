#!/usr/bin/env bash
# integration.progress: the progress line on a terminal fits the terminal
# (fields are dropped, never wrapped) at 40, 60 and 80 columns, and ends at
# 100% once the backup is done. The agent runs on a real pseudo-terminal
# of that size.
source "$(dirname "$0")/lib.sh"

make_certs
start_repo
mkimage create "$T/p.img" $((24 * 1024 * 1024)) --seed 51
for cols in 40 60 80; do
  python3 - "$AGENT" "$T/agent.conf" "$T/p.img" "$cols" <<'PY' || fail "progress at $cols columns"
import fcntl, os, pty, re, struct, sys, termios
agent, conf, img, cols = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
pid, fd = pty.fork()
if pid == 0:
    os.execv(agent, [agent, "backup", "--config", conf, "--source", img])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
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
assert os.WEXITSTATUS(status) == 0, out
text = out.decode(errors="replace").replace("\x1b[K", "")
lines = [l for l in re.split(r"[\r\n]", text) if "% of" in l]
assert lines, text
for l in lines:
    assert len(l) < cols, (cols, len(l), l)
assert lines[-1].lstrip().startswith("100%"), lines[-1]
PY
done
echo "progress: OK"
