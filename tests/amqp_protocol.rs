//! Protocol violations over a raw socket: each gets the reply RabbitMQ gives, and the
//! broker keeps serving well-behaved clients afterwards.

use crate::common;

use std::time::Duration;

use common::{frame, method, shortstr, start, start_with, RawClient, TestBroker};

async fn still_serves(b: &TestBroker) {
    let mut c = RawClient::handshake(b.addr).await;
    c.open_channel(1).await;
}

fn queue_declare_args(name: &str, table: &[u8]) -> Vec<u8> {
    let mut args = vec![0, 0];
    args.extend(shortstr(name));
    args.push(0);
    args.extend_from_slice(&(table.len() as u32).to_be_bytes());
    args.extend_from_slice(table);
    method(50, 10, &args)
}

fn publish_args(exchange: &str, key: &str) -> Vec<u8> {
    let mut args = vec![0, 0];
    args.extend(shortstr(exchange));
    args.extend(shortstr(key));
    args.push(0);
    method(60, 40, &args)
}

fn content_header(body_size: u64) -> Vec<u8> {
    let mut h = vec![0, 60, 0, 0];
    h.extend_from_slice(&body_size.to_be_bytes());
    h.extend_from_slice(&0u16.to_be_bytes());
    h
}

#[tokio::test]
async fn wrong_protocol_header_gets_ours_back() {
    let b = start().await;
    let mut c = RawClient::connect(b.addr).await;
    c.send(b"AMQP\x01\x01\x00\x0a").await;
    let mut got = [0u8; 8];
    use tokio::io::AsyncReadExt;
    c.stream.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"AMQP\x00\x00\x09\x01");
    assert!(c.closed().await);
    still_serves(&b).await;
}

#[tokio::test]
async fn frame_errors_are_501() {
    let b = start().await;
    // Larger than the negotiated frame_max (131072).
    let mut c = RawClient::handshake(b.addr).await;
    c.send(&frame(1, 1, &vec![0u8; 200_000])).await;
    assert_eq!(c.expect_close().await, 501);
    // Bad frame-end octet.
    let mut c = RawClient::handshake(b.addr).await;
    let mut f = frame(1, 1, &method(20, 10, &shortstr("")));
    *f.last_mut().unwrap() = 0xAB;
    c.send(&f).await;
    assert_eq!(c.expect_close().await, 501);
    // Unknown frame type.
    let mut c = RawClient::handshake(b.addr).await;
    c.send(&frame(9, 0, &[])).await;
    assert_eq!(c.expect_close().await, 501);
    still_serves(&b).await;
}

#[tokio::test]
async fn channel_and_sequencing_errors() {
    let b = start().await;
    // Method on a channel that is not open: 504.
    let mut c = RawClient::handshake(b.addr).await;
    c.send(&frame(1, 5, &queue_declare_args("q", &[]))).await;
    assert_eq!(c.expect_close().await, 504);
    // A channel number above channel_max opens (RabbitMQ limits the count, not numbers).
    let mut c = RawClient::handshake(b.addr).await;
    c.send(&frame(1, 4000, &method(20, 10, &shortstr(""))))
        .await;
    c.expect_method((20, 11)).await;
    // Content header without a publish: 505.
    let mut c = RawClient::handshake(b.addr).await;
    c.open_channel(1).await;
    c.send(&frame(2, 1, &content_header(3))).await;
    assert_eq!(c.expect_close().await, 505);
    // Body frame without a publish: 505.
    let mut c = RawClient::handshake(b.addr).await;
    c.open_channel(1).await;
    c.send(&frame(3, 1, b"abc")).await;
    assert_eq!(c.expect_close().await, 505);
    // Unknown class/method: the socket is closed without a frame, as RabbitMQ does.
    let mut c = RawClient::handshake(b.addr).await;
    c.open_channel(1).await;
    c.send(&frame(1, 1, &method(77, 7, &[]))).await;
    assert!(c.recv().await.is_none(), "no frame, then EOF");
    still_serves(&b).await;
}

#[tokio::test]
async fn field_table_errors() {
    let b = start().await;
    // RabbitMQ's reader cannot parse these tables and drops the connection without a
    // frame; so does Warren (tests/fidelity.rs holds the recorded answers).
    let nested = {
        let mut inner: Vec<u8> = Vec::new();
        for _ in 0..10_000 {
            let mut outer = vec![1, b'a', b'F'];
            outer.extend_from_slice(&(inner.len() as u32).to_be_bytes());
            outer.extend_from_slice(&inner);
            inner = outer;
        }
        inner
    };
    for table in [
        // An unknown type tag.
        vec![1, b'k', b'Z', 0],
        // A string whose length runs past the end of its table.
        vec![1, b'k', b'S', 0, 0, 0, 50, b'x'],
        // Tables nested 10,000 deep: refused at a fixed depth, without recursion.
        nested,
    ] {
        let mut c = RawClient::handshake(b.addr).await;
        c.open_channel(1).await;
        c.send(&frame(1, 1, &queue_declare_args("q", &table))).await;
        assert!(c.recv().await.is_none(), "no frame, then EOF");
    }
    still_serves(&b).await;
}

