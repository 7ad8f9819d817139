#!/usr/bin/env bash
# Does scraping /metrics dent throughput, and what does a scrape cost with 10,000 queues?
# (BENCHMARKS.md, "Prometheus metrics".)
#
#   tools/metrics_bench.sh [ROUNDS] [SECONDS]
#
# Part 1: `warren-perf throughput --confirm` against a fresh broker (--fsync always), with
# and without a scrape of /metrics every second, alternating, ROUNDS of each.
# Part 2: 10,000 durable queues (one message each) declared with pika, then /metrics and
# /metrics/per-object timed with curl, 5 scrapes each.
# Needs: cargo build --release, curl, python3 with pika. Ports 5745 and 15745.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-10}
port=5745
prom=15745
url="amqp://guest:guest@127.0.0.1:$port/%2f"

start_broker() {
    dir=$(mktemp -d -p target warren-metrics-XXXX)
    target/release/warren --listen 127.0.0.1:$port --http off --prometheus 127.0.0.1:$prom \
        --fsync always --data-dir "$dir" 2>"$dir.log" &
    broker=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "localhost:$prom/metrics" && return
        sleep 0.1
    done
    echo "broker did not start" >&2
    exit 1
}

stop_broker() {
    kill "$broker"
    wait "$broker" || true
    rm -rf "$dir" "$dir.log"
}

echo "== throughput --confirm, ${seconds}s, $rounds rounds"
for r in $(seq "$rounds"); do
    for mode in plain scraped; do
        start_broker
        loop=
        if [ $mode = scraped ]; then
            (while true; do curl -s "localhost:$prom/metrics" >/dev/null; sleep 1; done) &
            loop=$!
        fi
        rate=$(target/release/warren-perf throughput --confirm --seconds "$seconds" --url "$url" --json |
            python3 -c 'import json,sys; print(round(json.load(sys.stdin)["consumed_per_s"]))')
        [ -n "$loop" ] && kill "$loop"
        stop_broker
        echo "round $r $mode consumed_per_s $rate"
    done
done

echo "== one scrape with 10,000 queues"
start_broker
python3 - "$port" <<'EOF'
import sys, pika
conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", int(sys.argv[1])))
ch = conn.channel()
for i in range(10000):
    ch.queue_declare(f"q{i:05}", durable=True)
    ch.basic_publish("", f"q{i:05}", b"m", pika.BasicProperties(delivery_mode=2))
conn.close()
EOF
for path in /metrics /metrics/per-object; do
    for i in 1 2 3 4 5; do
        curl -s -o /dev/null -w "$path %{time_total}s %{size_download} bytes\n" "localhost:$prom$path"
    done
done
curl -s "localhost:$prom/metrics" | grep -E '^(rabbitmq_queues|warren_segment_files|rabbitmq_queue_messages) '
stop_broker
