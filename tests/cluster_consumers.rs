//! Consumers of a quorum queue on nodes that do not lead it (issue 16): three `warren`
//! processes on loopback (`cluster_support`) and lapin. As with RabbitMQ, a client
//! consuming on any node gets the queue's messages: such a node asks the leader for
//! messages for its consumers and delivers them from its own copy. Each message goes to
//! one consumer; what a node that died held goes to the others (`cluster_holders.rs`).
//! A node that holds no copy of the queue (`x-quorum-initial-group-size` below the
//! cluster's size) serves its consumers too: the leader lends it the messages.

use crate::cluster_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_support::quorum::*;
use cluster_support::Cluster;
use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Connection;

/// What the consumers received: (node, body) in arrival order.
pub(crate) type Received = Arc<Mutex<Vec<(u64, String)>>>;

/// A consumer of `orders` on node `id`'s AMQP port with prefetch `prefetch`, acking each
/// delivery if `ack`; what it receives goes to `received`.
pub(crate) async fn start_consumer(
    c: &Cluster,
    id: u64,
    prefetch: u16,
    ack: bool,
    received: &Received,
) -> Connection {
    let (conn, mut deliveries) = subscribe(c, id, prefetch, &format!("on-{id}")).await;
    let received = received.clone();
    tokio::spawn(async move {
        while let Some(Ok(d)) = deliveries.next().await {
            let body = String::from_utf8(d.data.clone()).unwrap();
            received.lock().unwrap().push((id, body));
            if ack {
                let _ = d.ack(BasicAckOptions::default()).await;
            }
        }
    });
    conn
}

