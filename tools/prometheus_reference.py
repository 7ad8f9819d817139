#!/usr/bin/env python3
"""Records RabbitMQ 3.10's Prometheus output, the reference Warren's `/metrics` is checked
against (tests/prometheus.rs).

Starts a private RabbitMQ node (Debian's package; node prom@localhost, AMQP 5706, dist
25706, `rabbitmq_prometheus` on 15706), declares two queues with messages and one
consumer holding unacked deliveries (pika), waits for the node's statistics to refresh,
saves `/metrics` and `/metrics/per-object`, then stops the node.

Run:  python3 tools/prometheus_reference.py [--out tests/prometheus]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import wait_port, wait_closed  # noqa: E402

import pika  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE = "prom@localhost"
PORT = 5706
DIST = 25706
PROM = 15706


def start():
    """A throw-away node in a fresh temporary dir, as tools/compare.py's
    start_rabbit_node, with the Prometheus plugin on its own port. It runs in its own
    session, so its whole process group can be ended."""
    d = tempfile.mkdtemp(prefix="rmq-prom-")
    for sub in ("mnesia", "log"):
        os.makedirs(os.path.join(d, sub))
    with open(os.path.join(d, "plugins"), "w") as f:
        f.write("[rabbitmq_prometheus].\n")
    with open(os.path.join(d, "rabbitmq.conf"), "w") as f:
        f.write(f"prometheus.tcp.port = {PROM}\n")
    env = dict(os.environ, HOME=d,
               RABBITMQ_NODE_PORT=str(PORT), RABBITMQ_NODENAME=NODE,
               RABBITMQ_MNESIA_BASE=os.path.join(d, "mnesia"),
               RABBITMQ_LOG_BASE=os.path.join(d, "log"),
               RABBITMQ_DIST_PORT=str(DIST),
               RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(d, "plugins"),
               RABBITMQ_CONFIG_FILE=os.path.join(d, "rabbitmq"))
    proc = subprocess.Popen(["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    return d, proc


def load():
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", PORT))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("orders", durable=True)
    ch.queue_declare("events")
    for i in range(5):
        ch.basic_publish("", "orders", b"order %d" % i, pika.BasicProperties(delivery_mode=2))
    for i in range(3):
        ch.basic_publish("", "events", b"event %d" % i)
    ch.basic_publish("", "nowhere", b"unroutable")
    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=2)
    consumer.basic_consume("events", lambda *a: None)  # holds 2 unacked
    conn.process_data_events(time_limit=1)
    return conn


def get(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{PROM}{path}", timeout=30) as r:
        return r.read().decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/prometheus"))
    a = ap.parse_args()
    d, proc = None, None
    try:
        d, proc = start()
        if not wait_port(PORT, 60) or not wait_port(PROM, 30):
            sys.exit("RabbitMQ did not start")
        conn = load()
        # Queue and connection metrics come from tables the node refreshes every 5 s.
        time.sleep(12)
        conn.process_data_events(time_limit=0.1)
        os.makedirs(a.out, exist_ok=True)
        for path, name in (("/metrics", "metrics"), ("/metrics/per-object", "per-object")):
            text = get(path)
            out = os.path.join(a.out, f"rabbitmq-3.10.8-{name}.txt")
            with open(out, "w") as f:
                f.write(text)
            print(f"{out}: {len(text.splitlines())} lines")
        conn.close()
    finally:
        if proc is not None:
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
        subprocess.run(["pkill", "-9", "-f", NODE])
        wait_closed(PORT)
        if d:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
