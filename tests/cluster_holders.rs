//! What a quorum queue's leader does with the deliveries another node's consumers hold
//! when that node goes (issue 16): three `warren` processes on loopback
//! (`cluster_support`, a fault-injecting proxy on every link) and lapin. As RabbitMQ 3.10's
//! leader does when it hears `noconnection`, the leader returns them as soon as the node's
//! connection closes (killed, or the link cut), each counted once, and they go to the
//! other consumers; a node that was only cut off and comes back does not take them away
//! from those consumers again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cluster_consumers::{
    hold_ten, orders_on_three_nodes, start_consumer, subscribe, unacked, wait_received, Received,
};
use crate::cluster_support::quorum::*;
use crate::cluster_support::Cluster;
use futures_lite::StreamExt;
use lapin::options::BasicAckOptions;

/// Fifteen messages got one by one through node `id` (30 s for each at most) and acked:
/// each as (body, `redelivered`, `x-delivery-count`).
async fn get_fifteen(c: &Cluster, id: u64) -> Vec<(String, bool, Option<i64>)> {
    let conn = connect(c.node(id).amqp).await;
    let ch = conn.create_channel().await.unwrap();
    let mut got = Vec::new();
    while got.len() < 15 {
        let m = get_within(&ch, Duration::from_secs(30))
            .await
            .expect("fifteen messages within 30 s");
        let count = delivery_count(&m.delivery.properties);
        let body = String::from_utf8(m.delivery.data.clone()).unwrap();
        got.push((body, m.delivery.redelivered, count));
        m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    got
}

/// A node killed with ten deliveries out, and five more messages ready on the leader:
/// the leader hears of the death at once (the connection the node's beacons came on
/// closes) and returns the ten, each counted once (redelivered, `x-delivery-count: 1`),
/// back at the head of the queue ahead of the five, as RabbitMQ 3.10's leader does when it
/// hears `noconnection` (tests/cluster_reference/rabbitmq_member_death_redelivery.md).
/// With only the lease to go by, the five came first and the ten 10 s later.
#[test]
fn what_a_killed_node_held_goes_back_at_once_ahead_of_the_rest() {
    let (mut c, rt, leader, followers) = orders_on_three_nodes();
    let (holder, other) = (followers[0], followers[1]);

    // A consumer on `holder` takes ten messages and never acks them.
    let _conn = rt.block_on(hold_ten(&c, leader, holder));
    // The leader shows them as unacknowledged.
    assert_eq!(unacked(&c, leader), Some(10));
    // Five more, which the holder has no room for.
    rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(leader).amqp).await;
        assert_eq!(publish_all(&ch, "orders", &bodies(10..15)).await, 5);
    });

    c.node_mut(holder).kill();
    let heard = format!("node {holder}'s connection closed");
    wait_for("the leader hearing of the kill", &c, ELECTION, || {
        let log = std::fs::read_to_string(&c.node(leader).log).ok()?;
        log.contains(&heard).then_some(())
    });
    let got = rt.block_on(get_fifteen(&c, other));
    let returned = bodies(0..10).into_iter().map(|b| (b, true, Some(1)));
    // A basic.get carries the count on a first delivery too (0), as RabbitMQ's does.
    let never_out = bodies(10..15).into_iter().map(|b| (b, false, Some(0)));
    let expected: Vec<_> = returned.chain(never_out).collect();
    assert_eq!(got, expected, "what the dead node held, then the rest");
    wait_for("nothing unacknowledged on the leader", &c, ELECTION, || {
        (unacked(&c, leader) == Some(0)).then_some(())
    });
}

