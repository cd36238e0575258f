#!/usr/bin/env bash
# Logging at the most verbose level (6) against the simulated vCenter and a
# real repository: tmpDirectory gets one 0600 file per process (its
# directory created 0700), ferry.logFile keeps working beside it, every
# line is whole although several threads log at once, and no credential
# appears anywhere: not the password (from a file, from the environment, or
# a wrong one that vCenter refuses), not the session cookie.
# usage: logging.sh   (BIN, TOOLS, SRC in the environment)
set -euo pipefail
: "${SRC:?SRC must point at the source tree}"
source "$SRC/tests/integration/lib.sh"
VCSIM="$BIN/ferry-vcsim"
[[ -x "$VCSIM" ]] || { echo "SKIP: $VCSIM is not built (tests/vcsim)"; exit 77; }

"$VCSIM" --listen 127.0.0.1:0 --datadir "$T/vc" --ready-file "$T/ready.json" \
  >"$T/vcsim.log" 2>&1 &
VCSIM_PID=$!
CLEANUP_CMDS+=('kill "$VCSIM_PID" 2>/dev/null; wait "$VCSIM_PID" 2>/dev/null')
for _ in $(seq 1 300); do
  [[ -s "$T/ready.json" ]] && break
  kill -0 "$VCSIM_PID" 2>/dev/null || fail "ferry-vcsim exited at start: $(cat "$T/vcsim.log")"
  sleep 0.1
done
[[ -s "$T/ready.json" ]] || fail "ferry-vcsim did not start"
python3 "$SRC/tests/vsphere/ready2conf.py" "$T/ready.json" "$T" >"$T/test.conf"
get() { grep "^$1=" "$T/test.conf" | head -n1 | cut -d= -f2-; }
PASSWORD=$(json "$T/ready.json" 'j["password"]')
FILE=$(get test.vms.vm-two-disks.disks.0.file)
[[ ${#PASSWORD} -ge 8 ]] || fail "password '$PASSWORD' too short to grep for"

make_certs
start_repo
grep -v '^test\.' "$T/test.conf" >>"$T/agent.conf"
mkdir -p "$T/nosys" "$T/tmp"
export TMPDIR="$T/tmp"
LOGDIR="$T/logs/ferry"
cat >>"$T/agent.conf" <<CONF
ferry.hotadd.sysfsRoot=$T/nosys
vixDiskLib.transport.LogLevel=6
tmpDirectory=$LOGDIR
ferry.logFile=$T/agent.log
CONF

note "inventory at log level 6"
"$AGENT" inventory --config "$T/agent.conf" >"$T/out1" 2>"$T/err1" ||
  fail "inventory: $(cat "$T/err1")"
[[ $(stat -c %a "$LOGDIR") == 700 ]] || fail "tmpDirectory mode $(stat -c %a "$LOGDIR")"
mapfile -t files < <(ls "$LOGDIR")
[[ ${#files[@]} -eq 1 && ${files[0]} =~ ^ferry-agent-[0-9]+\.log$ ]] ||
  fail "tmpDirectory holds: ${files[*]}"
[[ $(stat -c %a "$LOGDIR/${files[0]}") == 600 ]] || fail "log file mode"
grep -q ' trivia: ' "$LOGDIR/${files[0]}" || fail "no trivia line in ${files[0]}"
# The same lines went to stderr and to ferry.logFile.
cmp -s "$T/err1" "$LOGDIR/${files[0]}" || fail "stderr and the tmpDirectory file differ"
cmp -s "$T/err1" "$T/agent.log" || fail "stderr and ferry.logFile differ"
echo "ok: $LOGDIR/${files[0]}: $(wc -l <"$LOGDIR/${files[0]}") lines, mode 600"

note "a backup over https at log level 6 (several threads log at once)"
"$AGENT" backup --config "$T/agent.conf" --source "vsphere-ds:$FILE" \
  --transport https --json --quiet >"$T/last.json" 2>"$T/err2" ||
  fail "backup: $(tail -n 5 "$T/err2")"
[[ $(ls "$LOGDIR" | wc -l) -eq 2 ]] || fail "a second process, a second file: $(ls "$LOGDIR")"
# Every line whole: timestamp, program, level, message.
bad=$(cat "$LOGDIR"/*.log | grep -cvE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z ferry\[[0-9]+\] (panic|error|warning|info|verbose|trivia): ' || true)
[[ $bad -eq 0 ]] || fail "$bad torn or foreign lines in the log files"
echo "ok: $(cat "$LOGDIR"/*.log | wc -l) whole lines in $(ls "$LOGDIR" | wc -l) files"

note "the password from the environment, and a wrong one"
grep -v '^ferry.vcenter.passwordFile=' "$T/agent.conf" >"$T/env.conf"
FERRY_VCENTER_PASSWORD="$PASSWORD" "$AGENT" inventory --config "$T/env.conf" \
  >/dev/null 2>"$T/err3" || fail "inventory with FERRY_VCENTER_PASSWORD: $(cat "$T/err3")"
WRONG="Wr0ng-$RANDOM$RANDOM-secret"
FERRY_VCENTER_PASSWORD="$WRONG" "$AGENT" inventory --config "$T/env.conf" \
  >/dev/null 2>"$T/err4" && echo "note: ferry-vcsim accepted a wrong password"
tail -n 1 "$T/err4"

note "no credential in any log"
logs=("$T"/err* "$T/agent.log" "$LOGDIR"/*.log)
for secret in "$PASSWORD" "$WRONG" vmware_soap_session; do
  if grep -lF -- "$secret" "${logs[@]}"; then
    fail "'$secret' appears in the logs above"
  fi
done
echo "ok: $(cat "${logs[@]}" | wc -l) log lines, no password, no session cookie"
