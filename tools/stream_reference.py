#!/usr/bin/env python3
"""Records a scripted RabbitMQ Stream protocol session against a real broker.

A small raw-socket client (no stream library): every frame sent and received is written to
tests/stream_reference/session.json as hex, with its direction and a short decoded summary.
The Rust test tests/stream_reference.rs decodes them all with Warren's codec.

Usage: tools/stream_reference.py [--stream-port 5792] [--amqp-port 5790] [--out FILE]
The broker needs the rabbitmq_stream plugin and guest/guest allowed from this host.
"""

import argparse
import json
import os
import socket
import struct
import time

import pika

KEYS = {
    1: "DeclarePublisher", 2: "Publish", 3: "PublishConfirm", 4: "PublishError",
    5: "QueryPublisherSequence", 6: "DeletePublisher", 7: "Subscribe", 8: "Deliver",
    9: "Credit", 10: "StoreOffset", 11: "QueryOffset", 12: "Unsubscribe", 13: "Create",
    14: "Delete", 15: "Metadata", 16: "MetadataUpdate", 17: "PeerProperties",
    18: "SaslHandshake", 19: "SaslAuthenticate", 20: "Tune", 21: "Open", 22: "Close",
    23: "Heartbeat", 24: "Route", 25: "Partitions",
}
# Keys whose frames carry no correlation id.
NO_CORR = {2, 3, 4, 8, 9, 10, 16, 20, 23}


# ---- stream protocol primitives ----

def string(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">h", len(b)) + b


def bytes_(b):
    return struct.pack(">i", -1) if b is None else struct.pack(">i", len(b)) + b


def string_map(m):
    out = struct.pack(">I", len(m))
    for k, v in m:
        out += string(k) + string(v)
    return out


def req(key, corr, body=b""):
    return struct.pack(">HHI", key, 1, corr) + body


def one_way(key, body=b""):
    return struct.pack(">HH", key, 1) + body


def simple_entry(data):
    return struct.pack(">I", len(data)) + data


def sub_batch(records):
    inner = b"".join(simple_entry(r) for r in records)
    # 1 bit batch flag, 3 bits compression (0 = none), 4 reserved; record count; lengths.
    return struct.pack(">BHII", 0x80, len(records), len(inner), len(inner)) + inner


# ---- AMQP 1.0 (just what the script publishes) ----

def a_str(s):
    b = s.encode()
    return bytes([0xA1, len(b)]) + b if len(b) < 256 else b"\xb1" + struct.pack(">I", len(b)) + b


def a_sym(s):
    b = s.encode()
    return bytes([0xA3, len(b)]) + b


def a_bin(b):
    return bytes([0xA0, len(b)]) + b if len(b) < 256 else b"\xb0" + struct.pack(">I", len(b)) + b


def a_compound(code8, items):
    body = b"".join(items)
    return bytes([code8, len(body) + 1, len(items)]) + body


def described(code, value):
    return b"\x00\x53" + bytes([code]) + value


def amqp_message(body, props=None, app_props=None, annotations=None):
    """properties: list of 13 encoded fields (None = null); maps of encoded (k, v) pairs."""
    out = b""
    if annotations:
        out += described(0x72, a_compound(0xC1, [x for kv in annotations for x in kv]))
    if props:
        fields = [f if f is not None else b"\x40" for f in props]
        out += described(0x73, a_compound(0xC0, fields))
    if app_props:
        out += described(0x74, a_compound(0xC1, [x for kv in app_props for x in kv]))
    return out + described(0x75, a_bin(body))


# ---- decoding summaries ----

def read_str(b, i):
    (n,) = struct.unpack_from(">h", b, i)
    if n < 0:
        return None, i + 2
    return b[i + 2:i + 2 + n].decode(errors="replace"), i + 2 + n


