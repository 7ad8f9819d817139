//! Time on a quorum queue in a cluster (issue 16), as RabbitMQ 3.10 keeps it (recorded in
//! `tests/cluster_reference/rabbitmq_quorum_ttl.md`). Message TTL: a message whose TTL
//! passes leaves the queue on its own, with no consumer and nothing else touching the
//! queue, and is dead-lettered once (reason `expired`) — by the queue's leader, not by
//! every copy; the next leader goes on expiring after the first is killed; a message held
//! by a consumer past its TTL and given back expires rather than going out again. Queue
//! expiry (`x-expires`): a consumer on any node keeps the queue in use on every node; once
//! it goes, the queue is deleted from the whole cluster. A TTL counts from the enqueue in
//! every copy, also one rebuilt from the log after the whole cluster was down, and from the
//! leader's clock, not that of the node a client published through.

use crate::cluster_support;

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_support::quorum::*;
use cluster_support::Cluster;
use lapin::options::{BasicConsumeOptions, BasicGetOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};

const TTL_MS: i32 = 1_000;

/// The node leading queue `name`, as every node of `ids` names it.
fn leader_of(c: &Cluster, ids: &[u64], name: &str, not: Option<u64>) -> u64 {
    wait_for("an agreed leader of the queue", c, ELECTION, || {
        let mut seen = Vec::new();
        for &id in ids {
            let q = c.node(id).api_get(&format!("/api/queues/%2F/{name}"))?;
            let leader = q["leader"].as_str()?.to_string();
            // Among `ids` only: a node killed has no name to give.
            seen.push(*ids.iter().find(|n| node_name(c, **n) == leader)?);
        }
        let first = seen[0];
        (seen.iter().all(|l| *l == first) && Some(first) != not).then_some(first)
    })
}

/// Waits until every node of `ids` shows `orders` empty and `dlq` holding `dead`.
fn wait_expired(c: &Cluster, ids: &[u64], dead: u64) {
    for &id in ids {
        wait_for(
            &format!("orders empty and {dead} dead letters on node {id}"),
            c,
            ELECTION,
            || {
                let counts = (
                    queue_messages(c, id, "orders")?,
                    queue_messages(c, id, "dlq")?,
                );
                (counts == (0, dead)).then_some(())
            },
        );
    }
}

/// The dead letters in `dlq`, taken with basic.get: body -> (how many, first death reason).
async fn take_dead_letters(port: u16) -> BTreeMap<String, (usize, String)> {
    let (_conn, ch) = confirm_channel(port).await;
    let mut got: BTreeMap<String, (usize, String)> = BTreeMap::new();
    while let Some(m) = ch
        .basic_get("dlq".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let reason = m
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-first-death-reason").cloned());
        let reason = match reason {
            Some(AMQPValue::LongString(s)) => s.to_string(),
            other => format!("{other:?}"),
        };
        let body = String::from_utf8(m.data.clone()).unwrap();
        let entry = got.entry(body).or_insert((0, reason));
        entry.0 += 1;
    }
    got
}

/// Three nodes with quorum queue `dlq`, and quorum queue `orders` whose messages live
/// `ttl_ms` and are dead-lettered to `dlq`: the cluster, a runtime, `orders`' leader.
fn orders_with_ttl(ttl_ms: i32) -> (Cluster, tokio::runtime::Runtime, u64) {
    orders_on(Cluster::new(3, 0), ttl_ms)
}

/// As `orders_with_ttl`, on the three nodes of `c`, started.
fn orders_on(c: Cluster, ttl_ms: i32) -> (Cluster, tokio::runtime::Runtime, u64) {
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    let rt = runtime();
    rt.block_on(declare(c.node(1).amqp, "dlq", quorum()));
    let with_ttl = quorum_with(&[
        ("x-message-ttl", AMQPValue::LongInt(ttl_ms)),
        (
            "x-dead-letter-exchange",
            AMQPValue::LongString(LongString::from("")),
        ),
        (
            "x-dead-letter-routing-key",
            AMQPValue::LongString(LongString::from("dlq")),
        ),
    ]);
    rt.block_on(declare(c.node(1).amqp, "orders", with_ttl));
    let leader = leader_of(&c, &[1, 2, 3], "orders", None);
    (c, rt, leader)
}

