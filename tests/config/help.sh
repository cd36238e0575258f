#!/usr/bin/env bash
# config.help: every subcommand of ferry-agent, ferry and ferry-repo
# answers --help (and -h, anywhere among its arguments) with its usage on
# stdout and exit 0, the command list comes from each program's own
# --help (so a new command is covered without editing this test), an
# unknown option still fails with exit 2, the usages name the options the
# issues name, and --log-level takes 0..6 only.
# usage: help.sh   (BIN in the environment)
set -euo pipefail
: "${BIN:?BIN must point at build/bin}"
fail() { echo "FAIL: $*" >&2; exit 1; }

# commands PROGRAM SED-EXPR: the command names PROGRAM --help lists.
commands() { "$BIN/$1" --help | sed -nE "$2" | sort -u; }

check() {
  local prog=$1 cmd=$2 out err rc
  shift 2
  for form in "--help" "-h"; do
    rc=0
    out=$("$BIN/$prog" "$@" "$cmd" --json "$form" 2>"$T.err") || rc=$?
    err=$(cat "$T.err")
    [[ $rc == 0 ]] || fail "$prog $cmd $form: exit $rc: $err"
    [[ -z "$err" ]] || fail "$prog $cmd $form wrote to stderr: $err"
    [[ "$out" == "usage: "*"$cmd"* ]] || fail "$prog $cmd $form: $out"
  done
  rc=0
  "$BIN/$prog" "$@" "$cmd" --no-such-option >/dev/null 2>&1 || rc=$?
  [[ $rc == 2 ]] || fail "$prog $cmd --no-such-option: exit $rc, not 2"
  echo "ok: $prog $cmd --help: $(head -n1 <<<"$out")"
}

T=$(mktemp "${TMPDIR:-/tmp}/ferry-help.XXXXXX")
trap 'rm -f "$T" "$T.err"' EXIT

agent_cmds=$(commands ferry-agent 's/^  ([a-z-]+) .*/\1/p')
ferry_cmds=$(commands ferry 's/^  ferry ([a-z-]+).*/\1/p')
repo_cmds=$(commands ferry-repo 's/^  ferry-repo ([a-z-]+).*/\1/p')
[[ $(wc -w <<<"$agent_cmds") -ge 5 ]] || fail "ferry-agent --help lists: $agent_cmds"
[[ $(wc -w <<<"$ferry_cmds") -ge 9 ]] || fail "ferry --help lists: $ferry_cmds"
[[ $(wc -w <<<"$repo_cmds") -ge 5 ]] || fail "ferry-repo --help lists: $repo_cmds"

for c in $agent_cmds; do check ferry-agent "$c"; done
for c in $ferry_cmds; do check ferry "$c"; done
# ferry takes its global options before the command too.
check ferry list --config /nonexistent.conf
for c in $repo_cmds; do check ferry-repo "$c"; done

# The usages name the options users type: ferry-agent backup's VM job
# options, and restore-vm's placement options.
out=$("$BIN/ferry-agent" backup --help)
for opt in --vm --full --incremental --enable-cbt --quiesce --snapshot --compression-level; do
  grep -q -- "$opt" <<<"$out" || fail "ferry-agent backup --help does not list $opt: $out"
done
for prog in "ferry-agent restore-vm" "ferry restore-vm"; do
  # shellcheck disable=SC2086
  out=$("$BIN"/$prog --help)
  for opt in --name --datastore --host --resource-pool --folder --network \
             --disk-provisioning --keep-mac --power-on --transport --json --into "--disk N"; do
    grep -q -- "$opt" <<<"$out" || fail "$prog --help does not list $opt: $out"
  done
done

# --log-level: a level, not whatever atoi makes of it.
for prog in "ferry-agent backup --source /dev/null" "ferry-agent transports" "ferry list"; do
  rc=0
  # shellcheck disable=SC2086
  out=$("$BIN"/$prog --log-level 7x 2>&1) || rc=$?
  [[ $rc == 2 ]] || fail "$prog --log-level 7x: exit $rc: $out"
  grep -q "log-level takes a level in 0..6" <<<"$out" || fail "$prog --log-level 7x: $out"
done
echo "config help: all ok"
