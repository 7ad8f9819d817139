#!/usr/bin/env python3
"""Dead-lettering: x-dead-letter-exchange / x-dead-letter-routing-key, x-death headers,
cycle detection.

Behaviour recorded against RabbitMQ 3.10.8.
"""
import datetime
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pika.compat import long as pika_long  # noqa: E402
from common import FeatureTest, main, uname  # noqa: E402

PRECONDITION_FAILED = 406

# RabbitMQ 3.10 adds exactly these headers; there are NO x-last-death-* headers in 3.10.
DEATH_HEADERS = {"x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason"}
DEATH_KEYS = {"count", "reason", "queue", "time", "exchange", "routing-keys"}


class DLXBase(FeatureTest):
    def check_death(self, entry, count, reason, queue, exchange, routing_keys,
                    original_expiration=None):
        """One x-death table: exact key set and the types pika decodes (count is a
        64-bit signed 'l' -> pika.compat.long; time is a timestamp 'T' -> aware datetime;
        routing-keys an array of longstr; the rest longstr)."""
        keys = set(DEATH_KEYS)
        if original_expiration is not None:
            keys.add("original-expiration")
        self.assertEqual(set(entry), keys)
        self.assertIs(type(entry["count"]), pika_long)
        self.assertEqual(entry["count"], count)
        self.assertEqual(entry["reason"], reason)
        self.assertEqual(entry["queue"], queue)
        self.assertEqual(entry["exchange"], exchange)
        self.assertIsInstance(entry["routing-keys"], list)
        self.assertEqual(entry["routing-keys"], routing_keys)
        self.assertIsInstance(entry["time"], datetime.datetime)
        self.assertEqual(entry["time"].tzinfo, datetime.timezone.utc)
        now = datetime.datetime.now(datetime.timezone.utc)
        self.assertLess(abs((now - entry["time"]).total_seconds()), 120)
        for k in ("reason", "queue", "exchange"):
            self.assertIsInstance(entry[k], str)
        if original_expiration is not None:
            self.assertIsInstance(entry["original-expiration"], str)
            self.assertEqual(entry["original-expiration"], original_expiration)

    def check_first(self, headers, exchange, queue, reason):
        self.assertEqual(headers["x-first-death-exchange"], exchange)
        self.assertEqual(headers["x-first-death-queue"], queue)
        self.assertEqual(headers["x-first-death-reason"], reason)
        for k in ("x-first-death-exchange", "x-first-death-queue", "x-first-death-reason"):
            self.assertIsInstance(headers[k], str)
        self.assertFalse([k for k in headers if k.startswith("x-last-death")])

    def get_one(self, q, timeout=3.0):
        """Polls basic.get (manual ack: the caller may reject it) until a message arrives."""
        m, p, b = self.get_within(q, timeout=timeout, auto_ack=False)
        self.assertIsNotNone(m, "nothing dead-lettered into %s" % q)
        return m, p, b


