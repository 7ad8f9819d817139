#!/usr/bin/env python3
"""kill -9 crash campaign for Warren's queue features: message TTL, dead-lettering,
x-max-length (drop-head), priority queues and, if the broker has them, delayed messages.

Each cycle: load (a child process: publishers with confirms, consumers that ack, reject
and hold) -> kill -9 the broker at a random moment -> warren-dump --verify (and the
enqueue timestamps of ttl-src's records, read from the data dir) -> restart (timed until
the AMQP port accepts; in --double-kill of the cycles killed again 0-300 ms later, while
it expires and dead-letters what came due, and restarted) -> drain every queue and check
-> next cycle on the same broker and data dir. After the last cycle, one more load that
ends by itself, a graceful stop (SIGINT), restart and drain.

    python3 tools/crash_features.py [--broker target/release/warren] [--cycles 60]
        [--seed S] [--fsync always] [--work DIR] [--port P] [--json OUT]
        [--kill-min 0.3] [--kill-max 2.5] [--slack-ms 50] [--rate-scale 1.0]
        [--double-kill 0.2] [--no-delayed] [--stop-on-failure]

Topology (durable, declared by this driver; the default exchange routes everything):
    ttl-src  x-message-ttl T (200..2000 ms, re-drawn when the queue is redeclared after a
             drain), DLX "" / ttl-dlq; 30 % of its messages also carry their own
             `expiration` (0..3000 ms). A slow consumer (prefetch 1) runs part of the time
             and now and then holds a message until its channel closes (a requeue).
    rej-src  DLX "" / rej-dlq; a consumer rejects (requeue=false) part of what it gets and
             acks the rest.
    max-src  x-max-length N (drop-head), DLX "" / max-dlq; nobody consumes it.
    prio     x-max-priority 5; priorities None, 0..9; a consumer acks most, holds some
             (requeued when its channel closes), and runs part of the time.
    ttl-dlq, rej-dlq, max-dlq: one consumer acks what it gets, part of the time.
    delay-x / delay-q (only if `x-delayed-message` exchanges are accepted): x-delayed-type
             direct, x-delay 0..2000 ms; consumed with the DLQs.

Every message is persistent and carries its id (header x-cid and a JSON line at the head
of its body: id, source queue, publish time, queue TTL, own expiration, priority, delay,
padding length; the padding is SHAKE-256 of the id). The ledger (one append-only, fsync'd
file per thread of the load, a CRC per line) holds: P published (written before the
publish), C/N confirmed/nacked, A consumed and acked (written before the ack, with what
the consumer saw), J rejected (before the reject), D delivered and held (prio), H
delivered and held (ttl-src, with what the consumer saw).

Checks (failures):
  lost               a confirmed id found nowhere: not acked by a consumer before the kill
                     and not in its source queue or that queue's DLQ after the restart
  corrupt / unknown  body or header id wrong; an id never published
  misrouted          found in a queue other than its source or that source's DLQ
  expired_delivered  a message handed out by ttl-src (live to the prefetch-1 consumer;
                     after the restart to basic.get or a prefetch-1 basic.consume, drawn per
                     cycle) after its enqueue time + min(TTL, own expiration). When it was
                     handed out is bounded from below by the call that allowed it (the
                     basic.get, the basic.consume, or the previous ack under prefetch 1).
                     The enqueue time is the broker's own record timestamp where the record
                     was still on disk at the kill (tolerance 2 ms: it counts whole ms);
                     otherwise the publish time (earlier than the enqueue by the publish's
                     latency), and a lateness past --slack-ms fails only if it is also past
                     the confirm's arrival (by when the broker had enqueued it) + TTL; the
                     others are reported as expired_suspect
  expired_early      a ttl-dlq copy received before publish time + its TTL
  xdeath_bad         a dead-lettered copy without x-death[0] = {reason, queue: source,
                     count 1, exchange "", routing-keys [source]}, x-first-death-*, with an
                     expiration left, or without original-expiration = its own expiration;
                     or an original (in its source queue) carrying x-death
  prio_order         in the first read of `prio` after a restart, a message of higher
                     priority (min(p, 5)) after a lower one
  prio_fifo          within one priority, a message of one publisher before an earlier one
                     of it (among messages never delivered before)
  prio_property      priority property changed
  delay_early        a delayed message received before publish time + x-delay
  queue_missing      a durable queue gone after a restart
  dump               warren-dump --verify not clean, or it saw fewer segment files than
                     the data dir holds (its walk must include pNNN/ and delayed/)
Reported, not failures: duplicates (an id found more than once: a dead letter redone
after a crash, or an ack that did not reach the disk), by where the copies were; the worst
lateness (against the broker's timestamp and against the publish time); expired_suspect;
unconfirmed messages found; max-src over its limit at a restart (RabbitMQ drops the head
down to the limit when a queue starts: rabbit_amqqueue_process:init_max_length); the
delayed copies' x-delay not -delay; broker warnings.

Exit status: 0 pass, 1 a failure, 2 usage or setup error. Needs Python 3.9+ and pika.
"""

import argparse
import atexit
import collections
import hashlib
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib

import pika
import pika.exceptions

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)
MARKER = ".crash-features-workdir"

SOURCES = ("ttl-src", "rej-src", "max-src", "prio")
DLQ_OF = {"ttl-src": "ttl-dlq", "rej-src": "rej-dlq", "max-src": "max-dlq"}
REASON_OF = {"ttl-dlq": "expired", "rej-dlq": "rejected", "max-dlq": "maxlen"}
SRC_OF_DLQ = {v: k for k, v in DLQ_OF.items()}
MAX_PRIORITY = 5
DELAY_X, DELAY_Q = "delay-x", "delay-q"


def allowed_queues(src):
    return {src, DLQ_OF[src]} if src in DLQ_OF else {src}


# --------------------------------------------------------------------------------------
# Ledger: one append-only file per writer, one os.write per batch, CRC per line.


class Ledger:
    def __init__(self, path, fsync=True):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.fsync = fsync
        self.lock = threading.Lock()

    def write(self, recs):
        if not recs:
            return
        lines = []
        for r in recs:
            s = json.dumps(r, separators=(",", ":"))
            lines.append(f"{s} {zlib.crc32(s.encode()):08x}\n")
        data = memoryview("".join(lines).encode())
        with self.lock:
            while data:
                n = os.write(self.fd, data)
                data = data[n:]
            if self.fsync:
                os.fsync(self.fd)

    def close(self):
        os.close(self.fd)


def read_ledger_file(path):
    """(records, bad lines) of one ledger file."""
    recs, bad = [], 0
    with open(path, "rb") as f:
        data = f.read()
    for raw in data.split(b"\n"):
        if not raw:
            continue
        try:
            line, crc = raw.decode().rsplit(" ", 1)
            if int(crc, 16) != zlib.crc32(line.encode()):
                raise ValueError("crc")
            recs.append(json.loads(line))
        except (ValueError, UnicodeDecodeError):
            bad += 1
    return recs, bad


# --------------------------------------------------------------------------------------
# Messages


def padding(mid, n):
    return hashlib.shake_256(mid.encode()).digest(n)


def make_body(meta):
    head = b"CF1 " + json.dumps(meta, separators=(",", ":")).encode()
    return head + b"\n" + padding(meta["id"], meta["n"])


def _s(v):
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    return v


