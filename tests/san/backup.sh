#!/usr/bin/env bash
# ferry-agent backup --source vmfs:LUN[,LUN2]:PATH: flat files backed up
# straight off a VMFS6 volume of two LUNs (image files, then the same
# images as loop devices read with O_DIRECT), restored byte-identical; the
# job reports the san transport; the LUNs' stale bytes never reach the
# repository; a damaged volume fails the backup with the structure named.
#
# Emulated: the volume is written here by tests/tools/mkvmfs6, not by ESXi.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/../integration/lib.sh"
CLEANUP_CMDS+=("rm -rf $S")

make_sources
make_certs
start_repo
cd "$S"
"$MKVMFS6" "$S/l0.img,$S/l1.img" --data-at 250 \
  --file vm/thick-flat.vmdk=cross.bin,thick,direct \
  --file vm/thin-flat.vmdk=thin-hole-first.bin,thin,indirect \
  --file vm/lazy-flat.vmdk=lazy.bin,lazyzeroed,direct >/dev/null
grep -q "$MARKER" "$S/l0.img" "$S/l1.img" || fail "no stale marker on the LUNs"

backup_restore() { # backup_restore LUNS PATH SOURCE
  "$AGENT" backup --config "$T/agent.conf" --source "vmfs:$1:$2" --json --quiet \
    >"$T/last.json" 2>"$T/agent.err" || fail "backup of $2: $(cat "$T/agent.err")"
  [[ $(json "$T/last.json" 'j["disks"][0]["transport"]') == san ]] ||
    fail "$2: transport is not san: $(cat "$T/last.json")"
  [[ $(json "$T/last.json" 'j["disks"][0]["size"]') == $(stat -c %s "$3") ]] || fail "$2: size wrong"
  id=$(json "$T/last.json" 'j["backup_id"]')
  rm -f "$T/restored"
  "$FERRY" --config "$T/agent.conf" restore "$id" --disk 0 --output "$T/restored"
  cmp "$T/restored" "$3" || fail "$2: restore differs from the file written to the volume"
  if grep -q "$MARKER" "$T/restored"; then fail "$2: stale bytes reached the backup"; fi
}

note "image files"
for f in "thick-flat.vmdk cross.bin" "thin-flat.vmdk thin-hole-first.bin" "lazy-flat.vmdk lazy.bin"; do
  read -r path src <<<"$f"
  backup_restore "$S/l0.img,$S/l1.img" "vm/$path" "$S/$src"
done
# Holes and to-be-zeroed ranges are never read: the thin disk moves only
# its data blocks.
"$AGENT" backup --config "$T/agent.conf" --source "vmfs:$S/l0.img,$S/l1.img:vm/thin-flat.vmdk" \
  --block-size 1048576 --json --quiet >"$T/last.json"
[[ $(json "$T/last.json" 'j["disks"][0]["bytes_read"]') == $((3 << 20)) ]] ||
  fail "the thin disk's 3 MiB of allocated blocks were not all that was read: $(cat "$T/last.json")"

note "a --transport list without san refuses vmfs: sources"
if "$AGENT" backup --config "$T/agent.conf" --transport nbd \
     --source "vmfs:$S/l0.img,$S/l1.img:vm/thick-flat.vmdk" --quiet 2>"$T/agent.err"; then
  fail "--transport nbd read a vmfs: source"
fi
grep -q "san transport" "$T/agent.err" || fail "unclear refusal: $(cat "$T/agent.err")"

note "a damaged volume fails the backup, naming the structure"
"$MKVMFS6" "$S/bad.img" --damage outside --file vm/x-flat.vmdk=thick.bin,direct >/dev/null
if "$AGENT" backup --config "$T/agent.conf" --source "vmfs:$S/bad.img:vm/x-flat.vmdk" --quiet 2>"$T/agent.err"; then
  fail "a damaged volume was backed up"
fi
grep -q "is outside the volume" "$T/agent.err" || fail "unclear error: $(cat "$T/agent.err")"

if [[ $(id -u) -ne 0 ]] || ! command -v losetup >/dev/null; then
  # The image-file half passed; the loop-device half is not run: a skip.
  echo "backup: SKIP of the loop-device half (needs root and losetup)"
  exit 77
fi
note "loop devices, read with O_DIRECT"
d0=$(losetup -f --show -r "$S/l0.img"); CLEANUP_CMDS+=("losetup -d $d0")
d1=$(losetup -f --show -r "$S/l1.img"); CLEANUP_CMDS+=("losetup -d $d1")
backup_restore "$d0,$d1" vm/thick-flat.vmdk "$S/cross.bin"
backup_restore "$d1,$d0" vm/lazy-flat.vmdk "$S/lazy.bin"
if grep -q "O_DIRECT" "$T/agent.err"; then fail "O_DIRECT refused on a loop device: $(cat "$T/agent.err")"; fi
echo "backup: ok"
