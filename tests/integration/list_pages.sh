#!/usr/bin/env bash
# integration.list_pages: a listing page always fits in one frame. 48
# backups of 256 disks, each disk with the longest label, change id and
# disk id, are about 18 MiB of summaries: more than one frame (16 MiB)
# holds, yet fewer than the 256 backups a page may list (VM configuration
# records, up to 64 KiB a backup, make such pages likelier). The repository
# ends a page at half a frame, so `ferry list` pages through them and
# `ferry show` finds the last one. (With the byte bound taken out, the
# list fails: the page's frame is over the limit.)
source "$(dirname "$0")/lib.sh"
N=48

make_certs
start_repo
out=$(python3 "$INTEGRATION_TESTS/forge_client.py" "$ADDR" "$T/pki" agent1 wide $N wide-vm)
[[ $out == "ACCEPTED $N" ]] || fail "forging the backups: $out"
"$FERRY" --config "$T/agent.conf" list --json >"$T/l.json" || fail "list failed"
[[ $(json "$T/l.json" 'len(j)') == $N ]] || fail "listed $(json "$T/l.json" 'len(j)') of $N"
[[ $(json "$T/l.json" 'len(set(b["id"] for b in j))') == $N ]] || fail "a backup listed twice"
[[ $(json "$T/l.json" 'set(len(b["disks"]) for b in j)') == "{256}" ]] || fail "disks lost"
last=$(json "$T/l.json" 'j[-1]["id"]')
"$FERRY" --config "$T/agent.conf" show "$last" >"$T/s.txt" || fail "show of the last backup"
grep -q "^disks       256, 16 MiB$" "$T/s.txt" || fail "show: $(head -12 "$T/s.txt")"
echo "list_pages: OK"
