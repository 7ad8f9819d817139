//! Stream queues on the log, driven by lapin: every confirmed message readable at the same
//! offset after a kill -9 (the broker a child process under `--fsync always`, killed while
//! a publisher and a reader are busy), and retention that drops whole segments from the
//! front, by size and by age, keeping disk use within one segment of the limit. The
//! protocol answers (declare, consume, offsets, errors) are in
//! `tests/python/features/test_stream.py`, recorded against RabbitMQ 3.10.8.

use crate::common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Consumer};

fn stream_args(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString("stream".into()),
    );
    for (k, v) in extra {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

async fn declare_stream(ch: &Channel, name: &str, extra: &[(&str, AMQPValue)]) {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        stream_args(extra),
    )
    .await
    .unwrap();
}

/// A stream consumer from `offset` with a prefetch of 1,000.
async fn read_from(ch: &Channel, queue: &str, offset: AMQPValue) -> Consumer {
    ch.basic_qos(1000, BasicQosOptions::default())
        .await
        .unwrap();
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-stream-offset"), offset);
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions::default(),
        args,
    )
    .await
    .unwrap()
}

/// The next delivery as (offset header, body), acked; None after `wait` of silence.
async fn next(c: &mut Consumer, wait: Duration) -> Option<(i64, Vec<u8>)> {
    let d = tokio::time::timeout(wait, c.next()).await.ok()??.ok()?;
    let offset = d
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-stream-offset").cloned());
    let Some(AMQPValue::LongLongInt(offset)) = offset else {
        panic!("a stream delivery carries x-stream-offset as a long: {offset:?}");
    };
    d.ack(BasicAckOptions::default()).await.unwrap();
    Some((offset, d.data))
}

/// Bytes of the segment files under `dir` (the data directory).
fn segment_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in common::walk(dir) {
        if entry.extension().is_some_and(|e| e == "seg") {
            total += std::fs::metadata(&entry).map_or(0, |m| m.len());
        }
    }
    total
}

