#!/usr/bin/env python3
"""The stream figures of issue 14, Warren and RabbitMQ 3.10's stream plugin on this machine,
with the same client (warren-perf's stream scenarios).

  1. stream-protocol publish with confirms, 16 B and 1 KiB, one producer;
  2. consume from `first` of a stream of --messages (default 100 M) 16-byte messages;
  3. --readers (default 100) readers from `first` of a stream of --big-gb GiB (1 KiB
     messages) for --read-seconds: the broker's RSS at most;
  4. retention: 1 GiB max-length-bytes under constant 1 KiB publishing for
     --retention-seconds: the stream's disk use at most and at the end.

Warren runs with --fsync always and --fsync never (RabbitMQ's streams do not fsync per
message; `never` is the like-for-like policy, `always` Warren's default). Each broker is
started fresh for each figure. Prints a Markdown table.

Usage: tools/stream_figures.py [--messages N] [--readers N] [--big-gb N] [--read-seconds S]
                               [--retention-seconds S] [--publish-seconds S]
Needs: rabbitmq-server (Debian), cargo build --release --workspace.
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402


def perf(broker, args, watch=None):
    cmd = [compare.PERF] + args + ["--url", broker.url, "--stream-port", str(broker.stream_port),
                                   "--broker-pid", str(broker.pid), "--json"]
    if watch:
        cmd += ["--watch-dir", watch]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        print(f"  {broker.name}: {' '.join(args)} failed: {p.stderr.strip().splitlines()[-1:]}", flush=True)
        return {}
    r = json.loads(p.stdout.strip().splitlines()[-1])
    print(f"  {broker.name}: {' '.join(args)} -> {r}", flush=True)
    return r


def data_dir(broker):
    return os.path.join(broker.dir, "mnesia") if isinstance(broker, compare.Rabbit) else broker.dir


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000_000)
    ap.add_argument("--readers", type=int, default=100)
    ap.add_argument("--big-gb", type=int, default=10)
    ap.add_argument("--read-seconds", type=int, default=60)
    ap.add_argument("--retention-seconds", type=int, default=60)
    ap.add_argument("--publish-seconds", type=int, default=10)
    a = ap.parse_args()
    makers = {
        "RabbitMQ": compare.Rabbit,
        "Warren always": lambda: compare.Warren("always", name="Warren always"),
        "Warren never": lambda: compare.Warren("never", name="Warren never"),
    }
    gib = 1 << 30
    big_messages = a.big_gb * gib // 1024
    rows = []  # (figure, unit key, {broker: value})
    figures = [
        ("stream publish 16 B, confirms: msg/s", "confirmed_per_s",
         ["stream-publish", "--seconds", str(a.publish_seconds)], None),
        ("stream publish 1 KiB, confirms: msg/s", "confirmed_per_s",
         ["stream-publish", "--size", "1024", "--seconds", str(a.publish_seconds)], None),
        (f"consume from first of {a.messages:,} (16 B): msg/s", "consumed_per_s",
         ["stream-consume", "--messages", str(a.messages)], None),
        (f"{a.readers} readers from first of {a.big_gb} GiB (1 KiB), {a.read_seconds} s: broker RSS at most, MB",
         "broker_rss_max",
         ["stream-consume", "--size", "1024", "--messages", str(big_messages), "--consumers", str(a.readers),
          "--stream-read-seconds", str(a.read_seconds)], None),
        (f"  the same: records read by all readers per second", "consumed_per_s", None, None),
        (f"retention 1 GiB, 1 KiB publishing for {a.retention_seconds} s: disk at most, MB", "disk_max",
         ["stream-publish", "--size", "1024", "--max-length-bytes", str(gib), "--seconds",
          str(a.retention_seconds)], "watch"),
        ("  the same: disk at the end, MB", "disk_end", None, None),
    ]
    results = {}
    for name, make in makers.items():
        last = {}
        for label, key, args, watch in figures:
            if args is not None:
                broker = make()
                try:
                    last = perf(broker, args, data_dir(broker) if watch else None)
                finally:
                    broker.stop()
            results[(label, name)] = last.get(key)
    print("\n| figure | " + " | ".join(makers) + " |")
    print("| --- |" + " ---: |" * len(makers))
    for label, key, _, _ in figures:
        cells = []
        for name in makers:
            v = results.get((label, name))
            cells.append("—" if v is None else (f"{v / 1e6:,.1f}" if key.startswith(("broker_rss", "disk")) else f"{v:,.0f}"))
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
