#!/usr/bin/env python3
"""Builds seed corpora for the fuzz targets from real client traffic.

Runs the pika tutorial scripts (tests/python) through a recording TCP proxy in front of
a running broker, then splits what the client sent into per-target seeds:

  fuzz/corpus/connection/   whole client streams after the protocol header (seed byte first)
  fuzz/corpus/frame/        the same streams (seed byte first)
  fuzz/corpus/method/       each method frame's payload
  fuzz/corpus/content_header/  each content header payload
  fuzz/corpus/field_table/  each field table found in method arguments (without length)

Usage: python3 fuzz/capture_corpus.py BROKER_PORT [--lapin]
(--lapin also records examples/lapin_session.rs, a lapin client session)
"""
import os
import socket
import struct
import subprocess
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def proxy(listen_port, broker_port, captures):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen_port))
    srv.listen(16)

    def pump(src, dst, record):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if record is not None:
                    record.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def serve():
        while True:
            client, _ = srv.accept()
            upstream = socket.create_connection(("127.0.0.1", broker_port))
            record = bytearray()
            captures.append(record)
            threading.Thread(target=pump, args=(client, upstream, record), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client, None), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()


def frames(stream):
    pos = 0
    while pos + 7 <= len(stream):
        kind, channel, size = struct.unpack(">BHI", stream[pos:pos + 7])
        if pos + 8 + size > len(stream):
            break
        yield kind, stream[pos + 7:pos + 7 + size]
        pos += 8 + size


def tables_in(payload):
    """Field tables at the end of declare/bind/consume/start-ok arguments (best effort)."""
    found = []
    for i in range(len(payload) - 4):
        n = struct.unpack(">I", payload[i:i + 4])[0]
        if 0 < n and i + 4 + n == len(payload):
            found.append(payload[i + 4:])
    return found


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    broker_port = int(sys.argv[1])
    listen = 5799
    captures = []
    proxy(listen, broker_port, captures)
    env = dict(os.environ, WARREN_PORT=str(listen), WORKER_IDLE="1")
    py = os.path.join(ROOT, "tests", "python")
    subprocess.run([sys.executable, os.path.join(py, "send.py")], env=env, check=True)
    subprocess.run([sys.executable, os.path.join(py, "receive.py")], env=env, check=True)
    subprocess.run([sys.executable, os.path.join(py, "new_task.py"), "one.", "two..", "three..."], env=env, check=True)
    subprocess.run([sys.executable, os.path.join(py, "worker.py")], env=env, check=True)
    names = ["pika"] * len(captures)
    if "--lapin" in sys.argv:
        subprocess.run(["cargo", "run", "--release", "--quiet", "--example", "lapin_session", "--", str(listen)],
                       cwd=ROOT, check=True)
        names.append("lapin")
    for i, raw in enumerate(captures):
        who = names[i] if i < len(names) else "client"
        stream = bytes(raw[8:])  # after the protocol header
        write("connection", f"{who}-{i}", b"\x40" + stream)
        write("frame", f"{who}-{i}", b"\x40" + stream)
        for j, (kind, payload) in enumerate(frames(stream)):
            if kind == 1:
                write("method", f"{who}-{i}-{j}", payload)
                if payload[:4] == b"\x00\x0a\x00\x0b":  # start-ok: client-properties
                    n = struct.unpack(">I", payload[4:8])[0]
                    write("field_table", f"{who}-{i}-{j}-props", payload[8:8 + n])
                for k, t in enumerate(tables_in(payload)):
                    write("field_table", f"{who}-{i}-{j}-{k}", t)
            elif kind == 2:
                write("content_header", f"{who}-{i}-{j}", payload)
    print(f"captured {len(captures)} client sessions into {CORPUS}")


if __name__ == "__main__":
    main()