def summary(body):
    key, ver = struct.unpack_from(">HH", body, 0)
    base = key & 0x7FFF
    name = KEYS.get(base, "unknown(%#06x)" % key)
    resp = bool(key & 0x8000)
    s = {"key": "%#06x" % key, "name": name + ("Response" if resp else ""), "version": ver}
    try:
        if resp and base == 9:
            s["code"], s["subscription_id"] = struct.unpack_from(">HB", body, 4)
        elif base == 20:
            s["frame_max"], s["heartbeat"] = struct.unpack_from(">II", body, 4)
        elif resp and base == 15:
            s["correlation_id"] = struct.unpack_from(">I", body, 4)[0]
        elif resp:
            s["correlation_id"], s["code"] = struct.unpack_from(">IH", body, 4)
        elif base == 8:
            sub = body[4]
            (_mv, ctype, nent, nrec, ts, epoch, chunk_id, crc, dlen, tlen) = struct.unpack_from(
                ">BBHIqQQIII", body, 5)
            s.update(subscription_id=sub, chunk_type=ctype, entries=nent, records=nrec,
                     timestamp=ts, epoch=epoch, chunk_id=chunk_id, crc="%#010x" % crc,
                     data_length=dlen, trailer_length=tlen, frame_chunk_bytes=len(body) - 5)
        elif base == 3:
            pid, n = struct.unpack_from(">BI", body, 4)
            s["publisher_id"] = pid
            s["publishing_ids"] = list(struct.unpack_from(">%dQ" % n, body, 9))
        elif base == 4:
            pid, n = struct.unpack_from(">BI", body, 4)
            s["publisher_id"] = pid
            s["errors"] = [list(struct.unpack_from(">QH", body, 9 + 10 * i)) for i in range(n)]
        elif base == 16:
            s["code"] = struct.unpack_from(">H", body, 4)[0]
            s["stream"] = read_str(body, 6)[0]
        elif base == 22:
            s["correlation_id"], s["code"] = struct.unpack_from(">IH", body, 4)
            s["reason"] = read_str(body, 10)[0]
        elif base not in NO_CORR and len(body) >= 8:
            s["correlation_id"] = struct.unpack_from(">I", body, 4)[0]
    except struct.error:
        s["undecodable"] = True
    return s


class Conn:
    def __init__(self, port, log, name):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""
        self.frames = []
        log.append({"connection": name, "frames": self.frames})
        self.closed = False

    def send(self, body, note=None, expect_error=False):
        frame = struct.pack(">I", len(body)) + body
        rec = {"dir": "client", "hex": frame.hex(), "summary": summary(body)}
        if note:
            rec["note"] = note
        if expect_error:
            rec["expect_decode_error"] = True
        self.frames.append(rec)
        self.sock.sendall(frame)

    def recv(self, quiet=0.4, until=None, limit=5.0):
        """Reads frames until `until(summary)` is true for one, or nothing came for `quiet` s."""
        got = []
        deadline = time.time() + limit
        while time.time() < deadline:
            while len(self.buf) >= 4:
                (n,) = struct.unpack_from(">I", self.buf)
                if len(self.buf) < 4 + n:
                    break
                body = self.buf[4:4 + n]
                self.buf = self.buf[4 + n:]
                s = summary(body)
                if s["key"] in ("0x0018", "0x0019") and len(body) >= 10:
                    # 3.10.8 answers Route and Partitions with the request key.
                    s["code"] = struct.unpack_from(">H", body, 8)[0]
                    s["name"] += "Response (request key)"
                self.frames.append({"dir": "server", "hex": (struct.pack(">I", n) + body).hex(), "summary": s})
                got.append((s, body))
                if until and until(s):
                    return got
            self.sock.settimeout(quiet)
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                if until is None:
                    return got
                continue
            if not data:
                self.closed = True
                self.frames.append({"dir": "server", "event": "socket closed by server"})
                return got
            self.buf += data
        return got

    def call(self, body, note=None):
        (corr,) = struct.unpack_from(">I", body, 4)
        base = struct.unpack_from(">H", body, 0)[0]
        self.send(body, note)
        return self.recv(until=lambda s: s.get("correlation_id") == corr and s["key"] == "%#06x" % (base | 0x8000))


