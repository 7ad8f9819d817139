"""A quorum queue's message TTL across a kill -9 of the node (RabbitMQ reference for
cluster_ttl's rebuilt-copy test): three messages with a 20 s queue TTL, the node killed at
once and started again 21 s after the publish; how long after the restart until they are
dead-lettered. Usage: quorum_ttl_restart.py PORT  (with env.sh's ctl and start_node)."""
import pika, subprocess, sys, time

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 5697
TTL_MS = 20_000

def channel():
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", PORT))
    ch = conn.channel()
    ch.confirm_delivery()
    return conn, ch

def counts(ch):
    return tuple(ch.queue_declare(q, passive=True).method.message_count for q in ("rt_src", "rt_dead"))

conn, ch = channel()
for q in ["rt_src", "rt_dead"]:
    ch.queue_delete(q)
ch.queue_declare("rt_dead", durable=True, arguments={"x-queue-type": "quorum"})
ch.queue_declare("rt_src", durable=True, arguments={"x-queue-type": "quorum", "x-message-ttl": TTL_MS,
    "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "rt_dead"})
t0 = time.time()
for i in range(3):
    ch.basic_publish("", "rt_src", f"m{i}".encode(), pika.BasicProperties(delivery_mode=2))
print("after publish (src, dead):", counts(ch))
subprocess.run("pkill -9 -f 'beam.*ttlref'", shell=True)
print("node killed %.1f s after the publish" % (time.time() - t0))
time.sleep(max(0, t0 + TTL_MS / 1000 + 1 - time.time()))
restart = time.time()
subprocess.run("bash -c '. /tmp/ttlref/env.sh && start_node && sleep 2 && ctl await_startup'", shell=True,
               stdout=subprocess.DEVNULL)
print("node up %.1f s after the restart began" % (time.time() - restart))
conn, ch = channel()
while True:
    c = counts(ch)
    if c == (0, 3) or time.time() - restart > 60:
        break
    time.sleep(0.2)
print("(src, dead) = %s %.1f s after the restart began, %.1f s after the publish" % (c, time.time() - restart, time.time() - t0))
reasons = []
while True:
    m = ch.basic_get("rt_dead", auto_ack=True)
    if m[0] is None:
        break
    reasons.append((m[2].decode(), m[1].headers.get("x-first-death-reason")))
print("dead letters:", reasons)
