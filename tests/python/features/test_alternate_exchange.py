#!/usr/bin/env python3
"""Alternate exchanges (alternate-exchange argument of exchange.declare).

Behaviour recorded against RabbitMQ 3.10.8.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pika  # noqa: E402
import pika.exceptions  # noqa: E402
from common import FeatureTest, main, uname  # noqa: E402

PRECONDITION_FAILED = 406


class AlternateExchange(FeatureTest):
    def setUp(self):
        super().setUp()
        self.returns = []
        self.ch.add_on_return_callback(
            lambda c, m, p, b: self.returns.append((m.reply_code, m.reply_text, m.exchange,
                                                    m.routing_key, b)))

    def mpublish(self, exchange, rk, body):
        self.ch.basic_publish(exchange, rk, body, mandatory=True)

    def setup_ae(self, ae_type="fanout"):
        ae = self.declare_exchange("ae", ae_type)
        aq = self.declare_queue("aq")
        self.ch.queue_bind(aq, ae, "#" if ae_type == "topic" else "")
        x = self.declare_exchange("x", "direct", arguments={"alternate-exchange": ae})
        xq = self.declare_queue("xq")
        self.ch.queue_bind(xq, x, "k")
        return ae, aq, x, xq

    def test_unroutable_goes_to_ae_routable_does_not(self):
        # RabbitMQ: routable messages go to the exchange's own queues only; unroutable ones
        # are routed by the AE. The delivery keeps the ORIGINAL exchange name and routing key.
        ae, aq, x, xq = self.setup_ae()
        self.publish("k", b"routed", exchange=x)
        self.publish("other", b"unrouted", exchange=x)
        m, _, b = self.get_within(xq)
        self.assertEqual((m.exchange, m.routing_key, b), (x, "k", b"routed"))
        m, p, b = self.get_within(aq)
        self.assertEqual((m.exchange, m.routing_key, b), (x, "other", b"unrouted"))
        self.assertIsNone(p.headers)
        self.assertIsNone(self.get(aq)[0])
        self.assertIsNone(self.get(xq)[0])

    def test_mandatory_routed_via_ae_not_returned(self):
        # RabbitMQ: a mandatory publish that only the AE routes is NOT returned, and in
        # confirm mode it is acked.
        ae, aq, x, xq = self.setup_ae()
        self.mpublish(x, "other", b"via-ae")
        self.pump(0.4)
        self.assertEqual(self.returns, [])
        self.pch.basic_publish(x, "other2", b"confirmed", mandatory=True)  # no UnroutableError
        self.assertEqual(self.wait_count(aq, 2), 2)
        self.assertEqual(self.bodies(aq), [b"via-ae", b"confirmed"])

    def test_ae_that_does_not_route_returns_312(self):
        # RabbitMQ: if the AE does not route either, a mandatory message comes back with
        # basic.return 312 NO_ROUTE naming the ORIGINAL exchange and routing key.
        ae = self.declare_exchange("ae", "direct")
        x = self.declare_exchange("x", "direct", arguments={"alternate-exchange": ae})
        self.mpublish(x, "zz", b"lost")
        self.collect(self.returns, 1)
        self.assertEqual(self.returns, [(312, "NO_ROUTE", x, "zz", b"lost")])

    def test_topic_ae_routes_by_original_key(self):
        # RabbitMQ: the AE routes with the original routing key (a.b matches a.*; c.d does not
        # and is returned).
        aet = self.declare_exchange("aet", "topic")
        tq = self.declare_queue("tq")
        self.ch.queue_bind(tq, aet, "a.*")
        x = self.declare_exchange("x", "direct", arguments={"alternate-exchange": aet})
        self.mpublish(x, "a.b", b"t1")
        self.mpublish(x, "c.d", b"t2")
        self.collect(self.returns, 1)
        self.assertEqual(self.returns, [(312, "NO_ROUTE", x, "c.d", b"t2")])
        self.assertEqual(self.bodies(tq), [b"t1"])

    def test_nonexistent_ae(self):
        # RabbitMQ: declaring with an AE that does not exist is allowed; unroutable messages
        # are then dropped (mandatory -> 312 NO_ROUTE), no channel error.
        x = self.declare_exchange("x", "direct", arguments={"alternate-exchange": uname("nope")})
        self.mpublish(x, "zz", b"lost")
        self.ch.basic_publish(x, "zz", b"lost-quietly")
        self.collect(self.returns, 1)
        self.pump(0.2)
        self.assertEqual(self.returns, [(312, "NO_ROUTE", x, "zz", b"lost")])
        self.assertTrue(self.ch.is_open)

    def test_ae_created_later_takes_effect(self):
        # RabbitMQ: the AE is looked up by name at publish time.
        ae_name = uname("ae")
        x = self.declare_exchange("x", "direct", arguments={"alternate-exchange": ae_name})
        self.publish("zz", b"dropped", exchange=x)
        self.track_exchange(ae_name)
        self.ch.exchange_declare(ae_name, "fanout")
        aq = self.declare_queue("aq")
        self.ch.queue_bind(aq, ae_name)
        self.publish("zz", b"kept", exchange=x)
        self.assertEqual(self.wait_count(aq, 1), 1)
        self.assertEqual(self.bodies(aq), [b"kept"])

    def test_ae_chain(self):
        # RabbitMQ: AEs chain: x -> ae1 (direct, no match) -> ae2 (fanout) -> queue.
        ae2 = self.declare_exchange("ae2", "fanout")
        q = self.declare_queue("q")
        self.ch.queue_bind(q, ae2)
        ae1 = self.declare_exchange("ae1", "direct", arguments={"alternate-exchange": ae2})
        x = self.declare_exchange("x", "direct", arguments={"alternate-exchange": ae1})
        self.mpublish(x, "zz", b"chain")
        m, _, b = self.get_within(q)
        self.assertEqual((m.exchange, m.routing_key, b), (x, "zz", b"chain"))
        self.pump(0.2)
        self.assertEqual(self.returns, [])

    def test_ae_cycle_terminates(self):
        # RabbitMQ: x6 -> AE x7 -> AE x6: the cycle is cut; mandatory -> 312 NO_ROUTE.
        n6, n7 = uname("x6"), uname("x7")
        self.track_exchange(n6)
        self.track_exchange(n7)
        self.ch.exchange_declare(n6, "direct", arguments={"alternate-exchange": n7})
        self.ch.exchange_declare(n7, "direct", arguments={"alternate-exchange": n6})
        self.mpublish(n6, "zz", b"cyc")
        self.collect(self.returns, 1)
        self.assertEqual(self.returns, [(312, "NO_ROUTE", n6, "zz", b"cyc")])
        self.assertTrue(self.ch.is_open)

    def test_confirm_mandatory_unroutable_via_missing_ae(self):
        # pika raises UnroutableError when a confirmed mandatory publish is returned.
        x = self.declare_exchange("x", "direct", arguments={"alternate-exchange": uname("nope")})
        with self.assertRaises(pika.exceptions.UnroutableError):
            self.pch.basic_publish(x, "zz", b"z", mandatory=True)

    def test_wrong_type(self):
        # RabbitMQ: 406 "invalid type 'signedint' for arg 'alternate-exchange' in exchange ...".
        for value, tname in ((1, "signedint"), (True, "bool")):
            name = uname("bad")
            self.track_exchange(name)
            e = self.assertChannelError(PRECONDITION_FAILED, self.new_channel().exchange_declare,
                                        name, "direct", arguments={"alternate-exchange": value})
            self.assertEqual(
                e.reply_text,
                "PRECONDITION_FAILED - invalid type '%s' for arg 'alternate-exchange' in exchange "
                "'%s' in vhost '/'" % (tname, name))
            self.assertFalse(self.exchange_exists(name))

    def test_redeclare_inequivalent(self):
        # RabbitMQ: alternate-exchange takes part in exchange equivalence.
        ae1 = self.declare_exchange("ae", "fanout")
        x = self.declare_exchange("x", "direct", arguments={"alternate-exchange": ae1})
        e = self.assertChannelError(PRECONDITION_FAILED, self.new_channel().exchange_declare,
                                    x, "direct", arguments={"alternate-exchange": "other"})
        self.assertEqual(
            e.reply_text,
            "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '%s' in "
            "vhost '/': received 'other' but current is '%s'" % (x, ae1))
        e = self.assertChannelError(PRECONDITION_FAILED, self.new_channel().exchange_declare,
                                    x, "direct")
        self.assertEqual(
            e.reply_text,
            "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '%s' in "
            "vhost '/': received none but current is the value '%s' of type 'longstr'" % (x, ae1))


if __name__ == "__main__":
    main()
