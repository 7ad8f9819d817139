"""Deterministic AMQP workload, ledger and verifier for Warren crash campaigns.

Used by tools/crash_loop.py (kill -9 loop) and by the power-loss campaign. Needs Python 3.9+
and pika (`pip install pika`). Nothing here starts or kills a broker: the caller does.

Stable interface
----------------
Message bodies (every byte is a function of the message's id, so a verifier checks each
body byte for byte without storing it):

    body_for(queue_index, mid, size) -> bytes
        16-byte header, big-endian: b"WC" | queue index u16 | size u32 | message id u64,
        then size-16 bytes of SHAKE-256(header). size >= 40.
    check_body(body) -> (ok, queue_index, mid, reason)   # reason "" when ok
    pick_size(rng, max_size=None) -> int
        40 B .. 5 MB: many small, a band straddling 65,536, a band around frame_max
        (131,072), some multi-MB. A publisher's first message into a queue found empty at
        load start is, with probability 0.9, persistent and 65,000 B .. 2 MB (larger than
        the queue's 64 KiB first segment). With probability 0.3 a run leaves one queue
        without publishes (a drained queue then crosses a crash with a fully-acked head).
    queue_name(i) -> "crash.q<i>" (durable, default exchange, routing key = name)

Ledger (a directory on a real disk, append-only text files, one os.write per record so a
SIGKILLed writer loses at most the record being written; every line carries a CRC32 and a
torn line is ignored on reading):

    Ledger(path, load=True, fsync=False)
      writers  record_published(mid, q, persistent, size)
               record_confirms([(mid, acked_bool), ...])      # basic.ack / basic.nack
               record_delivered([(mid, redelivered_bool), ...])
               record_acks([mid, ...])      # written BEFORE the basic.ack is sent
               record_lost([mid, ...])      # verify: counted once, then no longer expected
               record_queues(n); next_run(kind) -> int
      state    (after refresh(), which reads what other processes appended since)
               meta: mid -> (q, persistent, size); confirmed, nacked, acked, delivered,
               lost: sets of mids; acked_at: mid -> time.time() of its last ack; outstanding: q -> set of mids confirmed persistent and
               neither acked nor already counted lost (what must be in queue q);
               nqueues

    run_load(port, ledger_dir, seconds, seed, queues=4, publishers=2, consumers=2,
             ready=None, ledger=None, max_size=None) -> dict
        Declares `queues` durable queues, runs `publishers` publisher-confirm connections
        (pipelined, ack/nack tracked per delivery tag, a mid goes into the ledger's
        confirmed file only on basic.ack) and `consumers` consumer connections that ack a
        part of what they get (the ack is recorded before it is sent), requeue some
        (basic.nack requeue / channel close) and hold the rest unacked, until `seconds`
        pass or the broker goes away. 75 % persistent (delivery_mode 2), 25 % transient.
        `ready()` is called once every publisher is in confirm mode. Meant to run in a
        child process that the caller may SIGKILL at any moment. Returns counters.

    verify(port, ledger_dir, seed=0, ledger=None, ...) -> dict
        For a freshly restarted broker with no other clients. Reads every message of every
        queue (manual ack, all held until the queue is read), then counts:
          lost               confirmed persistent, never acked, not present (each id is
                             counted once, then recorded lost)
          corrupted          body fails its digest, wrong queue, size or delivery_mode
                             differs from the ledger, or an id the ledger never published
          dup_in_pass        the same id more than once in one queue read
          duplicated         present although an ack for it was sent (allowed: an ack not
                             yet on disk comes back as a redelivery)
          transient_survived a delivery_mode 1 message present after a restart (Warren,
                             like RabbitMQ, drops transient messages at recovery)
          unconfirmed_present, redelivered, redelivered_missing (delivered before the
                             crash but redelivered=false: the delivery watermark is
                             written lazily), count_mismatch (passive declare's
                             message_count != messages read)
        Then, per queue: with probability delete_prob (0.25) ack everything and delete the queue
        (the next load declares it afresh, so a new queue's first record is exercised
        again), with drain_prob (0.15) ack everything and keep it, otherwise ack a random
        fraction (more if the backlog exceeds backlog_msgs / backlog_bytes) and requeue the
        rest, so backlogs carry over to the next crash. Acks are recorded in the ledger
        before they are sent. `ledger` may be a Ledger kept across calls (incremental).

CLI: python3 workload.py load --port P --ledger DIR --seconds S --seed N [--queues Q]
     python3 workload.py verify --port P --ledger DIR [--seed N]   (prints JSON)
"""