/// A consumer of `orders` tagged `tag` on node `id`'s AMQP port with prefetch
/// `prefetch`: its connection and its deliveries.
pub(crate) async fn subscribe(
    c: &Cluster,
    id: u64,
    prefetch: u16,
    tag: &str,
) -> (Connection, lapin::Consumer) {
    let conn = connect(c.node(id).amqp).await;
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(prefetch, BasicQosOptions::default())
        .await
        .unwrap();
    let deliveries = ch
        .basic_consume(
            "orders".into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    (conn, deliveries)
}

/// Waits until `received` holds `n` deliveries (or 30 s pass); returns them.
pub(crate) async fn wait_received(received: &Received, n: usize) -> Vec<(u64, String)> {
    for _ in 0..300 {
        if received.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    received.lock().unwrap().clone()
}

/// Three nodes with quorum queue `orders` on all of them: the cluster, a runtime, the
/// queue's leader and the two members that do not lead it.
pub(crate) fn orders_on_three_nodes() -> (Cluster, tokio::runtime::Runtime, u64, Vec<u64>) {
    orders_on_three_nodes_with(quorum())
}

/// As `orders_on_three_nodes`, the queue declared with `arguments`.
fn orders_on_three_nodes_with(
    arguments: FieldTable,
) -> (Cluster, tokio::runtime::Runtime, u64, Vec<u64>) {
    let c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    let rt = runtime();
    rt.block_on(declare(c.node(1).amqp, "orders", arguments));
    let leader = queue_leader(&c, &[1, 2, 3], None);
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    (c, rt, leader, followers)
}

#[test]
fn consumers_on_nodes_that_do_not_lead_get_every_message_once() {
    let (c, rt, leader, followers) = orders_on_three_nodes();

    let received: Received = Arc::default();
    let got = rt.block_on(async {
        let mut conns = Vec::new();
        for f in &followers {
            conns.push(start_consumer(&c, *f, 20, true, &received).await);
        }
        let (_conn, ch) = confirm_channel(c.node(leader).amqp).await;
        assert_eq!(publish_all(&ch, "orders", &bodies(0..300)).await, 300);
        let got = wait_received(&received, 300).await;
        // Anything more would be a message delivered twice.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(received.lock().unwrap().len(), got.len());
        got
    });
    let mut per_node: BTreeMap<u64, usize> = BTreeMap::new();
    let mut bodies_got: Vec<&str> = got.iter().map(|(_, b)| b.as_str()).collect();
    for (node, _) in &got {
        *per_node.entry(*node).or_default() += 1;
    }
    bodies_got.sort_unstable();
    let want = bodies(0..300);
    assert_eq!(
        bodies_got, want,
        "every message once, on the nodes that do not lead"
    );
    // Only the nodes that do not lead deliver here. How the messages split between them
    // is not asserted: a node whose consumers keep asking can drain a burst this small
    // before the other's next tick (50 ms) after an empty answer.
    assert!(
        per_node.keys().all(|n| followers.contains(n)),
        "delivered on {per_node:?}, followers {followers:?}"
    );
    println!("deliveries per node: {per_node:?}");
    // Acked through the group: every copy is empty, the leader holds nothing for others.
    wait_for("every copy empty", &c, ELECTION, || {
        (1..=3).all(|id| messages(&c, id) == Some(0)).then_some(())
    });
}

/// Ten messages published through `leader`, all taken by a consumer on `holder` that
/// never acks them; its connection.
pub(crate) async fn hold_ten(c: &Cluster, leader: u64, holder: u64) -> Connection {
    let held: Received = Arc::default();
    let conn = start_consumer(c, holder, 10, false, &held).await;
    let (_pconn, ch) = confirm_channel(c.node(leader).amqp).await;
    assert_eq!(publish_all(&ch, "orders", &bodies(0..10)).await, 10);
    assert_eq!(wait_received(&held, 10).await.len(), 10);
    conn
}

/// Messages node `id` shows as delivered and not acked (its management API).
pub(crate) fn unacked(c: &Cluster, id: u64) -> Option<u64> {
    c.node(id).api_get("/api/queues/%2F/orders")?["messages_unacknowledged"].as_u64()
}

/// A leader cut off with a delivery out: the new leader delivers the message again, its
/// consumer acks it, and the old leader, back as a follower, applies that settle while
/// its own consumer still has the message. It keeps serving (the Jepsen run found it
/// counting more unacked deliveries than messages, and panicking), and when its consumer
/// gives the message back it is not delivered again: the group settled it.
#[test]
fn a_settle_committed_while_a_delivery_is_out_elsewhere_leaves_the_queue_consistent() {
    let c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    let rt = runtime();
    rt.block_on(declare(c.node(1).amqp, "orders", quorum()));
    let old = queue_leader(&c, &[1, 2, 3], None);
    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();

    let (old_conn, old_ch, tag) = rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(old).amqp).await;
        assert_eq!(publish_all(&ch, "orders", &bodies(0..1)).await, 1);
        let conn = connect(c.node(old).amqp).await;
        let ch = conn.create_channel().await.unwrap();
        let got = get(&ch).await.expect("the message, on the leader");
        (conn, ch, got.delivery.delivery_tag)
    });

    c.isolate(old);
    let new = queue_leader(&c, &others, Some(old));
    let again = rt.block_on(async {
        let conn = connect(c.node(new).amqp).await;
        let ch = conn.create_channel().await.unwrap();
        let got = get(&ch).await.expect("the message, on the new leader");
        got.delivery.ack(BasicAckOptions::default()).await.unwrap();
        String::from_utf8(got.delivery.data.clone()).unwrap()
    });
    assert_eq!(again, bodies(0..1)[0]);
    wait_for("the ack settled on the majority", &c, ELECTION, || {
        others
            .iter()
            .all(|id| messages(&c, *id) == Some(0))
            .then_some(())
    });
    let settled_at = applied(&c, new).expect("the new leader's applied index");
    c.heal_all();

    // The old leader applies the settle and goes on answering for the queue: the message
    // is still out with its consumer, nothing is ready.
    wait_for("the settle applied on the old leader", &c, ELECTION, || {
        applied(&c, old).filter(|a| *a >= settled_at)
    });
    let q = c
        .node(old)
        .api_get("/api/queues/%2F/orders")
        .expect("the old leader answers");
    assert_eq!(
        (
            q["messages_ready"].as_u64(),
            q["messages_unacknowledged"].as_u64()
        ),
        (Some(0), Some(1)),
        "{q}"
    );
    // Given back on the old leader: gone, not delivered again.
    rt.block_on(async {
        nack_requeue(&old_ch, tag).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(old_conn);
    });
    for id in 1..=3 {
        assert_eq!(messages(&c, id), Some(0), "node {id}");
    }
    let leader = queue_leader(&c, &[1, 2, 3], None);
    let nothing = rt.block_on(async {
        let conn = connect(c.node(leader).amqp).await;
        let ch = conn.create_channel().await.unwrap();
        get(&ch).await
    });
    assert!(
        nothing.is_none(),
        "delivered again after the group settled it"
    );
}