/// When node `id` wrote the first line of its log, on its own wall clock: seconds into the
/// (UTC) day, from the line's timestamp (`2026-12-06T14:33:31.960048Z  INFO ...`).
fn first_logged_at(c: &Cluster, id: u64) -> f64 {
    let log = std::fs::read_to_string(&c.node(id).log).unwrap();
    let stamp = log.split_whitespace().next().expect("a line in the log");
    let time = stamp
        .split_once('T')
        .expect("a timestamp")
        .1
        .trim_end_matches('Z');
    let parts: Vec<f64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    parts[0] * 3_600.0 + parts[1] * 60.0 + parts[2]
}

/// Takes the dead letters in `dlq` through AMQP port `port`: the messages of `range`, each
/// once, dead-lettered as expired.
fn assert_expired_once(rt: &tokio::runtime::Runtime, port: u16, range: std::ops::Range<usize>) {
    let dead = rt.block_on(take_dead_letters(port));
    let want: BTreeMap<String, (usize, String)> = bodies(range)
        .into_iter()
        .map(|b| (b, (1, "expired".to_string())))
        .collect();
    assert_eq!(dead, want, "each message dead-lettered once, as expired");
}

#[test]
fn expired_messages_leave_a_quorum_queue_once_and_the_next_leader_goes_on_expiring() {
    let (mut c, rt, leader) = orders_with_ttl(TTL_MS);
    let follower = (1..=3).find(|id| *id != leader).unwrap();

    // Published through a node that does not lead; nobody consumes.
    let sent = rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(follower).amqp).await;
        publish_all(&ch, "orders", &bodies(0..5)).await
    });
    assert_eq!(sent, 5);
    wait_expired(&c, &[1, 2, 3], 5);
    // Expired once: the copies that do not lead dead-letter nothing of their own.
    std::thread::sleep(Duration::from_millis(3 * TTL_MS as u64));
    for id in 1..=3 {
        assert_eq!(
            queue_messages(&c, id, "dlq"),
            Some(5),
            "dead letters on node {id}"
        );
    }

    // The leader killed: the next one expires what is published to it.
    c.node_mut(leader).kill();
    let live: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let next = leader_of(&c, &live, "orders", Some(leader));
    let sent = rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(next).amqp).await;
        publish_all(&ch, "orders", &bodies(5..8)).await
    });
    assert_eq!(sent, 3);
    wait_expired(&c, &live, 8);

    // Held by a consumer on a node that does not lead past its TTL, then given back: it
    // expires there and then, as RabbitMQ's does, rather than going out again.
    let other = live.iter().copied().find(|id| *id != next).unwrap();
    rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(other).amqp).await;
        assert_eq!(publish_all(&ch, "orders", &bodies(8..9)).await, 1);
        let held = get_within(&ch, Duration::from_secs(5))
            .await
            .expect("the fresh message got before its TTL");
        tokio::time::sleep(Duration::from_millis(2 * TTL_MS as u64)).await;
        nack_requeue(&ch, held.delivery_tag).await;
        tokio::time::sleep(Duration::from_millis(TTL_MS as u64)).await;
        assert!(
            get(&ch).await.is_none(),
            "a message past its TTL was handed out again"
        );
    });
    wait_expired(&c, &live, 9);

    assert_expired_once(&rt, c.node(next).amqp, 0..9);
}

/// Whether node `id`'s management API shows queue `name` (200) or not (404).
fn shown(c: &Cluster, id: u64, name: &str) -> Option<bool> {
    match c.node(id).api_status(&format!("/api/queues/%2F/{name}"))?.0 {
        200 => Some(true),
        404 => Some(false),
        _ => None,
    }
}

#[test]
fn an_expiring_queue_in_use_on_one_node_stays_on_every_node_and_goes_from_all_when_unused() {
    const EXPIRES_MS: i32 = 3_000;
    let mut c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    let rt = runtime();
    let expiring = quorum_with(&[("x-expires", AMQPValue::LongInt(EXPIRES_MS))]);
    rt.block_on(declare(c.node(1).amqp, "orders", expiring));
    let leader = leader_of(&c, &[1, 2, 3], "orders", None);
    let consumer_node = (1..=3).find(|id| *id != leader).unwrap();

    // A consumer on a node that does not lead: the queue is in use, on every node.
    let (conn, ch) = rt.block_on(confirm_channel(c.node(consumer_node).amqp));
    let consumer = rt.block_on(ch.basic_consume(
        "orders".into(),
        "in-use".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ));
    let _consumer = consumer.unwrap();
    std::thread::sleep(Duration::from_millis(3 * EXPIRES_MS as u64));
    for id in 1..=3 {
        assert_eq!(
            shown(&c, id, "orders"),
            Some(true),
            "a queue in use on node {consumer_node} expired on node {id}"
        );
    }

    // Unused now: deleted everywhere (RabbitMQ took 4.1 s for an x-expires of 3 s).
    rt.block_on(conn.close(200, "bye".into())).unwrap();
    for id in 1..=3 {
        wait_for(
            &format!("the unused queue gone from node {id}"),
            &c,
            ELECTION,
            || (shown(&c, id, "orders") == Some(false)).then_some(()),
        );
    }
    // Gone from the cluster's definitions, not only from each node's model: a node
    // started again does not bring it back.
    c.node_mut(consumer_node).kill();
    c.node_mut(consumer_node).start();
    wait_for("the restarted node answering", &c, ELECTION, || {
        shown(&c, consumer_node, "orders")
    });
    std::thread::sleep(Duration::from_secs(2));
    for id in 1..=3 {
        assert_eq!(shown(&c, id, "orders"), Some(false), "on node {id}");
    }
}

