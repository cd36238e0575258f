#!/usr/bin/env bash
# integration.forgery_vm: the attack of issue 10, end to end on the
# simulated vCenter. agent1 backs up vm-two-disks with CBT; agent2, a
# second agent of the same CA, takes the VM's source name, disk ids and
# change ids from agent1's `ferry list --json` (as if it had leaked) and
# commits a backup holding "EVIL-agent2-was-here" with agent1's newest
# backup as parent. The repository refuses it; agent1's next CBT
# incremental builds on its own backup and restores byte-identical to the
# disks. Disks are read over https (no root needed).
source "$(dirname "$0")/lib.sh"
FORGE="$INTEGRATION_TESTS/forge_client.py"

make_certs
"$FERRY" ca issue "$T/pki" agent2 --role agent >/dev/null
start_repo
start_vcsim --disk-size 16777216
mkdir -p "$T/state"
grep -v '^test\.' "$T/test.conf" >>"$T/agent.conf"
echo "ferry.stateDirectory=$T/state" >>"$T/agent.conf"
sed "s|/agent1\.|/agent2.|g" "$T/agent.conf" >"$T/agent2.conf"
ready() { python3 -c "import json; R=json.load(open('$T/ready.json')); print($1)"; }
backup() { # backup OUT.json CONF [ARGS...]
  local out=$1 conf=$2
  shift 2
  "$AGENT" backup --config "$conf" --vm vm-two-disks --transport https --json --quiet "$@" \
    >"$out" 2>"$out.log" || { cat "$out.log"; fail "backup $* failed"; }
}
live() { # live N OUT: disk N of the VM as it is now
  local flat
  flat=$(curl -sS -k --fail "$(ready "R['control']")/disks?vm=vm-two-disks" |
    python3 -c "import json,sys; print(json.load(sys.stdin)['disks'][$1]['live']['flat_path'])")
  cp --sparse=always "$flat" "$2"
}

note "agent1: a full backup with CBT"
backup "$T/b1.json" "$T/agent.conf" --enable-cbt
id1=$(json "$T/b1.json" 'j["backup_id"]')
key0=$(ready "R['vms']['vm-two-disks']['disks'][0]['key']")
head -c 65536 /dev/urandom >"$T/w"
curl -sS -k --fail -X POST --data-binary @"$T/w" \
  "$(ready "R['control']")/write?vm=vm-two-disks&disk=$key0&offset=$((3 * 1048576))" >/dev/null

note "agent2 sees nothing of agent1's"
"$FERRY" --config "$T/agent2.conf" list --json >"$T/l2.json"
[[ $(json "$T/l2.json" 'len(j)') == 0 ]] || fail "agent2 lists: $(cat "$T/l2.json")"

note "the forgery, with agent1's leaked ids: refused"
"$FERRY" --config "$T/agent.conf" list --json >"$T/l1.json"
src=$(json "$T/l1.json" 'j[0]["source"]')
disk_id=$(json "$T/l1.json" 'j[0]["disks"][0]["disk_id"]')
change_id=$(json "$T/l1.json" 'j[0]["disks"][0]["change_id"]')
[[ -n "$disk_id" && -n "$change_id" ]] || fail "no ids to copy: $(cat "$T/l1.json")"
printf 'EVIL-agent2-was-here' >"$T/evil"
out=$(python3 "$FORGE" "$ADDR" "$T/pki" agent2 backup "$src" vm "$id1" "$disk_id" "$change_id" "$T/evil")
[[ "$out" == "REFUSED -13 "*"group '$src' belongs to agent1, not agent2"* ]] || fail "forged commit: $out"
out=$(python3 "$FORGE" "$ADDR" "$T/pki" agent2 backup "$src-2" vm "$id1" "$disk_id" "$change_id" "$T/evil")
[[ "$out" == "REFUSED -13 "*"incremental refused: parent $id1"* ]] || fail "forged parent: $out"
"$FERRY" --config "$T/agent.conf" list --json >"$T/l1b.json"
[[ $(json "$T/l1b.json" 'len(j)') == 1 ]] || fail "a forged backup is listed: $(cat "$T/l1b.json")"

note "agent1's incremental builds on its own backup and restores exactly"
backup "$T/b2.json" "$T/agent.conf"
id2=$(json "$T/b2.json" 'j["backup_id"]')
[[ $(json "$T/b2.json" 'j["parent_id"]') == "$id1" ]] || fail "parent: $(cat "$T/b2.json")"
[[ $(json "$T/b2.json" 'j["disks"][0]["incremental"]') == True ]] || fail "not incremental: $(cat "$T/b2.json")"
for i in 0 1; do
  live $i "$T/live$i.img"
  "$FERRY" --config "$T/agent.conf" restore "$id2" --disk $i --output "$T/r$i.img" 2>/dev/null
  same_file "$T/live$i.img" "$T/r$i.img"
  if grep -q "EVIL-agent2" "$T/r$i.img"; then fail "the attacker's bytes reached disk $i"; fi
done
"$REPO" verify --root "$T/repo" >"$T/v" || { cat "$T/v"; fail "verify"; }
grep -q '"action":"backup-refused","detail":"group' "$T/repo/audit.log" || fail "the refusal is not audited"
echo "forgery_vm: OK"
