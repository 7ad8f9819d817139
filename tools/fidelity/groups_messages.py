"""Scenario groups about messages: `content` (the frames of a published message and their
properties) and `basic` (qos, consume, get, acks, recover, confirms, tx, deletion rules).

Most scenarios publish to their own exclusive queue through the default exchange and read
the message back with basic.get, so what RabbitMQ kept is visible in the get-ok.
Bodies of different sizes stand in for different messages (sizes survive normalisation).
"""
import struct

from pika import spec

import wire
from scenario import connected
from wire import method as m, table, value

ALL_PROPS = spec.BasicProperties(
    content_type="text/plain", content_encoding="utf-8", headers={"h": "v"}, delivery_mode=2,
    priority=5, correlation_id="c", reply_to="r", expiration="60000", message_id="m",
    timestamp=1700000000, type="t", user_id="guest", app_id="a", cluster_id="cl")


def decl(ch, s, suffix="q", args=None, **kw):
    kw.setdefault("exclusive", True)
    d = spec.Queue.Declare(queue=s.q(suffix), **kw)
    return m(ch, d) if args is None else wire.with_table(ch, d, args)


def get(ch, s, suffix="q", no_ack=True):
    return m(ch, spec.Basic.Get(queue=s.q(suffix), no_ack=no_ack))


def pub(ch, s, data=b"hello", suffix="q", **kw):
    return wire.publish(ch, "", s.q(suffix), data=data, **kw)