class Rejected(DLXBase):
    def test_reject_with_dlx_keeps_routing_key(self):
        # RabbitMQ: without x-dead-letter-routing-key the message is republished to the DLX
        # with its original routing key(s). x-death exchange = where it was first published.
        src = self.declare_exchange("src", "direct")
        dlx = self.declare_exchange("dlx", "direct")
        q = self.declare_queue(arguments={"x-dead-letter-exchange": dlx})
        self.ch.queue_bind(q, src, "rk1")
        dlq = self.declare_queue("dlq")
        self.ch.queue_bind(dlq, dlx, "rk1")
        self.publish("rk1", b"r1", exchange=src, headers={"foo": "bar"}, priority=3,
                     message_id="mid", delivery_mode=2, content_type="text/plain")
        m, p, b = self.get_one(q)
        self.ch.basic_reject(m.delivery_tag, requeue=False)
        m, p, b = self.get_one(dlq)
        self.assertEqual(b, b"r1")
        self.assertEqual(m.exchange, dlx)
        self.assertEqual(m.routing_key, "rk1")
        self.assertFalse(m.redelivered)
        # other properties are kept
        self.assertEqual((p.priority, p.message_id, p.delivery_mode, p.content_type),
                         (3, "mid", 2, "text/plain"))
        h = p.headers
        self.assertEqual(set(h), DEATH_HEADERS | {"foo"})
        self.assertEqual(h["foo"], "bar")
        self.assertEqual(len(h["x-death"]), 1)
        self.check_death(h["x-death"][0], 1, "rejected", q, src, ["rk1"])
        self.check_first(h, src, q, "rejected")

    def test_reject_with_dead_letter_routing_key(self):
        # RabbitMQ: x-dead-letter-routing-key replaces the routing key; x-death keeps the
        # original routing keys.
        dlx = self.declare_exchange("dlx", "direct")
        dlq = self.declare_queue("dlq")
        self.ch.queue_bind(dlq, dlx, "new.key")
        q = self.declare_queue(arguments={"x-dead-letter-exchange": dlx,
                                          "x-dead-letter-routing-key": "new.key"})
        self.publish(q, b"x")
        m, _, _ = self.get_one(q)
        self.ch.basic_nack(m.delivery_tag, requeue=False)
        m, p, b = self.get_one(dlq)
        self.assertEqual((m.exchange, m.routing_key, b), (dlx, "new.key", b"x"))
        self.assertEqual(set(p.headers), DEATH_HEADERS)
        self.check_death(p.headers["x-death"][0], 1, "rejected", q, "", [q])
        self.check_first(p.headers, "", q, "rejected")

    def test_cc_keys_used_for_dead_letter_routing(self):
        # RabbitMQ: without a dead-letter routing key, the CC header's keys are routing keys
        # too: x-death routing-keys = [key, *CC] and the DLX routes on all of them. The CC
        # header itself stays in the message.
        dlx = self.declare_exchange("dlx", "direct")
        x = self.declare_queue("x")
        self.ch.queue_bind(x, dlx, "rk2")
        q = self.declare_queue(arguments={"x-dead-letter-exchange": dlx})
        self.publish(q, b"cc", headers={"CC": ["rk2"]})
        m, _, _ = self.get_one(q)
        self.ch.basic_reject(m.delivery_tag, requeue=False)
        m, p, b = self.get_one(x)
        self.assertEqual(m.routing_key, q)
        self.assertEqual(p.headers["CC"], ["rk2"])
        self.check_death(p.headers["x-death"][0], 1, "rejected", q, "", [q, "rk2"])

    def test_nack_multiple_dead_letters_all_in_order(self):
        # RabbitMQ: basic.nack multiple=True requeue=False dead-letters every message up to
        # the tag, in order; later deliveries are untouched.
        dlq = self.declare_queue("dlq")
        q = self.declare_queue(arguments={"x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": dlq})
        for i in range(4):
            self.publish(q, b"n%d" % i)
        tags = [self.get_one(q)[0].delivery_tag for _ in range(4)]
        self.ch.basic_nack(tags[2], multiple=True, requeue=False)
        self.assertEqual(self.wait_count(dlq, 3), 3)
        got = self.drain(dlq)
        self.assertEqual([b for _, b in got], [b"n0", b"n1", b"n2"])
        for p, _ in got:
            self.check_death(p.headers["x-death"][0], 1, "rejected", q, "", [q])
        # requeue=True does not dead-letter
        self.ch.basic_reject(tags[3], requeue=True)
        m, p, b = self.get_one(q)
        self.assertEqual((b, m.redelivered, p.headers), (b"n3", True, None))
        self.assertEqual(self.count(dlq), 0)

    def test_reject_without_dlx_drops(self):
        q = self.declare_queue()
        self.publish(q, b"x")
        m, _, _ = self.get_one(q)
        self.ch.basic_reject(m.delivery_tag, requeue=False)
        self.assertEqual(self.count(q), 0)

    def test_expiration_property_removed_on_reject(self):
        # RabbitMQ: the expiration property is removed from every dead-lettered message
        # (not just expired ones) and recorded as x-death original-expiration.
        dlq = self.declare_queue("dlq")
        q = self.declare_queue(arguments={"x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": dlq})
        self.publish(q, b"x", expiration="60000")
        m, p, _ = self.get_one(q)
        self.assertEqual(p.expiration, "60000")
        self.ch.basic_reject(m.delivery_tag, requeue=False)
        m, p, b = self.get_one(dlq)
        self.assertIsNone(p.expiration)
        self.check_death(p.headers["x-death"][0], 1, "rejected", q, "", [q],
                         original_expiration="60000")