def facts(method, props, body):
    """What a reader saw of one message (JSON-able; checked by Audit.observe)."""
    f = {"ok": False, "id": None}
    body = bytes(body)
    head, sep, pad = body.partition(b"\n")
    try:
        if not head.startswith(b"CF1 ") or not sep:
            raise ValueError("bad magic")
        meta = json.loads(head[4:])
        f.update(meta)
        if pad != padding(meta["id"], meta["n"]):
            raise ValueError("padding differs")
        f["ok"] = True
    except (ValueError, KeyError, TypeError) as e:
        f["err"] = f"{type(e).__name__}: {e} (body {len(body)} B: {body[:60]!r})"
    h = props.headers or {}
    f["hid"] = _s(h.get("x-cid"))
    xd = h.get("x-death")
    if xd is not None:
        entries = []
        for e in xd if isinstance(xd, list) else []:
            if isinstance(e, dict):
                entries.append([_s(e.get("reason")), _s(e.get("queue")), e.get("count"),
                                _s(e.get("exchange")),
                                [_s(k) for k in (e.get("routing-keys") or [])],
                                _s(e.get("original-expiration"))])
            else:
                entries.append(repr(e))
        f["xd"] = entries
    if "x-first-death-reason" in h or "x-first-death-queue" in h:
        f["fd"] = [_s(h.get("x-first-death-reason")), _s(h.get("x-first-death-queue")),
                   _s(h.get("x-first-death-exchange"))]
    if "x-delay" in h:
        f["xdelay"] = h.get("x-delay")
    f["expp"] = props.expiration
    f["prip"] = props.priority
    f["mode"] = props.delivery_mode
    f["redel"] = bool(method.redelivered)
    return f


def effective_ttl(f):
    vals = [v for v in (f.get("ttl"), f.get("exp")) if v is not None]
    return min(vals) if vals else None


# --------------------------------------------------------------------------------------
# Load (runs in a child process that may be SIGKILLed at any moment)


def _params(port):
    return pika.ConnectionParameters(
        host="127.0.0.1", port=port, credentials=pika.PlainCredentials("guest", "guest"),
        heartbeat=0, connection_attempts=1, socket_timeout=5, stack_timeout=15,
        blocked_connection_timeout=30)


def connect(port, timeout=20.0):
    end = time.monotonic() + timeout
    while True:
        try:
            return pika.BlockingConnection(_params(port))
        except pika.exceptions.AMQPConnectionError:
            if time.monotonic() >= end:
                raise
            time.sleep(0.05)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = collections.Counter()
        self.errors = []

    def add(self, **kw):
        with self.lock:
            self.c.update(kw)

    def error(self, who, e):
        with self.lock:
            if len(self.errors) < 20:
                self.errors.append(f"{who}: {type(e).__name__}: {e}")


class Stream:
    """One publishing channel in confirm mode, rate-limited, a window of unconfirmed."""

    def __init__(self, name, exchange, rk, src, rate, window, rng, cycle, cfg):
        self.name, self.exchange, self.rk, self.src = name, exchange, rk, src
        self.rate, self.window, self.rng, self.cycle, self.cfg = rate, window, rng, cycle, cfg
        self.pending = collections.OrderedDict()  # delivery tag -> id
        self.tag = 0
        self.n = 0
        self.ch = None
        self.ready = False
        self.tokens = 1.0
        self.last = time.monotonic()

    def make(self):
        rng = self.rng
        mid = f"{self.cycle}.{self.name}.{self.n}"
        self.n += 1
        size = rng.randint(20_000, 200_000) if rng.random() < 0.03 else rng.randint(0, 1500)
        meta = {"id": mid, "q": self.src, "ttl": None, "exp": None, "p": None, "d": None,
                "n": size}
        props = {"delivery_mode": 2, "headers": {"x-cid": mid}}
        if self.src == "ttl-src":
            meta["ttl"] = self.cfg["ttl"]
            if rng.random() < 0.3:
                meta["exp"] = rng.choice([0, rng.randint(1, 50)]) if rng.random() < 0.1 \
                    else rng.randint(50, 3000)
                props["expiration"] = str(meta["exp"])
        elif self.src == "prio":
            p = rng.choice([None, 0, 1, 2, 3, 4, 5, 5, 6, 9])
            meta["p"] = p
            if p is not None:
                props["priority"] = p
        elif self.src == DELAY_Q:
            d = 0 if rng.random() < 0.1 else rng.randint(1, 2000)
            meta["d"] = d
            props["headers"]["x-delay"] = d
        return mid, meta, props


class Publisher:
    """All streams on one SelectConnection (one channel each)."""

    def __init__(self, port, led, streams, deadline, stop, stats):
        self.port, self.led, self.streams = port, led, streams
        self.deadline, self.stop, self.stats = deadline, stop, stats
        self.ready = threading.Event()
        self.closing = False
        self.conn = None

    def run(self):
        try:
            self.conn = pika.SelectConnection(
                _params(self.port), on_open_callback=self._on_open,
                on_open_error_callback=self._on_open_error, on_close_callback=self._on_closed)
            self.conn.ioloop.start()
        except Exception as e:  # noqa: BLE001 - the broker vanishes under us
            self.stats.error("publisher", e)
        finally:
            self.ready.set()
            self.stop.set()

    def _on_open_error(self, _conn, err):
        self.stats.error("publisher open", err)
        self.conn.ioloop.stop()

    def _on_closed(self, _conn, _reason):
        if not self.closing:
            self.stats.add(publisher_connection_lost=1)
        self.conn.ioloop.stop()

    def _on_open(self, conn):
        for s in self.streams:
            conn.channel(on_open_callback=lambda ch, s=s: self._on_channel(s, ch))

    def _on_channel(self, s, ch):
        s.ch = ch
        ch.confirm_delivery(ack_nack_callback=lambda fr, s=s: self._on_confirm(s, fr),
                            callback=lambda _fr, s=s: self._on_select_ok(s))

    def _on_select_ok(self, s):
        s.ready = True
        s.last = time.monotonic()
        if all(x.ready for x in self.streams):
            self.ready.set()
            self.conn.ioloop.call_later(0.01, self._tick)

    def _tick(self):
        if self.closing:
            return
        now = time.monotonic()
        if self.stop.is_set() or now >= self.deadline:
            if all(not s.pending for s in self.streams) or now >= self.deadline + 3 \
                    or self.stop.is_set():
                self.closing = True
                try:
                    self.conn.close()
                except Exception:  # noqa: BLE001
                    self.conn.ioloop.stop()
                return
        else:
            for s in self.streams:
                self._fill(s)
        self.conn.ioloop.call_later(0.01, self._tick)

    def _fill(self, s):
        if self.closing or s.ch is None or not s.ch.is_open or time.monotonic() >= self.deadline:
            return
        now = time.monotonic()
        s.tokens = min(s.tokens + (now - s.last) * s.rate, max(1.0, s.rate * 0.05))
        s.last = now
        k = min(s.window - len(s.pending), int(s.tokens))
        if k <= 0:
            return
        s.tokens -= k
        batch = [s.make() for _ in range(k)]
        # Written (and synced) before anything is published.
        self.led.write([["P", mid, meta] for mid, meta, _ in batch])
        for mid, meta, props in batch:
            meta["pub"] = round(time.time(), 6)  # as late as possible: an upper bound
            body = make_body(meta)
            s.tag += 1
            s.pending[s.tag] = mid
            s.ch.basic_publish(s.exchange, s.rk, body,
                               properties=pika.BasicProperties(**props))
        self.stats.add(published=k)

    def _on_confirm(self, s, frame):
        m = frame.method
        ok = isinstance(m, pika.spec.Basic.Ack)
        done = []
        if m.multiple:
            while s.pending:
                tag = next(iter(s.pending))
                if tag > m.delivery_tag:
                    break
                done.append(s.pending.popitem(last=False)[1])
        elif m.delivery_tag in s.pending:
            done.append(s.pending.pop(m.delivery_tag))
        t = round(time.time(), 6)
        self.led.write([["C" if ok else "N", mid, t] for mid in done])
        self.stats.add(**({"confirmed": len(done)} if ok else {"nacked": len(done)}))
        self._fill(s)


