//! Policies and operator policies at run time (issue 12), through a real client: a policy
//! set, changed or cleared while queues exist applies to them at once, as in RabbitMQ
//! 3.10 (`rabbit_amqqueue_process:process_args_policy`: limits and TTLs take the smaller
//! of policy and argument, dead-lettering and overflow the argument's; the operator
//! policy's limits win when smaller; an exchange's alternate-exchange argument wins over
//! a policy's).

use crate::common;

use std::time::Duration;

use lapin::options::{BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use serde_json::json;
use warren::broker::access_db::PolicyDef;

fn policy(
    name: &str,
    pattern: &str,
    apply_to: &str,
    priority: i64,
    def: serde_json::Value,
) -> PolicyDef {
    PolicyDef {
        vhost: "/".into(),
        name: name.into(),
        pattern: pattern.into(),
        apply_to: apply_to.into(),
        definition: def.as_object().expect("object").clone(),
        priority,
    }
}

fn set(b: &common::TestBroker, p: PolicyDef, operator: bool) {
    b.ctx
        .broker
        .update_access(move |db| db.set_policy(p, operator))
        .unwrap();
}

fn clear(b: &common::TestBroker, name: &str, operator: bool) {
    b.ctx
        .broker
        .update_access(|db| Ok(db.clear_policy("/", name, operator)))
        .unwrap();
}

async fn declare(ch: &Channel, name: &str, args: FieldTable) {
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();
}

async fn publish(ch: &Channel, exchange: &str, key: &str, n: usize) {
    for i in 0..n {
        ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}

async fn depth(ch: &Channel, name: &str) -> u32 {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    ch.queue_declare(name.into(), passive, FieldTable::default())
        .await
        .unwrap()
        .message_count()
}

async fn channel(b: &common::TestBroker) -> (lapin::Connection, Channel) {
    let conn = common::lapin_connect(b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    (conn, ch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_limit_policy_applies_at_once_and_follows_changes() {
    let b = common::start().await;
    let (_c, ch) = channel(&b).await;
    declare(&ch, "pol.q", FieldTable::default()).await;
    declare(&ch, "other", FieldTable::default()).await;
    set(
        &b,
        policy("limit", "^pol\\.", "queues", 0, json!({"max-length": 2})),
        false,
    );
    publish(&ch, "", "pol.q", 5).await;
    publish(&ch, "", "other", 5).await;
    assert_eq!(
        (depth(&ch, "pol.q").await, depth(&ch, "other").await),
        (2, 5)
    );
    // Raised at run time: room for more.
    set(
        &b,
        policy("limit", "^pol\\.", "queues", 0, json!({"max-length": 4})),
        false,
    );
    publish(&ch, "", "pol.q", 5).await;
    assert_eq!(depth(&ch, "pol.q").await, 4);
    // Lowered: the queue is cut down at once (drop-head).
    set(
        &b,
        policy("limit", "^pol\\.", "queues", 0, json!({"max-length": 1})),
        false,
    );
    assert_eq!(depth(&ch, "pol.q").await, 1);
    // Cleared: no limit.
    clear(&b, "limit", false);
    publish(&ch, "", "pol.q", 3).await;
    assert_eq!(depth(&ch, "pol.q").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_argument_and_operator_policy_resolve_as_rabbitmq() {
    let b = common::start().await;
    let (_c, ch) = channel(&b).await;
    set(
        &b,
        policy("low", ".*", "all", 1, json!({"max-length": 1})),
        false,
    );
    set(
        &b,
        policy("high", "^q", "queues", 5, json!({"max-length": 6})),
        false,
    );
    // An exchanges-only policy never applies to a queue.
    set(
        &b,
        policy("xonly", "^q", "exchanges", 9, json!({"max-length": 0})),
        false,
    );
    declare(&ch, "q1", FieldTable::default()).await;
    publish(&ch, "", "q1", 8).await;
    assert_eq!(
        depth(&ch, "q1").await,
        6,
        "the highest-priority queue policy"
    );
    // The queue's own argument is smaller: it wins.
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongInt(3));
    declare(&ch, "q2", args).await;
    publish(&ch, "", "q2", 8).await;
    assert_eq!(depth(&ch, "q2").await, 3);
    // An operator policy's smaller limit wins over both.
    set(
        &b,
        policy("cap", ".*", "queues", 0, json!({"max-length": 2})),
        true,
    );
    assert_eq!((depth(&ch, "q1").await, depth(&ch, "q2").await), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_and_dead_lettering_by_policy_reach_an_existing_backlog() {
    let b = common::start().await;
    let (_c, ch) = channel(&b).await;
    declare(&ch, "dead", FieldTable::default()).await;
    ch.queue_bind(
        "dead".into(),
        "amq.direct".into(),
        "expired".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare(&ch, "ttl.q", FieldTable::default()).await;
    publish(&ch, "", "ttl.q", 3).await;
    set(
        &b,
        policy(
            "ttl",
            "^ttl\\.",
            "queues",
            0,
            json!({"message-ttl": 50, "dead-letter-exchange": "amq.direct",
                   "dead-letter-routing-key": "expired"}),
        ),
        false,
    );
    let mut moved = false;
    for _ in 0..100 {
        if depth(&ch, "ttl.q").await == 0 && depth(&ch, "dead").await == 3 {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(moved, "the backlog expired into the dead-letter queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alternate_exchange_by_policy_takes_unroutable_messages() {
    let b = common::start().await;
    let (_c, ch) = channel(&b).await;
    declare(&ch, "lost", FieldTable::default()).await;
    ch.queue_bind(
        "lost".into(),
        "amq.fanout".into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch, "amq.direct", "nowhere", 1).await;
    assert_eq!(depth(&ch, "lost").await, 0);
    set(
        &b,
        policy(
            "ae",
            "^amq\\.direct$",
            "exchanges",
            0,
            json!({"alternate-exchange": "amq.fanout"}),
        ),
        false,
    );
    publish(&ch, "amq.direct", "nowhere", 2).await;
    assert_eq!(depth(&ch, "lost").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_policies_are_refused_and_change_nothing() {
    let b = common::start().await;
    for (def, apply_to) in [
        (json!({"max-length": "ten"}), "queues"),
        (json!({"max-priority": 5}), "queues"),
        (json!({"max-length": 1}), "bogus"),
    ] {
        let p = policy("bad", ".*", apply_to, 0, def);
        assert!(b
            .ctx
            .broker
            .update_access(move |db| db.set_policy(p, false))
            .is_err());
    }
    // Operator policies take limits only.
    let p = policy(
        "op",
        ".*",
        "queues",
        0,
        json!({"dead-letter-exchange": "x"}),
    );
    assert!(b
        .ctx
        .broker
        .update_access(move |db| db.set_policy(p, true))
        .is_err());
    assert!(b
        .ctx
        .broker
        .read_access(|db| db.policies.is_empty() && db.operator_policies.is_empty()));
}
