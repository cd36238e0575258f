#!/usr/bin/env bash
# Repository format 2 with the real binaries: gc deletes packs without a
# referenced block and repacks the mostly unreferenced ones, and every kept
# backup still restores exactly; migrate turns a format 1 repository with
# backups into format 2 (also after a run that stopped before its switch,
# or after it, emulated by the leftovers such a run leaves), and a
# format 1 repository keeps serving until then.
source "$(dirname "$0")/lib.sh"

make_certs

note "migrate: a format 1 repository with backups"
REPO_FORMAT=1 start_repo
head -c $((6 * 1048576)) /dev/urandom >"$T/m.img"
backup_json "$T/m.img"
m1=$(json "$T/last.json" 'j["backup_id"]')
head -c 1048576 /dev/urandom | dd of="$T/m.img" bs=1M seek=2 conv=notrunc status=none
backup_json "$T/m.img"
m2=$(json "$T/last.json" 'j["backup_id"]')
if "$REPO" migrate --root "$T/repo" >"$T/busy.out" 2>&1; then fail "migrate ran under a running server"; fi
grep -q "server is serving .*stop it first" "$T/busy.out" || fail "migrate refusal: $(cat "$T/busy.out")"
[[ $(head -1 "$T/repo/config") == "ferry-repository 1" ]] || fail "the refused migrate changed the format"
stop_repo
[[ $(head -1 "$T/repo/config") == "ferry-repository 1" ]] || fail "not a format 1 repository"
# What a migrate killed before its switch leaves: half-made packs and index.
mkdir -p "$T/repo/packs/ab" "$T/repo/index"
head -c 5000 /dev/urandom >"$T/repo/packs/ab/ab000000000000000000000000000000.pack"
head -c 100 /dev/urandom >"$T/repo/index/main.idx"
"$REPO" migrate --root "$T/repo" >"$T/mig.out" || { cat "$T/mig.out"; fail "migrate"; }
cat "$T/mig.out"
grep -q "now in format 2: 7 blocks" "$T/mig.out" || fail "migrate did not move 7 blocks"
[[ $(head -1 "$T/repo/config") == "ferry-repository 2" ]] || fail "config not switched"
[[ ! -e "$T/repo/blocks" ]] || fail "format 1 block files left"
[[ ! -e "$T/repo/packs/ab/ab000000000000000000000000000000.pack" ]] || fail "a crashed run's pack survived"
"$REPO" verify --root "$T/repo" >"$T/v.out" || { cat "$T/v.out"; fail "verify after migrate"; }
# What a migrate killed after its switch leaves: old block files.
mkdir -p "$T/repo/blocks/00/11"
echo x >"$T/repo/blocks/00/11/leftover"
"$REPO" migrate --root "$T/repo" | grep -q "removed the format 1 block files" || fail "second migrate"
[[ ! -e "$T/repo/blocks" ]] || fail "leftover block files stayed"
"$REPO" migrate --root "$T/repo" | grep -q "already in format 2" || fail "third migrate"
start_repo
"$FERRY" --config "$T/agent.conf" restore "$m1" --disk 0 --output "$T/m1.img"
"$FERRY" --config "$T/agent.conf" restore "$m2" --disk 0 --output "$T/m2.img"
same_file "$T/m.img" "$T/m2.img"
cmp -s "$T/m.img" "$T/m1.img" && fail "the first backup restored the changed image"
# Blocks stored before the migrate still deduplicate.
backup_json "$T/m.img"
[[ $(json "$T/last.json" 'j["disks"][0]["blocks_sent"]') == 0 ]] || fail "migrated blocks were sent again"
stop_repo
rm -rf "$T/repo"

note "gc: a pack mostly garbage is repacked, one all garbage deleted"
start_repo
head -c $((16 * 1048576)) /dev/urandom >"$T/a.img"
backup_json "$T/a.img"            # pack 1: 16 blocks
# Ids order backups by the second they began: prune's "newest" must be
# the later one.
sleep 1.1
head -c $((12 * 1048576)) /dev/urandom | dd of="$T/a.img" bs=1M seek=4 conv=notrunc status=none
backup_json "$T/a.img"            # pack 2: 12 new blocks; 4 shared with pack 1
a2=$(json "$T/last.json" 'j["backup_id"]')
"$REPO" prune --root "$T/repo" --keep-last 1 >/dev/null
"$REPO" gc --root "$T/repo" --dry-run >"$T/g0"
grep -q "would delete 0 without a referenced block and repack 1 " "$T/g0" || { cat "$T/g0"; fail "gc dry run"; }
"$REPO" gc --root "$T/repo" >"$T/g1"
cat "$T/g1"
grep -q "deleted 12 unreferenced blocks" "$T/g1" || fail "gc did not free 12 blocks"
grep -q "repacked 1 mostly unreferenced ones (4.0 MiB copied into 1 new packs)" "$T/g1" || fail "gc did not repack"
"$REPO" verify --root "$T/repo" >"$T/v1" || { cat "$T/v1"; fail "verify after repack"; }
"$FERRY" --config "$T/agent.conf" restore "$a2" --disk 0 --output "$T/r2.img"
same_file "$T/a.img" "$T/r2.img"
# The server (which still had the old index) serves the moved blocks and
# deduplicates against them.
backup_json "$T/a.img"
[[ $(json "$T/last.json" 'j["disks"][0]["blocks_sent"]') == 0 ]] || fail "blocks resent after the repack"

head -c $((16 * 1048576)) /dev/urandom >"$T/a.img"
sleep 1.1
backup_json "$T/a.img"
a4=$(json "$T/last.json" 'j["backup_id"]')
"$REPO" prune --root "$T/repo" --keep-last 1 >/dev/null
"$REPO" gc --root "$T/repo" >"$T/g2"
cat "$T/g2"
grep -q "deleted 2 without a referenced block" "$T/g2" || fail "gc did not delete the two dead packs"
[[ $(find "$T/repo/packs" -name '*.pack' | wc -l) == 1 ]] || fail "packs left: $(find "$T/repo/packs" -name '*.pack')"
"$REPO" verify --root "$T/repo" >/dev/null || fail "verify after gc"
"$FERRY" --config "$T/agent.conf" restore "$a4" --disk 0 --output "$T/r4.img"
same_file "$T/a.img" "$T/r4.img"
echo "packs: ok"