def _running(stop, deadline):
    return not stop.is_set() and time.monotonic() < deadline


def _idle(conn, seconds, stop, deadline):
    end = time.monotonic() + seconds
    while _running(stop, deadline) and time.monotonic() < end:
        conn.process_data_events(time_limit=0.05)


def ttl_consumer(port, led, rng, stop, deadline, stats):
    """Prefetch 1, acks each message after a little work: the broker cannot hand out the
    next before it has the ack, so the ack call's time bounds the next delivery from
    below (as does the basic.consume call's for the first)."""
    conn = connect(port)
    while _running(stop, deadline):
        ch = conn.channel()
        ch.basic_qos(prefetch_count=1)
        state = {"low": time.time(), "held": False}

        def cb(ch, m, p, b):
            t = round(time.time(), 6)
            if rng.random() < 0.05:
                # Held, then requeued by the channel's close: a requeued message in a TTL
                # queue. Nothing more comes on this channel (prefetch 1).
                led.write([["H", "ttl-src", t, state["low"], facts(m, p, b)]])
                state["held"] = True
                stats.add(ttl_held=1)
                return
            led.write([["A", "ttl-src", t, state["low"], facts(m, p, b)]])
            time.sleep(rng.uniform(0, 0.015))
            state["low"] = round(time.time(), 6)
            ch.basic_ack(m.delivery_tag)
            stats.add(ttl_consumed=1)

        state["low"] = round(time.time(), 6)
        ch.basic_consume("ttl-src", cb)
        end = time.monotonic() + rng.uniform(0.1, 0.8)
        while _running(stop, deadline) and time.monotonic() < end and not state["held"]:
            conn.process_data_events(time_limit=0.05)
        ch.close()
        _idle(conn, rng.uniform(0.2, 1.0), stop, deadline)
    conn.close()


def rej_consumer(port, led, rng, stop, deadline, stats):
    conn = connect(port)
    while _running(stop, deadline):
        ch = conn.channel()
        ch.basic_qos(prefetch_count=rng.choice([1, 10, 50]))
        p_rej = rng.uniform(0.3, 0.8)

        def cb(ch, m, p, b):
            t = round(time.time(), 6)
            f = facts(m, p, b)
            if rng.random() < p_rej:
                led.write([["J", "rej-src", t, f["id"]]])
                ch.basic_reject(m.delivery_tag, requeue=False)
                stats.add(rejected=1)
            else:
                led.write([["A", "rej-src", t, None, f]])
                ch.basic_ack(m.delivery_tag)
                stats.add(rej_acked=1)

        ch.basic_consume("rej-src", cb)
        _idle(conn, rng.uniform(0.3, 1.5), stop, deadline)
        ch.close()
        _idle(conn, rng.uniform(0.05, 0.5), stop, deadline)
    conn.close()


def batch_consumer(port, led, rng, stop, deadline, stats, queues):
    """The DLQs (and delay-q): acks in batches (ack multiple), each batch recorded first."""
    conn = connect(port)
    while _running(stop, deadline):
        ch = conn.channel()
        ch.basic_qos(prefetch_count=rng.choice([20, 100, 300]))
        batch = []

        def flush():
            if batch:
                led.write([["A", q, t, None, f] for q, t, f, _ in batch])
                ch.basic_ack(batch[-1][3], multiple=True)
                stats.add(dlq_acked=len(batch))
                batch.clear()

        tags = {}

        def cb(ch, m, p, b, batch=batch):
            batch.append((tags[m.consumer_tag], round(time.time(), 6), facts(m, p, b),
                          m.delivery_tag))
            if len(batch) >= 50:
                flush()

        for q in queues:
            tags[ch.basic_consume(q, cb)] = q
        end = time.monotonic() + rng.uniform(0.3, 1.5)
        while _running(stop, deadline) and time.monotonic() < end:
            conn.process_data_events(time_limit=0.03)
            flush()
        flush()
        ch.close()
        _idle(conn, rng.uniform(0.1, 1.0), stop, deadline)
    conn.close()


def prio_consumer(port, led, rng, stop, deadline, stats):
    conn = connect(port)
    while _running(stop, deadline):
        ch = conn.channel()
        ch.basic_qos(prefetch_count=rng.choice([1, 5, 20]))

        def cb(ch, m, p, b):
            t = round(time.time(), 6)
            f = facts(m, p, b)
            if rng.random() < 0.8:
                led.write([["A", "prio", t, None, f]])
                ch.basic_ack(m.delivery_tag)
                stats.add(prio_acked=1)
            else:
                led.write([["D", "prio", t, f["id"]]])  # held until the channel closes
                stats.add(prio_held=1)

        ch.basic_consume("prio", cb)
        _idle(conn, rng.uniform(0.05, 0.4), stop, deadline)
        ch.close()
        _idle(conn, rng.uniform(0.3, 1.2), stop, deadline)
    conn.close()


def _guard(name, fn, stats, *args):
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - the broker is killed under us
        if not isinstance(e, (pika.exceptions.AMQPConnectionError,
                              pika.exceptions.ChannelWrongStateError,
                              pika.exceptions.ConnectionWrongStateError)):
            stats.error(name, e)


def run_load(port, ledger_dir, cycle, cfg, seed, seconds, ready=None, fsync=True):
    """Publish and consume until `seconds` pass or the broker goes away."""
    stats = Stats()
    stop = threading.Event()
    deadline = time.monotonic() + seconds
    rs = cfg["rate_scale"]

    def rng(name):
        return random.Random(f"{seed}/{cycle}/{name}")

    def led(name):
        return Ledger(os.path.join(ledger_dir, f"{cycle:05d}-{name}.log"), fsync=fsync)

    streams = [
        Stream("ttl", "", "ttl-src", "ttl-src", 250 * rs, 16, rng("ttl"), cycle, cfg),
        Stream("rej", "", "rej-src", "rej-src", 300 * rs, 32, rng("rej"), cycle, cfg),
        Stream("max", "", "max-src", "max-src", 300 * rs, 32, rng("max"), cycle, cfg),
        Stream("prio", "", "prio", "prio", 400 * rs, 32, rng("prio"), cycle, cfg),
    ]
    batch_queues = ["ttl-dlq", "rej-dlq", "max-dlq"]
    if cfg["delayed"]:
        streams.append(Stream("delay", DELAY_X, DELAY_Q, DELAY_Q, 120 * rs, 32, rng("delay"),
                              cycle, cfg))
        batch_queues.append(DELAY_Q)
    pub = Publisher(port, led("pub"), streams, deadline, stop, stats)
    threads = [threading.Thread(target=pub.run, daemon=True, name="pub")]
    for name, fn, extra in (("ttl", ttl_consumer, ()), ("rej", rej_consumer, ()),
                            ("dlq", batch_consumer, (batch_queues,)),
                            ("prioc", prio_consumer, ())):
        threads.append(threading.Thread(
            target=_guard, daemon=True, name=name,
            args=(name, fn, stats, port, led(name), rng(name + "-c"), stop, deadline, stats,
                  *extra)))
    for t in threads:
        t.start()
    pub.ready.wait(15)
    if ready:
        ready()
    while threads[0].is_alive():
        threads[0].join(0.05)
    stop.set()
    for t in threads:
        t.join(5)
    out = dict(stats.c)
    out["errors"] = stats.errors
    return out