/// basic.get on members that do not lead, as RabbitMQ answers it on any node: each
/// message once, acked or not; one given back on one member comes again on the other,
/// redelivered and counted; what a closed connection held goes back too; an empty queue
/// answers get-empty; and the copies end empty.
#[test]
fn basic_get_on_nodes_that_do_not_lead_gets_each_message_once() {
    let (c, rt, leader, followers) = orders_on_three_nodes();
    let (a, b) = (followers[0], followers[1]);

    let got = rt.block_on(async {
        let (_pconn, pch) = confirm_channel(c.node(leader).amqp).await;
        assert_eq!(publish_all(&pch, "orders", &bodies(0..20)).await, 20);
        let (conn_a, conn_b) = (connect(c.node(a).amqp).await, connect(c.node(b).amqp).await);
        let (ch_a, ch_b) = (
            conn_a.create_channel().await.unwrap(),
            conn_b.create_channel().await.unwrap(),
        );
        let body = |m: &lapin::message::BasicGetMessage| {
            String::from_utf8(m.delivery.data.clone()).unwrap()
        };
        let mut got = Vec::new();
        // Eight on a, each acked.
        for _ in 0..8 {
            let m = get(&ch_a).await.expect("a message on node a");
            assert!(!m.delivery.redelivered);
            m.delivery.ack(BasicAckOptions::default()).await.unwrap();
            got.push(body(&m));
        }
        // Eight on b with no_ack.
        for _ in 0..8 {
            let m = ch_b
                .basic_get("orders".into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
                .expect("a message on node b");
            got.push(body(&m));
        }
        // One held on a and given back: it comes again on b, redelivered, counted once.
        let held = get(&ch_a).await.expect("a message to give back");
        nack_requeue(&ch_a, held.delivery.delivery_tag).await;
        let mut again = None;
        for _ in 0..100 {
            // The nack reaches the leader through the group: until then b may have taken
            // every other message and hear get-empty.
            let Some(m) = get(&ch_b).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if body(&m) == body(&held) {
                again = Some(m);
                break;
            }
            m.delivery.ack(BasicAckOptions::default()).await.unwrap();
            got.push(body(&m));
        }
        let again = again.expect("the message given back, on the other node");
        assert!(again.delivery.redelivered, "given back: redelivered");
        assert_eq!(delivery_count(&again.delivery.properties), Some(1));
        again
            .delivery
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
        got.push(body(&again));
        // Two taken on a and not acked, then a's connection closes: they go back.
        let open: Vec<String> = {
            let mut open = Vec::new();
            while open.len() < 2 {
                match get(&ch_a).await {
                    Some(m) => open.push(body(&m)),
                    None => break,
                }
            }
            open
        };
        conn_a.close(200, "bye".into()).await.unwrap();
        // The rest, on b, until get-empty.
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        while got.len() < 20 && tokio::time::Instant::now() < until {
            match get(&ch_b).await {
                Some(m) => {
                    m.delivery.ack(BasicAckOptions::default()).await.unwrap();
                    got.push(body(&m));
                }
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        assert!(get(&ch_b).await.is_none(), "get-empty once all are taken");
        assert!(open.iter().all(|o| got.contains(o)), "{open:?} came back");
        got
    });
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, bodies(0..20), "every message once: {got:?}");
    wait_for("every copy empty", &c, ELECTION, || {
        (1..=3).all(|id| messages(&c, id) == Some(0)).then_some(())
    });
}

/// A queue on two of three nodes (`x-quorum-initial-group-size` 2): the third holds no
/// copy of it, yet basic.get and consumers there get the queue's messages, as on any
/// RabbitMQ node. A message given back there comes again, redelivered and counted; every
/// message published goes to its consumer once; what a consumer there held when its
/// connection closed goes to a consumer on the leader; acks there settle in the group, and
/// every node ends empty.
#[test]
fn basic_get_and_consumers_on_a_node_that_does_not_hold_the_queue() {
    let c = Cluster::new(3, 0);
    let rt = runtime();
    let (members, outsider, leader) = orders_on_two_of_three(&c, &rt);
    let body = |d: &lapin::message::Delivery| String::from_utf8(d.data.clone()).unwrap();

    rt.block_on(async {
        let (_pconn, pch) = confirm_channel(c.node(leader).amqp).await;
        assert_eq!(publish_all(&pch, "orders", &bodies(0..1)).await, 1);
        let conn = connect(c.node(outsider).amqp).await;
        let ch = conn.create_channel().await.unwrap();
        let first = get(&ch).await.expect("the message, on the outsider");
        assert_eq!(body(&first.delivery), bodies(0..1)[0]);
        assert!(!first.delivery.redelivered);
        nack_requeue(&ch, first.delivery.delivery_tag).await;
        // The nack reaches the leader through the group first.
        let again = get_within(&ch, Duration::from_secs(10))
            .await
            .expect("given back on the outsider: got again there");
        assert_eq!(body(&again.delivery), bodies(0..1)[0]);
        assert!(again.delivery.redelivered, "given back: redelivered");
        assert_eq!(delivery_count(&again.delivery.properties), Some(1));
        again
            .delivery
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
        assert!(get(&ch).await.is_none(), "get-empty once it is acked");
    });
    wait_for("the ack settled in the group", &c, ELECTION, || {
        members
            .iter()
            .all(|id| messages(&c, *id) == Some(0))
            .then_some(())
    });

    // A consumer on the outsider takes five and never acks them; its connection closes,
    // and a consumer on the leader gets them.
    let held: Received = Arc::default();
    rt.block_on(async {
        let conn = start_consumer(&c, outsider, 5, false, &held).await;
        let (_pconn, pch) = confirm_channel(c.node(leader).amqp).await;
        assert_eq!(publish_all(&pch, "orders", &bodies(0..5)).await, 5);
        assert_eq!(wait_received(&held, 5).await.len(), 5);
        conn.close(200, "bye".into()).await.unwrap();
    });
    let back: Received = Arc::default();
    let got = rt.block_on(async {
        let conn = start_consumer(&c, leader, 20, true, &back).await;
        let got = wait_received(&back, 5).await;
        // Its acks go out before it closes; the next part's messages are the outsider's.
        tokio::time::sleep(Duration::from_millis(500)).await;
        conn.close(200, "bye".into()).await.unwrap();
        got
    });
    let mut again: Vec<String> = got.into_iter().map(|(_, b)| b).collect();
    again.sort();
    assert_eq!(again, bodies(0..5), "what the closed connection held");

    // Consumers on the outsider only: every message, once.
    let received: Received = Arc::default();
    let got = rt.block_on(async {
        let _conn = start_consumer(&c, outsider, 20, true, &received).await;
        let (_pconn, pch) = confirm_channel(c.node(members[0]).amqp).await;
        assert_eq!(publish_all(&pch, "orders", &bodies(0..300)).await, 300);
        let got = wait_received(&received, 300).await;
        // Anything more would be a message delivered twice.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(received.lock().unwrap().len(), got.len());
        got
    });
    let mut bodies_got: Vec<String> = got.into_iter().map(|(_, b)| b).collect();
    bodies_got.sort();
    assert_eq!(
        bodies_got,
        bodies(0..300),
        "every message once, on the outsider"
    );
    wait_for("every node empty", &c, ELECTION, || {
        (1..=3).all(|id| messages(&c, id) == Some(0)).then_some(())
    });
}

/// Publishes messages `from..to` through node `via` and waits for the consumers to have
/// `to` deliveries in all; checks those messages came once each and returns the nodes
/// whose consumers got them.
fn publish_and_see_who_gets(
    c: &Cluster,
    rt: &tokio::runtime::Runtime,
    via: u64,
    received: &Received,
    (from, to): (usize, usize),
) -> std::collections::BTreeSet<u64> {
    let got = rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(via).amqp).await;
        assert_eq!(
            publish_all(&ch, "orders", &bodies(from..to)).await,
            to - from
        );
        let got = wait_received(received, to).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(received.lock().unwrap().len(), got.len(), "delivered twice");
        got
    });
    let these = &got[from.min(got.len())..];
    let mut bodies_got: Vec<&str> = these.iter().map(|(_, b)| b.as_str()).collect();
    bodies_got.sort_unstable();
    let mut want = bodies(from..to);
    want.sort_unstable();
    assert_eq!(bodies_got, want, "messages {from}..{to} once each");
    these.iter().map(|(n, _)| *n).collect()
}

