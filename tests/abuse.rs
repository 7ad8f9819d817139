//! Abusive peers: each case checks the broker's answer and that it still serves a
//! well-behaved client afterwards.

use crate::common;

use std::time::Duration;

use common::{frame, lapin_connect, method, shortstr, start, RawClient};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use tokio::io::AsyncWriteExt;

async fn still_serves(b: &common::TestBroker) {
    let mut c = RawClient::handshake(b.addr).await;
    c.open_channel(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_never_acks_holds_only_its_prefetch() {
    let b = start().await;
    let conn = lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "hoard".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for i in 0..100u32 {
        ch.basic_publish(
            "".into(),
            "hoard".into(),
            BasicPublishOptions::default(),
            &i.to_be_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    let cch = conn.create_channel().await.unwrap();
    cch.basic_qos(10, BasicQosOptions::default()).await.unwrap();
    let mut c = cch
        .basic_consume(
            "hoard".into(),
            "greedy".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut held = 0;
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(500), c.next()).await {
        d.unwrap();
        held += 1;
    }
    assert_eq!(
        held, 10,
        "prefetch 10 bounds what a non-acking consumer holds"
    );
    let q = ch
        .queue_declare(
            "hoard".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 90, "the rest stay in the queue");
    still_serves(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_never_reads_is_stopped_by_backpressure() {
    let b = start().await;
    let mut c = RawClient::handshake(b.addr).await;
    c.open_channel(1).await;
    let mut declare = vec![0, 0];
    declare.extend(shortstr("sponge"));
    declare.push(0);
    declare.extend_from_slice(&[0, 0, 0, 0]);
    c.send(&frame(1, 1, &method(50, 10, &declare))).await;
    c.expect_method((50, 11)).await;
    c.send(&frame(1, 1, &method(85, 10, &[0]))).await;
    c.expect_method((85, 11)).await;
    // Publish with confirms and never read them: the confirms pile up in the broker's
    // write buffer until it stops reading this socket, so our writes must stall.
    let mut publish = vec![0, 0];
    publish.extend(shortstr(""));
    publish.extend(shortstr("sponge"));
    publish.push(0);
    let mut one = frame(1, 1, &method(60, 40, &publish));
    let mut header = vec![0, 60, 0, 0];
    header.extend_from_slice(&16u64.to_be_bytes());
    header.extend_from_slice(&0u16.to_be_bytes());
    one.extend(frame(2, 1, &header));
    one.extend(frame(3, 1, &[7u8; 16]));
    let batch: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * 10_000)
        .collect();
    let mut stream = c.stream;
    let writer = tokio::spawn(async move {
        let mut written = 0usize;
        for _ in 0..2_000 {
            if stream.write_all(&batch).await.is_err() {
                break;
            }
            written += batch.len();
        }
        written
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !writer.is_finished(),
        "2 GB of publishes were accepted without the broker pushing back"
    );
    writer.abort();
    still_serves(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_connections_at_once() {
    let b = start().await;
    let mut tasks = Vec::new();
    for _ in 0..5_000 {
        let addr = b.addr;
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
            s.write_all(b"AMQP\x00\x00\x09\x01").await.ok()?;
            Some(s)
        }));
    }
    let mut open = Vec::new();
    for t in tasks {
        if let Some(s) = t.await.unwrap() {
            open.push(s);
        }
    }
    // Served or refused (descriptor limits), never a crash: the broker still answers.
    assert!(!open.is_empty());
    drop(open);
    tokio::time::sleep(Duration::from_millis(200)).await;
    still_serves(&b).await;
}
