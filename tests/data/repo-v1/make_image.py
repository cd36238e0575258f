#!/usr/bin/env python3
"""Writes legacy.img, the disk that tests/data/repo-v1 holds one backup of.

repo-v1 is a repository written by Ferry 0.1.0 (commit 773a1b5, before
owners and namespaces existed): `ferry-repo init`, then `ferry-agent backup
--source legacy.img` with ferry.blockSize=65536 and a certificate without a
role. Kept so that every later build proves it still lists, restores,
verifies and adopts what an old one wrote (tests/integration/legacy.sh).
usage: make_image.py OUT
"""
import sys

b = (b"Ferry legacy sample, block 0. " * 3000)[:65536]
b += bytes(65536)
b += (b"Ferry legacy sample, block 2: written by Ferry 0.1.0 before owners. " * 1000)[:65536]
b += (b"tail " * 2000)[:10000]
open(sys.argv[1], "wb").write(b)
