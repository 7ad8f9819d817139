#!/usr/bin/env python3
"""How quorum queues scale on three nodes, and how fast a restarted node catches up
(issue 16's figures). Warren's cluster and, for the scaling rows, RabbitMQ's, on this
machine, one after the other (the clusters of tools/cluster_compare.py).

`scale`: for each count N of --queues, a fresh cluster; N quorum queues declared, a third
of them through each node (Warren places a queue's leader by its name, RabbitMQ 3.10 on the
declaring node: either way the leaders are spread); then one warren-perf per node, each on
its own third of the queues with a producer with confirms (window --window) and an acking
consumer per queue, all at once for --seconds. Reports the sum of the three clients' rates,
the worst of their latency percentiles, each node's RSS and CPU in the middle of the run,
and with no load: RSS and CPU of the idle cluster with the N queues declared, and RSS per
queue per node (over the row with the fewest queues).

`catchup`: one quorum queue; one member that does not lead is stopped (SIGKILL), --messages
messages of --size bytes are published with confirms to the leader, the member is started
again, and its copy is timed until it has applied everything the leader had: messages/s
and MB/s of catch-up, from the restart and from the moment its port opened.

`rebalance`: --queues quorum queues on Warren's three nodes; node 3 is killed (SIGKILL)
until nodes 1 and 2 lead every queue, then started again and given 3 s; then
`warren cluster rebalance --json` on node 1 is timed. Reports the leaders per node before
and after, how many moved and failed, and the seconds the command took.

`outsider`: one quorum queue on one of three nodes (`x-quorum-initial-group-size` 1), on
Warren and then on RabbitMQ; warren-perf (a producer with confirms and an acking
consumer) on each node in turn, --rounds times: on the node that holds the queue its
consumer is the leader's; on the other two, Warren's leader lends the messages (a node
that holds no copy) and RabbitMQ's node proxies to the leader. Reports msg/s and latency
per client node.

Usage: tools/cluster_scale.py scale [--queues 1,10,100,1000] [--seconds 15] [--only warren|rabbitmq]
       tools/cluster_scale.py outsider [--seconds 10] [--rounds 2] [--size 16] [--only warren|rabbitmq]
       tools/cluster_scale.py catchup [--messages 200000] [--size 1024]
       tools/cluster_scale.py rebalance [--queues 300]
Needs: cargo build --release (warren, warren-perf); python3-pika; rabbitmq-server for the
RabbitMQ rows.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import pika

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_compare as cc  # noqa: E402  (the two clusters and their ports)

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree_pids(pid):
    """The process and its descendants (RabbitMQ's server is a shell script around beam)."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children = {}
    for line in out.splitlines():
        p, pp = (int(x) for x in line.split())
        children.setdefault(pp, []).append(p)
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def node_usage(cluster, seconds):
    """Each node's RSS (KiB) and CPU (% of one core) over `seconds`."""
    trees = [tree_pids(p.pid) for p in cluster.procs]

    def cpu(tree):
        return sum(cpu_seconds(p) for p in tree if os.path.exists(f"/proc/{p}"))

    before = [cpu(t) for t in trees]
    time.sleep(seconds)
    after = [cpu(t) for t in trees]
    rss = [sum(rss_kib(p) for p in t if os.path.exists(f"/proc/{p}")) for t in trees]
    return rss, [round(100 * (b - a) / seconds, 1) for a, b in zip(before, after)]


def share(n):
    """How many of n queues each of the three nodes' clients take."""
    return [n // 3 + (1 if i < n % 3 else 0) for i in range(3)]


def declare(port, prefix, count):
    conn = pika.BlockingConnection(pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{port}/%2f"))
    ch = conn.channel()
    for i in range(count):
        ch.queue_declare(f"{prefix}{i}", durable=True, arguments={"x-queue-type": "quorum"})
    conn.close()


def warren_groups_led(cluster):
    s = cluster.status() or {}
    return sum(1 for g in s.get("groups", []) if g["group"].startswith("queue-") and g["leader"])


def scale_row(kind, n, a):
    cluster = kind()
    base_ports = amqp_base(kind)
    try:
        before = [sum(rss_kib(p) for p in tree_pids(q.pid)) for q in cluster.procs]
        counts = share(n)
        t = time.time()
        for node, count in enumerate(counts):
            if count:
                declare(base_ports + node + 1, f"n{node + 1}-", count)
        declared_s = time.time() - t
        if kind is cc.WarrenCluster:
            until = time.time() + 120
            while warren_groups_led(cluster) < n and time.time() < until:
                time.sleep(0.5)
        time.sleep(3)
        leaders = leaders_by_node(cluster) if kind is cc.WarrenCluster else None
        idle_rss, idle_cpu = node_usage(cluster, 5)
        perfs = []
        for node, count in enumerate(counts):
            if not count:
                continue
            cmd = [cc.PERF, "throughput", "--confirm", "--queue-type", "quorum", "--queues", str(count),
                   "--producers", str(count), "--consumers", str(count), "--confirm-window", str(a.window),
                   "--size", str(a.size), "--seconds", str(a.seconds), "--json", "--queue-prefix", f"n{node + 1}-",
                   "--url", f"amqp://guest:guest@127.0.0.1:{base_ports + node + 1}/%2f"]
            perfs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        time.sleep(a.seconds / 3)
        load_rss, load_cpu = node_usage(cluster, a.seconds / 3)
        results = []
        for p in perfs:
            out, err = p.communicate(timeout=a.seconds + 600)
            lines = [l for l in out.splitlines() if l.startswith("{")]
            results.append(json.loads(lines[-1]) if lines else {"error": err[-300:]})
        ok = [r for r in results if "confirmed_per_s" in r]
        row = {
            "broker": kind.name, "queues": n, "size": a.size, "window": a.window, "clients": len(perfs),
            "declare_s": round(declared_s, 1),
            "idle_rss_mib": [round(x / 1024) for x in idle_rss], "idle_rss_kib": idle_rss, "idle_cpu_pct": idle_cpu,
            "rss_before_mib": [round(x / 1024) for x in before],
            "load_rss_mib": [round(x / 1024) for x in load_rss], "load_cpu_pct": load_cpu,
            "published_per_s": sum(r["published_per_s"] for r in ok),
            "confirmed_per_s": sum(r["confirmed_per_s"] for r in ok),
            "consumed_per_s": sum(r["consumed_per_s"] for r in ok),
            "nacked": sum(r.get("nacked", 0) for r in ok),
            "p50_us": max((r["latency_p50_us"] for r in ok if "latency_p50_us" in r), default=None),
            "p99_us": max((r["latency_p99_us"] for r in ok if "latency_p99_us" in r), default=None),
            "failed_clients": len(results) - len(ok),
        }
        if leaders is not None:
            row["leaders_by_node"] = leaders
        return row
    finally:
        cluster.stop()


def leaders_by_node(cluster):
    counts = {}
    for g in (cluster.status() or {}).get("groups", []):
        if g["group"].startswith("queue-"):
            counts[str(g["leader"])] = counts.get(str(g["leader"]), 0) + 1
    return counts


def scale(a):
    kinds = [k for k in (cc.WarrenCluster, cc.RabbitCluster) if not a.only or k.name.lower() == a.only]
    rows = []
    for n in (int(x) for x in a.queues.split(",")):
        for kind in kinds:
            row = scale_row(kind, n, a)
            print(json.dumps(row), flush=True)
            rows.append(row)
    # Memory per queue: the idle RSS over the fewest queues' row of the same broker (an idle
    # cluster's RSS before any queue is no base: RabbitMQ's grows and shrinks by megabytes
    # as it settles after the nodes join).
    for r in rows:
        base = min((b for b in rows if b["broker"] == r["broker"]), key=lambda b: b["queues"])
        extra = r["queues"] - base["queues"]
        r["rss_per_queue_kib"] = (round((sum(r["idle_rss_kib"]) - sum(base["idle_rss_kib"])) / 3 / extra, 1)
                                  if extra else None)
    print("\n| broker | queues | confirmed msg/s | consumed msg/s | p50 / p99 ms | RSS MiB (3 nodes, load) "
          "| CPU % (load) | idle RSS MiB | idle CPU % | KiB per queue |")
    print("| --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- | ---: |")
    for r in rows:
        lat = f"{r['p50_us'] / 1000:,.1f} / {r['p99_us'] / 1000:,.1f}" if r["p50_us"] is not None else "-"
        print(f"| {r['broker']} | {r['queues']:,} | {r['confirmed_per_s']:,} | {r['consumed_per_s']:,} | {lat} "
              f"| {' / '.join(map(str, r['load_rss_mib']))} | {' / '.join(map(str, r['load_cpu_pct']))} "
              f"| {' / '.join(map(str, r['idle_rss_mib']))} | {' / '.join(map(str, r['idle_cpu_pct']))} "
              f"| {'-' if r['rss_per_queue_kib'] is None else format(r['rss_per_queue_kib'], ',')} |")


def group_of(cluster, node, name="queue-"):
    for g in (cluster.status(node) or {}).get("groups", []):
        if g["group"].startswith(name):
            return g
    return None


def catchup(a):
    cluster = cc.WarrenCluster()
    try:
        declare(5791, "catchup-", 1)
        until = time.time() + 60
        while (g := group_of(cluster, 1)) is None or g["leader"] is None:
            if time.time() > until:
                sys.exit("the queue's group elected no leader")
            time.sleep(0.2)
        leader = g["leader"]
        behind = next(i for i in (1, 2, 3) if i != leader)
        cluster.procs[behind - 1].kill()
        cluster.procs[behind - 1].wait()
        # Publish-only with confirms until about --messages are in (warren-perf stops at
        # --seconds: runs of 5 s until the count is reached; the queue's depth is the count).
        published = 0
        while published < a.messages:
            cmd = [cc.PERF, "publish-only", "--confirm", "--queue-type", "quorum", "--queue-prefix", "catchup-",
                   "--size", str(a.size), "--seconds", "5", "--keep-queues", "--json",
                   "--url", f"amqp://guest:guest@127.0.0.1:{5790 + leader}/%2f"]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
            lines = [l for l in out.splitlines() if l.startswith("{")]
            if not lines:
                sys.exit(f"publish failed: {out[-300:]}")
            published += int(json.loads(lines[-1])["confirmed_per_s"] * 5)
        conn = pika.BlockingConnection(pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{5790 + leader}/%2f"))
        published = conn.channel().queue_declare("catchup-0", passive=True).method.message_count
        conn.close()
        target = group_of(cluster, leader)["last_log_index"]
        start = time.time()
        cluster.procs[behind - 1] = cluster.spawn(behind)
        cc.wait_port(5790 + behind, 300)
        opened = time.time() - start
        while True:
            g = group_of(cluster, behind)
            if g and (g.get("last_applied") or 0) >= target:
                break
            if time.time() - start > 600:
                sys.exit(f"node {behind} did not catch up in 600 s: {g}")
            time.sleep(0.05)
        took = time.time() - start
        row = {"messages": published, "size": a.size, "entries": target, "restart_to_caught_up_s": round(took, 2),
               "port_open_s": round(opened, 2), "msg_per_s": round(published / took),
               "mb_per_s": round(published * a.size / took / 1e6, 1),
               "msg_per_s_after_port": round(published / max(took - opened, 1e-3))}
        print(json.dumps(row))
    finally:
        cluster.stop()


def leaders_seen_by(cluster, node):
    """Each queue group's leader as `node` sees it (None for a group without one)."""
    s = cluster.status(node) or {}
    return {g["group"]: g["leader"] for g in s.get("groups", []) if g["group"].startswith("queue-")}


def wait_leaders(cluster, node, n, allowed, timeout=300):
    until = time.time() + timeout
    while time.time() < until:
        seen = leaders_seen_by(cluster, node)
        if len(seen) == n and all(l in allowed for l in seen.values()):
            return
        time.sleep(0.5)
    sys.exit(f"node {node} did not see {n} groups led by {allowed} within {timeout} s")


def rebalance(a):
    cluster = cc.WarrenCluster()
    try:
        for node, count in enumerate(share(a.queues)):
            if count:
                declare(5791 + node, f"n{node + 1}-", count)
        wait_leaders(cluster, 1, a.queues, (1, 2, 3))
        cluster.procs[2].kill()
        cluster.procs[2].wait()
        wait_leaders(cluster, 1, a.queues, (1, 2))
        cluster.procs[2] = cluster.spawn(3)
        cc.wait_port(5793, 300)
        wait_leaders(cluster, 3, a.queues, (1, 2))
        time.sleep(3)
        t = time.time()
        out = subprocess.run([cc.WARREN, "--node-id", "1", "--cluster-listen", "127.0.0.1:25781", "cluster",
                              "rebalance", "--json"], capture_output=True, text=True, timeout=900)
        took = time.time() - t
        report = json.loads(out.stdout)
        wait_leaders(cluster, 1, a.queues, (1, 2, 3))
        settled = {}
        for leader in leaders_seen_by(cluster, 1).values():
            settled[str(leader)] = settled.get(str(leader), 0) + 1
        print(json.dumps({"queues": a.queues, "before": report["before"], "after": report["after"],
                          "settled": settled, "moved": report["moved"], "failed": len(report["failed"]),
                          "seconds": round(took, 2)}))
    finally:
        cluster.stop()


def amqp_base(kind):
    """Node N of this kind of cluster takes AMQP clients on port base + N."""
    return 5790 if kind is cc.WarrenCluster else 5780


def queue_holder(kind, cluster):
    """The node that holds quorum queue lent-0 (group size 1)."""
    if kind is cc.RabbitCluster:
        for line in cluster.ctl(1, "list_queues", "name", "leader", "--quiet", "--no-table-headers").splitlines():
            name, _, leader = line.partition("\t")
            if name == "lent-0":
                return int(leader.split("@")[0].removeprefix("rabbit"))
        sys.exit("RabbitMQ does not list lent-0")
    until = time.time() + 60
    while (g := group_of(cluster, 1)) is None or g["leader"] is None:
        if time.time() > until:
            sys.exit("the queue's group elected no leader")
        time.sleep(0.2)
    return g["leader"]


def outsider(a):
    kinds = [k for k in (cc.WarrenCluster, cc.RabbitCluster) if not a.only or k.name.lower() == a.only]
    for kind in kinds:
        cluster = kind()
        base = amqp_base(kind)
        url = "amqp://guest:guest@127.0.0.1:{}/%2f"
        try:
            conn = pika.BlockingConnection(pika.URLParameters(url.format(base + 1)))
            conn.channel().queue_declare("lent-0", durable=True, arguments={
                "x-queue-type": "quorum", "x-quorum-initial-group-size": 1})
            conn.close()
            holder = queue_holder(kind, cluster)
            order = [holder] + [i for i in (1, 2, 3) if i != holder]
            for _ in range(a.rounds):
                for node in order:
                    # Purged where the messages are: on Warren a purge on a node that holds
                    # no copy purges only what was lent to it.
                    conn = pika.BlockingConnection(pika.URLParameters(url.format(base + holder)))
                    conn.channel().queue_purge("lent-0")
                    conn.close()
                    cmd = [cc.PERF, "throughput", "--confirm", "--queue-type", "quorum", "--group-size", "1",
                           "--queue-prefix", "lent-", "--keep-queues", "--size", str(a.size),
                           "--seconds", str(a.seconds), "--json", "--url", url.format(base + node)]
                    out = subprocess.run(cmd, capture_output=True, text=True, timeout=a.seconds + 300).stdout
                    lines = [l for l in out.splitlines() if l.startswith("{")]
                    r = json.loads(lines[-1]) if lines else {}
                    print(json.dumps({"broker": kind.name, "client_node": node, "holds_queue": node == holder,
                                      "confirmed_per_s": r.get("confirmed_per_s"),
                                      "consumed_per_s": r.get("consumed_per_s"),
                                      "p50_us": r.get("latency_p50_us"), "p99_us": r.get("latency_p99_us")}),
                          flush=True)
        finally:
            cluster.stop()


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("scale")
    s.add_argument("--queues", default="1,10,100,1000")
    s.add_argument("--seconds", type=int, default=15)
    s.add_argument("--size", type=int, default=16)
    s.add_argument("--window", type=int, default=1000)
    s.add_argument("--only", choices=("warren", "rabbitmq"))
    c = sub.add_parser("catchup")
    c.add_argument("--messages", type=int, default=200_000)
    c.add_argument("--size", type=int, default=1024)
    r = sub.add_parser("rebalance")
    r.add_argument("--queues", type=int, default=300)
    o = sub.add_parser("outsider")
    o.add_argument("--seconds", type=int, default=10)
    o.add_argument("--rounds", type=int, default=2)
    o.add_argument("--size", type=int, default=16)
    o.add_argument("--only", choices=("warren", "rabbitmq"))
    a = ap.parse_args()
    {"scale": scale, "catchup": catchup, "rebalance": rebalance, "outsider": outsider}[a.cmd](a)


if __name__ == "__main__":
    main()
