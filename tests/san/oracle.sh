#!/usr/bin/env bash
# Ferry's VMFS6 reader against the writer's intent and against Debian's
# vmfs6-tools, an independent reader, on volumes written by mkvmfs6: every
# layout (resident, sub-blocks, direct, pointer blocks, double indirection,
# large file blocks), thick / thin / lazy-zeroed, one and two LUNs, a LUN
# with a GPT. Ferry's bytes must equal the intent everywhere; vmfs6-tools'
# bytes must equal them where vmfs6-tools is known to be right. Where it is
# known to be wrong the test says why and checks Ferry against the intent
# alone. The stale marker must never appear in what Ferry reads.
#
# Emulated: the volumes are written here by mkvmfs6, not by ESXi.
source "$(dirname "$0")/lib.sh"

if ! command -v debugvmfs6 >/dev/null; then
  echo "oracle: skipped (vmfs6-tools not installed; scripts/deps installs it)"
  exit 77
fi

make_sources
cd "$S"

# path  source  options  oracle-verdict
FIXTURES_A=(
  "resident.txt resident.txt thick,resident right"
  "vm1/sub.bin sub.bin thick,subblock right"
  "vm1/sub-thin.bin sub-thin.bin thin,subblock stops-at-first-hole"
  "vm1/thick-flat.vmdk thick.bin thick,direct right"
  "vm1/thin1-flat.vmdk thin-hole-first.bin thin,direct stops-at-first-hole"
  "vm1/thin2-flat.vmdk thin-data-first.bin thin,direct stops-at-first-hole"
  "vm2/lazy-flat.vmdk lazy.bin lazyzeroed,direct tbz-bit-5"
  "vm2/ind-thin-flat.vmdk indirect.bin thin,indirect right"
  "vm2/ind-lazy-flat.vmdk lazy.bin lazyzeroed,indirect tbz-bit-5"
  "vm3/dbl-flat.vmdk thick.bin thick,double right"
  "vm3/dbl-thin-flat.vmdk thin-hole-first.bin thin,double right"
  "vm4/lfb-flat.vmdk small-lfb.bin thick,lfb right"
  "vm4/lfb-lazy-flat.vmdk lfb-lazy.bin lazyzeroed,lfb tbz-bit-5"
  "vm4/lfb-ind-flat.vmdk small-lfb.bin thick,lfbindirect right"
)
FIXTURES_B=(
  "big/cross-flat.vmdk cross.bin thick,direct right"
  "big/thin-flat.vmdk thin-hole-first.bin thin,indirect right"
  "big/lazy-flat.vmdk lazy.bin lazyzeroed,direct tbz-bit-5"
)

why() {
  case "$1" in
    stops-at-first-hole) echo "vmfs6-tools stops reading a direct file's block list at its first zero address, so everything after a hole reads as zeros";;
    tbz-bit-5) echo "vmfs6-tools tests bit 5 (copy-on-write on VMFS6) as to-be-zeroed and ignores the to-be-zeroed bitmap in bits 7-14, so it shows the LUN's stale bytes";;
  esac
}

build() { # build IMGS [mkvmfs6 options] -- FIXTURES...
  local imgs=$1; shift
  local opts=() args=()
  while [[ $1 != -- ]]; do opts+=("$1"); shift; done
  shift
  for f in "$@"; do
    read -r path src o _ <<<"$f"
    args+=(--file "$path=$src,$o")
  done
  "$MKVMFS6" "$imgs" "${opts[@]}" "${args[@]}" >"$S/layout.txt"
}

agree=0; disagree=0
check() { # check IMGS FIXTURES...
  local imgs=$1; shift
  for f in "$@"; do
    read -r path src o verdict <<<"$f"
    "$VMFS_CAT" "$imgs:$path" >"$S/ferry.out" || fail "Ferry cannot read $path: $(tail -1 "$S/ferry.out")"
    cmp "$S/ferry.out" "$src" >/dev/null || fail "$path ($o): Ferry's bytes differ from the writer's intent"
    if grep -q "$MARKER" "$S/ferry.out"; then fail "$path: Ferry shows stale bytes"; fi
    cat_oracle "$imgs" "$path" "$S/oracle.out" || fail "vmfs6-tools cannot read $path: $(cat "$S/oracle.err")"
    if [[ $verdict == right ]]; then
      cmp "$S/oracle.out" "$src" >/dev/null || fail "$path ($o): vmfs6-tools' bytes differ from Ferry's and the intent"
      agree=$((agree + 1))
    else
      disagree=$((disagree + 1))
      if cmp -s "$S/oracle.out" "$src"; then
        note "$path ($o): vmfs6-tools now reads it right (expected: $(why "$verdict")); Ferry matches the intent"
      else
        note "$path ($o): vmfs6-tools is wrong here: $(why "$verdict"); Ferry matches the intent"
      fi
    fi
  done
}

