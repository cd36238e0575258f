#!/usr/bin/env bash
# Clients without a valid certificate and clients that send malformed,
# oversized, out-of-order or lying frames: each refused with a clear error,
# nothing partial visible, and the server keeps serving everyone else.
source "$(dirname "$0")/lib.sh"

make_certs
start_repo
mkimage create "$T/disk.img" $((2 * 1024 * 1024)) --seed 3

python3 "$(dirname "$0")/hostile_client.py" "$ADDR" "$T/pki" "$T/other"

kill -0 "$REPO_PID" || fail "ferry-repo died"
[[ $(backup_count) == 0 ]] || fail "a hostile session left a backup behind"
[[ -z "$(ls -A "$T/repo/backups")" ]] || fail "manifest files appeared"
grep -q "TLS handshake" "$T/repo.log" || fail "refused handshakes are not logged"

note "agent with a certificate from another CA"
sed -e "s#$T/pki/agent1#$T/other/intruder#" "$T/agent.conf" >"$T/bad.conf"
if "$AGENT" backup --config "$T/bad.conf" --source "$T/disk.img" --quiet 2>"$T/err"; then
  fail "backup with a foreign certificate succeeded"
fi
cat "$T/err"

note "agent that does not trust the repository's CA"
sed -e "s#ferry.tls.ca=.*#ferry.tls.ca=$T/other/ca.crt#" "$T/agent.conf" >"$T/bad2.conf"
if "$AGENT" backup --config "$T/bad2.conf" --source "$T/disk.img" --quiet 2>"$T/err"; then
  fail "backup to an untrusted repository succeeded"
fi
grep -q "not trusted" "$T/err" || fail "unclear error: $(cat "$T/err")"

note "agent that expects another server name"
if "$AGENT" backup --config "$T/agent.conf" --set ferry.tls.serverName=repo.example \
     --source "$T/disk.img" --quiet 2>"$T/err"; then
  fail "backup to a repository with the wrong name succeeded"
fi
grep -q "repo.example" "$T/err" || fail "unclear error: $(cat "$T/err")"

note "a good backup still works"
backup_json "$T/disk.img"
id=$(json "$T/last.json" 'j["backup_id"]')
"$FERRY" --config "$T/agent.conf" restore "$id" --disk 0 --output "$T/r.img"
same_file "$T/disk.img" "$T/r.img"
[[ $(backup_count) == 1 ]] || fail "expected exactly one backup"
"$REPO" verify --root "$T/repo" >/dev/null || fail "verify found damage"
echo "hostile: ok"
