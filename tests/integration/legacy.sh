#!/usr/bin/env bash
# integration.legacy: a repository written before owners existed
# (tests/data/repo-v1, by Ferry 0.1.0) still opens, verifies and restores.
# Its backups have no owner: only admins list and restore them until
# `ferry-repo acl adopt` names their owner (docs/SECURITY.md); the
# adopted group is then that owner's, so no other agent can claim it.
source "$(dirname "$0")/lib.sh"
DATA="$INTEGRATION_TESTS/../data/repo-v1"
ID=20261204T183727Z-042a482c

make_certs
"$FERRY" ca issue "$T/pki" alice --role admin >/dev/null
"$FERRY" ca issue "$T/pki" agent2 --role agent >/dev/null
mkdir -p "$T/repo/tmp"
cp -r "$DATA/config" "$DATA/backups" "$DATA/blocks" "$T/repo/"
: >"$T/repo/lock"
python3 "$DATA/make_image.py" "$T/legacy.img"
start_repo
sed "s|/agent1\.|/alice.|g" "$T/agent.conf" >"$T/alice.conf"
sed "s|/agent1\.|/agent2.|g" "$T/agent.conf" >"$T/agent2.conf"

note "verify reads the old format"
"$REPO" verify --root "$T/repo" >"$T/v" || { cat "$T/v"; fail "verify of the v1 sample"; }

note "no owner: an agent does not see it, an admin does"
"$FERRY" --config "$T/agent.conf" list --json >"$T/l.json"
[[ $(json "$T/l.json" 'len(j)') == 0 ]] || fail "agent1 lists a legacy backup: $(cat "$T/l.json")"
"$FERRY" --config "$T/alice.conf" list --json >"$T/l.json"
[[ $(json "$T/l.json" '[(b["id"], b["owner"], b["source"]) for b in j]') == "[('$ID', '', 'legacy.img')]" ]] ||
  fail "admin's list: $(cat "$T/l.json")"
"$FERRY" --config "$T/alice.conf" restore "$ID" --disk 0 --output "$T/r.img"
same_file "$T/legacy.img" "$T/r.img"
if "$FERRY" --config "$T/agent.conf" restore "$ID" --disk 0 --output "$T/x.img" 2>/dev/null; then
  fail "agent1 restored an ownerless backup"
fi

note "adopt: the legacy group becomes agent1's"
"$REPO" acl adopt --root "$T/repo" --owner agent1 --group legacy.img >/dev/null
"$FERRY" --config "$T/agent.conf" list --json >"$T/l.json"
[[ $(json "$T/l.json" '[(b["id"], b["owner"]) for b in j]') == "[('$ID', 'agent1')]" ]] ||
  fail "after adopt: $(cat "$T/l.json")"
"$FERRY" --config "$T/agent.conf" restore "$ID" --disk 0 --output "$T/r2.img"
same_file "$T/legacy.img" "$T/r2.img"
mkdir -p "$T/w"
cp "$T/legacy.img" "$T/w/legacy.img"
if (cd "$T/w" && "$AGENT" backup --config "$T/agent2.conf" --source legacy.img --quiet 2>"$T/e"); then
  fail "agent2 claimed an adopted group"
fi
grep -q "group 'legacy.img' belongs to agent1, not agent2" "$T/e" || fail "claim: $(cat "$T/e")"
(cd "$T/w" && "$AGENT" backup --config "$T/agent.conf" --source legacy.img --block-size 65536 \
  --quiet --json >"$T/b.json")
[[ $(json "$T/b.json" 'j["disks"][0]["bytes_deduplicated"]') -gt 0 ]] || fail "no dedup against the v1 blocks"
echo "legacy: OK"
