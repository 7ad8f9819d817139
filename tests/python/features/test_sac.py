#!/usr/bin/env python3
"""Single active consumer (x-single-active-consumer).

Behaviour recorded against RabbitMQ 3.10.8.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FeatureTest, main, pump, uname  # noqa: E402

ACCESS_REFUSED = 403
PRECONDITION_FAILED = 406


class Consumer:
    """A consumer on its own connection, recording (delivery_tag, body, redelivered)."""

    def __init__(self, test, q, prefetch=10, auto_ack=False):
        self.conn = test.new_conn()
        self.ch = self.conn.channel()
        self.ch.basic_qos(prefetch_count=prefetch)
        self.got = []
        self.tag = self.ch.basic_consume(
            q, lambda c, m, p, b: self.got.append((m.delivery_tag, b, m.redelivered)),
            auto_ack=auto_ack)

    def pump(self, seconds=0.3):
        pump(self.conn, seconds)

    def wait(self, n, timeout=3.0):
        deadline = time.time() + timeout
        while len(self.got) < n and time.time() < deadline:
            self.conn.process_data_events(time_limit=0.05)
        return self.got

    def bodies(self):
        return [b for _, b, _ in self.got]


class SingleActiveConsumer(FeatureTest):
    def sac_queue(self):
        return self.declare_queue(arguments={"x-single-active-consumer": True})

    def test_only_first_consumer_receives(self):
        # RabbitMQ: the first consumer registered is the active one and gets everything;
        # the passive declare's consumer_count counts all registered consumers (2).
        q = self.sac_queue()
        a = Consumer(self, q)
        b = Consumer(self, q)
        self.assertEqual(self.consumer_count(q), 2)
        for i in range(4):
            self.publish(q, b"m%d" % i)
        a.wait(4)
        b.pump(0.3)
        self.assertEqual(a.bodies(), [b"m0", b"m1", b"m2", b"m3"])
        self.assertEqual(b.got, [])

    def test_cancel_hands_over_unacked_stay_with_channel(self):
        # RabbitMQ: basic.cancel of the active consumer makes the next one active at once
        # for new messages; the cancelled consumer's unacked messages are NOT requeued by
        # the cancel (they stay unacked on its channel). When that channel closes they are
        # requeued and delivered to the new active consumer, in order, redelivered=True.
        q = self.sac_queue()
        a = Consumer(self, q)
        b = Consumer(self, q)
        for i in range(4):
            self.publish(q, b"m%d" % i)
        a.wait(4)
        a.ch.basic_ack(a.got[0][0])            # m0 acked; m1..m3 unacked
        a.ch.basic_cancel(a.tag)
        b.pump(0.3)
        self.assertEqual(b.got, [])
        self.publish(q, b"m4")
        b.wait(1)
        self.assertEqual(b.got, [(1, b"m4", False)])
        a.ch.close()
        b.wait(4)
        self.assertEqual([(x[1], x[2]) for x in b.got],
                         [(b"m4", False), (b"m1", True), (b"m2", True), (b"m3", True)])

    def test_channel_close_hands_over_with_requeue(self):
        # RabbitMQ: closing the active consumer's channel requeues its unacked messages and
        # the next consumer (in registration order) becomes active and receives them first,
        # redelivered=True, in original order.
        q = self.sac_queue()
        a = Consumer(self, q)
        b = Consumer(self, q)
        c = Consumer(self, q)
        for i in range(3):
            self.publish(q, b"m%d" % i)
        a.wait(3)
        self.assertEqual(a.bodies(), [b"m0", b"m1", b"m2"])
        a.ch.basic_ack(a.got[0][0])
        a.ch.close()
        b.wait(2)
        self.assertEqual([(x[1], x[2]) for x in b.got], [(b"m1", True), (b"m2", True)])
        self.publish(q, b"m3")
        b.wait(3)
        self.assertEqual(b.bodies(), [b"m1", b"m2", b"m3"])
        c.pump(0.3)
        self.assertEqual(c.got, [])

    def test_connection_close_hands_over(self):
        # RabbitMQ: same on connection close.
        q = self.sac_queue()
        a = Consumer(self, q)
        b = Consumer(self, q)
        self.publish(q, b"m0")
        a.wait(1)
        a.conn.close()
        b.wait(1)
        self.assertEqual([(x[1], x[2]) for x in b.got], [(b"m0", True)])

    def test_inactive_consumer_cancel_keeps_active(self):
        q = self.sac_queue()
        a = Consumer(self, q)
        b = Consumer(self, q)
        b.ch.basic_cancel(b.tag)
        self.publish(q, b"x")
        a.wait(1)
        self.assertEqual(a.bodies(), [b"x"])
        self.assertEqual(self.consumer_count(q), 1)

    def test_exclusive_consume_refused_with_consumers(self):
        # RabbitMQ: basic.consume exclusive=True on a SAC queue that has a consumer ->
        # channel.close 403 ACCESS_REFUSED "queue '<q>' in vhost '/' in exclusive use".
        q = self.sac_queue()
        Consumer(self, q)
        ch = self.new_conn().channel()
        e = self.assertChannelError(ACCESS_REFUSED, ch.basic_consume, q, lambda *a: None,
                                    exclusive=True)
        self.assertEqual(e.reply_text,
                         "ACCESS_REFUSED - queue '%s' in vhost '/' in exclusive use" % q)

    def test_exclusive_consume_refused_even_without_consumers(self):
        # RabbitMQ 3.10: exclusive basic.consume on a SAC queue is refused even when the
        # queue has no consumer at all (403, same text).
        q = self.sac_queue()
        ch = self.new_conn().channel()
        e = self.assertChannelError(ACCESS_REFUSED, ch.basic_consume, q, lambda *a: None,
                                    exclusive=True)
        self.assertEqual(e.reply_text,
                         "ACCESS_REFUSED - queue '%s' in vhost '/' in exclusive use" % q)

    def test_false_is_a_normal_queue(self):
        # RabbitMQ: x-single-active-consumer false -> round-robin between consumers.
        q = self.declare_queue(arguments={"x-single-active-consumer": False})
        a = Consumer(self, q, auto_ack=True)
        b = Consumer(self, q, auto_ack=True)
        for i in range(4):
            self.publish(q, b"m%d" % i)
        deadline = time.time() + 3
        while len(a.got) + len(b.got) < 4 and time.time() < deadline:
            a.pump(0.05)
            b.pump(0.05)
        self.assertEqual(len(a.got), 2)
        self.assertEqual(len(b.got), 2)

    def test_non_bool_rejected(self):
        # RabbitMQ: the argument must be a boolean: 406 {unacceptable_type,longstr|signedint}.
        for value, tname in (("true", "longstr"), (1, "signedint")):
            name = uname("bad")
            e = self.declare_error(PRECONDITION_FAILED, name, {"x-single-active-consumer": value})
            self.assertEqual(
                e.reply_text,
                "PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for queue '%s' in "
                "vhost '/': {unacceptable_type,%s}" % (name, tname))


if __name__ == "__main__":
    main()