import argparse
import collections
import hashlib
import json
import random
import struct
import threading
import time

import pika
import pika.exceptions

from ledger import Ledger  # noqa: F401  (part of this module's interface)

__all__ = [
    "HEADER",
    "body_for",
    "check_body",
    "pick_size",
    "queue_name",
    "Ledger",
    "run_load",
    "verify",
]

HEADER = struct.Struct(">2sHIQ")  # magic, queue index, size, message id: 16 bytes
MAGIC = b"WC"
MIN_SIZE = 40
PERSISTENT_FRACTION = 0.75

# (weight, low, high) of body sizes in bytes.
SIZE_BANDS = [
    (25, 40, 256),
    (18, 256, 4096),
    (14, 4096, 65_000),
    (12, 65_000, 66_500),  # straddles 65,536 (the first segment) and a record's overhead
    (10, 66_500, 140_000),  # straddles frame_max 131,072
    (12, 140_000, 1_000_000),
    (7, 1_000_000, 2_000_000),
    (2, 2_000_000, 5_000_000),
]
# Sizes for the first message into an empty queue: larger than its 64 KiB first segment.
OVERSIZE_BAND = (65_000, 2_000_000)


def queue_name(i):
    return f"crash.q{i}"


def pick_size(rng, max_size=None):
    """A body size from SIZE_BANDS (bands above max_size are left out)."""
    bands = [(w, lo, min(hi, max_size) if max_size else hi) for w, lo, hi in SIZE_BANDS
             if not max_size or lo <= max_size]
    total = sum(w for w, _, _ in bands)
    r = rng.uniform(0, total)
    for w, lo, hi in bands:
        if r < w:
            return rng.randint(lo, hi)
        r -= w
    return bands[-1][2]


def body_for(q, mid, size):
    if size < MIN_SIZE:
        raise ValueError(f"size {size} < {MIN_SIZE}")
    head = HEADER.pack(MAGIC, q, size, mid)
    return head + hashlib.shake_256(head).digest(size - HEADER.size)


def check_body(body):
    """(ok, queue_index, mid, reason). queue_index/mid are None if the header is unusable."""
    body = bytes(body)
    if len(body) < HEADER.size:
        return False, None, None, f"short body ({len(body)} bytes)"
    magic, q, size, mid = HEADER.unpack_from(body)
    if magic != MAGIC:
        return False, None, None, f"bad magic {magic!r}"
    if size != len(body):
        return False, q, mid, f"length {len(body)} != header size {size}"
    want = hashlib.shake_256(body[: HEADER.size]).digest(size - HEADER.size)
    if body[HEADER.size :] != want:
        got = body[HEADER.size :]
        first = next(i for i in range(len(want)) if got[i] != want[i])
        return False, q, mid, f"content differs from byte {first + HEADER.size}"
    return True, q, mid, ""


def _params(port, host="127.0.0.1", socket_timeout=5.0):
    return pika.ConnectionParameters(
        host=host,
        port=port,
        credentials=pika.PlainCredentials("guest", "guest"),
        heartbeat=0,
        connection_attempts=1,
        socket_timeout=socket_timeout,
        stack_timeout=15,
        blocked_connection_timeout=30,
    )




# --------------------------------------------------------------------------------------
# Load


class _Stats:
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


