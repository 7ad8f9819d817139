#!/usr/bin/env python3
"""RabbitMQ 3.10.8's management-API answers, recorded, and a checker that compares any
broker's answers with them by field names and JSON types.

    python3 tools/http_golden.py record
        Starts a private RabbitMQ node (golden@localhost: AMQP 5705, HTTP 15705, dist
        25705, rabbitmq_management enabled), builds the scenario, fetches every case
        (the GETs twice, 1.5 s apart), writes tests/http_golden/answers.json and
        tests/http_golden/raw/<case>.json, and stops the node.

    python3 tools/http_golden.py check --amqp-port P --http-port H [--user U --password W]
        Builds the same scenario on an already running broker, fetches the same cases,
        prints every difference from answers.json (minus tests/http_golden/not_given.json)
        and "N cases, M differences"; exits 1 if there is any difference.

    python3 tools/http_golden.py rabbit
        Runs a private RabbitMQ node of the same kind until Ctrl-C / SIGTERM, to check the
        checker against RabbitMQ itself (`check --amqp-port 5705 --http-port 15705`).

Everything the scenario makes is named g.* / g-* and is deleted before and after a check.
tests/http_golden/README.md describes the format and what RabbitMQ's answers look like.
"""
import argparse
import base64
import fnmatch
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pika

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "http_golden")
ANSWERS = os.path.join(GOLDEN, "answers.json")
NOT_GIVEN = os.path.join(GOLDEN, "not_given.json")
# What Warren does not give yet, each with the reason (the broker's own list; it shrinks
# as the gaps are filled). Read by `check` beside not_given.json.
WARREN_GAPS = os.path.join(GOLDEN, "warren_gaps.json")
RAW = os.path.join(GOLDEN, "raw")

NODE = "golden@localhost"
AMQP_PORT, HTTP_PORT, DIST_PORT = 5705, 15705, 25705
SECOND_ROUND_AFTER = 1.5  # seconds between the two recordings of the GETs
WAIT_STATS = 20.0  # seconds the scenario waits for the stats to show it
WAIT_QUIET = 5.0  # then seconds it waits for the stats to show it idle


# --------------------------------------------------------------------------------------
# The private RabbitMQ node


class RabbitNode:
    """A throw-away RabbitMQ node in a fresh temporary dir, run directly (as
    tools/compare.py does) in its own session so its whole process group can be ended."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="golden-rmq-")
        for sub in ("mnesia", "log"):
            os.makedirs(os.path.join(self.dir, sub))
        with open(os.path.join(self.dir, "plugins"), "w") as f:
            f.write("[rabbitmq_management].\n")
        with open(os.path.join(self.dir, "rabbitmq.conf"), "w") as f:
            f.write(f"management.tcp.port = {HTTP_PORT}\n"
                    "management.tcp.ip = 127.0.0.1\n"
                    "collect_statistics_interval = 500\n")
        self.env = dict(os.environ, HOME=self.dir,
                        RABBITMQ_NODE_PORT=str(AMQP_PORT), RABBITMQ_NODENAME=NODE,
                        RABBITMQ_MNESIA_BASE=os.path.join(self.dir, "mnesia"),
                        RABBITMQ_LOG_BASE=os.path.join(self.dir, "log"),
                        RABBITMQ_DIST_PORT=str(DIST_PORT),
                        RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(self.dir, "plugins"),
                        RABBITMQ_CONFIG_FILE=os.path.join(self.dir, "rabbitmq"))
        for port in (AMQP_PORT, HTTP_PORT, DIST_PORT):
            if port_open(port):
                shutil.rmtree(self.dir, ignore_errors=True)
                sys.exit(f"port {port} is already in use: is another golden node running?")
        self.proc = subprocess.Popen(["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

    def ctl(self, *args):
        return subprocess.run(["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", NODE, *args],
                              env=self.env, capture_output=True, text=True, timeout=120)

    def wait_ready(self, user="guest", password="guest", timeout=120):
        api = Api(HTTP_PORT, user, password)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if api.call("GET", "/api/overview")[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.5)
        return False

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        subprocess.run(["pkill", "-9", "-f", NODE])
        for port in (AMQP_PORT, HTTP_PORT, DIST_PORT):
            deadline = time.time() + 30
            while port_open(port) and time.time() < deadline:
                time.sleep(0.3)
        shutil.rmtree(self.dir, ignore_errors=True)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def sigterm_is_interrupt():
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


# --------------------------------------------------------------------------------------
# HTTP


class Api:
    def __init__(self, port, user, password):
        self.base = f"http://127.0.0.1:{port}"
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def call(self, method, path, body=None, headers=None):
        """Returns (status, headers with lower-case names, body bytes)."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", self.auth)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def json(self, path):
        """GET path as JSON, or None if that fails in any way."""
        try:
            status, _, raw = self.call("GET", path)
            return json.loads(raw) if status == 200 else None
        except (OSError, ValueError):
            return None


