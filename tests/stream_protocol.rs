//! The RabbitMQ Stream protocol (`--listen-stream`) driven by `rabbitmq-stream-client`,
//! the RabbitMQ team's Rust client: create and delete streams, publish with confirms,
//! consume from an offset, server-side offsets, named-publisher deduplication, and the
//! same stream read and written over AMQP 0-9-1 (lapin) too. Stored offsets and publisher
//! sequences survive a kill -9 (the broker a child process).

use crate::common;

use std::time::Duration;

use futures_lite::StreamExt as _;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use rabbitmq_stream_client::types::{ByteCapacity, Message, OffsetSpecification};
use rabbitmq_stream_client::{Consumer, Environment};

async fn env(port: u16) -> Environment {
    Environment::builder()
        .host("127.0.0.1")
        .port(port)
        .build()
        .await
        .expect("stream connection")
}

/// The next delivery as (offset, body), within `wait`.
async fn next(c: &mut Consumer, wait: Duration) -> Option<(u64, Vec<u8>)> {
    let d = tokio::time::timeout(wait, c.next()).await.ok()??.ok()?;
    Some((d.offset(), d.message().data().unwrap_or_default().to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_confirm_and_consume_from_offsets() {
    let b = common::start().await;
    let env = env(b.stream_addr.unwrap().port()).await;
    env.stream_creator()
        .max_length(ByteCapacity::MB(100))
        .create("events")
        .await
        .unwrap();
    assert!(
        env.stream_creator().create("events").await.is_err(),
        "a second create is refused (stream already exists)"
    );
    let producer = env.producer().build("events").await.unwrap();
    for i in 0..100u32 {
        let c = producer
            .send_with_confirm(Message::builder().body(format!("m{i}")).build())
            .await
            .unwrap();
        assert!(c.confirmed());
    }
    let mut first = env
        .consumer()
        .offset(OffsetSpecification::First)
        .build("events")
        .await
        .unwrap();
    for i in 0..100u64 {
        let (offset, body) = next(&mut first, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("message {i}"));
        assert_eq!((offset, body), (i, format!("m{i}").into_bytes()));
    }
    let mut from = env
        .consumer()
        .offset(OffsetSpecification::Offset(60))
        .build("events")
        .await
        .unwrap();
    assert_eq!(next(&mut from, Duration::from_secs(5)).await.unwrap().0, 60);
    let mut tail = env
        .consumer()
        .offset(OffsetSpecification::Next)
        .build("events")
        .await
        .unwrap();
    producer
        .send_with_confirm(Message::builder().body("later").build())
        .await
        .unwrap();
    assert_eq!(
        next(&mut tail, Duration::from_secs(5)).await.unwrap(),
        (100, b"later".to_vec())
    );
    // The first consumer gets it live, too.
    assert_eq!(
        next(&mut first, Duration::from_secs(5)).await.unwrap().0,
        100
    );
    env.delete_stream("events").await.unwrap();
    assert!(env.delete_stream("events").await.is_err(), "already gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stream_over_both_protocols() {
    let b = common::start().await;
    let env = env(b.stream_addr.unwrap().port()).await;
    env.stream_creator().create("both").await.unwrap();
    // AMQP 0-9-1 publishes into the stream the stream protocol created.
    let conn = common::lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from("origin"),
        AMQPValue::LongString("amqp".into()),
    );
    ch.basic_publish(
        "".into(),
        "both".into(),
        BasicPublishOptions::default(),
        b"from amqp",
        lapin::BasicProperties::default()
            .with_headers(headers)
            .with_content_type("text/plain".into()),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    // The stream protocol publishes too.
    let producer = env.producer().build("both").await.unwrap();
    producer
        .send_with_confirm(
            Message::builder()
                .body("from stream")
                .application_properties()
                .insert("origin", "stream")
                .message_builder()
                .build(),
        )
        .await
        .unwrap();
    // A stream consumer reads both, the AMQP message converted as RabbitMQ converts it.
    let mut c = env
        .consumer()
        .offset(OffsetSpecification::First)
        .build("both")
        .await
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), c.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.offset(), 0);
    assert_eq!(d.message().data(), Some(&b"from amqp"[..]));
    let app = format!("{:?}", d.message().application_properties());
    assert!(app.contains("origin") && app.contains("amqp"), "{app}");
    assert_eq!(
        next(&mut c, Duration::from_secs(5)).await.unwrap(),
        (1, b"from stream".to_vec())
    );
    // An AMQP 0-9-1 consumer reads both, with x-stream-offset.
    let rch = conn.create_channel().await.unwrap();
    rch.basic_qos(10, BasicQosOptions::default()).await.unwrap();
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-stream-offset"),
        AMQPValue::LongString("first".into()),
    );
    let mut amqp = rch
        .basic_consume(
            "both".into(),
            "".into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let d = tokio::time::timeout(Duration::from_secs(5), amqp.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let h = d.properties.headers().clone().unwrap_or_default();
        got.push((
            d.data.clone(),
            h.inner().get("x-stream-offset").cloned(),
            h.inner().get("origin").cloned(),
        ));
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(got[0].0, b"from amqp");
    assert_eq!(got[0].1, Some(AMQPValue::LongLongInt(0)));
    assert_eq!(got[1].0, b"from stream");
    assert_eq!(got[1].1, Some(AMQPValue::LongLongInt(1)));
    assert_eq!(got[1].2, Some(AMQPValue::LongString("stream".into())));
}

fn spawn(data: &std::path::Path, port: u16, stream_port: u16) -> common::ChildBroker {
    let listen = format!("127.0.0.1:{stream_port}");
    let b = common::ChildBroker::spawn(data, port, &["--listen-stream", &listen]);
    common::wait_port(stream_port);
    b
}

#[test]
fn stored_offsets_and_publisher_sequences_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (port, stream_port) = (common::free_port(), common::free_port());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let broker = spawn(&data, port, stream_port);
    rt.block_on(async {
        let env = env(stream_port).await;
        env.stream_creator().create("tracked").await.unwrap();
        let mut producer = env
            .producer()
            .name("orders")
            .build("tracked")
            .await
            .unwrap();
        for id in 1..=10u64 {
            producer
                .send_with_confirm(Message::builder().body("x").publishing_id(id).build())
                .await
                .unwrap();
        }
        // Ids already stored are confirmed but not stored again (deduplication).
        for id in 8..=10u64 {
            producer
                .send_with_confirm(Message::builder().body("dup").publishing_id(id).build())
                .await
                .unwrap();
        }
        producer.close().await.unwrap();
        let consumer = env
            .consumer()
            .name("reader")
            .offset(OffsetSpecification::First)
            .build("tracked")
            .await
            .unwrap();
        consumer.store_offset(6).await.unwrap();
        // Answered after the StoreOffset on the same connection; no waiting for upkeep's
        // snapshot (every 200 ms): the kill comes at once, the journal must have both.
        assert_eq!(consumer.query_offset().await.unwrap(), 6);
    });
    drop(broker); // kill -9
    let _broker = spawn(&data, port, stream_port);
    rt.block_on(async {
        let env = env(stream_port).await;
        let consumer = env
            .consumer()
            .name("reader")
            .offset(OffsetSpecification::First)
            .build("tracked")
            .await
            .unwrap();
        assert_eq!(
            consumer.query_offset().await.unwrap(),
            6,
            "stored offset kept"
        );
        let mut producer = env
            .producer()
            .name("orders")
            .build("tracked")
            .await
            .unwrap();
        // The client asks for the publisher's sequence when it is built with a name.
        producer
            .send_with_confirm(Message::builder().body("x").publishing_id(10).build())
            .await
            .unwrap();
        let mut all = env
            .consumer()
            .offset(OffsetSpecification::First)
            .build("tracked")
            .await
            .unwrap();
        let mut n = 0;
        while let Some((_, body)) = next(&mut all, Duration::from_millis(800)).await {
            assert_eq!(body, b"x", "no duplicate was stored");
            n += 1;
        }
        assert_eq!(
            n, 10,
            "ten messages, the duplicates confirmed but not stored"
        );
    });
}