class Expired(DLXBase):
    def test_expired_by_per_message_expiration(self):
        # RabbitMQ: reason "expired"; expiration removed, x-death original-expiration set.
        dlx = self.declare_exchange("dlx", "topic")
        dlq = self.declare_queue("dlq")
        self.ch.queue_bind(dlq, dlx, "#")
        q = self.declare_queue(arguments={"x-dead-letter-exchange": dlx,
                                          "x-dead-letter-routing-key": "new.key"})
        self.publish(q, b"e1", expiration="100")
        m, p, b = self.get_one(dlq)
        self.assertEqual((m.routing_key, b, p.expiration), ("new.key", b"e1", None))
        self.assertEqual(set(p.headers), DEATH_HEADERS)
        self.check_death(p.headers["x-death"][0], 1, "expired", q, "", [q],
                         original_expiration="100")
        self.check_first(p.headers, "", q, "expired")

    def test_expired_by_queue_ttl(self):
        # RabbitMQ: with x-message-ttl (no per-message expiration) there is no
        # original-expiration key.
        dlx = self.declare_exchange("dlx", "fanout")
        dlq = self.declare_queue("dlq")
        self.ch.queue_bind(dlq, dlx)
        q = self.declare_queue(arguments={"x-dead-letter-exchange": dlx, "x-message-ttl": 100})
        self.publish(q, b"e2")
        m, p, b = self.get_one(dlq)
        self.assertEqual((m.exchange, m.routing_key, b), (dlx, q, b"e2"))
        self.check_death(p.headers["x-death"][0], 1, "expired", q, "", [q])
        self.check_first(p.headers, "", q, "expired")

    def test_expired_order_preserved(self):
        q_dl = self.declare_queue("dlq")
        q = self.declare_queue(arguments={"x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": q_dl,
                                          "x-message-ttl": 100})
        for i in range(5):
            self.publish(q, b"%d" % i)
        self.assertEqual(self.wait_count(q_dl, 5), 5)
        self.assertEqual(self.bodies(q_dl), [b"0", b"1", b"2", b"3", b"4"])


class MaxLen(DLXBase):
    def test_drop_head_dead_letters_with_reason_maxlen(self):
        # RabbitMQ: drop-head overflow dead-letters the dropped (oldest) messages, reason
        # "maxlen".
        dlq = self.declare_queue("dlq")
        q = self.declare_queue(arguments={"x-max-length": 2, "x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": dlq})
        for i in range(4):
            self.publish(q, b"m%d" % i)
        self.assertEqual(self.bodies(q), [b"m2", b"m3"])
        self.assertEqual(self.wait_count(dlq, 2), 2)
        got = self.drain(dlq)
        self.assertEqual([b for _, b in got], [b"m0", b"m1"])
        for p, _ in got:
            self.assertEqual(set(p.headers), DEATH_HEADERS)
            self.check_death(p.headers["x-death"][0], 1, "maxlen", q, "", [q])
            self.check_first(p.headers, "", q, "maxlen")