def handshake(c, props=(("product", "warren-stream-reference"), ("version", "1"))):
    c.call(req(17, 1, string_map(list(props))), "peer properties")
    c.call(req(18, 2), "SASL handshake")
    c.call(req(19, 3, string("PLAIN") + bytes_(b"\0guest\0guest")), "PLAIN guest/guest")
    tune = c.recv(until=lambda s: s["name"] == "Tune")
    s = tune[-1][0]
    c.send(struct.pack(">HHII", 0x8014, 1, s["frame_max"], s["heartbeat"]), "tune response echoing the server")
    c.call(req(21, 4, string("/")), "open /")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stream-port", type=int, default=5792)
    ap.add_argument("--amqp-port", type=int, default=5790)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "stream_reference", "session.json"))
    a = ap.parse_args()
    log = []
    S, S2, MISSING = "ref-s1", "ref-s2", "ref-missing"

    # Leftovers of an earlier run go first, off the record.
    pre = Conn(a.stream_port, [], "cleanup")
    handshake(pre)
    for i, name in enumerate((S, S2, "ref-bad")):
        pre.call(req(14, 100 + i, string(name)))
    pre.sock.close()

    c = Conn(a.stream_port, log, "main")
    handshake(c)
    c.call(req(13, 10, string(S) + string_map([("max-length-bytes", "1000000000"), ("max-age", "1h")])), "create")
    c.call(req(13, 11, string(S) + string_map([("max-length-bytes", "1000000000"), ("max-age", "1h")])), "create again")
    c.call(req(13, 12, string("ref-bad") + string_map([("max-age", "1x")])), "create with a bad max-age")
    c.call(req(15, 13, struct.pack(">I", 2) + string(S) + string(MISSING)), "metadata: existing and missing")
    c.call(req(1, 14, bytes([1]) + string("pub-ref") + string(S)), "declare publisher 1 with a reference")
    c.call(req(1, 15, bytes([1]) + string("other") + string(S)), "declare publisher 1 again")
    c.call(req(1, 16, bytes([2]) + string("") + string(MISSING)), "declare publisher on a missing stream")

    props = [a_str("msg-1"), None, None, a_str("subject"), a_str("reply"), a_str("corr-1"),
             a_sym("text/plain"), a_sym("utf-8"), None, b"\x83" + struct.pack(">q", 1700000000000)]
    msgs = [
        amqp_message(b"first", props=props, app_props=[(a_str("k"), a_str("v")), (a_str("n"), b"\x81" + struct.pack(">q", 7))]),
        amqp_message(b"second"),
        amqp_message(b"third", annotations=[(a_sym("x-opt-a"), a_str("b"))]),
    ]
    body = bytes([1]) + struct.pack(">I", len(msgs))
    for i, m in enumerate(msgs):
        body += struct.pack(">Q", i + 1) + simple_entry(m)
    c.send(one_way(2, body), "publish 3 simple messages, publishing ids 1..3")
    c.recv(until=lambda s: s["name"] == "PublishConfirm" and 3 in s["publishing_ids"])
    body = bytes([1]) + struct.pack(">I", 1) + struct.pack(">Q", 4) + sub_batch([amqp_message(b"batch-a"), amqp_message(b"batch-b")])
    c.send(one_way(2, body), "publish an uncompressed sub-batch of 2 records, publishing id 4")
    c.recv(until=lambda s: s["name"] == "PublishConfirm")
    c.send(one_way(2, bytes([9]) + struct.pack(">I", 1) + struct.pack(">Q", 77) + simple_entry(amqp_message(b"x"))),
           "publish with an undeclared publisher id")
    c.recv()
    c.call(req(5, 17, string("pub-ref") + string(S)), "query publisher sequence")
    c.call(req(5, 18, string("nobody") + string(S)), "query publisher sequence, unknown reference")
    c.call(req(5, 19, string("pub-ref") + string(MISSING)), "query publisher sequence, missing stream")

    now_ms = int(time.time() * 1000)
    c.call(req(7, 20, bytes([1]) + string(S) + struct.pack(">HH", 1, 10)), "subscribe 1 first, credit 10")
    c.recv()
    c.call(req(7, 21, bytes([2]) + string(S) + struct.pack(">HQH", 4, 2, 1)), "subscribe 2 offset 2, credit 1")
    c.recv()
    c.call(req(7, 22, bytes([3]) + string(S) + struct.pack(">HH", 2, 1)), "subscribe 3 last, credit 1")
    c.recv()
    c.call(req(7, 23, bytes([4]) + string(S) + struct.pack(">HH", 3, 1)), "subscribe 4 next, credit 1")
    c.recv()
    c.call(req(7, 24, bytes([5]) + string(S) + struct.pack(">HqH", 5, now_ms - 3600_000, 1)
                + string_map([("name", "ts-sub")])), "subscribe 5 timestamp an hour ago, credit 1, a property")
    c.recv()
    c.call(req(7, 25, bytes([1]) + string(S) + struct.pack(">HH", 1, 1)), "subscribe with a used id")
    c.call(req(7, 26, bytes([6]) + string(MISSING) + struct.pack(">HH", 1, 1)), "subscribe to a missing stream")
    c.send(one_way(2, bytes([1]) + struct.pack(">I", 1) + struct.pack(">Q", 5) + simple_entry(amqp_message(b"live"))),
           "publish one more (id 5): live delivery to the subscriptions with credit")
    c.recv(quiet=1.0)
    c.send(one_way(9, struct.pack(">BH", 2, 5)), "credit subscription 2 with 5")
    c.recv(quiet=1.0)
    c.send(one_way(9, struct.pack(">BH", 99, 1)), "credit an unknown subscription")
    c.recv()
    c.send(one_way(10, string("consumer-ref") + string(S) + struct.pack(">Q", 3)), "store offset 3")
    time.sleep(0.3)
    c.recv()
    c.call(req(11, 27, string("consumer-ref") + string(S)), "query the stored offset")
    c.call(req(11, 28, string("nobody") + string(S)), "query an unknown reference")
    c.call(req(11, 29, string("consumer-ref") + string(MISSING)), "query offset on a missing stream")
    for i, sub in enumerate([1, 2, 3, 4, 5]):
        c.call(req(12, 30 + i, bytes([sub])), "unsubscribe %d" % sub)
    c.call(req(12, 40, bytes([42])), "unsubscribe an unknown id")
    c.call(req(6, 41, bytes([1])), "delete publisher 1")
    c.call(req(6, 42, bytes([1])), "delete publisher 1 again")
    c.send(req(24, 43, string("rk") + string("no-super")), "route on a missing super stream")
    c.recv()
    c.send(req(25, 44, string("no-super")), "partitions of a missing super stream")
    c.recv()

    # A deleted stream with a subscriber: MetadataUpdate.
    c.call(req(13, 45, string(S2) + string_map([])), "create a second stream")
    c.call(req(7, 46, bytes([7]) + string(S2) + struct.pack(">HH", 1, 1)), "subscribe 7 to it")
    c.call(req(14, 47, string(S2)), "delete it while subscribed")
    c.recv(quiet=1.0)
    c.call(req(14, 48, string(S2)), "delete it again")
    c.send(one_way(23), "heartbeat")
    c.recv()

    # ---- cross-protocol ----
    cross = {}
    pc = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", a.amqp_port,
                                                           credentials=pika.PlainCredentials("guest", "guest")))
    ch = pc.channel()
    p091 = pika.BasicProperties(
        content_type="application/json", content_encoding="gzip", delivery_mode=2, priority=5,
        correlation_id="corr-091", reply_to="reply-q", expiration="60000", message_id="id-091",
        timestamp=1700000000, type="kind", user_id="guest", app_id="app-091",
        headers={"str": "v", "int": 42, "neg": -3, "bool": True, "big": 1 << 40, "bytes": b"\x01\x02",
                 "list": [1, 2], "table": {"a": 1}, "none": None})
    ch.basic_publish("", S, b'{"from":"amqp091"}', p091)
    cross["amqp091_published"] = {
        "exchange": "", "routing_key": S, "body": '{"from":"amqp091"}',
        "properties": "content_type=application/json content_encoding=gzip delivery_mode=2 priority=5 "
                      "correlation_id=corr-091 reply_to=reply-q expiration=60000 message_id=id-091 "
                      "timestamp=1700000000 type=kind user_id=guest app_id=app-091 headers={str: 'v', int: 42, neg: -3, "
                      "bool: True, big: 1099511627776, bytes: b'\\x01\\x02', list: [1, 2], table: {a: 1}, none: None}"}
    time.sleep(0.5)
    c.call(req(7, 50, bytes([8]) + string(S) + struct.pack(">HQH", 4, 6, 1)), "subscribe 8 at offset 6: the AMQP 0-9-1 message")
    got = c.recv(quiet=1.0)
    deliver = [b for s, b in got if s["name"] == "Deliver"]
    cross["amqp091_as_stream_deliver_hex"] = deliver[0].hex() if deliver else None
    c.call(req(12, 51, bytes([8])), "unsubscribe 8")

    stream_props = [a_str("id-stream"), a_bin(b"guest"), a_str("to-addr"), a_str("subj"), a_str("reply-s"),
                    a_str("corr-s"), a_sym("text/plain"), a_sym("identity"), None,
                    b"\x83" + struct.pack(">q", 1700000000123)]
    stream_msg = amqp_message(
        b"from stream", props=stream_props,
        app_props=[(a_str("s"), a_str("v")), (a_str("l"), b"\x81" + struct.pack(">q", 1 << 40)),
                   (a_str("i"), b"\x71" + struct.pack(">i", -2)), (a_str("b"), b"\x56\x01"),
                   (a_str("x-basic-type"), a_str("t")), (a_str("x-basic-app-id"), a_str("app-s")),
                   (a_str("bin"), a_bin(b"\xff"))],
        annotations=[(a_sym("x-basic-priority"), b"\x50\x07"), (a_sym("x-basic-delivery-mode"), b"\x50\x01"),
                     (a_sym("x-basic-expiration"), a_str("1000")), (a_sym("x-other"), a_str("o"))])
    c.call(req(1, 52, bytes([3]) + string("") + string(S)), "declare publisher 3, no reference")
    c.send(one_way(2, bytes([3]) + struct.pack(">I", 1) + struct.pack(">Q", 1) + simple_entry(stream_msg)),
           "publish a message for AMQP 0-9-1 (offset 7)")
    c.recv(until=lambda s: s["name"] == "PublishConfirm")
    cross["stream_published_hex"] = stream_msg.hex()
    ch.basic_qos(prefetch_count=10)
    seen = []

    def on_msg(chan, method, props, body):
        seen.append({
            "exchange": method.exchange, "routing_key": method.routing_key, "body": body.decode(errors="replace"),
            "properties": {k: (v.hex() if isinstance(v, bytes) else v) for k, v in sorted(vars(props).items()) if v is not None and k != "headers"},
            "headers": [[k, repr(v)] for k, v in (props.headers or {}).items()],
        })
    ch.basic_consume(S, on_msg, arguments={"x-stream-offset": 6})
    deadline = time.time() + 5
    while len(seen) < 2 and time.time() < deadline:
        pc.process_data_events(time_limit=0.2)
    cross["amqp091_consumer_from_offset_6"] = seen
    pc.close()

    c.call(req(14, 53, string(S)), "delete the stream")
    c.call(req(14, 54, string(S)), "delete it again")
    c.send(one_way(0x63, b"\x00"), "a frame with an unknown key (0x0063)", expect_error=True)
    got = c.recv(until=lambda s: s["name"] == "Close")
    if got and got[-1][0]["name"] == "Close":
        corr = got[-1][0]["correlation_id"]
        c.send(struct.pack(">HHIH", 0x8016, 1, corr, 1), "close response")
    c.recv(quiet=1.0)

    # Unknown key before authentication: what happens.
    c2 = Conn(a.stream_port, log, "unknown key before authentication")
    c2.send(one_way(0x63, b"\x00"), "unknown key first", expect_error=True)
    c2.recv(quiet=1.0)

    # Bad password, then an unknown mechanism.
    c3 = Conn(a.stream_port, log, "authentication failures")
    c3.call(req(17, 1, string_map([])), "peer properties, empty")
    c3.call(req(18, 2), "SASL handshake")
    c3.call(req(19, 3, string("PLAIN") + bytes_(b"\0guest\0wrong")), "wrong password")
    c3.recv(quiet=1.0)
    c4 = Conn(a.stream_port, log, "unknown mechanism")
    c4.call(req(17, 1, string_map([])), "peer properties")
    c4.call(req(19, 2, string("NOPE") + bytes_(None)), "unknown mechanism, null data")
    c4.recv(quiet=1.0)

    # A clean close, and a vhost that does not exist.
    c5 = Conn(a.stream_port, log, "clean close")
    handshake(c5)
    c5.call(req(21, 5, string("no-such-vhost")), "open a missing vhost on an open connection")
    c5.recv(quiet=0.5)
    c6 = Conn(a.stream_port, log, "missing vhost")
    c6.call(req(17, 1, string_map([])), "peer properties")
    c6.call(req(18, 2), "SASL handshake")
    c6.call(req(19, 3, string("PLAIN") + bytes_(b"\0guest\0guest")), "PLAIN")
    s = c6.recv(until=lambda s: s["name"] == "Tune")[-1][0]
    c6.send(struct.pack(">HHII", 0x8014, 1, s["frame_max"], s["heartbeat"]), "tune response")
    c6.call(req(21, 4, string("no-such-vhost")), "open a missing vhost")
    c6.recv(quiet=1.0)
    c7 = Conn(a.stream_port, log, "close")
    handshake(c7)
    c7.call(req(22, 9, struct.pack(">H", 1) + string("done")), "close")
    c7.recv(quiet=1.0)

    out = {
        "broker": "RabbitMQ 3.10.8 (Debian package), rabbitmq_stream plugin, recorded by tools/stream_reference.py",
        "connections": log,
        "cross_protocol": cross,
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", a.out, sum(len(x["frames"]) for x in log), "frames")


if __name__ == "__main__":
    main()
