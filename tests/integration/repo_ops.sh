#!/usr/bin/env bash
# verify, prune and gc on a served repository: verify names the damaged
# backup and block; prune keeps what its policy keeps; gc frees only blocks
# no backup references, and waits for a backup running at the same moment.
source "$(dirname "$0")/lib.sh"

make_certs
start_repo
mkimage create "$T/a.img" $((6 * 1024 * 1024)) --seed 11
mkimage create "$T/b.img" $((6 * 1024 * 1024)) --seed 12

ids=()
for i in 1 2 3; do
  printf 'version %d' "$i" | dd of="$T/a.img" bs=1 seek=100 conv=notrunc status=none
  backup_json "$T/a.img"
  ids+=("$(json "$T/last.json" 'j["backup_id"]')")
  sleep 1.1   # distinct ids and times
done
backup_json "$T/b.img"
idb=$(json "$T/last.json" 'j["backup_id"]')

note "verify: clean, then a corrupted block is found and named"
"$REPO" verify --root "$T/repo" >"$T/v1" || { cat "$T/v1"; fail "clean repository reported damage"; }
# Corrupt the block holding the first MiB of a.img as its last backup saw
# it ("version 3"): blocks are stored under their SHA-256.
hex=$(head -c 1048576 "$T/a.img" | sha256sum | cut -d' ' -f1)
corrupt_block "$hex" 40 'XXXX'
if "$REPO" verify --root "$T/repo" >"$T/v2"; then fail "verify missed a corrupt block"; fi
grep -q "$hex" "$T/v2" || { cat "$T/v2"; fail "verify did not name the block"; }
grep -q "${ids[2]}" "$T/v2" || { cat "$T/v2"; fail "verify did not name the damaged backup"; }
# A restore of the damaged backup fails instead of writing bad data.
if "$FERRY" --config "$T/agent.conf" restore "${ids[2]}" --disk 0 --output "$T/bad.img" 2>"$T/err"; then
  fail "restore of a corrupt block succeeded"
fi
cat "$T/err"
note "verify --repair deletes the corrupt block; the next backup stores it again"
if "$REPO" verify --root "$T/repo" --repair >"$T/v3"; then fail "verify --repair hid the damage"; fi
grep -q "repair: deleted corrupt block $hex" "$T/v3" || { cat "$T/v3"; fail "repair did not delete the block"; }
if block_stored "$hex"; then fail "corrupt block still stored"; fi
grep -q '"action":"repair","detail":"deleted 1 corrupt blocks' "$T/repo/audit.log" || fail "repair not audited"
backup_json "$T/a.img"
[[ $(json "$T/last.json" 'j["disks"][0]["blocks_sent"]') == 1 ]] || fail "the repaired block was not sent again"
ids+=("$(json "$T/last.json" 'j["backup_id"]')")
"$FERRY" --config "$T/agent.conf" restore "${ids[3]}" --disk 0 --output "$T/r4.img"
same_file "$T/a.img" "$T/r4.img"
# Blocks are stored by content: the re-sent block heals the old backup too.
"$REPO" verify --root "$T/repo" >"$T/v4" || { cat "$T/v4"; fail "old backup not healed"; }
"$FERRY" --config "$T/agent.conf" restore "${ids[2]}" --disk 0 --output "$T/r3.img"
same_file "$T/a.img" "$T/r3.img"

note "prune --keep-last 1 keeps the newest per source"
if "$REPO" prune --root "$T/repo" >/dev/null 2>&1; then fail "prune without a policy removed backups"; fi
"$REPO" prune --root "$T/repo" --keep-last 1 --dry-run >"$T/p0"
[[ $(backup_count) == 5 ]] || fail "dry run removed backups"
"$REPO" prune --root "$T/repo" --keep-last 1 >"$T/p1"
"$FERRY" --config "$T/agent.conf" list --json >"$T/list.json"
kept=$(json "$T/list.json" '" ".join(sorted(b["id"] for b in j))')
[[ "$kept" == "$(printf '%s\n' "${ids[3]}" "$idb" | sort | tr '\n' ' ' | sed 's/ $//')" ]] || fail "prune kept: $kept"

note "gc frees the blocks only the pruned backups used"
# How many blocks the repository holds, as gc counts them.
stored_blocks() {
  "$REPO" gc --root "$T/repo" --dry-run | sed -n 's/.* blocks; \([0-9]*\) stored;.*/\1/p'
}
blocks_before=$(stored_blocks)
"$REPO" gc --root "$T/repo" --dry-run >"$T/g0"
grep -q "would delete 2 unreferenced blocks" "$T/g0" || { cat "$T/g0"; fail "gc dry run: not 2 blocks to delete"; }
[[ $(stored_blocks) == "$blocks_before" ]] || fail "gc dry run deleted blocks"
"$REPO" gc --root "$T/repo" >"$T/g1"
cat "$T/g1"
blocks_after=$(stored_blocks)
[[ "$blocks_after" -eq $((blocks_before - 2)) ]] || fail "gc deleted $((blocks_before - blocks_after)) blocks, expected 2"
for id in "${ids[3]}" "$idb"; do
  "$FERRY" --config "$T/agent.conf" restore "$id" --disk 0 --output "$T/r.img" --force
done
same_file "$T/b.img" "$T/r.img"
"$REPO" verify --root "$T/repo" >/dev/null || fail "verify after gc"

note "gc during a backup waits for it and frees none of its blocks"
head -c $((48 * 1024 * 1024)) /dev/urandom >"$T/c.img"
"$AGENT" backup --config "$T/agent.conf" --source "$T/c.img" --quiet --json \
  --compression-level 19 >"$T/c.json" 2>"$T/c.err" &
agent=$!
# Under way once its first 4 MiB are in its pack in tmp/.
for _ in $(seq 1 600); do
  [[ $(du -sb "$T/repo/tmp" | cut -f1) -ge $((4 * 1048576)) ]] && break
  sleep 0.05
done
"$REPO" gc --root "$T/repo" --log-level 4 >"$T/g2" 2>&1
grep -qi "wait" "$T/g2" || { cat "$T/g2"; fail "gc did not wait for the running backup"; }
wait "$agent" || { cat "$T/c.err" "$T/g2"; fail "backup failed while gc ran"; }
idc=$(json "$T/c.json" 'j["backup_id"]')
"$FERRY" --config "$T/agent.conf" restore "$idc" --disk 0 --output "$T/rc.img"
same_file "$T/c.img" "$T/rc.img"
"$REPO" verify --root "$T/repo" >/dev/null || fail "verify after concurrent gc"
echo "repo_ops: ok"