note "one LUN, every layout"
build "$S/a.img" -- "${FIXTURES_A[@]}"
check "$S/a.img" "${FIXTURES_A[@]}"
# The stale bytes are on the LUN, where the to-be-zeroed ranges are.
grep -q "$MARKER" "$S/a.img" || fail "the writer left no stale marker on the LUN"
cat_oracle "$S/a.img" vm2/lazy-flat.vmdk "$S/oracle.out"
grep -q "$MARKER" "$S/oracle.out" || note "vmfs6-tools no longer shows the stale marker in vm2/lazy-flat.vmdk"

note "directory listings agree"
for d in vm1 vm2 vm3 vm4; do
  debugvmfs6 "$S/a.img" ls "$d" | grep -v -e '^VMFS version' -e '^\.$' -e '^\.\.$' | sort >"$S/ls.oracle"
  "$VMFS_CAT" -l "$S/a.img:$d" | sort >"$S/ls.ferry"
  diff "$S/ls.oracle" "$S/ls.ferry" || fail "listing of $d differs"
done
debugvmfs6 "$S/a.img" ls | grep -v -e '^VMFS version' -e '^\.$' -e '^\.\.$' | sort >"$S/ls.oracle"
"$VMFS_CAT" -l "$S/a.img:." | sed 's|/$||' | sort >"$S/ls.ferry"
diff "$S/ls.oracle" "$S/ls.ferry" || fail "listing of the root differs"

note "two LUNs, a file crossing from the first to the second"
build "$S/b0.img,$S/b1.img" --data-at 250 -- "${FIXTURES_B[@]}"
python3 - "$S" <<'EOF2' || fail "cross-flat.vmdk does not cross from the first LUN to the second"
import mmap, sys
d = sys.argv[1]
src = open(f"{d}/cross.bin", "rb").read()
for img, piece in (("b0.img", src[0:4096]), ("b1.img", src[-4096:])):
    with open(f"{d}/{img}", "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if m.find(piece) < 0:
            sys.exit(1)
EOF2
check "$S/b0.img,$S/b1.img" "${FIXTURES_B[@]}"
# Either order of the LUNs is the same volume.
"$VMFS_CAT" "$S/b1.img,$S/b0.img:big/cross-flat.vmdk" | cmp - cross.bin || fail "LUNs given in the other order read differently"

note "a whole LUN with a GPT"
build "$S/g.img" --gpt -- "vm/thick-flat.vmdk thick.bin thick,direct right" \
  "vm/lazy-flat.vmdk lazy.bin lazyzeroed,direct tbz-bit-5"
sfdisk -d "$S/g.img" 2>/dev/null | grep -qi "type=AA31E02A-400F-11DB-9590-000C2911D1B8" ||
  fail "sfdisk does not see a VMFS partition in the writer's GPT"
"$VMFS_CAT" "$S/g.img:vm/thick-flat.vmdk" | cmp - thick.bin || fail "GPT LUN: thick file differs"
"$VMFS_CAT" "$S/g.img:vm/lazy-flat.vmdk" | cmp - lazy.bin || fail "GPT LUN: lazy-zeroed file differs"
# vmfs6-tools finds partitions in MBRs only; give it the partition itself.
if [[ $(id -u) -eq 0 ]] && command -v losetup >/dev/null; then
  part=$(losetup -f --show -r -o $((1 << 20)) "$S/g.img")
  SAN_CLEANUP+=("losetup -d $part")
  check "$part" "vm/thick-flat.vmdk thick.bin thick,direct right"
else
  note "not root: vmfs6-tools not run on the GPT LUN's partition"
fi

echo "oracle: ok ($agree files where vmfs6-tools agrees byte for byte, $disagree where it is known to be wrong and Ferry matches the intent)"
