"""Scenario groups about framing and the connection: `frame`, `handshake`, `channel0`."""
import struct

from pika import spec

import methods
import wire
from scenario import Scenario, connected, until_phase
from wire import method as m

QOS = wire.method(1, spec.Basic.Qos(prefetch_count=1))  # a harmless, answered method


def _padded_declare(ch, s, payload_size):
    """queue.declare of an exclusive queue whose frame payload is exactly payload_size
    bytes, padded by an 'x' argument (unknown keys are ignored by RabbitMQ)."""
    base = wire.method_payload(spec.Queue.Declare(queue=s.q(), exclusive=True))[:-4]
    fixed = len(base) + 4 + len(wire.shortstr("pad")) + 1 + 4
    pad = payload_size - fixed
    return wire.frame(wire.METHOD, ch, base + wire.table(("pad", wire.value("x", b"p" * pad))))


def frame_group():
    out = []

    def c(name, doc, **kw):
        s = connected("frame/" + name, doc, **kw)
        out.append(s)
        return s

    for t in (0, 4, 5, 6, 7, 9, 10, 11, 64, 65, 100, 127, 128, 200, 206, 254, 255):
        c(f"type-{t}-on-channel-1", f"a frame of unknown type {t} with a 4-byte payload on "
          "open channel 1").sw(wire.frame(t, 1, b"\0\0\0\0"))
    for t in (0, 4, 9, 255):
        c(f"type-{t}-on-channel-0", f"a frame of unknown type {t} on channel 0 after open") \
            .sw(wire.frame(t, 0, b"\0\0\0\0"))
    c("type-4-empty", "frame type 4 (0-8's oob-method slot) with no payload") \
        .sw(wire.frame(4, 1, b""))
    c("method-control", "a well-formed basic.qos: the control case for this group").sw(QOS)
    c("header-alone-on-channel-1", "type 2 (content header) with no basic.publish before it") \
        .sw(wire.header(1, 5))
    c("body-alone-on-channel-1", "type 3 (content body) with no publish or header before it") \
        .sw(wire.body(1, b"hello"))
    c("heartbeat-on-channel-0", "an empty heartbeat frame on channel 0 (valid, no answer)") \
        .sw(wire.heartbeat())
    c("heartbeat-with-payload", "a heartbeat frame on channel 0 carrying 4 payload bytes") \
        .sw(wire.heartbeat(0, b"\0\0\0\0"))
    c("heartbeat-on-channel-1", "an empty heartbeat frame on open channel 1") \
        .sw(wire.heartbeat(1))
    c("heartbeat-on-unopened-channel", "an empty heartbeat frame on channel 5 (never opened)") \
        .sw(wire.heartbeat(5))
    c("heartbeat-bad-frame-end", "a heartbeat whose frame-end octet is 0x00") \
        .sw(wire.frame(8, 0, b"", end=0))
    for end in (0x00, 0xCD, 0xCF, 0xFF):
        c(f"bad-frame-end-{end:02x}-on-channel-1", f"basic.qos on channel 1 whose frame-end "
          f"octet is 0x{end:02X} instead of 0xCE").sw(wire.frame(1, 1, QOS[7:-1], end=end))
    c("bad-frame-end-on-channel-0", "connection-class frame (update-secret-ok) on channel 0 "
      "whose frame-end is 0x00").sw(wire.raw_method(0, 10, 71)[:-1] + b"\0")
    for n in range(4):
        c(f"method-payload-{n}-bytes-on-channel-1", f"a method frame on channel 1 whose payload "
          f"has only {n} bytes (shorter than class+method ids)") \
            .sw(wire.frame(1, 1, bytes.fromhex("003c000a")[:n]))
    for n in (0, 2):
        c(f"method-payload-{n}-bytes-on-channel-0", f"a method frame on channel 0 with a {n}-"
          "byte payload").sw(wire.frame(1, 0, bytes.fromhex("000a")[:n]))
    c("method-truncated-arguments", "queue.declare whose payload stops in the middle of the "
      "queue name").sw(wire.frame(1, 1, bytes.fromhex("0032000a0000") + b"\x10abc"))
    c("method-trailing-garbage", "basic.qos followed, inside the same frame, by 5 extra bytes") \
        .sw(wire.frame(1, 1, QOS[7:-1] + b"\x01\x02\x03\x04\x05"))
    s = c("method-bit-field-padding", "queue.declare (exclusive) with the unused high bits of "
          "its flags octet set")
    s.sw(_declare_with_flags(s, 0xE4))  # exclusive + bits 5-7
    # Size field: what is read as one frame, what is refused as too large.
    c("size-0xffffffff-header-only", "a frame header announcing 0xFFFFFFFF payload bytes, and "
      "nothing more").sw(struct.pack(">BHI", 1, 1, 0xFFFFFFFF))
    c("size-0xffffffff-with-bytes", "a frame header announcing 0xFFFFFFFF bytes followed by "
      "100 bytes of payload").sw(struct.pack(">BHI", 1, 1, 0xFFFFFFFF) + b"\0" * 100)
    c("size-frame-max-header-only", "a method frame header announcing frame_max+1 payload "
      "bytes, and nothing more").sw(struct.pack(">BHI", 1, 1, wire.FRAME_MAX + 1))
    # The size limit. RabbitMQ reads payloads up to frame_max (its 8-byte "fudge"), not
    # frame_max-8. Probed at a negotiated 4096 (cheap to store) and, for bodies, at the
    # default 131072 on both sides of the largest legal size.
    for delta in (-8, -7, 0, 1):
        n = 4096 + delta
        s = c(f"method-payload-4096{delta:+d}", f"frame_max tuned to 4096: a queue.declare "
              f"whose frame payload is {n} bytes", frame_max=4096)
        s.sw(_padded_declare(1, s, n))
        s = c(f"body-4096{delta:+d}", f"frame_max tuned to 4096: a body frame of {n} payload "
              "bytes, to an exclusive queue", frame_max=4096)
        s.sw(m(1, spec.Queue.Declare(queue=s.q(), exclusive=True)))
        s.sw(wire.publish(1, "", s.q(), data=b"b" * n))
    for delta in (-8, 1):
        n = wire.FRAME_MAX + delta
        s = c(f"body-frame-max{delta:+d}", f"a body frame of frame_max{delta:+d} ({n}) payload "
              "bytes, to an exclusive queue")
        s.sw(m(1, spec.Queue.Declare(queue=s.q(), exclusive=True)))
        s.sw(wire.publish(1, "", s.q(), data=b"b" * n))
    # Frames split or bunched across writes.
    c("partial-header-3-bytes", "only the first 3 bytes of a frame header, then silence") \
        .sw(QOS[:3])
    c("header-without-payload", "a basic.qos frame header (7 bytes) without its payload") \
        .sw(QOS[:7])
    c("missing-frame-end", "a whole basic.qos frame except the frame-end octet").sw(QOS[:-1])
    c("split-across-writes", "basic.qos sent in two writes with an await between them") \
        .sw(QOS[:5]).sw(QOS[5:])
    c("two-frames-one-write", "two basic.qos frames in one write").sw(QOS + QOS)
    c("hundred-frames-one-write", "100 basic.qos frames in one write").sw(QOS * 100)
    c("frame-then-garbage", "basic.qos followed by 8 bytes of 0xFF").sw(QOS + b"\xff" * 8)
    c("protocol-header-after-open", "the protocol header sent again on an open connection") \
        .sw(wire.PROTOCOL_HEADER)
    return out