def decode(raw):
    """A body as JSON if it is JSON; "" if empty; else the text."""
    if not raw:
        return ""
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def q(name):
    return urllib.parse.quote(name, safe="")


# --------------------------------------------------------------------------------------
# Shapes: a type tree of a JSON value.
#   object -> {field: shape}; array -> [merged shape of its elements] ([] if empty);
#   scalar -> "string" | "int" | "float" | "bool" | "null";
#   different kinds at one place -> their names joined: "null|string", "array|object".
# int and float together make "float" (any number).


def shape(v, node=None):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        out = None
        for x in v:
            s = shape(x, node)
            out = s if out is None else merge(out, s, union=True)
        return [] if out is None else [out]
    # Objects keyed by the node's name (a vhost's cluster_state) get "{node}" as key.
    return {("{node}" if k == node and node else k): shape(x, node) for k, x in v.items()}


def kinds(s):
    if isinstance(s, dict):
        return {"object"}
    if isinstance(s, list):
        return {"array"}
    return set(s.split("|"))


def merge(a, b, union):
    """Two shapes of one place as one: fields of objects united (union=True: the elements
    of one array) or intersected (union=False: two recordings of one answer)."""
    if a == b:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        keys = [k for k in a if k in b or union] + [k for k in b if k not in a and union]
        return {k: merge(a[k], b[k], union) if k in a and k in b else a.get(k, b.get(k))
                for k in keys}
    if isinstance(a, list) and isinstance(b, list):
        if not a or not b:
            return (a or b) if union else []
        return [merge(a[0], b[0], union)]
    ks = kinds(a) | kinds(b)
    if "int" in ks and "float" in ks:
        ks.discard("int")
    return "|".join(sorted(ks))


def compare_shape(want, got, path, skip, out):
    """Appends (path, RabbitMQ's, the broker's) for each place where the broker's shape
    `got` does not give what RabbitMQ's `want` has."""
    if skip(path):
        return
    wk = kinds(want)
    if "null" in wk:
        return  # RabbitMQ had null here (at least once): any value will do
    gk = kinds(got)
    allowed = wk | ({"int"} if "float" in wk else set())
    if not gk <= allowed:
        out.append((path, kind_text(want), kind_text(got)))
        return
    if isinstance(want, dict) and isinstance(got, dict):
        for k, w in want.items():
            if k not in got:
                if not skip(f"{path}.{k}"):
                    out.append((f"{path}.{k}", kind_text(w), "missing"))
            else:
                compare_shape(w, got[k], f"{path}.{k}", skip, out)
    elif isinstance(want, list) and isinstance(got, list) and want:
        if not got:
            if not skip(f"{path}[]"):
                out.append((f"{path}[]", "a non-empty array", "an empty array"))
        else:
            compare_shape(want[0], got[0], f"{path}[]", skip, out)


def kind_text(s):
    if isinstance(s, dict):
        return "object"
    if isinstance(s, list):
        return "array" if not s else f"array of {kind_text(s[0])}"
    return s


# --------------------------------------------------------------------------------------
# The scenario


