#!/usr/bin/env bash
# service.cert_refusals: a certificate the server refuses is explained on
# both sides (issue 10). An expired certificate, one not valid yet (both
# signed by the right CA, made with `openssl ca` and explicit dates) and
# one of another CA, presented to ferry-repo serve (ferry list) and to
# ferry-agent run (ferry agent status): the client says which of the three
# it is, as far as TLS lets it; the server's log names the certificate,
# its issuer and its dates with the reason, not only "certificate verify
# failed". The servers keep serving a valid client. Needs neither root nor
# the simulator.
SERVICE_NO_VCSIM=1
source "$(dirname "$0")/lib.sh"

make_certs
service_certs

# dated_cert NAME START END: a client certificate of $T/pki's CA with the
# given validity (YYYYMMDDHHMMSSZ), made by openssl rather than ferry ca.
dated_cert() {
  local name=$1 start=$2 end=$3 d="$T/openssl-ca"
  mkdir -p "$d"
  [[ -f "$d/index.txt" ]] || { : >"$d/index.txt"; echo 1000 >"$d/serial"; }
  cat >"$d/ca.cnf" <<CNF
[ca]
default_ca = ferry_test
[ferry_test]
database = $d/index.txt
new_certs_dir = $d
serial = $d/serial
default_md = sha256
policy = any_name
unique_subject = no
[any_name]
commonName = supplied
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth,serverAuth
CNF
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$T/pki/$name.key" -subj "/CN=$name" -out "$d/$name.csr" 2>/dev/null
  openssl ca -batch -config "$d/ca.cnf" -cert "$T/pki/ca.crt" -keyfile "$T/pki/ca.key" \
    -in "$d/$name.csr" -out "$T/pki/$name.crt" -startdate "$start" -enddate "$end" \
    -extensions client -notext 2>"$d/$name.log" ||
    fail "openssl ca $name: $(cat "$d/$name.log")"
}
dated_cert expired 20200101000000Z 20210101000000Z
dated_cert future 20400101000000Z 20410101000000Z

start_repo
start_service

# refused SERVER_LOG WANT_CLIENT WANT_LOG NAME COMMAND...: COMMAND fails,
# its stderr matches WANT_CLIENT, the server's log gains WANT_LOG.
refused() {
  local log=$1 want_client=$2 want_log=$3 name=$4; shift 4
  if "$@" >"$T/r.out" 2>"$T/r.err"; then
    fail "$name: accepted: $(cat "$T/r.out")"
  fi
  grep -qE "$want_client" "$T/r.err" || fail "$name: the client says: $(cat "$T/r.err")"
  echo "$name, client: $(cat "$T/r.err")"
  wait_for "$name in the server's log" grep -qE "$want_log" "$log"
  echo "$name, server: $(grep -E "$want_log" "$log" | tail -n1 | cut -d' ' -f3-)"
}

repo_as() { "$FERRY" --config "$T/agent.conf" --cert "$T/pki/$1.crt" --key "$T/pki/$1.key" list; }
agent_as() { "$FERRY" --config "$T/central.conf" --cert "$T/$1.crt" --key "$T/$1.key" agent status; }

note "ferry-repo serve"
refused "$T/repo.log" "refused our certificate expired .*: it has expired" \
  "certificate expired \(issued by Ferry CA.*, valid 2020-01-01 00:00:00Z to 2021-01-01 00:00:00Z\) refused: it has expired" \
  "expired" repo_as expired
refused "$T/repo.log" "refused our certificate future .*: it is not valid yet" \
  "certificate future \(issued by .*valid 2040-01-01 00:00:00Z to 2041-01-01 00:00:00Z\) refused: it is not valid yet" \
  "not yet valid" repo_as future
refused "$T/repo.log" "refused our certificate intruder .*unknown CA" \
  "certificate intruder \(issued by .*\) refused: it was not issued by the CA trusted here \(unknown CA\)" \
  "another CA" "$FERRY" --config "$T/agent.conf" --cert "$T/other/intruder.crt" \
  --key "$T/other/intruder.key" list
"$FERRY" --config "$T/agent.conf" list >/dev/null || fail "the repository refused a valid client"

note "ferry-agent run"
refused "$T/service.log" "refused our certificate expired .*: it has expired" \
  "control: TLS handshake from .* refused: certificate expired \(issued by .*valid 2020-01-01" \
  "expired" agent_as pki/expired
refused "$T/service.log" "refused our certificate future .*: it is not valid yet" \
  "control: TLS handshake from .* refused: certificate future .* refused: it is not valid yet" \
  "not yet valid" agent_as pki/future
refused "$T/service.log" "unknown CA" \
  "control: TLS handshake from .* refused: certificate intruder .*unknown CA" \
  "another CA" agent_as other/intruder
"$FERRY" --config "$T/central.conf" agent status >/dev/null || fail "the agent refused a valid controller"
echo "service cert_refusals: OK"
