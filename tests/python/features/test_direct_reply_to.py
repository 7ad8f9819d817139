#!/usr/bin/env python3
"""Direct reply-to (amq.rabbitmq.reply-to).

Behaviour recorded against RabbitMQ 3.10.8.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pika  # noqa: E402
import pika.exceptions  # noqa: E402
from common import FeatureTest, main, pump  # noqa: E402

RT = "amq.rabbitmq.reply-to"
NOT_FOUND = 404
PRECONDITION_FAILED = 406


class DirectReplyTo(FeatureTest):
    def setUp(self):
        super().setUp()
        self.replies = []
        self.rq = self.declare_queue("rpc")
        self.srv_conn = self.new_conn()
        self.srv = self.srv_conn.channel()
        self.srv_returns = []
        self.srv.add_on_return_callback(
            lambda c, m, p, b: self.srv_returns.append((m.reply_code, m.reply_text, m.exchange,
                                                        m.routing_key, b)))

    def start_requester(self, ch=None):
        ch = ch or self.ch
        return ch.basic_consume(RT, lambda c, m, p, b: self.replies.append((m, p, b)), auto_ack=True)

    def request(self, body=b"req", ch=None, **props):
        """Publishes a request with reply_to=amq.rabbitmq.reply-to; the responder reads it."""
        (ch or self.ch).basic_publish("", self.rq, body,
                                      properties=pika.BasicProperties(reply_to=RT, **props))
        m, p, b = self.get_within(self.rq, ch=self.srv)
        self.assertIsNotNone(m)
        return p

    def test_round_trip(self):
        # RabbitMQ: the request's reply_to is rewritten to "amq.rabbitmq.reply-to.<token>";
        # a reply published to the default exchange with that routing key reaches the
        # requester's consumer: exchange "", routing_key = the full token name,
        # redelivered False, the reply's own properties.
        tag = self.start_requester()
        p = self.request(correlation_id="c1")
        self.assertTrue(p.reply_to.startswith(RT + "."), p.reply_to)
        self.assertGreater(len(p.reply_to), len(RT) + 1)
        self.assertEqual(p.correlation_id, "c1")
        self.srv.basic_publish("", p.reply_to, b"resp",
                               properties=pika.BasicProperties(correlation_id="c1", app_id="srv"))
        self.collect(self.replies, 1)
        self.assertEqual(len(self.replies), 1)
        m, rp, b = self.replies[0]
        self.assertEqual((m.exchange, m.routing_key, m.redelivered, m.consumer_tag, b),
                         ("", p.reply_to, False, tag, b"resp"))
        self.assertEqual((rp.correlation_id, rp.app_id), ("c1", "srv"))
        self.assertTrue(self.srv.is_open)

    def test_same_token_for_requests_on_one_channel(self):
        # RabbitMQ 3.10: all requests of one channel carry the same rewritten reply_to.
        self.start_requester()
        a = self.request(b"r1").reply_to
        b = self.request(b"r2").reply_to
        self.assertEqual(a, b)

    def test_several_replies(self):
        self.start_requester()
        p = self.request()
        for i in range(3):
            self.srv.basic_publish("", p.reply_to, b"resp%d" % i)
        self.collect(self.replies, 3)
        self.assertEqual([b for _, _, b in self.replies], [b"resp0", b"resp1", b"resp2"])

    def test_reply_via_other_exchange_not_delivered(self):
        # RabbitMQ: only the default exchange knows the pseudo-queue; via amq.direct the
        # reply is unroutable.
        self.start_requester()
        p = self.request()
        self.srv.basic_publish("amq.direct", p.reply_to, b"resp", mandatory=True)
        self.collect(self.srv_returns, 1, conn=self.srv_conn)
        self.assertEqual(self.srv_returns, [(312, "NO_ROUTE", "amq.direct", p.reply_to, b"resp")])
        self.pump(0.2)
        self.assertEqual(self.replies, [])

    def test_mandatory_reply_delivered_and_returned(self):
        # RabbitMQ 3.10 quirk: a MANDATORY reply to a live requester is delivered AND the
        # publisher also gets basic.return 312 NO_ROUTE (the pseudo-queue is not a routed
        # queue); in confirm mode pika raises UnroutableError.
        self.start_requester()
        p = self.request()
        self.srv.basic_publish("", p.reply_to, b"m1", mandatory=True)
        self.collect(self.replies, 1)
        self.collect(self.srv_returns, 1, conn=self.srv_conn)
        self.assertEqual([b for _, _, b in self.replies], [b"m1"])
        self.assertEqual(self.srv_returns, [(312, "NO_ROUTE", "", p.reply_to, b"m1")])
        cch = self.srv_conn.channel()
        cch.confirm_delivery()
        with self.assertRaises(pika.exceptions.UnroutableError):
            cch.basic_publish("", p.reply_to, b"m2", mandatory=True)
        cch.basic_publish("", p.reply_to, b"m3")   # not mandatory: plain ack
        self.collect(self.replies, 3)
        self.assertEqual([b for _, _, b in self.replies], [b"m1", b"m2", b"m3"])

    def test_consume_with_manual_ack_refused(self):
        # RabbitMQ: 406 "PRECONDITION_FAILED - reply consumer cannot acknowledge".
        ch = self.new_channel()
        e = self.assertChannelError(PRECONDITION_FAILED, ch.basic_consume, RT, lambda *a: None,
                                    auto_ack=False)
        self.assertEqual(e.reply_text, "PRECONDITION_FAILED - reply consumer cannot acknowledge")

    def test_consume_twice_refused(self):
        # RabbitMQ: 406 "PRECONDITION_FAILED - reply consumer already set".
        ch = self.new_channel()
        ch.basic_consume(RT, lambda *a: None, auto_ack=True)
        e = self.assertChannelError(PRECONDITION_FAILED, ch.basic_consume, RT, lambda *a: None,
                                    auto_ack=True)
        self.assertEqual(e.reply_text, "PRECONDITION_FAILED - reply consumer already set")

    def test_publish_reply_to_without_consumer_refused(self):
        # RabbitMQ: publishing with reply_to=amq.rabbitmq.reply-to on a channel that is not
        # consuming from it -> 406 "PRECONDITION_FAILED - fast reply consumer does not exist".
        ch = self.new_channel()
        ch.basic_publish("", self.rq, b"r", properties=pika.BasicProperties(reply_to=RT))
        e = self.assertChannelError(PRECONDITION_FAILED, ch.queue_declare, self.rq, passive=True)
        self.assertEqual(e.reply_text, "PRECONDITION_FAILED - fast reply consumer does not exist")
        self.assertEqual(self.count(self.rq), 0)

    def test_consumer_is_per_channel(self):
        # RabbitMQ: a reply consumer on ANOTHER channel of the same connection does not count.
        self.start_requester()
        ch = self.new_channel()
        ch.basic_publish("", self.rq, b"r", properties=pika.BasicProperties(reply_to=RT))
        e = self.assertChannelError(PRECONDITION_FAILED, ch.queue_declare, self.rq, passive=True)
        self.assertEqual(e.reply_text, "PRECONDITION_FAILED - fast reply consumer does not exist")

    def test_publish_after_cancel_refused(self):
        ch = self.new_channel()
        tag = ch.basic_consume(RT, lambda *a: None, auto_ack=True)
        ch.basic_cancel(tag)
        ch.basic_publish("", self.rq, b"r", properties=pika.BasicProperties(reply_to=RT))
        e = self.assertChannelError(PRECONDITION_FAILED, ch.queue_declare, self.rq, passive=True)
        self.assertEqual(e.reply_text, "PRECONDITION_FAILED - fast reply consumer does not exist")

    def test_custom_suffix_reply_to_not_rewritten(self):
        # RabbitMQ: only the exact name is rewritten; "amq.rabbitmq.reply-to.custom" passes
        # through unchanged.
        self.start_requester()
        self.ch.basic_publish("", self.rq, b"r",
                              properties=pika.BasicProperties(reply_to=RT + ".custom"))
        m, p, b = self.get_within(self.rq, ch=self.srv)
        self.assertEqual(p.reply_to, RT + ".custom")

    def test_reply_to_gone_requester_dropped(self):
        # RabbitMQ: replying after the requester's connection closed: silently dropped, the
        # responder's channel stays open; with mandatory -> basic.return 312 NO_ROUTE.
        req_conn = self.new_conn()
        rch = req_conn.channel()
        self.start_requester(ch=rch)
        p = self.request(ch=rch)
        req_conn.close()
        self.srv.basic_publish("", p.reply_to, b"late")
        self.srv.basic_publish("", p.reply_to, b"late-m", mandatory=True)
        self.collect(self.srv_returns, 1, conn=self.srv_conn)
        pump(self.srv_conn, 0.2)
        self.assertEqual(self.srv_returns, [(312, "NO_ROUTE", "", p.reply_to, b"late-m")])
        self.assertTrue(self.srv.is_open)
        self.srv.queue_declare(self.rq, passive=True)
        # and a passive declare of that reply name now fails with 404
        ch = self.srv_conn.channel()
        e = self.assertChannelError(NOT_FOUND, ch.queue_declare, p.reply_to, passive=True)
        self.assertEqual(e.reply_text, "NOT_FOUND - no queue '%s' in vhost '/'" % p.reply_to)

    def test_reply_after_cancel_not_delivered(self):
        # RabbitMQ: once the reply consumer is cancelled, replies are dropped (mandatory ->
        # 312 NO_ROUTE).
        tag = self.start_requester()
        p = self.request()
        self.ch.basic_cancel(tag)
        self.srv.basic_publish("", p.reply_to, b"x", mandatory=True)
        self.collect(self.srv_returns, 1, conn=self.srv_conn)
        self.assertEqual(self.srv_returns, [(312, "NO_ROUTE", "", p.reply_to, b"x")])
        self.pump(0.2)
        self.assertEqual(self.replies, [])

    def test_passive_declare_pseudo_queue(self):
        # RabbitMQ: queue.declare (passive or not) of "amq.rabbitmq.reply-to" answers
        # declare-ok with message_count 0 and consumer_count 1 -- even with no reply
        # consumer anywhere (on a fresh connection).
        c = self.new_conn()
        ok = c.channel().queue_declare(RT, passive=True).method
        self.assertEqual((ok.queue, ok.message_count, ok.consumer_count), (RT, 0, 1))
        ok = c.channel().queue_declare(RT).method
        self.assertEqual((ok.queue, ok.message_count, ok.consumer_count), (RT, 0, 1))

    def test_passive_declare_live_reply_name(self):
        # RabbitMQ: passive declare of a live requester's reply name (from any connection)
        # -> declare-ok, message_count 0, consumer_count 1.
        self.start_requester()
        p = self.request()
        ok = self.srv.queue_declare(p.reply_to, passive=True).method
        self.assertEqual((ok.queue, ok.message_count, ok.consumer_count), (p.reply_to, 0, 1))

    def test_bogus_reply_name(self):
        # RabbitMQ: "amq.rabbitmq.reply-to.garbage": passive or active declare -> 404;
        # a mandatory publish to it is returned 312; no channel error.
        name = RT + ".garbage"
        for passive in (True, False):
            ch = self.new_channel()
            e = self.assertChannelError(NOT_FOUND, ch.queue_declare, name, passive=passive)
            self.assertEqual(e.reply_text, "NOT_FOUND - no queue '%s' in vhost '/'" % name)
        self.srv.basic_publish("", name, b"g", mandatory=True)
        self.collect(self.srv_returns, 1, conn=self.srv_conn)
        self.assertEqual(self.srv_returns, [(312, "NO_ROUTE", "", name, b"g")])
        self.assertTrue(self.srv.is_open)

    def test_publish_to_pseudo_queue_name_itself(self):
        # RabbitMQ: routing key "amq.rabbitmq.reply-to" routes nowhere (312 if mandatory).
        self.srv.basic_publish("", RT, b"g", mandatory=True)
        self.collect(self.srv_returns, 1, conn=self.srv_conn)
        self.assertEqual(self.srv_returns, [(312, "NO_ROUTE", "", RT, b"g")])

    def test_basic_get_refused(self):
        # RabbitMQ: basic.get on amq.rabbitmq.reply-to -> 404 NOT_FOUND.
        ch = self.new_channel()
        e = self.assertChannelError(NOT_FOUND, ch.basic_get, RT)
        self.assertEqual(e.reply_text, "NOT_FOUND - no queue '%s' in vhost '/'" % RT)


if __name__ == "__main__":
    main()
