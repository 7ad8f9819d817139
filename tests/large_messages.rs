//! Large message bodies end to end with lapin: bodies of 16 KiB and more go to the socket
//! as slices of the segment they are stored in, not copied into the connection's write
//! buffer (src/connection/output.rs). Every byte must arrive in order, split into frames
//! of the negotiated frame_max, interleaved with small deliveries and other frames, for
//! consumers with and without acks and for basic.get.

use crate::common;

use std::time::Duration;

use common::start;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

/// Sizes around the copy/queue threshold and the frame size, and large ones; each
/// followed by a small message so small frames land between the queued bodies.
const SIZES: [usize; 8] = [
    16 * 1024 - 1,
    16 * 1024,
    16 * 1024 + 1,
    131_064,
    131_065,
    300_000,
    (1 << 20) + 3,
    4 << 20,
];

/// Message `i`: its size from SIZES (odd `i`: 8 bytes), its bytes a pattern seeded by `i`.
fn body(i: usize) -> Vec<u8> {
    let len = if i % 2 == 1 { 8 } else { SIZES[i / 2] };
    (0..len).map(|k| ((k * 31 + i * 7) % 253) as u8).collect()
}

const COUNT: usize = SIZES.len() * 2;

async fn publish_all(conn: &Connection, queue: &str, persistent: bool) {
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let props = BasicProperties::default().with_delivery_mode(if persistent { 2 } else { 1 });
    for i in 0..COUNT {
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            &body(i),
            props.clone(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}

async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap()
}

async fn consume_and_check(conn: &Connection, queue: &str, no_ack: bool) {
    let ch = conn.create_channel().await.unwrap();
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..COUNT {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("a delivery within 20 s")
            .expect("consumer open")
            .expect("delivery ok");
        assert!(
            d.data == body(i),
            "message {i} ({} bytes) differs",
            body(i).len()
        );
        if !no_ack {
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_arrive_whole_and_in_order() {
    // A framing mistake desynchronises the client, which then waits forever: fail instead.
    tokio::time::timeout(Duration::from_secs(120), round_trips())
        .await
        .expect("all large messages round-tripped within 120 s");
}

async fn round_trips() {
    let b = start().await;
    // lapin's default frame_max (128 KiB) and a small one: many frames per body.
    for (url, tag) in [
        (b.url(), "default"),
        (format!("{}?frame_max=4096", b.url()), "4k"),
    ] {
        let conn = connect(&url).await;
        for (persistent, no_ack) in [(true, false), (false, true), (true, true)] {
            let queue = format!("large-{tag}-{persistent}-{no_ack}");
            publish_all(&conn, &queue, persistent).await;
            consume_and_check(&conn, &queue, no_ack).await;
        }
        // basic.get
        let queue = format!("large-get-{tag}");
        publish_all(&conn, &queue, true).await;
        let ch = conn.create_channel().await.unwrap();
        for i in 0..COUNT {
            let m = ch
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
                .expect("a message");
            assert!(m.delivery.data == body(i), "get {i} differs");
        }
        conn.close(200, "done".into()).await.unwrap();
    }
}
