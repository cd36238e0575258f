#!/usr/bin/env bash
# The same round trip through loop devices: the agent reads a block device
# with O_DIRECT and libaio, and ferry restores onto another block device
# (where holes must be written as zeros over whatever was there).
source "$(dirname "$0")/lib.sh"

if [[ $(id -u) -ne 0 ]] || ! command -v losetup >/dev/null; then
  echo "loopdev: skipped (needs root and losetup)"
  exit 77
fi

make_certs
start_repo
size=$((24 * 1024 * 1024))
mkimage create "$T/disk.img" "$size" --seed 21
# The target starts full of junk so unwritten holes would show.
head -c "$size" /dev/urandom >"$T/target.img"
src=$(losetup -f --show --direct-io=on "$T/disk.img" 2>/dev/null || losetup -f --show "$T/disk.img")
CLEANUP_CMDS+=("losetup -d $src")
dst=$(losetup -f --show "$T/target.img")
CLEANUP_CMDS+=("losetup -d $dst")

"$AGENT" backup --config "$T/agent.conf" --source "$src" --json --quiet \
  --log-level 4 >"$T/last.json" 2>"$T/agent.err"
if grep -q "O_DIRECT" "$T/agent.err"; then
  fail "O_DIRECT was refused on a block device: $(cat "$T/agent.err")"
fi
id=$(json "$T/last.json" 'j["backup_id"]')
[[ $(json "$T/last.json" 'j["disks"][0]["size"]') == "$size" ]] || fail "device size wrong"
"$FERRY" --config "$T/agent.conf" restore "$id" --disk 0 --output "$dst"
cmp "$src" "$dst" >/dev/null || fail "block device restore differs"
echo "loopdev: ok"
