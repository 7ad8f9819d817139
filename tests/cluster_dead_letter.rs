//! Dead-lettering out of a quorum queue in a cluster (issue 16): a message rejected on a
//! node leaves its queue (the group's settle) only once its dead-letter copy is durable,
//! committed by the dead-letter queue's own group when that is a quorum queue, as
//! RabbitMQ's `x-dead-letter-strategy: at-least-once` keeps it. While the dead-letter
//! queue cannot commit (its one member is down), the original stays in its queue on every
//! node; once it can, the copy arrives and the original goes. A delayed message routed into
//! a quorum queue leaves the delayed exchange's log the same way: once committed. Under
//! at-least-once a dead letter is recorded in its queue's group, so a held one outlives the
//! node that dead-lettered it: the next leader publishes it, and nobody gets it again.

use crate::cluster_support;

use std::time::Duration;

use cluster_support::quorum::*;
use cluster_support::Cluster;
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicRejectOptions, ExchangeDeclareOptions,
    QueueBindOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, ExchangeKind};

/// The node ids holding queue `name`, as node `via`'s management API names its members.
fn members(c: &Cluster, via: u64, name: &str) -> Option<Vec<u64>> {
    let q = c.node(via).api_get(&format!("/api/queues/%2F/{name}"))?;
    let names: Vec<&str> = q["members"]
        .as_array()?
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let ids: Vec<u64> = (1..=3)
        .filter(|id| names.contains(&node_name(c, *id).as_str()))
        .collect();
    (!ids.is_empty()).then_some(ids)
}

/// Declares quorum queue `name` with one member; returns that member once every node
/// names it, and it leads (a node may answer before it has the queue's placement).
/// Killing it stops the group committing.
fn single_member_queue(c: &Cluster, rt: &tokio::runtime::Runtime, name: &str) -> u64 {
    let one = quorum_with(&[("x-quorum-initial-group-size", AMQPValue::LongInt(1))]);
    rt.block_on(declare(c.node(1).amqp, name, one));
    wait_for("the single-member queue placed", c, ELECTION, || {
        let seen: Vec<Vec<u64>> = (1..=3)
            .map(|id| members(c, id, name))
            .collect::<Option<_>>()?;
        let one = seen[0].clone();
        let leader = c.node(1).api_get(&format!("/api/queues/%2F/{name}"))?["leader"].clone();
        (one.len() == 1
            && seen.iter().all(|m| *m == one)
            && leader.as_str() == Some(node_name(c, one[0]).as_str()))
        .then_some(one[0])
    })
}

#[test]
fn a_dead_letter_leaves_its_quorum_queue_once_the_target_group_committed_it() {
    let mut c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    let rt = runtime();
    let holder = single_member_queue(&c, &rt, "dlq");
    let others: Vec<u64> = (1..=3).filter(|id| *id != holder).collect();
    let dead_lettered = quorum_with(&[
        (
            "x-dead-letter-exchange",
            AMQPValue::LongString(LongString::from("")),
        ),
        (
            "x-dead-letter-routing-key",
            AMQPValue::LongString(LongString::from("dlq")),
        ),
    ]);
    rt.block_on(declare(c.node(others[0]).amqp, "orders", dead_lettered));
    let sent = rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(others[0]).amqp).await;
        publish_all(&ch, "orders", &bodies(0..1)).await
    });
    assert_eq!(sent, 1);
    for id in &others {
        wait_for("the message in every copy", &c, ELECTION, || {
            (queue_messages(&c, *id, "orders") == Some(1)).then_some(())
        });
    }

    c.node_mut(holder).kill();
    // A consumer that rejects whatever it gets (without requeue): the message is
    // dead-lettered, and again should it come back.
    let conn = rt.block_on(async {
        let conn = connect(c.node(others[1]).amqp).await;
        let ch = conn.create_channel().await.unwrap();
        let mut deliveries = ch
            .basic_consume(
                "orders".into(),
                "rejecter".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        tokio::spawn(async move {
            while let Some(Ok(d)) = deliveries.next().await {
                let _ = d.reject(BasicRejectOptions { requeue: false }).await;
            }
        });
        conn
    });
    std::thread::sleep(Duration::from_secs(3));
    // The node that did not reject shows the group's state (the rejecting node holds the
    // original aside, out of its count, until the copy is durable).
    assert_eq!(
        queue_messages(&c, others[0], "orders"),
        Some(1),
        "the original left its group before its dead letter was committed"
    );

    c.node_mut(holder).start();
    wait_for("the dead letter in its queue", &c, ELECTION, || {
        (queue_messages(&c, holder, "dlq").is_some_and(|n| n >= 1)).then_some(())
    });
    for id in &others {
        wait_for("the original gone from every copy", &c, ELECTION, || {
            (queue_messages(&c, *id, "orders") == Some(0)).then_some(())
        });
    }
    // The copy is the message, with its death recorded.
    let got = rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(holder).amqp).await;
        consume(&ch, "dlq", 1, Duration::from_secs(10)).await
    });
    // At least once: a copy dead-lettered again after a failed commit may come twice.
    assert!(!got.is_empty(), "no dead letter consumed");
    assert!(got.iter().all(|b| *b == bodies(0..1)[0]), "{got:?}");
    drop(conn);
}

