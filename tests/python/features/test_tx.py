#!/usr/bin/env python3
"""Transactions: tx.select / tx.commit / tx.rollback.

Behaviour recorded against RabbitMQ 3.10.8.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FeatureTest, main, uname  # noqa: E402

NOT_FOUND = 404
PRECONDITION_FAILED = 406


class Tx(FeatureTest):
    def setUp(self):
        super().setUp()
        self.q = self.declare_queue()
        self.tx = self.conn.channel()
        self.tx.tx_select()

    def fill(self, n, prefix=b"m"):
        for i in range(n):
            self.publish(self.q, prefix + b"%d" % i)

    def drain_flags(self):
        out = []
        while True:
            m, p, b = self.ch.basic_get(self.q, auto_ack=True)
            if m is None:
                return out
            out.append((b, m.redelivered))

    def test_publish_invisible_until_commit(self):
        # RabbitMQ: publishes in a transaction are not enqueued before tx.commit.
        self.tx.basic_publish("", self.q, b"a")
        self.tx.basic_publish("", self.q, b"b")
        time.sleep(0.3)
        self.assertEqual(self.count(self.q), 0)
        self.tx.tx_commit()
        # commit-ok means enqueued: no waiting needed.
        self.assertEqual(self.count(self.q), 2)
        self.assertEqual(self.bodies(self.q), [b"a", b"b"])

    def test_publish_discarded_on_rollback(self):
        self.tx.basic_publish("", self.q, b"a")
        self.tx.tx_rollback()
        time.sleep(0.2)
        self.assertEqual(self.count(self.q), 0)
        # the channel stays transactional: the next commit only carries later publishes
        self.tx.basic_publish("", self.q, b"b")
        self.tx.tx_commit()
        self.assertEqual(self.bodies(self.q), [b"b"])

    def test_several_commits_in_a_row(self):
        # RabbitMQ: a channel stays in tx mode; each commit starts a new transaction;
        # empty commits are fine.
        for i in range(3):
            self.tx.basic_publish("", self.q, b"%d" % i)
            self.tx.tx_commit()
            self.assertEqual(self.count(self.q), i + 1)
        self.tx.tx_commit()
        self.tx.tx_rollback()
        self.tx.tx_commit()
        self.assertEqual(self.bodies(self.q), [b"0", b"1", b"2"])

    def test_select_twice_ok(self):
        # RabbitMQ: tx.select on a channel already in tx mode answers select-ok.
        self.tx.tx_select()
        self.tx.basic_publish("", self.q, b"x")
        self.tx.tx_commit()
        self.assertEqual(self.count(self.q), 1)

    def test_ack_takes_effect_at_commit(self):
        # RabbitMQ: a basic.ack inside a transaction is applied only at commit.
        self.fill(2)
        m0, _, _ = self.tx.basic_get(self.q)
        m1, _, _ = self.tx.basic_get(self.q)
        self.tx.basic_ack(m0.delivery_tag)
        time.sleep(0.2)
        self.tx.tx_commit()
        # m0 acked; closing the channel requeues only m1
        self.tx.close()
        self.assertEqual(self.wait_count(self.q, 1), 1)
        self.assertEqual(self.drain_flags(), [(b"m1", True)])

    def test_ack_rollback_leaves_messages_unacked(self):
        # RabbitMQ: tx.rollback discards the pending acks; the messages are NOT requeued or
        # redelivered, they stay unacknowledged on the channel: they can be acked again
        # (and committed), and are requeued (redelivered=True) only when the channel closes.
        self.fill(3)
        tags = [self.tx.basic_get(self.q)[0].delivery_tag for _ in range(3)]
        self.tx.basic_ack(tags[0])
        self.tx.basic_ack(tags[1])
        self.tx.tx_rollback()
        time.sleep(0.3)
        self.assertEqual(self.count(self.q), 0)
        self.assertIsNone(self.tx.basic_get(self.q)[0])
        # ack m0 again, for real this time
        self.tx.basic_ack(tags[0])
        self.tx.tx_commit()
        self.tx.close()
        self.assertEqual(self.wait_count(self.q, 2), 2)
        self.assertEqual(self.drain_flags(), [(b"m1", True), (b"m2", True)])

    def test_nack_and_reject_requeue_at_commit_in_original_order(self):
        # RabbitMQ: requeueing nack/reject inside a tx happen at commit; the requeued
        # messages return to their original positions (m1 before m2 although m2 was
        # rejected first).
        self.fill(3)
        tags = [self.tx.basic_get(self.q)[0].delivery_tag for _ in range(3)]
        self.tx.basic_reject(tags[2], requeue=True)
        self.tx.basic_ack(tags[0])
        self.tx.basic_nack(tags[1], requeue=True)
        time.sleep(0.2)
        self.assertEqual(self.count(self.q), 0)
        self.tx.tx_commit()
        self.assertEqual(self.wait_count(self.q, 2), 2)
        self.assertEqual(self.drain_flags(), [(b"m1", True), (b"m2", True)])

    def test_nack_rollback(self):
        # RabbitMQ: rolled-back nacks are discarded too; the messages stay unacked.
        self.fill(2)
        tags = [self.tx.basic_get(self.q)[0].delivery_tag for _ in range(2)]
        self.tx.basic_nack(tags[1], multiple=True, requeue=True)
        self.tx.tx_rollback()
        time.sleep(0.2)
        self.assertEqual(self.count(self.q), 0)
        self.tx.close()
        self.assertEqual(self.wait_count(self.q, 2), 2)
        self.assertEqual(self.drain_flags(), [(b"m0", True), (b"m1", True)])

    def test_mandatory_return_sent_at_commit(self):
        # RabbitMQ: a mandatory unroutable publish in a tx is returned (312 NO_ROUTE) only
        # when the transaction commits; on rollback nothing is returned.
        returns = []
        self.tx.add_on_return_callback(lambda ch, m, p, b: returns.append((m.reply_code, m.reply_text, b)))
        rk = uname("none")
        self.tx.basic_publish("", rk, b"r1", mandatory=True)
        self.pump(0.3)
        self.assertEqual(returns, [])
        self.tx.tx_commit()
        self.collect(returns, 1)
        self.assertEqual(returns, [(312, "NO_ROUTE", b"r1")])
        self.tx.basic_publish("", rk, b"r2", mandatory=True)
        self.tx.tx_rollback()
        self.pump(0.3)
        self.assertEqual(len(returns), 1)

    def test_unknown_delivery_tag_fails_immediately(self):
        # RabbitMQ: an ack of an unknown tag closes the channel at once (406 "unknown
        # delivery tag 99"), not at commit.
        self.tx.basic_ack(99)
        self.pump(0.3)
        self.assertTrue(self.tx.is_closed)
        ch = self.new_channel()
        ch.tx_select()
        ch.basic_ack(99)
        e = self.assertChannelError(PRECONDITION_FAILED, ch.tx_commit)
        self.assertEqual(e.reply_text, "PRECONDITION_FAILED - unknown delivery tag 99")

    def test_publish_to_missing_exchange_fails_immediately(self):
        # RabbitMQ: 404 at the publish, not deferred to commit.
        x = uname("nope")
        self.tx.basic_publish(x, "k", b"z")
        self.pump(0.3)
        self.assertTrue(self.tx.is_closed)
        ch = self.new_channel()
        ch.tx_select()
        ch.basic_publish(x, "k", b"z")
        e = self.assertChannelError(NOT_FOUND, ch.tx_commit)
        self.assertEqual(e.reply_text, "NOT_FOUND - no exchange '%s' in vhost '/'" % x)


class TxErrors(FeatureTest):
    def test_commit_without_select(self):
        # RabbitMQ: 406 "PRECONDITION_FAILED - channel is not transactional".
        e = self.assertChannelError(PRECONDITION_FAILED, self.new_channel().tx_commit)
        self.assertEqual(e.reply_text, "PRECONDITION_FAILED - channel is not transactional")

    def test_rollback_without_select(self):
        e = self.assertChannelError(PRECONDITION_FAILED, self.new_channel().tx_rollback)
        self.assertEqual(e.reply_text, "PRECONDITION_FAILED - channel is not transactional")

    def test_confirm_after_tx(self):
        # RabbitMQ: 406 "cannot switch from tx to confirm mode".
        ch = self.new_channel()
        ch.tx_select()
        e = self.assertChannelError(PRECONDITION_FAILED, ch.confirm_delivery)
        self.assertEqual(e.reply_text, "PRECONDITION_FAILED - cannot switch from tx to confirm mode")

    def test_tx_after_confirm(self):
        # RabbitMQ: 406 "cannot switch from confirm to tx mode".
        ch = self.new_channel()
        ch.confirm_delivery()
        e = self.assertChannelError(PRECONDITION_FAILED, ch.tx_select)
        self.assertEqual(e.reply_text, "PRECONDITION_FAILED - cannot switch from confirm to tx mode")

    def test_connection_survives_tx_errors(self):
        self.assertChannelError(PRECONDITION_FAILED, self.new_channel().tx_commit)
        self.assertTrue(self.conn.is_open)
        self.new_channel().tx_select()


if __name__ == "__main__":
    main()
