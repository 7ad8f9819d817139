#!/usr/bin/env python3
"""Memory under a deep quorum-queue backlog on three nodes: Warren's cluster and
RabbitMQ's, on this machine, one after the other (issue 16's memory figures).

For each broker: a fresh three-node cluster (as `tools/cluster_compare.py` starts them),
one quorum queue declared on node 1, MESSAGES persistent messages of SIZE random bytes
published to it through node 1 (pika, no consumer) until the queue counts them all; each
node's resident and anonymous memory (`/proc/PID/smaps_rollup`) then; node 3 killed with
SIGKILL and started again, its anonymous memory sampled every 0.5 s for 20 s (the peak:
what rebuilding its copy of the queue costs) and read once its queue counts every message;
finally every message consumed through node 3 and compared with what was published.

Prints one JSON line per broker and a table.

Usage: tools/cluster_backlog.py [--messages N] [--size BYTES] [--only warren|rabbitmq]
Needs: cargo build --release; python3-pika; rabbitmq-server for the RabbitMQ column.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import pika

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_compare import RabbitCluster, WarrenCluster, wait_port  # noqa: E402

QUEUE = "backlog"


def memory(pid):
    """(RSS, anonymous) of process `pid` in MiB."""
    rss = anon = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) // 1024
            elif line.startswith("Anonymous:"):
                anon = int(line.split()[1]) // 1024
    return rss, anon


class Broker:
    """A started cluster with what this script needs of it: AMQP ports, node pids, a
    kill -9 and restart of one node."""

    def __init__(self, kind):
        self.kind = kind
        self.cluster = WarrenCluster() if kind == "warren" else RabbitCluster()
        self.base = 5790 if kind == "warren" else 5780

    def port(self, i):
        return self.base + i

    def pid(self, i):
        if self.kind == "warren":
            return self.cluster.procs[i - 1].pid
        # The node's name is in its environment, not its command line: its Erlang VM is
        # the beam.smp in the session `rabbitmq-server` was started in.
        session = self.cluster.procs[i - 1].pid
        out = subprocess.run(["ps", "-eo", "pid=,sid=,comm="], capture_output=True, text=True)
        for line in out.stdout.splitlines():
            pid, sid, comm = line.split(None, 2)
            if comm.strip() == "beam.smp" and int(sid) == session:
                return int(pid)
        raise ValueError(f"no beam.smp for node {i}")

    def restart(self, i):
        if self.kind == "warren":
            self.cluster.procs[i - 1].kill()
            self.cluster.procs[i - 1].wait()
            self.cluster.procs[i - 1] = self.cluster.spawn(i)
        else:
            proc = self.cluster.procs[i - 1]
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            self.cluster.procs[i - 1] = subprocess.Popen(
                ["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=self.cluster.env(i),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        # The new process is there at once; its pid is what is sampled.
        until = time.time() + 30
        while time.time() < until:
            try:
                return self.pid(i)
            except (IndexError, ValueError):
                time.sleep(0.1)
        sys.exit(f"node {i} did not come back")

    def stop(self):
        self.cluster.stop()


def count(port):
    """The queue's message count as node `port` answers, or None while it cannot."""
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
        try:
            return conn.channel().queue_declare(QUEUE, passive=True).method.message_count
        finally:
            conn.close()
    except Exception:  # noqa: BLE001 - a node still starting refuses or closes
        return None


def run(kind, messages, size):
    broker = Broker(kind)
    try:
        body = os.urandom(size)
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port(1)))
        ch = conn.channel()
        ch.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        started = time.time()
        persistent = pika.BasicProperties(delivery_mode=2)
        for _ in range(messages):
            ch.basic_publish("", QUEUE, body, persistent)
        while ch.queue_declare(QUEUE, passive=True).method.message_count < messages:
            time.sleep(0.5)
        published_s = time.time() - started
        conn.close()
        time.sleep(5)
        backlog = {i: memory(broker.pid(i)) for i in (1, 2, 3)}

        pid = broker.restart(3)
        peak = 0
        for _ in range(40):
            time.sleep(0.5)
            try:
                peak = max(peak, memory(pid)[1])
            except FileNotFoundError:
                pid = broker.pid(3)
        wait_port(broker.port(3))
        until = time.time() + 300
        while count(broker.port(3)) != messages and time.time() < until:
            time.sleep(1)
        restarted = memory(broker.pid(3))

        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port(3)))
        ch = conn.channel()
        ch.basic_qos(prefetch_count=500)
        consumed = intact = 0
        for method, _, got in ch.consume(QUEUE, inactivity_timeout=15):
            if method is None:
                break
            consumed += 1
            intact += got == body
            ch.basic_ack(method.delivery_tag)
            if consumed == messages:
                break
        conn.close()
        return {
            "broker": kind, "messages": messages, "size": size, "published_s": round(published_s, 1),
            "backlog_mib": {f"n{i}": {"rss": r, "anon": a} for i, (r, a) in backlog.items()},
            "restarted_n3_anon_peak_mib": peak,
            "restarted_n3_mib": {"rss": restarted[0], "anon": restarted[1]},
            "consumed_from_n3": consumed, "intact": intact,
        }
    finally:
        broker.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=50000)
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--only", choices=("warren", "rabbitmq"))
    args = ap.parse_args()
    kinds = [args.only] if args.only else ["warren", "rabbitmq"]
    results = []
    for kind in kinds:
        r = run(kind, args.messages, args.size)
        print(json.dumps(r), flush=True)
        results.append(r)
    print(f"\n{args.messages} x {args.size} B in one quorum queue, no consumer (MiB):")
    print("| broker | node 1 RSS / anon | node 2 RSS / anon | node 3 RSS / anon | node 3 restarted: anon peak | consumed intact |")
    print("| --- | --- | --- | --- | ---: | ---: |")
    for r in results:
        b = r["backlog_mib"]
        cells = " | ".join(f"{b[n]['rss']} / {b[n]['anon']}" for n in ("n1", "n2", "n3"))
        print(f"| {r['broker']} | {cells} | {r['restarted_n3_anon_peak_mib']} | {r['intact']} of {r['messages']} |")


if __name__ == "__main__":
    main()
