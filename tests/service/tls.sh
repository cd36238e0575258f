#!/usr/bin/env bash
# service.tls: the control API is mutual TLS 1.3. A controller with a
# certificate of the agent's CA gets Status; one without a client
# certificate, one with a certificate from another CA and a client that
# does not speak TLS are refused (and logged) while the service keeps
# serving; a controller that does not trust the agent's CA refuses the
# agent. No vCenter here: the self-cleanup at start fails, the service
# serves anyway and Status says why. ferry.control.allowedClients narrows
# the controllers to certificate names, also for a controller connected
# before SIGHUP narrowed it. Only controller and admin certificates may
# control at all: an agent's and a repository's are refused with the
# reason on both sides (docs/SECURITY.md), and ferry.repository.allowed
# bounds where a controller may send backups. A --config path too long
# for Status is refused at start. Needs neither root nor the simulator.
SERVICE_NO_VCSIM=1
source "$(dirname "$0")/lib.sh"

make_certs
service_certs
start_repo
start_service
H="$SERVICE_TESTS/hostile_controller.py"

note "status over mutual TLS"
ctl agent status --json >"$T/status.json" || fail "status failed"
[[ $(json "$T/status.json" 'j["software"]') == "ferry-agent "* ]] || fail "software: $(cat "$T/status.json")"
[[ $(json "$T/status.json" 'j["protocol_version"]') == 1 ]] || fail "protocol version"
[[ $(json "$T/status.json" 'j["max_jobs"]') == 2 ]] || fail "ferry.jobs.max default"
[[ $(json "$T/status.json" 'len(j["transport_modes"])') == 5 ]] || fail "transport modes"
want=$("$AGENT" transports --config "$T/agent.conf" 2>/dev/null)
[[ $(json "$T/status.json" 'j["transports"]') == "$want" ]] ||
  fail "transports $(json "$T/status.json" 'j["transports"]') differ from ferry-agent transports: $want"
[[ $(json "$T/status.json" 'j["last_cleanup"]["ran"]') == True ]] || fail "cleanup did not run at start"
[[ $(json "$T/status.json" 'j["last_cleanup"]["ok"]') == False ]] || fail "cleanup without a vCenter succeeded?"
[[ -n $(json "$T/status.json" 'j["last_cleanup"]["error"]') ]] || fail "no cleanup error in status"
ctl agent status | grep -q "^last cleanup: failed at" || fail "text status: $(ctl agent status)"
grep -q "serving anyway" "$T/service.log" || fail "the failed cleanup was not logged"

note "no client certificate: refused"
out=$(python3 "$H" "$AGENT_ADDR" "$T/pki/ca.crt" - - no-hello)
[[ "$out" == TLS* || "$out" == CLOSED ]] || fail "a controller without a certificate got: $out"
wait_for "the refusal in the log" grep -q "TLS handshake from .* refused" "$T/service.log"

note "a certificate from another CA: refused"
if ctl --cert "$T/other/intruder.crt" --key "$T/other/intruder.key" agent status >"$T/o.out" 2>"$T/o.err"; then
  fail "a controller of another CA got status: $(cat "$T/o.out")"
fi
grep -q "agent $AGENT_ADDR" "$T/o.err" || fail "error does not name the agent: $(cat "$T/o.err")"
out=$(python3 "$H" "$AGENT_ADDR" "$T/pki/ca.crt" "$T/other/intruder.crt" "$T/other/intruder.key" no-hello)
[[ "$out" == TLS* || "$out" == CLOSED ]] || fail "another CA's controller got: $out"

note "not TLS at all: dropped"
[[ $(python3 "$H" "$AGENT_ADDR" "$T/pki/ca.crt" - - plain-garbage) == CLOSED ]] || fail "plain text answered"

note "the controller checks the agent too"
if ctl --ca "$T/other/ca.crt" agent status >"$T/a.out" 2>"$T/a.err"; then fail "an untrusted agent was accepted"; fi
grep -q "not trusted" "$T/a.err" || fail "untrusted agent: $(cat "$T/a.err")"
if "$FERRY" --agent "$AGENT_ADDR" agent status 2>"$T/n.err"; then fail "status without certificates worked"; fi
grep -q "ferry.tls.cert" "$T/n.err" || fail "no certificate: $(cat "$T/n.err")"
if "$FERRY" --config "$T/agent.conf" agent status 2>"$T/w.err"; then fail "status without an agent address worked"; fi
grep -q "which agent" "$T/w.err" || fail "no agent address: $(cat "$T/w.err")"

