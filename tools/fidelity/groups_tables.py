"""The `tables` group: every field-table tag and malformed tables, in each place a client
sends a table (queue.declare and exchange.declare arguments, basic.consume and queue.bind
arguments, the headers property of published content, the client properties of start-ok).
"""
import math
import struct

from pika import spec

import wire
from scenario import connected, until_phase
from wire import method as m, table, value

# (name, encoded value): one of each tag RabbitMQ 3.10 reads, plus edge values.
VALID = [
    ("t-true", value("t", 1)), ("t-false", value("t", 0)), ("t-2", value("t", 2)),
    ("b", value("b", -5)), ("B", value("B", 250)), ("s", value("s", -300)),
    ("u", value("u", 60000)), ("I", value("I", -70000)), ("i", value("i", 4000000000)),
    ("L", value("L", 2 ** 63 + 5)), ("l", value("l", -2 ** 40)), ("f", value("f", 1.5)),
    ("d", value("d", 2.25)), ("D", value("D", (2, 12345))), ("D-scale-255", value("D", (255, 1))),
    ("S", value("S", "text")), ("S-invalid-utf8", value("S", b"\xff\xfe")),
    ("S-empty", value("S", "")), ("x", value("x", b"\x00\x01")),
    ("A", value("A", value("I", 1) + value("S", "a"))), ("A-empty", value("A", b"")),
    ("T", value("T", 1700000000)), ("F", value("F", table(("k", value("S", "v"))))),
    ("F-empty", value("F", table())), ("V", value("V")),
    ("f-nan", value("f", math.nan)), ("f-inf", value("f", math.inf)),
    ("d-nan", value("d", math.nan)), ("d-minus-inf", value("d", -math.inf)),
]
# Tags no version of RabbitMQ reads, each followed by 4 zero bytes.
INVALID = [("U", b"U"), ("c", b"c"), ("X", b"X"), ("Z", b"Z"), ("e", b"e"), ("nul", b"\x00"),
           ("0xff", b"\xff"), ("space", b" ")]


def _nested_tables(depth):
    t = table(("k", value("V")))
    for _ in range(depth - 1):
        t = table(("k", value("F", t)))
    return t


def _nested_arrays(depth):
    a = value("A", value("V"))
    for _ in range(depth - 1):
        a = value("A", a)
    return table(("k", a))


def _key(k, v=value("V")):
    """A table with one entry whose key bytes are given raw."""
    return table((k, v))


