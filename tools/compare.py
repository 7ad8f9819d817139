#!/usr/bin/env python3
"""Side-by-side benchmark: RabbitMQ (Debian's rabbitmq-server) and Warren on this machine.

Starts each broker with a fresh data dir on its own port, runs the same warren-perf
scenarios against each in alternation (A B A B A B: three rounds), takes the median of
each figure, and writes a Markdown table (plus an SVG plot) into BENCHMARKS.md between
the markers `<!-- compare:begin -->` and `<!-- compare:end -->`.

Usage: tools/compare.sh [--rounds N] [--seconds S] [--fsync always|interval:MS|never]
                        [--baseline PATH-TO-AN-OLDER-warren] [--only TEXT]
With --baseline, an older Warren binary runs in each round too (A B C A B C ...) and the
table gains its column and the ratio new/old: the before/after check of a change.
With --only TEXT, only the rows whose label contains TEXT run, and their table is printed
(BENCHMARKS.md is left alone).
Needs: rabbitmq-server (apt-get install rabbitmq-server), cargo build --release.
"""
import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PERF = os.path.join(ROOT, "target/release/warren-perf")
WARREN = os.path.join(ROOT, "target/release/warren")
RMQ_PORT, WARREN_PORT = 5690, 5691
# The stream-protocol listeners (RabbitMQ's stream plugin, Warren's --listen-stream).
RMQ_STREAM_PORT, WARREN_STREAM_PORT = 5692, 5693


