#!/usr/bin/env python3
"""Message TTL (x-message-ttl, per-message expiration) and queue TTL (x-expires).

Behaviour recorded against RabbitMQ 3.10.8.
"""
import decimal
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pika  # noqa: E402
from common import FeatureTest, main, pump, uname  # noqa: E402

NOT_FOUND = 404
PRECONDITION_FAILED = 406


class MessageTTL(FeatureTest):
    def test_queue_ttl_expires_unconsumed_messages(self):
        # RabbitMQ: messages older than x-message-ttl are dropped; the passive declare's
        # message_count falls to 0 and basic.get answers get-empty.
        q = self.declare_queue(arguments={"x-message-ttl": 200})
        for i in range(3):
            self.publish(q, b"m%d" % i)
        self.assertEqual(self.wait_count(q, 0, timeout=3.0), 0)
        m, _, _ = self.get(q)
        self.assertIsNone(m)

    def test_queue_ttl_message_available_before_expiry(self):
        # RabbitMQ: a message is deliverable while its TTL has not run out.
        q = self.declare_queue(arguments={"x-message-ttl": 60000})
        self.publish(q, b"alive")
        m, _, b = self.get_within(q)
        self.assertIsNotNone(m)
        self.assertEqual(b, b"alive")

    def test_basic_get_empty_after_ttl(self):
        # RabbitMQ: after the TTL basic.get returns nothing (the message was not redelivered).
        q = self.declare_queue(arguments={"x-message-ttl": 200})
        self.publish(q, b"x")
        time.sleep(0.6)
        # an expired message is never handed out, whether or not it was purged yet
        self.assertIsNone(self.get(q)[0])
        self.assertEqual(self.wait_count(q, 0), 0)

    def test_per_message_expiration(self):
        # RabbitMQ: the `expiration` property (ms, as a string) expires that message only.
        q = self.declare_queue()
        self.publish(q, b"short", expiration="200")
        self.publish(q, b"long", expiration="60000")
        self.publish(q, b"none")
        self.assertEqual(self.wait_count(q, 2, timeout=3.0), 2)
        got = self.drain(q)
        self.assertEqual([b for _, b in got], [b"long", b"none"])
        # The expiration property is delivered unchanged.
        self.assertEqual(got[0][0].expiration, "60000")
        self.assertIsNone(got[1][0].expiration)

    def test_shorter_of_queue_ttl_and_expiration_wins_expiration_shorter(self):
        # RabbitMQ: effective TTL = min(x-message-ttl, expiration).
        q = self.declare_queue(arguments={"x-message-ttl": 60000})
        self.publish(q, b"a", expiration="200")
        self.publish(q, b"b")
        self.assertEqual(self.wait_count(q, 1, timeout=3.0), 1)
        self.assertEqual(self.bodies(q), [b"b"])

    def test_shorter_of_queue_ttl_and_expiration_wins_queue_ttl_shorter(self):
        # RabbitMQ: a long expiration does not extend the queue's x-message-ttl.
        q = self.declare_queue(arguments={"x-message-ttl": 200})
        self.publish(q, b"a", expiration="60000")
        self.assertEqual(self.wait_count(q, 0, timeout=3.0), 0)
        self.assertIsNone(self.get(q)[0])

    def test_expired_message_behind_live_head_never_delivered(self):
        # RabbitMQ: long(60s), short(200ms), none. After 600 ms only "long" and "none" are
        # delivered. (RabbitMQ expires lazily from the head: the passive-declare count stays
        # 3 until "long" is taken; that count is deliberately not asserted here.)
        q = self.declare_queue()
        self.publish(q, b"long", expiration="60000")
        self.publish(q, b"short", expiration="200")
        self.publish(q, b"none")
        time.sleep(0.6)
        self.assertEqual(self.bodies(q), [b"long", b"none"])

    def _ttl0_consumer_case(self, args, props):
        cons_conn = self.new_conn()
        cch = cons_conn.channel()
        q = self.declare_queue(arguments=args, ch=cch)
        got = []
        cch.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
        pub_conn = self.new_conn()
        pch = pub_conn.channel()
        pch.basic_publish("", q, b"now", properties=props)
        self.collect(got, 1, timeout=3.0, conn=cons_conn)
        self.assertEqual(got, [b"now"])

    def test_queue_ttl_zero_delivered_to_ready_consumer(self):
        # RabbitMQ: x-message-ttl 0 -> the message is delivered if a consumer can take it now.
        self._ttl0_consumer_case({"x-message-ttl": 0}, None)

    def test_expiration_zero_delivered_to_ready_consumer(self):
        # RabbitMQ: expiration "0" -> delivered if a consumer can take it now.
        self._ttl0_consumer_case(None, pika.BasicProperties(expiration="0"))

    def test_queue_ttl_zero_dropped_without_consumer(self):
        # RabbitMQ: x-message-ttl 0 and no consumer -> dropped at once, never enqueued.
        q = self.declare_queue(arguments={"x-message-ttl": 0})
        self.publish(q, b"gone")
        time.sleep(0.3)
        self.assertEqual(self.count(q), 0)
        self.assertIsNone(self.get(q)[0])

    def test_expiration_zero_dropped_without_consumer(self):
        # RabbitMQ: expiration "0" and no consumer -> dropped at once.
        q = self.declare_queue()
        self.publish(q, b"gone", expiration="0")
        self.publish(q, b"kept")
        self.assertEqual(self.wait_count(q, 1, timeout=3.0), 1)
        time.sleep(0.2)
        self.assertEqual(self.bodies(q), [b"kept"])

    def test_ttl_zero_dropped_when_consumer_has_no_room(self):
        # RabbitMQ: with a consumer whose prefetch (1) is full, x-message-ttl 0 messages
        # that cannot be delivered right away are dropped (not queued for later).
        cons_conn = self.new_conn()
        cch = cons_conn.channel()
        cch.basic_qos(prefetch_count=1)
        q = self.declare_queue(arguments={"x-message-ttl": 0}, ch=cch)
        got = []
        cch.basic_consume(q, lambda c, m, p, b: got.append((m.delivery_tag, b)), auto_ack=False)
        self.publish(q, b"first")
        self.collect(got, 1, timeout=3.0, conn=cons_conn)
        self.assertEqual([b for _, b in got], [b"first"])
        self.publish(q, b"second")  # confirmed: handled by the queue before the ack below
        self.pump(0.3, conn=cons_conn)
        cch.basic_ack(got[0][0])
        self.pump(0.4, conn=cons_conn)
        self.assertEqual([b for _, b in got], [b"first"])
        self.assertEqual(self.count(q), 0)

    def test_plus_sign_expiration_accepted(self):
        # RabbitMQ parses the expiration with Erlang's list_to_integer: "+5000" is accepted.
        q = self.declare_queue()
        self.publish(q, b"x", expiration="+5000")
        m, p, b = self.get_within(q)
        self.assertEqual(b, b"x")
        self.assertEqual(p.expiration, "+5000")


