"""What a quorum queue's leader does with the deliveries that were out with the consumer of
another node when that node dies (RabbitMQ reference for issue 16): three Debian RabbitMQ
3.10 nodes (tools/cluster_compare.py's RabbitCluster: rabbit1..3@localhost, AMQP
5781..5783), queue `fo` declared through rabbit1 (client-local: rabbit1 leads), six messages
published with confirms; a consumer on rabbit2 takes m0..m2 without acking (prefetch 3);
rabbit2 is killed (SIGKILL). A consumer on rabbit3 (acking) then takes what comes for 20 s
(which messages, each with its `redelivered` flag and `x-delivery-count`); rabbit2 is
started again, and the rabbit3 consumer goes on for 10 s.

Usage: python3 tests/cluster_reference/quorum_member_death_redelivery.py [--warren] (needs
the Debian rabbitmq-server package and pika; ports 5781..5783 and 25791..25793 free). With
`--warren` the same steps run against three Warren nodes (tools/cluster_compare.py's
WarrenCluster: AMQP 5791..5793, target/release/warren or WARREN_BIN): "rabbit1" below is
then whichever node leads the queue, "rabbit2" and "rabbit3" the two others."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from cluster_compare import RabbitCluster, WarrenCluster, wait_port  # noqa: E402
from reference_clients import channel, declare_fo, take  # noqa: E402

warren = "--warren" in sys.argv
cluster = WarrenCluster() if warren else RabbitCluster()
try:
    base, conn, ch, leader = declare_fo(cluster, warren)
    second, third = [n for n in (1, 2, 3) if n != leader]
    print("A: node %d leads fo; a consumer on node %d, then one on node %d" % (leader, second, third))
    for i in range(6):
        ch.basic_publish("", "fo", f"m{i}".encode())
    print("B: six published and confirmed")

    c2, ch2 = channel(base + second, prefetch=3)
    print("C: consumer on the second node, no acks:", take(ch2, 3, 10))

    if warren:
        cluster.procs[second - 1].kill()
    else:
        # The node's process group (the start script, beam and its helpers).
        os.killpg(cluster.procs[second - 1].pid, signal.SIGKILL)
        cluster.procs[second - 1].wait()
    killed = time.time()
    print("D: the second node killed (SIGKILL)")

    c3, ch3 = channel(base + third, prefetch=10)
    got = take(ch3, 6, 20, ack=True)
    print("E: a consumer on the third node, acking, 20 s:", got)
    print("F: the last of those came %.1f s after the kill" % (time.time() - killed))

    if warren:
        cluster.procs[second - 1] = cluster.spawn(second)
    else:
        cluster.procs[second - 1] = subprocess.Popen(
            ["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=cluster.env(second),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    started = time.time()
    up = wait_port(base + second, 120)
    print("G: the killed node started again: AMQP %s after %.1f s" % ("up" if up else "not up", time.time() - started))
    print("H: the third node's consumer, 10 s more:", take(ch3, 6, 10, ack=True))
finally:
    cluster.stop()
