#!/usr/bin/env bash
# integration.authz: who may do what in a repository (docs/SECURITY.md),
# tried as an attacker holding a valid certificate of the repository's CA
# (a second agent's) would: every attack of issue 10 against the real
# server. The owner is the authenticated name; a group (namespace +
# source) belongs to its first owner; an incremental's parent must be the
# client's own; agents list and read only their own backups; grants open
# one owner's groups or a namespace to a named client; prune never
# crosses owners; every action is in the audit log; roles are checked by
# both ends; a revoked certificate is refused.
source "$(dirname "$0")/lib.sh"
FORGE="$INTEGRATION_TESTS/forge_client.py"

make_certs
"$FERRY" ca issue "$T/pki" agent2 --role agent >/dev/null
"$FERRY" ca issue "$T/pki" reader --role agent >/dev/null
"$FERRY" ca issue "$T/pki" alice --role admin >/dev/null
"$FERRY" ca issue "$T/pki" central --role controller >/dev/null
start_repo
conf() { # conf NAME: a configuration for certificate NAME
  sed "s|/agent1\.|/$1.|g" "$T/agent.conf" >"$T/$1.conf"
}
for n in agent1 agent2 reader alice central; do conf "$n"; done
as() { local who=$1; shift; "$FERRY" --config "$T/$who.conf" "$@"; }
# Ids sort by time, then by their random part: backups made in the same
# second list in either order, so lists are compared sorted.
ids_of() { as "$1" list --json "${@:2}" | python3 -c 'import json,sys; print(" ".join(sorted(b["id"] for b in json.load(sys.stdin))))'; }
set_of() { printf '%s\n' "$@" | sort | xargs; }
forge() { python3 "$FORGE" "$ADDR" "$T/pki" "$@"; }

mkimage create "$T/a.img" $((3 * 1024 * 1024)) --seed 31
mkimage create "$T/b.img" $((2 * 1024 * 1024)) --seed 32
printf 'EVIL-agent2-was-here' >"$T/evil"

note "agent1 backs up a.img twice; agent2 backs up b.img"
backup_json "$T/a.img"; a1=$(json "$T/last.json" 'j["backup_id"]')
sleep 1.1
backup_json "$T/a.img"; a2=$(json "$T/last.json" 'j["backup_id"]')
"$AGENT" backup --config "$T/agent2.conf" --source "$T/b.img" --json --quiet >"$T/b.json"
b1=$(json "$T/b.json" 'j["backup_id"]')
as agent1 list --json >"$T/l1.json"
[[ $(json "$T/l1.json" '[b["owner"] for b in j]') == "['agent1', 'agent1']" ]] || fail "owners: $(cat "$T/l1.json")"

note "the server's clock, not the client's: created_unix is now"
now=$(date +%s)
created=$(json "$T/l1.json" 'j[1]["created_unix"]')
(( created <= now && created > now - 120 )) || fail "created_unix $created"

note "read isolation: each agent lists and reads only its own"
[[ $(ids_of agent1) == "$(set_of "$a1" "$a2")" ]] || fail "agent1 lists: $(ids_of agent1)"
[[ $(ids_of agent2) == "$b1" ]] || fail "agent2 lists: $(ids_of agent2)"
# Ids sort by time and then by their random part: two backups of the same
# second list in either order, so the admin's three are compared as a set.
[[ $(ids_of alice) == "$(set_of "$a1" "$a2" "$b1")" ]] || fail "the admin lists: $(ids_of alice)"
[[ -z $(ids_of central) ]] || fail "a controller without a grant lists: $(ids_of central)"
if as agent2 restore "$a2" --disk 0 --output "$T/stolen.img" 2>"$T/e1"; then fail "agent2 restored agent1's backup"; fi
grep -q "no backup $a2 that agent2 may read" "$T/e1" || fail "refusal: $(cat "$T/e1")"
[[ ! -s "$T/stolen.img" ]] || fail "bytes of agent1's backup reached agent2"
[[ $(forge agent2 getmap "$a2") == "REFUSED -2 no backup $a2 that agent2 may read" ]] || fail "forged GetMap"
# The same answer for an id that does not exist: no existence oracle.
[[ $(forge agent2 getmap 20990101T000000Z-00000000) == "REFUSED -2 no backup 20990101T000000Z-00000000 that agent2 may read" ]] ||
  fail "GetMap of a missing id"
hex=$(head -c 1048576 "$T/a.img" | sha256sum | cut -d' ' -f1)
[[ $(forge agent2 getblocks "$hex") == "REFUSED -13 "*"GetBlocks before a GetMap"* ]] || fail "GetBlocks without a map"
# One backup by id (what `ferry show` asks): its owner gets it alone, anyone
# else, a missing id or a hostile one gets the same empty page.
[[ $(forge agent1 listid "$a2") == "ACCEPTED 1 more=0 $a2" ]] || fail "listid of one's own: $(forge agent1 listid "$a2")"
for id in "$a2" 20990101T000000Z-00000000 ../../etc/passwd; do
  [[ $(forge agent2 listid "$id") == "ACCEPTED 0 more=0" ]] || fail "listid $id as agent2: $(forge agent2 listid "$id")"
