#!/usr/bin/env bash
# Ferry's S3 client over HTTPS against the real radosgw of tests/s3/ceph-up
# (its https port, a certificate for 127.0.0.1 and localhost from the
# cluster's own test CA): init with --s3-ca, a backup through ferry-repo
# serve and a byte-identical restore, the packs in the bucket (checked with
# boto3 over plain http); refused: no --s3-ca (the system store does not
# know the test CA), another CA (also one with the test CA's very name), a
# host name the certificate does not name (through a TCP relay on
# 127.0.0.2, so that the TLS handshake really happens), plain http to a
# host that is not loopback (before any traffic). No refused init leaves
# a config behind.
#
# Needs the cluster of tests/s3/ceph-up (CEPH_ENV names its env file; the
# ctest fixture s3.ceph_up starts it).
source "$(dirname "$0")/../integration/lib.sh"
S3DIR=$(cd "$(dirname "$0")" && pwd)
: "${CEPH_ENV:?CEPH_ENV must name the env file of tests/s3/ceph-up}"
set -a
# shellcheck disable=SC1090
source "$CEPH_ENV"
set +a
: "${S3_TLS_ENDPOINT:?$CEPH_ENV has no S3_TLS_ENDPOINT: a cluster of an older ceph-up}"
[[ -r $S3_CA_FILE ]] || fail "S3_CA_FILE $S3_CA_FILE is not readable"
ADMIN=(python3 "$S3DIR/s3admin.py")
# Never in Ferry's environment: the repository reads the file named at init,
# and verification uses --s3-ca or the system store, nothing else.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY SSL_CERT_FILE SSL_CERT_DIR CURL_CA_BUNDLE
TLS_PORT=${S3_TLS_ENDPOINT##*:}
B=ferry-tls-$RANDOM$RANDOM
CLEANUP_CMDS+=('"${ADMIN[@]}" rb "$B" >/dev/null 2>&1')

make_certs
printf 'access_key_id=%s\nsecret_access_key=%s\n' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >"$T/creds"
chmod 600 "$T/creds"
"${ADMIN[@]}" mb "$B" >/dev/null

# refused_init NAME URL [INIT OPTION...]: init of a fresh $T/NAME must fail
# and leave no config; its output is in $T/NAME.out.
refused_init() {
  local name=$1 url=$2
  shift 2
  if timeout 120 "$REPO" init --root "$T/$name" --s3 "$url" --path-style \
    --s3-credentials "$T/creds" "$@" >"$T/$name.out" 2>&1; then
    fail "init $name ($url) succeeded: $(cat "$T/$name.out")"
  fi
  [[ ! -e $T/$name/config ]] || fail "the refused init $name left $T/$name/config"
}

note "init over https with the test CA"
"$REPO" init --root "$T/repo" --s3 "$S3_TLS_ENDPOINT/$B" --path-style --s3-ca "$S3_CA_FILE" \
  --s3-credentials "$T/creds" >"$T/init.out" 2>&1 || fail "init: $(cat "$T/init.out")"
grep -qi "plain http" "$T/init.out" && fail "a plain-http warning for https: $(cat "$T/init.out")"
[[ $(head -1 "$T/repo/config") == "ferry-repository 3" ]] || fail "not format 3"
grep -qx "s3.url=$S3_TLS_ENDPOINT/$B" "$T/repo/config" || fail "s3.url: $(grep '^s3\.' "$T/repo/config")"
grep -qx "s3.ca=$(realpath "$S3_CA_FILE")" "$T/repo/config" || fail "s3.ca: $(grep '^s3\.' "$T/repo/config")"
"${ADMIN[@]}" ls "$B" | grep -q "^ferry-repository " || fail "no identity in the bucket"

note "backup and restore over https (a pack above the part size: multipart)"
start_repo
# 40 MiB of data then 8 MiB of holes: one full 32 MiB pack (two 16 MiB
# parts) and a smaller one.
head -c $((40 * 1048576)) /dev/urandom >"$T/a.img"
truncate -s 48M "$T/a.img"
backup_json "$T/a.img"
b1=$(json "$T/last.json" 'j["backup_id"]')
"$FERRY" --config "$T/agent.conf" restore "$b1" --disk 0 --output "$T/r1.img" >/dev/null
same_file "$T/a.img" "$T/r1.img"
grep -qi "plain http" "$T/repo.log" && fail "serve warned of plain http: $(grep -i 'plain http' "$T/repo.log")"
"${ADMIN[@]}" ls "$B" >"$T/bucket.txt"
grep -q "^backups/$b1.manifest " "$T/bucket.txt" || fail "manifest of $b1 not in the bucket"
grep -Eq "^packs/[0-9a-f]{2}/[0-9a-f]{32}\.pack " "$T/bucket.txt" || fail "no pack in the bucket"
big=$(awk '$1 ~ /^packs\// && $2 > 16 * 1048576 {print $1; exit}' "$T/bucket.txt")
[[ -n $big ]] || fail "no pack above 16 MiB (a multipart upload): $(grep '^packs/' "$T/bucket.txt")"
"${ADMIN[@]}" get "$B" "$big" >"$T/pack.bin"
same_file "$T/pack.bin" "$T/repo/$big"
stop_repo

note "the cache lost: rebuilt from the bucket over https, restored from it"
rm -rf "$T/repo/packs" "$T/repo/index" "$T/repo/backups"
"$REPO" rebuild-cache --root "$T/repo" >"$T/rb.out" 2>&1 || fail "rebuild-cache: $(cat "$T/rb.out")"
grep -q "rebuilt the cache of .*: 1 backups" "$T/rb.out" || fail "rebuild-cache: $(cat "$T/rb.out")"
"$REPO" verify --root "$T/repo" >"$T/v.out" 2>&1 || fail "verify: $(cat "$T/v.out")"
grep -q "0 corrupt, 0 missing" "$T/v.out" || fail "verify: $(cat "$T/v.out")"
start_repo
"$FERRY" --config "$T/agent.conf" restore "$b1" --disk 0 --output "$T/r2.img" >/dev/null
same_file "$T/a.img" "$T/r2.img"
stop_repo
rm -f "$T/r1.img" "$T/r2.img" "$T/pack.bin"

note "https://localhost: the certificate's DNS name is accepted"
"$REPO" init --root "$T/lh" --s3 "https://localhost:$TLS_PORT/$B" --path-style --s3-ca "$S3_CA_FILE" \
  --s3-credentials "$T/creds" >"$T/lh.out" 2>&1 || fail "init via localhost: $(cat "$T/lh.out")"

note "without --s3-ca: the system store does not know the test CA"
start=$SECONDS
refused_init noca "$S3_TLS_ENDPOINT/$B"
grep -q "TLS failed" "$T/noca.out" && grep -qi "certificate problem" "$T/noca.out" ||
  fail "no certificate problem named: $(cat "$T/noca.out")"
# a verification failure is final, not retried as if transient
((SECONDS - start <= 5)) || fail "the refusal took $((SECONDS - start)) s: retried?"

note "--s3-ca naming another CA, also one with the test CA's very name"
subject=$(openssl x509 -in "$S3_CA_FILE" -noout -subject -nameopt compat)
subject=${subject#subject=}
[[ $subject == /CN=* ]] || fail "the test CA's subject: $subject"
for ca in "wrongca:/CN=another test CA" "impostorca:$subject"; do
  name=${ca%%:*}
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$T/$name-ca.key" -out "$T/$name-ca.crt" -subj "${ca#*:}" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    >/dev/null 2>&1 || fail "openssl: the $name CA"
  refused_init "$name" "$S3_TLS_ENDPOINT/$B" --s3-ca "$T/$name-ca.crt"
  grep -q "TLS failed" "$T/$name.out" && grep -qi "certificate problem" "$T/$name.out" ||
    fail "$name CA: $(cat "$T/$name.out")"
done
refused_init noca-file "$S3_TLS_ENDPOINT/$B" --s3-ca "$T/no-such-ca.crt"
grep -q "no-such-ca.crt" "$T/noca-file.out" || fail "a missing CA file: $(cat "$T/noca-file.out")"

note "a host name the certificate does not name: refused after the handshake"
# A TCP relay (bytes only: the TLS session is radosgw's own) on 127.0.0.1
# and 127.0.0.2. Through 127.0.0.1 init works, so the relay is
# transparent; through 127.0.0.2 (not in the certificate) the connection
# is made and the handshake happens, and only the name check refuses it.
python3 - "$TLS_PORT" "$T/relay.ports" "$T/relay.log" >"$T/relay.err" 2>&1 <<'EOF' &
import socket, sys, threading
upstream = ("127.0.0.1", int(sys.argv[1]))
log = open(sys.argv[3], "a", buffering=1)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
def serve(ls, addr):
    while True:
        c, _ = ls.accept()
        log.write("accept %s\n" % addr)
        u = socket.create_connection(upstream)
        threading.Thread(target=pipe, args=(c, u), daemon=True).start()
        threading.Thread(target=pipe, args=(u, c), daemon=True).start()
lines = []
for addr in ("127.0.0.1", "127.0.0.2"):
    ls = socket.socket()
    ls.bind((addr, 0))
    ls.listen(16)
    lines.append("%s %d" % (addr, ls.getsockname()[1]))
    threading.Thread(target=serve, args=(ls, addr), daemon=True).start()
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write("\n".join(lines) + "\n")
__import__("os").rename(sys.argv[2] + ".tmp", sys.argv[2])
threading.Event().wait()
EOF
RELAY_PID=$!
CLEANUP_CMDS+=('kill "$RELAY_PID" 2>/dev/null; wait "$RELAY_PID" 2>/dev/null')
for _ in $(seq 1 100); do
  [[ -s $T/relay.ports ]] && break
  kill -0 "$RELAY_PID" 2>/dev/null || fail "the relay did not start: $(cat "$T/relay.err")"
  sleep 0.05
done
[[ -s $T/relay.ports ]] || fail "the relay did not start"
p1=$(awk '$1 == "127.0.0.1" {print $2}' "$T/relay.ports")
p2=$(awk '$1 == "127.0.0.2" {print $2}' "$T/relay.ports")
"$REPO" init --root "$T/relayed" --s3 "https://127.0.0.1:$p1/$B" --path-style --s3-ca "$S3_CA_FILE" \
  --s3-credentials "$T/creds" >"$T/relayed.out" 2>&1 || fail "init through the relay: $(cat "$T/relayed.out")"
grep -q "^accept 127.0.0.1$" "$T/relay.log" || fail "init did not go through the relay"
refused_init badname "https://127.0.0.2:$p2/$B" --s3-ca "$S3_CA_FILE"
grep -q "^accept 127.0.0.2$" "$T/relay.log" || fail "no connection reached the relay on 127.0.0.2: $(cat "$T/badname.out")"
grep -q "TLS failed" "$T/badname.out" && grep -Eqi "(subject|host) name" "$T/badname.out" ||
  fail "the name mismatch is not named: $(cat "$T/badname.out")"

note "plain http to a host that is not loopback: refused before any traffic"
start=$SECONDS
refused_init plain "http://192.0.2.1:80/$B"
((SECONDS - start <= 5)) || fail "refusing plain http took $((SECONDS - start)) s: it went to the network"
grep -q "plain http:// is allowed only for a loopback host" "$T/plain.out" || fail "plain http: $(cat "$T/plain.out")"

note "the secret key appears in no log and no output"
if grep -rl -- "$S3_SECRET_KEY" "$T" 2>/dev/null | grep -v "/creds$"; then
  fail "the secret key was written to the files above"
fi
note "ok"
