#!/usr/bin/env python3
"""Records every scenario's outcome against a broker into golden-format files.

By default it starts its own RabbitMQ node (port 5695, node fidelity@localhost, dist port
25695, fresh data dir) so it never meets the nodes other tools start on this machine, runs
all scenarios, stops the node, and writes tests/fidelity/golden/<group>.json.

  tools/fidelity/record.py                          # goldens from a fresh RabbitMQ
  tools/fidelity/record.py --only 'basic/*'         # some scenarios (merged into the files)
  tools/fidelity/record.py --url 127.0.0.1:5696 --out /tmp/fidelity-warren   # any broker

Scenarios run 16 at a time: nearly all of a scenario's time is quiet windows, and each
scenario uses its own names, so they do not see each other.
"""
import argparse
import datetime
import fnmatch
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import engine  # noqa: E402
import wire  # noqa: E402
from compare import start_rabbit_node, wait_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIOS = os.path.join(ROOT, "tests/fidelity/scenarios")
GOLDEN = os.path.join(ROOT, "tests/fidelity/golden")
PORT, DIST_PORT, NODE = 5695, 25695, "fidelity@localhost"



class Rabbit:
    """A throw-away RabbitMQ node (tools/compare.py's, on its own ports), ready for logins."""

    def __init__(self, port=PORT):
        self.port = port
        self.dir, self.proc = start_rabbit_node("rmq-fidelity-", port, NODE, DIST_PORT)
        try:
            if not wait_port(port):
                raise RuntimeError("RabbitMQ did not start")
            # The port may open a moment before the node accepts logins; wait for one.
            deadline = time.time() + 60
            while not engine.healthy("127.0.0.1", port):
                if time.time() > deadline:
                    raise RuntimeError("RabbitMQ does not accept connections")
                time.sleep(1)
        except BaseException:
            self.stop()
            raise
        version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "rabbitmq-server"],
                                 capture_output=True, text=True).stdout
        self.name = f"RabbitMQ {version}"

    def stop(self):
        # The node runs in its own session (process group): end exactly that group.
        try:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def server_name(host, port):
    """product and version from connection.start's server properties (for --url)."""
    import pika.spec
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(wire.PROTOCOL_HEADER)
            buf = b""
            while True:
                data = s.recv(65536)
                if not data:
                    break
                buf += data
                frames, _ = wire.split_frames(buf)
                if frames and not isinstance(frames[0], tuple):
                    m = pika.spec.Connection.Start()
                    m.decode(wire.parse_frame(frames[0])[2], 4)
                    p = m.server_properties
                    text = lambda v: v.decode() if isinstance(v, bytes) else str(v)
                    return f"{text(p.get('product', '?'))} {text(p.get('version', '?'))}"
    except OSError:
        pass
    return f"{host}:{port}"


def load(only):
    """All scenarios (name-pattern filtered), grouped by file."""
    groups = {}
    for path in sorted(glob.glob(os.path.join(SCENARIOS, "*.json"))):
        group = os.path.basename(path)[:-5]
        with open(path) as f:
            scenarios = [s for s in json.load(f)
                         if not only or any(fnmatch.fnmatch(s["name"], p) for p in only)]
        if scenarios:
            groups[group] = scenarios
    return groups


def write_group(path, recorded_from, outcomes, merge=False):
    """One scenario per line, keys sorted: a re-recording diffs line by line. With `merge`
    (an --only run) the file's other scenarios are kept; otherwise it is replaced, so the
    outcomes of scenarios dropped from the catalogue go too."""
    old = {}
    if merge and os.path.exists(path):
        with open(path) as f:
            old = json.load(f).get("scenarios", {})
    old.update(outcomes)
    lines = [f"  {json.dumps(name)}: {json.dumps(old[name], sort_keys=True)}"
             for name in sorted(old)]
    head = (f'{{"recorded_from": {json.dumps(recorded_from)},\n'
            f' "recorded_at": {json.dumps(datetime.date.today().isoformat())},\n'
            ' "scenarios": {\n')
    with open(path, "w") as f:
        f.write(head + ",\n".join(lines) + "\n}}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", help="host:port of a running broker (default: start RabbitMQ)")
    ap.add_argument("--port", type=int, default=PORT, help="port for the RabbitMQ it starts")
    ap.add_argument("--only", action="append", default=[],
                    help="fnmatch pattern on scenario names (repeatable); files are merged")
    ap.add_argument("--out", default=GOLDEN, help="output directory")
    ap.add_argument("--jobs", type=int, default=16)
    a = ap.parse_args()

    groups = load(a.only)
    total = sum(len(v) for v in groups.values())
    if not total:
        sys.exit("no scenarios (run tools/fidelity/catalogue.py first?)")
    rabbit = None
    if a.url:
        host, port = a.url.rsplit(":", 1)
        port = int(port)
        recorded_from = server_name(host, port)
    else:
        rabbit = Rabbit(a.port)
        host, port, recorded_from = "127.0.0.1", a.port, rabbit.name
    print(f"recording {total} scenarios from {recorded_from} at {host}:{port}", flush=True)
    os.makedirs(a.out, exist_ok=True)
    started = time.time()
    try:
        with ThreadPoolExecutor(a.jobs) as pool:
            # Everything is queued at once (small groups would leave the pool idle);
            # results are collected group by group.
            futures = {g: [(s["name"], pool.submit(engine.run, host, port, s)) for s in ss]
                       for g, ss in groups.items()}
            for group, pending in futures.items():
                outcomes = {}
                for name, fut in pending:
                    try:
                        outcomes[name] = fut.result()
                    except Exception as e:  # noqa: BLE001 - report it, record the rest
                        print(f"  {name}: engine error {e!r} (not recorded)", flush=True)
                write_group(os.path.join(a.out, f"{group}.json"), recorded_from, outcomes,
                            merge=bool(a.only))
                sick = [n for n, o in outcomes.items() if not o["healthy"]]
                print(f"  {group}: {len(outcomes)} scenarios"
                      + (f", UNHEALTHY after: {', '.join(sick)}" if sick else ""), flush=True)
    finally:
        if rabbit:
            rabbit.stop()
    print(f"done in {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
