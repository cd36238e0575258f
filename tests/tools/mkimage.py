#!/usr/bin/env python3
"""Generates disk images with a realistic mix for Ferry's tests, demo and
benchmarks, deterministically from a seed:

  mkimage.py create PATH SIZE [--seed N] [--sparse]
      about a third zeros (left as holes with --sparse), duplicated
      regions, compressible text-like data and random data; SIZE may be
      any byte count (an odd size tests the last partial block).
  mkimage.py mutate PATH --regions N [--region-size B] [--seed N]
      overwrites N scattered regions (default 64 KiB) with new random data
      and prints their offsets, one per line.
"""
import argparse
import os
import random

CHUNK = 1 << 20
WORDS = (b"backup proxy snapshot datastore vmdk cluster host guest kernel "
         b"block extent journal tracking changed areas repository manifest "
         b"digest zstd thin thick provisioned lun controller scsi unit "
         b"the of and to in is for with on at by from").split()


def text_chunk(rng, n):
    out = bytearray()
    while len(out) < n:
        line = b" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))
        out += line + b"\n"
    return bytes(out[:n])


def create(path, size, seed, sparse):
    rng = random.Random(seed)
    earlier = []  # random chunks to duplicate later
    # Text is cut from one long generated text at random places and
    # stamped with a serial number: unique per chunk, yet compressible.
    corpus = text_chunk(rng, 8 * CHUNK)
    serial = 0
    with open(path, "wb") as f:
        f.truncate(0)
        off = 0
        while off < size:
            n = min(CHUNK, size - off)
            kind = rng.random()
            if kind < 0.33:
                data = None  # zeros
            elif kind < 0.43 and earlier:
                data = rng.choice(earlier)[:n]
            elif kind < 0.73:
                start = rng.randrange(0, len(corpus) - n + 1)
                stamp = b"chunk %d seed %d\n" % (serial, seed)
                serial += 1
                data = stamp + corpus[start + len(stamp):start + n]
            else:
                data = rng.randbytes(n)
                if len(earlier) < 64:
                    earlier.append(data)
            if data is None:
                if not sparse:
                    f.seek(off)
                    f.write(bytes(n))
            else:
                if len(data) < n:
                    data = data + bytes(n - len(data))
                f.seek(off)
                f.write(data)
            off += n
        f.truncate(size)


def mutate(path, regions, region_size, seed):
    rng = random.Random(seed)
    size = os.path.getsize(path)
    slots = max(1, size // region_size)
    picked = sorted(rng.sample(range(slots), min(regions, slots)))
    with open(path, "r+b") as f:
        for s in picked:
            off = s * region_size
            n = min(region_size, size - off)
            f.seek(off)
            f.write(rng.randbytes(n))
            print(off)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create")
    c.add_argument("path")
    c.add_argument("size", type=int)
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--sparse", action="store_true")
    m = sub.add_parser("mutate")
    m.add_argument("path")
    m.add_argument("--regions", type=int, required=True)
    m.add_argument("--region-size", type=int, default=64 << 10)
    m.add_argument("--seed", type=int, default=2)
    a = ap.parse_args()
    if a.cmd == "create":
        create(a.path, a.size, a.seed, a.sparse)
    else:
        mutate(a.path, a.regions, a.region_size, a.seed)


if __name__ == "__main__":
    main()