def wait_port(port, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def wait_closed(port, timeout=60):
    """Waits until nothing listens on `port`, so the next broker starts clean."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                time.sleep(0.5)
        except OSError:
            return


def pid_on_port(port):
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True).stdout
    for part in out.split("pid=")[1:]:
        return int(part.split(",")[0])
    return None


def start_rabbit_node(prefix, port, node, dist_port, plugins=(), conf=""):
    """Starts a throw-away RabbitMQ node in a fresh temporary dir; returns (dir, process).
    The node runs in its own session, so its whole process group can be ended. `plugins`
    are enabled and `conf` is written to its rabbitmq.conf."""
    d = tempfile.mkdtemp(prefix=prefix)
    for sub in ("mnesia", "log"):
        os.makedirs(os.path.join(d, sub))
    with open(os.path.join(d, "plugins"), "w") as f:
        f.write(f"[{','.join(plugins)}].\n")
    with open(os.path.join(d, "rabbitmq.conf"), "w") as f:
        f.write(conf)
    # Run the node directly (as root): the packaged wrapper `su`s to the rabbitmq user,
    # whose PAM limits cap open files at 1024 and so fail the 1,000-connection runs.
    env = dict(os.environ, HOME=d,
               RABBITMQ_NODE_PORT=str(port), RABBITMQ_NODENAME=node,
               RABBITMQ_MNESIA_BASE=os.path.join(d, "mnesia"),
               RABBITMQ_LOG_BASE=os.path.join(d, "log"),
               RABBITMQ_DIST_PORT=str(dist_port),
               RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(d, "plugins"),
               RABBITMQ_CONFIG_FILE=os.path.join(d, "rabbitmq"))
    proc = subprocess.Popen(["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    return d, proc


class Rabbit:
    name = "RabbitMQ"

    def __init__(self):
        # The stream plugin serves the stream rows; it is on for every row, as it would be
        # on a node that offers streams.
        self.dir, self.proc = start_rabbit_node(
            "rmq-", RMQ_PORT, "perf@localhost", 25690, plugins=("rabbitmq_stream",),
            conf=f"stream.listeners.tcp.1 = {RMQ_STREAM_PORT}\n")
        self.stream_port = RMQ_STREAM_PORT
        if not wait_port(RMQ_PORT) or not wait_port(RMQ_STREAM_PORT):
            sys.exit("RabbitMQ did not start")
        self.pid = pid_on_port(RMQ_PORT)
        self.url = f"amqp://guest:guest@127.0.0.1:{RMQ_PORT}/%2f"
        self.version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "rabbitmq-server"],
                                      capture_output=True, text=True).stdout

    def stop(self):
        os.killpg(self.proc.pid, 15)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
        subprocess.run(["pkill", "-9", "-f", "perf@localhost"])
        wait_closed(RMQ_PORT)
        shutil.rmtree(self.dir, ignore_errors=True)


class Warren:
    name = "Warren"

    def __init__(self, fsync, binary=WARREN, name="Warren"):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="warren-", dir=os.path.join(ROOT, "target"))
        self.proc = subprocess.Popen([binary, "--listen", f"127.0.0.1:{WARREN_PORT}", "--http", "127.0.0.1:0", "--prometheus", "127.0.0.1:0", "--data-dir",
                                      self.dir, "--fsync", fsync, "--listen-stream", f"127.0.0.1:{WARREN_STREAM_PORT}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(WARREN_PORT):
            sys.exit(f"{name} did not start")
        self.pid = self.proc.pid
        self.stream_port = WARREN_STREAM_PORT
        self.url = f"amqp://guest:guest@127.0.0.1:{WARREN_PORT}/%2f"
        self.version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        wait_closed(WARREN_PORT)
        shutil.rmtree(self.dir, ignore_errors=True)


def scenarios(seconds):
    s = str(seconds)
    return [
        ("throughput, autoack", ["throughput", "--autoack", "--seconds", s], "consumed_per_s"),
        ("throughput, confirms (window 1000)", ["throughput", "--confirm", "--seconds", s], "consumed_per_s"),
        # The same run's end-to-end latency at saturation (issue 15: publisher flow control).
        ("throughput, confirms: latency p50 µs", ["throughput", "--confirm", "--seconds", s], "latency_p50_us"),
        ("throughput, confirms: latency p99 µs", ["throughput", "--confirm", "--seconds", s], "latency_p99_us"),
        ("confirms, persistent, durable queue", ["confirms", "--persistent", "--seconds", s], "confirmed_per_s"),
        ("publish-only", ["publish-only", "--seconds", s], "published_per_s"),
        ("consume-only (1M queued)", ["consume-only", "--messages", "1000000", "--autoack"], "consumed_per_s"),
        ("fanout, 4 queues", ["fanout", "--queues", "4", "--autoack", "--seconds", s], "consumed_per_s"),
        ("latency at 10k msg/s: p99 µs", ["latency", "--rate", "10000", "--seconds", s], "latency_p99_us"),
        # Memory rows each get a freshly started broker (see FRESH), so one scenario's
        # leftovers do not count against the next.
        ("backlog 1M: broker RSS full, MB", ["backlog", "--messages", "1000000", "--autoack"], "broker_rss_full"),
        ("1,000 idle connections: broker RSS, MB", ["connections", "--connections", "1000"], "broker_rss"),
        ("1,000 queues with a consumer: broker RSS, MB", ["queues", "--queues", "1000"], "broker_rss"),
        ("1,000 idle connections: RSS without the executable's pages, MB", ["connections", "--connections", "1000"], "broker_rss_without_code"),
        ("1,000 queues with a consumer: RSS without the executable's pages, MB", ["queues", "--queues", "1000"], "broker_rss_without_code"),
        # The RabbitMQ Stream protocol (issue 14): batches of 100, 10,000 unconfirmed.
        ("stream publish, confirms", ["stream-publish", "--seconds", s], "confirmed_per_s"),
        ("stream publish 1 KiB, confirms", ["stream-publish", "--size", "1024", "--seconds", s], "confirmed_per_s"),
        ("stream consume from first (10M stored)", ["stream-consume", "--messages", "10000000"], "consumed_per_s"),
        # Issue 15: large messages (msg/s; × size for bytes/s), the shape of the work.
        ("confirms, persistent 64 KiB", ["confirms", "--persistent", "--size", "65536", "--confirm-window", "128", "--seconds", s], "confirmed_per_s"),
        ("confirms, persistent 1 MiB", ["confirms", "--persistent", "--size", "1048576", "--confirm-window", "16", "--seconds", s], "confirmed_per_s"),
        ("throughput 1 MiB transient, autoack", ["throughput", "--autoack", "--size", "1048576", "--seconds", s], "consumed_per_s"),
        ("10 queues, a producer and a consumer each, autoack", ["throughput", "--autoack", "--queues", "10", "--producers", "10", "--consumers", "10", "--seconds", s], "consumed_per_s"),
        ("100 queues, a producer and a consumer each, autoack", ["throughput", "--autoack", "--queues", "100", "--producers", "100", "--consumers", "100", "--seconds", s], "consumed_per_s"),
        ("1,000 queues, a producer and a consumer each, autoack", ["throughput", "--autoack", "--queues", "1000", "--producers", "1000", "--consumers", "1000", "--seconds", s], "consumed_per_s"),
        ("fanout, 100 queues", ["fanout", "--queues", "100", "--autoack", "--seconds", s], "consumed_per_s"),
        ("prefetch 1, manual acks (round trips)", ["throughput", "--prefetch", "1", "--seconds", s], "consumed_per_s"),
        ("topic, 10,000 bindings over 100 queues, autoack", ["topic", "--bindings", "10000", "--queues", "100", "--autoack", "--seconds", s], "consumed_per_s"),
        ("10,000 connections at 1 msg/s each: broker RSS, MB", ["low-rate-connections", "--connections", "10000", "--rate", "10000", "--autoack", "--seconds", s], "broker_rss"),
        ("10,000 connections at 1 msg/s each: broker CPU µs per message", ["low-rate-connections", "--connections", "10000", "--rate", "10000", "--autoack", "--seconds", s], "broker_cpu_us_per_msg"),
    ]


def selected(a):
    """The scenarios of this run (all, or those `--only` names)."""
    wanted = a.only.split("|") if a.only else []
    return [row for row in scenarios(a.seconds) if not wanted or any(w in row[0] for w in wanted)]


# Scenarios run on a freshly started broker.
FRESH = ("backlog", "connections", "queues", "low-rate-connections")


def run_one(broker, args):
    cmd = [PERF] + args + ["--url", broker.url, "--stream-port", str(broker.stream_port), "--json"]
    if broker.pid:
        cmd += ["--broker-pid", str(broker.pid)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        print(f"  {broker.name}: {' '.join(args)} failed: {p.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


def fmt(key, v):
    if v is None:
        return "failed"
    if key.startswith("broker_rss"):
        return f"{v / 1e6:.1f}"
    if key.startswith("latency"):
        return f"{v:.0f}"
    if key == "broker_cpu_us_per_msg":
        return f"{v:.1f}"
    return f"{v:,.0f}"


def svg(rows):
    """A bar chart of each scenario's figure, Warren vs RabbitMQ (log scale)."""
    import math
    width, bar_h, gap, left = 900, 14, 12, 330
    height = len(rows) * (2 * bar_h + gap) + 40
    vals = [v for _, _, r, w in rows for v in (r, w) if v]
    lo, hi = math.log10(max(min(vals), 1)), math.log10(max(vals))
    scale = lambda v: 5 + (width - left - 120) * (math.log10(max(v, 1)) - lo + 0.3) / (hi - lo + 0.3)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<text x="10" y="18" font-size="13">Warren (blue) vs RabbitMQ (orange), same machine, same run — log scale</text>']
    y = 30
    for label, key, r, w in rows:
        out.append(f'<text x="10" y="{y + bar_h + 3}">{label}</text>')
        for i, (v, color) in enumerate(((w, "#3b6fb6"), (r, "#e08a2c"))):
            if v:
                out.append(f'<rect x="{left}" y="{y + i * bar_h}" width="{scale(v):.0f}" height="{bar_h - 2}" fill="{color}"/>')
                out.append(f'<text x="{left + scale(v) + 4:.0f}" y="{y + i * bar_h + 10}">{fmt(key, v)}</text>')
        y += 2 * bar_h + gap
    out.append("</svg>")
    return "\n".join(out)


def print_before_after(a, rows, baseline):
    """The before/after table of a change (stdout only; BENCHMARKS.md is left alone)."""
    print(f"Command: `tools/compare.sh --rounds {a.rounds} --seconds {a.seconds} --fsync {a.fsync} "
          f"--baseline OLD` (median of {a.rounds} rounds, brokers alternated)\n")
    print("| scenario | RabbitMQ | Warren before | Warren after | after / before |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, key, r, w in rows:
        b = baseline.get(label)
        ratio = f"{w / b:.3f}" if b and w else "—"
        print(f"| {label} | {fmt(key, r)} | {fmt(key, b)} | {fmt(key, w)} | {ratio} |")


def main():
    global PERF
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--fsync", default="always")
    ap.add_argument("--baseline", help="an older warren binary to run alongside (before/after)")
    ap.add_argument("--only", help="run only the rows whose label contains this text, or one of several separated by | (BENCHMARKS.md is left alone)")
    ap.add_argument("--warren", default=WARREN, help="the warren binary to measure (default: the release build)")
    ap.add_argument("--perf", default=PERF, help="the warren-perf binary (default: the release build)")
    a = ap.parse_args()
    PERF = a.perf
    results = {}  # (scenario label, broker) -> [values]
    versions = {}
    makers = [Rabbit, lambda: Warren(a.fsync, binary=a.warren)]
    if a.baseline:
        makers.append(lambda: Warren(a.fsync, binary=a.baseline, name="baseline"))
    for rnd in range(a.rounds):
        for make in makers:
            broker = make()
            versions[broker.name] = broker.version
            print(f"round {rnd + 1}: {broker.name}", flush=True)
            try:
                last = (None, None)  # a row with the same arguments as the one before reads its run
                for label, args, key in selected(a):
                    if args == last[0]:
                        r = last[1]
                    else:
                        if args[0] in FRESH:
                            broker.stop()
                            broker = make()
                        r = run_one(broker, args)
                        last = (args, r)
                    v = r.get(key) if r else None
                    print(f"  {label}: {fmt(key, v)}", flush=True)
                    if v is not None:
                        results.setdefault((label, broker.name), []).append(v)
            finally:
                broker.stop()
    rows = []
    baseline = {}
    for label, _, key in selected(a):
        med = lambda b: statistics.median(results[(label, b)]) if results.get((label, b)) else None
        rows.append((label, key, med("RabbitMQ"), med("Warren")))
        baseline[label] = med("baseline")
    if a.baseline:
        print_before_after(a, rows, baseline)
        return
    if a.only:
        print("| scenario | RabbitMQ | Warren | Warren / RabbitMQ |\n| --- | ---: | ---: | ---: |")
        for label, key, r, w in rows:
            ratio = f"{w / r:.2f}x" if r and w else "—"
            print(f"| {label} | {fmt(key, r)} | {fmt(key, w)} | {ratio} |")
        return
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lines = [
        "<!-- compare:begin -->",
        f"Machine: {cpu}, {os.cpu_count()} cores, Linux {platform.release()}. "
        f"Warren {versions.get('Warren', '?')} (`--fsync {a.fsync}`), RabbitMQ {versions.get('RabbitMQ', '?')} "
        f"(Debian package, default config). 16-byte bodies, one producer and one consumer unless named. "
        f"Median of {a.rounds} rounds, brokers alternated (A B A B …), fresh data dir per run.",
        "",
        f"Command: `tools/compare.sh --rounds {a.rounds} --seconds {a.seconds} --fsync {a.fsync}` "
        "(each row is one `warren-perf` scenario; the exact arguments are in tools/compare.py).",
        "",
        "| scenario | RabbitMQ | Warren | Warren / RabbitMQ |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, key, r, w in rows:
        ratio = f"{w / r:.2f}x" if r and w else "—"
        lines.append(f"| {label} | {fmt(key, r)} | {fmt(key, w)} | {ratio} |")
    lines += ["", "Rates are messages per second; for latency, RSS and CPU rows lower is better.", "",
              "![Warren vs RabbitMQ](docs/compare.svg)", "<!-- compare:end -->"]
    table = "\n".join(lines)
    with open(os.path.join(ROOT, "docs/compare.svg"), "w") as f:
        f.write(svg(rows))
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read() if os.path.exists(path) else ""
    if "<!-- compare:begin -->" in text:
        head, rest = text.split("<!-- compare:begin -->", 1)
        tail = rest.split("<!-- compare:end -->", 1)[1]
        text = head + table + tail
    else:
        text += "\n" + table + "\n"
    with open(path, "w") as f:
        f.write(text)
    print(table)


if __name__ == "__main__":
    main()