class RepeatedDeaths(DLXBase):
    def test_reject_loop_counts_and_order(self):
        # RabbitMQ: A (consumer rejects) -> B (TTL) -> back to A. An entry is per
        # (queue, reason); when the same one happens again its count is incremented and the
        # entry moves to the front: x-death is most-recent-first. x-first-death-* never change.
        A = uname("A")
        B = uname("B")
        self.declare_queue(name=A, arguments={"x-dead-letter-exchange": "",
                                              "x-dead-letter-routing-key": B})
        self.declare_queue(name=B, arguments={"x-dead-letter-exchange": "",
                                              "x-dead-letter-routing-key": A,
                                              "x-message-ttl": 100})
        self.publish(A, b"loop", expiration="60000")
        seen = []
        for _ in range(3):
            m, p, b = self.get_one(A)
            self.assertEqual(b, b"loop")
            self.assertFalse(m.redelivered)
            seen.append(p)
            self.ch.basic_reject(m.delivery_tag, requeue=False)
        self.assertEqual(seen[0].expiration, "60000")
        self.assertIsNone(seen[0].headers)
        for n, p in ((1, seen[1]), (2, seen[2])):
            self.assertIsNone(p.expiration)
            d = p.headers["x-death"]
            self.assertEqual(len(d), 2)
            # B's expiry is the most recent death -> first.
            self.check_death(d[0], n, "expired", B, "", [B])
            self.check_death(d[1], n, "rejected", A, "", [A], original_expiration="60000")
            self.check_first(p.headers, "", A, "rejected")

    def test_count_increments_time_kept(self):
        # RabbitMQ 3.10: a repeated death (same queue+reason) increments count but keeps
        # the entry's original time.
        E = uname("E")
        self.declare_queue(name=E, arguments={"x-dead-letter-exchange": "",
                                              "x-dead-letter-routing-key": E})
        self.publish(E, b"rej")
        m, p, _ = self.get_one(E)
        self.ch.basic_reject(m.delivery_tag, requeue=False)
        m, p, _ = self.get_one(E)
        first = p.headers["x-death"][0]
        self.check_death(first, 1, "rejected", E, "", [E])
        time.sleep(1.1)  # the timestamp has a 1 s resolution
        self.ch.basic_reject(m.delivery_tag, requeue=False)
        m, p, _ = self.get_one(E)
        self.assertEqual(len(p.headers["x-death"]), 1)
        second = p.headers["x-death"][0]
        self.check_death(second, 2, "rejected", E, "", [E])
        self.assertEqual(second["time"], first["time"])

    def test_reject_cycle_to_itself_not_dropped(self):
        # RabbitMQ: a queue that dead-letters rejected messages to itself keeps them
        # (rejections are not cycles), count grows.
        E = uname("E")
        self.declare_queue(name=E, arguments={"x-dead-letter-exchange": "",
                                              "x-dead-letter-routing-key": E})
        self.publish(E, b"rej")
        for n in range(4):
            m, p, b = self.get_one(E)
            self.assertEqual(b, b"rej")
            if n:
                self.assertEqual(p.headers["x-death"][0]["count"], n)
            self.ch.basic_reject(m.delivery_tag, requeue=False)
        self.assertEqual(self.get_one(E)[1].headers["x-death"][0]["count"], 4)


