# Shared helpers for the san tests. TESTS is build/tests (vmfs_cat), TOOLS
# tests/tools (mkvmfs6), BIN build/bin.
set -euo pipefail

: "${TESTS:?TESTS must point at build/tests}"
: "${TOOLS:?TOOLS must point at tests/tools}"
MKVMFS6="$TOOLS/mkvmfs6"
VMFS_CAT="$TESTS/vmfs_cat"
MARKER="FERRY-STALE-MARKER"

S=$(mktemp -d "${TMPDIR:-/tmp}/ferry-san.XXXXXX")
SAN_CLEANUP=()
san_cleanup() {
  local rc=$?
  for c in "${SAN_CLEANUP[@]:-}"; do [[ -n "$c" ]] && eval "$c" || true; done
  rm -rf "$S"
  exit $rc
}
trap san_cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "--- $*"; }

# Source files of every shape the fixtures need, deterministic.
make_sources() {
  python3 - "$S" <<'EOF'
import random, sys
d = sys.argv[1]
r = random.Random(7)
M = 1 << 20
def w(name, data):
    open(f"{d}/{name}", "wb").write(bytes(data))
w("resident.txt", b"a file small enough to live in its descriptor\n" * 40)
w("sub.bin", r.randbytes(300000))
sub_thin = bytearray(5 * 65536); sub_thin[3 * 65536:3 * 65536 + 100] = r.randbytes(100)
w("sub-thin.bin", sub_thin)
w("thick.bin", r.randbytes(9 * M + 12345))
# thin, first block a hole, a hole in the middle, data at the end
t = bytearray(12 * M); t[1 * M:2 * M] = r.randbytes(M); t[7 * M + 4096:7 * M + 8192] = r.randbytes(4096)
t[11 * M:] = r.randbytes(M)
w("thin-hole-first.bin", t)
# thin, data first, then holes and data
u = bytearray(8 * M); u[0:M] = r.randbytes(M); u[5 * M:6 * M] = r.randbytes(M)
w("thin-data-first.bin", u)
# lazy-zeroed: blocks with some eighths written, one block never written
z = bytearray(6 * M)
z[0:M] = r.randbytes(M)
z[M + 3 * 131072:M + 5 * 131072] = r.randbytes(2 * 131072)
z[4 * M:4 * M + 4096] = r.randbytes(4096)
w("lazy.bin", z)
w("small-lfb.bin", r.randbytes(3 * M + 777))
# 70 MiB: the second eighth of its 512 MiB block (64-128 MiB) is zeros
lz = bytearray(70 * M); lz[0:M] = r.randbytes(M)
w("lfb-lazy.bin", lz)
# a disk larger than one pointer block's reach would be 8 GiB; indirect
# files here are small: the layout, not the size, is what is tested.
w("indirect.bin", r.randbytes(4 * M) + bytes(3 * M) + r.randbytes(M))
w("cross.bin", r.randbytes(12 * M))
EOF
}

# cat_oracle IMG[,IMG2] PATH OUT: debugvmfs6 cat, minus its "VMFS version"
# line per LUN on stdout.
cat_oracle() {
  local imgs=(${1//,/ }) n
  n=$(( ${#imgs[@]} * 16 ))
  debugvmfs6 "${imgs[@]}" cat "$2" 2>"$S/oracle.err" | tail -c +$((n + 1)) >"$3"
}