class _Publisher:
    """One connection in confirm mode; up to `window` messages / `window_bytes` in flight."""

    def __init__(self, port, ledger, run, index, seed, nqueues, deadline, stop, stats,
                 first_oversize=(), window=48, window_bytes=12 << 20, max_size=None,
                 active=None):
        self.port = port
        self.ledger = ledger
        self.run_no = run
        self.index = index
        self.rng = random.Random(f"{seed}/{run}/pub{index}")
        self.nqueues = nqueues
        self.active = list(active) if active else list(range(nqueues))
        self.deadline = deadline
        self.stop = stop
        self.stats = stats
        self.first = list(first_oversize)  # queues to send an oversized first message to
        self.window = window
        self.window_bytes = window_bytes
        self.max_size = max_size
        self.pending = collections.OrderedDict()  # delivery tag -> (mid, size)
        self.inflight_bytes = 0
        self.tag = 0
        self.n = 0
        self.ready = threading.Event()
        self.closing = False
        self.conn = None
        self.ch = None

    def run(self):
        try:
            self.conn = pika.SelectConnection(
                _params(self.port),
                on_open_callback=self._on_open,
                on_open_error_callback=self._on_open_error,
                on_close_callback=self._on_closed,
            )
            self.conn.ioloop.start()
        except Exception as e:  # noqa: BLE001 - the broker may vanish at any point
            self.stats.error(f"publisher {self.index}", e)
        finally:
            self.ready.set()

    def _on_open_error(self, _conn, err):
        self.stats.error(f"publisher {self.index} open", err)
        self.conn.ioloop.stop()

    def _on_closed(self, _conn, reason):
        if not self.closing:
            self.stats.add(publisher_connection_lost=1)
        self.conn.ioloop.stop()

    def _on_channel_closed(self, _ch, reason):
        if not self.closing and not isinstance(reason, pika.exceptions.ConnectionClosed):
            self.stats.error(f"publisher {self.index} channel", reason)

    def _on_open(self, conn):
        conn.channel(on_open_callback=self._on_channel)

    def _on_channel(self, ch):
        self.ch = ch
        ch.add_on_close_callback(self._on_channel_closed)
        ch.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_select_ok)

    def _on_select_ok(self, _frame):
        self.ready.set()
        self._fill()
        self.conn.ioloop.call_later(0.05, self._tick)

    def _tick(self):
        if self.closing:
            return
        now = time.monotonic()
        if self.stop.is_set() or now >= self.deadline:
            # Stop publishing; give outstanding confirms a moment, then close.
            if not self.pending or now >= self.deadline + 2 or self.stop.is_set():
                self.closing = True
                try:
                    self.conn.close()
                except Exception:  # noqa: BLE001
                    self.conn.ioloop.stop()
                return
        else:
            self._fill()
        self.conn.ioloop.call_later(0.05, self._tick)

    def _fill(self):
        while (
            not self.closing
            and not self.stop.is_set()
            and time.monotonic() < self.deadline
            and len(self.pending) < self.window
            and self.inflight_bytes < self.window_bytes
            and self.ch is not None
            and self.ch.is_open
        ):
            self._publish_one()

    def _publish_one(self):
        rng = self.rng
        if self.first:
            # Persistent, so that losing it counts.
            q = self.first.pop(0)
            size = rng.randint(*OVERSIZE_BAND)
            persistent = True
        else:
            q = rng.choice(self.active)
            size = pick_size(rng, self.max_size)
            persistent = rng.random() < PERSISTENT_FRACTION
        mid = (self.run_no << 32) | (self.index << 26) | self.n
        self.n += 1
        body = body_for(q, mid, size)
        self.ledger.record_published(mid, q, persistent, size)
        self.tag += 1
        self.pending[self.tag] = (mid, size)
        self.inflight_bytes += size
        self.ch.basic_publish(
            "",
            queue_name(q),
            body,
            properties=pika.BasicProperties(delivery_mode=2 if persistent else 1),
        )
        self.stats.add(published=1, published_bytes=size)

    def _on_confirm(self, frame):
        m = frame.method
        ok = isinstance(m, pika.spec.Basic.Ack)
        done = []
        if m.multiple:
            while self.pending:
                tag = next(iter(self.pending))
                if tag > m.delivery_tag:
                    break
                done.append(self.pending.popitem(last=False)[1])
        elif m.delivery_tag in self.pending:
            done.append(self.pending.pop(m.delivery_tag))
        for _, size in done:
            self.inflight_bytes -= size
        self.ledger.record_confirms([(mid, ok) for mid, _ in done])
        self.stats.add(**({"confirmed": len(done)} if ok else {"nacked": len(done)}))
        self._fill()