def load_child(port, ledger_dir, cycle, cfg, seed, seconds, ready, fsync, result_path):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        out = run_load(port, ledger_dir, cycle, cfg, seed, seconds, ready=ready.set,
                       fsync=fsync)
        with open(result_path, "w") as f:
            json.dump(out, f)
    finally:
        ready.set()


# --------------------------------------------------------------------------------------
# Broker


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, path, port, data_dir, fsync, extra, log_path):
        self.path, self.port, self.data_dir, self.fsync = path, port, data_dir, fsync
        self.extra, self.log_path = extra, log_path
        self.proc = None
        self.spawned_at = 0.0
        self.starts = 0

    def start(self):
        assert self.proc is None
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"=== start {self.starts} ===\n".encode())
            log.flush()
            args = [self.path, "--listen", f"127.0.0.1:{self.port}", "--http", "127.0.0.1:0", "--prometheus", "127.0.0.1:0", "--data-dir",
                    self.data_dir, "--fsync", self.fsync] + self.extra
            self.spawned_at = time.monotonic()
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)

    def wait_ready(self, timeout=120.0):
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return time.monotonic() - self.spawned_at
            except OSError:
                pass
            if time.monotonic() - self.spawned_at > timeout:
                raise RuntimeError(f"broker not accepting after {timeout} s")
            time.sleep(0.002)

    def signal(self, sig, wait=30.0):
        if self.proc is None:
            return None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            rc = self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            rc = self.proc.wait()
        self.proc = None
        return rc

    def kill9(self):
        return self.signal(signal.SIGKILL)


EXPECTED_LOG = ("unknown exchange type 'x-delayed-message'",)


def broker_warnings(log_path):
    out = []
    with open(log_path, "rb") as f:
        for raw in f:
            line = raw.decode(errors="replace").rstrip("\n")
            if (" WARN " in line or " ERROR " in line or "panicked" in line) and not any(
                    e in line for e in EXPECTED_LOG):
                out.append(line)
    return out


SEG_NAME = re.compile(r"^\d{20}\.seg$")


def run_dump(dump, data_dir, work, label):
    """(ok, info): warren-dump --verify is clean and saw every segment file on disk."""
    on_disk, prio_segs = 0, 0
    for root, _dirs, files in os.walk(data_dir):
        n = sum(1 for x in files if SEG_NAME.match(x))
        on_disk += n
        if re.search(r"/p\d{3}$", root):
            prio_segs += n
    d = subprocess.run([dump, data_dir, "--verify"], capture_output=True, timeout=300)
    text = (d.stdout + d.stderr).decode(errors="replace")
    m = re.search(r"(\d+) segments?, (\d+) records?", text)
    seen = int(m.group(1)) if m else None
    ok = d.returncode == 0 and seen is not None and seen >= on_disk
    info = {"rc": d.returncode, "segments_seen": seen, "segments_on_disk": on_disk,
            "priority_segments": prio_segs}
    if not ok:
        with open(os.path.join(work, f"dump-{label}.txt"), "w") as f:
            f.write(text)
    return ok, info


ID_IN_BODY = re.compile(rb'CF1 \{"id":"([^"]+)"')


def enqueue_times(dump, data_dir, queue, keep=None):
    """{id: the record's timestamp (ms)} for every record still in `queue`'s log, live or
    acked (warren-dump --records --json gives where each record is; its payload starts
    32 bytes in)."""
    try:
        with open(os.path.join(data_dir, "definitions.toml")) as f:
            defs = f.read()
    except OSError:
        return {}
    m = re.search(r'name = "%s"\s+id = (\d+)' % re.escape(queue), defs)
    if not m:
        return {}
    qdir = os.path.join(data_dir, "queues", f"q{int(m.group(1)):08d}")
    if not os.path.isdir(qdir):
        return {}
    d = subprocess.run([dump, qdir, "--records", "--json"], capture_output=True, timeout=300)
    out = {}
    kept = []
    files = {}
    try:
        for line in d.stdout.splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("type") != "record":
                continue
            fh = files.get(r["file"])
            if fh is None:
                fh = files[r["file"]] = open(r["file"], "rb")
            fh.seek(r["offset"] + 32)
            hit = ID_IN_BODY.search(fh.read(r["length"]))
            r["id"] = hit.group(1).decode() if hit else None
            kept.append(r)
            if hit:
                out[r["id"]] = r["timestamp"]
    finally:
        for fh in files.values():
            fh.close()
    if keep:
        with open(keep, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
    return out


# --------------------------------------------------------------------------------------
# Topology


def queue_args(name, cfg):
    if name == "ttl-src":
        return {"x-message-ttl": cfg["ttl"], "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": "ttl-dlq"}
    if name == "rej-src":
        return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "rej-dlq"}
    if name == "max-src":
        return {"x-max-length": cfg["maxlen"], "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": "max-dlq"}
    if name == "prio":
        return {"x-max-priority": MAX_PRIORITY}
    return None


def all_queues(cfg):
    qs = list(SOURCES) + list(DLQ_OF.values())
    if cfg["delayed"]:
        qs.append(DELAY_Q)
    return qs


def declare_topology(conn, cfg):
    ch = conn.channel()
    for q in all_queues(cfg):
        ch.queue_declare(q, durable=True, arguments=queue_args(q, cfg))
    if cfg["delayed"]:
        ch.exchange_declare(DELAY_X, "x-delayed-message", durable=True,
                            arguments={"x-delayed-type": "direct"})
        ch.queue_bind(DELAY_Q, DELAY_X, DELAY_Q)
    ch.close()


def probe_delayed(port):
    """True if the broker accepts an x-delayed-message exchange."""
    conn = connect(port)
    try:
        ch = conn.channel()
        ch.exchange_declare(DELAY_X, "x-delayed-message", durable=True,
                            arguments={"x-delayed-type": "direct"})
        ok = True
    except pika.exceptions.AMQPError as e:
        code = getattr(e, "reply_code", None)
        if code not in (503, 406, 404):
            raise
        ok = False
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass
    return ok


# --------------------------------------------------------------------------------------
# Audit: the checks


FAILURE_KEYS = ("lost", "corrupt", "unknown_id", "misrouted", "not_persistent",
                "expired_delivered", "expired_early", "xdeath_bad", "prio_order", "prio_fifo",
                "prio_property", "delay_early", "queue_missing", "dump_failures",
                "broker_failures", "drain_errors")


