import pika, time, sys
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 5697
import urllib.request, base64, urllib.error
MGMT = int(sys.argv[2]) if len(sys.argv) > 2 else 15697
def exists(name):
    req = urllib.request.Request(f"http://127.0.0.1:{MGMT}/api/queues/%2F/{name}")
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    try:
        urllib.request.urlopen(req); return True
    except urllib.error.HTTPError as e:
        return e.code
conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", PORT))
ch = conn.channel()
ch.queue_delete("exp_q")
ch.queue_declare("exp_q", durable=True, arguments={"x-queue-type": "quorum", "x-expires": 3000})
got = []
tag = ch.basic_consume("exp_q", lambda c, m, p, b: (got.append(b), c.basic_ack(m.delivery_tag)))
conn.process_data_events(time_limit=6)
print("A: with a consumer, 6 s:", exists("exp_q"))
ch.basic_publish("", "exp_q", b"still-there")
conn.process_data_events(time_limit=1)
print("B: consumer got", got)
ch.basic_cancel(tag)
t0 = time.time()
while exists("exp_q") is True and time.time() - t0 < 20:
    time.sleep(0.25)
print("C: gone after the consumer left: %.1f s" % (time.time() - t0), exists("exp_q"))
conn.close()
