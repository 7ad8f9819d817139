#!/usr/bin/env python3
"""Does durable-definition I/O stall other clients? (issue 9: no fsync under the model lock)

Starts the broker (--fsync always) on a fresh data dir; one connection declares and
deletes durable queues as fast as it can (every one rewrites and fsyncs definitions.toml)
while another does publish + basic.get round trips on a queue of its own and records their
latency. Prints the round trips' p50/p99/max with and without the declaring client.

    python3 tools/lock_wait.py --broker target/release/warren [--seconds 5] [--port 25700]

Needs pika.
"""
import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pika


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("broker did not start")


def connect(port):
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, heartbeat=0))


def round_trips(port, seconds, out):
    ch = connect(port).channel()
    ch.queue_declare("lw.probe")
    end = time.time() + seconds
    while time.time() < end:
        t = time.perf_counter()
        ch.basic_publish("", "lw.probe", b"x")
        while ch.basic_get("lw.probe", auto_ack=True)[0] is None:
            pass
        out.append(time.perf_counter() - t)


def declarer(port, stop, count):
    ch = connect(port).channel()
    i = 0
    while not stop.is_set():
        ch.queue_declare(f"lw.durable.{i % 50}", durable=True)
        ch.queue_delete(f"lw.durable.{(i + 25) % 50}")
        i += 1
    count.append(i)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * (len(xs) - 1)))] * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", required=True)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--port", type=int, default=25700)
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="lock-wait-")
    broker = subprocess.Popen([a.broker, "--listen", f"127.0.0.1:{a.port}", "--http", "127.0.0.1:0", "--prometheus", "127.0.0.1:0", "--data-dir", data,
                               "--fsync", "always"], stderr=subprocess.DEVNULL)
    try:
        wait_port(a.port)
        quiet = []
        round_trips(a.port, a.seconds, quiet)
        busy, stop, count = [], threading.Event(), []
        t = threading.Thread(target=declarer, args=(a.port, stop, count))
        t.start()
        round_trips(a.port, a.seconds, busy)
        stop.set()
        t.join()
        for name, xs in (("alone", quiet), ("with a declaring client", busy)):
            print(f"{name:>24}: {len(xs):6} round trips, p50 {pct(xs, .5):7.0f} us, "
                  f"p99 {pct(xs, .99):7.0f} us, max {max(xs) * 1e6:7.0f} us")
        print(f"{'':>24}  ({count[0]} durable declare+delete pairs meanwhile)")
    finally:
        broker.terminate()
        broker.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