/// A message's TTL counts from when it was enqueued in every copy, also one rebuilt from
/// the group's log after a restart (RabbitMQ's quorum queues keep the enqueue time in the
/// log entry). The whole cluster is killed with messages in a queue and started again
/// after their TTL has passed: the new leader dead-letters them at once, not a full TTL
/// after its copy was rebuilt.
#[test]
fn a_ttl_counts_from_the_enqueue_in_a_copy_rebuilt_after_the_whole_cluster_restarts() {
    const LONG_TTL_MS: u64 = 20_000;
    let (mut c, rt, leader) = orders_with_ttl(LONG_TTL_MS as i32);
    let published = std::time::Instant::now();
    let sent = rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(leader).amqp).await;
        publish_all(&ch, "orders", &bodies(0..3)).await
    });
    assert_eq!(sent, 3);
    for id in 1..=3 {
        c.node_mut(id).kill();
    }
    // Down until the messages' TTL has passed.
    let past_ttl = Duration::from_millis(LONG_TTL_MS + 1_000);
    std::thread::sleep(past_ttl.saturating_sub(published.elapsed()));
    let restarted = std::time::Instant::now();
    for id in 1..=3 {
        c.node_mut(id).start();
    }
    wait_expired(&c, &[1, 2, 3], 3);
    // Timed from the rebuild, they would have waited a whole TTL more.
    let took = restarted.elapsed();
    assert!(
        took < Duration::from_millis(LONG_TTL_MS - 5_000),
        "expired {took:?} after the restart: the TTL restarted with the rebuilt copy"
    );
    let leader = leader_of(&c, &[1, 2, 3], "orders", None);
    assert_expired_once(&rt, c.node(leader).amqp, 0..3);
}

#[test]
fn a_ttl_counts_from_the_leaders_clock_not_from_the_clock_of_the_node_published_to() {
    const BEHIND_S: u32 = 8;
    const SHORT_TTL_MS: i32 = 4_000;
    // Node 3's wall clock runs 8 s behind the others' from its first start on.
    let mut c = Cluster::created(3, 0);
    c.node_mut(3).set_clock_behind(BEHIND_S);
    for id in 1..=3 {
        c.node_mut(id).start();
    }
    let (mut c, rt, mut leader) = orders_on(c, SHORT_TTL_MS);
    // The nodes started a few milliseconds apart; their first log lines say when, each on
    // its own clock.
    let behind = (first_logged_at(&c, 1) - first_logged_at(&c, 3)).rem_euclid(86_400.0);
    assert!(
        (behind - BEHIND_S as f64).abs() < 1.0,
        "node 3's clock is {behind:.3} s behind node 1's, not {BEHIND_S} s (libfaketime not in effect?)"
    );
    if leader == 3 {
        // The queue's leader must be a node whose clock is right: node 3 made to give the
        // lead up, and back as a member.
        c.node_mut(3).kill();
        leader = leader_of(&c, &[1, 2], "orders", Some(3));
        c.node_mut(3).start();
    }
    // Back and a member of the group again (it names the queue's leader).
    assert_eq!(leader_of(&c, &[1, 2, 3], "orders", None), leader);

    // Published through node 3, whose clock says the messages are 8 s old to the leader
    // (past their TTL) if the leader took node 3's time.
    let sent = rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(3).amqp).await;
        publish_all(&ch, "orders", &bodies(0..3)).await
    });
    assert_eq!(sent, 3);
    let got = rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(leader).amqp).await;
        consume(&ch, "orders", 3, Duration::from_secs(3)).await
    });
    assert_eq!(
        got,
        bodies(0..3),
        "the messages expired at once on the leader"
    );
    assert_eq!(queue_messages(&c, leader, "dlq"), Some(0), "dead letters");
}
