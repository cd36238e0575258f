#!/usr/bin/env bash
# ferry restore decodes blocks on worker threads and writes them in disk
# order: a disk of many blocks (runs of holes longer than one write, data
# between them, a short last block) restores byte for byte to a file and to
# a pipe, at the smallest and the default block size; a bad block in the
# middle fails the restore by index and digest after everything before it
# was written, and the process ends (no thread left waiting, nothing leaked
# in a sanitizer build).
source "$(dirname "$0")/lib.sh"

make_certs
start_repo
cp "$T/agent.conf" "$T/agent-1m.conf"
printf 'ferry.blockSize=65536\n' >>"$T/agent.conf"

# layout.py PATH BLOCK: every data block different (so a damaged one is
# used once), holes in runs of 1 to 300 blocks, an odd size.
cat >"$T/layout.py" <<'PY'
import random, sys
path, bs = sys.argv[1], int(sys.argv[2])
rnd = random.Random(7)
out = bytearray()
runs = [0, 2, 1, 300, 5, 0, 140, 3, 1, 0]
for i, holes in enumerate(runs):
    out += bytes(holes * bs)
    for _ in range(rnd.randint(1, 40)):
        if rnd.random() < 0.5:
            out += rnd.randbytes(bs)                      # stored raw
        else:
            out += (b"block %d " % len(out)) * (bs // 16)  # compressed
            out += bytes(bs - len(out) % bs if len(out) % bs else 0)
out += rnd.randbytes(bs // 3)
open(path, "wb").write(out)
PY

restore() { "$FERRY" --config "$T/agent.conf" restore "$@"; }

for bs in 65536 1048576; do
  note "block size $bs: to a file and to a pipe"
  conf=$T/agent.conf; [[ $bs == 1048576 ]] && conf=$T/agent-1m.conf
  python3 "$T/layout.py" "$T/d$bs.img" "$bs"
  "$AGENT" backup --config "$conf" --source "$T/d$bs.img" --json --quiet >"$T/last.json"
  id=$(json "$T/last.json" 'j["backup_id"]')
  restore "$id" --disk 0 --output "$T/r$bs.img"
  same_file "$T/d$bs.img" "$T/r$bs.img"
  restore "$id" --disk 0 --output - | cat >"$T/s$bs.img"
  same_file "$T/d$bs.img" "$T/s$bs.img"
  ids[$bs]=$id
done

note "ferry.workers sets the restore's decode workers"
cp "$T/agent-1m.conf" "$T/agent-w3.conf"
printf 'ferry.workers=3\n' >>"$T/agent-w3.conf"
"$FERRY" --config "$T/agent-w3.conf" --log-level 6 restore "${ids[1048576]}" --disk 0 --output "$T/w3.img" 2>"$T/w3.log"
same_file "$T/d1048576.img" "$T/w3.img"
grep -q "restore: 3 decode workers" "$T/w3.log" || fail "ferry.workers=3: $(grep 'decode workers' "$T/w3.log")"

note "a bad block in the middle: named, everything before it written"
bs=65536
img=$T/d$bs.img
size=$(stat -c %s "$img")
nblocks=$(( (size + bs - 1) / bs ))
# The data block nearest the middle.
read -r bad hex < <(python3 - "$img" "$bs" <<'PY'
import hashlib, sys
d = open(sys.argv[1], "rb").read()
bs = int(sys.argv[2])
n = (len(d) + bs - 1) // bs
for k in sorted(range(n), key=lambda k: abs(k - n // 2)):
    b = d[k * bs:(k + 1) * bs]
    if any(b):
        print(k, hashlib.sha256(b).hexdigest()); break
PY
)
(( bad > 20 && bad < nblocks - 20 )) || fail "block $bad of $nblocks is not in the middle"
corrupt_block "$hex" 40 'XXXX'

for out in file pipe; do
  rc=0
  if [[ $out == file ]]; then
    timeout 120 "$FERRY" --config "$T/agent.conf" restore "${ids[$bs]}" --disk 0 \
      --output "$T/bad.img" --force 2>"$T/err" || rc=$?
    head -c $((bad * bs)) "$T/bad.img" >"$T/bad.prefix"
  else
    rm -f "$T/fifo"; mkfifo "$T/fifo"
    cat "$T/fifo" >"$T/bad.prefix" &
    timeout 120 "$FERRY" --config "$T/agent.conf" restore "${ids[$bs]}" --disk 0 \
      --output - >"$T/fifo" 2>"$T/err" || rc=$?
    wait $!
    # A stream stops right before the bad block.
    [[ $(stat -c %s "$T/bad.prefix") == $((bad * bs)) ]] ||
      fail "pipe: $(stat -c %s "$T/bad.prefix") bytes before the bad block at $((bad * bs))"
  fi
  [[ $rc != 124 ]] || fail "$out: the restore hung after a bad block"
  [[ $rc != 0 ]] || fail "$out: the restore of a bad block succeeded"
  grep -q "block $bad: block $hex" "$T/err" || fail "$out: the error does not name block $bad ($hex): $(cat "$T/err")"
  grep -q "Sanitizer" "$T/err" && fail "$out: $(cat "$T/err")"
  head -c $((bad * bs)) "$img" | cmp - "$T/bad.prefix" >/dev/null ||
    fail "$out: what came before the bad block differs"
done

note "an O_DIRECT output is written through libaio, several writes in flight"
"$FERRY" --config "$T/agent-1m.conf" --log-level 6 restore "${ids[1048576]}" --disk 0 \
  --output "$T/aio.img" 2>"$T/aio.log"
same_file "$T/d1048576.img" "$T/aio.img"
grep -q "4 write(s) in flight" "$T/aio.log" ||
  fail "a file output is not written through libaio: $(grep 'decode workers' "$T/aio.log")"

if [[ $(id -u) -ne 0 ]] || ! command -v losetup >/dev/null || ! command -v mkfs.ext4 >/dev/null; then
  echo "restore_order: SKIP of the block device and full file system cases (need root, losetup, mkfs.ext4)"
  exit 77
fi

note "to a block device: O_DIRECT and libaio, the disk's bytes, holes written as zeros"
size1m=$(stat -c %s "$T/d1048576.img")
# 0xff everywhere, 2 to 3 MiB more than the disk, in whole MiB.
python3 -c 'import sys; M = 1 << 20; open(sys.argv[1], "wb").write(b"\xff" * ((int(sys.argv[2]) // M + 3) * M))' \
  "$T/dev.img" "$size1m"
dev=$(losetup -f --show "$T/dev.img"); CLEANUP_CMDS+=("losetup -d $dev")
"$FERRY" --config "$T/agent-1m.conf" --log-level 6 restore "${ids[1048576]}" --disk 0 \
  --output "$dev" 2>"$T/dev.log"
grep -q "4 write(s) in flight" "$T/dev.log" ||
  fail "a block device is not written through libaio: $(grep 'decode workers' "$T/dev.log")"
cmp -n "$size1m" "$T/d1048576.img" "$dev" >/dev/null || fail "the block device differs from the disk"
# Past the disk, the device is left as it was.
[[ $(tail -c 1048576 "$dev" | tr -d '\377' | wc -c) == 0 ]] || fail "the device was written past the disk"

note "a file system that fills up: the restore fails naming the write, and ends"
truncate -s 8M "$T/small.fs"
mkfs.ext4 -q -F "$T/small.fs"
mkdir "$T/small"
mount -o loop "$T/small.fs" "$T/small"; CLEANUP_CMDS+=("umount $T/small")
(( size1m > 8 * 1048576 )) || fail "the test disk ($size1m bytes) would fit the small file system"
rc=0
timeout 120 "$FERRY" --config "$T/agent-1m.conf" restore "${ids[1048576]}" --disk 0 \
  --output "$T/small/r.img" 2>"$T/full.err" || rc=$?
[[ $rc != 124 ]] || fail "the restore hung on a full file system"
[[ $rc == 1 ]] || fail "a restore into a full file system: exit $rc: $(cat "$T/full.err")"
grep -q "No space left on device" "$T/full.err" && grep -q "block [0-9]*" "$T/full.err" ||
  fail "a full file system: $(cat "$T/full.err")"
grep -q "Sanitizer" "$T/full.err" && fail "$(cat "$T/full.err")"
echo "restore_order: OK"
