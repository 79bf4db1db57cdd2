#!/usr/bin/env bash
# Start or stop the pinned Azurite (Azure Storage emulator, blob service only) in the background.
# Usage: scripts/azurite.sh start|stop|status [DATA_DIR] [PORT]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
action="${1:-status}"
data_dir="${2:-$root/.local/azurite}"
port="${3:-${AZURITE_BLOB_PORT:-10000}}"
pid_file="$data_dir/azurite.pid"
log_file="$data_dir/azurite.log"

running() { [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

case "$action" in
  start)
    if running; then echo "Azurite already running (pid $(cat "$pid_file"), port $port)"; exit 0; fi
    [ -x "$root/node_modules/.bin/azurite-blob" ] || (cd "$root" && npm ci --no-audit --no-fund --loglevel=error)
    mkdir -p "$data_dir"
    nohup "$root/node_modules/.bin/azurite-blob" --silent --skipApiVersionCheck --loose \
      --blobHost 127.0.0.1 --blobPort "$port" --location "$data_dir" \
      >"$log_file" 2>&1 &
    echo $! >"$pid_file"
    for _ in $(seq 1 600); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "Azurite blob service on 127.0.0.1:$port"; exit 0; fi
      running || { echo "Azurite failed to start, see $log_file" >&2; cat "$log_file" >&2; exit 1; }
      sleep 0.1
    done
    echo "Azurite did not open port $port within 60 s, see $log_file" >&2
    kill "$(cat "$pid_file")" 2>/dev/null; rm -f "$pid_file"; exit 1
    ;;
  stop)
    if running; then
      pid="$(cat "$pid_file")"
      kill "$pid"
      # On SIGTERM Azurite closes gracefully, waiting for its clients' open keep-alive
      # connections: while the caller (a test session, say) still holds some it never exits.
      # Wait a little, then KILL: its data is flushed as it goes.
      for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
      echo "Azurite stopped"
    fi
    rm -f "$pid_file"
    ;;
  status)
    if running; then echo "running (pid $(cat "$pid_file"))"; else echo "stopped"; exit 1; fi
    ;;
  *) echo "usage: $0 start|stop|status [DATA_DIR] [PORT]" >&2; exit 2 ;;
esac
