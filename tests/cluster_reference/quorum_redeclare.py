"""Whether a declare of an existing queue renews its x-expires on RabbitMQ (queue type and
declare kind from argv): one message is published first; a queue deleted by x-expires and
created again by the next declare has lost it, one renewed still holds it."""
import pika, time, sys
PORT = int(sys.argv[1]); QTYPE = sys.argv[2]; PASSIVE = sys.argv[3] == "passive"
conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", PORT))
ch = conn.channel()
ch.confirm_delivery()
name = "re_" + QTYPE
ch.queue_delete(name)
args = {"x-queue-type": QTYPE, "x-expires": 4000}
ch.queue_declare(name, durable=True, arguments=args)
ch.basic_publish("", name, b"marker", pika.BasicProperties(delivery_mode=2))
t0 = time.time()
counts = []
while time.time() - t0 < 12:
    time.sleep(2)
    try:
        ok = ch.queue_declare(name, durable=True, arguments=args, passive=PASSIVE)
        counts.append(ok.method.message_count)
    except pika.exceptions.ChannelClosedByBroker as e:
        counts.append(e.reply_code)
        ch = conn.channel()
        ch.confirm_delivery()
print("%s queue, %s declare every 2 s for 12 s (x-expires 4 s): message counts (or error) %s"
      % (QTYPE, "passive" if PASSIVE else "active", counts))
