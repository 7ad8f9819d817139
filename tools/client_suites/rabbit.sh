#!/usr/bin/env bash
# Start/stop a private RabbitMQ node for the client suites, launched the way tools/compare.py's
# class Rabbit does it (as root, straight from /usr/lib/rabbitmq/bin/rabbitmq-server, no plugins).
#   rabbit.sh start [PORT]   -> prints the node's temp dir; state kept in /tmp/client-suites-rabbit.$PORT
#   rabbit.sh stop  [PORT] [LOG_COPY]   (LOG_COPY: where to save the node's log first)
# Env: RABBIT_NODENAME (default suites@localhost), RABBIT_DIST_PORT (default 2$PORT).
set -euo pipefail
cmd=${1:?start|stop}; port=${2:-5697}
node=${RABBIT_NODENAME:-suites@localhost}; dist=${RABBIT_DIST_PORT:-2$port}
state=/tmp/client-suites-rabbit.$port
case $cmd in
start)
  dir=$(mktemp -d /tmp/rmq-suites-XXXXXX)
  mkdir -p "$dir/mnesia" "$dir/log"; echo '[].' > "$dir/plugins"
  export HOME=$dir RABBITMQ_NODE_PORT=$port RABBITMQ_NODENAME=$node \
    RABBITMQ_MNESIA_BASE=$dir/mnesia RABBITMQ_LOG_BASE=$dir/log RABBITMQ_DIST_PORT=$dist \
    RABBITMQ_ENABLED_PLUGINS_FILE=$dir/plugins RABBITMQ_CONFIG_FILE=$dir/rabbitmq
  # setsid: the node gets its own process group, whose id is written to $dir/pgid
  setsid bash -c 'echo $$ > "$0/pgid"; cd "$0"; exec /usr/lib/rabbitmq/bin/rabbitmq-server' "$dir" \
    </dev/null >/dev/null 2>&1 &
  for _ in $(seq 120); do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then echo "$dir" > "$state"; echo "$dir"; exit 0; fi
    sleep 1
  done
  echo "RabbitMQ did not start on $port (logs in $dir/log)" >&2; exit 1 ;;
stop)
  [ -f "$state" ] || { echo "no node recorded for port $port" >&2; exit 0; }
  dir=$(cat "$state"); pg=$(cat "$dir/pgid")
  [ -z "${3:-}" ] || cat "$dir"/log/*.log > "$3" 2>/dev/null || true
  kill -TERM -- "-$pg" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 -- "-$pg" 2>/dev/null || break; sleep 1; done
  kill -KILL -- "-$pg" 2>/dev/null || true
  # epmd/beam children that left the process group: end them by pid, matched on this node name only
  for p in $(pgrep -f -- "-sname $node|-name $node|$node" || true); do
    [ "$p" != $$ ] && grep -q "$dir" /proc/$p/environ 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  done
  rm -rf "$dir" "$state" ;;
*) echo "usage: $0 start|stop [PORT]" >&2; exit 2 ;;
esac
