#!/usr/bin/env python3
"""Delayed messages at scale (issue 11): publishes --messages messages to an
x-delayed-message exchange with delays spread uniformly over --spread seconds (after a
--lead-in), samples the broker's RSS while they are held, and consumes them as they fire:
reports how late each arrived after its due time (p50/p99/max) and the RSS per held
message.

    python3 tools/delayed_bench.py --port 5672 --broker-pid PID [--messages 1000000]

Each body carries its due time (ms since the epoch), so lateness is measured on one clock.
"""
import argparse
import os
import struct
import threading
import time

import pika


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=5672)
    ap.add_argument("--broker-pid", type=int, required=True)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--lead-in", type=float, default=None,
                    help="seconds before the first message is due (default: time to publish all, estimated)")
    ap.add_argument("--spread", type=float, default=20.0)
    ap.add_argument("--size", type=int, default=16)
    a = ap.parse_args()
    params = pika.ConnectionParameters("127.0.0.1", a.port, heartbeat=0)
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ex, q = "bench-delayed", "bench-delayed-q"
    ch.exchange_declare(ex, "x-delayed-message", durable=True, arguments={"x-delayed-type": "direct"})
    ch.queue_declare(q, durable=True)
    ch.queue_purge(q)
    ch.queue_bind(q, ex, "k")
    rss_before = rss(a.broker_pid)
    lead = a.lead_in if a.lead_in is not None else a.messages / 25_000 + 5
    start_ms = int((time.time() + lead) * 1000)
    spread_ms = int(a.spread * 1000)
    pad = b"x" * max(0, a.size - 8)
    t0 = time.time()
    for i in range(a.messages):
        offset = (i * 7919) % spread_ms  # spread deterministically, out of publish order
        due = start_ms + offset
        delay = due - int(time.time() * 1000)
        ch.basic_publish(ex, "k", struct.pack(">Q", due) + pad,
                         properties=pika.BasicProperties(headers={"x-delay": max(1, delay)}))
    publish_s = time.time() - t0
    held_rss = rss(a.broker_pid)
    first_due = start_ms / 1000
    if time.time() > first_due:
        print("warning: publishing took longer than the lead-in; raise --lead-in")
    lateness = []
    peak = [held_rss]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss(a.broker_pid))
            time.sleep(0.2)
    threading.Thread(target=sample, daemon=True).start()
    cconn = pika.BlockingConnection(params)
    cch = cconn.channel()
    cch.basic_qos(prefetch_count=5000)

    def on_msg(c, m, p, body):
        now = time.time() * 1000
        lateness.append(now - struct.unpack(">Q", body[:8])[0])
        if len(lateness) % 1000 == 0 or len(lateness) == a.messages:
            c.basic_ack(m.delivery_tag, multiple=True)
        if len(lateness) >= a.messages:
            c.stop_consuming()
    cch.basic_consume(q, on_msg)
    deadline = time.time() + lead + a.spread + 120
    while len(lateness) < a.messages and time.time() < deadline:
        cconn.process_data_events(time_limit=1)
    stop.set()
    lateness.sort()
    n = len(lateness)

    def pct(p):
        return lateness[min(n - 1, int(p * n))] if n else float("nan")
    print("delayed_bench: %d messages published in %.1f s (%.0f/s)" % (a.messages, publish_s, a.messages / publish_s))
    print("delayed_bench: broker RSS before %.1f MiB, holding %d messages %.1f MiB (%.1f bytes/message), peak %.1f MiB"
          % (rss_before / 2**20, a.messages, held_rss / 2**20, (held_rss - rss_before) / a.messages, peak[0] / 2**20))
    print("delayed_bench: %d of %d fired; lateness after due time: p50 %.1f ms, p99 %.1f ms, max %.1f ms, earliest %.1f ms"
          % (n, a.messages, pct(0.5), pct(0.99), lateness[-1] if n else float("nan"), lateness[0] if n else float("nan")))
    conn.close()
    cconn.close()


if __name__ == "__main__":
    main()