class Scenario:
    """Everything named g.* / g-*, made over HTTP and AMQP; the connections A and B stay
    open until the end."""

    def __init__(self, api, amqp_port, user, password):
        self.api, self.amqp_port, self.user, self.password = api, amqp_port, user, password
        self.conn_a = self.conn_b = self.ch_b = None
        self.delivered = []
        self.vars = {"amqp_port": str(amqp_port), "user": user}
        self.aliveness_queue_existed = False

    def params(self, vhost="/", name=None):
        return pika.ConnectionParameters(
            "127.0.0.1", self.amqp_port, vhost, pika.PlainCredentials(self.user, self.password),
            heartbeat=0, blocked_connection_timeout=None,
            client_properties={"connection_name": name} if name else None)

    def clean(self):
        """Deletes whatever a former run left (and, at the end, what this one made)."""
        for path in ("/api/queues/%2F/g.q1", "/api/queues/%2F/g.q2", "/api/queues/%2F/g.new",
                     "/api/exchanges/%2F/g.ex", "/api/exchanges/%2F/g.ex2",
                     "/api/exchanges/%2F/g.newex", "/api/vhosts/g-v"):
            try:
                self.api.call("DELETE", path)
            except OSError:
                pass

    def build(self):
        api = self.api
        note_status("PUT vhost g-v", api.call("PUT", "/api/vhosts/g-v", {}), (201, 204))
        # RabbitMQ grants the creating user g-v itself; say it anyway for other brokers.
        note_status("PUT permissions g-v", api.call(
            "PUT", f"/api/permissions/g-v/{q(self.user)}",
            {"configure": ".*", "write": ".*", "read": ".*"}), (201, 204))

        self.conn_a = pika.BlockingConnection(self.params(name="golden-a"))
        ch = self.conn_a.channel()
        ch.confirm_delivery()
        ch.queue_declare("g.q1", durable=True, arguments={"x-max-length": 100})
        ch.exchange_declare("g.ex", "topic", durable=True)
        ch.exchange_declare("g.ex2", "fanout", durable=True)
        ch.queue_bind("g.q1", "g.ex", "a.#")
        ch.exchange_bind(destination="g.ex", source="g.ex2", routing_key="b")
        persistent = pika.BasicProperties(delivery_mode=2)
        for i in range(3):
            ch.basic_publish("g.ex", "a.x", f"q1 message {i}".encode(), persistent)
        ch.queue_declare("g.q2", durable=True)
        for i in range(2):
            ch.basic_publish("", "g.q2", f"q2 message {i}".encode(), persistent)

        self.conn_b = pika.BlockingConnection(self.params(name="golden-b"))
        self.ch_b = self.conn_b.channel()
        self.ch_b.basic_qos(prefetch_count=10)
        self.ch_b.basic_consume("g.q2", lambda c, m, p, b: self.delivered.append(m.delivery_tag),
                                auto_ack=False, consumer_tag="g-ctag")
        deadline = time.time() + 10
        while len(self.delivered) < 2 and time.time() < deadline:
            self.conn_b.process_data_events(time_limit=0.1)
        if len(self.delivered) < 2:
            print(f"warning: connection B got {len(self.delivered)} of 2 deliveries")

        v = pika.BlockingConnection(self.params("g-v", name="golden-v"))
        v.channel().queue_declare("g.q3", durable=False, auto_delete=False)
        v.close()
        self.wait_stats()
        self.resolve()

    def wait_stats(self):
        """Until the stats show the scenario (the lists lag behind: a new connection shows
        in /api/connections some seconds after it opened)."""
        checks = {
            "g.q1 has 3 messages": lambda: (self.api.json("/api/queues/%2F/g.q1") or {})
            .get("messages") == 3,
            "g.q2 has 2 unacked": lambda: (self.api.json("/api/queues/%2F/g.q2") or {})
            .get("messages_unacknowledged") == 2,
            "connections are golden-a and golden-b": lambda: sorted(
                conn_label(c) for c in self.api.json("/api/connections") or []) == [
                "golden-a", "golden-b"],
            "2 channels": lambda: len(self.api.json("/api/channels") or []) == 2,
            "consumer g-ctag": lambda: any(
                c.get("consumer_tag") == "g-ctag" for c in self.api.json("/api/consumers") or []),
        }
        wait_for(checks, WAIT_STATS)
        # Then until the scenario is quiet: RabbitMQ adds `idle_since` to a queue or a
        # channel about 1 s after its last activity, and that steady state is what both
        # modes fetch (a broker without idle_since costs this wait once).
        wait_for({
            "g.q1 and g.q2 show idle_since": lambda: all(
                "idle_since" in (self.api.json(f"/api/queues/%2F/{n}") or {})
                for n in ("g.q1", "g.q2")),
            "the channels show idle_since": lambda: all(
                "idle_since" in c for c in self.api.json("/api/channels") or [{}]),
        }, WAIT_QUIET)

    def resolve(self):
        """The names the case paths use: the node, connections A and B, A's channel."""
        self.vars["node"] = (self.api.json("/api/overview") or {}).get("node") or "unresolved"
        conns = self.api.json("/api/connections") or []
        for label, var in (("golden-a", "conn_a"), ("golden-b", "conn_b")):
            names = [c.get("name") for c in conns if conn_label(c) == label]
            self.vars[var] = names[0] if names else "unresolved"
        chans = [c.get("name") for c in self.api.json("/api/channels") or []
                 if (c.get("connection_details") or {}).get("name") == self.vars["conn_a"]]
        self.vars["chan_a"] = chans[0] if chans else "unresolved"

    def connection_b_close(self):
        """Drives connection B until the broker closes it: what pika saw."""
        if self.conn_b is None:
            return {"error": "connection B was never opened"}
        deadline = time.time() + 10
        try:
            while time.time() < deadline:
                self.conn_b.process_data_events(time_limit=0.2)
        except pika.exceptions.ConnectionClosedByBroker as e:
            self.conn_b = None
            return {"reply_code": e.reply_code, "reply_text": e.reply_text}
        except pika.exceptions.AMQPError as e:
            self.conn_b = None
            return {"error": type(e).__name__, "text": str(e)}
        return {"error": "not closed within 10 s"}

    def close(self):
        for c in (self.conn_a, self.conn_b):
            try:
                if c is not None and c.is_open:
                    c.close()
            except Exception:  # noqa: BLE001 - a broker that closed it first is fine
                pass
        self.conn_a = self.conn_b = None


