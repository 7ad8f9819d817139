#!/usr/bin/env python3
"""Builds the seed corpus of the `stream_session` fuzz target from real client traffic.

The client->server frames recorded from a RabbitMQ 3.10.8 session in
tests/stream_reference/session.json (tools/stream_reference.py) are put together into whole
client-side sessions: handshake (peer properties, SASL handshake, SASL PLAIN guest/guest,
tune answer, open "/"), then streams, publishers, publishes, subscriptions, credit, offsets,
unsubscribe, delete, close. Each seed is one byte (the fuzz target's read-boundary pick: reads
of 1 + 4 * byte bytes) followed by the frames, exactly as fuzz_session in
src/stream_protocol/session.rs reads them. The session delivers and confirms between reads,
as its socket loop does, so most seeds use 13-byte reads (byte 3): a subscription then gets
its chunks before the next command. The recorded main connection is also cut at 1, 29, 253
and 1021 bytes.

Three frames are not in the recording because RabbitMQ 3.10.8's reference client did not send
them; they are built here from the protocol and marked as such: ExchangeCommandVersions
(0x1b, sent by today's clients after open), the Rust client's tune answer under the request
key 0x0014, and SASL AMQPLAIN.

Usage: python3 fuzz/stream_session_corpus.py   (rewrites fuzz/corpus/stream_session/)
"""
import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(ROOT, "tests", "stream_reference", "session.json")
OUT = os.path.join(ROOT, "fuzz", "corpus", "stream_session")


def load():
    """{connection name: [(note, frame bytes)]} of the client's frames."""
    with open(REFERENCE) as f:
        recording = json.load(f)
    out = {}
    for c in recording["connections"]:
        out[c["connection"]] = [
            (f.get("note", ""), bytes.fromhex(f["hex"]))
            for f in c["frames"]
            if f["dir"] == "client" and "hex" in f
        ]
    return out


CONNECTIONS = load()
MAIN = CONNECTIONS["main"]


def client(note, nth=0, connection="main"):
    """The nth client frame of `connection` whose note is `note`."""
    found = [b for n, b in CONNECTIONS[connection] if n == note]
    if len(found) <= nth:
        raise SystemExit(f"no frame {note!r} #{nth} in {connection!r}: re-recorded?")
    return found[nth]


def frames(*notes):
    return b"".join(client(n) if isinstance(n, str) else client(*n) for n in notes)


# ---- frames not in the recording (see the docstring) ----

def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def sized(body):
    return struct.pack(">I", len(body)) + body


def exchange_command_versions(correlation_id):
    keys = range(1, 26)
    body = struct.pack(">HHII", 0x1B, 1, correlation_id, len(keys))
    body += b"".join(struct.pack(">HHH", k, 1, 1) for k in keys)
    return sized(body)


def tune_answer_with_request_key(frame_max, heartbeat):
    return sized(struct.pack(">HHII", 0x14, 1, frame_max, heartbeat))


def sasl_amqplain(correlation_id, user, password):
    def longstr(s):
        return b"S" + struct.pack(">I", len(s)) + s.encode()

    table = b"\x05LOGIN" + longstr(user) + b"\x08PASSWORD" + longstr(password)
    body = struct.pack(">HHI", 0x13, 1, correlation_id) + string("AMQPLAIN")
    body += struct.pack(">i", len(table)) + table
    return sized(body)


# ---- sessions ----

HANDSHAKE = frames(
    "peer properties",
    "SASL handshake",
    "PLAIN guest/guest",
    "tune response echoing the server",
    "open /",
)
CLOSE = client("close", connection="close")
# A stream "ref-s1", publisher 1 (reference "pub-ref") on it, offsets 0-4 published.
SETUP = frames(
    "create",
    "declare publisher 1 with a reference",
    "publish 3 simple messages, publishing ids 1..3",
    "publish an uncompressed sub-batch of 2 records, publishing id 4",
)
LIVE = client("publish one more (id 5): live delivery to the subscriptions with credit")

SUBSCRIBES = {
    "first": "subscribe 1 first, credit 10",
    "offset": "subscribe 2 offset 2, credit 1",
    "last": "subscribe 3 last, credit 1",
    "next": "subscribe 4 next, credit 1",
    "timestamp": "subscribe 5 timestamp an hour ago, credit 1, a property",
}


