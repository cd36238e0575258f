#!/usr/bin/env bash
# Damaged and unsupported volumes: the reader refuses each with a message
# naming the structure (and where it is), never a crash or wrong bytes.
source "$(dirname "$0")/lib.sh"
make_sources
cd "$S"

files=(--file vm/thick-flat.vmdk=thick.bin,direct --file vm/dbl-flat.vmdk=thick.bin,double)

expect_refusal() { # expect_refusal WHAT SPEC PATTERN
  local what=$1 spec=$2 pattern=$3
  if "$VMFS_CAT" "$spec" >"$S/out" 2>"$S/err"; then
    fail "$what: read without an error"
  fi
  grep -q -- "$pattern" "$S/err" || fail "$what: expected '$pattern', got: $(cat "$S/err")"
  [[ ! -s "$S/out" ]] || fail "$what: bytes were written before the refusal"
  note "$what: $(sed 's/^vmfs_cat: //' "$S/err")"
}

# damage KIND PATH PATTERN
damage() {
  "$MKVMFS6" "$S/d.img" --damage "$1" "${files[@]}" >/dev/null
  expect_refusal "$1" "$S/d.img:$2" "$3"
  rm -f "$S/d.img"
}

damage lvm-magic vm/thick-flat.vmdk "no LVM header at offset 1048576"
damage lvm-vmfs5 vm/thick-flat.vmdk "LVM header at offset 1048576: version 5 is a VMFS5"
damage fs-magic vm/thick-flat.vmdk "FS descriptor at volume offset 2097152: magic 0xdeadbeef"
damage fs-vmfs5 vm/thick-flat.vmdk "FS descriptor at volume offset 2097152: version 14 is VMFS5"
damage root-fd vm/thick-flat.vmdk "file descriptor 0x00000004 at volume offset [0-9]*: lock magic"
damage rfmd vm/thick-flat.vmdk ".sbc.sf metadata at file offset 0: signature"
damage dir-version vm/thick-flat.vmdk "directory 0x00000004 at volume offset [0-9]*: version 0x1234"
damage pb-loop vm/dbl-flat.vmdk "pointer block 0x[0-9a-f]* is reached twice"
damage outside vm/thick-flat.vmdk "block 0: file block address 0x[0-9a-f]* (volume offset [0-9]*) is outside the volume"

"$MKVMFS6" "$S/ok.img" "${files[@]}" >/dev/null
"$VMFS_CAT" "$S/ok.img:vm/thick-flat.vmdk" | cmp - thick.bin || fail "the undamaged volume reads wrong"

# A truncated LUN: its LVM extent no longer fits.
cp --sparse=always "$S/ok.img" "$S/trunc.img"
truncate -s $(( $(stat -c %s "$S/ok.img") - (1 << 20) )) "$S/trunc.img"
expect_refusal truncated "$S/trunc.img:vm/thick-flat.vmdk" "its LVM extent (segments [0-9]*-[0-9]*) needs [0-9]*: truncated"

# Truncated below the LVM header: too small to be a volume at all.
truncate -s $((4 << 20)) "$S/trunc.img"
expect_refusal "truncated to 4 MiB" "$S/trunc.img:vm/thick-flat.vmdk" "LVM header at offset 1048576: data offset [0-9]* is outside the partition"

# A volume of two LUNs with one missing, or the same LUN twice.
"$MKVMFS6" "$S/t0.img,$S/t1.img" --uuid-seed 2 --data-at 250 --file x/c-flat.vmdk=cross.bin,direct >/dev/null
expect_refusal "second LUN missing" "$S/t0.img:x/c-flat.vmdk" "the volume spans 2 LUNs, 1 given"
expect_refusal "same LUN twice" "$S/t0.img,$S/t0.img:x/c-flat.vmdk" "two LUNs hold the same segments"
expect_refusal "LUN of another volume" "$S/t0.img,$S/ok.img:x/c-flat.vmdk" "belongs to another volume"

# What the reader refuses by design.
expect_refusal "missing file" "$S/ok.img:vm/nothere-flat.vmdk" "no 'nothere-flat.vmdk'"
expect_refusal "a directory" "$S/ok.img:vm" "not a regular file"
expect_refusal "not a VMFS LUN" "$S/thick.bin:vm/x" "no VMFS partition"
echo "damaged: ok"
