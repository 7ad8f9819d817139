#!/usr/bin/env python3
"""The RabbitMQ definitions round trip of issue 12, against a real RabbitMQ 3.10 node.

What it proves:
 1. A definitions file exported by RabbitMQ 3.10.8 (tests/python/access/definitions.json)
    loads into Warren (--load-definitions) and every user in it logs in with the original
    password (users without permissions get 530, i.e. the password was accepted), while a
    wrong password gets 403. definitions-sha512-md5.json (SHA-512 and MD5 hashes) plus a
    small generated file (a policy, queue arguments, an exchange-to-exchange binding) import
    offline (`warren definitions import`) and their users log in after a restart.
 2. Warren's offline export imports into RabbitMQ (`rabbitmqctl import_definitions`), every
    user logs in to RabbitMQ with the original password, and RabbitMQ's own export equals the
    original files as sets (users with tags, hash, algorithm and limits; vhosts; permissions;
    topic permissions; parameters incl. vhost limits; policies; queues; exchanges; bindings).
 3. Hostile files make `warren definitions import` exit 1 with a message naming the place and
    leave the data dir unchanged (export before/after byte for byte, same file names); a file
    whose LAST item is bad applies nothing.

Run:  python3 tools/definitions_roundtrip.py --warren target/release/warren [--keep]
Needs python3 + pika and Debian's rabbitmq-server (3.10); uses AMQP port 5703, node
rt@localhost, dist port 25703. Prints one line per check; exits 0 only if all passed.
"""
import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pika

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCESS = os.path.join(ROOT, "tests/python/access")
ORIGINAL = os.path.join(ACCESS, "definitions.json")
HASHED = os.path.join(ACCESS, "definitions-sha512-md5.json")
RMQ_PORT, RMQ_NODE, RMQ_DIST = 5703, "rt@localhost", 25703
RMQ_IGNORED_GLOBALS = {"cluster_name", "internal_cluster_id"}  # RabbitMQ adds these itself

EXTRA = {  # things the RabbitMQ-made file lacks: a policy, queue arguments, an e2e binding
    "policies": [{"vhost": "tenant-a", "name": "cap", "pattern": "^a-", "apply-to": "queues",
                  "priority": 1, "definition": {"max-length": 100}}],
    "queues": [{"name": "a-capped-q", "vhost": "tenant-a", "durable": True, "auto_delete": False,
                "arguments": {"x-max-length": 10, "x-dead-letter-exchange": "a-orders"}}],
    "exchanges": [{"name": "a-events", "vhost": "tenant-a", "type": "topic", "durable": True,
                   "auto_delete": False, "internal": False,
                   "arguments": {"alternate-exchange": "a-orders"}}],
    "bindings": [{"source": "a-orders", "vhost": "tenant-a", "destination": "a-events",
                  "destination_type": "exchange", "routing_key": "audit.#", "arguments": {}}],
}

results = []


def check(ok, what, detail=""):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok and detail:
        print("\n".join("     " + line for line in str(detail).rstrip().splitlines()), flush=True)
    results.append(ok)
    return ok


def password(user):
    return "guest" if user == "guest" else user + "-pw"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.3)
    return False


def login(port, user, pw, vhost):
    """'ok', or the reply code ('403', '530', ...) the broker closed the connection with."""
    params = pika.ConnectionParameters("127.0.0.1", port, vhost, pika.PlainCredentials(user, pw),
                                       connection_attempts=1, socket_timeout=10, heartbeat=0)
    try:
        pika.BlockingConnection(params).close()
        return "ok"
    except pika.exceptions.AMQPError as e:
        m = re.search(r"\((\d{3})\)", repr(e))
        return m.group(1) if m else repr(e)


def check_logins(port, defs, where):
    """Every user with its original password: ok on a vhost it may use, else 530; wrong: 403."""
    for u in defs["users"]:
        name = u["name"]
        vhosts = [p["vhost"] for p in defs["permissions"] if p["user"] == name]
        want = "ok" if vhosts else "530"
        vhost = vhosts[0] if vhosts else "/"
        got = login(port, name, password(name), vhost)
        check(got == want, f"{where}: {name} ({u['hashing_algorithm'].rsplit('_', 1)[-1]}) logs in to "
              f"{vhost!r} with its password: {got}", f"expected {want}")
        got = login(port, name, password(name) + "x", vhost)
        check(got == "403", f"{where}: {name} with a wrong password is refused: {got}")