done
"$FERRY" --config "$T/agent1.conf" show "$a2" | grep -q "$a2" || fail "ferry show of agent1's own backup"
if "$FERRY" --config "$T/agent2.conf" show "$a2" 2>"$T/e1s"; then fail "agent2 was shown agent1's backup"; fi
grep -q "no backup $a2 that this certificate may read" "$T/e1s" || fail "show refusal: $(cat "$T/e1s")"
as alice restore "$a2" --disk 0 --output "$T/admin.img"
same_file "$T/a.img" "$T/admin.img"

note "the forgery: agent2 commits into agent1's group with agent1's ids"
out=$(forge agent2 backup "$T/a.img" file "$a2" "" "" "$T/evil")
[[ "$out" == "REFUSED -13 "*"group '$T/a.img' belongs to agent1, not agent2"* ]] || fail "forged commit: $out"
out=$(forge agent2 backup "evil-own-group" file "$a2" "" "" "$T/evil")
[[ "$out" == "REFUSED -13 "*"incremental refused: parent $a2 is not a backup of group 'evil-own-group'"* ]] ||
  fail "foreign parent: $out"
# agent2's own group, its own (first) backup: accepted, and only agent2's.
out=$(forge agent2 backup "evil-own-group" file "" "" "" "$T/evil")
[[ "$out" == "ACCEPTED "* ]] || fail "agent2's own group: $out"
evil=${out#ACCEPTED }
[[ $(ids_of agent1) == "$(set_of "$a1" "$a2")" ]] || fail "agent1 sees: $(ids_of agent1)"
# agent1 goes on: its newest backup is still its own, byte-identical.
backup_json "$T/a.img"; a3=$(json "$T/last.json" 'j["backup_id"]')
as agent1 restore "$a3" --disk 0 --output "$T/a3.img"
same_file "$T/a.img" "$T/a3.img"
if grep -q "EVIL-agent2" "$T/a3.img"; then fail "the attacker's bytes reached agent1's restore"; fi
"$REPO" verify --root "$T/repo" >"$T/v" || { cat "$T/v"; fail "verify"; }

note "roles: a controller creates no backup, a repository's certificate is no client"
if "$AGENT" backup --config "$T/central.conf" --source "$T/b.img" --quiet 2>"$T/e2"; then
  fail "a controller created a backup"
fi
grep -q "certificate central has role controller: only agents and admins create backups" "$T/e2" ||
  fail "controller backup: $(cat "$T/e2")"
sed "s|/agent1\.|/127.0.0.1.|g" "$T/agent.conf" >"$T/repo-as-client.conf"
refusals=$(grep -c "refused" "$T/repo.log" || true)
if "$FERRY" --config "$T/repo-as-client.conf" list 2>"$T/e3"; then fail "a repository's certificate listed"; fi
# Its certificate is for servers only (extended key usage serverAuth), so
# TLS itself refuses it (TLS 1.3 may tell the client only that the server
# closed); the server logs why. Its own role check is the second line.
for _ in $(seq 1 100); do (( $(grep -c "refused" "$T/repo.log") > refusals )) && break; sleep 0.1; done
(( $(grep -c "refused" "$T/repo.log") > refusals )) || fail "the refusal is not logged: $(cat "$T/e3")"

note "the client checks the server's role: an agent's certificate is no repository"
"$REPO" init --root "$T/fake" >/dev/null
"$REPO" serve --root "$T/fake" --listen 127.0.0.1:0 --cert "$T/pki/agent1.crt" \
  --key "$T/pki/agent1.key" --ca "$T/pki/ca.crt" --ready-file "$T/fake.ready" >"$T/fake.log" 2>&1 &
FAKE=$!
CLEANUP_CMDS+=('kill $FAKE 2>/dev/null; wait $FAKE 2>/dev/null')
for _ in $(seq 1 200); do [[ -s "$T/fake.ready" ]] && break; sleep 0.05; done
if "$FERRY" --config "$T/alice.conf" --repository "$(cat "$T/fake.ready")" --set ferry.tls.serverName=agent1 \
  list 2>"$T/e4"; then fail "a client talked to an agent posing as a repository"; fi
grep -q "presents a certificate of role agent, not repository" "$T/e4" || fail "server role: $(cat "$T/e4")"

note "grants: reader may read agent1's a.img group and nothing else"
"$REPO" acl grant --root "$T/repo" --client reader --owner agent1 --group "$T/a.img" >/dev/null
"$REPO" acl list --root "$T/repo" | grep -q "^grant reader ~ agent1 " || fail "acl list: $("$REPO" acl list --root "$T/repo")"
[[ $(ids_of reader) == "$(set_of "$a1" "$a2" "$a3")" ]] || fail "reader lists: $(ids_of reader)"
as reader restore "$a1" --disk 0 --output "$T/granted.img"
same_file "$T/a.img" "$T/granted.img"
if as reader restore "$b1" --disk 0 --output "$T/x.img" 2>/dev/null; then fail "reader read agent2's backup"; fi
if "$AGENT" backup --config "$T/reader.conf" --source "$T/a.img" --quiet 2>"$T/e5"; then
  fail "a read grant let reader write into agent1's group"
fi
grep -q "belongs to agent1, not reader" "$T/e5" || fail "reader's write: $(cat "$T/e5")"
"$REPO" acl revoke --root "$T/repo" --client reader --owner agent1 --group "$T/a.img" >/dev/null
[[ -z $(ids_of reader) ]] || fail "revoked, reader still lists: $(ids_of reader)"
if "$REPO" acl revoke --root "$T/repo" --client reader --owner agent1 2>/dev/null; then fail "revoked a missing grant"; fi

note "namespaces separate sites; a namespace grant opens one"
"$AGENT" backup --config "$T/agent2.conf" --namespace site2 --source "$T/a.img" --json --quiet >"$T/s2.json"
s2=$(json "$T/s2.json" 'j["backup_id"]')
[[ $(ids_of agent2) == "$(set_of "$b1" "$evil")" ]] || fail "root namespace of agent2: $(ids_of agent2)"
[[ $(ids_of agent2 --namespace site2) == "$s2" ]] || fail "site2 of agent2: $(ids_of agent2 --namespace site2)"
[[ $(ids_of alice --all-namespaces) == "$(set_of "$a1" "$a2" "$b1" "$evil" "$a3" "$s2")" ]] || fail "admin, all: $(ids_of alice --all-namespaces)"
"$REPO" acl grant --root "$T/repo" --client reader --namespace site2 >/dev/null
[[ $(ids_of reader --namespace site2) == "$s2" ]] || fail "namespace grant: $(ids_of reader --namespace site2)"
[[ -z $(ids_of reader) ]] || fail "the namespace grant leaked the root namespace"
if "$FERRY" --config "$T/agent2.conf" --namespace 'bad/ns' list 2>"$T/e6"; then fail "a bad namespace was taken"; fi
grep -q "a namespace is 1 to 63 characters" "$T/e6" || fail "bad namespace: $(cat "$T/e6")"

note "retention never crosses owners: agent2's site2 copy of a.img is its own group"
"$REPO" prune --root "$T/repo" --keep-last 1 >"$T/p"
cat "$T/p"
[[ $(ids_of alice --all-namespaces) == "$(set_of "$b1" "$evil" "$a3" "$s2")" ]] || fail "prune kept: $(ids_of alice --all-namespaces)"
"$REPO" prune --root "$T/repo" --keep-last 1 --owner agent2 --dry-run | grep -q "would remove 0" ||
  fail "prune --owner"

note "audit: who did what, when, from where"
"$REPO" gc --root "$T/repo" >/dev/null
A="$T/repo/audit.log"
python3 - "$A" "$a2" <<'PY' || fail "audit log: $(cat "$A")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
acts = {}
for l in lines:
    assert set(l) == {"time", "who", "from", "action", "detail"}, l
    acts.setdefault(l["action"], []).append(l)
for a in ("backup", "read", "read-refused", "backup-refused", "acl-add", "acl-remove", "prune", "gc"):
    assert a in acts, (a, sorted(acts))
assert any(l["who"] == "agent1" and l["from"] == "127.0.0.1" for l in acts["backup"])
assert any(l["who"] == "agent2" and sys.argv[2] in l["detail"] for l in acts["read-refused"])
assert any(l["who"] == "agent2" and "belongs to agent1" in l["detail"] for l in acts["backup-refused"])
assert all(l["who"].startswith("local:") for l in acts["prune"] + acts["gc"] + acts["acl-add"])
PY
[[ $(stat -c %a "$A") == 600 ]] || fail "audit log mode $(stat -c %a "$A")"

note "a revoked certificate is refused in the handshake"
"$FERRY" ca revoke "$T/pki" agent2 >/dev/null
stop_repo
start_repo --crl "$T/pki/ca.crl"
for n in agent1 agent2 reader alice central; do conf "$n"; done
if as agent2 list 2>"$T/e7"; then fail "a revoked certificate listed"; fi
as agent1 list >/dev/null || fail "agent1 refused after agent2's revocation"
echo "authz: OK"
