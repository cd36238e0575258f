#!/usr/bin/env bash
# Starts or stops a ferry-vcsim that outlives the calling process, for ctest
# fixtures (ferry_vcsim_fixture in vcsim.cmake) and the demo.
#   fixture.sh start DIR [ferry-vcsim flags...]   ready file: DIR/ready.json
#   fixture.sh stop DIR
# start waits until the ready file exists and fails (with the log) if the
# simulator dies first; stop sends SIGTERM to the PID it recorded, waits,
# and removes DIR.
set -euo pipefail

: "${VCSIM:?VCSIM must point at the ferry-vcsim binary}"
cmd=${1:-}
dir=${2:-}
[[ -n "$cmd" && -n "$dir" ]] || { echo "usage: $0 start|stop DIR [flags]" >&2; exit 2; }
shift 2

stop() {
  [[ -f "$dir/pid" ]] || return 0
  local pid
  pid=$(cat "$dir/pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "ferry-vcsim $pid ignored SIGTERM; killing it" >&2
      kill -KILL "$pid"
    fi
  fi
  rm -f "$dir/pid"
}

case "$cmd" in
  start)
    stop
    rm -rf "$dir"
    mkdir -p "$dir"
    # Detached from ctest's pipes, so ctest does not wait for it.
    setsid "$VCSIM" --listen 127.0.0.1:0 --datadir "$dir/data" --ready-file "$dir/ready.json" "$@" \
      </dev/null >"$dir/vcsim.log" 2>&1 &
    echo $! >"$dir/pid"
    for _ in $(seq 1 300); do
      [[ -s "$dir/ready.json" ]] && { echo "ferry-vcsim ready: $dir/ready.json"; exit 0; }
      if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        cat "$dir/vcsim.log" >&2
        rm -f "$dir/pid"
        exit 1
      fi
      sleep 0.1
    done
    echo "ferry-vcsim not ready after 30 s" >&2
    cat "$dir/vcsim.log" >&2
    stop
    exit 1
    ;;
  stop)
    stop
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start|stop DIR [flags]" >&2
    exit 2
    ;;
esac
