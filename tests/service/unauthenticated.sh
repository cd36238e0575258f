#!/usr/bin/env bash
# service.unauthenticated: connections that never authenticate cannot
# starve the clients that do (issue 10, "Before authentication"). Against
# ferry-repo serve and ferry-agent run in turn: 300 TCP connections that
# never send a byte and 100 TLS connections that send a ClientHello and
# then nothing, all held open from 127.0.0.1; meanwhile `ferry list` and
# `ferry agent status` from a valid client must answer (within a generous
# 20 s: a liveness check, not a timing one), the server must hold no more
# descriptors than its handshake slots allow, and once the flood ends its
# descriptor count returns to where it was before. Needs neither root nor
# the simulator.
SERVICE_NO_VCSIM=1
source "$(dirname "$0")/lib.sh"

FLOOD="$INTEGRATION_TESTS/flood.py"
IDLE=300
STALLED=100

make_certs
service_certs
# Short handshake deadlines so the test does not wait long for the held
# slots; the slots' sizes are the defaults.
start_repo --handshake-timeout 3
echo "ferry.control.handshakeTimeout=3" >>"$T/agent.conf"
start_service

fds() { ls "/proc/$1/fd" | wc -l; }

# flood_against NAME PID ADDR MAX_HANDSHAKES COMMAND...: floods ADDR, runs
# COMMAND meanwhile, checks the descriptors of PID.
flood_against() {
  local name=$1 pid=$2 addr=$3 slots=$4; shift 4
  local base during after start took
  # Settled: the connections of earlier commands are gone.
  "$@" >/dev/null || fail "$name: the valid client failed before the flood"
  sleep 0.5
  base=$(fds "$pid")
  rm -f "$T/flood.ready" "$T/flood.stop"
  python3 "$FLOOD" "$addr" "$IDLE" "$STALLED" "$T/flood.ready" "$T/flood.stop" &
  local flood=$!
  wait_for "the $name flood" test -s "$T/flood.ready"
  note "$name: $(cut -d' ' -f1 "$T/flood.ready") idle connections and $(cut -d' ' -f2 "$T/flood.ready") stalled ClientHellos held"
  during=$(fds "$pid")
  # The gate holds at most its slots; the valid client adds its own.
  (( during <= base + slots + 2 )) ||
    fail "$name holds $during descriptors during the flood (before: $base, handshake slots: $slots)"
  start=$(date +%s.%N)
  timeout 20 "$@" >"$T/valid.out" 2>"$T/valid.err" ||
    fail "$name: the valid client got no answer during the flood: $(cat "$T/valid.err")"
  took=$(echo "$(date +%s.%N) - $start" | bc)
  note "$name: the valid client answered in ${took} s during the flood (descriptors: $base before, $during during)"
  touch "$T/flood.stop"
  wait "$flood" || fail "$name: the flood script failed"
  for _ in $(seq 1 300); do
    after=$(fds "$pid")
    (( after <= base )) && break
    sleep 0.1
  done
  (( after <= base )) || fail "$name holds $after descriptors after the flood, $base before"
  note "$name: descriptors back to $after (before: $base)"
  kill -0 "$pid" || fail "$name died"
}

flood_against ferry-repo "$REPO_PID" "$ADDR" 32 \
  "$FERRY" --config "$T/agent.conf" list
grep -q "repository: before authentication, lately: .* dropped for newer ones" "$T/repo.log" ||
  fail "the repository did not log the dropped connections: $(tail -n 5 "$T/repo.log")"

flood_against ferry-agent "$AGENT_PID" "$AGENT_ADDR" 16 \
  "$FERRY" --config "$T/central.conf" agent status
grep -q "control: before authentication, lately: .* dropped for newer ones" "$T/service.log" ||
  fail "the agent did not log the dropped connections"

note "still serving"
ctl agent status >/dev/null || fail "status after the flood"
"$FERRY" --config "$T/agent.conf" list >/dev/null || fail "list after the flood"
echo "service unauthenticated: OK"