def merge(*files):
    out = {}
    for d in files:
        for k, v in d.items():
            if isinstance(v, list):
                out.setdefault(k, []).extend(v)
    return out


def normalize(d):
    """Category -> set of hashable items, keeping only what carries state."""
    j = lambda v: json.dumps(v, sort_keys=True)
    tags = lambda t: tuple(sorted(x.strip() for x in (t.split(",") if isinstance(t, str) else t) if x.strip()))
    params = d.get("parameters", [])
    return {
        "users": {(u["name"], tags(u.get("tags", [])), u["password_hash"], u["hashing_algorithm"],
                   j(u.get("limits", {}))) for u in d.get("users", [])},
        "vhosts": {v["name"] for v in d.get("vhosts", [])},
        "permissions": {(p["user"], p["vhost"], p["configure"], p["write"], p["read"])
                        for p in d.get("permissions", [])},
        "topic_permissions": {(p["user"], p["vhost"], p["exchange"], p["write"], p["read"])
                              for p in d.get("topic_permissions", [])},
        "vhost_limits": {(p["vhost"], j(p["value"])) for p in params if p["component"] == "vhost-limits"},
        "parameters": {(p["component"], p["vhost"], p["name"], j(p["value"]))
                       for p in params if p["component"] != "vhost-limits"},
        "global_parameters": {(p["name"], j(p["value"])) for p in d.get("global_parameters", [])
                              if p["name"] not in RMQ_IGNORED_GLOBALS},
        "policies": {(p["vhost"], p["name"], p["pattern"], p.get("apply-to", "all"),
                      p.get("priority", 0), j(p["definition"])) for p in d.get("policies", [])},
        "queues": {(q["vhost"], q["name"], q["durable"], q["auto_delete"], j(q.get("arguments", {})))
                   for q in d.get("queues", [])},
        "exchanges": {(x["vhost"], x["name"], x["type"], x["durable"], x["auto_delete"],
                       x.get("internal", False), j(x.get("arguments", {}))) for x in d.get("exchanges", [])},
        "bindings": {(b["vhost"], b["source"], b["destination"], b["destination_type"], b["routing_key"],
                      j(b.get("arguments", {}))) for b in d.get("bindings", [])},
    }


def compare(want, got, what):
    a, b = normalize(want), normalize(got)
    diff = []
    for k in a:
        diff += [f"- {k}: {x}" for x in sorted(a[k] - b[k], key=str)]
        diff += [f"+ {k}: {x}" for x in sorted(b[k] - a[k], key=str)]
    counts = ", ".join(f"{len(v)} {k}" for k, v in a.items() if v)
    check(not diff, f"{what} equals the originals as sets ({counts})",
          "(- only in the originals, + only in the export)\n" + "\n".join(diff))