def _declare_with_flags(s, flags):
    """queue.declare (exclusive) of s's queue with the flags octet replaced."""
    p = wire.method_payload(spec.Queue.Declare(queue=s.q(), exclusive=True))
    # class, method, ticket(2), queue shortstr, then the flags octet, then the table.
    i = 4 + 2 + 1 + p[6]
    return wire.frame(1, 1, p[:i] + bytes([flags]) + p[i + 1:])


HEADERS = [
    ("amqp-0-9-1-revision-0", b"AMQP\x00\x00\x09\x00"),
    ("amqp-0-9-1-revision-2", b"AMQP\x00\x00\x09\x02"),
    ("amqp-0-9-1-protocol-id-1", b"AMQP\x01\x00\x09\x01"),
    ("amqp-0-9-old-style", b"AMQP\x01\x01\x00\x09"),
    ("amqp-0-8-old-style", b"AMQP\x01\x01\x08\x00"),
    ("amqp-0-8", b"AMQP\x00\x00\x08\x00"),
    ("amqp-0-10", b"AMQP\x01\x01\x00\x0a"),
    ("amqp-1-0", b"AMQP\x00\x01\x00\x00"),
    ("amqp-1-0-tls", b"AMQP\x02\x01\x00\x00"),
    ("amqp-1-0-sasl", b"AMQP\x03\x01\x00\x00"),
    ("lowercase-amqp", b"amqp\x00\x00\x09\x01"),
    ("zeros", b"\x00" * 8),
    ("garbage", bytes(range(1, 9))),
    ("http-get", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("tls-client-hello", bytes.fromhex("16030100a5010000a10303") + b"\x00" * 32),
    ("heartbeat-frame", wire.heartbeat()),
    ("long-garbage", b"X" * 100),
    ("header-twice", wire.PROTOCOL_HEADER * 2),
    ("header-then-garbage", wire.PROTOCOL_HEADER + b"\xff" * 8),
    ("start-ok-before-header", wire.start_ok()),
]

PARTIAL_HEADERS = [("short-4-bytes", b"AMQP"), ("short-3-bytes", b"AMQ"),
                   ("short-7-bytes", wire.PROTOCOL_HEADER[:7])]


def handshake_group():
    out = []

    def new(name, doc, **kw):
        s = Scenario("handshake/" + name, doc, **kw)
        out.append(s)
        return s

    def at(name, doc, phase, **kw):
        s = until_phase("handshake/" + name, doc, phase, **kw)
        out.append(s)
        return s

    def done(name, doc, **kw):
        s = connected("handshake/" + name, doc, **kw)
        out.append(s)
        return s

    for name, data in HEADERS:
        new(f"header-{name}", f"protocol header replaced by {data[:16]!r}").sw(data)
    for name, data in PARTIAL_HEADERS:
        new(f"header-{name}", f"only {data!r} of the protocol header, then silence").sw(data)
    new("header-in-two-writes", "the protocol header in two writes (4 + 4 bytes)") \
        .sw(wire.PROTOCOL_HEADER[:4]).sw(wire.PROTOCOL_HEADER[4:])

    # Every client method in each phase of the handshake.
    phases = {"start": "before start-ok", "tune": "before tune-ok", "open": "before open"}
    for phase, when in phases.items():
        for meth in methods.CONNECTION_CLIENT:
            s = at(f"{when.replace(' ', '-')}/{meth.name}", f"{meth.name} on channel 0 {when}",
                   phase)
            s.sw(meth.send(0, s))
        for meth in methods.CLIENT:
            s = at(f"{when.replace(' ', '-')}/{meth.name}", f"{meth.name} on channel 1 {when}",
                   phase)
            s.sw(meth.send(1, s))
        at(f"{when.replace(' ', '-')}/heartbeat", f"a heartbeat frame {when}", phase) \
            .sw(wire.heartbeat())
    # Authentication.
    for name, mech, resp, caps, doc in [
        ("unknown-mechanism", "FOO", b"\0guest\0guest", None, "SASL mechanism FOO"),
        ("lowercase-plain", "plain", b"\0guest\0guest", None, "mechanism 'plain' (lowercase)"),
        ("external", "EXTERNAL", b"", None, "EXTERNAL (not enabled)"),
        ("empty-mechanism", "", b"\0guest\0guest", None, "an empty mechanism name"),
        ("plain-empty-response", "PLAIN", b"", None, "PLAIN with an empty response"),
        ("plain-no-leading-nul", "PLAIN", b"guest\0guest", None, "PLAIN response 'guest\\0guest'"),
        ("plain-authzid", "PLAIN", b"guest\0guest\0guest", None, "PLAIN with an authzid"),
        ("plain-one-field", "PLAIN", b"\0guest", None, "PLAIN response with no password"),
        ("plain-unknown-user", "PLAIN", b"\0nobody\0guest", None, "PLAIN, unknown user"),
        ("wrong-password", "PLAIN", b"\0guest\0wrong", None,
         "wrong password, client has authentication_failure_close"),
        ("wrong-password-no-capability", "PLAIN", b"\0guest\0wrong",
         {k: v for k, v in wire.CAPABILITIES.items() if k != "authentication_failure_close"},
         "wrong password, capability absent"),
        ("wrong-password-capability-false", "PLAIN", b"\0guest\0wrong",
         dict(wire.CAPABILITIES, authentication_failure_close=False),
         "wrong password, capability present but false"),
        ("wrong-password-no-capabilities-table", "PLAIN", b"\0guest\0wrong", "none",
         "wrong password, no capabilities table in client properties"),
        ("amqplain-wrong-password", "AMQPLAIN", wire.amqplain(password="wrong"), None,
         "AMQPLAIN with a wrong password"),
        ("amqplain-malformed", "AMQPLAIN", b"\x05LOGIN", None, "AMQPLAIN with a broken table"),
        ("amqplain-no-password", "AMQPLAIN", wire.table(("LOGIN", wire.value("S", "guest")))[4:],
         None, "AMQPLAIN without PASSWORD"),
    ]:
        caps = wire.CAPABILITIES if caps is None else (None if caps == "none" else caps)
        at(f"auth-{name}", f"start-ok: {doc}", "start") \
            .sw(wire.start_ok(mechanism=mech, response=resp, caps=caps))
    s = at("auth-amqplain", "a whole handshake with AMQPLAIN guest/guest", "start")
    s.sw(wire.start_ok(mechanism="AMQPLAIN", response=wire.amqplain()))
    s.sw(wire.tune_ok(), wire.conn_open())
    for name, kw, doc in [
        ("empty-client-properties", {"props": wire.table()}, "an empty client-properties table"),
        ("locale-fr", {"locale": "fr_FR"}, "locale fr_FR (not offered)"),
        ("locale-empty", {"locale": ""}, "an empty locale"),
        ("no-capabilities", {"caps": None}, "client properties without capabilities"),
    ]:
        s = at(f"start-ok-{name}", f"a whole handshake whose start-ok has {doc}", "start")
        s.sw(wire.start_ok(**kw)).sw(wire.tune_ok(), wire.conn_open())
    at("start-ok-truncated", "start-ok cut off in the middle of the mechanism", "start") \
        .sw(wire.frame(1, 0, wire.start_ok()[7:-1][:-30]))
    at("start-ok-on-channel-1", "start-ok on channel 1 instead of 0", "start") \
        .sw(wire.start_ok(channel=1))
    at("start-ok-twice", "two start-oks in one write", "start").sw(wire.start_ok() * 2)
    # Tuning.
    for fm in (0, 1, 4095, 4096, 131071, 131073, 1 << 20, 0xFFFFFFFF):
        s = at(f"tune-ok-frame-max-{fm}", f"tune-ok with frame_max {fm} (offered 131072), then "
               "open and channel.open", "tune")
        s.sw(wire.tune_ok(frame_max=fm), wire.conn_open()).sw(wire.channel_open(1))
    for cm, a, b in ((0, 2048, 65535), (1, 1, 2), (2046, 2046, 2047), (2048, 2048, 2049),
                     (65535, 65535, 2)):
        s = at(f"tune-ok-channel-max-{cm}", f"tune-ok with channel_max {cm} (offered 2047), "
               f"then channel.open on {a} and on {b}", "tune")
        s.sw(wire.tune_ok(channel_max=cm), wire.conn_open())
        s.sw(wire.channel_open(a)).sw(wire.channel_open(b))
    for hb in (30, 60, 65535):
        at(f"tune-ok-heartbeat-{hb}", f"tune-ok with heartbeat {hb}, then open", "tune") \
            .sw(wire.tune_ok(heartbeat=hb), wire.conn_open())
    at("tune-ok-twice", "two tune-oks before open", "tune") \
        .sw(wire.tune_ok()).sw(wire.tune_ok(), wire.conn_open())
    at("open-without-tune-ok", "connection.open straight after start-ok", "tune") \
        .sw(wire.conn_open())
    # Opening.
    for name, vhost in [("unknown-vhost", "/nope"), ("empty-vhost", ""),
                        ("encoded-slash-vhost", "%2f"), ("long-vhost", "v" * 255)]:
        at(f"open-{name}", f"connection.open of vhost {vhost[:20]!r}", "open") \
            .sw(wire.conn_open(vhost))
    at("open-insist-and-capabilities", "connection.open with the deprecated insist bit and a "
       "capabilities string", "open") \
        .sw(m(0, spec.Connection.Open(virtual_host="/", capabilities="x", insist=True)))
    new("pipelined-handshake", "header, start-ok, tune-ok, open and channel.open in one write") \
        .sw(wire.PROTOCOL_HEADER + wire.start_ok() + wire.tune_ok() + wire.conn_open()
            + wire.channel_open(1))
    new("pipelined-header-and-start-ok", "protocol header and start-ok in one write") \
        .sw(wire.PROTOCOL_HEADER + wire.start_ok())
    # Connection methods once the connection is open.
    for meth in methods.CONNECTION_CLIENT:
        s = done(f"after-open/{meth.name}", f"{meth.name} on channel 0 after the handshake")
        s.sw(meth.send(0, s))
    done("after-open/connection.close-then-method", "connection.close and basic.qos in one "
         "write: nothing after the close is answered").sw(
        m(0, spec.Connection.Close(200, "bye", 0, 0)) + QOS)
    done("after-open/connection.close-no-close-ok", "connection.close with auto_close_ok off "
         "(the client never answers anything)", auto_close_ok=False) \
        .sw(m(0, spec.Connection.Close(200, "bye", 0, 0)))
    for meth in methods.CONNECTION_CLIENT:
        if meth.name in ("connection.close", "connection.close-ok"):
            continue
        s = done(f"on-channel-1/{meth.name}", f"{meth.name} on (open) channel 1")
        s.sw(meth.send(1, s))
    return out


def channel0_group():
    out = []
    for meth in methods.CLIENT:
        s = connected(f"channel0/{meth.name}", f"{meth.name} on channel 0 after open")
        s.sw(meth.send(0, s))
        out.append(s)
    out.append(connected("channel0/content-header", "a content header on channel 0")
               .sw(wire.header(0, 5)))
    out.append(connected("channel0/content-body", "a content body on channel 0")
               .sw(wire.body(0, b"hello")))
    out.append(connected("channel0/publish-with-content", "basic.publish, header and body all "
                         "on channel 0").sw(wire.publish(0, "", "nowhere")))
    s = connected("channel0/header-after-publish-on-1", "basic.publish on channel 1, then its "
                  "header and body on channel 0")
    s.sw(m(1, spec.Basic.Publish(exchange="", routing_key=s.q())) + wire.header(0, 5)
         + wire.body(0, b"hello"))
    out.append(s)
    return out
