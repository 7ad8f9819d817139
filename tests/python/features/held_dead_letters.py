#!/usr/bin/env python3
"""A dead letter a quorum queue keeps (x-dead-letter-strategy at-least-once, its
dead-letter exchange binding nothing) across a broker restart (driven by
tests/features_restart.rs, which kills the broker with SIGKILL between the phases; the
same script runs against RabbitMQ 3.10, whose answers are recorded in
tests/cluster_reference/rabbitmq_at_least_once_restart.md):

    held_dead_letters.py setup     declare, publish one message (confirmed), reject it
    held_dead_letters.py verify    after the restart: still held, never delivered again,
                                   published once its exchange routes

Exits non-zero with a message on the first thing that differs.
"""
import os
import sys
import time

import pika

PORT = int(os.environ.get("WARREN_PORT", "5672"))
# How long the dead letter may take to go once its exchange routes: Warren tries again
# every 5 s; RabbitMQ 3.10's dead-letter worker every 180 s (run it with 240).
WAIT_S = float(os.environ.get("DEAD_LETTER_WAIT_S", "20"))
SRC, DLX, DLQ = "held-src", "held-dlx", "held-dlq"
BODY = b"hello-dlx"


def connect():
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", PORT))


def ready(ch, queue):
    return ch.queue_declare(queue, passive=True).method.message_count


def check(what, ok):
    if not ok:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}")


def setup():
    conn = connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare(DLX, "fanout", durable=True)
    ch.queue_declare(SRC, durable=True, arguments={
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": DLX,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    })
    ch.basic_publish("", SRC, BODY, pika.BasicProperties(delivery_mode=2))
    method, _, body = ch.basic_get(SRC, auto_ack=False)
    check("the message got", body == BODY)
    ch.basic_reject(method.delivery_tag, requeue=False)
    # A round trip on the same channel: the reject has been handled when it answers.
    check("nothing ready after the reject", ready(ch, SRC) == 0)
    conn.close()


def verify():
    conn = connect()
    ch = conn.channel()
    ch.confirm_delivery()
    check("nothing ready after the restart", ready(ch, SRC) == 0)
    check("basic.get finds nothing", ch.basic_get(SRC, auto_ack=False)[0] is None)
    # A consumer for 3 s gets only a fresh message: the dead letter is never handed out.
    got = []
    tag = ch.basic_consume(SRC, lambda c, m, p, b: (got.append(b), c.basic_ack(m.delivery_tag)))
    ch.basic_publish("", SRC, b"fresh", pika.BasicProperties(delivery_mode=2))
    conn.process_data_events(time_limit=3)
    ch.basic_cancel(tag)
    check(f"the consumer got only the fresh message ({got})", got == [b"fresh"])
    # Once its exchange routes, the kept dead letter is published there.
    ch.queue_declare(DLQ, durable=True)
    ch.queue_bind(DLQ, DLX, "")
    t0 = time.time()
    deadline = t0 + WAIT_S
    dead = (None, None, None)
    while time.time() < deadline:
        dead = ch.basic_get(DLQ, auto_ack=True)
        if dead[0] is not None:
            break
        time.sleep(0.25)
    check("the dead letter published once its exchange routes (after %.1f s)"
          % (time.time() - t0), dead[2] == BODY)
    headers = dead[1].headers or {}
    check("its first death: rejected in " + SRC,
          headers.get("x-first-death-reason") == "rejected"
          and headers.get("x-first-death-queue") == SRC)
    time.sleep(1)
    check("published once", ch.basic_get(DLQ, auto_ack=True)[0] is None)
    check("the original gone from its queue", ready(ch, SRC) == 0)
    conn.close()


if __name__ == "__main__":
    {"setup": setup, "verify": verify}[sys.argv[1]]()