def wait_for(checks, seconds):
    deadline = time.time() + seconds
    pending = dict(checks)
    while pending and time.time() < deadline:
        pending = {k: f for k, f in pending.items() if not f()}
        if pending:
            time.sleep(0.25)
    for k in pending:
        print(f"warning: after {seconds:.0f} s the stats do not show: {k}")


def conn_label(c):
    return (c.get("client_properties") or {}).get("connection_name") or c.get("user_provided_name")


def note_status(what, answer, ok):
    if answer[0] not in ok:
        print(f"warning: {what}: {answer[0]} {answer[2][:200]!r}")


# --------------------------------------------------------------------------------------
# The cases
#
# (name, method, path, request body, request headers, values)
# `path` may use {node}, {conn_a}, {conn_b}, {chan_a}, {amqp_port} (URL-quoted when
# filled in). `values(body, answer)` picks the values that the scenario fixes (counts,
# names, order of g.* items, ...): they are recorded and compared exactly.


def pick(*paths):
    """values(): the values at dotted paths of an object body."""
    def values(body, answer):
        out = {}
        for p in paths:
            v = body
            for part in p.split("."):
                v = v.get(part) if isinstance(v, dict) else None
            out[p] = v
        return out
    return values


def ident(item):
    if not isinstance(item, dict):
        return None
    if "source" in item and "destination" in item:
        ends = (item.get("source"), item.get("destination"))
        if not any(isinstance(e, str) and e.startswith(("g.", "g-")) for e in ends):
            return None
        return (f"{item.get('vhost')} {item.get('source')} -> {item.get('destination_type')} "
                f"{item.get('destination')} [{item.get('routing_key')}]")
    name = item.get("name")
    if isinstance(name, str) and name.startswith(("g.", "g-")):
        return f"{item['vhost']} {name}" if "vhost" in item else name
    return None


def order(*more):
    """values(): the order of the scenario's items (g.* names) in a list body, plus more."""
    def values(body, answer):
        items = body.get("items") if isinstance(body, dict) else body
        out = {"order": [i for i in map(ident, items or []) if i is not None]}
        for f in more:
            out.update(f(body, answer))
        return out
    return values


def keys_of_items(body, answer):
    items = body.get("items") if isinstance(body, dict) else body
    return {"item keys": [sorted(i) for i in items or [] if isinstance(i, dict)]}


def page_fields(body, answer):
    return {k: body.get(k) for k in ("filtered_count", "item_count", "page", "page_count",
                                     "page_size", "total_count")} if isinstance(body, dict) else {}


def is_caller(body, answer):
    return {"user is the caller": body.get("user") == answer["vars"]["user"]}


def connection_values(body, answer):
    out = is_caller(body, answer)
    out.update(pick("vhost", "protocol", "auth_mechanism", "channels", "state",
               "client_properties.connection_name", "user_provided_name")(body, answer))
    out["name is 'peer_host:peer_port -> host:port'"] = body.get("name") == (
        f"{body.get('peer_host')}:{body.get('peer_port')} -> {body.get('host')}:{body.get('port')}")
    return out


def channel_values(body, answer):
    out = is_caller(body, answer)
    out.update(pick("number", "confirm", "transactional", "prefetch_count", "consumer_count",
                    "messages_unacknowledged", "vhost", "state")(body, answer))
    cd = body.get("connection_details") or {}
    out["name is 'connection name (number)'"] = body.get("name") == f"{cd.get('name')} (1)"
    return out


def list_len(body, answer):
    return {"length": len(body) if isinstance(body, list) else None}


