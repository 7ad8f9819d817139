//! Durability across kill -9: the broker runs as a child process under `--fsync always`;
//! persistent messages confirmed before SIGKILL are all delivered after restart, durable
//! definitions come back, transient queues and messages do not.

use crate::common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::lapin_code;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};

fn spawn_broker(dir: &std::path::Path, port: u16) -> Child {
    spawn_broker_with(dir, port, &["--segment-size", "65536"])
}

fn spawn_broker_with(dir: &std::path::Path, port: u16, extra: &[&str]) -> Child {
    common::spawn_warren(dir, port, extra, Stdio::null())
}

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_persistent_messages_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut child = spawn_broker(dir.path(), port);
    let conn = common::lapin_connect_port(port).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "dq".into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_declare(
        "dx".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        "dq".into(),
        "dx".into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        "tq".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let total = 2000u32;
    let mut confirms = Vec::new();
    for i in 0..total {
        confirms.push(
            ch.basic_publish(
                "dx".into(),
                "k".into(),
                BasicPublishOptions::default(),
                format!("persistent {i:05}").as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap(),
        );
    }
    for c in confirms {
        assert!(c.await.unwrap().is_ack());
    }
    // Transient messages and a transient queue: gone after the restart.
    for i in 0..10 {
        common::publish_confirmed(&ch, "", "dq", format!("transient {i}").as_bytes(), false).await;
    }
    common::publish_confirmed(&ch, "", "tq", b"t", false).await;
    // Take the first 105 with basic.get: ack 100, hold 5 unacked.
    let getter = conn.create_channel().await.unwrap();
    for i in 0..105u32 {
        let m = getter
            .basic_get("dq".into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
            .expect("a message");
        assert_eq!(m.delivery.data, format!("persistent {i:05}").as_bytes());
        if i < 100 {
            m.delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
    }
    // Let the ack batch reach the file (not the disk: kill -9 keeps the page cache).
    tokio::time::sleep(Duration::from_millis(600)).await;

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(conn);

    let mut child = spawn_broker(dir.path(), port);
    let conn = common::lapin_connect_port(port).await;
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare("dq".into(), passive(), FieldTable::default())
        .await
        .unwrap();
    assert_eq!(
        q.message_count(),
        total - 100,
        "confirmed persistent messages, minus the acked ones"
    );
    let mut consumer = ch
        .basic_consume(
            "dq".into(),
            "after".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 100..total {
        let d = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(d.data, format!("persistent {i:05}").as_bytes());
        assert_eq!(
            d.redelivered,
            i < 105,
            "message {i}: delivered before the crash means redelivered"
        );
    }
    // The durable exchange and binding came back.
    ch.basic_publish(
        "dx".into(),
        "k".into(),
        BasicPublishOptions::default(),
        b"again",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.data, b"again");
    let e = ch
        .queue_declare("tq".into(), passive(), FieldTable::default())
        .await
        .unwrap_err();
    assert_eq!(
        lapin_code(&e),
        Some(404),
        "transient queue gone after restart"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Issue 8: a durable queue's first message is larger than its first (64 KiB) segment.
/// Both it and the small message after it are confirmed; both must survive the broker's
/// death, by SIGKILL and by SIGTERM, and be in the queue's directory while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_first_message_survives_kill_and_term() {
    for signal in [libc::SIGKILL, libc::SIGTERM] {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let mut child = spawn_broker_with(dir.path(), port, &[]);
        let conn = common::lapin_connect_port(port).await;
        let ch = conn.create_channel().await.unwrap();
        ch.queue_declare(
            "big".into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let large: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let small = vec![b's'; 100];
        for body in [&large, &small] {
            let c = common::publish_confirmed(&ch, "", "big", body, true).await;
            assert!(c.is_ack());
        }
        let queues = dir.path().join("queues");
        let qdir = std::fs::read_dir(&queues).unwrap().next().unwrap().unwrap();
        let segs = std::fs::read_dir(qdir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".seg")
            })
            .count();
        assert!(segs >= 1, "the queue's segment is on disk while it runs");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        child.wait().unwrap();
        drop(conn);

        let mut child = spawn_broker_with(dir.path(), port, &[]);
        let conn = common::lapin_connect_port(port).await;
        let ch = conn.create_channel().await.unwrap();
        for want in [&large, &small] {
            let m = ch
                .basic_get("big".into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("message lost after signal {signal}"));
            assert_eq!(&m.delivery.data, want);
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
