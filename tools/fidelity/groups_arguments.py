"""The `arguments` group: queue and exchange arguments RabbitMQ 3.10 knows, with good and
bad values; inequivalent redeclarations; the amq.* exchanges; reserved and odd names.
"""
from pika import spec

import wire
from scenario import connected
from wire import method as m, table, value

L, S = (lambda v: value("l", v)), (lambda v: value("S", v))

# argument -> [(case name, encoded value)]
QUEUE_ARGS = {
    "x-message-ttl": [("l-1000", L(1000)), ("I-1000", value("I", 1000)),
                      ("s-1000", value("s", 1000)), ("b-10", value("b", 10)),
                      ("u-1000", value("u", 1000)), ("i-1000", value("i", 1000)),
                      ("L-1000", value("L", 1000)), ("zero", L(0)), ("negative", L(-1)),
                      ("max", L(4294967295)), ("above-max", L(4294967296)),
                      ("string", S("1000")), ("double", value("d", 1000.0)),
                      ("bool", value("t", 1)), ("void", value("V"))],
    "x-expires": [("l-1000", L(1000)), ("zero", L(0)), ("negative", L(-1)),
                  ("max", L(4294967295)), ("above-max", L(4294967296)), ("string", S("1000"))],
    "x-max-length": [("l-10", L(10)), ("I-10", value("I", 10)), ("zero", L(0)),
                     ("negative", L(-1)), ("string", S("10"))],
    "x-max-length-bytes": [("l-1000", L(1000)), ("zero", L(0)), ("negative", L(-1)),
                           ("string", S("1000"))],
    "x-overflow": [("drop-head", S("drop-head")), ("reject-publish", S("reject-publish")),
                   ("reject-publish-dlx", S("reject-publish-dlx")), ("bogus", S("bogus")),
                   ("long", L(1)), ("binary", value("x", b"drop-head"))],
    "x-dead-letter-exchange": [("empty", S("")), ("amq-direct", S("amq.direct")),
                               ("missing", S("fid-no-such-exchange")), ("long", L(1))],
    "x-dead-letter-routing-key": [("without-dlx", S("rk")), ("long", L(1))],
    "x-max-priority": [("l-10", L(10)), ("255", L(255)), ("256", L(256)), ("zero", L(0)),
                       ("negative", L(-1)), ("string", S("10")), ("b-10", value("b", 10))],
    "x-queue-mode": [("lazy", S("lazy")), ("default", S("default")), ("bogus", S("bogus")),
                     ("long", L(1))],
    "x-queue-type": [("classic", S("classic")), ("quorum", S("quorum")),
                     ("stream", S("stream")), ("bogus", S("bogus")), ("long", L(1)),
                     ("empty", S(""))],
    "x-single-active-consumer": [("true", value("t", 1)), ("false", value("t", 0)),
                                 ("string", S("true")), ("long", L(1))],
    "x-queue-master-locator": [("min-masters", S("min-masters")),
                               ("client-local", S("client-local")), ("random", S("random")),
                               ("bogus", S("bogus")), ("long", L(1))],
    "x-queue-leader-locator": [("client-local", S("client-local")),
                               ("balanced", S("balanced")), ("bogus", S("bogus"))],
    "x-delivery-limit": [("l-5", L(5)), ("negative", L(-1)), ("string", S("5"))],
    "x-max-in-memory-length": [("l-5", L(5)), ("string", S("5"))],
    "x-max-in-memory-bytes": [("l-5", L(5))],
    "x-max-age": [("1D", S("1D")), ("bogus", S("1Q"))],
    "x-stream-max-segment-size-bytes": [("l-1000", L(1000))],
    "x-ha-policy": [("all", S("all"))],
    "x-fid-unknown": [("S", S("v"))],
}

EXCHANGE_ARGS = [("alternate-exchange-amq-direct", table(("alternate-exchange", S("amq.direct")))),
                 ("alternate-exchange-empty", table(("alternate-exchange", S("")))),
                 ("alternate-exchange-missing", table(("alternate-exchange", S("fid-nope")))),
                 ("alternate-exchange-long", table(("alternate-exchange", L(1)))),
                 ("alternate-exchange-binary", table(("alternate-exchange", value("x", b"a")))),
                 ("x-fid-unknown", table(("x-fid-unknown", S("v"))))]