#[test]
fn a_delayed_message_leaves_its_log_once_its_quorum_queue_committed_it() {
    let mut c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    let rt = runtime();
    let holder = single_member_queue(&c, &rt, "later");
    let via = (1..=3).find(|id| *id != holder).expect("three nodes");
    c.node_mut(holder).kill();
    rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(via).amqp).await;
        let mut args = FieldTable::default();
        args.insert(
            "x-delayed-type".into(),
            AMQPValue::LongString("direct".into()),
        );
        let kind = ExchangeKind::Custom("x-delayed-message".into());
        ch.exchange_declare(
            "delay".into(),
            kind,
            ExchangeDeclareOptions::default(),
            args,
        )
        .await
        .unwrap();
        let bind = QueueBindOptions::default();
        let none = FieldTable::default();
        ch.queue_bind("later".into(), "delay".into(), "later".into(), bind, none)
            .await
            .unwrap();
        let mut headers = FieldTable::default();
        headers.insert("x-delay".into(), AMQPValue::LongInt(100));
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers);
        let options = BasicPublishOptions::default();
        let confirm = ch
            .basic_publish("delay".into(), "later".into(), options, b"held", props)
            .await
            .unwrap();
        assert!(confirm.await.unwrap().is_ack(), "held by the exchange");
    });
    // Past its delay and past a write to the queue's group (10 s) that cannot commit.
    std::thread::sleep(Duration::from_secs(13));
    c.node_mut(holder).start();
    wait_for("the delayed message in its queue", &c, ELECTION, || {
        (queue_messages(&c, holder, "later").is_some_and(|n| n >= 1)).then_some(())
    });
    let got = rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(holder).amqp).await;
        consume(&ch, "later", 1, Duration::from_secs(10)).await
    });
    // At least once: fired again after each failed commit, so it may come more than once.
    assert!(!got.is_empty(), "no delayed message consumed");
    assert!(got.iter().all(|b| b == "held"), "{got:?}");
}

/// Node `via`'s view of queue `name`: (ready, dead-lettered but still held).
fn ready_and_dlx(c: &Cluster, via: u64, name: &str) -> Option<(u64, u64)> {
    let q = c.node(via).api_get(&format!("/api/queues/%2F/{name}"))?;
    Some((q["messages_ready"].as_u64()?, q["messages_dlx"].as_u64()?))
}

/// The node that leads queue `name`, as node `via` names it, if any (`names`: the nodes'
/// names, read while all were up).
fn leader_of(c: &Cluster, names: &[String], via: u64, name: &str) -> Option<u64> {
    let q = c.node(via).api_get(&format!("/api/queues/%2F/{name}"))?;
    let leader = q["leader"].as_str()?;
    (1..=3).find(|id| names[*id as usize - 1] == leader)
}

