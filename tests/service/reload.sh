#!/usr/bin/env bash
# service.reload: SIGHUP re-reads the configuration file: a new
# ferry.jobs.max applies at once (Status shows it), a changed listen
# address is logged as needing a restart, a broken file is refused with
# its line number and the running configuration kept. Needs neither root
# nor the simulator.
SERVICE_NO_VCSIM=1
source "$(dirname "$0")/lib.sh"

make_certs
service_certs
start_repo
start_service
[[ $(ctl agent status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["max_jobs"])') == 2 ]] ||
  fail "default ferry.jobs.max"

note "ferry.jobs.max=5 and a new listen address, then SIGHUP"
cp "$T/agent.conf" "$T/agent.conf.orig"
echo "ferry.jobs.max=5" >>"$T/agent.conf"
sed -i 's/^ferry.control.listen=.*/ferry.control.listen=127.0.0.1:1/' "$T/agent.conf"
kill -HUP "$AGENT_PID"
wait_for "the reload" grep -q "SIGHUP: reloaded" "$T/service.log"
grep -q "ferry.control.listen changed; it takes effect when ferry-agent run restarts" "$T/service.log" ||
  fail "listen change not reported"
[[ $(ctl agent status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["max_jobs"])') == 5 ]] ||
  fail "ferry.jobs.max not reloaded"

note "a broken file is refused, the running configuration kept"
echo "this line is broken" >>"$T/agent.conf"
kill -HUP "$AGENT_PID"
wait_for "the refusal" grep -q "keeping the running configuration" "$T/service.log"
grep "keeping the running configuration" "$T/service.log" | grep -q "agent.conf:[0-9]*: expected name=value" ||
  fail "no line number: $(grep keeping "$T/service.log")"
[[ $(ctl agent status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["max_jobs"])') == 5 ]] ||
  fail "ferry.jobs.max lost"

note "out of range"
cp "$T/agent.conf.orig" "$T/agent.conf"
echo "ferry.jobs.max=99" >>"$T/agent.conf"
kill -HUP "$AGENT_PID"
wait_for "the range error" grep -q "ferry.jobs.max.*1..16\|ferry.jobs.max.*16" "$T/service.log"
kill -0 "$AGENT_PID" || fail "the service died"
echo "service reload: OK"