EXCHANGE_TYPES = ["direct", "fanout", "topic", "headers", "x-consistent-hash",
                  "x-delayed-message", "bogus", "", "DIRECT"]

# (name, type, durable, internal) of the predeclared exchanges.
AMQ = [("amq.direct", "direct", False), ("amq.fanout", "fanout", False),
       ("amq.topic", "topic", False), ("amq.headers", "headers", False),
       ("amq.match", "headers", False), ("amq.rabbitmq.trace", "topic", True)]


def _qdecl(ch, s, args=b"\x00\x00\x00\x00", **kw):
    kw.setdefault("queue", s.q())
    return wire.with_table(ch, spec.Queue.Declare(**kw), args)


def _xdecl(ch, s, args=b"\x00\x00\x00\x00", **kw):
    kw.setdefault("exchange", s.x())
    return wire.with_table(ch, spec.Exchange.Declare(**kw), args)


def _xdel(ch, name):
    return m(ch, spec.Exchange.Delete(exchange=name))


def arguments_group():
    out = []

    def c(name, doc, **kw):
        s = connected("arguments/" + name, doc, **kw)
        out.append(s)
        return s

    for arg, cases in QUEUE_ARGS.items():
        for case, v in cases:
            s = c(f"queue/{arg}/{case}", f"queue.declare (exclusive) with {arg} = {case}")
            s.sw(_qdecl(1, s, table((arg, v)), exclusive=True))
            if arg == "x-max-priority":
                # RabbitMQ needs ~0.3 s to make 255 priority sub-queues: give the answer
                # two more quiet windows before the probe.
                s.wait().wait()
    for qtype in ("quorum", "stream"):
        s = c(f"queue/x-queue-type/{qtype}-durable", f"a durable, non-exclusive {qtype} queue "
              "(what that type needs); then queue.delete")
        s.sw(_qdecl(1, s, table(("x-queue-type", S(qtype))), durable=True))
        s.sw(m(1, spec.Queue.Delete(queue=s.q())))
    s = c("queue/dead-letter-exchange-and-routing-key", "x-dead-letter-exchange amq.direct "
          "with x-dead-letter-routing-key")
    s.sw(_qdecl(1, s, table(("x-dead-letter-exchange", S("amq.direct")),
                            ("x-dead-letter-routing-key", S("rk"))), exclusive=True))
    s = c("queue/duplicate-x-max-length", "x-max-length given twice (1, then 2) in one table")
    s.sw(_qdecl(1, s, table(("x-max-length", L(1)), ("x-max-length", L(2))), exclusive=True))
    for name, args in EXCHANGE_ARGS:
        s = c(f"exchange/{name}", f"exchange.declare (direct) with arguments {name}; then "
              "exchange.delete")
        s.sw(_xdecl(1, s, args, type="direct")).sw(_xdel(1, s.x()))
    for t in EXCHANGE_TYPES:
        s = c(f"exchange-type/{t or 'empty'}", f"exchange.declare of type {t!r}; then "
              "exchange.delete")
        s.sw(_xdecl(1, s, type=t)).sw(_xdel(1, s.x()))
    s = c("exchange-type/passive-with-unknown-type", "passive exchange.declare of amq.direct "
          "naming an unknown type")
    s.sw(_xdecl(1, s, exchange="amq.direct", type="bogus", passive=True))

    # Inequivalent redeclarations: first declare, then the second one on the same channel.
    qbase = dict(exclusive=True)
    for name, first, second, args1, args2 in [
        ("same", qbase, qbase, None, None),
        ("durable", qbase, dict(qbase, durable=True), None, None),
        ("exclusive", qbase, dict(exclusive=False), None, None),
        ("auto-delete", qbase, dict(qbase, auto_delete=True), None, None),
        ("ttl-value", qbase, qbase, table(("x-message-ttl", L(1000))),
         table(("x-message-ttl", L(2000)))),
        ("ttl-added", qbase, qbase, None, table(("x-message-ttl", L(1000)))),
        ("ttl-removed", qbase, qbase, table(("x-message-ttl", L(1000))), None),
        ("ttl-other-int-type", qbase, qbase, table(("x-message-ttl", L(1000))),
         table(("x-message-ttl", value("I", 1000)))),
        ("ttl-as-string", qbase, qbase, table(("x-message-ttl", L(1000))),
         table(("x-message-ttl", S("1000")))),
        ("max-length-value", qbase, qbase, table(("x-max-length", L(1))),
         table(("x-max-length", L(2)))),
        ("unknown-arg-differs", qbase, qbase, table(("x-fid", S("a"))), table(("x-fid", S("b")))),
        ("queue-type-explicit", qbase, qbase, None, table(("x-queue-type", S("classic")))),
        ("dlx-added", qbase, qbase, None, table(("x-dead-letter-exchange", S("amq.direct")))),
        ("passive-other-flags", qbase, dict(passive=True, durable=True), None,
         table(("x-message-ttl", L(5)))),
    ]:
        s = c(f"redeclare-queue/{name}", f"queue.declare twice, the second differing in: {name}")
        s.sw(_qdecl(1, s, args1 or b"\x00" * 4, **first))
        s.sw(_qdecl(1, s, args2 or b"\x00" * 4, **second))
    xbase = dict(type="direct")
    for name, first, second, args1, args2 in [
        ("same", xbase, xbase, None, None),
        ("type", xbase, dict(type="topic"), None, None),
        ("durable", xbase, dict(xbase, durable=True), None, None),
        ("auto-delete", xbase, dict(xbase, auto_delete=True), None, None),
        ("internal", xbase, dict(xbase, internal=True), None, None),
        ("alternate-exchange-added", xbase, xbase, None,
         table(("alternate-exchange", S("amq.direct")))),
        ("alternate-exchange-value", xbase, xbase, table(("alternate-exchange", S("amq.direct"))),
         table(("alternate-exchange", S("amq.fanout")))),
        ("unknown-arg-differs", xbase, xbase, table(("x-fid", S("a"))), table(("x-fid", S("b")))),
        ("passive-other-type", xbase, dict(type="fanout", passive=True), None, None),
    ]:
        s = c(f"redeclare-exchange/{name}", f"exchange.declare twice, the second differing in: "
              f"{name}; then exchange.delete on a fresh channel", channels=(1, 2))
        s.sw(_xdecl(1, s, args1 or b"\x00" * 4, **first))
        s.sw(_xdecl(1, s, args2 or b"\x00" * 4, **second))
        s.sw(_xdel(2, s.x()))

    # The predeclared exchanges.
    for name, xtype, internal in AMQ:
        for case, kw in [("same", dict(type=xtype, durable=True, internal=internal)),
                         ("other-type", dict(type="fanout" if xtype != "fanout" else "direct",
                                             durable=True, internal=internal)),
                         ("non-durable", dict(type=xtype, durable=False, internal=internal)),
                         ("passive", dict(type=xtype, passive=True))]:
            s = c(f"amq/{name}/{case}", f"exchange.declare of {name} ({case})")
            s.sw(_xdecl(1, s, exchange=name, **kw))
    for name, doc, data in [
        ("declare-new-amq-exchange", "exchange.declare of a new name starting with amq.",
         lambda s: _xdecl(1, s, exchange="amq.fid-new", type="direct")),
        ("passive-missing-amq-exchange", "passive exchange.declare of amq.fid-missing",
         lambda s: _xdecl(1, s, exchange="amq.fid-missing", passive=True)),
        ("delete-amq-direct", "exchange.delete of amq.direct",
         lambda s: _xdel(1, "amq.direct")),
        ("delete-default-exchange", "exchange.delete of the default exchange ''",
         lambda s: _xdel(1, "")),
        ("declare-default-exchange", "exchange.declare of '' (the default exchange)",
         lambda s: _xdecl(1, s, exchange="", type="direct", durable=True)),
        ("passive-default-exchange", "passive exchange.declare of ''",
         lambda s: _xdecl(1, s, exchange="", passive=True)),
        ("declare-amq-default", "exchange.declare of amq.default",
         lambda s: _xdecl(1, s, exchange="amq.default", type="direct", durable=True)),
        ("declare-amq-queue", "queue.declare of a name starting with amq.",
         lambda s: _qdecl(1, s, queue="amq.fid-queue", exclusive=True)),
        ("declare-amq-gen-queue", "queue.declare of amq.gen-fid (looks server-named)",
         lambda s: _qdecl(1, s, queue="amq.gen-fid", exclusive=True)),
        ("passive-amq-queue", "passive queue.declare of amq.fid-missing",
         lambda s: _qdecl(1, s, queue="amq.fid-missing", passive=True)),
        ("passive-missing-queue", "passive queue.declare of a queue that does not exist",
         lambda s: _qdecl(1, s, passive=True)),
        ("passive-missing-exchange", "passive exchange.declare of an exchange that does not "
         "exist", lambda s: _xdecl(1, s, passive=True)),
        ("bind-to-default-exchange", "queue.bind of an exclusive queue to ''",
         lambda s: _qdecl(1, s, exclusive=True) + m(1, spec.Queue.Bind(
             queue=s.q(), exchange="", routing_key="k"))),
        ("unbind-from-default-exchange", "queue.unbind of an exclusive queue from ''",
         lambda s: _qdecl(1, s, exclusive=True) + m(1, spec.Queue.Unbind(
             queue=s.q(), exchange="", routing_key=s.q()))),
        ("bind-to-missing-exchange", "queue.bind of an exclusive queue to a missing exchange",
         lambda s: _qdecl(1, s, exclusive=True) + m(1, spec.Queue.Bind(
             queue=s.q(), exchange=s.x("missing"), routing_key="k"))),
        ("bind-missing-queue", "queue.bind of a missing queue to amq.direct",
         lambda s: m(1, spec.Queue.Bind(queue=s.q("missing"), exchange="amq.direct"))),
        ("exchange-bind-to-default", "exchange.bind with the default exchange as destination",
         lambda s: m(1, spec.Exchange.Bind(destination="", source="amq.direct",
                                           routing_key=s.u))),
        ("exchange-bind-missing-source", "exchange.bind of amq.fanout to a missing source",
         lambda s: m(1, spec.Exchange.Bind(destination="amq.fanout", source=s.x("missing")))),
        ("delete-missing-queue", "queue.delete of a queue that does not exist",
         lambda s: m(1, spec.Queue.Delete(queue=s.q("missing")))),
        ("delete-missing-exchange", "exchange.delete of an exchange that does not exist",
         lambda s: _xdel(1, s.x("missing"))),
        ("purge-missing-queue", "queue.purge of a queue that does not exist",
         lambda s: m(1, spec.Queue.Purge(queue=s.q("missing")))),
        ("unbind-missing-binding", "queue.unbind of a binding that does not exist",
         lambda s: _qdecl(1, s, exclusive=True) + m(1, spec.Queue.Unbind(
             queue=s.q(), exchange="amq.direct", routing_key="nope"))),
    ]:
        s = c(f"names/{name}", doc)
        s.sw(data(s))
    # Odd but legal (or not) names.
    for name, qname in [("queue-name-255", "q" * 255), ("queue-name-invalid-utf8", b"\xff\xfeq"),
                        ("queue-name-with-nul", b"q\x00q"), ("queue-name-space", "a queue"),
                        ("queue-name-unicode", "qüeue-✓")]:
        s = c(f"names/{name}", f"queue.declare (exclusive) of an odd name: {name}")
        full = qname if isinstance(qname, bytes) else qname.encode()
        if len(full) < 200:
            full = s.u.encode() + b"." + full
        payload = wire.method_payload(spec.Queue.Declare(queue="", exclusive=True))
        s.sw(wire.frame(1, 1, payload[:6] + wire.shortstr(full) + payload[7:]))
    for name, xname in [("exchange-name-255", "x" * 255),
                        ("exchange-name-invalid-utf8", b"\xff\xfex")]:
        s = c(f"names/{name}", f"exchange.declare of an odd name: {name}; then exchange.delete")
        payload = wire.method_payload(spec.Exchange.Declare(exchange="", type="direct"))
        raw_name = xname if isinstance(xname, bytes) else xname.encode()
        decl = payload[:6] + wire.shortstr(raw_name) + payload[7:]
        delete = wire.method_payload(spec.Exchange.Delete(exchange=""))
        s.sw(wire.frame(1, 1, decl)).sw(wire.frame(1, 1, delete[:6] + wire.shortstr(raw_name)
                                                   + delete[7:]))
    return out