class InvalidExpiration(FeatureTest):
    def _bad(self, value, text):
        q = self.declare_queue()
        ch = self.new_channel()
        ch.basic_publish("", q, b"x", properties=pika.BasicProperties(expiration=value))
        # The publish is asynchronous: the channel.close arrives at the next synchronous call.
        e = self.assertChannelError(PRECONDITION_FAILED, ch.queue_declare, q, passive=True)
        self.assertEqual(e.reply_text, text)
        self.assertEqual(self.count(q), 0)

    # RabbitMQ: channel.close 406 PRECONDITION_FAILED with the Erlang parse error in the text.
    def test_negative(self):
        self._bad("-1", "PRECONDITION_FAILED - invalid expiration '-1': {value_negative,-1}")

    def test_not_a_number(self):
        self._bad("abc", "PRECONDITION_FAILED - invalid expiration 'abc': no_integer")

    def test_fraction(self):
        self._bad("1.5", "PRECONDITION_FAILED - invalid expiration '1.5': {leftover_string,\".5\"}")

    def test_empty(self):
        self._bad("", "PRECONDITION_FAILED - invalid expiration '': no_integer")

    def test_leading_space(self):
        self._bad(" 100", "PRECONDITION_FAILED - invalid expiration ' 100': no_integer")

    def test_too_large(self):
        # RabbitMQ: the maximum is 315360000000 ms (10 years); one more -> 406.
        q = self.declare_queue()
        self.publish(q, b"x", expiration="315360000000")
        self.assertEqual(self.wait_count(q, 1), 1)
        ch = self.new_channel()
        ch.basic_publish("", q, b"y", properties=pika.BasicProperties(expiration="315360000001"))
        e = self.assertChannelError(PRECONDITION_FAILED, ch.queue_declare, q, passive=True)
        self.assertTrue(e.reply_text.startswith(
            "PRECONDITION_FAILED - invalid expiration '315360000001': {value_too_large,"), e.reply_text)

    def test_connection_survives(self):
        # RabbitMQ: only the channel is closed; the connection stays usable.
        q = self.declare_queue()
        ch = self.new_channel()
        ch.basic_publish("", q, b"x", properties=pika.BasicProperties(expiration="abc"))
        self.assertChannelError(PRECONDITION_FAILED, ch.queue_declare, q, passive=True)
        self.assertTrue(self.conn.is_open)
        ch2 = self.new_channel()
        ch2.queue_declare(q, passive=True)


