#!/usr/bin/env bash
# The agent reads the limits a repository announces in HelloReply instead
# of assuming ferry-repo's: a block size outside the repository's range is
# refused at once with both named, a max_frame too small for the block
# size or below the protocol's least is refused, and under a smaller
# max_frame no frame the agent sends is larger (its block map goes in
# smaller MapChunks). A repository that announces nothing (an older one)
# gets the protocol's bounds. The repository here is a FAKE
# (fake_repo.py, named as one): ferry-repo always announces the protocol's
# own limits, so only a stand-in can play a stricter or older one.
source "$(dirname "$0")/lib.sh"

make_certs

# fake MAX_FRAME MIN_BLOCK MAX_BLOCK: (re)starts the fake; writes agent.conf.
FAKE_PID=""
fake() {
  [[ -z $FAKE_PID ]] || { kill "$FAKE_PID" 2>/dev/null || true; wait "$FAKE_PID" 2>/dev/null || true; }
  rm -f "$T/ready" "$T/fake.log"
  python3 "$INTEGRATION_TESTS/fake_repo.py" "$T/pki" "$T/ready" "$T/fake.log" "$@" &
  FAKE_PID=$!
  CLEANUP_CMDS+=("kill $FAKE_PID")
  for _ in $(seq 1 100); do [[ -s "$T/ready" ]] && break; sleep 0.05; done
  [[ -s "$T/ready" ]] || fail "the fake repository did not start"
  cat >"$T/agent.conf" <<CONF
ferry.repository=$(head -n1 "$T/ready")
ferry.tls.cert=$T/pki/agent1.crt
ferry.tls.key=$T/pki/agent1.key
ferry.tls.ca=$T/pki/ca.crt
CONF
}

# backup ARGS...: a backup of $T/disk.img; output in $T/out, exit code in rc.
backup() {
  rc=0
  "$AGENT" backup --config "$T/agent.conf" --source "$T/disk.img" --quiet "$@" >"$T/out" 2>&1 || rc=$?
}

max_seen() {
  # the fake logs each new largest frame before it replies to anything
  awk '$1 == "max_seen" { if ($2 > m) m = $2 } END { print m + 0 }' "$T/fake.log"
}

# 3200 blocks of 64 KiB, all different: a block map of 3200 full entries
# (about 109 KB in one MapChunk unless split).
python3 -c 'import os,sys; open(sys.argv[1],"wb").write(os.urandom(3200 * 65536))' "$T/disk.img"

note "a repository that announces no limits: the protocol's own"
fake 0 0 0
backup --block-size 65536
[[ $rc == 0 ]] || fail "backup to a repository without limits: $(cat "$T/out")"
grep -q "oversize" "$T/fake.log" && fail "a frame over the protocol's bound: $(cat "$T/fake.log")"
[[ $(max_seen) -gt 70000 ]] || fail "expected one large MapChunk without limits: $(cat "$T/fake.log")"

note "a block size the repository does not take"
fake 0 65536 524288
backup
[[ $rc != 0 ]] || fail "a 1 MiB block accepted by a repository of blocks up to 512 KiB"
grep -q "takes blocks of 65536 to 524288 bytes, not 1048576" "$T/out" || fail "no clear refusal: $(cat "$T/out")"

note "a max_frame below the protocol's least"
fake 1000 65536 8388608
backup --block-size 65536
[[ $rc != 0 ]] || fail "a repository of 1000-byte frames accepted"
grep -q "takes frames of at most 1000 bytes, fewer than the protocol's least" "$T/out" || fail "no clear refusal: $(cat "$T/out")"

note "a max_frame too small for the block size"
fake 70000 65536 8388608
backup
[[ $rc != 0 ]] || fail "1 MiB blocks sent to a repository of 70000-byte frames"
grep -q "a block of 1048576 bytes would not fit" "$T/out" || fail "no clear refusal: $(cat "$T/out")"

note "under max_frame 70000 every frame fits: the map goes in smaller chunks"
backup --block-size 65536
[[ $rc == 0 ]] || fail "backup under max_frame 70000: $(cat "$T/out")"
grep -q "oversize" "$T/fake.log" && fail "the agent sent a frame over max_frame: $(cat "$T/fake.log")"
seen=$(max_seen)
[[ $seen -gt 65536 && $seen -le 70000 ]] || fail "largest frame $seen: $(cat "$T/fake.log")"
echo "hello limits: ok"