class Audit:
    def __init__(self, slack, sample=20):
        self.slack = slack
        self.sample = sample
        self.meta = {}            # id -> published meta
        self.confirmed = {}       # id -> time the confirm was received
        self.nacked = set()
        self.seen = collections.Counter()
        self.where = collections.defaultdict(list)
        self.unfound = set()      # confirmed, not seen yet
        self.lost = set()
        self.delivered = set()    # ids ever handed to a reader
        self.t = collections.Counter()
        self.dup_kinds = collections.Counter()
        self.samples = collections.defaultdict(list)
        self.worst = {}
        self.bad_lines = 0
        self.offsets = {}
        self.enq = {}             # id -> enqueue time in ttl-src (ms), from the data dir

    def fail(self, key, detail):
        self.t[key] += 1
        if len(self.samples[key]) < self.sample:
            self.samples[key].append(detail)

    # -- ledger

    def read_ledgers(self, ledger_dir):
        """Reads what the load wrote since the last call (the load is not running)."""
        recs = []
        for name in sorted(os.listdir(ledger_dir)):
            path = os.path.join(ledger_dir, name)
            if name in self.offsets or name.startswith("drain-"):
                continue
            r, bad = read_ledger_file(path)
            self.offsets[name] = True
            self.bad_lines += bad
            recs.extend(r)
        # Published before confirmed before consumed (files are per writer).
        order = {"P": 0, "C": 1, "N": 1, "J": 2, "D": 2, "H": 2, "A": 3}
        recs.sort(key=lambda r: order.get(r[0], 9))
        counts = collections.Counter()
        for r in recs:
            k = r[0]
            counts[k] += 1
            if k == "P":
                self.meta[r[1]] = r[2]
            elif k == "C":
                self.confirmed[r[1]] = r[2]
                if self.seen[r[1]] == 0 and r[1] not in self.lost:
                    self.unfound.add(r[1])
            elif k == "N":
                self.nacked.add(r[1])
            elif k in ("D", "J"):
                self.delivered.add(r[3])
            elif k in ("A", "H"):
                _, where, t_recv, t_low, f = r
                self.observe(f, where, "consumer" if k == "A" else "consumer-held", t_recv,
                             t_low, live=True, found=k == "A")
        return counts

    # -- one message read by a consumer (before the kill) or the drain (after it)

    def observe(self, f, where, how, t_recv, t_low, live, found=True):
        """Checks one delivery; `found` (the reader acked it) counts it as found."""
        mid = f.get("id")
        if not f.get("ok"):
            self.fail("corrupt", {"where": where, "how": how, "id": mid, "err": f.get("err")})
            if mid is None:
                return
        if f.get("hid") != mid:
            self.fail("corrupt", {"where": where, "id": mid, "err": f"header x-cid {f.get('hid')}"})
        if mid not in self.meta:
            self.fail("unknown_id", {"where": where, "how": how, "id": mid})
            return
        self.delivered.add(mid)
        if found:
            self.seen[mid] += 1
            self.where[mid].append(where)
            self.unfound.discard(mid)
            if self.seen[mid] > 1:
                self.t["duplicates"] += 1
                self.dup_kinds["+".join(sorted(self.where[mid]))] += 1
            elif mid not in self.confirmed:
                self.t["unconfirmed_found"] += 1
            if mid in self.lost:
                self.t["found_after_lost"] += 1
        src = self.meta[mid]["q"]
        if where not in allowed_queues(src):
            self.fail("misrouted", {"id": mid, "source": src, "found_in": where, "how": how})
        if f.get("mode") != 2:
            self.fail("not_persistent", {"id": mid, "where": where, "mode": f.get("mode")})
        if where in REASON_OF:
            self._check_dead_letter(f, mid, where, src, t_recv, how)
        elif f.get("xd") is not None or f.get("fd") is not None:
            self.fail("xdeath_bad", {"id": mid, "where": where, "how": how,
                                     "err": "x-death on an original", "xd": f.get("xd")})
        if where == "ttl-src" and t_low is not None and f.get("ok"):
            self._check_expiry(f, mid, t_low, live, how)
        if where == "prio" and f.get("prip") != f.get("p"):
            self.fail("prio_property", {"id": mid, "published": f.get("p"),
                                        "got": f.get("prip")})
        if where == DELAY_Q and f.get("ok") and f.get("d") is not None:
            due = f["pub"] + f["d"] / 1000
            if t_recv < due - 0.002:
                self.fail("delay_early", {"id": mid, "early_ms": round((due - t_recv) * 1000, 1),
                                          "how": how})
            if f["d"] > 0 and f.get("xdelay") != -f["d"]:
                self.t["x_delay_header_unexpected"] += 1
                if len(self.samples["x_delay_header"]) < self.sample:
                    self.samples["x_delay_header"].append({"id": mid, "x-delay": f.get("xdelay")})

    def _check_dead_letter(self, f, mid, where, src, t_recv, how):
        want_reason, want_queue = REASON_OF[where], SRC_OF_DLQ[where]
        errs = []
        xd = f.get("xd")
        if not xd:
            errs.append("no x-death")
        else:
            e = xd[0]
            if not isinstance(e, list):
                errs.append(f"x-death[0] not a table: {e}")
            else:
                reason, queue, count, exchange, rks, orig = e
                if reason != want_reason or queue != want_queue:
                    errs.append(f"x-death[0] reason {reason} queue {queue}")
                if count != 1:
                    errs.append(f"count {count}")
                if exchange != "":
                    errs.append(f"exchange {exchange!r}")
                if rks != [src]:
                    errs.append(f"routing-keys {rks}")
                want_orig = None if f.get("exp") is None else str(f["exp"])
                if orig != want_orig:
                    errs.append(f"original-expiration {orig!r}, own expiration {want_orig!r}")
            if len(xd) != 1:
                errs.append(f"{len(xd)} x-death entries")
        if f.get("fd") != [want_reason, want_queue, ""]:
            errs.append(f"x-first-death {f.get('fd')}")
        if f.get("expp") is not None:
            errs.append(f"expiration property {f.get('expp')!r} kept")
        if errs:
            self.fail("xdeath_bad", {"id": mid, "where": where, "how": how, "errs": errs})
        if where == "ttl-dlq" and f.get("ok"):
            ttl = effective_ttl(f)
            if ttl is not None and t_recv < f["pub"] + ttl / 1000 - 0.002:
                self.fail("expired_early", {"id": mid, "ttl": ttl, "how": how,
                                            "early_ms": round((f["pub"] + ttl / 1000 - t_recv)
                                                              * 1000, 1)})

    def _worst(self, key, late, mid):
        ms = round(late * 1000, 1)
        if self.worst.get(key + "_ms") is None or ms > self.worst[key + "_ms"]:
            self.worst[key + "_ms"] = ms
            self.worst[key + "_id"] = mid

    def _check_expiry(self, f, mid, t_low, live, how):
        """Expired if handed out after its enqueue time + min(TTL, own expiration). The
        enqueue time is the broker's own (the record's timestamp, read from the data dir
        at the kill) where known: then 2 ms of tolerance (the broker counts whole ms).
        Otherwise the publish time (earlier than the enqueue by the publish's latency) with
        --slack-ms, and only a lateness that is past the confirm's arrival (an upper bound
        of the enqueue) + TTL is a failure; the rest are reported as suspects."""
        ttl = effective_ttl(f)
        if ttl is None:
            return
        key = "live" if live else "restart"
        late = t_low - (f["pub"] + ttl / 1000)
        self._worst(f"late_{key}", late, mid)
        detail = {"id": mid, "how": how, "after_restart": not live, "ttl": f.get("ttl"),
                  "own_expiration": f.get("exp"), "late_vs_publish_ms": round(late * 1000, 1)}
        enq = self.enq.get(mid)
        if enq is None and not live:
            # Read after the restart, so its record was in ttl-src's log at the kill.
            self.t["enqueue_time_not_found"] += 1
            if len(self.samples["enqueue_time_not_found"]) < self.sample:
                self.samples["enqueue_time_not_found"].append({"id": mid, "how": how})
        if enq is not None:
            self.t["expiry_checked_by_broker_timestamp"] += 1
            late_b = t_low - (enq + ttl) / 1000
            self._worst(f"late_broker_{key}", late_b, mid)
            if late_b > 0.002:
                detail.update(basis="broker timestamp", enqueued_ms=enq,
                              late_ms=round(late_b * 1000, 1))
                self.fail("expired_delivered", detail)
            elif late > self.slack:
                self.t["late_vs_publish_explained"] += 1
            return
        self.t["expiry_checked_by_publish_time"] += 1
        if late > self.slack:
            conf = self.confirmed.get(mid)
            if conf is not None and t_low > conf + ttl / 1000 + 0.002:
                detail.update(basis="confirm arrival",
                              late_ms=round((t_low - conf - ttl / 1000) * 1000, 1))
                self.fail("expired_delivered", detail)
            else:
                self.t["expired_suspect"] += 1
                if len(self.samples["expired_suspect"]) < self.sample:
                    self.samples["expired_suspect"].append(detail)

    def settle_cycle(self, label):
        """After a full drain: every confirmed id not found by now is lost."""
        newly = sorted(self.unfound)
        for mid in newly:
            m = self.meta.get(mid, {})
            self.fail("lost", {"cycle": label, "id": mid, "source": m.get("q"),
                               "confirmed_at": self.confirmed.get(mid)})
        self.lost.update(newly)
        self.unfound.clear()
        return len(newly)


