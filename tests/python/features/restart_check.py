#!/usr/bin/env python3
"""Queue features across a broker restart (driven by tests/features_restart.rs, which kills
the broker with SIGKILL between the two phases):

    restart_check.py setup STATE_FILE    declare, publish (with confirms), write STATE_FILE
    restart_check.py verify STATE_FILE   after the restart: check what must have survived

Checked: a held delayed message fires after the restart, not before its time; a priority
queue's backlog comes back in priority order; a deduplicating queue still knows the value
of the message it holds; a deduplicating exchange with x-cache-persistence disk still knows
what it saw; a TTL queue's message expires after the restart into its dead-letter queue
(never delivered from the source); an x-expires queue is deleted after the restart.
"""
import json
import os
import sys
import time

import pika

PORT = int(os.environ.get("WARREN_PORT", "5672"))


def connect():
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", PORT))


def persistent(**kw):
    return pika.BasicProperties(delivery_mode=2, **kw)


def setup(state_file):
    conn = connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare("r-delayed", "x-delayed-message", durable=True,
                        arguments={"x-delayed-type": "direct"})
    ch.queue_declare("r-delayed-q", durable=True)
    ch.queue_bind("r-delayed-q", "r-delayed", "k")
    t0 = time.time()
    ch.basic_publish("r-delayed", "k", b"late", properties=persistent(headers={"x-delay": 2500}))

    ch.queue_declare("r-prio", durable=True, arguments={"x-max-priority": 5})
    for body, prio in ((b"p1", 1), (b"p5a", 5), (b"p3", 3), (b"p5b", 5), (b"p0", 0)):
        ch.basic_publish("", "r-prio", body, properties=persistent(priority=prio))

    ch.queue_declare("r-dedup-q", durable=True, arguments={"x-message-deduplication": True})
    ch.basic_publish("", "r-dedup-q", b"d1",
                     properties=persistent(headers={"x-deduplication-header": "k"}))

    ch.exchange_declare("r-dedup-x", "x-message-deduplication", durable=True,
                        arguments={"x-cache-size": 10, "x-cache-persistence": "disk"})
    ch.queue_declare("r-dedup-xq", durable=True)
    ch.queue_bind("r-dedup-xq", "r-dedup-x", "")
    ch.basic_publish("r-dedup-x", "", b"x1",
                     properties=persistent(headers={"x-deduplication-header": "seen"}))

    ch.queue_declare("r-dlq", durable=True)
    ch.queue_declare("r-ttl", durable=True, arguments={
        "x-message-ttl": 1500, "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "r-dlq"})
    ch.basic_publish("", "r-ttl", b"ttl", properties=persistent(timestamp=int(time.time())))
    ttl_t0 = time.time()

    ch.queue_declare("r-expires", durable=True, arguments={"x-expires": 1500})
    conn.close()
    # The exchange's cache reaches its file at the next upkeep (every 200 ms).
    time.sleep(0.6)
    with open(state_file, "w") as f:
        json.dump({"delayed_due": t0 + 2.5, "ttl_due": ttl_t0 + 1.5}, f)
    print("setup done")


def drain(ch, queue):
    out = []
    while True:
        m, p, b = ch.basic_get(queue, auto_ack=True)
        if m is None:
            return out
        out.append((p, b))


def wait_for(fn, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = fn()
        if r:
            return r
        time.sleep(0.05)
    sys.exit("timed out waiting for " + what)


def verify(state_file):
    with open(state_file) as f:
        state = json.load(f)
    conn = connect()
    ch = conn.channel()
    ch.confirm_delivery()

    # Priority order survives: 5s first (FIFO), then 3, 1, 0.
    got = [b for _, b in drain(ch, "r-prio")]
    assert got == [b"p5a", b"p5b", b"p3", b"p1", b"p0"], got

    # The deduplicating queue still holds d1, so "k" is not taken again.
    ch.basic_publish("", "r-dedup-q", b"d2",
                     properties=persistent(headers={"x-deduplication-header": "k"}))
    got = [b for _, b in drain(ch, "r-dedup-q")]
    assert got == [b"d1"], got

    # The exchange's disk cache still knows "seen".
    ch.basic_publish("r-dedup-x", "", b"x2",
                     properties=persistent(headers={"x-deduplication-header": "seen"}))
    ch.basic_publish("r-dedup-x", "", b"x3",
                     properties=persistent(headers={"x-deduplication-header": "new"}))
    got = [b for _, b in drain(ch, "r-dedup-xq")]
    assert got == [b"x1", b"x3"], got

    # The TTL message is never delivered from its queue once expired; it is dead-lettered.
    def dead_lettered():
        if time.time() >= state["ttl_due"] + 0.05:
            m, p, b = ch.basic_get("r-ttl", auto_ack=True)
            assert m is None, "an expired message was delivered after the restart"
        m, p, b = ch.basic_get("r-dlq", auto_ack=True)
        return (m, p, b) if m else None
    m, p, b = wait_for(dead_lettered, 10, "the TTL message in the dead-letter queue")
    assert b == b"ttl" and p.headers["x-death"][0]["reason"] == "expired", p.headers
    assert time.time() >= state["ttl_due"] - 0.05, "dead-lettered before its TTL"

    # The delayed message fires after the restart, not before its due time.
    m, p, b = wait_for(lambda: (lambda r: r if r[0] else None)(ch.basic_get("r-delayed-q", auto_ack=True)),
                       10, "the delayed message")
    fired = time.time()
    assert b == b"late" and p.headers["x-delay"] == -2500, (b, p.headers)
    assert fired >= state["delayed_due"] - 0.05, "fired %.3f s early" % (state["delayed_due"] - fired)

    # The x-expires queue goes (its countdown restarts at recovery). A passive declare is a
    # use that restarts the countdown too, so checks are spaced wider than x-expires.
    def gone():
        c = conn.channel()
        try:
            c.queue_declare("r-expires", passive=True)
            c.close()
            time.sleep(2.0)
            return False
        except pika.exceptions.ChannelClosedByBroker as e:
            return e.reply_code == 404
    wait_for(gone, 10, "the x-expires queue to be deleted")
    conn.close()
    print("verify done")


if __name__ == "__main__":
    {"setup": setup, "verify": verify}[sys.argv[1]](sys.argv[2])
