#!/usr/bin/env python3
"""Message deduplication, as the rabbitmq-message-deduplication plugin defines it
(exchange type x-message-deduplication with x-cache-size / x-cache-ttl, queue argument
x-message-deduplication, message header x-deduplication-header).

The plugin is not part of Debian's RabbitMQ 3.10 package (and cannot be fetched here), so
these assertions follow the plugin's README and source rather than a recording.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FeatureTest, main, uname  # noqa: E402

PRECONDITION_FAILED = 406


class ExchangeDedup(FeatureTest):
    def dedup_exchange(self, **args):
        name = uname("dedup")
        self.ch.exchange_declare(name, "x-message-deduplication", arguments=args)
        self.addCleanup(self.cleanup_exchange, name)
        return name

    def cleanup_exchange(self, name):
        try:
            c = self.new_conn()
            c.channel().exchange_delete(name)
            c.close()
        except Exception:
            pass

    def test_duplicates_are_not_routed(self):
        # Plugin: the exchange routes as fanout; a value seen before is not routed.
        ex = self.dedup_exchange(**{"x-cache-size": 100})
        q = self.declare_queue()
        self.ch.queue_bind(q, ex, "ignored")
        for body, key in ((b"a", "k1"), (b"b", "k1"), (b"c", "k2"), (b"d", None)):
            headers = {"x-deduplication-header": key} if key else None
            self.publish("any", body, exchange=ex, headers=headers)
        self.assertEqual(self.bodies(q), [b"a", b"c", b"d"])

    def test_cache_ttl_expires_entries(self):
        # Plugin: after x-cache-ttl ms the same value is routed again; a message's own
        # x-cache-ttl header overrides the exchange's.
        ex = self.dedup_exchange(**{"x-cache-size": 100, "x-cache-ttl": 300})
        q = self.declare_queue()
        self.ch.queue_bind(q, ex, "")
        self.publish("", b"1", exchange=ex, headers={"x-deduplication-header": "v"})
        self.publish("", b"2", exchange=ex, headers={"x-deduplication-header": "v"})
        self.publish("", b"3", exchange=ex,
                     headers={"x-deduplication-header": "w", "x-cache-ttl": 5000})
        time.sleep(0.5)
        self.publish("", b"4", exchange=ex, headers={"x-deduplication-header": "v"})
        self.publish("", b"5", exchange=ex, headers={"x-deduplication-header": "w"})
        self.assertEqual(self.bodies(q), [b"1", b"3", b"4"])

    def test_cache_size_bounds_memory(self):
        # Plugin: when the cache is full, existing entries make room for new ones.
        ex = self.dedup_exchange(**{"x-cache-size": 2})
        q = self.declare_queue()
        self.ch.queue_bind(q, ex, "")
        for key in ("a", "b", "c", "a"):
            self.publish("", key.encode(), exchange=ex, headers={"x-deduplication-header": key})
        # "a" was pushed out by "c", so the second "a" is routed again.
        self.assertEqual(self.bodies(q), [b"a", b"b", b"c", b"a"])

    def test_arguments_are_validated(self):
        for args, text in (({}, "'x-cache-size' must be an integer greater than 0"),
                           ({"x-cache-size": 0}, "'x-cache-size' must be an integer greater than 0"),
                           ({"x-cache-size": 5, "x-cache-ttl": -1},
                            "'x-cache-ttl' must be an integer greater than 0"),
                           ({"x-cache-size": 5, "x-cache-persistence": "tape"},
                            "'x-cache-persistence' must be either 'disk' or 'memory'")):
            ch = self.new_channel()
            e = self.assertChannelError(PRECONDITION_FAILED, ch.exchange_declare, uname("d"),
                                        "x-message-deduplication", arguments=args)
            self.assertIn(text, e.reply_text)


class QueueDedup(FeatureTest):
    def test_value_present_in_queue_is_not_enqueued_again(self):
        # Plugin: a queue with x-message-deduplication does not take a message whose value
        # is carried by a message still in the queue (ready or unacked); once that one is
        # acked, the value is free again.
        q = self.declare_queue(arguments={"x-message-deduplication": True})
        h = {"x-deduplication-header": "order-1"}
        self.publish(q, b"first", headers=h)
        self.publish(q, b"again", headers=h)
        self.publish(q, b"other", headers={"x-deduplication-header": "order-2"})
        self.assertEqual(self.count(q), 2)
        m, _, b = self.ch.basic_get(q, auto_ack=False)
        self.assertEqual(b, b"first")
        self.publish(q, b"while-unacked", headers=h)
        self.assertEqual(self.count(q), 1)
        self.ch.basic_ack(m.delivery_tag)
        self.publish(q, b"after-ack", headers=h)
        self.assertEqual(self.bodies(q), [b"other", b"after-ack"])

    def test_purge_frees_values(self):
        q = self.declare_queue(arguments={"x-message-deduplication": True})
        h = {"x-deduplication-header": 7}
        self.publish(q, b"a", headers=h)
        self.ch.queue_purge(q)
        self.publish(q, b"b", headers=h)
        self.assertEqual(self.bodies(q), [b"b"])


if __name__ == "__main__":
    main()