def content_group():
    out = []

    def c(name, doc, **kw):
        s = connected("content/" + name, doc, **kw)
        s.sw(decl(1, s))
        out.append(s)
        return s

    P = lambda s: m(1, spec.Basic.Publish(exchange="", routing_key=s.q()))
    s = c("body-without-header", "basic.publish followed directly by a body frame")
    s.sw(P(s) + wire.body(1, b"hello"))
    s = c("header-after-complete-message", "a whole message, then a second content header")
    s.sw(pub(1, s) + wire.header(1, 5))
    for cls in (0, 10, 50, 61, 65535):
        s = c(f"header-class-{cls}", f"basic.publish then a content header of class {cls}")
        s.sw(P(s) + wire.header(1, 5, class_id=cls) + wire.body(1, b"hello"))
    s = c("header-weight-1", "a content header whose weight field is 1; then basic.get")
    s.sw(P(s) + wire.header(1, 5, weight=1) + wire.body(1, b"hello")).sw(get(1, s))
    s = c("header-size-0-then-body", "a header announcing 0 body bytes, then a body frame")
    s.sw(P(s) + wire.header(1, 0) + wire.body(1, b"hello"))
    s = c("header-size-0-then-publish", "a message with an empty body (no body frame), then "
          "another message; two basic.gets")
    s.sw(P(s) + wire.header(1, 0) + pub(1, s, b"second")).sw(get(1, s)).sw(get(1, s))
    s = c("body-larger-than-declared", "a header announcing 5 bytes and a 10-byte body frame")
    s.sw(P(s) + wire.header(1, 5) + wire.body(1, b"0123456789"))
    s = c("body-split-exact", "a 10-byte body in frames of 4 and 6; then basic.get")
    s.sw(P(s) + wire.header(1, 10) + wire.body(1, b"0123") + wire.body(1, b"456789"))
    s.sw(get(1, s))
    s = c("body-split-overflow", "a 10-byte body announced, frames of 6 and 6 sent")
    s.sw(P(s) + wire.header(1, 10) + wire.body(1, b"012345") + wire.body(1, b"678901"))
    s = c("empty-body-frame-first", "an empty body frame before the real 5-byte one; basic.get")
    s.sw(P(s) + wire.header(1, 5) + wire.body(1, b"") + wire.body(1, b"hello")).sw(get(1, s))
    s = c("empty-body-frame-after-empty-message", "header of size 0 followed by an empty body "
          "frame")
    s.sw(P(s) + wire.header(1, 0) + wire.body(1, b""))
    s = c("method-between-publish-and-header", "basic.publish, basic.qos, then header and body")
    s.sw(P(s) + m(1, spec.Basic.Qos(prefetch_count=1)) + wire.header(1, 5) + wire.body(1, b"hello"))
    s = c("method-between-header-and-body", "basic.publish, header, basic.qos, then the body")
    s.sw(P(s) + wire.header(1, 5) + m(1, spec.Basic.Qos(prefetch_count=1)) + wire.body(1, b"hello"))
    s = c("publish-between-header-and-body", "a second basic.publish where the body should be")
    s.sw(P(s) + wire.header(1, 5) + P(s))
    s = c("other-channel-method-mid-content", "basic.qos on channel 2 between the header and "
          "the body of a message on channel 1; then basic.get", channels=(1, 2))
    s.sw(P(s) + wire.header(1, 5) + m(2, spec.Basic.Qos(prefetch_count=1)) + wire.body(1, b"hello"))
    s.sw(get(1, s))
    # Two queues: the order in which two channels' messages reach one queue is not fixed.
    s = c("interleaved-two-channels", "messages published on channels 1 (to q) and 2 (to q2) "
          "with their frames interleaved; then basic.get from each", channels=(1, 2))
    s.sw(decl(1, s, "q2"))
    s.sw(P(s) + m(2, spec.Basic.Publish(exchange="", routing_key=s.q("q2"))) + wire.header(1, 1)
         + wire.header(2, 2) + wire.body(2, b"22") + wire.body(1, b"1"))
    s.sw(get(1, s)).sw(get(1, s, "q2"))
    s = c("header-on-other-channel", "basic.publish on channel 1, its header on channel 2",
          channels=(1, 2))
    s.sw(P(s) + wire.header(2, 5) + wire.body(2, b"hello"))
    s = c("publish-alone", "basic.publish with no header ever sent (the probe comes next)")
    s.sw(P(s))
    s = c("header-huge-size-no-body", "a header announcing 2^62 body bytes; no body")
    s.sw(P(s) + wire.header(1, 1 << 62))
    s = c("header-above-max-message-size", "a header announcing 128 MiB + 1 bytes (RabbitMQ's "
          "max_message_size is 128 MiB)")
    s.sw(P(s) + wire.header(1, (128 << 20) + 1))
    s = c("header-too-short", "a content header frame of 6 bytes")
    s.sw(P(s) + wire.frame(wire.HEADER, 1, b"\x00\x3c\x00\x00\x00\x00"))
    s = c("properties-truncated", "property flags announce content-type but no bytes follow")
    s.sw(P(s) + wire.header(1, 5, struct.pack(">H", 1 << 15)) + wire.body(1, b"hello"))
    s = c("properties-all-set", "a message with all 14 basic properties set; then basic.get")
    s.sw(pub(1, s, props=ALL_PROPS)).sw(get(1, s))
    for flags, doc in ((0x0001, "the continuation bit, then a zero flags word"),
                       (0x0002, "reserved bit 1"), (0x0003, "bits 0 and 1 (continuation + "
                                                         "reserved), then a zero flags word")):
        raw = struct.pack(">H", flags) + (b"\x00\x00" if flags & 1 else b"")
        s = c(f"property-flags-{flags:04x}", f"property flags with {doc}; then basic.get")
        s.sw(P(s) + wire.header(1, 5, raw) + wire.body(1, b"hello")).sw(get(1, s))
    for name, kw in (("delivery-mode-3", dict(delivery_mode=3)),
                     ("priority-255", dict(priority=255)),
                     ("user-id-guest", dict(user_id="guest")),
                     ("user-id-other", dict(user_id="x")),
                     ("expiration-0", dict(expiration="0")),
                     ("expiration-negative", dict(expiration="-1")),
                     ("expiration-not-a-number", dict(expiration="abc")),
                     ("expiration-empty", dict(expiration=""))):
        s = c(f"property-{name}", f"a message whose property {name}; then basic.get")
        s.sw(pub(1, s, props=spec.BasicProperties(**kw))).sw(get(1, s))
    s = c("publish-missing-exchange", "a whole message to an exchange that does not exist")
    s.sw(wire.publish(1, s.x("missing"), "k"))
    s = c("publish-missing-exchange-empty-body", "an empty-bodied message to a missing exchange")
    s.sw(wire.publish(1, s.x("missing"), "k", data=b""))
    s = c("publish-missing-exchange-no-content", "basic.publish to a missing exchange, never "
          "followed by its content")
    s.sw(m(1, spec.Basic.Publish(exchange=s.x("missing"), routing_key="k")))
    s = c("publish-internal-exchange", "a message to amq.rabbitmq.trace (internal)")
    s.sw(wire.publish(1, "amq.rabbitmq.trace", "k"))
    s = c("publish-amq-default", "a message to exchange 'amq.default' for this queue; basic.get")
    s.sw(wire.publish(1, "amq.default", s.q())).sw(get(1, s))
    s = c("mandatory-unroutable", "a mandatory message nothing routes to (basic.return)")
    s.sw(wire.publish(1, "amq.direct", s.u, mandatory=True))
    s = c("mandatory-routable", "a mandatory message to this queue; then basic.get")
    s.sw(pub(1, s, mandatory=True)).sw(get(1, s))
    s = c("immediate", "a message with immediate=true")
    s.sw(pub(1, s, immediate=True))
    s = c("mandatory-unroutable-confirm", "confirm mode, then an unroutable mandatory message "
          "(basic.return then basic.ack)")
    s.sw(m(1, spec.Confirm.Select())).sw(wire.publish(1, "amq.direct", s.u, mandatory=True))
    s = c("cc-header", "a message to queue q with header CC=[q2]: RabbitMQ's sender-selected "
          "distribution; basic.get from q2")
    s.sw(decl(1, s, "q2"))
    s.sw(pub(1, s, props=spec.BasicProperties(headers={"CC": [s.q("q2")]}))).sw(get(1, s, "q2"))
    s = c("routing-key-255", "a message to amq.direct with a 255-byte routing key bound to "
          "this queue; basic.get")
    s.sw(m(1, spec.Queue.Bind(queue=s.q(), exchange="amq.direct", routing_key="r" * 255)))
    s.sw(wire.publish(1, "amq.direct", "r" * 255)).sw(get(1, s))
    return out


