#!/usr/bin/env python3
"""Queue length limits: x-max-length, x-max-length-bytes and x-overflow.

Behaviour recorded against RabbitMQ 3.10.8.
"""
import decimal
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pika  # noqa: E402
import pika.exceptions  # noqa: E402
from common import FeatureTest, main, pump, uname  # noqa: E402

PRECONDITION_FAILED = 406


class DropHead(FeatureTest):
    def test_max_length_drops_oldest(self):
        # RabbitMQ: default overflow is drop-head: the oldest ready messages are dropped.
        q = self.declare_queue(arguments={"x-max-length": 3})
        for i in range(6):
            self.publish(q, b"m%d" % i)
        self.assertEqual(self.count(q), 3)
        self.assertEqual(self.bodies(q), [b"m3", b"m4", b"m5"])

    def test_explicit_drop_head(self):
        q = self.declare_queue(arguments={"x-max-length": 2, "x-overflow": "drop-head"})
        for i in range(5):
            self.publish(q, b"m%d" % i)
        self.assertEqual(self.bodies(q), [b"m3", b"m4"])

    def test_max_length_bytes_counts_body_bytes(self):
        # RabbitMQ: x-max-length-bytes sums body sizes only; oldest dropped while over.
        # 10-byte limit: aaaa(4) bbbb(8) cc(10) ddd(13 -> drop aaaa -> 9).
        q = self.declare_queue(arguments={"x-max-length-bytes": 10})
        for b in [b"aaaa", b"bbbb", b"cc", b"ddd"]:
            self.publish(q, b)
        self.assertEqual(self.bodies(q), [b"bbbb", b"cc", b"ddd"])

    def test_max_length_bytes_headers_not_counted(self):
        # RabbitMQ: properties/headers are not counted, only the body.
        q = self.declare_queue(arguments={"x-max-length-bytes": 4})
        self.publish(q, b"ab", headers={"big": "x" * 500})
        self.publish(q, b"cd", headers={"big": "y" * 500})
        self.assertEqual(self.bodies(q), [b"ab", b"cd"])

    def test_max_length_bytes_oversized_message_dropped_itself(self):
        # RabbitMQ: a message larger than the limit on its own empties the queue and is
        # dropped as well (drop-head removes from the head until under the limit).
        q = self.declare_queue(arguments={"x-max-length-bytes": 10})
        self.publish(q, b"aaaa")
        self.publish(q, b"bbbb")
        self.publish(q, b"x" * 11)
        self.assertEqual(self.count(q), 0)
        self.publish(q, b"f")
        self.assertEqual(self.bodies(q), [b"f"])

    def test_empty_bodies_with_bytes_limit(self):
        # RabbitMQ: zero-length bodies weigh nothing for x-max-length-bytes.
        q = self.declare_queue(arguments={"x-max-length-bytes": 1})
        for _ in range(5):
            self.publish(q, b"")
        self.assertEqual(self.count(q), 5)

    def test_both_limits_apply(self):
        # RabbitMQ: with both limits the stricter one applies at each publish.
        q = self.declare_queue(arguments={"x-max-length": 3, "x-max-length-bytes": 6})
        for b in [b"aa", b"bb", b"cc", b"dd"]:   # length limit: drops aa
            self.publish(q, b)
        self.publish(q, b"eeee")                   # bytes: cc dd eeee = 8 > 6 -> drop bb, cc
        self.assertEqual(self.bodies(q), [b"dd", b"eeee"])

    def test_unacked_messages_not_counted(self):
        # RabbitMQ: only ready messages count towards x-max-length; messages delivered
        # and unacknowledged do not.
        q = self.declare_queue(arguments={"x-max-length": 2})
        self.publish(q, b"a")
        self.publish(q, b"b")
        cch = self.conn.channel()
        cch.basic_qos(prefetch_count=2)
        got = []
        cch.basic_consume(q, lambda c, m, p, b: got.append(b))
        self.collect(got, 2)
        self.assertEqual(got, [b"a", b"b"])
        self.publish(q, b"c")
        self.publish(q, b"d")
        self.assertEqual(self.count(q), 2)
        # Closing the channel requeues a, b at the head; the limit is enforced again on
        # requeue and drop-head removes the head: the requeued a, b are dropped.
        cch.close()
        time.sleep(0.3)
        self.assertEqual(self.bodies(q), [b"c", b"d"])

    def test_max_length_zero_drop_head(self):
        # RabbitMQ: x-max-length 0 (drop-head): with no consumer every publish is dropped
        # (the publish is still confirmed with basic.ack).
        q = self.declare_queue(arguments={"x-max-length": 0})
        self.publish(q, b"z")  # confirm channel: no NackError
        self.assertEqual(self.count(q), 0)
        self.assertIsNone(self.get(q)[0])

    def test_max_length_zero_drop_head_ready_consumer(self):
        # RabbitMQ: x-max-length 0 (drop-head) still delivers to a consumer ready right away.
        cons = self.new_conn()
        cch = cons.channel()
        q = self.declare_queue(arguments={"x-max-length": 0}, ch=cch)
        got = []
        cch.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
        self.publish(q, b"z")
        self.collect(got, 1, conn=cons)
        self.assertEqual(got, [b"z"])


