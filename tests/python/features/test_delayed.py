#!/usr/bin/env python3
"""Delayed messages: exchange type x-delayed-message with x-delayed-type and the x-delay
header, as the rabbitmq-delayed-message-exchange plugin defines them.

The plugin is not part of Debian's RabbitMQ 3.10 package (and it cannot be fetched here),
so these assertions follow the plugin's source (rabbit_exchange_type_delayed_message.erl,
rabbit_delayed_message_utils.erl) rather than a recording.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pika  # noqa: E402
from common import FeatureTest, main, uname  # noqa: E402

PRECONDITION_FAILED = 406
COMMAND_INVALID = 503


class Delayed(FeatureTest):
    def delayed_exchange(self, kind="direct"):
        name = uname("delayed")
        self.ch.exchange_declare(name, "x-delayed-message",
                                 arguments={"x-delayed-type": kind})
        self.addCleanup(self.cleanup_exchange, name)
        return name

    def cleanup_exchange(self, name):
        try:
            c = self.new_conn()
            c.channel().exchange_delete(name)
            c.close()
        except Exception:
            pass

    def publish_to(self, exchange, routing_key, body, headers=None):
        self.publish(routing_key, body, exchange=exchange, headers=headers)

    def test_message_waits_for_its_delay(self):
        # Plugin: a positive x-delay holds the message that many ms, then routes it as the
        # x-delayed-type exchange would; x-delay is then minus the delay.
        ex = self.delayed_exchange()
        q = self.declare_queue()
        self.ch.queue_bind(q, ex, "k")
        t0 = time.time()
        self.publish_to(ex, "k", b"later", headers={"x-delay": 400})
        self.assertIsNone(self.ch.basic_get(q, auto_ack=True)[0])
        m, p, b = self.get_within(q, timeout=5)
        waited = time.time() - t0
        self.assertEqual(b, b"later")
        self.assertGreaterEqual(waited, 0.38)
        self.assertEqual(p.headers["x-delay"], -400)
        self.assertEqual(m.exchange, ex)
        self.assertEqual(m.routing_key, "k")

    def test_order_follows_due_time(self):
        ex = self.delayed_exchange("fanout")
        q = self.declare_queue()
        self.ch.queue_bind(q, ex)
        for body, delay in ((b"c", 600), (b"a", 200), (b"b", 400)):
            self.publish_to(ex, "", body, headers={"x-delay": delay})
        got = [self.get_within(q, timeout=5)[2] for _ in range(3)]
        self.assertEqual(got, [b"a", b"b", b"c"])

    def test_no_or_non_positive_delay_routes_at_once(self):
        ex = self.delayed_exchange()
        q = self.declare_queue()
        self.ch.queue_bind(q, ex, "k")
        self.publish_to(ex, "k", b"now")
        self.publish_to(ex, "k", b"zero", headers={"x-delay": 0})
        self.publish_to(ex, "k", b"neg", headers={"x-delay": -50})
        self.assertEqual(self.wait_count(q, 3), 3)

    def test_string_delay_is_converted(self):
        ex = self.delayed_exchange()
        q = self.declare_queue()
        self.ch.queue_bind(q, ex, "k")
        self.publish_to(ex, "k", b"s", headers={"x-delay": "300"})
        self.assertIsNone(self.ch.basic_get(q, auto_ack=True)[0])
        self.assertEqual(self.get_within(q, timeout=5)[2], b"s")

    def test_topic_routing_at_fire_time(self):
        # Routing happens when the message is due: a binding added meanwhile counts.
        ex = self.delayed_exchange("topic")
        q = self.declare_queue()
        self.publish_to(ex, "a.b", b"t", headers={"x-delay": 500})
        self.ch.queue_bind(q, ex, "a.*")
        self.assertEqual(self.get_within(q, timeout=5)[2], b"t")

    def test_missing_or_bad_delayed_type(self):
        # Plugin: 406 "Invalid argument, 'x-delayed-type' must be an existing exchange type";
        # an unknown type is the broker's unknown-exchange-type error (503 command invalid).
        ch = self.new_channel()
        e = self.assertChannelError(PRECONDITION_FAILED, ch.exchange_declare, uname("d"),
                                    "x-delayed-message")
        self.assertIn("'x-delayed-type' must be an existing exchange type", e.reply_text)
        ch = self.new_channel()
        e = self.assertChannelError(PRECONDITION_FAILED, ch.exchange_declare, uname("d"),
                                    "x-delayed-message",
                                    arguments={"x-delayed-type": "x-delayed-message"})
        self.assertIn("can't be used for 'x-delayed-type'", e.reply_text)

    def test_redeclare_with_other_type_is_inequivalent(self):
        ex = self.delayed_exchange()
        ch = self.new_channel()
        e = self.assertChannelError(PRECONDITION_FAILED, ch.exchange_declare, ex, "direct")
        self.assertIn("inequivalent arg 'type'", e.reply_text)
        self.ch.exchange_declare(ex, "x-delayed-message", arguments={"x-delayed-type": "direct"})


if __name__ == "__main__":
    main()
