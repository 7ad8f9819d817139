#!/usr/bin/env python3
"""Stream queues over AMQP 0-9-1 (x-queue-type: stream).

Every answer here was first recorded against RabbitMQ 3.10.8 (and passes there too).
"""
import datetime
import os
import sys
import time

import pika

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FeatureTest, main, reply_text, uname  # noqa: E402

PRECONDITION_FAILED = 406
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541
STREAM = {"x-queue-type": "stream"}


def stream_args(**more):
    args = dict(STREAM)
    args.update(more)
    return args


class Reader:
    """A stream consumer on its own channel: (body, x-stream-offset, delivery tag)."""

    def __init__(self, test, q, offset=None, prefetch=100, ack=True, conn=None):
        self.conn = conn or test.conn
        self.ch = self.conn.channel()
        self.ch.basic_qos(prefetch_count=prefetch)
        self.got = []
        self.ack = ack
        args = {} if offset is None else {"x-stream-offset": offset}
        self.tag = self.ch.basic_consume(q, self.on_message, arguments=args)

    def on_message(self, ch, m, p, body):
        self.got.append((body, (p.headers or {}).get("x-stream-offset"), m.delivery_tag,
                         m.redelivered, m.exchange, m.routing_key, p))
        if self.ack:
            ch.basic_ack(m.delivery_tag)

    def wait(self, n, timeout=3.0):
        deadline = time.time() + timeout
        while len(self.got) < n and time.time() < deadline:
            self.conn.process_data_events(time_limit=0.05)
        return self.got

    def settle(self, seconds=0.4):
        deadline = time.time() + seconds
        while time.time() < deadline:
            self.conn.process_data_events(time_limit=0.05)
        return self.got

    def bodies(self):
        return [g[0] for g in self.got]

    def offsets(self):
        return [g[1] for g in self.got]


class StreamDeclare(FeatureTest):
    def test_flags_a_stream_refuses(self):
        for kw, prop in [({"durable": False}, "non-durable"),
                         ({"durable": True, "exclusive": True}, "exclusive-owner"),
                         ({"durable": True, "auto_delete": True}, "auto-delete")]:
            name = uname("s")
            e = self.declare_error(PRECONDITION_FAILED, name, STREAM, **kw)
            self.assertEqual(reply_text(e), "PRECONDITION_FAILED - invalid property '%s' for "
                             "queue '%s' in vhost '/'" % (prop, name))

    def test_argument_values_checked_as_rabbitmq(self):
        cases = [
            ({"x-max-age": "10x"}, "invalid arg 'x-max-age' for queue '%s' in vhost '/': "
             "invalid_max_age"),
            ({"x-max-age": "0s"}, "invalid arg 'x-max-age' for queue '%s' in vhost '/': "
             "invalid_max_age"),
            ({"x-max-age": 10}, "invalid arg 'x-max-age' for queue '%s' in vhost '/': "
             "{unacceptable_type,signedint}"),
            ({"x-max-length-bytes": -1}, "invalid arg 'x-max-length-bytes' for queue '%s' in "
             "vhost '/': {value_negative,-1}"),
            ({"x-stream-max-segment-size-bytes": -5}, "invalid arg "
             "'x-stream-max-segment-size-bytes' for queue '%s' in vhost '/': "
             "{value_negative,-5}"),
            ({"x-max-length": 10}, "invalid arg 'x-max-length' for queue '%s' in vhost '/' "
             "of queue type rabbit_stream_queue"),
            ({"x-message-ttl": 10}, "invalid arg 'x-message-ttl' for queue '%s' in vhost '/' "
             "of queue type rabbit_stream_queue"),
            ({"x-max-priority": 3}, "invalid arg 'x-max-priority' for queue '%s' in vhost '/' "
             "of queue type rabbit_stream_queue"),
            ({"x-single-active-consumer": True}, "invalid arg 'x-single-active-consumer' for "
             "queue '%s' in vhost '/' of queue type rabbit_stream_queue"),
        ]
        for extra, text in cases:
            name = uname("s")
            e = self.declare_error(PRECONDITION_FAILED, name, stream_args(**extra), durable=True)
            self.assertEqual(reply_text(e), "PRECONDITION_FAILED - " + text % name)
        name = uname("s")
        e = self.declare_error(PRECONDITION_FAILED, name,
                               stream_args(**{"x-stream-max-segment-size-bytes": 4 * 1024 ** 3}),
                               durable=True)
        self.assertEqual(reply_text(e), "PRECONDITION_FAILED - Exceeded max value for "
                         "x-stream-max-segment-size-bytes")

    def test_a_duration_without_digits_is_an_internal_error(self):
        # RabbitMQ fails inside (list_to_integer of "") and answers 541 on the connection.
        ch = self.new_channel()
        self.assertConnectionError(INTERNAL_ERROR, ch.queue_declare, uname("s"), durable=True,
                                   arguments=stream_args(**{"x-max-age": "bogus"}))

    def test_stream_arguments_and_unknown_ones_are_accepted(self):
        q = self.declare_queue("s", durable=True, arguments=stream_args(**{
            "x-max-age": "7D", "x-max-length-bytes": 10 ** 9,
            "x-stream-max-segment-size-bytes": 10 ** 6, "x-initial-cluster-size": 1,
            "x-queue-leader-locator": "client-local", "x-foo": 1}))
        ok = self.ch.queue_declare(q, passive=True).method
        self.assertEqual((ok.message_count, ok.consumer_count), (0, 0))

    def test_redeclare_compares_the_streams_arguments(self):
        q = self.declare_queue("s", durable=True, arguments=stream_args(**{"x-max-age": "7D"}))
        e = self.declare_error(PRECONDITION_FAILED, q, None, durable=True)
        self.assertEqual(reply_text(e), "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' "
                         "for queue '%s' in vhost '/': received none but current is the value "
                         "'stream' of type 'longstr'" % q)
        e = self.declare_error(PRECONDITION_FAILED, q, STREAM, durable=True)
        self.assertEqual(reply_text(e), "PRECONDITION_FAILED - inequivalent arg 'x-max-age' "
                         "for queue '%s' in vhost '/': received none but current is the value "
                         "'7D' of type 'longstr'" % q)
        self.new_channel().queue_declare(q, durable=True, arguments=stream_args(**{
            "x-max-age": "7D", "x-whatever": 1}))