#[tokio::test]
async fn content_size_errors() {
    let b = start_with(|c| c.max_message_size = 1024).await;
    // Body longer than the header declared: never completes (as in RabbitMQ); the next
    // method is 505 naming basic.publish.
    let mut c = RawClient::handshake(b.addr).await;
    c.open_channel(1).await;
    c.send(&frame(1, 1, &publish_args("", "q"))).await;
    c.send(&frame(2, 1, &content_header(2))).await;
    c.send(&frame(3, 1, b"abc")).await;
    c.send(&frame(1, 1, &method(60, 10, &[0, 0, 0, 0, 0, 1, 0])))
        .await;
    assert_eq!(c.expect_close().await, 505);
    // A body_size of 2^62: refused as too large (406) without allocating it.
    let mut c = RawClient::handshake(b.addr).await;
    c.open_channel(1).await;
    c.send(&frame(1, 1, &publish_args("", "q"))).await;
    c.send(&frame(2, 1, &content_header(1 << 62))).await;
    assert_eq!(c.expect_close().await, 406);
    // Larger than --max-message-size: 406 on the channel; the connection stays up.
    let mut c = RawClient::handshake(b.addr).await;
    c.open_channel(1).await;
    c.send(&frame(1, 1, &publish_args("", "q"))).await;
    c.send(&frame(2, 1, &content_header(4096))).await;
    let close = c.expect_method((20, 40)).await;
    assert_eq!(close.close_code(), Some(406));
    c.send(&frame(1, 1, &method(20, 41, &[]))).await;
    c.open_channel(2).await;
    still_serves(&b).await;
}

#[tokio::test]
async fn publish_to_a_missing_exchange_is_404_on_the_channel() {
    let b = start().await;
    let mut c = RawClient::handshake(b.addr).await;
    c.open_channel(1).await;
    c.send(&frame(1, 1, &publish_args("no-such-exchange", "k")))
        .await;
    c.send(&frame(2, 1, &content_header(1))).await;
    c.send(&frame(3, 1, b"x")).await;
    let close = c.expect_method((20, 40)).await;
    assert_eq!(close.close_code(), Some(404));
    // The connection survives a channel error.
    c.send(&frame(1, 1, &method(20, 41, &[]))).await;
    c.open_channel(2).await;
}

#[tokio::test]
async fn duplicate_consumer_tag_is_530() {
    let b = start().await;
    let mut c = RawClient::handshake(b.addr).await;
    c.open_channel(1).await;
    c.send(&frame(1, 1, &queue_declare_args("dup", &[]))).await;
    c.expect_method((50, 11)).await;
    let mut consume = vec![0, 0];
    consume.extend(shortstr("dup"));
    consume.extend(shortstr("tag"));
    consume.push(0);
    consume.extend_from_slice(&[0, 0, 0, 0]);
    c.send(&frame(1, 1, &method(60, 20, &consume))).await;
    c.expect_method((60, 21)).await;
    c.send(&frame(1, 1, &method(60, 20, &consume))).await;
    assert_eq!(c.expect_close().await, 530);
    still_serves(&b).await;
}

#[tokio::test]
async fn silent_peers_are_dropped() {
    let b = start_with(|c| c.handshake_timeout = Duration::from_secs(1)).await;
    // Never finishes the handshake.
    let mut c = RawClient::connect(b.addr).await;
    c.send(b"AMQP\x00\x00\x09\x01").await;
    c.expect_method((10, 10)).await;
    let started = std::time::Instant::now();
    assert!(c.closed().await);
    assert!(started.elapsed() < Duration::from_secs(4));

    // Negotiates a 1 s heartbeat, then goes quiet: dropped after two missed intervals.
    let mut c = RawClient::handshake_full(b.addr, &[], 1).await;
    let mut heartbeats = 0;
    loop {
        match c.recv().await {
            Some(f) if f.kind == 8 => heartbeats += 1,
            Some(_) => {}
            None => break,
        }
    }
    assert!(heartbeats >= 1, "the server sends heartbeats");
    still_serves(&b).await;
}
