#!/usr/bin/env python3
"""How long an access change takes through the management API: a lone node against a node
of a three-node cluster, where the change is a metadata-group entry committed on a
majority (each node's log synced under --fsync always) and made on the node before it
answers.

Times --changes PUT /api/users/NAME (a new user each, with a password), one after the
other, through node 1, then reads each user back through node 3 (the cluster: how long
until the last one is there). Prints the median and p95 of the PUTs in milliseconds.

Usage: tools/access_latency.py [--changes 100]
Needs: cargo build --release (target/release/warren, or WARREN_BIN).
"""

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARREN = os.environ.get("WARREN_BIN") or os.path.join(ROOT, "target", "release", "warren")
AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()


def call(port, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Authorization": AUTH, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def wait_http(port, timeout=60):
    until = time.time() + timeout
    while time.time() < until:
        try:
            if call(port, "GET", "/api/overview") == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"no management API on port {port}")


def start(dir, i, clustered):
    argv = [WARREN, "--listen", f"127.0.0.1:{5800 + i}", "--http", f"127.0.0.1:{15800 + i}",
            "--prometheus", "off", "--fsync", "always", "--data-dir", os.path.join(dir, f"n{i}")]
    if clustered:
        peers = ",".join(f"{j}=127.0.0.1:{25800 + j}" for j in (1, 2, 3) if j != i)
        argv += ["--node-id", str(i), "--cluster-listen", f"127.0.0.1:{25800 + i}", "--cluster-peers", peers]
    log = open(os.path.join(dir, f"n{i}.log"), "ab")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


def measure(nodes, changes, prefix):
    dir = tempfile.mkdtemp(prefix="warren-access-")
    procs = [start(dir, i, nodes > 1) for i in range(1, nodes + 1)]
    try:
        for i in range(1, nodes + 1):
            wait_http(15800 + i)
        # The cluster's access database is there once a first change goes through.
        until = time.time() + 60
        while call(15801, "PUT", f"/api/users/{prefix}warmup", {"password": "pw", "tags": ""}) >= 400:
            if time.time() > until:
                raise SystemExit("no change went through")
            time.sleep(0.5)
        took = []
        for n in range(changes):
            t = time.perf_counter()
            status = call(15801, "PUT", f"/api/users/{prefix}{n}", {"password": "pw", "tags": ""})
            took.append((time.perf_counter() - t) * 1000)
            assert status == 201, status
        row = {"nodes": nodes, "changes": changes, "median_ms": round(statistics.median(took), 2),
               "p95_ms": round(sorted(took)[int(len(took) * 0.95) - 1], 2)}
        if nodes > 1:
            t = time.perf_counter()
            while call(15803, "GET", f"/api/users/{prefix}{changes - 1}") != 200:
                time.sleep(0.001)
            row["last_on_node_3_after_ms"] = round((time.perf_counter() - t) * 1000, 2)
        print(json.dumps(row), flush=True)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(dir, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--changes", type=int, default=100)
    a = p.parse_args()
    measure(1, a.changes, "lone")
    measure(3, a.changes, "clustered")


if __name__ == "__main__":
    main()
