#!/usr/bin/env bash
# VM disks over the network transport modes (agent/vm_transport.c) against
# a fresh simulated vCenter of its own (it takes snapshots, writes disks and
# powers VMs off): starts build/bin/ferry-vcsim with 16 MiB disks, turns its
# ready file into a config and runs test_vm_transport in a private
# directory (its TMPDIR, where nbdkit's directories must not outlive it).
#
# usage: vm_transport.sh [--esx]   (BIN, TESTS, TOOLS, SRC in the environment)
set -euo pipefail
: "${SRC:?SRC must point at the source tree}"
source "$SRC/tests/integration/lib.sh"
: "${TESTS:?TESTS must point at build/tests}"
MODE=${1:-}
[[ -x "$BIN/ferry-vcsim" ]] || { echo "SKIP: $BIN/ferry-vcsim is not built (tests/vcsim)"; exit 77; }

start_vcsim --disk-size 16777216 $MODE
mkdir "$T/work"
"$TESTS/test_vm_transport" "$T/test.conf" "$T/work"