def _consumer(port, ledger, run, index, seed, nqueues, deadline, stop, stats):
    rng = random.Random(f"{seed}/{run}/con{index}")
    who = f"consumer {index}"
    try:
        conn = pika.BlockingConnection(_params(port))
    except Exception as e:  # noqa: BLE001
        stats.error(who, e)
        return
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            ch = conn.channel()
            prefetch = rng.choice([1, 10, 50, 200])
            ack_p = rng.uniform(0.3, 0.85)
            ch.basic_qos(prefetch_count=prefetch)
            held = []
            state = {"recycle": False}

            def on_msg(ch, method, props, body):
                ok, q, mid, reason = check_body(body)
                if not ok:
                    stats.add(corrupted_live=1)
                    stats.error(who, ValueError(f"corrupt delivery mid={mid} q={q}: {reason}"))
                if mid is not None:
                    ledger.record_delivered([(mid, method.redelivered)])
                stats.add(delivered=1, redelivered=int(method.redelivered))
                r = rng.random()
                if r < ack_p and mid is not None:
                    ledger.record_acks([mid])
                    ch.basic_ack(method.delivery_tag)
                    stats.add(acked=1)
                elif r < ack_p + 0.05:
                    ch.basic_nack(method.delivery_tag, requeue=True)
                    stats.add(requeued=1)
                else:
                    held.append(method.delivery_tag)
                    stats.add(held=1)
                    if len(held) >= max(1, int(prefetch * 0.8)):
                        state["recycle"] = True

            queues = list(range(nqueues))
            rng.shuffle(queues)
            for q in queues[: rng.randint(1, nqueues)]:
                ch.basic_consume(queue_name(q), on_msg, auto_ack=False)
            while not stop.is_set() and time.monotonic() < deadline and not state["recycle"]:
                conn.process_data_events(time_limit=0.05)
            if rng.random() < 0.5 and held:
                # Requeue everything held with one multiple nack, then start over.
                ch.basic_nack(held[-1], multiple=True, requeue=True)
            ch.close()  # unacked messages go back to their queue
            stats.add(channel_cycles=1)
        conn.close()
    except Exception as e:  # noqa: BLE001 - the broker is killed under us
        if not isinstance(e, pika.exceptions.AMQPConnectionError):
            stats.error(who, e)


def _connect_blocking(port, timeout=20.0):
    end = time.monotonic() + timeout
    while True:
        try:
            return pika.BlockingConnection(_params(port))
        except pika.exceptions.AMQPConnectionError:
            if time.monotonic() >= end:
                raise
            time.sleep(0.05)


def run_load(port, ledger_dir, seconds, seed, queues=4, publishers=2, consumers=2,
             ready=None, ledger=None, max_size=None):
    """Publish and consume until `seconds` pass or the broker goes away. See module doc.
    max_size (optional) caps body sizes and disables the oversized first messages: a
    control run that stays clear of records larger than a queue's first segment."""
    led = ledger or Ledger(ledger_dir, load=False)
    run = led.next_run("load")
    led.record_queues(queues)
    stats = _Stats()
    stop = threading.Event()
    # Declare (idempotent) and note which queues are empty: their next record opens a fresh
    # segment, so publisher 0 sends each of them an oversized first message.
    conn = _connect_blocking(port)
    ch = conn.channel()
    empty = []
    for q in range(queues):
        ok = ch.queue_declare(queue_name(q), durable=True)
        if ok.method.message_count == 0:
            empty.append(q)
    conn.close()
    rng = random.Random(f"{seed}/{run}/load")
    oversize = [q for q in empty if rng.random() < 0.9]
    # Sometimes one queue gets no publishes this run: if it was drained, the crash finds
    # its write head fully acked, recovery drops it, and the next run's first record opens
    # a fresh segment (the "recovery left no segment files" case).
    active = list(range(queues))
    if queues > 1 and rng.random() < 0.3:
        idle = rng.randrange(queues)
        active.remove(idle)
        oversize = [q for q in oversize if q != idle]
    if max_size and max_size < OVERSIZE_BAND[0]:
        oversize = []
    deadline = time.monotonic() + seconds
    pubs = [
        _Publisher(port, led, run, i, seed, queues, deadline, stop, stats,
                   first_oversize=oversize if i == 0 else (), max_size=max_size,
                   active=active)
        for i in range(publishers)
    ]
    threads = [threading.Thread(target=p.run, daemon=True, name=f"pub{i}") for i, p in enumerate(pubs)]
    threads += [
        threading.Thread(
            target=_consumer,
            args=(port, led, run, i, seed, queues, deadline, stop, stats),
            daemon=True,
            name=f"con{i}",
        )
        for i in range(consumers)
    ]
    for t in threads:
        t.start()
    for p in pubs:
        p.ready.wait(15)
    if ready:
        ready()
    try:
        while time.monotonic() < deadline + 3 and any(t.is_alive() for t in threads[:publishers]):
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    out = dict(stats.c)
    out["run"] = run
    out["oversized_first"] = len(oversize)
    out["idle_queues"] = queues - len(active)
    out["errors"] = stats.errors
    return out