class Cycles(DLXBase):
    def test_expiry_cycle_to_itself_dropped(self):
        # RabbitMQ: queue C (x-message-ttl, DLX fanout F bound to C and to monitor M):
        # on expiry the copy for C is dropped as a cycle (C already in x-death with
        # reason expired and no rejection); M still gets its copy. C stays empty.
        F = self.declare_exchange("F", "fanout")
        C = self.declare_queue("C", arguments={"x-dead-letter-exchange": F, "x-message-ttl": 100})
        M = self.declare_queue("M")
        self.ch.queue_bind(C, F)
        self.ch.queue_bind(M, F)
        self.publish(C, b"cyc")
        m, p, b = self.get_one(M)
        self.check_death(p.headers["x-death"][0], 1, "expired", C, "", [C])
        time.sleep(0.5)
        self.assertEqual(self.count(C), 0)
        self.assertIsNone(self.get(C)[0])
        self.assertIsNone(self.get(M)[0])

    def test_expiry_cycle_via_default_exchange_dropped(self):
        # RabbitMQ: DLX "" + dead-letter routing key = own name: dropped after one expiry.
        C = uname("C")
        self.declare_queue(name=C, arguments={"x-dead-letter-exchange": "",
                                              "x-dead-letter-routing-key": C,
                                              "x-message-ttl": 100})
        self.publish(C, b"cyc")
        time.sleep(0.8)
        self.assertEqual(self.count(C), 0)
        self.assertIsNone(self.get(C)[0])

    def test_expiry_cycle_via_original_routing_key_dropped(self):
        # RabbitMQ: DLX "" without routing key routes back by the queue's own name: dropped.
        D = uname("D")
        self.declare_queue(name=D, arguments={"x-dead-letter-exchange": "", "x-message-ttl": 100})
        self.publish(D, b"cyc")
        time.sleep(0.8)
        self.assertEqual(self.count(D), 0)
        self.assertIsNone(self.get(D)[0])

    def test_two_queue_expiry_cycle_dropped(self):
        # RabbitMQ: A (ttl) -> fanout XA -> B (+ monitor MA); B (ttl) -> fanout XB -> A
        # (+ monitor MB). The message goes A -> B, then B's expiry would bring it back to A
        # which is already in x-death (expired, no rejection): A's copy is dropped, MB's is
        # kept. Nothing ever reaches A again.
        XA = self.declare_exchange("XA", "fanout")
        XB = self.declare_exchange("XB", "fanout")
        A = self.declare_queue("A", arguments={"x-dead-letter-exchange": XA, "x-message-ttl": 100})
        B = self.declare_queue("B", arguments={"x-dead-letter-exchange": XB, "x-message-ttl": 100})
        MA = self.declare_queue("MA")
        MB = self.declare_queue("MB")
        self.ch.queue_bind(B, XA)
        self.ch.queue_bind(MA, XA)
        self.ch.queue_bind(A, XB)
        self.ch.queue_bind(MB, XB)
        self.publish(A, b"loop")
        _, p, _ = self.get_one(MB)
        d = p.headers["x-death"]
        self.assertEqual(len(d), 2)
        self.check_death(d[0], 1, "expired", B, XA, [A])
        self.check_death(d[1], 1, "expired", A, "", [A])
        self.check_first(p.headers, "", A, "expired")
        time.sleep(0.5)
        self.assertEqual(len(self.drain(MA)), 1)
        self.assertEqual(self.count(A), 0)
        self.assertEqual(self.count(B), 0)
        self.assertIsNone(self.get(MB)[0])


class Misc(DLXBase):
    def test_nonexistent_dlx_drops_silently(self):
        # RabbitMQ: a DLX that does not exist -> the message is dropped, no error anywhere.
        q = self.declare_queue(arguments={"x-dead-letter-exchange": uname("nope"),
                                          "x-message-ttl": 50})
        self.publish(q, b"x")
        time.sleep(0.4)
        self.assertEqual(self.count(q), 0)
        q2 = self.declare_queue(arguments={"x-dead-letter-exchange": uname("nope")})
        self.publish(q2, b"y")
        m, _, _ = self.get_one(q2)
        self.ch.basic_reject(m.delivery_tag, requeue=False)
        time.sleep(0.2)
        self.assertEqual(self.count(q2), 0)
        self.assertTrue(self.ch.is_open)
        self.assertTrue(self.conn.is_open)

    def test_unroutable_in_dlx_drops(self):
        dlx = self.declare_exchange("dlx", "direct")
        q = self.declare_queue(arguments={"x-dead-letter-exchange": dlx, "x-message-ttl": 50})
        self.publish(q, b"x")
        time.sleep(0.4)
        self.assertEqual(self.count(q), 0)

    def test_routing_key_without_dlx_rejected(self):
        # RabbitMQ: 406 "... routing_key_but_no_dlx_defined".
        name = uname("bad")
        e = self.declare_error(PRECONDITION_FAILED, name, {"x-dead-letter-routing-key": "k"})
        self.assertEqual(
            e.reply_text,
            "PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue '%s' in "
            "vhost '/': routing_key_but_no_dlx_defined" % name)

    def test_dlx_wrong_type(self):
        # RabbitMQ: a note-worthy different text: "invalid type 'signedint' for arg ...".
        name = uname("bad")
        e = self.declare_error(PRECONDITION_FAILED, name, {"x-dead-letter-exchange": 1})
        self.assertEqual(
            e.reply_text,
            "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' "
            "in queue '%s' in vhost '/'" % name)

    def test_dlrk_wrong_type(self):
        name = uname("bad")
        e = self.declare_error(PRECONDITION_FAILED, name,
                               {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": 5})
        self.assertEqual(
            e.reply_text,
            "PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue '%s' in "
            "vhost '/': {unacceptable_type,signedint}" % name)


if __name__ == "__main__":
    main()