#[test]
fn confirmed_messages_keep_their_offsets_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = common::free_port();
    let mut broker = common::ChildBroker::spawn(&data, port, &[]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let confirmed = Arc::new(AtomicU64::new(0));
    let read = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let conn = common::lapin_connect_port(port).await;
        let ch = conn.create_channel().await.unwrap();
        // Small segments, so the crash falls among several of them.
        declare_stream(
            &ch,
            "events",
            &[(
                "x-stream-max-segment-size-bytes",
                AMQPValue::LongLongInt(64 * 1024),
            )],
        )
        .await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        // A reader busy from the start while the publisher runs.
        let rch = conn.create_channel().await.unwrap();
        let mut reader = read_from(&rch, "events", AMQPValue::LongString("first".into())).await;
        let read2 = read.clone();
        tokio::spawn(async move {
            while let Some((offset, _)) = next(&mut reader, Duration::from_secs(30)).await {
                read2.store(offset as u64 + 1, Ordering::Relaxed);
            }
        });
        // Transient messages: a stream keeps them all the same. Body = its index. The
        // publisher runs until the broker is killed under it.
        let confirmed2 = confirmed.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                let body = format!("{i:08}-{}", "x".repeat(100));
                let Ok(pending) = ch
                    .basic_publish(
                        "".into(),
                        "events".into(),
                        BasicPublishOptions::default(),
                        body.as_bytes(),
                        BasicProperties::default(),
                    )
                    .await
                else {
                    return;
                };
                match pending.await {
                    Ok(c) if c.is_ack() => confirmed2.store(i + 1, Ordering::Relaxed),
                    _ => return,
                }
            }
        });
        while confirmed.load(Ordering::Relaxed) < 3_000 || read.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // kill -9 while both are busy.
        broker.kill();
    });
    let confirmed = confirmed.load(Ordering::Relaxed);

    let _broker = common::ChildBroker::spawn(&data, port, &[]);
    rt.block_on(async {
        let conn = common::lapin_connect_port(port).await;
        let ch = conn.create_channel().await.unwrap();
        let mut c = read_from(&ch, "events", AMQPValue::LongString("first".into())).await;
        // Everything confirmed is there at its offset; what was written but not yet
        // confirmed at the kill may be there too, after it.
        let mut stored = 0u64;
        while let Some((offset, body)) = next(&mut c, Duration::from_millis(800)).await {
            assert_eq!(offset as u64, stored, "offsets are contiguous and kept");
            assert_eq!(&body[..8], format!("{stored:08}").as_bytes());
            stored += 1;
        }
        assert!(
            stored >= confirmed,
            "{confirmed} confirmed, only {stored} readable after the restart"
        );
        // Appends go on after the last offset.
        let pch = conn.create_channel().await.unwrap();
        pch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        common::publish_confirmed(&pch, "", "events", b"after", false).await;
        let (offset, body) = next(&mut c, Duration::from_secs(5))
            .await
            .expect("the new message arrives");
        assert_eq!((offset as u64, &body[..]), (stored, &b"after"[..]));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_size_keeps_disk_within_one_segment_of_the_limit() {
    let b = common::start().await;
    let conn = common::lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    const SEGMENT: i64 = 64 * 1024;
    const LIMIT: i64 = 512 * 1024;
    declare_stream(
        &ch,
        "capped",
        &[
            (
                "x-stream-max-segment-size-bytes",
                AMQPValue::LongLongInt(SEGMENT),
            ),
            ("x-max-length-bytes", AMQPValue::LongLongInt(LIMIT)),
        ],
    )
    .await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let body = vec![7u8; 1000];
    let mut most = 0;
    for i in 0..4_000 {
        common::publish_confirmed(&ch, "", "capped", &body, false).await;
        if i % 100 == 0 {
            most = most.max(segment_bytes(b.dir.path()));
        }
    }
    let on_disk = segment_bytes(b.dir.path());
    most = most.max(on_disk);
    // Limit plus the head segment and a recycled spare, never more.
    assert!(
        most <= (LIMIT + 2 * SEGMENT) as u64,
        "{most} bytes on disk for a {LIMIT}-byte stream"
    );
    // The front went: `first` is no longer offset 0, and reading goes on to the end.
    let rch = conn.create_channel().await.unwrap();
    let mut c = read_from(&rch, "capped", AMQPValue::LongString("first".into())).await;
    let (first, _) = next(&mut c, Duration::from_secs(5)).await.unwrap();
    assert!(first > 0, "retention dropped the oldest segments");
    let kept = (LIMIT as u64) / 1000;
    assert!(
        4_000 - (first as u64) <= kept + 100,
        "about {kept} messages fit, {} kept",
        4_000 - first
    );
    let mut last = first;
    while let Some((offset, _)) = next(&mut c, Duration::from_millis(500)).await {
        assert_eq!(offset, last + 1, "offsets are contiguous");
        last = offset;
    }
    assert_eq!(last, 3_999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_age_drops_old_segments_without_new_appends() {
    let b = common::start().await;
    let conn = common::lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    declare_stream(
        &ch,
        "recent",
        &[
            (
                "x-stream-max-segment-size-bytes",
                AMQPValue::LongLongInt(64 * 1024),
            ),
            ("x-max-age", AMQPValue::LongString("1s".into())),
        ],
    )
    .await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let body = vec![1u8; 1000];
    for _ in 0..500 {
        common::publish_confirmed(&ch, "", "recent", &body, false).await;
    }
    let before = segment_bytes(b.dir.path());
    // Past the age and a few upkeep rounds: only the head segment is left.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let after = segment_bytes(b.dir.path());
    assert!(
        after < before,
        "old segments went ({before} -> {after} bytes)"
    );
    let rch = conn.create_channel().await.unwrap();
    let mut c = read_from(&rch, "recent", AMQPValue::LongString("first".into())).await;
    let (first, _) = next(&mut c, Duration::from_secs(5)).await.unwrap();
    assert!(first > 0, "the oldest messages are gone");
}