# --------------------------------------------------------------------------------------
# Verify


def _read_queues(conn, names, idle_after_count=0.15, idle_max=5.0, limit=180.0):
    """Every message of every queue in `names`, read in parallel (one channel each) and
    held unacked. Returns {name: (channel, [(tag, check_body(...), props, redelivered,
    size)], message_count)}; channel and count are None if the queue does not exist."""
    out = {}
    last = [time.monotonic()]
    for name in names:
        ch = conn.channel()
        try:
            ok = ch.queue_declare(name, passive=True)
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code == 404:
                out[name] = (None, [], None)
                continue
            raise
        got = []

        def on_msg(_ch, method, props, body, got=got):
            got.append((method.delivery_tag, check_body(body), props, method.redelivered,
                        len(body)))
            last[0] = time.monotonic()

        ch.basic_qos(prefetch_count=0)
        tag = ch.basic_consume(name, on_msg, auto_ack=False)
        out[name] = (ch, got, ok.method.message_count, tag)
    start = time.monotonic()
    last[0] = start
    live = [v for v in out.values() if v[0] is not None]
    while True:
        conn.process_data_events(time_limit=0.02)
        now = time.monotonic()
        idle = now - last[0]
        if all(len(v[1]) >= v[2] for v in live) and idle >= idle_after_count:
            break
        if idle >= idle_max or now - start >= limit:
            break
    for name, v in list(out.items()):
        if v[0] is not None:
            v[0].basic_cancel(v[3])
            out[name] = v[:3]
    return out


