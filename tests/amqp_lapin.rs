//! The broker driven by lapin, a real AMQP client written by others: routing, queues,
//! consumers, acks, prefetch, confirms and the channel errors RabbitMQ gives.

use crate::common;

use std::time::Duration;

use common::{lapin_code, lapin_connect, start};
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Consumer, ExchangeKind};

async fn declare(ch: &Channel, name: &str) -> String {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap()
    .name()
    .to_string()
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .unwrap();
}

async fn consume(ch: &Channel, queue: &str, tag: &str, no_ack: bool) -> Consumer {
    ch.basic_consume(
        queue.into(),
        tag.into(),
        BasicConsumeOptions {
            no_ack,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap()
}

async fn next(c: &mut Consumer) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), c.next())
        .await
        .expect("delivery within 5 s")
        .expect("consumer open")
        .expect("delivery ok")
}

/// Drains a queue with basic.get, returning the bodies.
async fn get_all(ch: &Channel, queue: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        out.push(m.delivery.data.clone());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_consume_through_the_default_exchange() {
    let b = start().await;
    let conn = lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "hello").await;
    publish(&ch, "", "hello", b"Hello, RabbitMQ!").await;
    let mut c = consume(&ch, "hello", "", false).await;
    let d = next(&mut c).await;
    assert_eq!(d.data, b"Hello, RabbitMQ!");
    assert!(!d.redelivered);
    assert!(c.tag().as_str().starts_with("amq.ctag-"));
    d.ack(BasicAckOptions::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_fanout_topic_and_headers_routing() {
    let b = start().await;
    let conn = lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    for q in ["d1", "d2", "f1", "f2", "t1", "t2", "h_all", "h_any"] {
        declare(&ch, q).await;
    }
    let bind = |q: &'static str, ex: &'static str, key: &'static str, args: FieldTable| {
        let ch = ch.clone();
        async move {
            ch.queue_bind(
                q.into(),
                ex.into(),
                key.into(),
                QueueBindOptions::default(),
                args,
            )
            .await
            .unwrap()
        }
    };
    bind("d1", "amq.direct", "red", FieldTable::default()).await;
    bind("d2", "amq.direct", "blue", FieldTable::default()).await;
    bind("f1", "amq.fanout", "", FieldTable::default()).await;
    bind("f2", "amq.fanout", "ignored", FieldTable::default()).await;
    bind("t1", "amq.topic", "stock.*.nyse", FieldTable::default()).await;
    bind("t2", "amq.topic", "stock.#", FieldTable::default()).await;
    let mut all = FieldTable::default();
    all.insert("x-match".into(), AMQPValue::LongString("all".into()));
    all.insert("format".into(), AMQPValue::LongString("pdf".into()));
    all.insert("type".into(), AMQPValue::LongString("report".into()));
    bind("h_all", "amq.headers", "", all).await;
    let mut any = FieldTable::default();
    any.insert("x-match".into(), AMQPValue::LongString("any".into()));
    any.insert("format".into(), AMQPValue::LongString("pdf".into()));
    any.insert("type".into(), AMQPValue::LongString("report".into()));
    bind("h_any", "amq.match", "", any.clone()).await;
    bind("h_any", "amq.headers", "", any).await;

    publish(&ch, "amq.direct", "red", b"r").await;
    publish(&ch, "amq.direct", "green", b"g").await;
    publish(&ch, "amq.fanout", "whatever", b"f").await;
    publish(&ch, "amq.topic", "stock.ibm.nyse", b"t-ibm").await;
    publish(&ch, "amq.topic", "stock", b"t-bare").await;
    publish(&ch, "amq.topic", "bond.x.nyse", b"t-bond").await;
    let mut h = FieldTable::default();
    h.insert("format".into(), AMQPValue::LongString("pdf".into()));
    ch.basic_publish(
        "amq.headers".into(),
        "".into(),
        BasicPublishOptions::default(),
        b"pdf-only",
        BasicProperties::default().with_headers(h.clone()),
    )
    .await
    .unwrap();
    h.insert("type".into(), AMQPValue::LongString("report".into()));
    ch.basic_publish(
        "amq.headers".into(),
        "".into(),
        BasicPublishOptions::default(),
        b"pdf-report",
        BasicProperties::default().with_headers(h),
    )
    .await
    .unwrap();

    assert_eq!(get_all(&ch, "d1").await, vec![b"r".to_vec()]);
    assert!(get_all(&ch, "d2").await.is_empty());
    assert_eq!(get_all(&ch, "f1").await, vec![b"f".to_vec()]);
    assert_eq!(get_all(&ch, "f2").await, vec![b"f".to_vec()]);
    assert_eq!(get_all(&ch, "t1").await, vec![b"t-ibm".to_vec()]);
    assert_eq!(
        get_all(&ch, "t2").await,
        vec![b"t-ibm".to_vec(), b"t-bare".to_vec()]
    );
    assert_eq!(get_all(&ch, "h_all").await, vec![b"pdf-report".to_vec()]);
    // Bound twice through two exchanges, delivered once per message.
    assert_eq!(
        get_all(&ch, "h_any").await,
        vec![b"pdf-only".to_vec(), b"pdf-report".to_vec()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_to_exchange_bindings_and_exchange_errors() {
    let b = start().await;
    let conn = lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        "src".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_declare(
        "dst".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_bind(
        "dst".into(),
        "src".into(),
        "a.#".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    // A cycle must not loop forever.
    ch.exchange_bind(
        "src".into(),
        "dst".into(),
        "".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare(&ch, "e2e").await;
    ch.queue_bind(
        "e2e".into(),
        "dst".into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch, "src", "a.b", b"via").await;
    publish(&ch, "src", "b.a", b"not").await;
    assert_eq!(get_all(&ch, "e2e").await, vec![b"via".to_vec()]);
    ch.exchange_unbind(
        "dst".into(),
        "src".into(),
        "a.#".into(),
        ExchangeUnbindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch, "src", "a.b", b"cut").await;
    assert!(get_all(&ch, "e2e").await.is_empty());

    // Redeclare with another type: 406.
    let e = ch
        .exchange_declare(
            "src".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(lapin_code(&e), Some(406));
    // Reserved names: 403.
    let ch = conn.create_channel().await.unwrap();
    let e = ch
        .exchange_declare(
            "amq.mine".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(lapin_code(&e), Some(403));
    // Passive declare of a missing exchange: 404.
    let ch = conn.create_channel().await.unwrap();
    let e = ch
        .exchange_declare(
            "missing".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(lapin_code(&e), Some(404));
    // Delete if-unused while it has bindings: 406.
    let ch = conn.create_channel().await.unwrap();
    let e = ch
        .exchange_delete(
            "dst".into(),
            ExchangeDeleteOptions {
                if_unused: true,
                nowait: false,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(lapin_code(&e), Some(406));
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_delete("dst".into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    // Publishing to a missing exchange closes the channel (404: see amqp_protocol.rs).
    publish(&ch, "dst", "", b"x").await;
    for _ in 0..100 {
        if !ch.status().connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !ch.status().connected(),
        "channel closed after publishing to a missing exchange"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_declare_purge_delete_and_their_errors() {
    let b = start().await;
    let conn = lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    let named = declare(&ch, "").await;
    assert!(named.starts_with("amq.gen-"), "{named}");
    declare(&ch, "work").await;
    for i in 0..5 {
        publish(&ch, "", "work", format!("m{i}").as_bytes()).await;
    }
    let q = ch
        .queue_declare(
            "work".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 5);
    assert_eq!(
        ch.queue_purge("work".into(), QueuePurgeOptions::default())
            .await
            .unwrap(),
        5
    );
    publish(&ch, "", "work", b"left").await;
    // delete if-empty on a non-empty queue: 406.
    let e = ch
        .queue_delete(
            "work".into(),
            QueueDeleteOptions {
                if_empty: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(lapin_code(&e), Some(406));
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(
        ch.queue_delete("work".into(), QueueDeleteOptions::default())
            .await
            .unwrap(),
        1
    );

    // Redeclare with different flags: 406.
    declare(&ch, "plain").await;
    let e = ch
        .queue_declare(
            "plain".into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(lapin_code(&e), Some(406));
    // Passive on a missing queue: 404.
    let ch = conn.create_channel().await.unwrap();
    let e = ch
        .queue_declare(
            "nope".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(lapin_code(&e), Some(404));
    // Reserved name: 403.
    let ch = conn.create_channel().await.unwrap();
    let e = ch
        .queue_declare(
            "amq.q".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(lapin_code(&e), Some(403));
    // Binding to a missing exchange: 404.
    let ch = conn.create_channel().await.unwrap();
    let e = ch
        .queue_bind(
            "plain".into(),
            "nowhere".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(lapin_code(&e), Some(404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_and_auto_delete_queues() {
    let b = start().await;
    let owner = lapin_connect(&b).await;
    let other = lapin_connect(&b).await;
    let ch = owner.create_channel().await.unwrap();
    ch.queue_declare(
        "mine".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let och = other.create_channel().await.unwrap();
    let e = och
        .basic_consume(
            "mine".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(lapin_code(&e), Some(405));

    ch.queue_declare(
        "auto".into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let c = consume(&ch, "auto", "ad", false).await;
    ch.basic_cancel(c.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    let och = other.create_channel().await.unwrap();
    let e = och
        .queue_declare(
            "auto".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        lapin_code(&e),
        Some(404),
        "auto-delete queue gone with its last consumer"
    );

    owner.close(200, "bye".into()).await.unwrap();
    let och = other.create_channel().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = och
        .queue_declare(
            "mine".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        lapin_code(&e),
        Some(404),
        "exclusive queue gone with its connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_prefetch_and_requeue_order() {
    let b = start().await;
    let conn = lapin_connect(&b).await;
    let ch1 = conn.create_channel().await.unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    declare(&ch1, "rr").await;
    ch1.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    ch2.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut a = consume(&ch1, "rr", "a", false).await;
    let mut c2 = consume(&ch2, "rr", "b", false).await;
    for i in 0..4 {
        publish(&ch1, "", "rr", format!("{i}").as_bytes()).await;
    }
    // Prefetch 1: each consumer holds one message until it acks.
    let da = next(&mut a).await;
    let db = next(&mut c2).await;
    let mut got = vec![da.data.clone(), db.data.clone()];
    got.sort();
    assert_eq!(got, vec![b"0".to_vec(), b"1".to_vec()]);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), a.next())
            .await
            .is_err(),
        "prefetch 1 holds back a second delivery"
    );
    da.ack(BasicAckOptions::default()).await.unwrap();
    db.ack(BasicAckOptions::default()).await.unwrap();
    let d3 = next(&mut a).await;
    let d4 = next(&mut c2).await;
    d3.ack(BasicAckOptions::default()).await.unwrap();
    d4.ack(BasicAckOptions::default()).await.unwrap();

    // Requeue: nack three with requeue; they come back redelivered, in order.
    let ch3 = conn.create_channel().await.unwrap();
    declare(&ch3, "rq").await;
    for i in 0..3 {
        publish(&ch3, "", "rq", format!("r{i}").as_bytes()).await;
    }
    let mut c = consume(&ch3, "rq", "rq", false).await;
    let mut last = None;
    for i in 0..3 {
        let d = next(&mut c).await;
        assert_eq!(d.data, format!("r{i}").as_bytes());
        assert!(!d.redelivered);
        last = Some(d);
    }
    last.unwrap()
        .nack(BasicNackOptions {
            multiple: true,
            requeue: true,
        })
        .await
        .unwrap();
    for i in 0..3 {
        let d = next(&mut c).await;
        assert_eq!(d.data, format!("r{i}").as_bytes());
        assert!(d.redelivered);
        if i == 0 {
            d.reject(BasicRejectOptions { requeue: false })
                .await
                .unwrap();
        } else {
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
    }
    let q = ch3
        .queue_declare(
            "rq".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_return_when_the_channel_closes() {
    let b = start().await;
    let conn = lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "back").await;
    publish(&ch, "", "back", b"once").await;
    let mut c = consume(&ch, "back", "x", false).await;
    let d = next(&mut c).await;
    assert!(!d.redelivered);
    ch.close(200, "done".into()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let m = ch
        .basic_get("back".into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("message returned to the queue");
    assert!(m.delivery.redelivered);
    assert_eq!(m.message_count, 0);
    m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    assert!(ch
        .basic_get("back".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_errors_and_cancel_on_queue_delete() {
    let b = start().await;
    let conn = lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "solo").await;
    let _c = ch
        .basic_consume(
            "solo".into(),
            "only".into(),
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    let e = ch2
        .basic_consume(
            "solo".into(),
            "two".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(lapin_code(&e), Some(403));
    // Missing queue: 404.
    let ch3 = conn.create_channel().await.unwrap();
    let e = ch3
        .basic_consume(
            "ghost".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(lapin_code(&e), Some(404));

    // basic.cancel from the server when the queue is deleted.
    let conn2 = lapin_connect(&b).await;
    let chx = conn2.create_channel().await.unwrap();
    declare(&chx, "doomed").await;
    let mut c = consume(&chx, "doomed", "watcher", false).await;
    let chy = conn2.create_channel().await.unwrap();
    chy.queue_delete("doomed".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), c.next())
        .await
        .expect("cancel arrives");
    assert!(end.is_none(), "consumer stream ends on server cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_returns_and_publisher_confirms() {
    let b = start().await;
    let conn = lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            "".into(),
            "nobody-home".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"bounce",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let returned = confirm.take_message().expect("basic.return before the ack");
    assert_eq!(returned.delivery.data, b"bounce");
    assert_eq!(returned.reply_code, 312);

    ch.queue_declare(
        "durable-q".into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut pending = Vec::new();
    for i in 0..200u32 {
        pending.push(
            ch.basic_publish(
                "".into(),
                "durable-q".into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap(),
        );
    }
    for p in pending {
        assert!(p.await.unwrap().is_ack());
    }
    let q = ch
        .queue_declare(
            "durable-q".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_qos_limits_the_whole_channel() {
    let b = start().await;
    let conn = lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "g1").await;
    declare(&ch, "g2").await;
    for _ in 0..5 {
        publish(&ch, "", "g1", b"1").await;
        publish(&ch, "", "g2", b"2").await;
    }
    ch.basic_qos(3, BasicQosOptions { global: true })
        .await
        .unwrap();
    let mut c1 = consume(&ch, "g1", "c1", false).await;
    let mut c2 = consume(&ch, "g2", "c2", false).await;
    let mut held = 0;
    loop {
        tokio::select! {
            Some(Ok(_)) = c1.next() => held += 1,
            Some(Ok(_)) = c2.next() => held += 1,
            _ = tokio::time::sleep(Duration::from_millis(300)) => break,
        }
    }
    assert_eq!(held, 3, "global prefetch 3 shared by both consumers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_and_unknown_vhost_are_refused() {
    let b = start().await;
    let url = format!("amqp://guest:wrong@{}/%2f", b.addr);
    let e = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .unwrap_err();
    assert_eq!(lapin_code(&e), Some(403), "{e:?}");
    let url = format!("amqp://guest:guest@{}/elsewhere", b.addr);
    let e = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .unwrap_err();
    assert_eq!(lapin_code(&e), Some(530), "{e:?}");
}