# --------------------------------------------------------------------------------------
# Drain (after a restart, no other clients)


def get_all(conn, q):
    """basic.get until empty; the time before each call bounds its delivery from below."""
    ch = conn.channel()
    out = []
    while True:
        t0 = round(time.time(), 6)
        m, p, b = ch.basic_get(q, auto_ack=False)
        if m is None:
            break
        out.append((facts(m, p, b), t0, round(time.time(), 6), m.delivery_tag))
    return ch, out


def consume_one_by_one(conn, q, idle_quit=0.3):
    """basic.consume with prefetch 1, acking each message before the next can come: the
    basic.consume call's time, then each ack call's, bounds the next delivery from below
    (the dispatch path, where get_all takes basic.get's)."""
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1)
    out = []
    state = {"low": 0.0, "last": time.monotonic()}

    def cb(ch, m, p, b):
        out.append((facts(m, p, b), state["low"], round(time.time(), 6), m.delivery_tag))
        state["low"] = round(time.time(), 6)
        ch.basic_ack(m.delivery_tag)
        state["last"] = time.monotonic()

    state["low"] = round(time.time(), 6)
    tag = ch.basic_consume(q, cb)
    while time.monotonic() - state["last"] < idle_quit:
        conn.process_data_events(time_limit=0.02)
    ch.basic_cancel(tag)
    return ch, out


def consume_all(conn, q, idle_quit=1.0):
    """basic.consume (prefetch unlimited) until the queue's count is read and it is quiet."""
    ch = conn.channel()
    count = ch.queue_declare(q, passive=True).method.message_count
    out = []
    if count == 0:
        return ch, out, count
    last = [time.monotonic()]

    def cb(_ch, m, p, b):
        out.append((facts(m, p, b), None, round(time.time(), 6), m.delivery_tag))
        last[0] = time.monotonic()

    ch.basic_qos(prefetch_count=0)
    tag = ch.basic_consume(q, cb)
    while True:
        conn.process_data_events(time_limit=0.02)
        idle = time.monotonic() - last[0]
        if (len(out) >= count and idle >= 0.05) or idle >= idle_quit:
            break
    if out:
        ch.basic_ack(out[-1][3], multiple=True)
    ch.basic_cancel(tag)
    return ch, out, count


def drain(port, audit, cfg, ledger_dir, label, delay_due=0.0, ttl_by_get=True):
    """Reads every queue empty (sources first, then DLQs, repeated until a pass finds
    nothing) and checks each message; returns a summary."""
    res = collections.Counter()
    led = Ledger(os.path.join(ledger_dir, f"drain-{label}.log"), fsync=False)
    conn = connect(port)
    try:
        ch = conn.channel()
        for q in all_queues(cfg):
            try:
                n = ch.queue_declare(q, passive=True).method.message_count
                res[f"ready_{q}"] = n
            except pika.exceptions.ChannelClosedByBroker as e:
                audit.fail("queue_missing", {"cycle": label, "queue": q, "error": str(e)})
                ch = conn.channel()
        if res["ready_max-src"] > cfg["maxlen"]:
            audit.t["max_over_limit"] += 1
            audit.samples["max_over_limit"].append(
                {"cycle": label, "count": res["ready_max-src"], "limit": cfg["maxlen"]})
        first_prio = True
        for npass in range(60):
            got = 0
            if ttl_by_get:
                ch, items = get_all(conn, "ttl-src")
            else:
                ch, items = consume_one_by_one(conn, "ttl-src")
            how = "drain-get" if ttl_by_get else "drain-consume"
            led.write([["G", "ttl-src", t1, t0, f] for f, t0, t1, _ in items])
            for f, t0, t1, _ in items:
                audit.observe(f, "ttl-src", how, t1, t0, live=False)
            if items and ttl_by_get:
                ch.basic_ack(items[-1][3], multiple=True)
            ch.close()
            got += len(items)
            res["read_ttl-src"] += len(items)
            rest = ["rej-src", "max-src", "prio"] + (["delay-q"] if cfg["delayed"] else []) \
                + ["ttl-dlq", "rej-dlq", "max-dlq"]
            for q in rest:
                ch, items, _count = consume_all(conn, q)
                led.write([["G", q, t1, None, f] for f, _, t1, _ in items])
                if q == "prio" and first_prio and items:
                    check_prio_order(audit, [f for f, *_ in items], label)
                    first_prio = False
                for f, _t0, t1, _ in items:
                    audit.observe(f, q, "drain", t1, None, live=False)
                ch.close()
                got += len(items)
                res[f"read_{q}"] += len(items)
            res["passes"] = npass + 1
            if got == 0:
                if time.time() >= delay_due + 0.5:
                    break
                time.sleep(0.1)  # delayed messages due soon: look again
        else:
            audit.fail("drain_errors", {"cycle": label, "err": "queues not empty after 60 passes"})
    except Exception as e:  # noqa: BLE001
        audit.fail("drain_errors", {"cycle": label, "err": f"{type(e).__name__}: {e}"})
        res["error"] = 1
    finally:
        led.close()
    return conn, res


def check_prio_order(audit, fs, label):
    """The first read of `prio` after a restart: priority never rises; within a priority,
    one publisher's messages (ids cycle.prio.n) come in publish order, among those never
    delivered before."""
    prev = None
    last_n = {}
    fifo_delivered = 0
    for f in fs:
        if not f.get("ok"):
            continue
        lvl = min(f.get("p") or 0, MAX_PRIORITY)
        if prev is not None and lvl > prev:
            audit.fail("prio_order", {"cycle": label, "id": f["id"], "priority": lvl,
                                      "after": prev})
        prev = lvl
        cyc, _, n = f["id"].split(".")
        key = (lvl, cyc)
        n = int(n)
        if key in last_n and n < last_n[key][0]:
            if f["id"] in audit.delivered or last_n[key][1] in audit.delivered:
                fifo_delivered += 1
            else:
                audit.fail("prio_fifo", {"cycle": label, "id": f["id"], "after": last_n[key][1],
                                         "priority": lvl})
        last_n[key] = (n, f["id"])
    audit.t["prio_fifo_among_delivered"] += fifo_delivered
    audit.t["prio_checked"] += len(fs)


