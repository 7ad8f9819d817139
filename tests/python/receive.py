#!/usr/bin/env python3
"""The RabbitMQ tutorial's hello-world consumer, unchanged but for the port (and it stops
after the first message so a test can run it)."""
import os
import sys
import pika

port = int(os.environ.get("WARREN_PORT", "5672"))
connection = pika.BlockingConnection(pika.ConnectionParameters(host='localhost', port=port))
channel = connection.channel()

channel.queue_declare(queue='hello')


def callback(ch, method, properties, body):
    print(f" [x] Received {body.decode()}")
    sys.stdout.flush()
    ch.stop_consuming()


channel.basic_consume(queue='hello', on_message_callback=callback, auto_ack=True)

print(' [*] Waiting for messages. To exit press CTRL+C')
channel.start_consuming()
connection.close()
