#!/usr/bin/env python3
"""Transaction throughput: COMMITS transactions of MESSAGES persistent messages each, published
to one durable queue and committed, one after the other on one channel.

The client is a few lines of raw AMQP over a socket (standard library only): each
transaction's publishes and its tx.commit are encoded once and sent in one write, then the
client waits for tx.commit-ok. So the figure is the broker's (routing, storing, one sync per
commit), not a client library's.

    tools/tx_bench.py --broker warren              # starts target/release/warren --fsync always
    tools/tx_bench.py --broker rabbitmq            # starts a private RabbitMQ node (port 5698)
    tools/tx_bench.py --port 5672                  # a broker already running

Prints commits/s, messages/s and commit latency percentiles (time from the write to
commit-ok). The queue is checked to hold every committed message, then deleted.
"""

import argparse
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)


# ----- a minimal AMQP 0-9-1 client ------------------------------------------------------------

def shortstr(s):
    b = s.encode()
    return bytes([len(b)]) + b


def frame(kind, channel, payload):
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def method(channel, class_id, method_id, args=b""):
    return frame(1, channel, struct.pack(">HH", class_id, method_id) + args)


class Client:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self.expect(10, 10)
        resp = b"\0guest\0guest"
        self.sock.sendall(method(0, 10, 11, struct.pack(">I", 0) + shortstr("PLAIN")
                                 + struct.pack(">I", len(resp)) + resp + shortstr("en_US")))
        tune = self.expect(10, 30)
        channel_max, frame_max, _ = struct.unpack(">HIH", tune[4:12])
        self.frame_max = frame_max
        self.sock.sendall(method(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, 0)))
        self.sock.sendall(method(0, 10, 40, shortstr("/") + shortstr("") + b"\0"))
        self.expect(10, 41)

    def recv_frame(self):
        while True:
            if len(self.buf) >= 7:
                kind, channel, size = struct.unpack(">BHI", self.buf[:7])
                if len(self.buf) >= 8 + size:
                    payload = self.buf[7:7 + size]
                    self.buf = self.buf[8 + size:]
                    return kind, channel, payload
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("broker closed the connection")
            self.buf += chunk

    def expect(self, class_id, method_id):
        """Reads until the given method arrives; a close is an error."""
        while True:
            kind, _, payload = self.recv_frame()
            if kind != 1:
                continue
            ids = struct.unpack(">HH", payload[:4])
            if ids == (class_id, method_id):
                return payload
            if ids in ((10, 50), (20, 40)):
                code = struct.unpack(">H", payload[4:6])[0]
                text = payload[7:7 + payload[6]].decode()
                raise RuntimeError(f"closed: {code} {text}")

    def publish_frames(self, channel, queue, body):
        out = method(channel, 60, 40, b"\0\0" + shortstr("") + shortstr(queue) + b"\0")
        header = struct.pack(">HHQH", 60, 0, len(body), 0x1000) + b"\x02"  # delivery-mode 2
        out += frame(2, channel, header)
        step = self.frame_max - 8
        for i in range(0, len(body), step):
            out += frame(3, channel, body[i:i + step])
        return out


# ----- brokers ---------------------------------------------------------------------------------

def wait_port(port, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def start_broker(kind, port, fsync):
    """Returns (port, stop function)."""
    if kind == "warren":
        data = tempfile.mkdtemp(prefix="tx-bench-", dir=os.path.join(ROOT, "target"))
        proc = subprocess.Popen([os.path.join(ROOT, "target/release/warren"), "--listen",
                                 f"127.0.0.1:{port}", "--http", "127.0.0.1:0", "--prometheus", "127.0.0.1:0", "--data-dir", data, "--fsync", fsync],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def stop():
            proc.terminate()
            proc.wait(30)
            shutil.rmtree(data, ignore_errors=True)
    else:
        from compare import start_rabbit_node
        data, proc = start_rabbit_node("tx-bench-rmq-", port, f"txbench{port}@localhost",
                                       port + 20000)

        def stop():
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            shutil.rmtree(data, ignore_errors=True)
    if not wait_port(port, 90):
        stop()
        sys.exit(f"{kind} did not start on port {port}")
    return stop


# ----- the run ---------------------------------------------------------------------------------

def run(host, port, commits, messages, size, warmup):
    c = Client(host, port)
    ch = 1
    c.sock.sendall(method(ch, 20, 10, shortstr("")))
    c.expect(20, 11)
    queue = f"tx-bench-{os.getpid()}"
    c.sock.sendall(method(ch, 50, 10, b"\0\0" + shortstr(queue) + b"\x02" + struct.pack(">I", 0)))
    c.expect(50, 11)
    c.sock.sendall(method(ch, 90, 10))
    c.expect(90, 11)
    body = bytes(size)
    batch = b"".join(c.publish_frames(ch, queue, body) for _ in range(messages))
    batch += method(ch, 90, 20)
    latencies = []
    start = None
    for i in range(warmup + commits):
        if i == warmup:
            start = time.perf_counter()
        t0 = time.perf_counter()
        c.sock.sendall(batch)
        c.expect(90, 21)
        if i >= warmup:
            latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    c.sock.sendall(method(ch, 50, 10, b"\0\0" + shortstr(queue) + b"\x03" + struct.pack(">I", 0)))
    ok = c.expect(50, 11)
    n = ok[4]
    count = struct.unpack(">I", ok[5 + n:9 + n])[0]
    expected = (warmup + commits) * messages
    if count != expected:
        sys.exit(f"queue holds {count} messages, expected {expected}")
    c.sock.sendall(method(ch, 50, 40, b"\0\0" + shortstr(queue) + b"\0"))
    c.expect(50, 41)
    c.sock.close()
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    print(f"{commits} commits x {messages} persistent messages of {size} B in {elapsed:.2f} s: "
          f"{commits / elapsed:.0f} commits/s, {commits * messages / elapsed:.0f} msg/s; "
          f"commit latency ms p50 {pct(50):.2f} p99 {pct(99):.2f} max {latencies[-1] * 1000:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", choices=["warren", "rabbitmq"],
                    help="start this broker privately (else use the one on --port)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, help="default 5672, or 5698 with --broker")
    ap.add_argument("--fsync", default="always", help="Warren's --fsync (with --broker warren)")
    ap.add_argument("--commits", type=int, default=200)
    ap.add_argument("--messages", type=int, default=100, help="persistent messages per commit")
    ap.add_argument("--size", type=int, default=100, help="body bytes")
    ap.add_argument("--warmup", type=int, default=10, help="commits not measured")
    a = ap.parse_args()
    port = a.port or (5698 if a.broker else 5672)
    stop = start_broker(a.broker, port, a.fsync) if a.broker else None
    try:
        run(a.host, port, a.commits, a.messages, a.size, a.warmup)
    finally:
        if stop:
            stop()


if __name__ == "__main__":
    main()
