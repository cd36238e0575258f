#!/usr/bin/env bash
# Back up an image with holes, duplicate blocks, compressible and random
# regions and an odd size; restore it byte for byte; back it up again and
# see nothing sent; change a few blocks and see only those sent.
source "$(dirname "$0")/lib.sh"

make_certs
start_repo

size=$((40 * 1024 * 1024 + 4321))   # not a multiple of the block size
mkimage create "$T/disk.img" "$size" --seed 7 --sparse
mkimage create "$T/disk2.img" $((3 * 1024 * 1024)) --seed 8

note "full backup of two disks"
backup_json "$T/disk.img" "$T/disk2.img"
id1=$(json "$T/last.json" 'j["backup_id"]')
blocks=$(json "$T/last.json" 'j["disks"][0]["blocks"]')
[[ "$blocks" == 41 ]] || fail "expected 41 blocks, got $blocks"
zero=$(json "$T/last.json" 'j["disks"][0]["bytes_zero"]')
[[ "$zero" -gt 0 ]] || fail "no zero bytes detected in an image with holes"
read_bytes=$(json "$T/last.json" 'j["disks"][0]["bytes_read"]')
[[ "$read_bytes" -lt "$size" ]] || fail "holes were read ($read_bytes of $size)"
sent=$(json "$T/last.json" 'j["disks"][0]["bytes_sent"]')
new=$(json "$T/last.json" 'j["disks"][0]["bytes_new"]')
[[ "$sent" -lt "$new" ]] || fail "nothing was compressed ($sent of $new)"
[[ $(json "$T/last.json" 'j["disks"][0]["transport"]') == file ]] || fail "transport not reported"

note "list"
[[ $(backup_count) == 1 ]] || fail "list does not show one backup"
[[ $(json "$T/list.json" 'j[0]["id"]') == "$id1" ]] || fail "list shows another id"
[[ $(json "$T/list.json" 'len(j[0]["disks"])') == 2 ]] || fail "list lost a disk"
"$FERRY" --config "$T/agent.conf" list | grep -q "$id1" || fail "table lacks the id"

note "restore both disks to files and disk 0 to stdout"
"$FERRY" --config "$T/agent.conf" restore "$id1" --disk 0 --output "$T/r0.img"
"$FERRY" --config "$T/agent.conf" restore "$id1" --disk 1 --output "$T/r1.img"
"$FERRY" --config "$T/agent.conf" restore "$id1" --disk 0 --output - >"$T/r0.stdout"
same_file "$T/disk.img" "$T/r0.img"
same_file "$T/disk2.img" "$T/r1.img"
same_file "$T/disk.img" "$T/r0.stdout"
# Holes come back as holes.
alloc=$(du -k "$T/r0.img" | cut -f1)
[[ "$alloc" -lt $((size / 1024)) ]] || fail "restore is not sparse ($alloc KiB)"

note "second backup sends nothing"
backup_json "$T/disk.img"
[[ $(json "$T/last.json" 'j["disks"][0]["blocks_sent"]') == 0 ]] || fail "unchanged disk sent blocks"
dedup=$(json "$T/last.json" 'j["disks"][0]["bytes_deduplicated"]')
[[ "$dedup" -gt 0 ]] || fail "no deduplicated bytes reported"

note "change three blocks: exactly those are sent"
for off in 5 17 33; do
  printf 'changed block %d' "$off" | dd of="$T/disk.img" bs=1 seek=$((off * 1048576 + 100)) conv=notrunc status=none
done
backup_json "$T/disk.img"
id3=$(json "$T/last.json" 'j["backup_id"]')
[[ $(json "$T/last.json" 'j["disks"][0]["blocks_sent"]') == 3 ]] || fail "expected 3 blocks sent: $(cat "$T/last.json")"
"$FERRY" --config "$T/agent.conf" restore "$id3" --disk 0 --output "$T/r3.img"
same_file "$T/disk.img" "$T/r3.img"
# The first backup still restores the first state.
"$FERRY" --config "$T/agent.conf" restore "$id1" --disk 0 --output "$T/r1b.img"
same_file "$T/r0.img" "$T/r1b.img"

note "an existing file is not overwritten without --force"
cp "$T/r3.img" "$T/keep.img"
rc=0
"$FERRY" --config "$T/agent.conf" restore "$id1" --disk 0 --output "$T/r3.img" 2>"$T/force.err" || rc=$?
[[ $rc == 1 ]] || fail "restore over an existing file exited $rc"
grep -q "r3.img exists; --force replaces it" "$T/force.err" || fail "no refusal: $(cat "$T/force.err")"
same_file "$T/keep.img" "$T/r3.img"
"$FERRY" --config "$T/agent.conf" restore "$id1" --disk 0 --output "$T/r3.img" --force
same_file "$T/r0.img" "$T/r3.img"

note "block sizes 64 KiB and 8 MiB"
for bs in 65536 8388608; do
  "$AGENT" backup --config "$T/agent.conf" --source "$T/disk.img" --block-size $bs --json --quiet >"$T/bs.json"
  id=$(json "$T/bs.json" 'j["backup_id"]')
  "$FERRY" --config "$T/agent.conf" restore "$id" --disk 0 --output "$T/rbs.img" --force
  same_file "$T/disk.img" "$T/rbs.img"
done

note "a few blocks repeated across many queries: each sent once"
# 1200 blocks of 64 KiB cycling through three patterns: many queries are
# in flight at once (they are pipelined), and a repeat whose query went
# out before the first copy was put must not be sent again.
python3 - "$T/cycle.img" <<'PY'
import random, sys
rnd = random.Random(99)
pats = [bytes(rnd.getrandbits(8) for _ in range(65536)) for _ in range(3)]
with open(sys.argv[1], "wb") as f:
    for i in range(1200):
        f.write(pats[i % 3])
PY
"$AGENT" backup --config "$T/agent.conf" --source "$T/cycle.img" --block-size 65536 --json --quiet >"$T/cycle.json"
[[ $(json "$T/cycle.json" 'j["disks"][0]["blocks_sent"]') == 3 ]] || fail "repeated blocks sent more than once: $(cat "$T/cycle.json")"
id=$(json "$T/cycle.json" 'j["backup_id"]')
"$FERRY" --config "$T/agent.conf" restore "$id" --disk 0 --output "$T/rcycle.img"
same_file "$T/cycle.img" "$T/rcycle.img"

note "three agents back up into the repository at the same time"
for n in 1 2 3; do
  mkimage create "$T/par$n.img" $((12 * 1024 * 1024)) --seed $((30 + n))
  # Shared content across the three, so they race on the same digests.
  dd if="$T/disk2.img" of="$T/par$n.img" bs=1M count=3 seek=4 conv=notrunc status=none
done
pids=()
for n in 1 2 3; do
  "$AGENT" backup --config "$T/agent.conf" --source "$T/par$n.img" --json --quiet >"$T/par$n.json" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent backup failed"; done
for n in 1 2 3; do
  id=$(json "$T/par$n.json" 'j["backup_id"]')
  "$FERRY" --config "$T/agent.conf" restore "$id" --disk 0 --output "$T/rpar.img" --force
  same_file "$T/par$n.img" "$T/rpar.img"
done

note "verify is clean"
"$REPO" verify --root "$T/repo" >"$T/verify.out" || { cat "$T/verify.out"; fail "verify found damage"; }
echo "roundtrip: ok"
