# Shared helpers for the agent service tests: the real `ferry-agent run`
# driven by the real `ferry` client over mutual TLS, against ferry-vcsim
# with an emulated proxy guest and a real ferry-repo (tests/hotadd/lib.sh:
# hot-added disks appear as read-only loop devices under $T/guest). What is
# emulated: the vCenter (ferry-vcsim) and the proxy VM's guest (sysfs/dev
# tree with loop devices); the agent's side is the production code. Needs
# root (losetup, mknod), else exit 77.
# With SERVICE_NO_VCSIM=1 a test needs neither root nor the simulator: the
# agent's vCenter is an address nobody listens on, so the self-cleanup at
# start fails (and the service serves anyway).
SERVICE_TESTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ -n "${SERVICE_NO_VCSIM:-}" ]]; then
  source "$SERVICE_TESTS/../integration/lib.sh"
else
  source "$SERVICE_TESTS/../hotadd/lib.sh"
fi

AGENT_PID=""
stop_agent() {
  [[ -n "$AGENT_PID" ]] || return 0
  kill -9 "$AGENT_PID" 2>/dev/null || true
  wait "$AGENT_PID" 2>/dev/null || true
  AGENT_PID=""
}
CLEANUP_CMDS+=("stop_agent" "[[ \$rc -eq 0 ]] || { echo '--- ferry-agent run log (last 40 lines)'; tail -n 40 \"\$T/service.log\" 2>/dev/null; }")

# service_certs: the agent's certificate names 127.0.0.1 (the controller
# checks it), the central server's is a client certificate of the same CA.
service_certs() {
  "$FERRY" ca issue "$T/pki" proxy1 --san 127.0.0.1 --role agent >/dev/null
  "$FERRY" ca issue "$T/pki" central --role controller >/dev/null
}

# start_service [ENV=VALUE ...]: ferry-agent run on a free loopback port
# with $T/agent.conf plus the service keys; writes $T/central.conf for
# `ferry` (the agent address, the central server's certificate).
start_service() {
  # The central server restores what this agent backs up: a read grant on
  # the agent's groups (docs/SECURITY.md), as an admin would give it.
  if [[ -d "$T/repo" ]] && ! "$REPO" acl list --root "$T/repo" | grep -q '^grant central '; then
    "$REPO" acl grant --root "$T/repo" --client central --owner proxy1 >/dev/null
  fi
  if [[ -n "${SERVICE_NO_VCSIM:-}" ]] && ! grep -q '^ferry.vcenter.server=' "$T/agent.conf"; then
    printf 'ferry.vcenter.server=127.0.0.1:9\nferry.vcenter.user=nobody\nferry.vcenter.connectTimeoutSeconds=5\nferry.stateDirectory=%s/state\n' "$T" >>"$T/agent.conf"
  fi
  grep -q '^ferry.control.listen=' "$T/agent.conf" || cat >>"$T/agent.conf" <<CONF
ferry.control.listen=127.0.0.1:0
ferry.tls.cert=$T/pki/proxy1.crt
ferry.tls.key=$T/pki/proxy1.key
CONF
  rm -f "$T/agent.ready"
  env "$@" "$AGENT" run --config "$T/agent.conf" --log-level 4 --ready-file "$T/agent.ready" \
    >>"$T/service.log" 2>&1 &
  AGENT_PID=$!
  for _ in $(seq 1 600); do
    [[ -s "$T/agent.ready" ]] && break
    kill -0 "$AGENT_PID" 2>/dev/null || fail "ferry-agent run exited at start: $(cat "$T/service.log")"
    sleep 0.05
  done
  [[ -s "$T/agent.ready" ]] || fail "ferry-agent run did not start"
  AGENT_ADDR=$(head -n1 "$T/agent.ready")
  cat >"$T/central.conf" <<CONF
# the central backup server: drives the agent, restores from the repository
ferry.agent=$AGENT_ADDR
ferry.repository=$ADDR
ferry.tls.cert=$T/pki/central.crt
ferry.tls.key=$T/pki/central.key
ferry.tls.ca=$T/pki/ca.crt
CONF
}

ctl() { "$FERRY" --config "$T/central.conf" "$@"; }

# wait_for DESCRIPTION COMMAND...: polls (generously) until COMMAND succeeds.
wait_for() {
  local what=$1; shift
  for _ in $(seq 1 600); do
    "$@" && return 0
    sleep 0.1
  done
  fail "timed out waiting for $what"
}

attach_journaled() { grep -qP '\tattach\t[0-9]+\t[0-9]+\t' "$T/state/journal" 2>/dev/null; }
# disabled_methods VM: the methods vSphere lists as disabled on the VM.
disabled_methods() { python3 "$SERVICE_TESTS/vsphere_props.py" "$T/vcready.json" "$1" disabledMethod; }

# nothing_left VM: no disk of ours on the proxy, no snapshot, the methods
# re-enabled, no loop device, an empty journal.
nothing_left() {
  [[ $(proxy_disk_count_vs) == 1 ]] || fail "the proxy still has $(proxy_disk_count_vs) disks"
  [[ $(vm_chain_len "$1") == 1 ]] || fail "a snapshot of $1 is left: $(control GET "disks?vm=$1")"
  [[ -z "$(disabled_methods "$1")" ]] || fail "methods still disabled on $1: $(disabled_methods "$1")"
  [[ $(our_loops) == 0 ]] || fail "loop devices left: $(losetup -l)"
  [[ $(journal_entries) == 0 ]] || fail "journal not empty: $(cat "$T/state/journal")"
  [[ $(ls "$T/guest/sys/block") == sda ]] || fail "devices left in the guest: $(ls "$T/guest/sys/block")"
}
