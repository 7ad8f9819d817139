#!/usr/bin/env python3
"""Consumer priorities (x-priority argument of basic.consume).

Behaviour recorded against RabbitMQ 3.10.8.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FeatureTest, main, pump  # noqa: E402

PRECONDITION_FAILED = 406


class Consumer:
    """Manual-ack consumer on its own connection, with a prefetch limit."""

    def __init__(self, test, q, priority=None, prefetch=1):
        self.conn = test.new_conn()
        self.ch = self.conn.channel()
        self.ch.basic_qos(prefetch_count=prefetch)
        self.got = []
        args = {"x-priority": priority} if priority is not None else None
        self.tag = self.ch.basic_consume(
            q, lambda c, m, p, b: self.got.append((m.delivery_tag, b)), arguments=args)

    def pump(self, seconds=0.05):
        pump(self.conn, seconds)

    def bodies(self):
        return [b for _, b in self.got]

    def ack_last(self):
        self.ch.basic_ack(self.got[-1][0])
        # The ack and the next publish travel on different connections, which a broker
        # may serve in either order: let the ack land first.
        time.sleep(0.05)


def settle(consumers, seconds=0.3):
    """Pumps all consumers' connections for `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        for c in consumers:
            c.pump(0.02)


def settle_until(consumers, counts, timeout=3.0, extra=0.2):
    """Pumps until each consumer has received counts[i] messages (or the deadline), then
    a little longer so that an unexpected extra delivery would be seen too."""
    deadline = time.time() + timeout
    while time.time() < deadline and any(len(c.got) < n for c, n in zip(consumers, counts)):
        for c in consumers:
            c.pump(0.02)
    settle(consumers, extra)


class ConsumerPriority(FeatureTest):
    def test_high_priority_first_low_only_when_high_full(self):
        # RabbitMQ: H (x-priority 10) gets a message whenever it has room; L (x-priority 1)
        # gets one only while H is at its prefetch limit. Registration order does not matter.
        q = self.declare_queue()
        L = Consumer(self, q, priority=1)
        H = Consumer(self, q, priority=10)
        for i in range(3):
            self.publish(q, b"m%d" % i)
        settle_until([L, H], [1, 1])
        self.assertEqual(H.bodies(), [b"m0"])
        self.assertEqual(L.bodies(), [b"m1"])
        self.assertEqual(self.count(q), 1)       # m2 waits: both full
        H.ack_last()
        settle_until([L, H], [1, 2])
        self.assertEqual(H.bodies(), [b"m0", b"m2"])
        self.assertEqual(L.bodies(), [b"m1"])
        L.ack_last()
        settle([L, H], 0.1)
        self.publish(q, b"m3")                    # H full (m2), L has room
        settle_until([L, H], [2, 2])
        self.assertEqual(L.bodies(), [b"m1", b"m3"])
        self.assertEqual(H.bodies(), [b"m0", b"m2"])
        H.ack_last()
        L.ack_last()
        settle([L, H], 0.1)
        for i in range(4, 7):
            self.publish(q, b"m%d" % i)           # H always has room again: all go to H
            settle_until([L, H], [2, i - 1])
            self.assertEqual(len(H.got), i - 1)
            H.ack_last()
        settle([L, H], 0.2)
        self.assertEqual(H.bodies(), [b"m0", b"m2", b"m4", b"m5", b"m6"])
        self.assertEqual(L.bodies(), [b"m1", b"m3"])

    def test_queued_message_goes_to_low_when_it_acks_and_high_is_full(self):
        # RabbitMQ: prefetch 2 each: 5 messages -> H m0,m1; L m2,m3; m4 queued.
        # L acking frees L (H still full) -> m4 goes to L.
        q = self.declare_queue()
        H = Consumer(self, q, priority=5, prefetch=2)
        L = Consumer(self, q, priority=0, prefetch=2)
        for i in range(5):
            self.publish(q, b"m%d" % i)
        settle_until([L, H], [2, 2])
        self.assertEqual(H.bodies(), [b"m0", b"m1"])
        self.assertEqual(L.bodies(), [b"m2", b"m3"])
        L.ch.basic_ack(L.got[0][0])
        settle_until([L, H], [3, 2])
        self.assertEqual(L.bodies(), [b"m2", b"m3", b"m4"])
        self.assertEqual(H.bodies(), [b"m0", b"m1"])

    def test_default_priority_zero_and_negative(self):
        # RabbitMQ: a consumer without x-priority has priority 0, above a negative one.
        q = self.declare_queue()
        N = Consumer(self, q, priority=-5)
        D = Consumer(self, q)
        self.publish(q, b"a")
        self.publish(q, b"b")
        settle_until([N, D], [1, 1])
        self.assertEqual(D.bodies(), [b"a"])
        self.assertEqual(N.bodies(), [b"b"])

    def test_equal_priorities_round_robin(self):
        q = self.declare_queue()
        A = Consumer(self, q, priority=3, prefetch=10)
        B = Consumer(self, q, priority=3, prefetch=10)
        for i in range(4):
            self.publish(q, b"m%d" % i)
        settle_until([A, B], [2, 2])
        self.assertEqual(A.bodies(), [b"m0", b"m2"])
        self.assertEqual(B.bodies(), [b"m1", b"m3"])

    def test_cancel_high_priority_low_takes_over(self):
        q = self.declare_queue()
        H = Consumer(self, q, priority=10, prefetch=10)
        L = Consumer(self, q, priority=1, prefetch=10)
        self.publish(q, b"a")
        settle_until([H, L], [1, 0])
        H.ch.basic_cancel(H.tag)
        self.publish(q, b"b")
        settle_until([H, L], [1, 1])
        self.assertEqual(H.bodies(), [b"a"])
        self.assertEqual(L.bodies(), [b"b"])

    def test_invalid_x_priority(self):
        # RabbitMQ: 406 at basic.consume; the text names the QUEUE:
        # "invalid arg 'x-priority' for queue '<q>' in vhost '/': \"expected integer, got longstr\"".
        q = self.declare_queue()
        for value, tname in (("5", "longstr"), (True, "bool")):
            ch = self.new_channel()
            e = self.assertChannelError(PRECONDITION_FAILED, ch.basic_consume, q, lambda *a: None,
                                        arguments={"x-priority": value})
            self.assertEqual(
                e.reply_text,
                "PRECONDITION_FAILED - invalid arg 'x-priority' for queue '%s' in vhost '/': "
                "\"expected integer, got %s\"" % (q, tname))

    def test_large_and_negative_x_priority_accepted(self):
        q = self.declare_queue()
        for v in (-5, 2 ** 40):
            self.new_channel().basic_consume(q, lambda *a: None, arguments={"x-priority": v})


if __name__ == "__main__":
    main()