class StreamConsume(FeatureTest):
    def stream(self, n=0):
        q = self.declare_queue("s", durable=True, arguments=STREAM)
        for i in range(n):
            # One confirmed publish at a time: each message is a chunk of its own.
            self.publish(q, b"m%d" % i, headers={"h": i})
        return q

    def test_consumer_rules(self):
        q = self.stream()
        ch = self.new_channel()
        e = self.assertChannelError(PRECONDITION_FAILED, ch.basic_consume, q, lambda *a: None)
        self.assertEqual(reply_text(e), "PRECONDITION_FAILED - consumer prefetch count is not "
                         "set for 'queue '%s' in vhost '/''" % q)
        ch = self.new_channel()
        ch.basic_qos(prefetch_count=5, global_qos=True)
        self.assertChannelError(PRECONDITION_FAILED, ch.basic_consume, q, lambda *a: None)
        ch = self.new_channel()
        ch.basic_qos(prefetch_count=5)
        e = self.assertChannelError(PRECONDITION_FAILED, ch.basic_consume, q, lambda *a: None,
                                    arguments={"x-priority": 5})
        self.assertEqual(reply_text(e), "PRECONDITION_FAILED - invalid arg 'x-priority' for "
                         "queue '%s' in vhost '/' of queue type rabbit_stream_queue" % q)
        ch = self.new_channel()
        ch.basic_qos(prefetch_count=5)
        e = self.assertChannelError(PRECONDITION_FAILED, ch.basic_consume, q, lambda *a: None,
                                    arguments={"x-stream-offset": "0s"})
        self.assertEqual(reply_text(e), "PRECONDITION_FAILED - invalid arg 'x-stream-offset' "
                         "for queue '%s' in vhost '/': {invalid_stream_offset_arg,"
                         "{longstr,<<\"0s\">>}}" % q)

    def test_automatic_acks_are_not_implemented(self):
        q = self.stream()
        ch = self.new_channel()
        ch.basic_qos(prefetch_count=5)
        e = self.assertConnectionError(NOT_IMPLEMENTED, ch.basic_consume, q, lambda *a: None,
                                       auto_ack=True)
        self.assertEqual(reply_text(e), "NOT_IMPLEMENTED - automatic acknowledgement not "
                         "supported by stream queues queue '%s' in vhost '/'" % q)

    def test_global_qos_is_not_implemented(self):
        q = self.stream()
        ch = self.new_channel()
        ch.basic_qos(prefetch_count=5)
        ch.basic_qos(prefetch_count=5, global_qos=True)
        e = self.assertConnectionError(NOT_IMPLEMENTED, ch.basic_consume, q, lambda *a: None)
        self.assertEqual(reply_text(e), "NOT_IMPLEMENTED - queue '%s' in vhost '/' does not "
                         "support global qos" % q)

    def test_get_and_purge_are_not_implemented(self):
        q = self.stream(1)
        e = self.assertConnectionError(NOT_IMPLEMENTED, self.new_channel().basic_get, q)
        self.assertEqual(reply_text(e), "NOT_IMPLEMENTED - basic.get not supported by stream "
                         "queues queue '%s' in vhost '/'" % q)
        self.conn = self.new_conn()
        e = self.assertConnectionError(NOT_IMPLEMENTED, self.conn.channel().queue_purge, q)
        self.assertEqual(reply_text(e), "NOT_IMPLEMENTED - queue.purge not supported by stream "
                         "queues queue '%s' in vhost '/'" % q)

    def test_nack_and_reject_are_not_implemented(self):
        q = self.stream(2)
        for settle in (lambda ch, t: ch.basic_nack(t, requeue=True),
                       lambda ch, t: ch.basic_reject(t, requeue=False)):
            conn = self.new_conn()
            r = Reader(self, q, offset="first", ack=False, conn=conn)
            r.wait(1)
            settle(r.ch, r.got[0][2])
            with self.assertRaises(pika.exceptions.ConnectionClosedByBroker) as cm:
                r.settle(2.0)
            self.assertEqual(cm.exception.reply_code, NOT_IMPLEMENTED)
            self.assertEqual(cm.exception.reply_text, "NOT_IMPLEMENTED - basic.nack and "
                             "basic.reject not supported by stream queues queue '%s' in "
                             "vhost '/'" % q)

    def test_offsets_first_next_absolute_and_by_time(self):
        q = self.stream(5)
        first = Reader(self, q, offset="first").wait(5)
        self.assertEqual([g[0] for g in first], [b"m0", b"m1", b"m2", b"m3", b"m4"])
        self.assertEqual([g[1] for g in first], [0, 1, 2, 3, 4])
        self.assertEqual({g[3] for g in first}, {False})
        self.assertEqual([g[1] for g in Reader(self, q, offset=2).wait(3)], [2, 3, 4])
        self.assertEqual(Reader(self, q, offset=-1).wait(5)[0][1], 0)
        minute_ago = datetime.datetime.now() - datetime.timedelta(minutes=1)
        self.assertEqual([g[1] for g in Reader(self, q, offset=minute_ago).wait(5)],
                         [0, 1, 2, 3, 4])
        self.assertEqual([g[1] for g in Reader(self, q, offset="1m").wait(5)], [0, 1, 2, 3, 4])
        later = datetime.datetime.now() + datetime.timedelta(minutes=5)
        nxt = Reader(self, q)  # the default is next
        beyond = Reader(self, q, offset=100)
        future = Reader(self, q, offset=later)
        for r in (nxt, beyond, future):
            self.assertEqual(r.settle(0.3), [])
        self.publish(q, b"m5")
        for r in (nxt, future):
            self.assertEqual([(g[0], g[1]) for g in r.wait(1)], [(b"m5", 5)])
        # An offset past the end waits for that offset: m5 (offset 5) is not for it.
        self.assertEqual(beyond.settle(0.3), [])

    def test_last_starts_at_the_newest_chunk(self):
        q = self.stream(3)
        got = Reader(self, q, offset="last").wait(1)
        self.assertEqual([(g[0], g[1]) for g in got], [(b"m2", 2)])

    def test_readers_are_independent_and_acks_delete_nothing(self):
        q = self.stream(4)
        a = Reader(self, q, offset="first")
        b = Reader(self, q, offset="first", conn=self.new_conn())
        self.assertEqual(a.wait(4) and a.bodies(), [b"m0", b"m1", b"m2", b"m3"])
        self.assertEqual(b.wait(4) and b.bodies(), [b"m0", b"m1", b"m2", b"m3"])
        # Both acked everything; the stream still has it all.
        c = Reader(self, q, offset="first", conn=self.new_conn())
        self.assertEqual(c.wait(4) and c.bodies(), [b"m0", b"m1", b"m2", b"m3"])

    def test_prefetch_is_credit_and_acks_give_more(self):
        q = self.stream(5)
        r = Reader(self, q, offset="first", prefetch=2, ack=False)
        self.assertEqual(len(r.settle(0.5)), 2)
        r.ch.basic_ack(r.got[0][2])
        self.assertEqual(len(r.settle(0.5)), 3)
        r.ch.basic_ack(0, multiple=True)
        self.assertEqual(r.wait(5) and r.bodies(), [b"m0", b"m1", b"m2", b"m3", b"m4"])

    def test_message_keeps_its_exchange_key_and_properties(self):
        q = self.stream()
        x = self.declare_exchange("x", "direct")
        self.ch.queue_bind(q, x, "k")
        self.publish("k", b"d", exchange=x, content_type="text/plain", delivery_mode=2,
                     expiration="100000", priority=3, headers={"a": "b"})
        g = Reader(self, q, offset="first").wait(1)[0]
        body, offset, _, redelivered, exchange, key, p = g
        self.assertEqual((body, offset, redelivered, exchange, key), (b"d", 0, False, x, "k"))
        self.assertEqual((p.content_type, p.delivery_mode, p.expiration, p.priority),
                         ("text/plain", 2, "100000", 3))
        self.assertEqual(p.headers, {"a": "b", "x-stream-offset": 0})

    def test_delete_ignores_if_empty(self):
        q = self.stream(2)
        ok = self.new_channel().queue_delete(q, if_empty=True).method
        self.assertEqual(ok.message_count, 0)
        self.assertChannelError(404, self.new_channel().queue_declare, q, passive=True)


if __name__ == "__main__":
    main()
