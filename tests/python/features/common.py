"""Shared helpers for the Warren feature tests (pika + unittest).

Every test talks to the broker at 127.0.0.1:$WARREN_PORT (default 5672) as guest/guest.
Names are made unique with a uuid suffix so tests never collide, and everything a test
declares is removed again in tearDown (best effort).
"""
import os
import time
import unittest
import uuid

import pika
import pika.exceptions

HOST = os.environ.get("WARREN_HOST", "127.0.0.1")
PORT = int(os.environ.get("WARREN_PORT", "5672"))


def params(**kw):
    return pika.ConnectionParameters(
        host=HOST, port=PORT,
        credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1, socket_timeout=5, blocked_connection_timeout=10,
        stack_timeout=10, heartbeat=0, **kw)


def connect():
    return pika.BlockingConnection(params())


def uname(prefix="t"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


def reply_code(exc):
    """The AMQP reply code carried by a pika close exception (channel or connection)."""
    if hasattr(exc, "reply_code"):
        return exc.reply_code
    if exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def reply_text(exc):
    if hasattr(exc, "reply_text"):
        return exc.reply_text
    if len(exc.args) > 1:
        return exc.args[1]
    return ""


class FeatureTest(unittest.TestCase):
    """Base class: one connection per test, with helpers that remember what was declared."""

    def setUp(self):
        self.conn = connect()
        self.ch = self.conn.channel()
        self._queues = []
        self._exchanges = []
        self._extra_conns = []
        self._pch = None

    def tearDown(self):
        for c in self._extra_conns:
            try:
                if c.is_open:
                    c.close()
            except Exception:
                pass
        try:
            if self.conn.is_open:
                self.conn.close()
        except Exception:
            pass
        # Clean up on a fresh connection: the test's one may be dead.
        try:
            c = connect()
            for q in self._queues:
                ch = c.channel()
                try:
                    ch.queue_delete(q)
                    ch.close()
                except Exception:
                    pass
            for x in self._exchanges:
                ch = c.channel()
                try:
                    ch.exchange_delete(x)
                    ch.close()
                except Exception:
                    pass
            c.close()
        except Exception:
            pass

    # ---- connections / channels ----
    def new_conn(self):
        c = connect()
        self._extra_conns.append(c)
        return c

    def new_channel(self):
        """A fresh channel on the test's connection (e.g. after the broker closed one)."""
        return self.conn.channel()

    # ---- declarations ----
    def declare_queue(self, prefix="q", arguments=None, ch=None, name=None, **kw):
        ch = ch or self.ch
        name = name or uname(prefix)
        self._queues.append(name)
        ch.queue_declare(name, arguments=arguments, **kw)
        return name

    def declare_exchange(self, prefix="x", exchange_type="direct", arguments=None, ch=None, **kw):
        ch = ch or self.ch
        name = uname(prefix)
        self._exchanges.append(name)
        ch.exchange_declare(name, exchange_type=exchange_type, arguments=arguments, **kw)
        return name

    def track_queue(self, name):
        self._queues.append(name)
        return name

    def track_exchange(self, name):
        self._exchanges.append(name)
        return name

    # ---- errors ----
    def assertChannelError(self, code, fn, *args, **kw):
        """Calls fn and asserts the broker closes the channel with `code`; returns the exception."""
        with self.assertRaises(pika.exceptions.ChannelClosedByBroker) as cm:
            fn(*args, **kw)
        self.assertEqual(reply_code(cm.exception), code, reply_text(cm.exception))
        return cm.exception

    def assertConnectionError(self, code, fn, *args, **kw):
        with self.assertRaises(pika.exceptions.ConnectionClosedByBroker) as cm:
            fn(*args, **kw)
        self.assertEqual(reply_code(cm.exception), code, reply_text(cm.exception))
        return cm.exception

    def declare_error(self, code, name, arguments, ch=None, **kw):
        """queue.declare that must fail with channel error `code`; returns the exception."""
        ch = ch or self.new_channel()
        self._queues.append(name)
        return self.assertChannelError(code, ch.queue_declare, name, arguments=arguments, **kw)

    # ---- messages ----
    @property
    def pch(self):
        """A publisher-confirm channel on the test's connection: a publish through it
        returns once the broker has enqueued (confirmed) the message, so counts that
        follow are not racy."""
        if self._pch is None or not self._pch.is_open:
            self._pch = self.conn.channel()
            self._pch.confirm_delivery()
        return self._pch

    def publish(self, routing_key, body, exchange="", ch=None, **props):
        """Publishes and (by default, through the confirm channel) waits for the broker's ack."""
        ch = ch or self.pch
        ch.basic_publish(exchange, routing_key, body,
                         properties=pika.BasicProperties(**props) if props else None)

    def get(self, queue, ch=None, auto_ack=True):
        """One basic.get; returns (method, properties, body) or (None, None, None)."""
        ch = ch or self.ch
        return ch.basic_get(queue, auto_ack=auto_ack)

    def get_within(self, queue, timeout=3.0, ch=None, auto_ack=True):
        """Polls basic.get until a message arrives or the deadline passes."""
        ch = ch or self.ch
        deadline = time.time() + timeout
        while True:
            m, p, b = ch.basic_get(queue, auto_ack=auto_ack)
            if m is not None or time.time() >= deadline:
                return m, p, b
            time.sleep(0.05)

    def drain(self, queue, ch=None, limit=10000):
        """All messages now in the queue, via basic.get (auto-ack): list of (props, body)."""
        ch = ch or self.ch
        out = []
        for _ in range(limit):
            m, p, b = ch.basic_get(queue, auto_ack=True)
            if m is None:
                break
            out.append((p, b))
        return out

    def bodies(self, queue, ch=None):
        return [b for _, b in self.drain(queue, ch=ch)]

    def count(self, queue, ch=None):
        ch = ch or self.ch
        return ch.queue_declare(queue, passive=True).method.message_count

    def consumer_count(self, queue, ch=None):
        ch = ch or self.ch
        return ch.queue_declare(queue, passive=True).method.consumer_count

    def wait_count(self, queue, n, timeout=3.0, ch=None):
        """Polls a passive declare until message_count == n (or the deadline); returns the last count."""
        deadline = time.time() + timeout
        while True:
            c = self.count(queue, ch=ch)
            if c == n or time.time() >= deadline:
                return c
            time.sleep(0.05)

    def wait_gone(self, name, timeout=8.0, first=0.5):
        """Waits until the queue is gone; True if it went. The passive declare used to check
        restarts an x-expires timer, so the checks are spaced out with a growing interval
        (0.5 s, 0.75 s, 1.1 s, ...), always longer than the short x-expires used in tests."""
        deadline = time.time() + timeout
        step = first
        while True:
            time.sleep(step)
            if not self.queue_exists(name):
                return True
            if time.time() >= deadline:
                return False
            step *= 1.5

    def queue_exists(self, name):
        c = connect()
        try:
            ch = c.channel()
            try:
                ch.queue_declare(name, passive=True)
                return True
            except pika.exceptions.ChannelClosedByBroker as e:
                if e.reply_code == 404:
                    return False
                raise
        finally:
            if c.is_open:
                c.close()

    def exchange_exists(self, name):
        c = connect()
        try:
            ch = c.channel()
            try:
                ch.exchange_declare(name, passive=True)
                return True
            except pika.exceptions.ChannelClosedByBroker as e:
                if e.reply_code == 404:
                    return False
                raise
        finally:
            if c.is_open:
                c.close()

    def wait_until(self, pred, timeout=3.0, step=0.05):
        deadline = time.time() + timeout
        while True:
            if pred():
                return True
            if time.time() >= deadline:
                return False
            time.sleep(step)

    def pump(self, seconds=0.2, conn=None):
        """Lets pika process incoming frames (consumer deliveries) for a while."""
        pump(conn or self.conn, seconds)

    def collect(self, sink, n, timeout=3.0, conn=None):
        """Pumps events until list `sink` has at least n items or the deadline passes."""
        conn = conn or self.conn
        deadline = time.time() + timeout
        while len(sink) < n and time.time() < deadline:
            conn.process_data_events(time_limit=0.05)
        return sink


def pump(conn, seconds):
    """process_data_events in short slices until `seconds` have passed. (One long call is
    not enough: after a channel was closed by the broker, pika 1.x only dispatches the
    callbacks received during a call at the NEXT call.)"""
    deadline = time.time() + seconds
    while True:
        conn.process_data_events(time_limit=min(0.05, max(0.0, deadline - time.time())))
        if time.time() >= deadline:
            break
    conn.process_data_events(time_limit=0)


def main():
    unittest.main(verbosity=2)