# (name, table bytes, doc): malformed or extreme tables.
def bad_tables():
    one = table(("k", value("I", 7)))
    body = one[4:]
    return [
        ("length-overruns-frame", struct.pack(">I", len(body) + 100) + body,
         "table length 100 bytes beyond the end of the frame"),
        ("length-short-by-3", struct.pack(">I", len(body) - 3) + body,
         "table length 3 bytes short: the last value is cut and 3 bytes follow the table"),
        ("length-cuts-key", struct.pack(">I", 1) + body, "table length 1: only the key length"),
        ("length-field-truncated", b"\x00\x00", "the frame ends 2 bytes into the table length"),
        ("key-overruns", struct.pack(">I", 4) + b"\x20abc", "a key claiming 32 bytes, 3 present"),
        ("longstr-overruns", table(("k", b"S" + struct.pack(">I", 1000) + b"abc")),
         "an S value claiming 1000 bytes, 3 present (within the table's own length)"),
        ("binary-overruns", table(("k", b"x" + struct.pack(">I", 1000) + b"abc")),
         "an x value claiming 1000 bytes, 3 present"),
        ("value-missing", table(("k", b"")), "a key with no tag or value after it"),
        ("fixed-value-cut", table(("k", b"I\x00\x00")), "an I value with 2 of its 4 bytes"),
        ("nested-overruns-parent", table(("k", b"F" + struct.pack(">I", 100) + b"\x00")),
         "a nested table claiming 100 bytes inside a parent that ends after 1"),
        ("array-overruns", table(("k", b"A" + struct.pack(">I", 100) + b"V")),
         "an array claiming 100 bytes, 1 present"),
        ("array-invalid-tag", table(("k", value("A", b"U\x00\x00\x00\x00"))),
         "an array holding a value with the invalid tag U"),
        ("array-cut-value", table(("k", value("A", b"I\x00"))), "an array whose I value is cut"),
        ("array-of-tables", table(("k", value("A", value("F", table(("a", value("V")))) * 2))),
         "an array of two tables"),
        ("array-of-arrays", table(("k", value("A", value("A", value("t", 1))))),
         "an array holding an array"),
        ("empty-key", _key(""), "an entry whose key is the empty string"),
        ("key-255", _key("k" * 255), "a 255-byte key"),
        ("key-invalid-utf8", _key(b"\xff\xfe"), "a key that is not UTF-8"),
        ("key-with-nul", _key(b"a\x00b"), "a key holding a NUL byte"),
        ("duplicate-keys", table(("k", value("I", 1)), ("k", value("S", "two"))),
         "the same key twice with values of different types"),
        ("thousand-entries", table(*[(f"k{i}", value("I", i)) for i in range(1000)]),
         "1000 entries"),
        ("nested-depth-10", _nested_tables(10), "tables nested 10 deep"),
        ("nested-depth-100", _nested_tables(100), "tables nested 100 deep"),
        ("nested-depth-1000", _nested_tables(1000), "tables nested 1000 deep"),
        ("nested-depth-10000", _nested_tables(10000), "tables nested 10000 deep (~70 KB)"),
        ("arrays-depth-1000", _nested_arrays(1000), "arrays nested 1000 deep"),
        ("arrays-depth-10000", _nested_arrays(10000), "arrays nested 10000 deep (~50 KB)"),
    ]


def _declare(s, args):
    return wire.with_table(1, spec.Queue.Declare(queue=s.q(), exclusive=True), args)


def _headers_props(args):
    """Raw content-header properties: only the headers flag (bit 13) set, then the table."""
    return struct.pack(">H", 1 << 13) + args