note "roles: an agent's or a repository's certificate may not control; an admin's may"
if ctl --cert "$T/pki/agent1.crt" --key "$T/pki/agent1.key" agent status >"$T/r.out" 2>"$T/r.err"; then
  fail "an agent's certificate controlled the agent: $(cat "$T/r.out")"
fi
grep -q "certificate agent1 has role agent: only controller and admin certificates may control an agent" "$T/r.err" ||
  fail "agent role: $(cat "$T/r.err")"
wait_for "the agent-role refusal in the log" grep -q "certificate agent1 has role agent" "$T/service.log"
# A repository's certificate is for servers only: TLS refuses it as a client.
refusals=$(grep -c "TLS handshake from .* refused" "$T/service.log" || true)
if ctl --cert "$T/pki/127.0.0.1.crt" --key "$T/pki/127.0.0.1.key" agent status >"$T/r.out" 2>"$T/r2.err"; then
  fail "a repository's certificate controlled the agent"
fi
# TLS 1.3 tells the client only that the agent closed; the agent's log
# says why.
more_refusals() { (( $(grep -c "TLS handshake from .* refused" "$T/service.log") > refusals )); }
wait_for "the repository-certificate refusal in the log" more_refusals
"$FERRY" ca issue "$T/pki" admin1 --role admin >/dev/null
ctl --cert "$T/pki/admin1.crt" --key "$T/pki/admin1.key" agent status >/dev/null || fail "an admin was refused"
"$FERRY" ca issue "$T/pki" ctl3 --role controller >/dev/null

note "ferry.repository.allowed: a controller cannot redirect backups"
if ctl backup --vm vm-1 --repository 127.0.0.1:9 --json >"$T/rr.out" 2>"$T/rr.err"; then
  fail "a backup to a repository that is not allowed started"
fi
grep -q "repository 127.0.0.1:9 is neither ferry.repository nor in ferry.repository.allowed" "$T/rr.err" ||
  fail "repository.allowed: $(cat "$T/rr.err")"

note "ferry.control.allowedClients: only the central server's certificate"
# ctl3 (a controller) connects while it may, and asks again after the
# reload: refused.
python3 "$H" "$AGENT_ADDR" "$T/pki/ca.crt" "$T/pki/ctl3.crt" "$T/pki/ctl3.key" \
  status-pause "$T/go" >"$T/pause.out" &
pause=$!
wait_for "agent1's first Status" test -e "$T/go.waiting"
echo "ferry.control.allowedClients=central, backup2" >>"$T/agent.conf"
kill -HUP "$AGENT_PID"
wait_for "the reload" grep -q "SIGHUP: reloaded" "$T/service.log"
touch "$T/go"
wait "$pause"
[[ $(cat "$T/pause.out") == "REPLY 2 | REPLY 4 | ERROR -13 ctl3@"*"may not control this agent"* ]] ||
  fail "a connected controller no longer allowed: $(cat "$T/pause.out")"
ctl agent status >/dev/null || fail "central refused"
if ctl --cert "$T/pki/ctl3.crt" --key "$T/pki/ctl3.key" agent status >"$T/l.out" 2>"$T/l.err"; then
  fail "ctl3 (a controller, not allowed) got status"
fi
grep -q "ctl3@.* may not control this agent" "$T/l.err" || fail "allowedClients: $(cat "$T/l.err")"

note "a --config path longer than Status can carry: refused at start"
long=/$(printf 'x%.0s' $(seq 1 1100))
if "$AGENT" run --config "$long" 2>"$T/long.err"; then fail "started with a 1101-byte --config path"; fi
grep -q "more than the 1024 a controller accepts" "$T/long.err" || fail "long --config: $(cat "$T/long.err")"

note "still serving"
ctl agent status >/dev/null || fail "status after the refusals"
kill -0 "$AGENT_PID" || fail "the service died"
echo "service tls: OK"
