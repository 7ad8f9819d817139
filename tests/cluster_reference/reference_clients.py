"""pika helpers the quorum-queue reference scripts of this directory share: a channel to a
node, and the deliveries of queue `fo` as (body, redelivered, x-delivery-count)."""
import time

import pika


def channel(port, prefetch=None):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, heartbeat=0))
    ch = conn.channel()
    if prefetch:
        ch.basic_qos(prefetch_count=prefetch)
    return conn, ch


def take(ch, want, within, ack=False):
    """Up to `want` deliveries of `fo` within `within` s: (body, redelivered, x-delivery-count)."""
    got = []
    until = time.time() + within
    for method, props, body in ch.consume("fo", inactivity_timeout=0.2):
        if method is not None:
            got.append((body.decode(), method.redelivered, (props.headers or {}).get("x-delivery-count")))
            if ack:
                ch.basic_ack(method.delivery_tag)
        if len(got) >= want or time.time() > until:
            break
    return got
