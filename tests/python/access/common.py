"""Shared helpers for the access-control tests (pika + unittest).

The broker at $WARREN_HOST:$WARREN_PORT (default 127.0.0.1:5672) must have been loaded with
definitions.json from this directory (users, vhosts, permissions, topic permissions, limits;
every password is the user name + "-pw", see README.md).

Names are unique (uuid suffix) and everything a test declares is removed again in tearDown
through an `admin` connection, so the tests do not depend on their order and leave the broker
reusable.
"""
import ast
import os
import re
import time
import unittest
import uuid

import pika
import pika.exceptions as px

HOST = os.environ.get("WARREN_HOST", "127.0.0.1")
PORT = int(os.environ.get("WARREN_PORT", "5672"))


def params(user, vhost="/", password=None, **kw):
    return pika.ConnectionParameters(
        host=HOST, port=PORT, virtual_host=vhost,
        credentials=pika.PlainCredentials(user, user + "-pw" if password is None else password),
        connection_attempts=1, socket_timeout=5, blocked_connection_timeout=10,
        stack_timeout=10, heartbeat=0, **kw)


def connect(user, vhost="/", password=None, **kw):
    return pika.BlockingConnection(params(user, vhost, password, **kw))


def uid():
    return uuid.uuid4().hex[:10]


def close_quietly(conn):
    try:
        if conn is not None and conn.is_open:
            conn.close()
    except Exception:
        pass


def unwrap_open_error(exc):
    """pika wraps a connection.close received while opening in ProbableAccessDeniedError /
    ProbableAuthenticationError, whose args hold only the *repr string* of the inner
    ConnectionClosedByBroker, e.g. "ConnectionClosedByBroker: (530) 'NOT_ALLOWED - ...'".
    Returns a ConnectionClosedByBroker (rebuilt from that string if needed) or the exception
    itself if the broker sent no close frame."""
    if isinstance(exc, px.ConnectionClosedByBroker):
        return exc
    for a in getattr(exc, "args", ()):
        if isinstance(a, px.ConnectionClosedByBroker):
            return a
        if isinstance(a, str):
            m = re.fullmatch(r"ConnectionClosedByBroker: \((\d+)\) (.*)", a, re.S)
            if m:
                return px.ConnectionClosedByBroker(int(m.group(1)), ast.literal_eval(m.group(2)))
    return exc


class AccessTest(unittest.TestCase):
    """One `admin` connection (full permissions on every vhost) for setting up and cleaning
    up, plus helpers to act as another user and to assert RabbitMQ's exact close frames."""

    def setUp(self):
        self._conns = []
        self._cleanup = []          # (vhost, kind, name)
        self._admin = {}

    def tearDown(self):
        for c in self._conns:
            close_quietly(c)
        by_vhost = {}
        for vhost, kind, name in self._cleanup:
            by_vhost.setdefault(vhost, []).append((kind, name))
        for vhost, items in by_vhost.items():
            try:
                c = connect("admin", vhost)
            except Exception:
                continue
            try:
                for kind, name in reversed(items):
                    ch = c.channel()
                    try:
                        if kind == "queue":
                            ch.queue_delete(name)
                        else:
                            ch.exchange_delete(name)
                        ch.close()
                    except Exception:
                        pass
            finally:
                close_quietly(c)
        for c in self._admin.values():
            close_quietly(c)

    # --- helpers -------------------------------------------------------------------------
    def conn(self, user, vhost="/", **kw):
        c = connect(user, vhost, **kw)
        self._conns.append(c)
        return c

    def ch(self, user, vhost="/"):
        return self.conn(user, vhost).channel()

    def admin_ch(self, vhost="/"):
        c = self._admin.get(vhost)
        if c is None or not c.is_open:
            c = self._admin[vhost] = connect("admin", vhost)
        return c.channel()

    def track(self, kind, name, vhost="/"):
        self._cleanup.append((vhost, kind, name))
        return name

    def mkqueue(self, name, vhost="/", **kw):
        """Declares a queue as admin (and remembers to delete it)."""
        self.track("queue", name, vhost)
        ch = self.admin_ch(vhost)
        ch.queue_declare(name, **kw)
        ch.close()
        return name

    def mkexchange(self, name, etype="direct", vhost="/", **kw):
        self.track("exchange", name, vhost)
        ch = self.admin_ch(vhost)
        ch.exchange_declare(name, etype, **kw)
        ch.close()
        return name

    def assertChannelClosed(self, fn, code, text):
        """fn() must make the broker close the channel with `code` and reply text `text`
        (a str: exact match; a compiled regex: fullmatch)."""
        with self.assertRaises(px.ChannelClosedByBroker) as cm:
            fn()
        self.assertEqual(cm.exception.reply_code, code, cm.exception.reply_text)
        self._match(cm.exception.reply_text, text)

    def assertConnectionClosed(self, fn, code, text):
        with self.assertRaises(px.ConnectionClosedByBroker) as cm:
            fn()
        self.assertEqual(cm.exception.reply_code, code, cm.exception.reply_text)
        self._match(cm.exception.reply_text, text)

    def assertOpenRefused(self, fn, code, text):
        """Opening a connection must fail with a connection.close(code, text) from the broker."""
        with self.assertRaises(px.AMQPConnectionError) as cm:
            fn()
        inner = unwrap_open_error(cm.exception)
        self.assertIsInstance(inner, px.ConnectionClosedByBroker, repr(cm.exception))
        self.assertEqual(inner.reply_code, code, inner.reply_text)
        self._match(inner.reply_text, text)
        return cm.exception

    def _match(self, got, want):
        if isinstance(want, re.Pattern):
            self.assertRegex(got, want)
            self.assertTrue(want.fullmatch(got), "%r does not fully match %r" % (got, want.pattern))
        else:
            self.assertEqual(got, want)

    def wait_connectable(self, user, vhost="/", timeout=10.0):
        """Connection and channel counts are tracked asynchronously by RabbitMQ; wait until
        `user` can open a connection to `vhost` again (i.e. earlier tests' connections are gone)."""
        deadline = time.time() + timeout
        while True:
            try:
                c = connect(user, vhost)
                c.close()
                return
            except px.AMQPConnectionError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)


def refused(kind, name, user, vhost="/"):
    return "ACCESS_REFUSED - access to %s '%s' in vhost '%s' refused for user '%s'" % (
        kind, name, vhost, user)
