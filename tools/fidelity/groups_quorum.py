"""The `quorum` group: quorum queues (`x-queue-type: quorum`) on one node, as RabbitMQ 3.10
declares, fills, redelivers and drops them: the flags and arguments a quorum queue takes,
redeclaration against a classic queue, the `x-delivery-count` header on redeliveries,
`x-delivery-limit` (dropped or dead-lettered), counts in declare-ok / purge-ok / delete-ok,
qos and consumers.

Quorum queues are durable and cannot be exclusive, so every scenario deletes its queues
at the end, on a channel of its own (channel 2) in case channel 1 was closed by an error.
"""
from pika import spec

import wire
from scenario import connected
from wire import method as m, table, value

L, S = (lambda v: value("l", v)), (lambda v: value("S", v))
QUORUM = ("x-queue-type", S("quorum"))

# argument -> [(case name, encoded value)] on a new durable quorum queue.
QUORUM_ARGS = {
    "x-message-ttl": [("l-1000", L(1000))],
    "x-expires": [("l-100000", L(100000))],
    "x-max-length": [("l-10", L(10))],
    "x-max-length-bytes": [("l-1000", L(1000))],
    "x-overflow": [("drop-head", S("drop-head")), ("reject-publish", S("reject-publish")),
                   ("reject-publish-dlx", S("reject-publish-dlx")), ("bogus", S("bogus"))],
    "x-dead-letter-exchange": [("amq-direct", S("amq.direct"))],
    "x-dead-letter-routing-key": [("rk", S("rk"))],
    "x-dead-letter-strategy": [("at-most-once", S("at-most-once")),
                               ("at-least-once", S("at-least-once")), ("bogus", S("bogus"))],
    "x-max-priority": [("l-10", L(10))],
    "x-queue-mode": [("lazy", S("lazy"))],
    "x-queue-version": [("l-2", L(2))],
    "x-single-active-consumer": [("true", value("t", 1))],
    "x-delivery-limit": [("l-5", L(5)), ("zero", L(0)), ("negative", L(-1)),
                         ("string", S("5"))],
    "x-max-in-memory-length": [("l-5", L(5))],
    "x-max-in-memory-bytes": [("l-5", L(5))],
    "x-quorum-initial-group-size": [("l-1", L(1)), ("l-3", L(3)), ("zero", L(0)),
                                    ("string", S("3"))],
    "x-queue-leader-locator": [("client-local", S("client-local")),
                               ("balanced", S("balanced")), ("bogus", S("bogus"))],
    "x-queue-master-locator": [("min-masters", S("min-masters"))],
    "x-max-age": [("1D", S("1D"))],
    "x-stream-max-segment-size-bytes": [("l-1000", L(1000))],
    "x-initial-cluster-size": [("l-1", L(1))],
    "x-fid-unknown": [("S", S("v"))],
}


def qdecl(ch, s, *args, suffix="q", **kw):
    kw.setdefault("durable", True)
    return wire.with_table(ch, spec.Queue.Declare(queue=s.q(suffix), **kw), table(*args))


def qdel(ch, s, suffix="q"):
    return m(ch, spec.Queue.Delete(queue=s.q(suffix)))


def pub(s, data=b"hello", suffix="q", **kw):
    return wire.publish(1, "", s.q(suffix), data=data, **kw)


def get(s, suffix="q", no_ack=False):
    return m(1, spec.Basic.Get(queue=s.q(suffix), no_ack=no_ack))


def nack(tag, requeue=True):
    return m(1, spec.Basic.Nack(delivery_tag=tag, requeue=requeue))