def verify(port, ledger_dir, seed=0, ledger=None, delete_prob=0.25, drain_prob=0.15,
           ack_range=(0.2, 0.7), backlog_msgs=300, backlog_bytes=8 << 20, sample=20):
    """Read and check every queue after a restart. See the module doc for the counters."""
    led = ledger or Ledger(ledger_dir)
    led.refresh()
    run = led.next_run("verify")
    rng = random.Random(f"{seed}/{run}/verify")
    res = collections.Counter()
    details = {"lost": [], "corrupt": [], "transient": [], "dup": [], "errors": [],
               "dup_ack_times": []}
    delivered_before = led.delivered  # deliveries recorded before this pass
    conn = None
    try:
        conn = _connect_blocking(port)
        read = _read_queues(conn, [queue_name(q) for q in range(led.nqueues)])
        for q in range(led.nqueues):
            name = queue_name(q)
            expected = led.expected(q)
            ch, got, count = read[name]
            res["queues"] += 1 if ch else 0
            res["expected"] += len(expected)
            res["present"] += len(got)
            if count is not None and count != len(got):
                res["count_mismatch"] += 1
                details["errors"].append(f"{name}: message_count {count}, read {len(got)}")
            seen = collections.Counter()
            to_ack, keep, delivered = [], [], []
            for tag, (ok, bq, mid, reason), props, redelivered, size in got:
                meta = led.meta.get(mid) if mid is not None else None
                if mid is not None:
                    delivered.append((mid, redelivered))
                if redelivered:
                    res["redelivered"] += 1
                elif mid in delivered_before:
                    res["redelivered_missing"] += 1
                if not ok or meta is None or meta[0] != q or bq != q or meta[2] != size or (
                    (props.delivery_mode == 2) != meta[1]
                ):
                    if ok and meta is None:
                        reason = "id never published"
                    elif ok and (meta[0] != q or bq != q):
                        reason = f"found in {name}, published to queue {meta[0]}"
                    elif ok and meta[2] != size:
                        reason = f"size {size}, published {meta[2]}"
                    elif ok:
                        reason = f"delivery_mode {props.delivery_mode}, persistent={meta[1]}"
                    res["corrupted"] += 1
                    if meta is None:
                        res["unknown"] += 1
                    if len(details["corrupt"]) < sample:
                        details["corrupt"].append({"queue": name, "mid": mid, "reason": reason})
                    to_ack.append((tag, mid))
                    if mid is not None and mid in expected:
                        led.record_lost([mid])  # count its loss once, as corruption
                        expected.discard(mid)
                    continue
                seen[mid] += 1
                if seen[mid] > 1:
                    res["dup_in_pass"] += 1
                    if len(details["dup"]) < sample:
                        details["dup"].append({"queue": name, "mid": mid})
                    to_ack.append((tag, mid))
                    continue
                if not meta[1]:
                    res["transient_survived"] += 1
                    if len(details["transient"]) < sample:
                        details["transient"].append({"queue": name, "mid": mid, "size": size})
                    to_ack.append((tag, mid))
                    continue
                if mid in led.acked:
                    res["duplicated"] += 1
                    details["dup_ack_times"].append(led.acked_at.get(mid))
                    to_ack.append((tag, mid))
                    continue
                if mid not in led.confirmed:
                    res["unconfirmed_present"] += 1
                keep.append((tag, mid, size))
            missing = expected - set(seen)
            if missing:
                res["lost"] += len(missing)
                led.record_lost(sorted(missing))
                for mid in sorted(missing)[:sample]:
                    mq, mp, msize = led.meta[mid]
                    details["lost"].append({"queue": name, "mid": mid, "size": msize,
                                            "run": mid >> 32, "publisher": (mid >> 26) & 63,
                                            "n": mid & ((1 << 26) - 1)})
            led.record_delivered(delivered)
            # What stays for the next cycle.
            r = rng.random()
            mode = "delete" if r < delete_prob else "drain" if r < delete_prob + drain_prob else "keep"
            if ch is None:
                continue
            if mode != "keep":
                to_ack += [(tag, mid) for tag, mid, _ in keep]
                keep = []
            else:
                frac = rng.uniform(*ack_range)
                rng.shuffle(keep)
                n_ack = int(len(keep) * frac)
                to_ack += [(tag, mid) for tag, mid, _ in keep[:n_ack]]
                keep = keep[n_ack:]
                while keep and (len(keep) > backlog_msgs or sum(s for _, _, s in keep) > backlog_bytes):
                    tag, mid, _ = keep.pop()
                    to_ack.append((tag, mid))
            led.record_acks([mid for _, mid in to_ack if mid is not None])
            for tag, _ in to_ack:
                ch.basic_ack(tag)
            res["acked_now"] += len(to_ack)
            res["requeued"] += len(keep)
            if keep:
                ch.basic_nack(max(t for t, _, _ in keep), multiple=True, requeue=True)
            if mode == "delete":
                ch.queue_delete(name)
                res["deleted"] += 1
            elif mode == "drain":
                res["drained"] += 1
            ch.close()
        conn.close()
    except Exception as e:  # noqa: BLE001
        res["verify_errors"] += 1
        details["errors"].append(f"{type(e).__name__}: {e}")
        try:
            if conn is not None:
                conn.close()
        except Exception:  # noqa: BLE001
            pass
    led.refresh()
    out = {k: res.get(k, 0) for k in (
        "queues", "present", "expected", "lost", "corrupted", "unknown", "dup_in_pass",
        "duplicated", "transient_survived", "unconfirmed_present", "redelivered",
        "redelivered_missing", "count_mismatch", "acked_now", "requeued", "deleted",
        "drained", "verify_errors")}
    out["run"] = run
    out["details"] = details
    return out


def _main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    lo = sub.add_parser("load")
    lo.add_argument("--port", type=int, required=True)
    lo.add_argument("--ledger", required=True)
    lo.add_argument("--seconds", type=float, default=5)
    lo.add_argument("--seed", type=int, default=0)
    lo.add_argument("--queues", type=int, default=4)
    ve = sub.add_parser("verify")
    ve.add_argument("--port", type=int, required=True)
    ve.add_argument("--ledger", required=True)
    ve.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.cmd == "load":
        out = run_load(a.port, a.ledger, a.seconds, a.seed, queues=a.queues,
                       ready=lambda: print("ready", flush=True))
    else:
        out = verify(a.port, a.ledger, seed=a.seed)
    print(json.dumps(out, sort_keys=True), flush=True)


if __name__ == "__main__":
    _main()