/// RabbitMQ's at-least-once dead-lettering keeps a dead letter in its quorum queue's
/// replicated state (`discard`) until its copies are confirmed, so it survives the node
/// that dead-lettered it: the next leader publishes it, and no consumer ever gets the
/// message again. Here the leader rejects a message whose dead-letter exchange binds
/// nothing (so the dead letter is held), every copy records it dead, the leader is killed,
/// and the new one neither delivers it nor loses it: once a queue is bound to the
/// exchange, the dead letter arrives there, rejected, and leaves its queue.
#[test]
fn a_held_dead_letter_outlives_the_node_that_dead_lettered_it() {
    let mut c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    let names: Vec<String> = (1..=3).map(|id| node_name(&c, id)).collect();
    let rt = runtime();
    let at_least_once = quorum_with(&[
        (
            "x-dead-letter-exchange",
            AMQPValue::LongString(LongString::from("dlx")),
        ),
        (
            "x-dead-letter-strategy",
            AMQPValue::LongString(LongString::from("at-least-once")),
        ),
        (
            "x-overflow",
            AMQPValue::LongString(LongString::from("reject-publish")),
        ),
    ]);
    rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(1).amqp).await;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        ch.exchange_declare(
            "dlx".into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await
        .unwrap();
    });
    rt.block_on(declare(c.node(1).amqp, "orders", at_least_once));
    let sent = rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(1).amqp).await;
        publish_all(&ch, "orders", &bodies(0..1)).await
    });
    assert_eq!(sent, 1);
    let leader = wait_for("the queue's leader", &c, ELECTION, || {
        let leader = leader_of(&c, &names, 1, "orders")?;
        (1..=3)
            .all(|id| queue_messages(&c, id, "orders") == Some(1))
            .then_some(leader)
    });
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();

    // The leader's consumer rejects it: the dead letter routes nowhere, so it is held.
    rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(leader).amqp).await;
        let m = get_within(&ch, Duration::from_secs(10))
            .await
            .expect("the message");
        ch.basic_reject(m.delivery_tag, BasicRejectOptions { requeue: false })
            .await
            .unwrap();
    });
    for id in &others {
        wait_for(
            "the dead letter recorded in every copy",
            &c,
            ELECTION,
            || (ready_and_dlx(&c, *id, "orders") == Some((0, 1))).then_some(()),
        );
    }

    c.node_mut(leader).kill();
    let next = wait_for("a new leader", &c, ELECTION, || {
        let seen: Vec<u64> = others
            .iter()
            .map(|id| leader_of(&c, &names, *id, "orders"))
            .collect::<Option<_>>()?;
        (seen.iter().all(|l| *l == seen[0]) && seen[0] != leader).then_some(seen[0])
    });
    let redelivered = rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(next).amqp).await;
        consume(&ch, "orders", 1, Duration::from_secs(4)).await
    });
    assert!(
        redelivered.is_empty(),
        "a dead-lettered message was delivered again: {redelivered:?}"
    );
    assert_eq!(ready_and_dlx(&c, next, "orders"), Some((0, 1)));

    // Bound now: the new leader publishes the dead letter it holds.
    rt.block_on(declare(c.node(next).amqp, "dlq", quorum()));
    let death = rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(next).amqp).await;
        ch.queue_bind(
            "dlq".into(),
            "dlx".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = ch
                .basic_get(
                    "dlq".into(),
                    lapin::options::BasicGetOptions { no_ack: true },
                )
                .await
                .unwrap();
            if let Some(m) = got {
                let body = String::from_utf8(m.delivery.data.clone()).unwrap();
                let headers = m.delivery.properties.headers().clone().unwrap_or_default();
                let reason = match headers.inner().get("x-first-death-reason") {
                    Some(AMQPValue::LongString(s)) => s.to_string(),
                    other => format!("{other:?}"),
                };
                break Some((body, reason));
            }
            if tokio::time::Instant::now() >= until {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    assert_eq!(
        death,
        Some((bodies(0..1)[0].clone(), "rejected".to_owned())),
        "the dead letter did not arrive"
    );
    for id in &others {
        wait_for("the original gone from its queue", &c, ELECTION, || {
            (ready_and_dlx(&c, *id, "orders") == Some((0, 0))).then_some(())
        });
    }
    c.node_mut(leader).start();
    wait_for("the restarted node's copy without it", &c, ELECTION, || {
        (ready_and_dlx(&c, leader, "orders") == Some((0, 0))).then_some(())
    });
}