class MessageTTLValidation(FeatureTest):
    def _bad(self, value, detail):
        name = uname("bad")
        e = self.declare_error(PRECONDITION_FAILED, name, {"x-message-ttl": value})
        self.assertEqual(
            e.reply_text,
            "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue '%s' in vhost '/': %s"
            % (name, detail))
        self.assertFalse(self.queue_exists(name))

    def test_negative(self):
        # RabbitMQ: 406, "{value_negative,-1}".
        self._bad(-1, "{value_negative,-1}")

    def test_string(self):
        # RabbitMQ: 406, "expected integer, got longstr".
        self._bad("abc", '"expected integer, got longstr"')

    def test_bool(self):
        self._bad(True, '"expected integer, got bool"')

    def test_decimal(self):
        self._bad(decimal.Decimal("100"), '"expected integer, got decimal"')

    def test_too_large(self):
        # RabbitMQ: maximum 315360000000; above -> {value_too_large,N}.
        self._bad(315360000001, "{value_too_large,315360000001}")

    def test_limits_accepted(self):
        # RabbitMQ: 0 and 315360000000 are valid.
        self.declare_queue(arguments={"x-message-ttl": 0})
        self.declare_queue(arguments={"x-message-ttl": 315360000000})

    def test_redeclare_with_different_ttl(self):
        # RabbitMQ: redeclaring with another x-message-ttl -> 406 inequivalent arg.
        q = self.declare_queue(arguments={"x-message-ttl": 1000})
        ch = self.new_channel()
        e = self.assertChannelError(PRECONDITION_FAILED, ch.queue_declare, q,
                                    arguments={"x-message-ttl": 2000})
        self.assertEqual(
            e.reply_text,
            "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '%s' in vhost '/': "
            "received '2000' but current is '1000'" % q)


