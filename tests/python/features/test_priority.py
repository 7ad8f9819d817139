#!/usr/bin/env python3
"""Priority queues (x-max-priority).

Behaviour recorded against RabbitMQ 3.10.8.
"""
import decimal
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FeatureTest, main, uname  # noqa: E402

PRECONDITION_FAILED = 406


def expected_order(msgs, max_priority):
    """Stable sort by effective priority (None -> 0, above max -> max), highest first."""
    def eff(p):
        return min(p or 0, max_priority)
    return [b for (p, b) in sorted(msgs, key=lambda pb: -eff(pb[0]))]


class PriorityOrder(FeatureTest):
    def _publish_all(self, q, msgs):
        for p, b in msgs:
            self.publish(q, b, priority=p) if p is not None else self.publish(q, b)

    def test_shuffled_priorities_basic_get(self):
        # RabbitMQ: highest priority first, FIFO within a priority; no priority = 0;
        # priorities above x-max-priority are treated as x-max-priority.
        q = self.declare_queue(arguments={"x-max-priority": 9})
        prios = list(range(10)) * 2 + [None, None, None, 10, 200, 255]
        random.Random(7).shuffle(prios)
        msgs = [(p, b"%d:%s" % (i, str(p).encode())) for i, p in enumerate(prios)]
        self._publish_all(q, msgs)
        got = self.drain(q)
        self.assertEqual([b for _, b in got], expected_order(msgs, 9))
        # The priority property itself is delivered unchanged (255 stays 255).
        self.assertEqual(sorted([p.priority for p, _ in got], key=lambda x: (x is None, x)),
                         sorted(prios, key=lambda x: (x is None, x)))

    def test_above_max_is_max_fifo(self):
        # RabbitMQ: with max 5, priorities 7, 5, 9, 255, 5, 6 all share bucket 5 in
        # publish order.
        q = self.declare_queue(arguments={"x-max-priority": 5})
        prios = [3, None, 7, 0, 5, 3, 9, None, 255, 1, 5, 0, 6]
        msgs = [(p, b"%d" % i) for i, p in enumerate(prios)]
        self._publish_all(q, msgs)
        self.assertEqual(self.bodies(q),
                         [b"2", b"4", b"6", b"8", b"10", b"12", b"0", b"5", b"9",
                          b"1", b"3", b"7", b"11"])

    def test_consumer_receives_in_priority_order(self):
        # RabbitMQ: messages already queued are delivered to a new consumer by priority.
        q = self.declare_queue(arguments={"x-max-priority": 10})
        msgs = [(p, b"p%d" % p) for p in [1, 4, 2, 10, 0, 7]]
        self._publish_all(q, msgs)
        cch = self.conn.channel()
        cch.basic_qos(prefetch_count=1)
        got = []

        def on_msg(c, m, p, b):
            got.append(b)
            c.basic_ack(m.delivery_tag)
        cch.basic_consume(q, on_msg)
        self.collect(got, 6)
        self.assertEqual(got, [b"p10", b"p7", b"p4", b"p2", b"p1", b"p0"])

    def test_requeued_messages_keep_priority_position(self):
        # RabbitMQ: requeued messages go back into their priority bucket, ahead of newer
        # messages of the same priority.
        q = self.declare_queue(arguments={"x-max-priority": 9})
        self.publish(q, b"5", priority=5)
        self.publish(q, b"1", priority=1)
        g = self.conn.channel()
        g.basic_get(q)
        m2, _, _ = g.basic_get(q)
        self.publish(q, b"3", priority=3)
        self.publish(q, b"1b", priority=1)
        g.basic_nack(m2.delivery_tag, multiple=True, requeue=True)
        time.sleep(0.2)
        got = []
        while True:
            m, p, b = self.ch.basic_get(q, auto_ack=True)
            if m is None:
                break
            got.append((b, m.redelivered))
        self.assertEqual(got, [(b"5", True), (b"3", False), (b"1", True), (b"1b", False)])

    def test_max_priority_zero_is_fifo(self):
        # RabbitMQ: x-max-priority 0 is accepted; every priority counts as 0 -> FIFO.
        q = self.declare_queue(arguments={"x-max-priority": 0})
        for p in [5, None, 0, 9]:
            self.publish(q, str(p).encode(), **({"priority": p} if p is not None else {}))
        self.assertEqual(self.bodies(q), [b"5", b"None", b"0", b"9"])

    def test_plain_queue_ignores_priority(self):
        q = self.declare_queue()
        for p in [5, None, 0, 9]:
            self.publish(q, str(p).encode(), **({"priority": p} if p is not None else {}))
        self.assertEqual(self.bodies(q), [b"5", b"None", b"0", b"9"])


class PriorityValidation(FeatureTest):
    def _bad(self, value, detail):
        name = uname("bad")
        e = self.declare_error(PRECONDITION_FAILED, name, {"x-max-priority": value})
        self.assertEqual(
            e.reply_text,
            "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '%s' in vhost '/': %s"
            % (name, detail))
        self.assertFalse(self.queue_exists(name))

    def test_accepted_values(self):
        # RabbitMQ: 0, 1 and 255 are accepted.
        for v in (0, 1, 255):
            self.declare_queue(arguments={"x-max-priority": v})

    def test_256(self):
        # RabbitMQ: 406 {max_value_exceeded,256}.
        self._bad(256, "{max_value_exceeded,256}")

    def test_huge(self):
        self._bad(2 ** 40, "{max_value_exceeded,1099511627776}")

    def test_negative(self):
        self._bad(-1, "{value_negative,-1}")

    def test_string(self):
        self._bad("5", '"expected integer, got longstr"')

    def test_bool(self):
        self._bad(True, '"expected integer, got bool"')

    def test_decimal(self):
        self._bad(decimal.Decimal(5), '"expected integer, got decimal"')

    def test_redeclare_inequivalent(self):
        # RabbitMQ: x-max-priority takes part in the equivalence check.
        q = self.declare_queue(arguments={"x-max-priority": 9})
        e = self.assertChannelError(PRECONDITION_FAILED, self.new_channel().queue_declare, q,
                                    arguments={"x-max-priority": 5})
        self.assertEqual(e.reply_text,
                         "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue '%s' "
                         "in vhost '/': received '5' but current is '9'" % q)
        e = self.assertChannelError(PRECONDITION_FAILED, self.new_channel().queue_declare, q)
        self.assertEqual(e.reply_text,
                         "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue '%s' "
                         "in vhost '/': received none but current is the value '9' of type "
                         "'signedint'" % q)
        self.new_channel().queue_declare(q, arguments={"x-max-priority": 9})

    def test_redeclare_adding_priority(self):
        q = self.declare_queue()
        e = self.assertChannelError(PRECONDITION_FAILED, self.new_channel().queue_declare, q,
                                    arguments={"x-max-priority": 5})
        self.assertEqual(e.reply_text,
                         "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue '%s' "
                         "in vhost '/': received the value '5' of type 'signedint' but current "
                         "is none" % q)


if __name__ == "__main__":
    main()