def basic_group():
    out = []

    def c(name, doc, **kw):
        s = connected("basic/" + name, doc, **kw)
        out.append(s)
        return s

    def cq(name, doc, **kw):
        s = c(name, doc, **kw)
        s.sw(decl(1, s))
        return s

    C = lambda s, **kw: m(1, spec.Basic.Consume(queue=kw.pop("queue", s.q()),
                                                consumer_tag=kw.pop("tag", s.u), **kw))
    Q = lambda **kw: m(1, spec.Basic.Qos(**kw))
    for name, kw in (("prefetch-size-1", dict(prefetch_size=1)),
                     ("global", dict(prefetch_count=5, global_qos=True)),
                     ("count-0", dict(prefetch_count=0)),
                     ("count-65535", dict(prefetch_count=65535))):
        c(f"qos/{name}", f"basic.qos {kw}").sw(Q(**kw))
    s = cq("qos/prefetch-1-two-messages", "qos 1, consume, two messages: one delivery until "
           "the ack, then the second")
    s.sw(Q(prefetch_count=1)).sw(C(s)).sw(pub(1, s, b"a") + pub(1, s, b"bb"))
    s.sw(m(1, spec.Basic.Ack(delivery_tag=1)))
    s = cq("qos/global-after-consume", "a consumer, then qos global=true")
    s.sw(C(s)).sw(Q(prefetch_count=1, global_qos=True))

    s = cq("consume/duplicate-tag", "two consumers with the same tag on one channel")
    s.sw(C(s)).sw(C(s))
    s = cq("consume/nowait", "consume with nowait (no consume-ok), then a message")
    s.sw(C(s, nowait=True)).sw(pub(1, s))
    s = cq("consume/empty-tag", "consume with an empty tag: the server names it")
    s.sw(C(s, tag=""))
    s = cq("consume/exclusive-then-other", "an exclusive consumer, then a second consumer")
    s.sw(C(s, exclusive=True)).sw(C(s, tag=s.u + "-2"))
    s = cq("consume/other-then-exclusive", "a consumer, then an exclusive one")
    s.sw(C(s)).sw(C(s, tag=s.u + "-2", exclusive=True))
    s = c("consume/missing-queue", "consume on a queue that does not exist")
    s.sw(C(s, queue=s.q("missing")))
    s = cq("consume/no-ack-deliveries", "a no-ack consumer and three messages (1, 2, 3 bytes)")
    s.sw(C(s, no_ack=True)).sw(pub(1, s, b"1") + pub(1, s, b"22") + pub(1, s, b"333"))
    s = cq("consume/cancel", "consume then cancel")
    s.sw(C(s)).sw(m(1, spec.Basic.Cancel(consumer_tag=s.u)))
    s = c("consume/cancel-unknown-tag", "basic.cancel of a tag that was never used")
    s.sw(m(1, spec.Basic.Cancel(consumer_tag="fid-unknown")))
    s = cq("consume/cancel-nowait", "consume then cancel with nowait")
    s.sw(C(s)).sw(m(1, spec.Basic.Cancel(consumer_tag=s.u, nowait=True)))
    s = cq("consume/requeue-on-channel-close", "a message delivered to a consumer on channel 2, "
           "channel 2 closed unacked; basic.get on channel 1 sees redelivered", channels=(1, 2))
    s.sw(pub(1, s)).sw(m(2, spec.Basic.Consume(queue=s.q(), consumer_tag=s.u)))
    s.sw(m(2, spec.Channel.Close(200, "bye", 0, 0))).sw(get(1, s))

    s = cq("get/empty", "basic.get on an empty queue")
    s.sw(get(1, s))
    s = cq("get/ok-with-count", "two messages, then basic.get (message_count 1) twice")
    s.sw(pub(1, s, b"a") + pub(1, s, b"bb")).sw(get(1, s, no_ack=False)).sw(get(1, s))
    s = c("get/missing-queue", "basic.get on a queue that does not exist")
    s.sw(get(1, s, "missing"))

    def with_msgs(name, doc, *then, n=1, no_ack=False):
        """n messages (1, 2, ... bytes) fetched by basic.get, unacked unless no_ack; then
        each of `then` as a step (bytes, or a function of the scenario, like GET)."""
        s = cq(name, doc)
        s.sw(b"".join(pub(1, s, b"x" * (i + 1)) for i in range(n)))
        for _ in range(n):
            s.sw(get(1, s, no_ack=no_ack))
        for step in then:
            s.sw(step(s) if callable(step) else step)
        return s

    GET = lambda s: get(1, s)
    RECOVER = m(1, spec.Basic.Recover(requeue=True))

    A = lambda tag, multiple=False: m(1, spec.Basic.Ack(delivery_tag=tag, multiple=multiple))
    N = lambda tag, **kw: m(1, spec.Basic.Nack(delivery_tag=tag, **kw))
    R = lambda tag, **kw: m(1, spec.Basic.Reject(delivery_tag=tag, **kw))
    with_msgs("ack/unknown-tag", "ack of delivery tag 5 when only 1 exists", A(5))
    with_msgs("ack/tag-0", "ack of delivery tag 0, multiple=false", A(0))
    with_msgs("ack/tag-0-multiple", "ack tag 0 multiple=true with 2 unacked; then recover and "
              "get (nothing comes back)", A(0, True), RECOVER, GET, n=2)
    c("ack/tag-0-multiple-nothing-outstanding", "ack tag 0 multiple=true with nothing unacked") \
        .sw(A(0, True))
    with_msgs("ack/double", "the same tag acked twice", A(1), A(1))
    with_msgs("ack/multiple-partial", "3 unacked, ack tag 2 multiple; then recover and get "
              "(only the third returns, redelivered)", A(2, True), RECOVER, GET, n=3)
    with_msgs("ack/after-recover", "get (tag 1), recover requeue=true, then ack tag 1",
              RECOVER, A(1))
    with_msgs("ack/no-ack-delivery", "ack of a message fetched with no_ack", A(1), no_ack=True)
    c("ack/unknown-tag-multiple", "ack tag 7 multiple=true with nothing unacked").sw(A(7, True))
    with_msgs("nack/requeue", "nack requeue=true, then get (redelivered)",
              N(1, requeue=True), GET)
    with_msgs("nack/no-requeue", "nack requeue=false, then get (empty)", N(1, requeue=False), GET)
    with_msgs("nack/multiple", "2 unacked, nack tag 0 multiple requeue; then two gets",
              N(0, multiple=True, requeue=True), GET, GET, n=2)
    with_msgs("nack/unknown-tag", "nack of tag 9", N(9))
    with_msgs("reject/requeue", "reject requeue=true, then get (redelivered)",
              R(1, requeue=True), GET)
    with_msgs("reject/unknown-tag", "reject of tag 9", R(9))
    with_msgs("reject/double", "the same tag rejected twice", R(1, requeue=False),
              R(1, requeue=False))
    for requeue in (True, False):
        rq = str(requeue).lower()
        with_msgs(f"recover/requeue-{rq}", f"recover requeue={requeue} with one unacked "
                  "message; then get", m(1, spec.Basic.Recover(requeue=requeue)), GET)
        s = cq(f"recover/consumer-requeue-{rq}", f"a consumer holding one unacked delivery, "
               f"then recover requeue={requeue} (redelivered to it)")
        s.sw(C(s)).sw(pub(1, s)).sw(m(1, spec.Basic.Recover(requeue=requeue)))
        with_msgs(f"recover/async-requeue-{rq}", f"recover-async requeue={requeue} with one "
                  "unacked message; then get", m(1, spec.Basic.RecoverAsync(requeue=requeue)), GET)

    CS, TS = m(1, spec.Confirm.Select()), m(1, spec.Tx.Select())
    c("confirm/select-twice", "confirm.select twice").sw(CS).sw(CS)
    s = cq("confirm/select-nowait", "confirm.select nowait, then a message (acked)")
    s.sw(m(1, spec.Confirm.Select(nowait=True))).sw(pub(1, s))
    c("confirm/after-tx", "tx.select then confirm.select").sw(TS).sw(CS)
    c("tx/after-confirm", "confirm.select then tx.select").sw(CS).sw(TS)
    s = cq("confirm/publish", "confirm mode, one message to this queue, then another")
    s.sw(CS).sw(pub(1, s)).sw(pub(1, s))
    s = cq("confirm/publish-missing-exchange", "confirm mode, a message to a missing exchange")
    s.sw(CS).sw(wire.publish(1, s.x("missing"), "k"))
    s = c("confirm/reject-publish-overflow", "confirm mode, a queue with x-max-length 1 and "
          "x-overflow reject-publish: the second message is nacked")
    s.sw(decl(1, s, args=table(("x-max-length", value("l", 1)),
                               ("x-overflow", value("S", "reject-publish")))))
    s.sw(CS).sw(pub(1, s)).sw(pub(1, s))
    s = c("tx/select-twice", "tx.select twice").sw(TS).sw(TS)
    c("tx/commit-without-select", "tx.commit on a non-transactional channel") \
        .sw(m(1, spec.Tx.Commit()))
    c("tx/rollback-without-select", "tx.rollback on a non-transactional channel") \
        .sw(m(1, spec.Tx.Rollback()))
    s = cq("tx/publish-commit", "tx.select, a message, get (empty), commit, get (the message)")
    s.sw(TS).sw(pub(1, s)).sw(get(1, s)).sw(m(1, spec.Tx.Commit())).sw(get(1, s))
    s = cq("tx/publish-rollback", "tx.select, a message, rollback, commit, get (empty)")
    s.sw(TS).sw(pub(1, s)).sw(m(1, spec.Tx.Rollback())).sw(m(1, spec.Tx.Commit())).sw(get(1, s))
    with_msgs("tx/ack-rollback", "a fetched message, tx.select, ack, rollback, recover, get",
              TS, A(1), m(1, spec.Tx.Rollback()), RECOVER, GET)

    for caps, tag in ((wire.CAPABILITIES, ""), ({"publisher_confirms": True}, "-no-cancel-notify")):
        s = c(f"delete/queue-with-consumer{tag}", "queue.delete of a queue with a consumer on "
              "the same channel (basic.cancel vs delete-ok order)", caps=caps)
        s.sw(decl(1, s)).sw(C(s)).sw(m(1, spec.Queue.Delete(queue=s.q())))
    s = cq("delete/if-unused-with-consumer", "queue.delete if-unused of a queue with a consumer")
    s.sw(C(s)).sw(m(1, spec.Queue.Delete(queue=s.q(), if_unused=True)))
    s = cq("delete/if-unused-no-consumer", "queue.delete if-unused of a queue without consumer")
    s.sw(m(1, spec.Queue.Delete(queue=s.q(), if_unused=True)))
    s = cq("delete/if-empty-with-message", "queue.delete if-empty of a queue holding a message")
    s.sw(pub(1, s)).sw(m(1, spec.Queue.Delete(queue=s.q(), if_empty=True)))
    s = cq("delete/with-messages-count", "queue.delete of a queue holding 2 messages")
    s.sw(pub(1, s) + pub(1, s)).sw(m(1, spec.Queue.Delete(queue=s.q())))
    s = cq("purge/with-messages-and-unacked", "3 messages, 1 fetched unacked, then queue.purge")
    s.sw(pub(1, s) * 3).sw(get(1, s, no_ack=False)).sw(m(1, spec.Queue.Purge(queue=s.q())))
    X = lambda s, **kw: m(1, spec.Exchange.Declare(exchange=s.x(), type="direct", **kw))
    s = cq("delete/exchange-if-unused-bound", "exchange.delete if-unused of an exchange with a "
           "binding; then a plain delete")
    s.sw(X(s)).sw(m(1, spec.Queue.Bind(queue=s.q(), exchange=s.x(), routing_key="k")))
    s.sw(m(1, spec.Exchange.Delete(exchange=s.x(), if_unused=True)))
    s.sw(wire.channel_open(2)).sw(m(2, spec.Exchange.Delete(exchange=s.x())))
    s = c("delete/exchange-if-unused-unbound", "exchange.delete if-unused of an unbound exchange")
    s.sw(X(s)).sw(m(1, spec.Exchange.Delete(exchange=s.x(), if_unused=True)))
    s = cq("auto-delete/exchange-last-binding", "an auto-delete exchange loses its only binding "
           "(queue.unbind); passive declare then finds it gone")
    s.sw(X(s, auto_delete=True)).sw(m(1, spec.Queue.Bind(queue=s.q(), exchange=s.x(),
                                                         routing_key="k")))
    s.sw(m(1, spec.Queue.Unbind(queue=s.q(), exchange=s.x(), routing_key="k")))
    s.sw(m(1, spec.Exchange.Declare(exchange=s.x(), passive=True)))
    s = cq("auto-delete/exchange-queue-deleted", "an auto-delete exchange bound to a queue that "
           "is deleted; passive declare of the exchange")
    s.sw(X(s, auto_delete=True)).sw(m(1, spec.Queue.Bind(queue=s.q(), exchange=s.x(),
                                                         routing_key="k")))
    s.sw(m(1, spec.Queue.Delete(queue=s.q()))).sw(m(1, spec.Exchange.Declare(exchange=s.x(),
                                                                             passive=True)))
    s = c("auto-delete/queue-last-consumer", "a (non-exclusive) auto-delete queue loses its "
          "only consumer; passive declare then finds it gone")
    s.sw(decl(1, s, exclusive=False, auto_delete=True)).sw(C(s))
    s.sw(m(1, spec.Basic.Cancel(consumer_tag=s.u))).wait()
    s.sw(m(1, spec.Queue.Declare(queue=s.q(), passive=True)))

    s = c("server-named/last-queue", "queue.declare of '' then bind, publish via amq.direct, "
          "get, consume, purge and delete all naming queue ''")
    s.sw(m(1, spec.Queue.Declare(queue="", exclusive=True)))
    s.sw(m(1, spec.Queue.Bind(queue="", exchange="amq.direct", routing_key=s.u)))
    s.sw(wire.publish(1, "amq.direct", s.u)).sw(m(1, spec.Basic.Get(queue="", no_ack=True)))
    s.sw(m(1, spec.Basic.Consume(queue="", consumer_tag=s.u)))
    s.sw(m(1, spec.Queue.Purge(queue=""))).sw(m(1, spec.Queue.Delete(queue="")))
    s = c("server-named/named-queue-is-last", "after declaring a named queue, queue '' in "
          "basic.get means that queue")
    s.sw(decl(1, s)).sw(pub(1, s)).sw(m(1, spec.Basic.Get(queue="", no_ack=True)))
    for name, meth in (("bind", spec.Queue.Bind(queue="", exchange="amq.direct",
                                                routing_key="k")),
                       ("get", spec.Basic.Get(queue="")),
                       ("consume", spec.Basic.Consume(queue="")),
                       ("purge", spec.Queue.Purge(queue="")),
                       ("delete", spec.Queue.Delete(queue="")),
                       ("unbind", spec.Queue.Unbind(queue="", exchange="amq.direct"))):
        c(f"server-named/{name}-without-declare", f"{name} of queue '' with no queue declared "
          "on the channel").sw(m(1, meth))
    s = c("server-named/other-channel", "queue '' declared on channel 1, then basic.get of '' on "
          "channel 2 (the rule is per channel)", channels=(1, 2))
    s.sw(m(1, spec.Queue.Declare(queue="", exclusive=True))).sw(m(2, spec.Basic.Get(queue="")))

    s = c("queue/ttl-0", "a queue with x-message-ttl 0: a published message is gone at get")
    s.sw(decl(1, s, args=table(("x-message-ttl", value("l", 0))))).sw(pub(1, s)).sw(get(1, s))
    s = c("queue/max-length-drop-head", "x-max-length 1: of two messages (1 and 2 bytes) get "
          "returns the second")
    s.sw(decl(1, s, args=table(("x-max-length", value("l", 1)))))
    s.sw(pub(1, s, b"a") + pub(1, s, b"bb")).sw(get(1, s))
    s = c("queue/dead-letter-on-reject", "reject requeue=false of a message from a queue whose "
          "DLX (amq.direct) routes to a second queue; get it there")
    s.sw(decl(1, s, "dlq")).sw(m(1, spec.Queue.Bind(queue=s.q("dlq"), exchange="amq.direct",
                                                     routing_key=s.u + "-dead")))
    s.sw(decl(1, s, args=table(("x-dead-letter-exchange", value("S", "amq.direct")),
                               ("x-dead-letter-routing-key", value("S", s.u + "-dead")))))
    s.sw(pub(1, s)).sw(get(1, s, no_ack=False)).sw(R(1, requeue=False)).sw(get(1, s, "dlq"))
    return out
