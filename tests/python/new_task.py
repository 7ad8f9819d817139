#!/usr/bin/env python3
"""The RabbitMQ tutorial's work-queue producer (tutorial two), with the port from
WARREN_PORT and the tasks from the command line."""
import os
import sys
import pika

port = int(os.environ.get("WARREN_PORT", "5672"))
connection = pika.BlockingConnection(pika.ConnectionParameters(host='localhost', port=port))
channel = connection.channel()

channel.queue_declare(queue='task_queue', durable=True)

for message in sys.argv[1:]:
    channel.basic_publish(
        exchange='',
        routing_key='task_queue',
        body=message,
        properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent))
    print(f" [x] Sent {message}")
connection.close()
