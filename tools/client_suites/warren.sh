#!/usr/bin/env bash
# Start/stop a Warren broker for the client suites.
#   warren.sh start [PORT] [BINARY]   (defaults 5698, /tmp/warren-suites); state in /tmp/client-suites-warren.$PORT
#   warren.sh stop  [PORT] [LOG_COPY]   (LOG_COPY: where to save Warren's log)
# Listens on [::]:PORT (env WARREN_LISTEN_HOST, default "[::]"): with net.ipv6.bindv6only=0 that
# socket takes IPv4 (127.0.0.1) and IPv6 (::1) connections alike; amqplib's `ipv6` test
# connects to amqp://[::1], as RabbitMQ's default listener ([::]:PORT) allows.
set -euo pipefail
cmd=${1:?start|stop}; port=${2:-5698}; bin=${3:-/tmp/warren-suites}
state=/tmp/client-suites-warren.$port
case $cmd in
start)
  dir=$(mktemp -d /tmp/warren-suites-data-XXXXXX)
  "$bin" --listen "${WARREN_LISTEN_HOST:-[::]}:$port" --http 127.0.0.1:0 --prometheus 127.0.0.1:0 --data-dir "$dir" ${WARREN_ARGS:-} </dev/null >"$dir.log" 2>&1 &
  echo "$! $dir" > "$state"
  for _ in $(seq 60); do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then echo "$dir (pid $!, log $dir.log)"; exit 0; fi
    sleep 0.5
  done
  echo "Warren did not start on $port (log $dir.log)" >&2; exit 1 ;;
stop)
  [ -f "$state" ] || { echo "no Warren recorded for port $port" >&2; exit 0; }
  read -r pid dir < "$state"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -KILL "$pid" 2>/dev/null || true
  [ -z "${3:-}" ] || cp "$dir.log" "$3" 2>/dev/null || true
  rm -rf "$dir" "$dir.log" "$state" ;;
*) echo "usage: $0 start|stop [PORT] [BINARY]" >&2; exit 2 ;;
esac
