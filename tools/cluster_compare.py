#!/usr/bin/env python3
"""Quorum queues on three nodes: Warren's cluster and RabbitMQ's, on this machine, one after
the other, driven by the same warren-perf command (issue 16's figures).

Each round starts a fresh three-node cluster of each broker, runs
`warren-perf throughput --confirm --queue-type quorum` (one producer with confirms, one
consumer acking) against the node that leads the queue, and stops the cluster. Messages of
16 B and 1 KiB. Prints one JSON line per run and a table of medians.

RabbitMQ: three Debian `rabbitmq-server` nodes (rabbit1..3@localhost, AMQP 5781..5783,
distribution ports 25781..25783, one shared HOME so they share the Erlang cookie), the
second and third joined to the first with `rabbitmqctl join_cluster`. A quorum queue
declared by a client of rabbit1 is led by rabbit1 (3.10's default leader locator,
client-local) and has members on all three.

Warren: `--node-id 1..3 --cluster-listen 127.0.0.1:2578N --cluster-peers ...`, AMQP
5791..5793, `--fsync always`. The queue's group is led by its first member, which is
fixed by the queue's name: a first run declares it, `warren cluster status` names the
leader, and the measured runs connect there.

Usage: tools/cluster_compare.py [--rounds N] [--seconds S] [--only warren|rabbitmq]
Needs: cargo build --release; rabbitmq-server (apt-get install rabbitmq-server).
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# WARREN_BIN: another build of warren to measure (a before/after comparison).
WARREN = os.environ.get("WARREN_BIN") or os.path.join(ROOT, "target", "release", "warren")
PERF = os.path.join(ROOT, "target", "release", "warren-perf")
SIZES = (16, 1024)


def wait_port(port, timeout=90):
    until = time.time() + timeout
    while time.time() < until:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def perf(port, size, seconds):
    cmd = [PERF, "throughput", "--confirm", "--queue-type", "quorum", "--size", str(size),
           "--seconds", str(seconds), "--json", "--url", f"amqp://guest:guest@127.0.0.1:{port}/%2f"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not lines:
        return {"error": (out.stderr or out.stdout)[-300:]}
    return json.loads(lines[-1])


class WarrenCluster:
    name = "Warren"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="warren-cluster-", dir=os.path.join(ROOT, "target"))
        peers = ",".join(f"{i}=127.0.0.1:{25780 + i}" for i in (1, 2, 3))
        self.argv = [[WARREN, "--node-id", str(i), "--cluster-listen", f"127.0.0.1:{25780 + i}",
                      "--cluster-peers", peers, "--listen", f"127.0.0.1:{5790 + i}", "--http", "off",
                      "--prometheus", "off", "--fsync", "always", "--data-dir", os.path.join(self.dir, f"n{i}")]
                     for i in (1, 2, 3)]
        self.procs = [self.spawn(i) for i in (1, 2, 3)]
        for i in (1, 2, 3):
            if not wait_port(5790 + i):
                sys.exit(f"warren node {i} did not start")
        self.wait_meta_leader()

    def spawn(self, i):
        """Starts node i (1-based), its log appended to n{i}.log in the cluster's directory."""
        with open(os.path.join(self.dir, f"n{i}.log"), "ab") as log:
            return subprocess.Popen(self.argv[i - 1], stdout=log, stderr=subprocess.STDOUT)

    def status(self, node=1):
        out = subprocess.run([WARREN, "--node-id", str(node), "--cluster-listen", f"127.0.0.1:{25780 + node}",
                              "cluster", "status", "--json"], capture_output=True, text=True)
        try:
            return json.loads(out.stdout)
        except ValueError:
            return None

    def wait_meta_leader(self):
        until = time.time() + 30
        while time.time() < until:
            s = self.status()
            if s and any(g["group"] == "meta" and g["leader"] for g in s["groups"]):
                return
            time.sleep(0.2)
        sys.exit("the Warren cluster elected no leader")

    def queue_leader(self):
        until = time.time() + 30
        while time.time() < until:
            s = self.status()
            for g in (s or {}).get("groups", []):
                if g["group"].startswith("queue-") and g["leader"]:
                    return g["leader"]
            time.sleep(0.2)
        return None

    def leader_port(self):
        # The first run declares the queue (and deletes it when done); the group of the
        # same name is led by the same first member every time.
        subprocess.run([PERF, "throughput", "--confirm", "--queue-type", "quorum", "--seconds", "1",
                        "--url", "amqp://guest:guest@127.0.0.1:5791/%2f"], capture_output=True, timeout=120)
        proc = subprocess.Popen([PERF, "throughput", "--confirm", "--queue-type", "quorum", "--seconds", "3",
                                 "--url", "amqp://guest:guest@127.0.0.1:5791/%2f"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        leader = self.queue_leader()
        proc.wait(120)
        return 5790 + (leader or 1)

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        # WARREN_CLUSTER_LOGS=DIR keeps each node's log (DIR/<cluster dir>-n1.log, ...):
        # leadership changes are counted from them.
        keep = os.environ.get("WARREN_CLUSTER_LOGS")
        if keep:
            os.makedirs(keep, exist_ok=True)
            for i in range(1, len(self.procs) + 1):
                src = os.path.join(self.dir, f"n{i}.log")
                if os.path.exists(src):
                    shutil.copy(src, os.path.join(keep, f"{os.path.basename(self.dir)}-n{i}.log"))
        shutil.rmtree(self.dir, ignore_errors=True)


class RabbitCluster:
    name = "RabbitMQ"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rmq-cluster-")
        self.procs = []
        for i in (1, 2, 3):
            d = os.path.join(self.dir, f"n{i}")
            for sub in ("mnesia", "log"):
                os.makedirs(os.path.join(d, sub))
            with open(os.path.join(d, "plugins"), "w") as f:
                f.write("[].\n")
            open(os.path.join(d, "rabbitmq.conf"), "w").close()
            env = self.env(i)
            self.procs.append(subprocess.Popen(["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=env,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                               start_new_session=True))
        for i in (1, 2, 3):
            if not wait_port(5780 + i):
                sys.exit(f"rabbit{i} did not start")
        for i in (2, 3):
            for args in (["stop_app"], ["join_cluster", "rabbit1@localhost"], ["start_app"]):
                self.ctl(i, *args)
        if not wait_port(5782) or not wait_port(5783):
            sys.exit("RabbitMQ nodes did not come back after joining")
        print(self.ctl(1, "cluster_status").splitlines()[:12], file=sys.stderr)

    def env(self, i):
        d = os.path.join(self.dir, f"n{i}")
        # One HOME: the nodes (and rabbitmqctl) share the Erlang cookie written there.
        return dict(os.environ, HOME=self.dir, RABBITMQ_NODE_PORT=str(5780 + i),
                    RABBITMQ_NODENAME=f"rabbit{i}@localhost", RABBITMQ_DIST_PORT=str(25790 + i),
                    RABBITMQ_MNESIA_BASE=os.path.join(d, "mnesia"), RABBITMQ_LOG_BASE=os.path.join(d, "log"),
                    RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(d, "plugins"),
                    RABBITMQ_CONFIG_FILE=os.path.join(d, "rabbitmq"))

    def ctl(self, i, *args):
        out = subprocess.run(["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", f"rabbit{i}@localhost", *args],
                             env=self.env(i), capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            sys.exit(f"rabbitmqctl {args}: {out.stderr}")
        return out.stdout

    def leader_port(self):
        return 5781  # client-local: the declaring node leads

    def stop(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, 15)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
        subprocess.run(["pkill", "-9", "-f", "rabbit[123]@localhost"])
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--only", choices=("warren", "rabbitmq"))
    a = ap.parse_args()
    kinds = [k for k in (WarrenCluster, RabbitCluster) if not a.only or k.name.lower() == a.only]
    results = {}
    for r in range(a.rounds):
        for kind in kinds:
            cluster = kind()
            try:
                port = cluster.leader_port()
                for size in SIZES:
                    res = perf(port, size, a.seconds)
                    res.update(broker=kind.name, size=size, round=r + 1, port=port)
                    print(json.dumps(res), flush=True)
                    results.setdefault((kind.name, size), []).append(res)
            finally:
                cluster.stop()
    print("\n| broker | size | confirmed msg/s (runs) | median | p50 µs | p99 µs |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for (name, size), runs in sorted(results.items()):
        ok = [x for x in runs if "confirmed_per_s" in x]
        rates = [x["confirmed_per_s"] for x in ok]
        if not rates:
            print(f"| {name} | {size} | failed | | | |")
            continue
        p50 = statistics.median(x["latency_p50_us"] for x in ok)
        p99 = statistics.median(x["latency_p99_us"] for x in ok)
        print(f"| {name} | {size} | {' / '.join(f'{x:,}' for x in rates)} | {statistics.median(rates):,.0f} | {p50:,.0f} | {p99:,.0f} |")


if __name__ == "__main__":
    main()
