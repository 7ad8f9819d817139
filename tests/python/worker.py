#!/usr/bin/env python3
"""The RabbitMQ tutorial's work-queue worker (tutorial two): prefetch 1, manual acks, a
task takes a tenth of a second per dot. It stops after WORKER_IDLE seconds without work
so that a test can run it."""
import os
import sys
import time
import pika

port = int(os.environ.get("WARREN_PORT", "5672"))
idle = float(os.environ.get("WORKER_IDLE", "3"))
connection = pika.BlockingConnection(pika.ConnectionParameters(host='localhost', port=port))
channel = connection.channel()

channel.queue_declare(queue='task_queue', durable=True)
print(' [*] Waiting for messages.')
sys.stdout.flush()

channel.basic_qos(prefetch_count=1)
for method, properties, body in channel.consume('task_queue', inactivity_timeout=idle):
    if method is None:
        break
    print(f" [x] Received {body.decode()}")
    time.sleep(body.count(b'.') / 10)
    print(f" [x] Done {body.decode()}")
    sys.stdout.flush()
    channel.basic_ack(delivery_tag=method.delivery_tag)

channel.cancel()
connection.close()