/// Three nodes with quorum queue `orders` under `x-single-active-consumer`.
fn single_active_orders() -> (Cluster, tokio::runtime::Runtime, u64, Vec<u64>) {
    orders_on_three_nodes_with(quorum_with(&[(
        "x-single-active-consumer",
        lapin::types::AMQPValue::Boolean(true),
    )]))
}

/// Consumers started in this order, 300 ms apart (so the order is plain): (node,
/// prefetch, ack) each.
fn subscribe_in_order(
    c: &Cluster,
    rt: &tokio::runtime::Runtime,
    received: &Received,
    consumers: [(u64, u16, bool); 3],
) -> Vec<Connection> {
    rt.block_on(async {
        let mut conns = Vec::new();
        for (k, (node, prefetch, ack)) in consumers.into_iter().enumerate() {
            if k > 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            conns.push(start_consumer(c, node, prefetch, ack, received).await);
        }
        conns
    })
}

/// A single-active-consumer quorum queue serves one consumer of the whole cluster at a
/// time, the earliest subscribed, as RabbitMQ's does: here the first on a member that
/// does not lead, then (its node killed) the one on the leader, then (that one gone) the
/// one on the third node.
#[test]
fn a_single_active_consumer_is_one_across_the_cluster() {
    let (mut c, rt, leader, followers) = single_active_orders();
    let (first, third) = (followers[0], followers[1]);
    let received: Received = Arc::default();
    let mut conns = subscribe_in_order(
        &c,
        &rt,
        &received,
        [(first, 10, true), (leader, 10, true), (third, 10, true)],
    );
    let on_leader = conns.remove(1);
    let on_first = conns.remove(0);
    let who = publish_and_see_who_gets(&c, &rt, leader, &received, (0, 100));
    assert_eq!(who, [first].into(), "the earliest consumer alone");

    // The active consumer's node dies: once it has stopped asking for a while, the next
    // subscribed (on the leader) is served.
    drop(on_first);
    c.node_mut(first).kill();
    let who = publish_and_see_who_gets(&c, &rt, leader, &received, (100, 200));
    assert_eq!(who, [leader].into(), "the next one, on the leader");

    // That one goes too: the consumer on the third node.
    rt.block_on(async { on_leader.close(200, "bye".into()).await.unwrap() });
    let who = publish_and_see_who_gets(&c, &rt, leader, &received, (200, 300));
    assert_eq!(who, [third].into(), "the last one, on another node");
}