class Warren:
    def __init__(self, binary, data):
        self.binary, self.data = binary, data

    def cli(self, *args):
        p = subprocess.run([self.binary, "--data-dir", self.data, "definitions", *args],
                           capture_output=True, timeout=120)
        return p.returncode, p.stdout, p.stderr.decode(errors="replace").strip()

    def export(self):
        rc, out, err = self.cli("export", "-")
        if rc != 0:
            raise RuntimeError(f"warren definitions export failed: {err}")
        return out

    def start(self, *extra):
        self.port = free_port()
        self.log = open(self.data + ".log", "a")
        self.proc = subprocess.Popen([self.binary, "--listen", f"127.0.0.1:{self.port}", "--http", "127.0.0.1:0", "--prometheus", "127.0.0.1:0", "--data-dir",
                                      self.data, "--fsync", "never", *extra],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_port(self.port, 30):
            self.proc.kill()
            raise RuntimeError(f"warren did not start; see {self.data}.log")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(30)
        self.log.close()
        return rc


class Rabbit:
    """A private node as tools/compare.py's start_rabbit_node makes it; rabbitmqctl shares its env."""

    def __init__(self):
        if wait_port(RMQ_PORT, 0.1):
            raise RuntimeError(f"port {RMQ_PORT} is already in use; is an old node still running?")
        self.dir = tempfile.mkdtemp(prefix="rt-rabbit-")
        for sub in ("mnesia", "log"):
            os.makedirs(os.path.join(self.dir, sub))
        with open(os.path.join(self.dir, "plugins"), "w") as f:
            f.write("[].\n")
        self.env = dict(os.environ, HOME=self.dir, RABBITMQ_NODE_PORT=str(RMQ_PORT),
                        RABBITMQ_NODENAME=RMQ_NODE, RABBITMQ_DIST_PORT=str(RMQ_DIST),
                        RABBITMQ_MNESIA_BASE=os.path.join(self.dir, "mnesia"),
                        RABBITMQ_LOG_BASE=os.path.join(self.dir, "log"),
                        RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(self.dir, "plugins"),
                        RABBITMQ_CONFIG_FILE=os.path.join(self.dir, "rabbitmq"))
        self.proc = subprocess.Popen(["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

    def wait(self):
        if not wait_port(RMQ_PORT, 120) or self.ctl("await_startup")[0] != 0:
            raise RuntimeError(f"RabbitMQ did not start; logs in {self.dir}/log")

    def ctl(self, *args):
        # The package's /usr/sbin wrapper su's to the rabbitmq user (another HOME, so another
        # Erlang cookie); the one in /usr/lib keeps this env.
        p = subprocess.run(["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", RMQ_NODE, *args], env=self.env,
                           capture_output=True, text=True, timeout=120)
        return p.returncode, (p.stdout + p.stderr).strip()

    def stop(self, keep):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        # The node name is in beam's environment, not its command line; its HOME dir is.
        subprocess.run(["pkill", "-9", "-f", RMQ_NODE])
        subprocess.run(["pkill", "-9", "-f", self.dir])
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def hostile_files():
    """(what, file bytes, text the refusal must contain)."""
    orig = open(ORIGINAL, "rb").read()
    h256 = "1wYQkX+JjEMMAU1lmz65IQuiFvxGfEIfVI7qZ2AhOfHF+hXK"
    user = lambda **kw: dict({"name": "mallory", "password_hash": h256, "tags": [], "limits": {},
                              "hashing_algorithm": "rabbit_password_hashing_sha256"}, **kw)
    perm = lambda **kw: dict({"user": "admin", "vhost": "/", "configure": ".*", "write": ".*",
                              "read": ".*"}, **kw)
    queue = lambda **kw: dict({"name": "q1", "vhost": "/", "durable": True, "auto_delete": False,
                               "arguments": {}}, **kw)
    js = lambda d: json.dumps(d).encode()
    pad = b"v" * 230
    huge = b'{"vhosts":[' + b",".join(b'{"name":"%s%d"}' % (pad, i) for i in range(300_000)) + b"]}"
    return [
        ("truncated JSON", orig[: len(orig) // 2], "line 1 column"),
        ("users as an object", js({"users": {"name": "x"}}), "users"),
        ("non-base64 password_hash", js({"users": [user(password_hash="not base64!")]}),
         "users[0].password_hash"),
        ("hash of the wrong length", js({"users": [user(password_hash=base64.b64encode(b"x" * 20).decode())]}),
         "users[0].password_hash"),
        ("unknown hashing_algorithm", js({"users": [user(hashing_algorithm="rabbit_password_hashing_sha3")]}),
         "users[0].hashing_algorithm"),
        ("permission regex that does not compile", js({"permissions": [perm(configure="(")]}),
         "permissions[0]"),
        ("permission for a missing vhost", js({"permissions": [perm(vhost="no-such-vhost")]}),
         "permissions[0]"),
        ("policy with apply-to bogus", js({"policies": [{"vhost": "/", "name": "p", "pattern": ".*",
                                                         "apply-to": "bogus", "priority": 0,
                                                         "definition": {"max-length": 1}}]}),
         "policies[0].apply-to"),
        ("queue in a missing vhost", js({"queues": [queue(vhost="no-such-vhost")]}), "queues[0]"),
        ("queue with x-max-length \"ten\"", js({"queues": [queue(arguments={"x-max-length": "ten"})]}),
         "queues[0]"),
        ("binding with destination_type nonsense",
         js({"bindings": [{"source": "amq.direct", "vhost": "/", "destination": "q1", "routing_key": "",
                           "destination_type": "nonsense", "arguments": {}}]}),
         "bindings[0].destination_type"),
        (f"{len(huge) >> 20} MB file", huge, "bytes"),
        ("good user, vhost and queue, then a bad LAST binding (missing vhost)",
         js({"users": [user()], "vhosts": [{"name": "new-vhost"}],
             "permissions": [perm(user="mallory", vhost="new-vhost")],
             "queues": [queue(vhost="new-vhost")],
             "bindings": [{"source": "amq.direct", "vhost": "no-such-vhost", "destination": "q1",
                           "destination_type": "queue", "routing_key": "k", "arguments": {}}]}),
         "bindings[0]"),
    ]


def file_names(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warren", default=os.path.join(ROOT, "target/release/warren"))
    ap.add_argument("--keep", action="store_true", help="leave the temporary dirs")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="warren-defs-")
    warren = Warren(os.path.abspath(args.warren), os.path.join(work, "data"))
    original, hashed = json.load(open(ORIGINAL)), json.load(open(HASHED))
    extra_file = os.path.join(work, "extra.json")
    with open(extra_file, "w") as f:
        json.dump(EXTRA, f)
    everything = merge(original, hashed, EXTRA)
    rabbit = None
    try:
        # 1. RabbitMQ's file into Warren.
        warren.start("--load-definitions", ORIGINAL)
        check_logins(warren.port, original, "warren")
        check(warren.stop() == 0, "warren exits 0 on SIGTERM")
        for path in (HASHED, extra_file):
            rc, _, err = warren.cli("import", path)
            check(rc == 0, f"warren definitions import {os.path.basename(path)}: exit {rc}", err)
        warren.start()
        check_logins(warren.port, merge(original, hashed), "warren after import + restart")
        warren.stop()
        exported = os.path.join(work, "warren-export.json")
        with open(exported, "wb") as f:
            f.write(warren.export())
        compare(everything, json.load(open(exported)), "warren's export")

        # 2. Warren's export into RabbitMQ, and RabbitMQ's export back.
        rabbit = Rabbit()
        rabbit.wait()
        rc, out = rabbit.ctl("import_definitions", exported)
        if check(rc == 0, f"rabbitmqctl import_definitions of warren's export: exit {rc}", out):
            check_logins(RMQ_PORT, merge(original, hashed), "rabbitmq")
            back = os.path.join(work, "rabbitmq-export.json")
            rc, out = rabbit.ctl("export_definitions", back)
            if check(rc == 0, f"rabbitmqctl export_definitions: exit {rc}", out):
                compare(everything, json.load(open(back)), "rabbitmq's re-export")
        rabbit.stop(args.keep)
        rabbit = None

        # 3. Hostile files change nothing.
        before, names = warren.export(), file_names(warren.data)
        for i, (what, data, place) in enumerate(hostile_files()):
            path = os.path.join(work, f"hostile-{i}.json")
            with open(path, "wb") as f:
                f.write(data)
            rc, _, err = warren.cli("import", path)
            os.remove(path)
            after, names_after = warren.export(), file_names(warren.data)
            msg = err if len(err) < 300 else err[:300] + "..."
            check(rc == 1 and place in err, f"hostile: {what}: exit {rc}, names {place!r}", msg)
            check(after == before and names_after == names, f"hostile: {what}: nothing changed",
                  "the export differs" if after != before else "the data dir's file names differ")
            before, names = after, names_after
    except Exception as e:  # a broken step is a failed check, and the cleanup still runs
        check(False, f"unexpected error: {e!r}")
    finally:
        if getattr(warren, "proc", None) and warren.proc.poll() is None:
            warren.proc.kill()
        if rabbit:
            rabbit.stop(args.keep)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
