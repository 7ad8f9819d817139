#!/usr/bin/env python3
"""The RabbitMQ tutorial's hello-world producer, unchanged but for the port."""
import os
import pika

port = int(os.environ.get("WARREN_PORT", "5672"))
connection = pika.BlockingConnection(pika.ConnectionParameters(host='localhost', port=port))
channel = connection.channel()

channel.queue_declare(queue='hello')

channel.basic_publish(exchange='', routing_key='hello', body='Hello, RabbitMQ!')
print(" [x] Sent 'Hello, RabbitMQ!'")
connection.close()
