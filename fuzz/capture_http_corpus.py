#!/usr/bin/env python3
"""Seeds for the http_request fuzz target from real rabbitmqadmin traffic.

Starts a private RabbitMQ 3.10 node with its management plugin (Debian's rabbitmq-server;
AMQP port 5705, HTTP port 15705, node capture@localhost, distribution port 25705), puts a
recording TCP proxy on port 15706 in front of its HTTP port, runs a list of rabbitmqadmin
commands through the proxy (RabbitMQ answers them, so each command goes as it would in
the field), and writes every request rabbitmqadmin sent to
fuzz/corpus/http_request/rabbitmqadmin-<n>-<command> in the target's input format:
`METHOD TARGET`, the header lines, an empty line, the body.

Usage: python3 fuzz/capture_http_corpus.py
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus", "http_request")
AMQP, HTTP, PROXY, DIST = 5705, 15705, 15706, 25705

COMMANDS = [
    ["show", "overview"],
    ["list", "queues"],
    ["list", "exchanges", "name", "type"],
    ["list", "vhosts"],
    ["declare", "vhost", "name=fuzz"],
    ["declare", "user", "name=alice", "password=secret", "tags=monitoring"],
    ["declare", "permission", "vhost=fuzz", "user=alice", "configure=^a.*", "write=.*",
     "read=.*"],
    ["declare", "queue", "name=orders", "durable=true",
     'arguments={"x-max-length": 10, "x-queue-mode": "lazy"}'],
    ["declare", "exchange", "name=events", "type=topic"],
    ["declare", "binding", "source=events", "destination=orders", "routing_key=order.#"],
    ["publish", "exchange=events", "routing_key=order.created", "payload=hello",
     'properties={"delivery_mode": 2, "headers": {"k": "v"}}'],
    ["get", "queue=orders", "ackmode=ack_requeue_true", "count=2"],
    ["declare", "policy", "name=ttl", "pattern=^orders$",
     'definition={"message-ttl": 60000}', "apply-to=queues", "priority=3"],
    ["list", "policies"],
    ["list", "bindings"],
    ["list", "connections"],
    ["list", "users"],
    ["list", "permissions"],
    ["export", "/dev/null"],
    ["purge", "queue", "name=orders"],
    ["delete", "binding", "source=events", "destination=orders",
     "destination_type=queue", "properties_key=order.%23"],
    ["delete", "policy", "name=ttl"],
    ["delete", "exchange", "name=events"],
    ["delete", "queue", "name=orders"],
    ["delete", "permission", "vhost=fuzz", "user=alice"],
    ["delete", "user", "name=alice"],
    ["delete", "vhost", "name=fuzz"],
]


def record_one(client, captured):
    """Relays one client connection to RabbitMQ, keeping what the client sent."""
    upstream = socket.create_connection(("127.0.0.1", HTTP))
    sent = bytearray()

    def pump(src, dst, keep):
        try:
            while data := src.recv(65536):
                if keep is not None:
                    keep.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    back = threading.Thread(target=pump, args=(upstream, client, None))
    back.start()
    pump(client, upstream, sent)
    back.join()
    client.close()
    upstream.close()
    captured.append(bytes(sent))


def as_seed(raw):
    """An HTTP/1.1 request as the fuzz target's input; None if it is not one."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = [h for h in lines[1:] if h.split(":", 1)[0].lower() not in ("host", "content-length")]
    return "\n".join([f"{method} {target}", *headers, "", ""]).encode("latin-1") + body


def main():
    d = tempfile.mkdtemp(prefix="capture-rabbit-")
    for sub in ("mnesia", "log"):
        os.makedirs(os.path.join(d, sub))
    with open(os.path.join(d, "plugins"), "w") as f:
        f.write("[rabbitmq_management].\n")
    with open(os.path.join(d, "rabbitmq.conf"), "w") as f:
        f.write(f"management.tcp.port = {HTTP}\n")
    env = dict(os.environ, HOME=d, RABBITMQ_NODE_PORT=str(AMQP),
               RABBITMQ_NODENAME="capture@localhost", RABBITMQ_DIST_PORT=str(DIST),
               RABBITMQ_MNESIA_BASE=os.path.join(d, "mnesia"),
               RABBITMQ_LOG_BASE=os.path.join(d, "log"),
               RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(d, "plugins"),
               RABBITMQ_CONFIG_FILE=os.path.join(d, "rabbitmq"))
    node = subprocess.Popen(["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", HTTP)).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            sys.exit(f"RabbitMQ's management port did not open; logs in {d}/log")
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", PROXY))
        srv.listen(16)
        os.makedirs(OUT, exist_ok=True)
        written = 0
        for n, cmd in enumerate(COMMANDS):
            captured = []
            admin = subprocess.Popen(["rabbitmqadmin", "-P", str(PROXY), *cmd],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            srv.settimeout(2)
            while admin.poll() is None:
                try:
                    client, _ = srv.accept()
                except socket.timeout:
                    break
                record_one(client, captured)
            admin.wait()
            for i, raw in enumerate(captured):
                seed = as_seed(raw)
                if seed is None:
                    continue
                words = [w for w in cmd[:2] if w.isalpha()]
                name = f"rabbitmqadmin-{n:02}-{'-'.join(words)}" + (f"-{i}" if i else "")
                with open(os.path.join(OUT, name), "wb") as f:
                    f.write(seed)
                written += 1
        print(f"{written} requests from {len(COMMANDS)} rabbitmqadmin commands in {OUT}")
    finally:
        os.killpg(node.pid, signal.SIGTERM)
        node.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