/// A node killed with ten deliveries out and started again at once, with a consumer on the
/// third node that never acks: the leader returns the ten as it hears of the kill, and the
/// third node's consumer gets them, once each. The group's commit of those returns must
/// not make them ready again (the leader counted them itself: they are not a holder's
/// give-back): the restarted node's new consumer gets none of them, and the leader shows
/// ten unacknowledged. Before the two were told apart the leader made them ready once
/// more while a consumer held them, and another consumer got them as well.
#[test]
fn what_a_killed_node_held_goes_out_once_and_not_again_after_its_restart() {
    let (mut c, rt, leader, followers) = orders_on_three_nodes();
    let (holder, other) = (followers[0], followers[1]);
    let _conn = rt.block_on(hold_ten(&c, leader, holder));
    // A consumer on the third node, not acking, with room for all of them.
    let elsewhere: Received = Arc::default();
    let _other_conn = rt.block_on(start_consumer(&c, other, 20, false, &elsewhere));

    c.node_mut(holder).kill();
    c.node_mut(holder).start();
    wait_for("the queue on the restarted node", &c, ELECTION, || {
        c.node(holder).api_get("/api/queues/%2F/orders").map(drop)
    });
    let again: Received = Arc::default();
    let _again_conn = rt.block_on(async {
        let conn = start_consumer(&c, holder, 10, false, &again).await;
        let got = wait_received(&elsewhere, 10).await;
        let mut got: Vec<String> = got.into_iter().map(|(_, b)| b).collect();
        got.sort();
        assert_eq!(
            got,
            bodies(0..10),
            "what the killed node held, on the third"
        );
        // Long enough for the returns to be committed and applied everywhere.
        tokio::time::sleep(Duration::from_secs(3)).await;
        conn
    });
    assert_eq!(
        again.lock().unwrap().clone(),
        Vec::new(),
        "messages the third node's consumer holds went to the restarted node too"
    );
    assert_eq!(elsewhere.lock().unwrap().len(), 10, "each once");
    assert_eq!(unacked(&c, leader), Some(10));
}

/// A node cut off with ten deliveries out (its links cut: the leader hears its connection
/// close and returns the ten, and a consumer on the third node, not acking, takes them).
/// While cut off the node's client closes its connection: its copy returns the ten, and
/// that return reaches the group when the links heal. The leader must take it as the
/// word of a node that holds nothing any more, not as the give-back of the node that holds
/// the ten now: before, it made them ready again while the third node's consumer held
/// them, and a consumer on the leader got them as well. Nor may that return count: when
/// the third node's consumer gives the ten back they have been returned twice (before, 3).
#[test]
fn a_return_from_a_node_whose_holdings_went_elsewhere_leaves_them_there() {
    let (c, rt, leader, followers) = orders_on_three_nodes();
    let (holder, other) = (followers[0], followers[1]);
    let holder_conn = rt.block_on(hold_ten(&c, leader, holder));
    let elsewhere: Received = Arc::default();
    let other_conn = rt.block_on(start_consumer(&c, other, 20, false, &elsewhere));

    c.isolate(holder);
    let got = rt.block_on(async {
        let got = wait_received(&elsewhere, 10).await;
        // The cut-off node's client gives its ten back.
        let _ = holder_conn.close(200, "bye".into()).await;
        got
    });
    let mut got: Vec<String> = got.into_iter().map(|(_, b)| b).collect();
    got.sort();
    assert_eq!(
        got,
        bodies(0..10),
        "what the cut-off node held, on the third"
    );

    c.heal_all();
    // A consumer on the leader, which would get whatever is ready. Long enough for the
    // cut-off node's return to reach the group and be applied everywhere (its writer
    // tries for 10 s): the third node's consumer keeps the ten, and no one else gets them.
    let on_leader: Received = Arc::default();
    let leader_conn = rt.block_on(async {
        let conn = start_consumer(&c, leader, 20, false, &on_leader).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        conn
    });
    assert_eq!(
        on_leader.lock().unwrap().clone(),
        Vec::new(),
        "what the third node's consumer holds went to the leader's too"
    );
    assert_eq!(elsewhere.lock().unwrap().len(), 10, "each once");
    assert_eq!(unacked(&c, leader), Some(10));

    // The third node's consumer gives the ten back. Each message has been returned twice
    // now: by the leader when the cut-off node's connection closed, and by this consumer.
    // The cut-off node's return was of a delivery the group had taken back already, and
    // counts nothing (RabbitMQ's queue ignores a return of a message the consumer no
    // longer has checked out): before, it counted too, and the ten came back at 3.
    let mut got = rt.block_on(async {
        let _ = leader_conn.close(200, "bye".into()).await;
        let _ = other_conn.close(200, "bye".into()).await;
        let conn = connect(c.node(leader).amqp).await;
        let ch = conn.create_channel().await.unwrap();
        let mut got = Vec::new();
        while got.len() < 10 {
            let m = get_within(&ch, Duration::from_secs(30))
                .await
                .expect("the ten back within 30 s");
            let body = String::from_utf8(m.delivery.data.clone()).unwrap();
            got.push((body, delivery_count(&m.delivery.properties)));
            m.delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
        got
    });
    got.sort();
    assert!(on_leader.lock().unwrap().is_empty());
    let expected: Vec<_> = bodies(0..10).into_iter().map(|b| (b, Some(2))).collect();
    assert_eq!(got, expected, "each returned twice, counted twice");
}

/// The leader killed with ten deliveries out to a consumer of its own, and five more
/// messages ready. The group heard how far the leader had handed messages out, so the next
/// leader takes the ten as the dead node's, and as that node is gone (its connections
/// closed with it) returns them at once, each counted once (redelivered,
/// `x-delivery-count: 1`), ahead of the five: what RabbitMQ 3.10's next leader does with
/// a dead leader's deliveries (tests/cluster_reference/rabbitmq_failover_redelivery.md).
/// Before, the next leader had the ten ready as first deliveries (`redelivered` false, no
/// count).
#[test]
fn what_a_killed_leader_handed_out_comes_back_counted_ahead_of_the_rest() {
    let (mut c, rt, leader, followers) = orders_on_three_nodes();
    let _conn = rt.block_on(hold_ten(&c, leader, leader));
    rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(leader).amqp).await;
        assert_eq!(publish_all(&ch, "orders", &bodies(10..15)).await, 5);
    });

    c.node_mut(leader).kill();
    let next = wait_for("the next leader returning the ten", &c, ELECTION, || {
        followers.iter().copied().find(|id| {
            std::fs::read_to_string(&c.node(*id).log)
                .is_ok_and(|log| log.contains("the last leader's deliveries returned"))
        })
    });
    // On the new leader: a member's copy may not have applied the returns yet when the
    // leader grants it a message.
    let got = rt.block_on(get_fifteen(&c, next));
    let returned = bodies(0..10).into_iter().map(|b| (b, true, Some(1)));
    let never_out = bodies(10..15).into_iter().map(|b| (b, false, Some(0)));
    let expected: Vec<_> = returned.chain(never_out).collect();
    assert_eq!(
        got, expected,
        "what the dead leader handed out, then the rest"
    );
    wait_for(
        "nothing unacknowledged on the next leader",
        &c,
        ELECTION,
        || (unacked(&c, next) == Some(0)).then_some(()),
    );
}