def quorum_group():
    out = []

    def c(name, doc, **kw):
        kw.setdefault("channels", (1, 2))
        s = connected("quorum/" + name, doc, **kw)
        out.append(s)
        return s

    # --- Declaring: flags and arguments. ----------------------------------------------
    for case, kw in [("durable", {}), ("non-durable", dict(durable=False)),
                     ("exclusive", dict(exclusive=True)), ("auto-delete", dict(auto_delete=True)),
                     ("passive-missing", dict(passive=True))]:
        s = c(f"declare/{case}", f"queue.declare of a quorum queue ({case}); then queue.delete")
        s.sw(qdecl(1, s, QUORUM, **kw)).sw(qdel(2, s))
    for arg, cases in QUORUM_ARGS.items():
        for case, v in cases:
            s = c(f"declare-arg/{arg}/{case}", f"a durable quorum queue with {arg} = {case}; "
                  "then queue.delete")
            s.sw(qdecl(1, s, QUORUM, (arg, v))).sw(qdel(2, s))
    s = c("declare-arg/overflow-reject-publish-with-at-least-once",
          "x-dead-letter-strategy at-least-once with x-overflow reject-publish and a "
          "dead-letter exchange; then queue.delete")
    s.sw(qdecl(1, s, QUORUM, ("x-dead-letter-strategy", S("at-least-once")),
               ("x-overflow", S("reject-publish")), ("x-dead-letter-exchange", S("amq.direct"))))
    s.sw(qdel(2, s))

    # --- Redeclaring. -------------------------------------------------------------------
    for case, first, second in [
        ("same", (QUORUM,), (QUORUM,)),
        ("then-classic", (QUORUM,), ()),
        ("then-explicit-classic", (QUORUM,), (("x-queue-type", S("classic")),)),
        ("classic-then-quorum", (), (QUORUM,)),
        ("delivery-limit-added", (QUORUM,), (QUORUM, ("x-delivery-limit", L(5)))),
        ("delivery-limit-value", (QUORUM, ("x-delivery-limit", L(5))),
         (QUORUM, ("x-delivery-limit", L(6)))),
        ("group-size-value", (QUORUM, ("x-quorum-initial-group-size", L(1))),
         (QUORUM, ("x-quorum-initial-group-size", L(3)))),
        ("max-length-value", (QUORUM, ("x-max-length", L(1))), (QUORUM, ("x-max-length", L(2)))),
    ]:
        s = c(f"redeclare/{case}", f"queue.declare twice ({case}); then queue.delete")
        s.sw(qdecl(1, s, *first)).sw(qdecl(1, s, *second)).sw(qdel(2, s))
    s = c("redeclare/passive", "a quorum queue, then a passive declare of it")
    s.sw(qdecl(1, s, QUORUM)).sw(m(1, spec.Queue.Declare(queue=s.q(), passive=True)))
    s.sw(qdel(2, s))

    # --- Messages: counts, gets, redeliveries and the delivery count. -------------------
    s = c("messages/counts", "three messages (one transient), declare-ok's count, purge-ok's "
          "count, another message, delete-ok's count")
    s.sw(qdecl(1, s, QUORUM))
    s.sw(pub(s, b"1", props=spec.BasicProperties(delivery_mode=2)) + pub(s, b"22")
         + pub(s, b"333", props=spec.BasicProperties(delivery_mode=2)))
    s.sw(qdecl(1, s, QUORUM)).sw(m(1, spec.Queue.Purge(queue=s.q())))
    s.sw(pub(s, b"4444")).sw(qdecl(1, s, QUORUM)).sw(qdel(2, s))
    s = c("messages/get-properties", "a message with headers and a priority; basic.get "
          "no-ack; then basic.get on the empty queue")
    s.sw(qdecl(1, s, QUORUM))
    s.sw(pub(s, props=spec.BasicProperties(headers={"h": "v"}, priority=3, delivery_mode=1)))
    s.sw(get(s, no_ack=True)).sw(get(s, no_ack=True)).sw(qdel(2, s))
    s = c("messages/delivery-count", "a message got, nacked with requeue, got again, rejected "
          "with requeue, got again (x-delivery-count 1, then 2), then acked")
    s.sw(qdecl(1, s, QUORUM)).sw(pub(s))
    s.sw(get(s)).sw(nack(1)).sw(get(s)).sw(m(1, spec.Basic.Reject(delivery_tag=2, requeue=True)))
    s.sw(get(s)).sw(m(1, spec.Basic.Ack(delivery_tag=3))).sw(get(s)).sw(qdel(2, s))
    s = c("messages/delivery-count-keeps-headers", "a message with its own headers returned "
          "once: the count joins them")
    s.sw(qdecl(1, s, QUORUM))
    s.sw(pub(s, props=spec.BasicProperties(headers={"a": "1", "z": 2})))
    s.sw(get(s)).sw(nack(1)).sw(get(s)).sw(qdel(2, s))
    s = c("messages/delivery-count-after-channel-close", "a message got on channel 1 without "
          "ack; channel 1 closed; got on channel 2")
    s.sw(qdecl(1, s, QUORUM)).sw(pub(s)).sw(get(s))
    s.sw(m(1, spec.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)))
    s.sw(m(2, spec.Basic.Get(queue=s.q(), no_ack=True))).sw(qdel(2, s))
    s = c("messages/delivery-count-on-recover", "a message got without ack, basic.recover "
          "(requeue), got again")
    s.sw(qdecl(1, s, QUORUM)).sw(pub(s)).sw(get(s))
    s.sw(m(1, spec.Basic.Recover(requeue=True))).sw(get(s, no_ack=True)).sw(qdel(2, s))
    s = c("messages/nack-without-requeue", "a message got and nacked without requeue; then "
          "basic.get")
    s.sw(qdecl(1, s, QUORUM)).sw(pub(s)).sw(get(s)).sw(nack(1, requeue=False)).sw(get(s))
    s.sw(qdel(2, s))
    s = c("messages/delivery-limit-drop", "x-delivery-limit 1: a message returned twice is "
          "dropped (no dead-letter exchange)")
    s.sw(qdecl(1, s, QUORUM, ("x-delivery-limit", L(1)))).sw(pub(s))
    s.sw(get(s)).sw(nack(1)).sw(get(s)).sw(nack(2)).sw(get(s)).sw(qdel(2, s))
    s = c("messages/delivery-limit-zero", "x-delivery-limit 0: a message returned once")
    s.sw(qdecl(1, s, QUORUM, ("x-delivery-limit", L(0)))).sw(pub(s))
    s.sw(get(s)).sw(nack(1)).sw(get(s)).sw(qdel(2, s))
    s = c("messages/delivery-limit-dead-letter", "x-delivery-limit 1 with a dead-letter "
          "exchange ('') routing to a second queue: the dropped message lands there with "
          "x-death reason delivery_limit")
    s.sw(qdecl(1, s, suffix="dlq", exclusive=True, durable=False))
    s.sw(qdecl(1, s, QUORUM, ("x-delivery-limit", L(1)), ("x-dead-letter-exchange", S("")),
               ("x-dead-letter-routing-key", S(s.q("dlq"))))).sw(pub(s))
    s.sw(get(s)).sw(nack(1)).sw(get(s)).sw(nack(2)).wait()
    s.sw(get(s, "dlq", no_ack=True)).sw(qdel(2, s))
    s = c("messages/rejected-dead-letter", "a message rejected without requeue from a quorum "
          "queue with a dead-letter exchange: x-death reason rejected")
    s.sw(qdecl(1, s, suffix="dlq", exclusive=True, durable=False))
    s.sw(qdecl(1, s, QUORUM, ("x-dead-letter-exchange", S("")),
               ("x-dead-letter-routing-key", S(s.q("dlq"))))).sw(pub(s))
    s.sw(get(s)).sw(m(1, spec.Basic.Reject(delivery_tag=1, requeue=False))).wait()
    s.sw(get(s, "dlq", no_ack=True)).sw(qdel(2, s))
    s = c("messages/max-length-reject-publish-confirm", "x-max-length 1, x-overflow "
          "reject-publish, confirm mode: the second message is nacked")
    s.sw(qdecl(1, s, QUORUM, ("x-max-length", L(1)), ("x-overflow", S("reject-publish"))))
    s.sw(m(1, spec.Confirm.Select())).sw(pub(s, b"1")).sw(pub(s, b"22"))
    s.sw(get(s, no_ack=True)).sw(qdel(2, s))
    s = c("messages/max-length-reject-publish-three", "x-max-length 1, x-overflow "
          "reject-publish, confirm mode: three messages, one confirm each; declare-ok's count")
    s.sw(qdecl(1, s, QUORUM, ("x-max-length", L(1)), ("x-overflow", S("reject-publish"))))
    s.sw(m(1, spec.Confirm.Select())).sw(pub(s, b"1")).sw(pub(s, b"22")).sw(pub(s, b"333"))
    s.sw(qdecl(1, s, QUORUM, ("x-max-length", L(1)), ("x-overflow", S("reject-publish"))))
    s.sw(qdel(2, s))
    s = c("messages/max-length-drop-head", "x-max-length 1 (drop-head): two messages, one "
          "basic.get")
    s.sw(qdecl(1, s, QUORUM, ("x-max-length", L(1)))).sw(pub(s, b"1") + pub(s, b"22"))
    s.sw(get(s, no_ack=True)).sw(qdel(2, s))
    s = c("messages/priority-ignored", "messages of priorities 1 then 9: a quorum queue keeps "
          "publish order")
    s.sw(qdecl(1, s, QUORUM))
    s.sw(pub(s, b"1", props=spec.BasicProperties(priority=1))
         + pub(s, b"22", props=spec.BasicProperties(priority=9)))
    s.sw(get(s, no_ack=True)).sw(get(s, no_ack=True)).sw(qdel(2, s))
    s = c("messages/expiration-0", "a message with expiration 0; then basic.get")
    s.sw(qdecl(1, s, QUORUM)).sw(pub(s, props=spec.BasicProperties(expiration="0")))
    s.sw(get(s, no_ack=True)).sw(qdel(2, s))

    # --- Consumers and qos. -------------------------------------------------------------
    C = lambda s, **kw: m(1, spec.Basic.Consume(queue=s.q(), consumer_tag=kw.pop("tag", s.u),
                                                **kw))
    s = c("consume/prefetch-1", "qos 1, a consumer, two messages, an ack")
    s.sw(qdecl(1, s, QUORUM)).sw(m(1, spec.Basic.Qos(prefetch_count=1))).sw(C(s))
    s.sw(pub(s, b"1") + pub(s, b"22")).sw(m(1, spec.Basic.Ack(delivery_tag=1)))
    s.sw(qdel(2, s))
    s = c("consume/global-qos", "basic.qos global=true, then basic.consume")
    s.sw(qdecl(1, s, QUORUM)).sw(m(1, spec.Basic.Qos(prefetch_count=5, global_qos=True)))
    s.sw(C(s)).sw(qdel(2, s))
    s = c("consume/nack-requeue-redelivers", "a consumer; a message nacked with requeue comes "
          "back with redelivered and x-delivery-count 1")
    s.sw(qdecl(1, s, QUORUM)).sw(C(s)).sw(pub(s)).sw(nack(1)).sw(qdel(2, s))
    s = c("consume/exclusive", "an exclusive consumer on a quorum queue, then a second")
    s.sw(qdecl(1, s, QUORUM)).sw(C(s, exclusive=True)).sw(C(s, tag=s.u + "-2")).sw(qdel(2, s))
    s = c("consume/single-active", "x-single-active-consumer: two consumers, two messages "
          "(both to the first)")
    s.sw(qdecl(1, s, QUORUM, ("x-single-active-consumer", value("t", 1))))
    s.sw(C(s, no_ack=True)).sw(C(s, tag=s.u + "-2", no_ack=True))
    s.sw(pub(s, b"1")).sw(pub(s, b"22")).sw(qdel(2, s))
    s = c("consume/cancel-requeues-nothing", "a consumer gets a message, cancels; the message "
          "stays unacked until the ack")
    s.sw(qdecl(1, s, QUORUM)).sw(C(s)).sw(pub(s)).sw(m(1, spec.Basic.Cancel(consumer_tag=s.u)))
    s.sw(m(1, spec.Basic.Ack(delivery_tag=1))).sw(qdecl(1, s, QUORUM)).sw(qdel(2, s))

    # --- Transactions. ------------------------------------------------------------------
    s = c("tx/publish-commit", "tx.select, a message, tx.commit; declare-ok's count")
    s.sw(qdecl(1, s, QUORUM)).sw(m(1, spec.Tx.Select())).sw(pub(s)).sw(m(1, spec.Tx.Commit()))
    s.sw(qdecl(1, s, QUORUM)).sw(qdel(2, s))
    return out