/// Single active consumer, the first consumer of a node replaced by a later one: a node
/// that does not lead has the earliest consumer (prefetch 1, holding one message of a
/// backlog), the leader the next, the same node a third. When the first goes, the
/// leader's consumer is the earliest and takes the whole backlog, with no publish or ack
/// to set it going.
#[test]
fn the_leaders_consumer_takes_a_backlog_when_a_remote_first_consumer_goes() {
    let (c, rt, leader, followers) = single_active_orders();
    let other = followers[0];
    let received: Received = Arc::default();
    // The first never acks: it holds one message and the rest wait.
    let mut conns = subscribe_in_order(
        &c,
        &rt,
        &received,
        [(other, 1, false), (leader, 10, true), (other, 10, true)],
    );
    let first = conns.remove(0);
    let got = rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(leader).amqp).await;
        assert_eq!(publish_all(&ch, "orders", &bodies(0..20)).await, 20);
        let got = wait_received(&received, 1).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        got
    });
    assert_eq!(
        received.lock().unwrap().len(),
        1,
        "prefetch 1 of the first consumer"
    );
    assert_eq!(got[0].0, other);

    // The first consumer goes: its message comes back, and all 20 go to the leader's.
    rt.block_on(async { first.close(200, "bye".into()).await.unwrap() });
    let got = rt.block_on(wait_received(&received, 21));
    let after: Vec<&(u64, String)> = got[1..].iter().collect();
    assert_eq!(after.len(), 20, "the backlog after the first consumer went");
    assert!(
        after.iter().all(|(n, _)| *n == leader),
        "served on {:?}, the leader is {leader}",
        after.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    let mut bodies_got: Vec<&str> = after.iter().map(|(_, b)| b.as_str()).collect();
    bodies_got.sort_unstable();
    let mut want = bodies(0..20);
    want.sort_unstable();
    assert_eq!(bodies_got, want);
}

/// Publishes 20 messages through `leader` and waits until one is delivered (the earliest
/// consumer, at prefetch 1, holds it) and a second more.
fn publish_backlog_of_20(
    c: &Cluster,
    rt: &tokio::runtime::Runtime,
    leader: u64,
    received: &Received,
) {
    rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(leader).amqp).await;
        assert_eq!(publish_all(&ch, "orders", &bodies(0..20)).await, 20);
        wait_received(received, 1).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    });
}