READS13 = 3


def sessions():
    s = {}
    # The recorded connections as they were, at a few read boundaries.
    whole = b"".join(b for _, b in MAIN)
    for seed in (255, 63, 7, 0):
        s[f"main-reads{1 + 4 * seed}"] = bytes([seed]) + whole
    for name, fs in CONNECTIONS.items():
        if name != "main":
            s["conn-" + name.replace(" ", "-")] = bytes([READS13]) + b"".join(b for _, b in fs)

    # The life of a stream, end to end.
    s["lifecycle"] = bytes([READS13]) + HANDSHAKE + SETUP + frames(
        "subscribe 2 offset 2, credit 1",
        "credit subscription 2 with 5",
    ) + LIVE + frames(
        "store offset 3",
        "query the stored offset",
        "unsubscribe 2",
        "delete publisher 1",
        "delete the stream",
    ) + CLOSE
    s["lifecycle-one-read"] = bytes([255]) + s["lifecycle"][1:]

    # Each subscription kind: subscribe, a live publish, more credit, unsubscribe.
    for kind, note in SUBSCRIBES.items():
        s[f"subscribe-{kind}"] = bytes([READS13]) + HANDSHAKE + SETUP + client(note) + LIVE + frames(
            "credit subscription 2 with 5",
            "credit an unknown subscription",
        ) + CLOSE

    # One command family at a time on the set-up stream.
    families = {
        "create-again": ["create again", "create with a bad max-age", "metadata: existing and missing"],
        "declare-refused": [
            "declare publisher 1 again",
            "declare publisher on a missing stream",
            "publish with an undeclared publisher id",
        ],
        "publisher-sequence": [
            "query publisher sequence",
            "query publisher sequence, unknown reference",
            "query publisher sequence, missing stream",
            "delete publisher 1",
            "delete publisher 1 again",
        ],
        "subscribe-refused": [
            "subscribe 1 first, credit 10",
            "subscribe with a used id",
            "subscribe to a missing stream",
            "unsubscribe 1",
            "unsubscribe an unknown id",
        ],
        "offsets": [
            "store offset 3",
            "query the stored offset",
            "query an unknown reference",
            "query offset on a missing stream",
        ],
        "super-streams": ["route on a missing super stream", "partitions of a missing super stream"],
        "delete-while-subscribed": [
            "create a second stream",
            "subscribe 7 to it",
            "delete it while subscribed",
            ("delete it again", 0),
            "heartbeat",
        ],
        "amqp-message": [
            "declare publisher 3, no reference",
            "publish a message for AMQP 0-9-1 (offset 7)",
            "subscribe 8 at offset 6: the AMQP 0-9-1 message",
            "unsubscribe 8",
            "subscribe 1 first, credit 10",
        ],
        "delete-with-publisher": ["delete the stream", ("delete it again", 1)],
        "unknown-key": [
            "a frame with an unknown key (0x0063)",
            "close response",
        ],
    }
    for name, notes in families.items():
        s[name] = bytes([READS13]) + HANDSHAKE + SETUP + frames(*notes) + CLOSE

    # What today's clients send that the 3.10.8 recording lacks.
    s["rust-client"] = bytes([READS13]) + frames(
        "peer properties", "SASL handshake", "PLAIN guest/guest"
    ) + tune_answer_with_request_key(1048576, 60) + client("open /") + exchange_command_versions(
        5
    ) + SETUP + client("subscribe 1 first, credit 10") + LIVE + CLOSE
    s["amqplain"] = bytes([READS13]) + frames("peer properties", "SASL handshake") + sasl_amqplain(
        3, "guest", "guest"
    ) + frames("tune response echoing the server", "open /") + SETUP + CLOSE
    # A tune answer with a 256-byte frame max: the 303-byte publish is over it.
    s["small-frame-max"] = bytes([READS13]) + frames(
        "peer properties", "SASL handshake", "PLAIN guest/guest"
    ) + tune_answer_with_request_key(256, 0) + client("open /") + SETUP + frames(
        "declare publisher 3, no reference", "publish a message for AMQP 0-9-1 (offset 7)"
    ) + CLOSE
    return s


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    for name, data in sorted(sessions().items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"{len(os.listdir(OUT))} seeds in {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