class RejectPublish(FeatureTest):
    def test_reject_publish_nacks_with_confirms(self):
        # RabbitMQ: x-overflow reject-publish: once full, each further publish is
        # basic.nack'ed (pika: NackError); the queue keeps the OLDEST messages.
        q = self.declare_queue(arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
        self.publish(q, b"m0")
        self.publish(q, b"m1")
        for i in (2, 3):
            with self.assertRaises(pika.exceptions.NackError):
                self.publish(q, b"m%d" % i)
        self.assertTrue(self.pch.is_open)
        self.assertEqual(self.bodies(q), [b"m0", b"m1"])
        # Once there is room again publishes are accepted.
        self.publish(q, b"m4")
        self.assertEqual(self.bodies(q), [b"m4"])

    def test_reject_publish_without_confirms_silently_dropped(self):
        # RabbitMQ: without confirm mode the overflowing publish is dropped silently;
        # the channel stays open.
        q = self.declare_queue(arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
        ch = self.new_channel()
        for i in range(4):
            ch.basic_publish("", q, b"m%d" % i)
        self.assertEqual(self.wait_count(q, 2), 2)
        time.sleep(0.2)
        self.assertTrue(ch.is_open)
        self.assertEqual(self.bodies(q, ch=ch), [b"m0", b"m1"])

    def test_reject_publish_bytes(self):
        # RabbitMQ: reject-publish with x-max-length-bytes: a publish that would take the
        # total over the limit is nacked.
        q = self.declare_queue(arguments={"x-max-length-bytes": 5, "x-overflow": "reject-publish"})
        self.publish(q, b"abc")
        self.publish(q, b"de")
        with self.assertRaises(pika.exceptions.NackError):
            self.publish(q, b"f")
        self.assertEqual(self.bodies(q), [b"abc", b"de"])

    def test_reject_publish_max_length_zero(self):
        # RabbitMQ: x-max-length 0 with reject-publish nacks every publish, even when a
        # consumer is ready to take it.
        cons = self.new_conn()
        cch = cons.channel()
        q = self.declare_queue(arguments={"x-max-length": 0, "x-overflow": "reject-publish"}, ch=cch)
        got = []
        cch.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
        with self.assertRaises(pika.exceptions.NackError):
            self.publish(q, b"z")
        pump(cons, 0.3)
        self.assertEqual(got, [])

    def test_reject_publish_does_not_dead_letter(self):
        # RabbitMQ: plain reject-publish never dead-letters, even with a DLX configured.
        dlq = self.declare_queue("dlq")
        q = self.declare_queue(arguments={"x-max-length": 1, "x-overflow": "reject-publish",
                                          "x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": dlq})
        self.publish(q, b"m0")
        with self.assertRaises(pika.exceptions.NackError):
            self.publish(q, b"m1")
        time.sleep(0.3)
        self.assertEqual(self.bodies(dlq), [])
        self.assertEqual(self.bodies(q), [b"m0"])

    def test_reject_publish_dlx_dead_letters_rejected_publish(self):
        # RabbitMQ 3.10: reject-publish-dlx nacks the overflowing publish (NackError) AND
        # dead-letters the rejected message with reason "maxlen". x-death: count 1,
        # exchange = the exchange it was published to ("" here), routing-keys = [its key].
        dlq = self.declare_queue("dlq")
        q = self.declare_queue(arguments={"x-max-length": 2, "x-overflow": "reject-publish-dlx",
                                          "x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": dlq})
        self.publish(q, b"m0")
        self.publish(q, b"m1")
        for i in (2, 3):
            with self.assertRaises(pika.exceptions.NackError):
                self.publish(q, b"m%d" % i)
        self.assertEqual(self.bodies(q), [b"m0", b"m1"])
        self.assertEqual(self.wait_count(dlq, 2), 2)
        got = self.drain(dlq)
        self.assertEqual([b for _, b in got], [b"m2", b"m3"])
        for props, _ in got:
            h = props.headers
            self.assertEqual(set(h), {"x-death", "x-first-death-exchange",
                                      "x-first-death-queue", "x-first-death-reason"})
            self.assertEqual(len(h["x-death"]), 1)
            d = h["x-death"][0]
            self.assertEqual(set(d), {"count", "reason", "queue", "time", "exchange", "routing-keys"})
            self.assertEqual((d["count"], d["reason"], d["queue"], d["exchange"], d["routing-keys"]),
                             (1, "maxlen", q, "", [q]))
            self.assertEqual(h["x-first-death-reason"], "maxlen")
            self.assertEqual(h["x-first-death-queue"], q)
            self.assertEqual(h["x-first-death-exchange"], "")

    def test_reject_publish_dlx_without_dlx_just_rejects(self):
        # RabbitMQ: reject-publish-dlx without a dead-letter exchange behaves as reject-publish.
        q = self.declare_queue(arguments={"x-max-length": 1, "x-overflow": "reject-publish-dlx"})
        self.publish(q, b"m0")
        with self.assertRaises(pika.exceptions.NackError):
            self.publish(q, b"m1")
        self.assertEqual(self.bodies(q), [b"m0"])


class Validation(FeatureTest):
    def _bad(self, args, key, detail):
        name = uname("bad")
        e = self.declare_error(PRECONDITION_FAILED, name, args)
        self.assertEqual(
            e.reply_text,
            "PRECONDITION_FAILED - invalid arg '%s' for queue '%s' in vhost '/': %s" % (key, name, detail))
        self.assertFalse(self.queue_exists(name))

    # RabbitMQ: all of these close the channel with 406 PRECONDITION_FAILED at queue.declare.
    def test_negative_max_length(self):
        self._bad({"x-max-length": -1}, "x-max-length", "{value_negative,-1}")

    def test_string_max_length(self):
        self._bad({"x-max-length": "a"}, "x-max-length", '"expected integer, got longstr"')

    def test_bool_max_length(self):
        self._bad({"x-max-length": True}, "x-max-length", '"expected integer, got bool"')

    def test_decimal_max_length(self):
        self._bad({"x-max-length": decimal.Decimal(1)}, "x-max-length", '"expected integer, got decimal"')

    def test_negative_max_length_bytes(self):
        self._bad({"x-max-length-bytes": -1}, "x-max-length-bytes", "{value_negative,-1}")

    def test_invalid_overflow_value(self):
        self._bad({"x-overflow": "bogus"}, "x-overflow", "invalid_overflow")

    def test_overflow_is_case_sensitive(self):
        self._bad({"x-overflow": "Reject-Publish"}, "x-overflow", "invalid_overflow")

    def test_overflow_wrong_type(self):
        # pika sends a small int as a signed 32-bit ('I', RabbitMQ type name signedint).
        self._bad({"x-overflow": 1}, "x-overflow", "{unacceptable_type,signedint}")

    def test_zero_limits_and_all_overflow_values_accepted(self):
        self.declare_queue(arguments={"x-max-length": 0})
        self.declare_queue(arguments={"x-max-length-bytes": 0})
        for ov in ("drop-head", "reject-publish", "reject-publish-dlx"):
            self.declare_queue(arguments={"x-overflow": ov})


if __name__ == "__main__":
    main()