/// A consumer of `orders` on node `id` with prefetch `prefetch` that keeps what it is
/// delivered, unacked, for the test to ack later.
async fn keeping_consumer(c: &Cluster, id: u64, prefetch: u16) -> (lapin::Connection, Kept) {
    let (conn, mut deliveries) = subscribe(c, id, prefetch, &format!("keeps-{id}")).await;
    let kept: Kept = Arc::default();
    let into = kept.clone();
    tokio::spawn(async move {
        while let Some(Ok(d)) = deliveries.next().await {
            into.lock().unwrap().push(d);
        }
    });
    (conn, kept)
}

/// Deliveries kept unacked by `keeping_consumer`.
type Kept = Arc<Mutex<Vec<lapin::message::Delivery>>>;

/// Everything node `next` hands out until it has had nothing for 5 s, got one by one and
/// acked, as (body, `redelivered`, `x-delivery-count`); then the deliveries `kept` hold
/// are acked, and, after a second, how many more they were delivered.
async fn drain_then_ack_kept(
    c: &Cluster,
    next: u64,
    kept: &[Kept],
) -> (Vec<(String, bool, Option<i64>)>, usize) {
    let conn = connect(c.node(next).amqp).await;
    let ch = conn.create_channel().await.unwrap();
    let mut got = Vec::new();
    while let Some(m) = get_within(&ch, Duration::from_secs(5)).await {
        let count = delivery_count(&m.delivery.properties);
        let body = String::from_utf8(m.delivery.data.clone()).unwrap();
        got.push((body, m.delivery.redelivered, count));
        m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    for k in kept {
        let delivered: Vec<_> = k.lock().unwrap().drain(..).collect();
        for d in delivered {
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = kept.iter().map(|k| k.lock().unwrap().len()).sum();
    (got, again)
}

/// The bodies of `range` as first deliveries: not redelivered, `x-delivery-count: 0`.
fn first_deliveries(range: std::ops::Range<usize>) -> Vec<(String, bool, Option<i64>)> {
    bodies(range)
        .into_iter()
        .map(|b| (b, false, Some(0)))
        .collect()
}

/// The leader killed while consumers on both other members hold five deliveries each,
/// with five more messages ready. What a live member's consumers hold stays with them, as
/// RabbitMQ 3.10's next leader keeps the checkouts of live consumers: the member names
/// them in its first ask to the new leader, which then holds them for it. Nothing is
/// delivered again; the five ready ones go out as first deliveries; the holders' acks
/// settle the ten. Whichever member wins the election, the other one's five are in
/// question. Before, the next leader took them for the dead leader's own deliveries and
/// returned them at once, counted, to be delivered a second time.
#[test]
fn what_a_live_members_consumers_hold_stays_with_them_when_the_leader_dies() {
    let (mut c, rt, leader, followers) = orders_on_three_nodes();
    let (conns, kept): (Vec<_>, Vec<_>) = rt.block_on(async {
        let mut consumers = Vec::new();
        for f in &followers {
            consumers.push(keeping_consumer(&c, *f, 5).await);
        }
        let (_conn, ch) = confirm_channel(c.node(leader).amqp).await;
        assert_eq!(publish_all(&ch, "orders", &bodies(0..10)).await, 10);
        for _ in 0..300 {
            if consumers.iter().all(|(_, k)| k.lock().unwrap().len() == 5) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(publish_all(&ch, "orders", &bodies(10..15)).await, 5);
        consumers.into_iter().unzip()
    });
    let held: Vec<usize> = kept.iter().map(|k| k.lock().unwrap().len()).collect();
    assert_eq!(held, [5, 5], "five out with each member's consumer");

    c.node_mut(leader).kill();
    let next = queue_leader(&c, &followers, Some(leader));
    let member = *followers.iter().find(|f| **f != next).unwrap();
    let (got, again) = rt.block_on(drain_then_ack_kept(&c, next, &kept));
    assert_eq!(
        got,
        first_deliveries(10..15),
        "only the five never handed out (member {member})"
    );
    assert_eq!(again, 0, "nothing delivered again to the holders");
    wait_for("every copy empty, nothing unacked", &c, ELECTION, || {
        let done = messages(&c, next) == Some(0) && unacked(&c, next) == Some(0);
        (done && messages(&c, member) == Some(0)).then_some(())
    });
    drop(conns);
}

/// A queue on two of three nodes: a consumer on the third (no copy of the queue) holds
/// five deliveries lent to it, and five more messages are ready. The leader is killed and
/// started again (with two members there is no leader meanwhile). Whichever member leads
/// next, the third node claims its five in its first ask to it, and the new leader waits
/// for that claim (the third node's beacons say it holds messages of the group lent to
/// it): nothing is delivered again, the five ready ones go out as first deliveries, and
/// the holder's acks settle the ten. Before, the new leader took the five for the last
/// leader's deliveries and returned them, counted, to be delivered a second time.
#[test]
fn what_a_node_lent_messages_holds_stays_with_it_when_the_leader_changes() {
    let mut c = Cluster::new(3, 0);
    let rt = runtime();
    let (members, outsider, leader) = orders_on_two_of_three(&c, &rt);
    let (conn, kept) = rt.block_on(async {
        let consumer = keeping_consumer(&c, outsider, 5).await;
        let (_conn, ch) = confirm_channel(c.node(leader).amqp).await;
        assert_eq!(publish_all(&ch, "orders", &bodies(0..5)).await, 5);
        for _ in 0..300 {
            if consumer.1.lock().unwrap().len() == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(publish_all(&ch, "orders", &bodies(5..10)).await, 5);
        consumer
    });
    assert_eq!(kept.lock().unwrap().len(), 5, "five lent to the third node");
    // The third node's beacons (every 250 ms) say from the next on that it holds some.
    std::thread::sleep(Duration::from_secs(1));

    c.node_mut(leader).kill();
    c.node_mut(leader).start();
    let next = queue_leader(&c, &members, None);
    println!("leader {leader}, then {next}; node {outsider} holds no copy");
    let (got, again) = rt.block_on(drain_then_ack_kept(&c, next, std::slice::from_ref(&kept)));
    assert_eq!(
        got,
        first_deliveries(5..10),
        "only the five never handed out (leader {leader}, then {next})"
    );
    assert_eq!(again, 0, "nothing delivered again to the holder");
    wait_for("every copy empty, nothing unacked", &c, ELECTION, || {
        let done = members.iter().all(|id| messages(&c, *id) == Some(0));
        (done && unacked(&c, next) == Some(0)).then_some(())
    });
    drop(conn);
}