/// Kills `leader` while member `paused` is stopped (SIGSTOP) and for 3 s after, so that
/// member `other`, which stands for election meanwhile, most likely leads next; returns
/// the queue's next leader.
fn kill_leader_with_one_paused(c: &mut Cluster, leader: u64, paused: u64, other: u64) -> u64 {
    c.node(paused).pause();
    c.node_mut(leader).kill();
    std::thread::sleep(Duration::from_secs(3));
    c.node(paused).resume();
    queue_leader(c, &[paused, other], Some(leader))
}

/// A leader that takes a single-active-consumer queue over (the old one killed) serves the
/// earliest consumer of the cluster, not its own, as RabbitMQ's quorum queue (whose
/// state machine keeps the consumers) does: the earliest, on a member that does not lead
/// (prefetch 1, holding one message of a backlog), keeps its place, and the other
/// member's consumer, subscribed later, gets nothing of the backlog whichever of the two
/// members leads next. The earliest consumer's node is paused (SIGSTOP) while the leader
/// dies and for a few seconds after, so that the other member, which stands for election
/// meanwhile, most likely wins it: the case where a new leader knew only its own consumer
/// and handed it the backlog at once.
#[test]
fn a_new_leader_serves_the_earliest_consumer_of_the_cluster_not_its_own() {
    let (mut c, rt, leader, followers) = single_active_orders();
    let (first, second) = (followers[0], followers[1]);
    let received: Received = Arc::default();
    let _conns = subscribe_in_order(
        &c,
        &rt,
        &received,
        [(first, 1, false), (second, 10, true), (leader, 10, true)],
    );
    publish_backlog_of_20(&c, &rt, leader, &received);
    assert_eq!(
        *received.lock().unwrap(),
        [(first, bodies(0..1)[0].clone())]
    );

    let next = kill_leader_with_one_paused(&mut c, leader, first, second);
    eprintln!("node {next} leads after the failover (the earliest consumer is on node {first})");
    // Longer than a new leader waits for the other members' consumers, and than a
    // member's consumer counts after its node last asked.
    std::thread::sleep(Duration::from_secs(5));
    let got = received.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        1,
        "node {next} leads now; after the failover the later consumer on node {second} got {:?}",
        &got[1..]
    );
}

/// The same takeover with the new leader's own consumer the earliest left, on a queue
/// with a message TTL (whose timer the new leader arms as it takes the lead): once its
/// wait for the other members' consumers is over, the leader hands its consumer the
/// backlog on its own, with no publish or ack to set it going. The earliest consumer of
/// all is on the old leader (prefetch 1, holding one message); the next on one member,
/// the last on the other, whose node is paused while the leader dies so that the first
/// member most likely leads next.
#[test]
fn a_new_leader_hands_its_own_earliest_consumer_the_backlog_when_its_wait_ends() {
    let (mut c, rt, leader, followers) = orders_on_three_nodes_with(quorum_with(&[
        (
            "x-single-active-consumer",
            lapin::types::AMQPValue::Boolean(true),
        ),
        ("x-message-ttl", lapin::types::AMQPValue::LongInt(600_000)),
    ]));
    let (next_in_line, last) = (followers[0], followers[1]);
    let received: Received = Arc::default();
    let _conns = subscribe_in_order(
        &c,
        &rt,
        &received,
        [
            (leader, 1, false),
            (next_in_line, 10, true),
            (last, 10, true),
        ],
    );
    publish_backlog_of_20(&c, &rt, leader, &received);
    assert_eq!(
        received.lock().unwrap().len(),
        1,
        "prefetch 1 on the leader"
    );

    let next = kill_leader_with_one_paused(&mut c, leader, last, next_in_line);
    eprintln!("node {next} leads after the failover (the earliest consumer left is on node {next_in_line})");
    // All 20 (the one held on the dead leader comes back) within a few seconds, though
    // the TTL is ten minutes away.
    let got = rt.block_on(wait_received(&received, 21));
    let after: Vec<u64> = got[1..].iter().map(|(n, _)| *n).collect();
    assert_eq!(
        after,
        vec![next_in_line; 20],
        "node {next} leads; who got the backlog after the failover"
    );
}
