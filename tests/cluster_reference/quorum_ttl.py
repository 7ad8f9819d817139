import pika, time, json, urllib.request, base64, sys
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 5697
MGMT = int(sys.argv[2]) if len(sys.argv) > 2 else 15697
def api(path):
    req = urllib.request.Request(f"http://127.0.0.1:{MGMT}{path}")
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    return json.load(urllib.request.urlopen(req))
def counts(ch, q):
    return ch.queue_declare(q, passive=True).method.message_count
conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", PORT))
ch = conn.channel()
ch.confirm_delivery()
for q in ["ttl_src", "ttl_dead", "ttl_pm"]:
    ch.queue_delete(q)
ch.queue_declare("ttl_dead", durable=True)
ch.queue_declare("ttl_src", durable=True, arguments={"x-queue-type": "quorum", "x-message-ttl": 1000,
    "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "ttl_dead"})
ch.queue_declare("ttl_pm", durable=True, arguments={"x-queue-type": "quorum",
    "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "ttl_dead"})
t0 = time.time()
for i in range(5):
    ch.basic_publish("", "ttl_src", f"m{i}".encode(), pika.BasicProperties(delivery_mode=2))
print("A: after publish: src", counts(ch, "ttl_src"), "dead", counts(ch, "ttl_dead"))
time.sleep(3)
print("B: 3 s later, no consumer: src", counts(ch, "ttl_src"), "dead", counts(ch, "ttl_dead"))
time.sleep(6)
q = api("/api/queues/%2F/ttl_src")
print("C: api src messages", q.get("messages"), "ready", q.get("messages_ready"))
got = []
while True:
    m = ch.basic_get("ttl_dead", auto_ack=True)
    if m[0] is None: break
    got.append((m[2].decode(), m[1].headers.get("x-first-death-reason"), m[1].headers.get("x-first-death-queue")))
print("D: dead letters", len(got), got)
# per-message expiration on a quorum queue without a queue TTL
ch.basic_publish("", "ttl_pm", b"short", pika.BasicProperties(delivery_mode=2, expiration="500"))
ch.basic_publish("", "ttl_pm", b"keep", pika.BasicProperties(delivery_mode=2))
time.sleep(3)
print("E: per-message: pm", counts(ch, "ttl_pm"), "dead", counts(ch, "ttl_dead"))
m = ch.basic_get("ttl_pm", auto_ack=True)
print("F: get pm:", m[2])
d = ch.basic_get("ttl_dead", auto_ack=True)
print("G: dead:", d[2], d[1].headers.get("x-first-death-reason") if d[0] else None)
# a message out with a consumer when its TTL passes, then nacked with requeue
ch.basic_publish("", "ttl_src", b"held", pika.BasicProperties(delivery_mode=2))
m = ch.basic_get("ttl_src", auto_ack=False)
time.sleep(2)
ch.basic_nack(m[0].delivery_tag, requeue=True)
time.sleep(1.5)
print("H: held past TTL then requeued: src", counts(ch, "ttl_src"), "dead", counts(ch, "ttl_dead"))
d = ch.basic_get("ttl_dead", auto_ack=True)
print("I: dead:", d[2] if d[0] else None, d[1].headers.get("x-first-death-reason") if d[0] else None)
conn.close()
