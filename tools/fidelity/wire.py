"""AMQP 0-9-1 bytes for the fidelity harness: frames, field tables, handshake messages,
and the splitting of a received byte stream into whole frames.

Well-formed methods come from pika.spec (so their encoding is a second implementation's,
not ours); anything malformed is built by hand here. Everything returns `bytes`.
"""
import struct

import pika.frame
import pika.spec as spec

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_END = 0xCE
METHOD, HEADER, BODY, HEARTBEAT = 1, 2, 3, 8

# What RabbitMQ 3.10 offers in connection.tune; the scenarios tune to exactly this.
CHANNEL_MAX, FRAME_MAX = 2047, 131072

# The capabilities a modern client (pika, the Java client) announces. Scenarios that test
# a capability's absence pass their own dict.
CAPABILITIES = {
    "publisher_confirms": True,
    "consumer_cancel_notify": True,
    "basic.nack": True,
    "connection.blocked": True,
    "exchange_exchange_bindings": True,
    "authentication_failure_close": True,
}


# ---------------------------------------------------------------------------- frames

def frame(ftype, channel, payload, end=FRAME_END, size=None):
    """A frame; `size` overrides the length field (to lie about it), `end` the last octet."""
    n = len(payload) if size is None else size
    return struct.pack(">BHI", ftype, channel, n) + payload + bytes([end])


def method(channel, m):
    """A well-formed method frame for a pika.spec method object."""
    return pika.frame.Method(channel, m).marshal()


def method_payload(m):
    """class id, method id and arguments of a pika.spec method (a method frame's payload)."""
    return struct.pack(">I", m.INDEX) + b"".join(m.encode())


def raw_method(channel, class_id, method_id, args=b""):
    return frame(METHOD, channel, struct.pack(">HH", class_id, method_id) + args)


def with_table(channel, m, table_bytes):
    """`m` (whose last field is an empty field table) with that table replaced by raw bytes:
    how the scenarios put hand-typed or malformed tables into declare/bind/consume."""
    payload = method_payload(m)
    assert payload.endswith(b"\x00\x00\x00\x00"), m
    return frame(METHOD, channel, payload[:-4] + table_bytes)


def header(channel, body_size, props=None, class_id=60, weight=0):
    """A content header. `props` is a pika BasicProperties or raw bytes (flags + fields)."""
    if props is None:
        props = spec.BasicProperties()
    raw = props if isinstance(props, bytes) else b"".join(props.encode())
    return frame(HEADER, channel, struct.pack(">HHQ", class_id, weight, body_size) + raw)


def body(channel, data):
    return frame(BODY, channel, data)


def heartbeat(channel=0, payload=b""):
    return frame(HEARTBEAT, channel, payload)


def publish(channel, exchange="", routing_key="", data=b"hello", props=None, mandatory=False,
            immediate=False):
    """basic.publish with its header and one body frame (none when `data` is empty)."""
    out = method(channel, spec.Basic.Publish(exchange=exchange, routing_key=routing_key,
                                             mandatory=mandatory, immediate=immediate))
    out += header(channel, len(data), props)
    return out + (body(channel, data) if data else b"")


# ---------------------------------------------------------------------------- tables

def shortstr(s):
    b = s.encode() if isinstance(s, str) else s
    return bytes([len(b)]) + b


def longstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">I", len(b)) + b


# How each tag's value is packed; the variable-length ones take bytes (already encoded).
_FIXED = {"t": ">B", "b": ">b", "B": ">B", "s": ">h", "u": ">H", "I": ">i", "i": ">I",
          "l": ">q", "L": ">Q", "f": ">f", "d": ">d", "T": ">Q"}


def value(tag, v=None):
    """One tagged field value. `v` is a number for fixed-size tags, bytes/str for S and x,
    already-encoded bytes for F and A (see table/array), (scale, int) for D, nothing for V."""
    t = tag.encode()
    if tag in _FIXED:
        return t + struct.pack(_FIXED[tag], v)
    if tag in "Sx":
        return t + longstr(v)
    if tag == "F":
        return t + v  # v = table(...) including its own length
    if tag == "A":
        return t + struct.pack(">I", len(v)) + v  # v = concatenated values
    if tag == "D":
        return t + struct.pack(">BI", v[0], v[1])
    if tag == "V":
        return t
    raise ValueError(tag)


def table(*entries, length=None):
    """A field table from (key, encoded value) pairs; `length` overrides the length field."""
    raw = b"".join(shortstr(k) + v for k, v in entries)
    return struct.pack(">I", len(raw) if length is None else length) + raw


def typed(tag, v=None):
    """Shorthand used by the catalogue: ("I", 5) style argument values."""
    return value(tag, v)


def client_properties(caps=CAPABILITIES, extra=()):
    entries = [("product", value("S", "warren-fidelity")),
               ("platform", value("S", "Python")),
               ("version", value("S", "1.0"))]
    if caps is not None:
        entries.append(("capabilities", value("F", table(*[(k, value("t", int(v)))
                                                           for k, v in caps.items()]))))
    return table(*(entries + list(extra)))


# ---------------------------------------------------------------------------- handshake

def start_ok(mechanism="PLAIN", response=b"\x00guest\x00guest", caps=CAPABILITIES,
             props=None, locale="en_US", channel=0):
    """connection.start-ok built by hand, so client properties can be any bytes."""
    args = (client_properties(caps) if props is None else props) + shortstr(mechanism) \
        + longstr(response) + shortstr(locale)
    return raw_method(channel, 10, 11, args)


def amqplain(login="guest", password="guest"):
    """The AMQPLAIN response: a field table without its length prefix."""
    return table(("LOGIN", value("S", login)), ("PASSWORD", value("S", password)))[4:]


def tune_ok(channel_max=CHANNEL_MAX, frame_max=FRAME_MAX, heartbeat=0):
    return method(0, spec.Connection.TuneOk(channel_max=channel_max, frame_max=frame_max,
                                            heartbeat=heartbeat))


def conn_open(vhost="/"):
    return method(0, spec.Connection.Open(virtual_host=vhost))


def channel_open(channel):
    return method(channel, spec.Channel.Open())


# ---------------------------------------------------------------------------- reading

def split_frames(buf, final=False):
    """Splits received bytes into whole frames. Returns (entries, rest): each entry is bytes
    of one frame, or ("raw", bytes) for bytes that are not a frame (RabbitMQ answers a bad
    protocol header with its own header). With `final`, an incomplete tail is raw too."""
    out = []
    while buf:
        if buf[:4] == b"AMQP"[:len(buf[:4])]:
            if len(buf) < 8 and not final:
                break
            out.append(("raw", buf[:8]))
            buf = buf[8:]
            continue
        if len(buf) < 7:
            break
        size = struct.unpack_from(">I", buf, 3)[0]
        if len(buf) < 8 + size:
            break
        if buf[7 + size] != FRAME_END:
            # Not a frame boundary we can trust: keep everything left as one raw entry.
            out.append(("raw", buf))
            return out, b""
        out.append(buf[:8 + size])
        buf = buf[8 + size:]
    if final and buf:
        out.append(("raw", buf))
        buf = b""
    return out, buf


def parse_frame(f):
    """(type, channel, payload) of one whole frame."""
    ftype, ch, size = struct.unpack_from(">BHI", f, 0)
    return ftype, ch, f[7:7 + size]


def method_id(f):
    """(class, method) of a method frame's bytes, else None."""
    ftype, _, payload = parse_frame(f)
    if ftype != METHOD or len(payload) < 4:
        return None
    return struct.unpack_from(">HH", payload, 0)
