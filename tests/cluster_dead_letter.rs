//! Dead-lettering out of a quorum queue in a cluster (issue 16): a message rejected on a
//! node leaves its queue (the group's settle) only once its dead-letter copy is durable,
//! committed by the dead-letter queue's own group when that is a quorum queue, as
//! RabbitMQ's `x-dead-letter-strategy: at-least-once` keeps it. While the dead-letter
//! queue cannot commit (its one member is down), the original stays in its queue on every
//! node; once it can, the copy arrives and the original goes. A delayed message routed into
//! a quorum queue leaves the delayed exchange's log the same way: once committed.

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
