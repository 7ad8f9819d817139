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


def declare_fo(cluster, warren):
    """Quorum queue `fo` declared through the first node of `cluster` (Warren's with
    `warren`, else RabbitMQ's) on a channel with confirms on: (the AMQP port base, the
    connection, the channel, the node that leads `fo`: RabbitMQ's declaring node, or the
    leader Warren's group elected)."""
    base = 5790 if warren else 5780
    conn, ch = channel(base + 1)
    ch.confirm_delivery()
    ch.queue_declare("fo", durable=True, arguments={"x-queue-type": "quorum"})
    leader = int(cluster.queue_leader()) if warren else 1
    return base, conn, ch, leader