def get_values(body, answer):
    if not isinstance(body, list):
        return {"messages": None}
    return {"messages": [{k: m.get(k) for k in ("payload", "payload_bytes", "payload_encoding",
                                                  "redelivered", "exchange", "routing_key",
                                                  "message_count", "properties")}
                         for m in body]}


NEW_QUEUE = {"durable": True, "auto_delete": False, "arguments": {"x-message-ttl": 60000}}
GET5 = {"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 50000}

GETS = [
    ("overview", "GET", "/api/overview", None, None, None),
    ("nodes", "GET", "/api/nodes", None, None, list_len),
    ("node", "GET", "/api/nodes/{node}", None, None, pick("running")),
    ("whoami", "GET", "/api/whoami", None, None, lambda b, a: {
        "name is the caller": b.get("name") == a["vars"]["user"]}),
    ("queues", "GET", "/api/queues", None, None, order()),
    ("queues-vhost", "GET", "/api/queues/%2F", None, None, order()),
    ("queue-g.q1", "GET", "/api/queues/%2F/g.q1", None, None, pick(
        "name", "vhost", "durable", "auto_delete", "exclusive", "arguments", "type", "state",
        "messages", "messages_ready", "messages_unacknowledged", "consumers", "policy")),
    ("queue-g.q2", "GET", "/api/queues/%2F/g.q2", None, None, pick(
        "name", "durable", "arguments", "messages", "messages_ready", "messages_unacknowledged",
        "consumers")),
    ("queue-missing", "GET", "/api/queues/%2F/g.nope", None, None, None),
    ("queue-bindings", "GET", "/api/queues/%2F/g.q1/bindings", None, None, order()),
    ("exchanges", "GET", "/api/exchanges", None, None, order()),
    ("exchanges-vhost", "GET", "/api/exchanges/%2F", None, None, order()),
    ("exchange-g.ex", "GET", "/api/exchanges/%2F/g.ex", None, None, pick(
        "name", "vhost", "type", "durable", "auto_delete", "internal", "arguments")),
    ("exchange-bindings-source", "GET", "/api/exchanges/%2F/g.ex/bindings/source", None, None,
     order()),
    ("exchange-bindings-destination", "GET", "/api/exchanges/%2F/g.ex/bindings/destination",
     None, None, order()),
    ("bindings", "GET", "/api/bindings", None, None, order()),
    ("bindings-vhost", "GET", "/api/bindings/%2F", None, None, order()),
    ("bindings-e-q", "GET", "/api/bindings/%2F/e/g.ex/q/g.q1", None, None, order()),
    ("binding-e-q-props", "GET", "/api/bindings/%2F/e/g.ex/q/g.q1/a.%23", None, None, pick(
        "source", "destination", "destination_type", "routing_key", "properties_key")),
    ("bindings-e-e", "GET", "/api/bindings/%2F/e/g.ex2/e/g.ex", None, None, order()),
    ("connections", "GET", "/api/connections", None, None, list_len),
    ("connection-a", "GET", "/api/connections/{conn_a}", None, None, connection_values),
    ("connection-a-channels", "GET", "/api/connections/{conn_a}/channels", None, None, list_len),
    ("connections-vhost", "GET", "/api/vhosts/%2F/connections", None, None, list_len),
    ("channels", "GET", "/api/channels", None, None, list_len),
    ("channel-a", "GET", "/api/channels/{chan_a}", None, None, channel_values),
    ("channels-vhost", "GET", "/api/vhosts/%2F/channels", None, None, list_len),
    ("consumers", "GET", "/api/consumers", None, None, list_len),
    ("consumers-vhost", "GET", "/api/consumers/%2F", None, None, list_len),
    ("vhosts", "GET", "/api/vhosts", None, None, order()),
    ("vhost", "GET", "/api/vhosts/%2F", None, None, pick("name", "messages", "messages_ready",
                                                        "messages_unacknowledged", "tracing")),
    ("extensions", "GET", "/api/extensions", None, None, None),
    ("health-alarms", "GET", "/api/health/checks/alarms", None, None, pick("status")),
    ("health-local-alarms", "GET", "/api/health/checks/local-alarms", None, None,
     pick("status")),
    ("health-virtual-hosts", "GET", "/api/health/checks/virtual-hosts", None, None,
     pick("status")),
    ("health-port-listener", "GET", "/api/health/checks/port-listener/{amqp_port}", None, None,
     lambda b, a: {"status": b.get("status"),
                   "port is the AMQP port": b.get("port") == int(a["vars"]["amqp_port"])}),
    ("health-port-listener-none", "GET", "/api/health/checks/port-listener/5799", None, None,
     pick("status", "reason", "missing")),
    ("health-protocol-listener", "GET", "/api/health/checks/protocol-listener/amqp", None, None,
     pick("status", "protocol")),
    ("health-protocol-listener-none", "GET", "/api/health/checks/protocol-listener/stomp", None,
     None, pick("status", "reason", "missing")),
    ("health-quorum-critical", "GET", "/api/health/checks/node-is-quorum-critical", None, None,
     pick("status")),
    ("aliveness-test", "GET", "/api/aliveness-test/%2F", None, None, pick("status")),
    ("queues-page", "GET", "/api/queues?page=1&page_size=2", None, None, order(page_fields)),
    ("queues-page-out-of-range", "GET", "/api/queues?page=9&page_size=2", None, None, None),
    ("queues-columns", "GET", "/api/queues?columns=name,messages", None, None,
     order(keys_of_items)),
    ("queues-columns-nested", "GET", "/api/queues?columns=name,message_stats.publish", None,
     None, order(keys_of_items)),
    ("queues-sort-reverse", "GET", "/api/queues?sort=messages&sort_reverse=true", None, None,
     order()),
    ("queues-sort", "GET", "/api/queues?sort=messages", None, None, order()),
    ("queues-name-no-page", "GET", "/api/queues?name=g.q&use_regex=false", None, None,
     order()),
    ("exchanges-page-name", "GET", "/api/exchanges/%2F?page=1&page_size=3&name=g.", None, None,
     order(page_fields)),
]

CHANGES = [
    ("put-queue-new", "PUT", "/api/queues/%2F/g.new", NEW_QUEUE, None, None),
    ("put-queue-again", "PUT", "/api/queues/%2F/g.new", NEW_QUEUE, None, None),
    ("put-queue-different-args", "PUT", "/api/queues/%2F/g.new",
     dict(NEW_QUEUE, arguments={"x-message-ttl": 1000}), None, None),
    ("put-exchange-new", "PUT", "/api/exchanges/%2F/g.newex", {"type": "direct", "durable": True},
     None, None),
    ("publish-unrouted", "POST", "/api/exchanges/%2F/g.newex/publish",
     {"properties": {}, "routing_key": "nowhere", "payload": "hi", "payload_encoding": "string"},
     None, pick("routed")),
    ("post-binding", "POST", "/api/bindings/%2F/e/g.newex/q/g.new",
     {"routing_key": "k", "arguments": {}}, None, None),
    ("publish-routed", "POST", "/api/exchanges/%2F/g.newex/publish",
     {"properties": {}, "routing_key": "k", "payload": "hi", "payload_encoding": "string"},
     None, pick("routed")),
    ("get-requeue", "POST", "/api/queues/%2F/g.new/get", GET5, None, get_values),
    ("get-ack", "POST", "/api/queues/%2F/g.new/get", dict(GET5, ackmode="ack_requeue_false"),
     None, get_values),
    ("get-empty", "POST", "/api/queues/%2F/g.new/get", GET5, None, get_values),
    ("delete-binding", "DELETE", "/api/bindings/%2F/e/g.newex/q/g.new/k", None, None, None),
    ("delete-queue-g.q1-if-empty", "DELETE", "/api/queues/%2F/g.q1?if-empty=true", None, None,
     None),
    ("purge-g.q1", "DELETE", "/api/queues/%2F/g.q1/contents", None, None, None),
    ("delete-queue-g.q2-if-unused", "DELETE", "/api/queues/%2F/g.q2?if-unused=true", None, None,
     None),
    ("delete-queue-g.q2-if-empty", "DELETE", "/api/queues/%2F/g.q2?if-empty=true", None, None,
     None),
    ("delete-queue-new", "DELETE", "/api/queues/%2F/g.new", None, None, None),
    ("delete-exchange-if-unused", "DELETE", "/api/exchanges/%2F/g.newex?if-unused=true", None,
     None, None),
    ("delete-connection-b", "DELETE", "/api/connections/{conn_b}", None,
     {"X-Reason": "golden test"}, None),
    ("delete-queue-missing", "DELETE", "/api/queues/%2F/g.nope", None, None, None),
    ("queues-missing-vhost", "GET", "/api/queues/g-nope-vhost", None, None, None),
    ("post-to-queue", "POST", "/api/queues/%2F/g.q1", {}, None, None),
    ("get-bad-ackmode", "POST", "/api/queues/%2F/g.q1/get",
     {"count": 1, "ackmode": "bogus", "encoding": "auto"}, None, None),
]


def fetch(api, scenario, case):
    """One answer: {status, headers, body, raw}."""
    name, method, path, body, headers, _ = case
    filled = path.format(**{k: q(v) for k, v in scenario.vars.items()})
    status, hdrs, raw = api.call(method, filled, body, headers)
    answer = {"status": status, "path": filled, "headers": {}, "body": decode(raw),
              "vars": scenario.vars}
    if "location" in hdrs:
        answer["headers"]["location"] = hdrs["location"]
    if name == "delete-connection-b":
        answer["client_saw"] = scenario.connection_b_close()
    if name == "aliveness-test" and not scenario.aliveness_queue_existed:
        # RabbitMQ leaves its queue `aliveness-test` behind; later lists must not see it.
        api.call("DELETE", "/api/queues/%2F/aliveness-test")
    return answer


def body_shape(body, node):
    if body == "":
        return "empty"
    if isinstance(body, str):
        return "text"
    return shape(body, node)


def case_values(case, answer):
    f = case[5]
    if f is None:
        return {}
    try:
        return f(answer["body"], answer)
    except (AttributeError, TypeError, KeyError):
        return {"(values)": "could not read the body"}


def run_cases(api, scenario, rounds):
    """Fetches the GETs `rounds` times (SECOND_ROUND_AFTER apart), then the changes once.
    Returns [(case, [answer, ...])]."""
    answers = {c[0]: [] for c in GETS + CHANGES}
    for r in range(rounds):
        if r:
            time.sleep(SECOND_ROUND_AFTER)
        for case in GETS:
            answers[case[0]].append(fetch(api, scenario, case))
    for case in CHANGES:
        answers[case[0]].append(fetch(api, scenario, case))
    return [(c, answers[c[0]]) for c in GETS + CHANGES]


# --------------------------------------------------------------------------------------
# record


def record():
    sigterm_is_interrupt()
    node = RabbitNode()
    scenario = None
    try:
        if not node.wait_ready():
            sys.exit("RabbitMQ did not start")
        version = node.ctl("version").stdout.strip()
        print(f"RabbitMQ {version} up as {NODE}")
        api = Api(HTTP_PORT, "guest", "guest")
        scenario = Scenario(api, AMQP_PORT, "guest", "guest")
        scenario.build()
        results = run_cases(api, scenario, rounds=2)
        scenario.close()
    finally:
        if scenario is not None:
            scenario.close()
        node.stop()
        print("RabbitMQ node stopped")

    node_name = scenario.vars["node"]
    cases = []
    if os.path.isdir(RAW):
        shutil.rmtree(RAW)
    os.makedirs(RAW)
    for case, answers in results:
        name, method, path, body, headers, _ = case
        first = answers[0]
        for a in answers[1:]:
            if a["status"] != first["status"]:
                print(f"warning: {name}: status {first['status']} then {a['status']}")
        s = body_shape(first["body"], node_name)
        values = case_values(case, first)
        for a in answers[1:]:
            s = merge(s, body_shape(a["body"], node_name), union=False)
            again = case_values(case, a)
            for k in list(values):
                if again.get(k) != values[k]:
                    print(f"note: {name}: {k} changed between the recordings; not kept")
                    del values[k]
        entry = {"name": name, "method": method, "path": path}
        if body is not None:
            entry["request"] = body
        if headers:
            entry["request_headers"] = headers
        entry["status"] = first["status"]
        if first["headers"]:
            entry["headers"] = first["headers"]
        if values:
            entry["values"] = values
        if "client_saw" in first:
            entry["client_saw"] = first["client_saw"]
        entry["shape"] = s
        cases.append(entry)
        with open(os.path.join(RAW, f"{name}.json"), "w") as f:
            json.dump(first["body"], f, indent=2)
            f.write("\n")
    doc = {"recorded_from": f"RabbitMQ {version} (rabbitmq_management), node {NODE}",
           "cases": cases}
    with open(ANSWERS, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    print(f"{len(cases)} cases written to {os.path.relpath(ANSWERS, ROOT)} and "
          f"{os.path.relpath(RAW, ROOT)}/")


# --------------------------------------------------------------------------------------
# check


def load_not_given():
    rules = []
    for path in (NOT_GIVEN, WARREN_GAPS):
        if os.path.exists(path):
            with open(path) as f:
                rules.extend(json.load(f))
    return rules


def skipper(case_name, not_given):
    rules = [(r["case"], r["field"]) for r in not_given]

    def skip(path):
        return any(fnmatch.fnmatchcase(case_name, c) and fnmatch.fnmatchcase(path, p)
                   for c, p in rules)
    return skip


def compare_case(want, got, node_name, not_given):
    """Differences [(path, RabbitMQ's, the broker's)] of one case."""
    out = []
    if got["status"] != want["status"]:
        out.append(("status", want["status"], got["status"]))
        return out
    skip = skipper(want["name"], not_given)
    got_shape = body_shape(got["body"], node_name)
    wshape = want["shape"]
    if 400 <= want["status"] < 500:
        # Error bodies: only that "error" and "reason" are there.
        if isinstance(wshape, dict):
            for k in ("error", "reason"):
                if k in wshape and not (isinstance(got_shape, dict) and k in got_shape):
                    out.append((f"$.{k}", wshape[k], "missing"))
    elif wshape not in ("empty", "text"):
        compare_shape(wshape, got_shape, "$", skip, out)
    for k, v in want.get("headers", {}).items():
        if got["headers"].get(k) != v:
            out.append((f"header {k}", v, got["headers"].get(k, "missing")))
    got_values = case_values(CASES_BY_NAME[want["name"]], got)
    for k, v in want.get("values", {}).items():
        if got_values.get(k) != v:
            out.append((f"value {k}", v, got_values.get(k)))
    if "client_saw" in want and got.get("client_saw") != want["client_saw"]:
        out.append(("client saw", want["client_saw"], got.get("client_saw")))
    return out


CASES_BY_NAME = {c[0]: c for c in GETS + CHANGES}


def check(args):
    with open(ANSWERS) as f:
        golden = json.load(f)["cases"]
    not_given = load_not_given()
    api = Api(args.http_port, args.user, args.password)
    if api.json("/api/overview") is None:
        sys.exit(f"no management API answers on 127.0.0.1:{args.http_port} as {args.user}")
    scenario = Scenario(api, args.amqp_port, args.user, args.password)
    scenario.aliveness_queue_existed = api.json("/api/queues/%2F/aliveness-test") is not None
    scenario.clean()
    sigterm_is_interrupt()
    try:
        try:
            scenario.build()
        except (pika.exceptions.AMQPError, OSError) as e:
            print(f"the scenario failed on this broker: {type(e).__name__}: {e}; "
                  "fetching the cases anyway")
            scenario.resolve()
        results = {c[0]: a[0] for c, a in run_cases(api, scenario, rounds=1)}
    finally:
        scenario.close()
        scenario.clean()
        if not scenario.aliveness_queue_existed:
            api.call("DELETE", "/api/queues/%2F/aliveness-test")
    diffs = 0
    for want in golden:
        got = results.get(want["name"])
        if got is None:
            print(f"{want['name']}: not fetched (the tool's cases and answers.json disagree)")
            diffs += 1
            continue
        for path, rabbit, broker in compare_case(want, got, scenario.vars["node"], not_given):
            diffs += 1
            print(f"{want['name']} ({want['method']} {got['path']}): {path}: "
                  f"RabbitMQ {json.dumps(rabbit)}, broker {json.dumps(broker)}")
    print(f"{len(golden)} cases, {diffs} differences")
    return 1 if diffs else 0


# --------------------------------------------------------------------------------------


def serve_rabbit():
    sigterm_is_interrupt()
    node = RabbitNode()
    try:
        if not node.wait_ready():
            sys.exit("RabbitMQ did not start")
        print(f"RabbitMQ up as {NODE}: AMQP 127.0.0.1:{AMQP_PORT}, HTTP 127.0.0.1:{HTTP_PORT}; "
              "Ctrl-C or SIGTERM stops it", flush=True)
        while node.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        node.stop()
        print("RabbitMQ node stopped", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    sub.add_parser("record", help="record RabbitMQ's answers (starts and stops its own node)")
    c = sub.add_parser("check", help="compare a running broker's answers with the recorded ones")
    c.add_argument("--amqp-port", type=int, required=True)
    c.add_argument("--http-port", type=int, required=True)
    c.add_argument("--user", default="guest")
    c.add_argument("--password", default="guest")
    sub.add_parser("rabbit", help="run a private RabbitMQ node like record's until Ctrl-C")
    args = ap.parse_args()
    if args.mode == "record":
        record()
    elif args.mode == "check":
        sys.exit(check(args))
    else:
        serve_rabbit()


if __name__ == "__main__":
    main()