def tables_group():
    out = []

    def c(name, doc, **kw):
        s = connected("tables/" + name, doc, **kw)
        out.append(s)
        return s

    invalid = [(n, t + b"\x00" * 4) for n, t in INVALID]
    for name, v in VALID + [(f"invalid-{n}", v) for n, v in invalid]:
        s = c(f"queue-args/{name}", f"queue.declare (exclusive) with argument fid-k of tag "
              f"{name}")
        s.sw(_declare(s, table(("fid-k", v))))
    for name, t, doc in bad_tables():
        s = c(f"queue-args/{name}", f"queue.declare (exclusive) arguments: {doc}")
        s.sw(_declare(s, t))
    for name, v in VALID + [(f"invalid-{n}", v) for n, v in invalid]:
        s = c(f"headers/{name}", f"a message whose headers property holds tag {name}, "
              "published to an exclusive queue and fetched back with basic.get")
        s.sw(m(1, spec.Queue.Declare(queue=s.q(), exclusive=True)))
        s.sw(m(1, spec.Basic.Publish(exchange="", routing_key=s.q()))
             + wire.header(1, 5, _headers_props(table(("fid-k", v)))) + wire.body(1, b"hello"))
        s.sw(m(1, spec.Basic.Get(queue=s.q(), no_ack=True)))
    for name, t, doc in bad_tables():
        if name.startswith(("nested-depth-1000", "arrays-depth-10000", "thousand")):
            continue
        s = c(f"headers/{name}", f"a published message's headers property: {doc}; then "
              "basic.get")
        s.sw(m(1, spec.Queue.Declare(queue=s.q(), exclusive=True)))
        s.sw(m(1, spec.Basic.Publish(exchange="", routing_key=s.q()))
             + wire.header(1, 5, _headers_props(t)) + wire.body(1, b"hello"))
        s.sw(m(1, spec.Basic.Get(queue=s.q(), no_ack=True)))
    s = c("headers/routed-by-headers-exchange-invalid-tag", "a message with an invalid tag (U) "
          "in its headers published to amq.headers (which must read the headers to route)")
    s.sw(m(1, spec.Basic.Publish(exchange="amq.headers", routing_key=""))
         + wire.header(1, 5, _headers_props(table(("fid-k", b"U\x00\x00\x00\x00"))))
         + wire.body(1, b"hello"))
    # Client properties: the first table a client ever sends.
    cp_cases = [(n, v) for n, v in VALID if n in ("t-true", "S", "F", "A", "V", "x", "l", "d",
                                                   "T", "D", "L", "S-invalid-utf8")] \
        + [(f"invalid-{n}", v) for n, v in invalid[:3]]
    for name, v in cp_cases:
        s = until_phase(f"tables/client-properties/{name}", f"start-ok whose client properties "
                        f"hold tag {name}; then the rest of the handshake", "start")
        s.sw(wire.start_ok(props=wire.client_properties(extra=[("fid-k", v)])))
        s.sw(wire.tune_ok(), wire.conn_open())
        out.append(s)
    for name, t, doc in bad_tables():
        if name not in ("length-overruns-frame", "length-short-by-3", "key-overruns",
                        "longstr-overruns", "nested-overruns-parent", "array-invalid-tag",
                        "duplicate-keys", "nested-depth-100", "nested-depth-10000"):
            continue
        s = until_phase(f"tables/client-properties/{name}", f"start-ok client properties: {doc}",
                        "start")
        s.sw(wire.start_ok(props=t))
        s.sw(wire.tune_ok(), wire.conn_open())
        out.append(s)
    s = until_phase("tables/client-properties/capabilities-not-a-table", "start-ok whose "
                    "capabilities entry is a string, not a table", "start")
    s.sw(wire.start_ok(props=table(("capabilities", value("S", "none")))))
    s.sw(wire.tune_ok(), wire.conn_open())
    out.append(s)
    # Other places that take a table.
    for name, v in [("S", value("S", "v")), ("l", value("l", 5)), ("V", value("V")),
                    ("invalid-U", b"U\x00\x00\x00\x00")]:
        s = c(f"exchange-args/{name}", f"exchange.declare with argument fid-k of tag {name}; "
              "then exchange.delete")
        s.sw(wire.with_table(1, spec.Exchange.Declare(exchange=s.x(), type="direct"),
                             table(("fid-k", v))))
        s.sw(m(1, spec.Exchange.Delete(exchange=s.x())))
    for name, v in [("S", value("S", "v")), ("I", value("I", 5)),
                    ("invalid-U", b"U\x00\x00\x00\x00")]:
        s = c(f"consume-args/{name}", f"basic.consume with argument fid-k of tag {name}")
        s.sw(m(1, spec.Queue.Declare(queue=s.q(), exclusive=True)))
        s.sw(wire.with_table(1, spec.Basic.Consume(queue=s.q(), consumer_tag=s.u),
                             table(("fid-k", v))))
    for name, args in [("x-match-all-S", table(("x-match", value("S", "all")),
                                               ("fid-k", value("S", "v")))),
                       ("x-match-any-I", table(("x-match", value("S", "any")),
                                               ("fid-k", value("I", 5)))),
                       ("x-match-bogus", table(("x-match", value("S", "most")))),
                       ("x-match-not-string", table(("x-match", value("l", 1)))),
                       ("invalid-U", table(("fid-k", b"U\x00\x00\x00\x00")))]:
        s = c(f"bind-args/{name}", f"queue.bind to amq.match with arguments {name}")
        s.sw(m(1, spec.Queue.Declare(queue=s.q(), exclusive=True)))
        s.sw(wire.with_table(1, spec.Queue.Bind(queue=s.q(), exchange="amq.match",
                                                routing_key=""), args))
    return out
