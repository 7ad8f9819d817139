"""What a quorum queue's next leader does with the deliveries that were out with consumers
of the node that died (RabbitMQ reference for issue 16): three Debian RabbitMQ 3.10 nodes
(tools/cluster_compare.py's RabbitCluster: rabbit1..3@localhost, AMQP 5781..5783), queue
`fo` declared through rabbit1 (client-local: rabbit1 leads), six messages published with
confirms; a consumer on rabbit1 takes m0..m2 without acking (prefetch 3), a consumer on
rabbit2 takes m3 without acking (prefetch 1); rabbit1 is killed (SIGKILL). Then the rabbit2
consumer cancels and acks what it holds, a new consumer on rabbit3 takes what is left for 8 s
(which messages, each with its `redelivered` flag and `x-delivery-count`), rabbit1 is started
again, and the rabbit3 consumer goes on for 20 s.

Usage: python3 tests/cluster_reference/quorum_failover_redelivery.py [--warren] (needs the
Debian rabbitmq-server package and pika; ports 5781..5783 and 25791..25793 free). With
`--warren` the same steps run against three Warren nodes (tools/cluster_compare.py's
WarrenCluster: AMQP 5791..5793, target/release/warren or WARREN_BIN), whose queue is led by
whichever member the group elects: "rabbit1" below is then the queue's leader, "rabbit2"
and "rabbit3" the two others."""
import os
import signal
import subprocess
import sys
import time

import pika

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from cluster_compare import RabbitCluster, WarrenCluster, wait_port  # noqa: E402
from reference_clients import channel, declare_fo, take  # noqa: E402


def listed():
    """RabbitMQ's `list_queues` line for `fo` (messages, ready, unacknowledged), asked of rabbit2."""
    if warren:
        return ""
    out = cluster.ctl(2, "list_queues", "-q", "name", "messages", "messages_ready", "messages_unacknowledged")
    return "; list_queues (name messages ready unacked): " + " | ".join(l for l in out.splitlines() if l.startswith("fo"))


def ready(port):
    """Messages ready in `fo`, as a passive declare through `port` counts them."""
    conn, ch = channel(port)
    count = ch.queue_declare("fo", passive=True).method.message_count
    conn.close()
    return count


warren = "--warren" in sys.argv
cluster = WarrenCluster() if warren else RabbitCluster()
try:
    base, conn, ch, leader = declare_fo(cluster, warren)
    others = [n for n in (1, 2, 3) if n != leader]
    port = {"leader": base + leader, "second": base + others[0], "third": base + others[1]}
    print("A: node %d leads fo; consumers on node %d (the leader), %d, then %d" % (leader, leader, *others))
    for i in range(6):
        ch.basic_publish("", "fo", f"m{i}".encode(), pika.BasicProperties(delivery_mode=2))
    print("B: six published and confirmed")

    c1, ch1 = channel(port["leader"], prefetch=3)
    print("C: consumer on the leader, no acks:", take(ch1, 3, 10))
    c2, ch2 = channel(port["second"], prefetch=1)
    print("D: consumer on the second node, no acks:", take(ch2, 1, 10))

    if warren:
        cluster.procs[leader - 1].kill()
    else:
        # The node's process group (the start script, beam and its helpers): its command
        # lines do not name the node.
        os.killpg(cluster.procs[0].pid, signal.SIGKILL)
        cluster.procs[0].wait()
    killed = time.time()
    print("E: the leader killed (SIGKILL); 8 s wait")
    time.sleep(8)

    # The second node's consumer stops and acks what it holds (taken before the kill).
    ch2.cancel()
    ch2.basic_ack(delivery_tag=0, multiple=True)
    print("F: the second node's consumer cancelled and acked its message")
    c3, ch3 = channel(port["third"], prefetch=10)
    print("G: a new consumer on the third node, acking, 8 s:", take(ch3, 6, 8, ack=True))
    print("H: fo's ready messages %d, %.1f s after the kill%s" %
          (ready(port["second"]), time.time() - killed, listed()))

    if warren:
        cluster.procs[leader - 1] = cluster.spawn(leader)
    else:
        cluster.procs[0] = subprocess.Popen(["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=cluster.env(1),
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            start_new_session=True)
    started = time.time()
    up = wait_port(port["leader"], 120)
    print("I: the killed node started again: AMQP %s after %.1f s" % ("up" if up else "not up", time.time() - started))
    print("J: the third node's consumer, 20 s more:", take(ch3, 6, 20, ack=True))
    print("K: fo's ready messages %d%s" % (ready(port["second"]), listed()))
finally:
    cluster.stop()
