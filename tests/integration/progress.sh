#!/usr/bin/env bash
# integration.progress: the progress line on a terminal fits the terminal
# (fields are dropped, never wrapped) at 40, 60 and 80 columns, and ends at
# 100% once the backup is done. The agent runs on a real pseudo-terminal
# of that size.
source "$(dirname "$0")/lib.sh"

make_certs
start_repo
mkimage create "$T/p.img" $((24 * 1024 * 1024)) --seed 51
for cols in 40 60 80; do
  out=$(python3 "$TOOLS/ptyrun.py" "$cols" "$AGENT" backup --config "$T/agent.conf" --source "$T/p.img") ||
    fail "progress at $cols columns: $out"
  [[ $(tail -n1 <<<"$out" | sed 's/^ *//') == 100%* ]] || fail "the last line at $cols columns: $(tail -n1 <<<"$out")"
done
echo "progress: OK"