# --------------------------------------------------------------------------------------
# Main


def main():
    ap = argparse.ArgumentParser(description="kill -9 crash campaign for Warren's queue features",
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__)
    ap.add_argument("--broker", default=os.path.join(REPO, "target", "release", "warren"))
    ap.add_argument("--cycles", type=int, default=60)
    ap.add_argument("--seed", type=int, default=None, help="default: from the clock (printed)")
    ap.add_argument("--fsync", default="always")
    ap.add_argument("--work", default=None, help="work dir (default: a new temp dir)")
    ap.add_argument("--port", type=int, default=0, help="0: pick a free port")
    ap.add_argument("--json", default=None, help="write per-cycle records and totals here")
    ap.add_argument("--kill-min", type=float, default=0.3, help="seconds after the load is up")
    ap.add_argument("--kill-max", type=float, default=2.5)
    ap.add_argument("--slack-ms", type=float, default=50.0,
                    help="clock slack for the expiry check (default 50)")
    ap.add_argument("--rate-scale", type=float, default=1.0,
                    help="scale the publish rates (msg/s per queue: ttl 250, rej 300, max 300, "
                         "prio 400, delay 120)")
    ap.add_argument("--double-kill", type=float, default=0.2,
                    help="probability of a second kill -9 0-300 ms after a restart (before "
                         "the drain); default 0.2")
    ap.add_argument("--no-ledger-fsync", action="store_true")
    ap.add_argument("--no-delayed", action="store_true",
                    help="leave delayed messages out even if the broker has them")
    ap.add_argument("--dump", default=None,
                    help="warren-dump binary (default: next to --broker; skipped if absent)")
    ap.add_argument("--broker-arg", action="append", default=[])
    ap.add_argument("--stop-on-failure", action="store_true")
    ap.add_argument("--no-final", action="store_true", help="skip the graceful-restart cycle")
    a = ap.parse_args()

    seed = a.seed if a.seed is not None else int(time.time()) % 1_000_000
    broker_path = os.path.abspath(a.broker)
    if not os.access(broker_path, os.X_OK):
        print(f"crash_features: {broker_path} is not executable", file=sys.stderr)
        return 2
    dump = a.dump or os.path.join(os.path.dirname(broker_path), "warren-dump")
    if not os.access(dump, os.X_OK):
        print(f"crash_features: no warren-dump at {dump}; dump checks skipped", file=sys.stderr)
        dump = None
    if a.work:
        work = os.path.abspath(a.work)
        os.makedirs(work, exist_ok=True)
        if os.listdir(work) and not os.path.exists(os.path.join(work, MARKER)):
            print(f"crash_features: {work} is not empty and not a crash_features work dir",
                  file=sys.stderr)
            return 2
        for sub in ("data", "ledger"):
            shutil.rmtree(os.path.join(work, sub), ignore_errors=True)
        for f in os.listdir(work):
            if f.startswith(("dump-", "load-", "ttl-src-records-")) or f == "broker.log":
                os.unlink(os.path.join(work, f))
    else:
        work = tempfile.mkdtemp(prefix="crash-features-")
    open(os.path.join(work, MARKER), "w").close()
    data_dir = os.path.join(work, "data")
    ledger_dir = os.path.join(work, "ledger")
    os.makedirs(ledger_dir, exist_ok=True)
    port = a.port or free_port()
    broker = Broker(broker_path, port, data_dir, a.fsync, a.broker_arg,
                    os.path.join(work, "broker.log"))
    ctx = multiprocessing.get_context("fork")
    child = {"p": None}

    def cleanup():
        p = child["p"]
        if p is not None and p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            p.join(5)
        broker.kill9()

    atexit.register(cleanup)

    def on_signal(signum, _frame):
        cleanup()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    rng = random.Random(seed)
    cfg = {"ttl": rng.randint(200, 2000), "maxlen": rng.choice([5, 20, 50, 200]),
           "rate_scale": a.rate_scale, "delayed": False}
    audit = Audit(a.slack_ms / 1000)
    records = []
    recovery_ms = []
    failed = False
    t_start = time.monotonic()

    broker.start()
    broker.wait_ready()
    delayed_supported = probe_delayed(port)
    cfg["delayed"] = delayed_supported and not a.no_delayed
    conn = connect(port)
    declare_topology(conn, cfg)
    conn.close()
    delayed_note = ("on" if cfg["delayed"] else
                    "off (--no-delayed)" if delayed_supported else
                    "SKIPPED: the broker refuses exchange type x-delayed-message")
    print(f"crash_features: broker {broker_path}, port {port}, fsync {a.fsync}, seed {seed}, "
          f"work {work}, kill at {a.kill_min}-{a.kill_max} s, ttl {cfg['ttl']} ms, "
          f"max-length {cfg['maxlen']}, delayed messages {delayed_note}", flush=True)

    def one_cycle(cycle, graceful):
        nonlocal failed
        t0 = time.monotonic()
        rec = {"cycle": cycle, "ttl": cfg["ttl"], "maxlen": cfg["maxlen"]}
        ready = ctx.Event()
        result_path = os.path.join(work, f"load-{cycle}.json")
        seconds = rng.uniform(0.8, 1.5) if graceful else a.kill_max + 10
        kill_after = rng.uniform(a.kill_min, a.kill_max)
        p = ctx.Process(target=load_child,
                        args=(port, ledger_dir, cycle, dict(cfg), seed, seconds, ready,
                              not a.no_ledger_fsync, result_path), daemon=True)
        child["p"] = p
        p.start()
        if not ready.wait(20):
            rec["load_not_ready"] = True
        if graceful:
            p.join(seconds + 15)
            rec["stop_rc"] = broker.signal(signal.SIGINT)
        else:
            time.sleep(kill_after)
            broker.kill9()
            rec["kill_after"] = round(kill_after, 3)
        rec["killed_at"] = time.time()
        p.join(1.0)
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            p.join(5)
        child["p"] = None
        try:
            with open(result_path) as f:
                rec["load"] = json.load(f)
        except (OSError, ValueError):
            rec["load"] = None
        if dump:
            ok, info = run_dump(dump, data_dir, work, str(cycle))
            rec["dump"] = info
            if not ok:
                audit.fail("dump_failures", {"cycle": cycle, **info})
            enq = enqueue_times(dump, data_dir, "ttl-src",
                                keep=os.path.join(work, f"ttl-src-records-{cycle % 3}.jsonl"))
            rec["ttl_src_records_on_disk"] = len(enq)
            audit.enq.update(enq)
        before = dict(audit.t)
        before_samples = {k: len(v) for k, v in audit.samples.items()}
        n_conf0 = len(audit.confirmed)
        counts = audit.read_ledgers(ledger_dir)
        rec.update(published=counts["P"], confirmed=counts["C"], nacked=counts["N"],
                   consumer_acked=counts["A"], rejected=counts["J"])
        audit.t["published"] += counts["P"]
        audit.t["confirmed"] += len(audit.confirmed) - n_conf0
        audit.t["nacked"] += counts["N"]
        audit.t["consumer_acked"] += counts["A"]
        audit.t["rejected"] += counts["J"]
        broker.start()
        try:
            rt = broker.wait_ready()
        except RuntimeError as e:
            audit.fail("broker_failures", {"cycle": cycle, "error": str(e)})
            print(f"cycle {cycle}: BROKER DID NOT COME BACK: {e}", flush=True)
            failed = True
            return None
        recovery_ms.append(rt * 1000)
        rec["recovery_ms"] = round(rt * 1000, 1)
        if not graceful and rng.random() < a.double_kill:
            # A second kill soon after the restart, while the recovered broker expires
            # and dead-letters what came due while it was down (or fires delayed ones).
            after = rng.uniform(0.0, 0.3)
            time.sleep(after)
            broker.kill9()
            rec["second_kill_after"] = round(after, 3)
            if dump:
                ok, info = run_dump(dump, data_dir, work, f"{cycle}b")
                rec["dump2"] = info
                if not ok:
                    audit.fail("dump_failures", {"cycle": f"{cycle}b", **info})
            broker.start()
            try:
                rt = broker.wait_ready()
            except RuntimeError as e:
                audit.fail("broker_failures", {"cycle": f"{cycle}b", "error": str(e)})
                print(f"cycle {cycle}: BROKER DID NOT COME BACK: {e}", flush=True)
                failed = True
                return None
            recovery_ms.append(rt * 1000)
        # Every delayed message of this cycle is due by the kill + 2 s (x-delay <= 2000).
        delay_due = rec["killed_at"] + 2.0 if cfg["delayed"] else 0.0
        by_get = rng.random() < 0.5
        rec["ttl_drain"] = "basic.get" if by_get else "basic.consume prefetch 1"
        conn, res = drain(port, audit, cfg, ledger_dir, str(cycle), delay_due, by_get)
        rec["drain"] = dict(res)
        lost = audit.settle_cycle(cycle)
        # Next cycle's topology: sometimes a fresh ttl-src with another TTL, or max-src
        # with another limit (both are empty now).
        try:
            ch = conn.channel()
            if rng.random() < 0.3:
                ch.queue_delete("ttl-src")
                cfg["ttl"] = rng.randint(200, 2000)
            if rng.random() < 0.15:
                ch.queue_delete("max-src")
                cfg["maxlen"] = rng.choice([5, 20, 50, 200])
            ch.close()
            declare_topology(conn, cfg)
            conn.close()
        except Exception as e:  # noqa: BLE001
            audit.fail("drain_errors", {"cycle": cycle, "err": f"redeclare: {e}"})
        delta = {k: audit.t[k] - before.get(k, 0) for k in audit.t}
        rec["delta"] = {k: v for k, v in delta.items() if v}
        bad = {k: delta.get(k, 0) for k in FAILURE_KEYS if delta.get(k, 0)}
        if bad:
            failed = True
            print(f"cycle {cycle}: FAILURE {json.dumps(bad, sort_keys=True)} "
                  f"{json.dumps({k: audit.samples[k][before_samples.get(k, 0):][:3] for k in bad}, default=str)}",
                  flush=True)
        rec["seconds"] = round(time.monotonic() - t0, 2)
        records.append(rec)
        d = rec.get("dump") or {}
        how = f"SIGINT rc={rec.get('stop_rc')}" if graceful else f"kill@{kill_after:.2f}s"
        if "second_kill_after" in rec:
            how += f"+restart+kill@{rec['second_kill_after']:.2f}s"
        print(f"cycle {cycle}{' (graceful)' if graceful else f'/{a.cycles}'} {how} "
              f"pub={counts['P']} conf={counts['C']} acked={counts['A']} rej={counts['J']} "
              f"dump={d.get('rc', '-')} segs={d.get('segments_seen', '-')}/"
              f"{d.get('segments_on_disk', '-')} recovery={rec['recovery_ms']:.0f}ms | "
              f"drained={sum(v for k, v in res.items() if k.startswith('read_'))} "
              f"lost={lost} dup={delta.get('duplicates', 0)} "
              f"expired_delivered={delta.get('expired_delivered', 0)} "
              f"xdeath_bad={delta.get('xdeath_bad', 0)} "
              f"prio_bad={delta.get('prio_order', 0) + delta.get('prio_fifo', 0)} "
              f"max_src={res.get('ready_max-src', '-')}/{rec['maxlen']} "
              f"| {rec['seconds']:.1f}s", flush=True)
        return rec

    try:
        for cycle in range(1, a.cycles + 1):
            if one_cycle(cycle, False) is None:
                break
            if failed and a.stop_on_failure:
                break
        if not a.no_final and not (failed and a.stop_on_failure) and broker.proc is not None:
            one_cycle(a.cycles + 1, True)
        broker.signal(signal.SIGINT)
    finally:
        cleanup()

    duration = time.monotonic() - t_start
    warnings = broker_warnings(broker.log_path)
    t = audit.t
    totals = {k: t.get(k, 0) for k in sorted(set(t) | set(FAILURE_KEYS))}
    totals.update(audit.worst)
    totals["cycles"] = len([r for r in records if r.get("kill_after") is not None])
    totals["ledger_bad_lines"] = audit.bad_lines
    totals["broker_warnings"] = len(warnings)
    totals["duplicate_kinds"] = dict(audit.dup_kinds)
    totals["recovery_ms_max"] = round(max(recovery_ms, default=0), 1)
    totals["seconds"] = round(duration, 1)
    totals["delayed"] = delayed_note
    if any(t.get(k, 0) for k in FAILURE_KEYS):
        failed = True
    print("crash_features: totals " + json.dumps(totals, sort_keys=True, default=str))
    w = audit.worst
    print(f"crash_features: {totals['cycles']} cycles in {duration:.0f} s, "
          f"{t['confirmed']} confirmed, lost {t['lost']}, duplicates {t['duplicates']} "
          f"{dict(audit.dup_kinds)}, expired delivered {t['expired_delivered']} "
          f"(checked {t['expiry_checked_by_broker_timestamp']} against the broker's enqueue "
          f"timestamp, worst {w.get('late_broker_restart_ms')} ms after restart / "
          f"{w.get('late_broker_live_ms')} ms live; {t['expiry_checked_by_publish_time']} "
          f"only against publish time, {t['expired_suspect']} of them past the "
          f"{a.slack_ms:g} ms slack, unproven; lateness against publish time over all, worst "
          f"{w.get('late_restart_ms')} ms after restart / {w.get('late_live_ms')} ms live), "
          f"expired early {t['expired_early']}, x-death bad "
          f"{t['xdeath_bad']}, prio order/fifo bad {t['prio_order']}/{t['prio_fifo']} "
          f"({t['prio_checked']} checked), misrouted {t['misrouted']}, corrupt "
          f"{t['corrupt']}, dump failures {t['dump_failures']}, max-src over its limit "
          f"after {t['max_over_limit']} restarts, delayed {delayed_note}")
    for k in FAILURE_KEYS + ("expired_suspect", "enqueue_time_not_found", "max_over_limit",
                             "x_delay_header"):
        for s in audit.samples.get(k, [])[:5]:
            print(f"crash_features: {k}: {json.dumps(s, default=str)}")
    for w in warnings[:10]:
        print(f"crash_features: broker warned: {w}")
    print(f"crash_features: {'FAIL' if failed else 'PASS'} (seed {seed}, work dir {work})",
          flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"config": {"broker": broker_path, "cycles": a.cycles, "seed": seed,
                                  "fsync": a.fsync, "kill_min": a.kill_min,
                                  "kill_max": a.kill_max, "slack_ms": a.slack_ms,
                                  "rate_scale": a.rate_scale, "port": port, "work": work},
                       "totals": totals, "samples": audit.samples,
                       "broker_warnings": warnings[:200], "cycles": records,
                       "pass": not failed}, f, indent=1, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
