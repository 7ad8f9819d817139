#!/usr/bin/env python3
"""Traffic for the web console's screenshots (docs/console-*.png): a topic exchange
routing orders to three queues, a payments queue with confirms, consumers that ack some
of it, an audit backlog, and a few hundred idle session queues, for DURATION seconds.

    warren --listen 127.0.0.1:5871 --http 127.0.0.1:5872 --prometheus 127.0.0.1:5873 \
        --data-dir /tmp/console-demo &
    python3 tools/console_demo.py --port 5871 --duration 90 &
    SHOTS=docs DOCS_QUEUE=orders.eu SETTLE_MS=60000 WARREN_URL=http://127.0.0.1:5872 \
        node tests/console/drive.js
"""

import argparse
import random
import threading
import time

import pika


def connect(port, name):
    params = pika.ConnectionParameters(
        host="127.0.0.1", port=port, client_properties={"connection_name": name})
    return pika.BlockingConnection(params)


def setup(port, sessions):
    c = connect(port, "demo-setup")
    ch = c.channel()
    ch.exchange_declare("orders", "topic", durable=True)
    for region in ("eu", "us", "asia"):
        ch.queue_declare(f"orders.{region}", durable=True)
        ch.queue_bind(f"orders.{region}", "orders", f"order.{region}.#")
    for q in ("payments", "emails", "audit.log"):
        ch.queue_declare(q, durable=True)
    for i in range(sessions):
        ch.queue_declare(f"session.{i:04}", durable=False, arguments={"x-expires": 3_600_000})
    # A backlog: what a slow downstream leaves behind.
    for i in range(20_000):
        ch.basic_publish("", "audit.log", f"audit event {i}".encode() * 8,
                         pika.BasicProperties(delivery_mode=2))
    c.close()


def publisher(port, stop, rate):
    c = connect(port, "orders-service")
    ch = c.channel()
    ch.confirm_delivery()
    n = 0
    while not stop.is_set():
        region = random.choice(("eu", "eu", "us", "asia"))
        body = f'{{"order": {n}, "region": "{region}", "total": {random.randint(5, 500)}}}'
        ch.basic_publish("orders", f"order.{region}.created", body.encode(),
                         pika.BasicProperties(delivery_mode=2, content_type="application/json"))
        if n % 3 == 0:
            ch.basic_publish("", "payments", body.encode(), pika.BasicProperties(delivery_mode=2))
        if n % 5 == 0:
            ch.basic_publish("", "emails", f"mail for order {n}".encode())
        n += 1
        time.sleep(1.0 / rate * random.uniform(0.5, 1.5))
    c.close()


def consumer(port, stop, queue, prefetch, delay):
    c = connect(port, f"{queue}-worker")
    ch = c.channel()
    ch.basic_qos(prefetch_count=prefetch)

    def on_message(ch, method, _props, _body):
        time.sleep(delay)
        ch.basic_ack(method.delivery_tag)

    ch.basic_consume(queue, on_message)
    while not stop.is_set():
        c.process_data_events(time_limit=0.2)
    c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=5871)
    ap.add_argument("--duration", type=float, default=90)
    ap.add_argument("--rate", type=float, default=150, help="orders per second")
    ap.add_argument("--sessions", type=int, default=300)
    a = ap.parse_args()
    setup(a.port, a.sessions)
    stop = threading.Event()
    threads = [
        threading.Thread(target=publisher, args=(a.port, stop, a.rate)),
        threading.Thread(target=consumer, args=(a.port, stop, "orders.us", 20, 0.004)),
        threading.Thread(target=consumer, args=(a.port, stop, "emails", 50, 0.001)),
        threading.Thread(target=consumer, args=(a.port, stop, "payments", 10, 0.01)),
    ]
    for t in threads:
        t.start()
    time.sleep(a.duration)
    stop.set()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