class QueueExpires(FeatureTest):
    def test_unused_queue_deleted(self):
        # RabbitMQ: an unused queue with x-expires is deleted after that time; passive
        # declare then answers 404 NOT_FOUND.
        q = self.declare_queue(arguments={"x-expires": 300})
        self.assertTrue(self.wait_gone(q))
        ch = self.new_channel()
        e = self.assertChannelError(NOT_FOUND, ch.queue_declare, q, passive=True)
        self.assertEqual(e.reply_text, "NOT_FOUND - no queue '%s' in vhost '/'" % q)

    def test_unused_queue_with_messages_deleted(self):
        # RabbitMQ: messages do not keep a queue alive (publishing is not "use").
        q = self.declare_queue(arguments={"x-expires": 300})
        self.publish(q, b"x")
        self.assertTrue(self.wait_gone(q))

    def test_consumer_keeps_queue_alive(self):
        # RabbitMQ: while a consumer exists the queue never expires; after it is
        # cancelled the x-expires timer starts again.
        cons_conn = self.new_conn()
        cch = cons_conn.channel()
        q = self.declare_queue(arguments={"x-expires": 300}, ch=cch)
        tag = cch.basic_consume(q, lambda *a: None, auto_ack=True)
        pump(cons_conn, 0.8)
        self.assertTrue(self.queue_exists(q))
        cch.basic_cancel(tag)
        self.assertTrue(self.wait_gone(q))

    def test_basic_get_resets_timer(self):
        # RabbitMQ: basic.get counts as use and restarts the x-expires timer.
        q = self.declare_queue(arguments={"x-expires": 500})
        t = time.time()
        while time.time() - t < 1.2:   # well past 500 ms in total
            self.ch.basic_get(q)
            time.sleep(0.1)
        self.assertTrue(self.queue_exists(q))

    def test_declare_resets_timer(self):
        # RabbitMQ: queue.declare (also passive) restarts the x-expires timer.
        q = self.declare_queue(arguments={"x-expires": 500})
        t = time.time()
        while time.time() - t < 1.2:   # well past 500 ms in total
            self.ch.queue_declare(q, passive=True)
            time.sleep(0.1)
        self.assertTrue(self.queue_exists(q))

    def test_passive_declare_does_not_renew_a_quorum_queue(self):
        # RabbitMQ 3.10.8: a declare restarts a classic queue's x-expires timer (above)
        # but not a quorum queue's, whose state machine counts only consumers and
        # basic.get: declared passively every 100 ms, it is gone.
        q = self.declare_queue(arguments={"x-queue-type": "quorum", "x-expires": 500},
                               durable=True)
        gone_at = None
        t = time.time()
        while time.time() - t < 8 and gone_at is None:
            if not self.queue_exists(q):
                gone_at = time.time() - t
            time.sleep(0.1)
        self.assertIsNotNone(gone_at, "passive declares kept the quorum queue in use")

    def test_active_declare_does_not_renew_a_quorum_queue(self):
        # RabbitMQ 3.10.8: nor does an active declare (same arguments): the queue expires
        # and the next declare makes a new, empty one.
        args = {"x-queue-type": "quorum", "x-expires": 1000}
        q = self.declare_queue(arguments=args, durable=True)
        self.publish(q, b"marker")
        counts = []
        t = time.time()
        while time.time() - t < 10:   # RabbitMQ judges expiry at its 5 s tick
            ok = self.ch.queue_declare(q, arguments=args, durable=True)
            counts.append(ok.method.message_count)
            time.sleep(0.2)
        self.assertEqual(counts[0], 1)
        self.assertEqual(counts[-1], 0, "declares kept the quorum queue: %s" % counts)

    def test_invalid_values(self):
        # RabbitMQ: x-expires must be a positive integer: 0 -> {value_zero,0},
        # -1 -> {value_negative,-1}, string -> "expected integer, got longstr".
        for value, detail in [(0, "{value_zero,0}"), (-1, "{value_negative,-1}"),
                              ("abc", '"expected integer, got longstr"')]:
            name = uname("bad")
            e = self.declare_error(PRECONDITION_FAILED, name, {"x-expires": value})
            self.assertEqual(
                e.reply_text,
                "PRECONDITION_FAILED - invalid arg 'x-expires' for queue '%s' in vhost '/': %s"
                % (name, detail))


if __name__ == "__main__":
    main()
