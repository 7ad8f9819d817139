#!/usr/bin/env python3
"""Auto-delete exchanges: removed when their last binding (as source) goes.

Behaviour recorded against RabbitMQ 3.10.8.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FeatureTest, main  # noqa: E402

NOT_FOUND = 404
PRECONDITION_FAILED = 406


class ExchangeAutoDelete(FeatureTest):
    def ad(self, prefix="ad", exchange_type="direct"):
        return self.declare_exchange(prefix, exchange_type, auto_delete=True)

    def assertGone(self, x):
        # RabbitMQ deletes it synchronously with the unbind/delete: no waiting needed, but
        # allow a little slack.
        self.assertTrue(self.wait_until(lambda: not self.exchange_exists(x), timeout=3.0, step=0.1),
                        "exchange %s still exists" % x)

    def test_never_bound_stays(self):
        # RabbitMQ: an auto-delete exchange that never had a binding is not deleted.
        x = self.ad()
        time.sleep(0.3)
        self.assertTrue(self.exchange_exists(x))

    def test_unbind_last_queue_binding_deletes(self):
        # RabbitMQ: queue.unbind of the last binding deletes the exchange; passive declare
        # -> 404 "NOT_FOUND - no exchange '<x>' in vhost '/'".
        x = self.ad()
        q = self.declare_queue()
        self.ch.queue_bind(q, x, "k")
        self.ch.queue_unbind(q, x, "k")
        self.assertGone(x)
        e = self.assertChannelError(NOT_FOUND, self.new_channel().exchange_declare, x, passive=True)
        self.assertEqual(e.reply_text, "NOT_FOUND - no exchange '%s' in vhost '/'" % x)

    def test_stays_while_bindings_remain(self):
        x = self.ad()
        q = self.declare_queue()
        self.ch.queue_bind(q, x, "k1")
        self.ch.queue_bind(q, x, "k2")
        self.ch.queue_unbind(q, x, "k1")
        time.sleep(0.2)
        self.assertTrue(self.exchange_exists(x))
        self.ch.queue_unbind(q, x, "k2")
        self.assertGone(x)

    def test_queue_delete_removes_last_binding(self):
        # RabbitMQ: deleting the (only) bound queue deletes the exchange.
        x = self.ad()
        q = self.declare_queue()
        self.ch.queue_bind(q, x, "k")
        self.ch.queue_delete(q)
        self.assertGone(x)

    def test_queue_delete_with_other_queue_bound(self):
        x = self.ad()
        q1 = self.declare_queue()
        q2 = self.declare_queue()
        self.ch.queue_bind(q1, x, "k")
        self.ch.queue_bind(q2, x, "k")
        self.ch.queue_delete(q1)
        time.sleep(0.2)
        self.assertTrue(self.exchange_exists(x))
        self.ch.queue_delete(q2)
        self.assertGone(x)

    def test_exclusive_queue_gone_with_connection(self):
        # RabbitMQ: an exclusive queue deleted at connection close removes its binding too.
        c = self.new_conn()
        ch = c.channel()
        x = self.ad(exchange_type="fanout")
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, x)
        c.close()
        self.assertGone(x)

    def test_auto_delete_queue_cascade(self):
        # RabbitMQ: auto-delete queue deleted when its last consumer is cancelled -> its
        # binding goes -> the auto-delete exchange goes.
        x = self.ad(exchange_type="fanout")
        q = self.declare_queue(auto_delete=True)
        self.ch.queue_bind(q, x)
        tag = self.ch.basic_consume(q, lambda *a: None, auto_ack=True)
        self.ch.basic_cancel(tag)
        self.assertGone(x)

    def test_exchange_to_exchange_source_unbind(self):
        # RabbitMQ: bindings where the auto-delete exchange is the SOURCE count:
        # exchange.unbind of the last one deletes it.
        x = self.ad()
        d = self.declare_exchange("d", "fanout")
        self.ch.exchange_bind(d, x, "k")
        self.ch.exchange_unbind(d, x, "k")
        self.assertGone(x)

    def test_exchange_to_exchange_destination_deleted(self):
        # RabbitMQ: deleting the destination exchange removes the binding -> source deleted.
        x = self.ad()
        d = self.declare_exchange("d", "fanout")
        self.ch.exchange_bind(d, x, "k")
        self.ch.exchange_delete(d)
        self.assertGone(x)

    def test_bindings_as_destination_do_not_count(self):
        # RabbitMQ: an auto-delete exchange that is only a binding DESTINATION is not
        # deleted when that binding goes (unbind or source deletion).
        s = self.declare_exchange("s", "direct")
        x = self.ad(exchange_type="fanout")
        self.ch.exchange_bind(x, s, "k")
        self.ch.exchange_unbind(x, s, "k")
        time.sleep(0.2)
        self.assertTrue(self.exchange_exists(x))
        self.ch.exchange_bind(x, s, "k")
        self.ch.exchange_delete(s)
        time.sleep(0.2)
        self.assertTrue(self.exchange_exists(x))

    def test_cascade_through_exchanges(self):
        # RabbitMQ: A(ad) -> B(ad) -> queue. Deleting the queue deletes B (last binding),
        # which removes A -> B, which deletes A.
        a = self.ad("A", "fanout")
        b = self.ad("B", "fanout")
        self.ch.exchange_bind(b, a)
        q = self.declare_queue()
        self.ch.queue_bind(q, b)
        self.ch.queue_delete(q)
        self.assertGone(b)
        self.assertGone(a)

    def test_unbind_nonexistent_binding_keeps_unbound_exchange(self):
        # RabbitMQ: queue.unbind of a binding that does not exist -> unbind-ok, and the
        # never-bound auto-delete exchange stays.
        x = self.ad(exchange_type="fanout")
        q = self.declare_queue()
        self.ch.queue_unbind(q, x, "zz")
        time.sleep(0.2)
        self.assertTrue(self.exchange_exists(x))

    def test_rebind_after_deletion_fails(self):
        # RabbitMQ: once deleted, binding to it -> 404 NOT_FOUND.
        x = self.ad(exchange_type="fanout")
        q = self.declare_queue()
        self.ch.queue_bind(q, x)
        self.ch.queue_unbind(q, x)
        self.assertGone(x)
        e = self.assertChannelError(NOT_FOUND, self.new_channel().queue_bind, q, x)
        self.assertEqual(e.reply_text, "NOT_FOUND - no exchange '%s' in vhost '/'" % x)

    def test_redeclare_inequivalent_auto_delete(self):
        # RabbitMQ: 406 "inequivalent arg 'auto_delete' for exchange ... received 'false' but
        # current is 'true'".
        x = self.ad(exchange_type="fanout")
        e = self.assertChannelError(PRECONDITION_FAILED, self.new_channel().exchange_declare,
                                    x, "fanout", auto_delete=False)
        self.assertEqual(
            e.reply_text,
            "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for exchange '%s' in vhost '/': "
            "received 'false' but current is 'true'" % x)

    def test_delete_if_unused_refused_while_bound(self):
        # RabbitMQ: exchange.delete if-unused on a bound exchange -> 406 "... in use".
        x = self.ad(exchange_type="fanout")
        q = self.declare_queue()
        self.ch.queue_bind(q, x)
        e = self.assertChannelError(PRECONDITION_FAILED, self.new_channel().exchange_delete,
                                    x, if_unused=True)
        self.assertEqual(e.reply_text,
                         "PRECONDITION_FAILED - exchange '%s' in vhost '/' in use" % x)
        self.assertTrue(self.exchange_exists(x))


if __name__ == "__main__":
    main()
