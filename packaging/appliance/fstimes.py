#!/usr/bin/env python3
"""Sets the access and change time of every inode of an ext4 image to one
time (SOURCE_DATE_EPOCH), for a reproducible appliance disk.

  fstimes.py IMAGE EPOCH

Debian 12's mke2fs -d (e2fsprogs 1.47.0) copies each inode's atime and
ctime from the tree it is given, and a tree unpacked during the build has
the build's clock there (ctime cannot be set from user space). Its
E2FSPROGS_FAKE_TIME covers only the times mke2fs makes up itself
(superblock, crtime, lost+found). This walks the image's directories with
debugfs by inode number (no path quoting: names are whatever the packages
ship) and rewrites both times with `set_inode_field`. mtimes are the
packages' own, clamped in the tree before mke2fs (scripts/appliance).
"""
import subprocess
import sys


def debugfs(image, commands, write=False):
    args = ["debugfs"] + (["-w"] if write else []) + ["-f", "-", image]
    p = subprocess.run(args, input="\n".join(commands) + "\n", capture_output=True,
                       text=True, check=False)
    if p.returncode != 0:
        sys.exit(f"fstimes.py: debugfs failed: {p.stderr.strip()}")
    return p.stdout, p.stderr


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: fstimes.py IMAGE EPOCH")
    image, epoch = argv[1], int(argv[2])
    seen = {2}
    level = [2]
    while level:
        out, _ = debugfs(image, [f"ls -l <{ino}>" for ino in level])
        nxt = []
        for line in out.splitlines():
            f = line.split()
            # " INODE MODE (TYPE) UID GID SIZE DATE TIME NAME"
            if len(f) < 3 or not f[0].isdigit() or not f[2].startswith("("):
                continue
            ino, mode = int(f[0]), f[1]
            if not all(c in "01234567" for c in mode):
                continue
            if ino == 0 or ino in seen:
                continue
            seen.add(ino)
            # A directory whatever its sticky, setuid and setgid bits.
            if int(mode, 8) & 0o170000 == 0o040000:
                nxt.append(ino)
        level = nxt
    # Inodes mke2fs owns that the walk does not reach: the journal (8) and
    # the resize inode (7), whose times it took from the clock.
    seen.update({7, 8})
    cmds = []
    for ino in sorted(seen):
        cmds.append(f"sif <{ino}> atime @{epoch}")
        cmds.append(f"sif <{ino}> ctime @{epoch}")
    _, err = debugfs(image, cmds, write=True)
    bad = [l for l in err.splitlines() if l and not l.startswith("debugfs ")]
    if bad:
        sys.exit("fstimes.py: debugfs: " + "; ".join(bad[:5]))
    print(f"fstimes.py: {len(seen)} inodes set to {epoch}")


if __name__ == "__main__":
    main(sys.argv)
