//! Transactions (tx.select / tx.commit / tx.rollback) as RabbitMQ 3.10 runs them: publishes
//! and settlements held until commit, dropped (publishes) or undone (settlements) by
//! rollback; commit-ok only once the batch is durable; RabbitMQ's 406s and 504.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{frame, lapin_code, lapin_connect, method, shortstr, start, start_with, RawClient};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, ExchangeKind};

async fn declare(ch: &Channel, name: &str, durable: bool) {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
}

/// Ready messages in a queue (queue.declare passive).
async fn ready(ch: &Channel, name: &str) -> u32 {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap()
    .message_count()
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8], persistent: bool) {
    let props = if persistent {
        BasicProperties::default().with_delivery_mode(2)
    } else {
        BasicProperties::default()
    };
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        props,
    )
    .await
    .unwrap();
}

/// Drains a queue with basic.get (no-ack), returning the bodies.
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

/// basic.get with ack: (delivery tag, redelivered).
async fn get_unacked(ch: &Channel, queue: &str) -> (u64, bool) {
    let m = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("a message");
    (m.delivery.delivery_tag, m.delivery.redelivered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_appear_at_commit_and_vanish_at_rollback() {
    let b = start().await;
    let conn = lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    let other = conn.create_channel().await.unwrap();
    declare(&ch, "a", false).await;
    declare(&ch, "b", false).await;
    ch.queue_bind(
        "b".into(),
        "amq.fanout".into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.tx_select().await.unwrap();
    ch.tx_select().await.unwrap(); // twice is fine
    for i in 0..3 {
        publish(&ch, "", "a", format!("a{i}").as_bytes(), false).await;
    }
    publish(&ch, "amq.fanout", "", b"f", false).await;
    assert_eq!(ready(&other, "a").await, 0, "nothing before commit");
    assert_eq!(ready(&other, "b").await, 0);
    ch.tx_commit().await.unwrap();
    assert_eq!(
        get_all(&other, "a").await,
        vec![b"a0".to_vec(), b"a1".to_vec(), b"a2".to_vec()]
    );
    assert_eq!(get_all(&other, "b").await, vec![b"f".to_vec()]);

    // Rollback drops the publishes; the channel stays transactional.
    publish(&ch, "", "a", b"dropped", false).await;
    publish(&ch, "", "a", b"dropped too", false).await;
    ch.tx_rollback().await.unwrap();
    ch.tx_commit().await.unwrap();
    assert_eq!(ready(&other, "a").await, 0, "rolled back");
    publish(&ch, "", "a", b"kept", false).await;
    ch.tx_commit().await.unwrap();
    assert_eq!(get_all(&other, "a").await, vec![b"kept".to_vec()]);

    // A large message (several body frames, some held as received) comes out whole.
    let big: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
    publish(&ch, "", "a", &big, false).await;
    publish(&ch, "", "a", b"small after big", false).await;
    ch.tx_commit().await.unwrap();
    assert_eq!(
        get_all(&other, "a").await,
        vec![big, b"small after big".to_vec()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlements_apply_at_commit_and_are_undone_by_rollback() {
    let b = start().await;
    let conn = lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    let other = conn.create_channel().await.unwrap();
    declare(&other, "q", false).await;
    for i in 0..4 {
        publish(&other, "", "q", format!("m{i}").as_bytes(), false).await;
    }
    ch.tx_select().await.unwrap();
    let mut tags = Vec::new();
    for _ in 0..4 {
        tags.push(get_unacked(&ch, "q").await.0);
    }
    ch.basic_ack(tags[0], BasicAckOptions::default())
        .await
        .unwrap();
    ch.basic_ack(tags[2], BasicAckOptions { multiple: true })
        .await
        .unwrap();
    ch.basic_reject(tags[3], BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    // Held: a recover requeues nothing that was settled in the transaction.
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .unwrap();
    assert_eq!(ready(&other, "q").await, 0, "nothing settled before commit");
    ch.tx_commit().await.unwrap();
    assert_eq!(ready(&other, "q").await, 1, "the rejected one is requeued");
    let (tag, redelivered) = get_unacked(&ch, "q").await;
    assert!(redelivered);

    // Rollback: the ack is undone, the delivery is unacked again (recover requeues it).
    ch.basic_ack(tag, BasicAckOptions::default()).await.unwrap();
    ch.tx_rollback().await.unwrap();
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .unwrap();
    assert_eq!(ready(&other, "q").await, 1, "rolled-back ack");

    // Closing a channel with acks in its open transaction requeues those messages.
    let (tag, _) = get_unacked(&ch, "q").await;
    ch.basic_nack(
        tag,
        BasicNackOptions {
            multiple: false,
            requeue: false,
        },
    )
    .await
    .unwrap();
    ch.close(200, "bye".into()).await.unwrap();
    assert_eq!(ready(&other, "q").await, 1, "uncommitted nack: requeued");

    // A committed nack without requeue drops the message.
    let ch = conn.create_channel().await.unwrap();
    ch.tx_select().await.unwrap();
    let (tag, _) = get_unacked(&ch, "q").await;
    ch.basic_nack(
        tag,
        BasicNackOptions {
            multiple: false,
            requeue: false,
        },
    )
    .await
    .unwrap();
    ch.tx_commit().await.unwrap();
    ch.close(200, "bye".into()).await.unwrap();
    assert_eq!(ready(&other, "q").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapin_sees_rabbitmqs_406s() {
    let b = start().await;
    let conn = lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    let e = ch.tx_commit().await.unwrap_err();
    assert_eq!(lapin_code(&e), Some(406), "commit without select");
    let ch = conn.create_channel().await.unwrap();
    let e = ch.tx_rollback().await.unwrap_err();
    assert_eq!(lapin_code(&e), Some(406), "rollback without select");
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let e = ch.tx_select().await.unwrap_err();
    assert_eq!(lapin_code(&e), Some(406), "tx.select in confirm mode");
    let ch = conn.create_channel().await.unwrap();
    ch.tx_select().await.unwrap();
    let e = ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap_err();
    assert_eq!(lapin_code(&e), Some(406), "confirm.select in tx mode");
    // The connection is fine.
    let ch = conn.create_channel().await.unwrap();
    ch.tx_select().await.unwrap();
    ch.tx_commit().await.unwrap();
}

// ----- raw frames: exact replies ---------------------------------------------------------

fn publish_frames(
    channel: u16,
    exchange: &str,
    key: &str,
    mandatory: bool,
    persistent: bool,
    body: &[u8],
) -> Vec<u8> {
    let mut args = vec![0, 0];
    args.extend(shortstr(exchange));
    args.extend(shortstr(key));
    args.push(mandatory as u8);
    let mut out = frame(1, channel, &method(60, 40, &args));
    let mut h = vec![0, 60, 0, 0];
    h.extend_from_slice(&(body.len() as u64).to_be_bytes());
    if persistent {
        h.extend_from_slice(&0x1000u16.to_be_bytes());
        h.push(2);
    } else {
        h.extend_from_slice(&0u16.to_be_bytes());
    }
    out.extend(frame(2, channel, &h));
    out.extend(frame(3, channel, body));
    out
}

fn tx(channel: u16, id: u16) -> Vec<u8> {
    frame(1, channel, &method(90, id, &[]))
}

fn queue_declare(channel: u16, name: &str, durable: bool) -> Vec<u8> {
    let mut args = vec![0, 0];
    args.extend(shortstr(name));
    args.push(if durable { 2 } else { 0 });
    args.extend_from_slice(&0u32.to_be_bytes());
    frame(1, channel, &method(50, 10, &args))
}

/// The reply text and culprit of a channel.close or connection.close.
fn close_text(f: &common::RawFrame) -> (String, (u16, u16)) {
    let p = &f.payload;
    let n = p[6] as usize;
    let text = String::from_utf8(p[7..7 + n].to_vec()).unwrap();
    let at = 7 + n;
    let culprit = (
        u16::from_be_bytes([p[at], p[at + 1]]),
        u16::from_be_bytes([p[at + 2], p[at + 3]]),
    );
    (text, culprit)
}

/// The next method frame (skipping heartbeats and content).
async fn next_method(c: &mut RawClient) -> common::RawFrame {
    loop {
        let f = c.recv().await.expect("a frame");
        if f.kind == 1 {
            return f;
        }
    }
}

async fn expect_channel_close(c: &mut RawClient, channel: u16, text: &str, culprit: (u16, u16)) {
    let f = next_method(c).await;
    assert_eq!((f.channel, f.ids()), (channel, (20, 40)), "channel.close");
    assert_eq!(close_text(&f), (text.to_string(), culprit));
    c.send(&frame(1, channel, &method(20, 41, &[]))).await;
}

#[tokio::test]
async fn errors_carry_rabbitmqs_texts() {
    let b = start().await;
    let mut c = RawClient::handshake(b.addr).await;
    c.open_channel(1).await;
    c.send(&tx(1, 20)).await;
    expect_channel_close(
        &mut c,
        1,
        "PRECONDITION_FAILED - channel is not transactional",
        (90, 20),
    )
    .await;
    c.open_channel(1).await;
    c.send(&tx(1, 30)).await;
    expect_channel_close(
        &mut c,
        1,
        "PRECONDITION_FAILED - channel is not transactional",
        (90, 30),
    )
    .await;
    c.open_channel(1).await;
    c.send(&frame(1, 1, &method(85, 10, &[0]))).await;
    c.expect_method((85, 11)).await;
    c.send(&tx(1, 10)).await;
    expect_channel_close(
        &mut c,
        1,
        "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
        (90, 10),
    )
    .await;
    c.open_channel(1).await;
    c.send(&tx(1, 10)).await;
    c.expect_method((90, 11)).await;
    c.send(&frame(1, 1, &method(85, 10, &[0]))).await;
    expect_channel_close(
        &mut c,
        1,
        "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
        (85, 10),
    )
    .await;

    // A tag acked in the open transaction cannot be acked again; nor can an unknown one.
    c.open_channel(1).await;
    c.send(&queue_declare(1, "q", false)).await;
    c.expect_method((50, 11)).await;
    c.send(&publish_frames(1, "", "q", false, false, b"m"))
        .await;
    let mut get = vec![0, 0];
    get.extend(shortstr("q"));
    get.push(0);
    c.send(&frame(1, 1, &method(60, 70, &get))).await;
    c.expect_method((60, 71)).await;
    c.send(&tx(1, 10)).await;
    c.expect_method((90, 11)).await;
    let ack = |tag: u64| {
        let mut a = tag.to_be_bytes().to_vec();
        a.push(0);
        frame(1, 1, &method(60, 80, &a))
    };
    c.send(&ack(1)).await;
    c.send(&ack(1)).await;
    expect_channel_close(
        &mut c,
        1,
        "PRECONDITION_FAILED - unknown delivery tag 1",
        (60, 80),
    )
    .await;
    c.open_channel(1).await;
    c.send(&tx(1, 10)).await;
    c.expect_method((90, 11)).await;
    c.send(&ack(9)).await;
    expect_channel_close(
        &mut c,
        1,
        "PRECONDITION_FAILED - unknown delivery tag 9",
        (60, 80),
    )
    .await;
}

#[tokio::test]
async fn publishes_are_checked_at_once_and_returned_at_commit() {
    let b = start().await;
    let mut c = RawClient::handshake(b.addr).await;
    c.open_channel(1).await;
    c.send(&tx(1, 10)).await;
    c.expect_method((90, 11)).await;
    // A missing exchange is 404 when the publish arrives, not at commit.
    c.send(&publish_frames(1, "no-such-x", "k", false, false, b"m"))
        .await;
    expect_channel_close(
        &mut c,
        1,
        "NOT_FOUND - no exchange 'no-such-x' in vhost '/'",
        (60, 40),
    )
    .await;
    // An unroutable mandatory publish is returned at commit, before commit-ok.
    c.open_channel(1).await;
    c.send(&tx(1, 10)).await;
    c.expect_method((90, 11)).await;
    c.send(&publish_frames(
        1,
        "amq.direct",
        "nowhere",
        true,
        false,
        b"back",
    ))
    .await;
    c.send(&tx(1, 20)).await;
    let f = next_method(&mut c).await;
    assert_eq!(f.ids(), (60, 50), "basic.return first");
    let header = c.recv().await.unwrap();
    assert_eq!(header.kind, 2);
    let body = c.recv().await.unwrap();
    assert_eq!((body.kind, body.payload.as_slice()), (3, &b"back"[..]));
    c.expect_method((90, 21)).await;
}

#[tokio::test]
async fn a_method_while_commit_waits_for_its_sync_is_504() {
    // On a real file system, so the commit's fdatasync takes far longer than handling the
    // frames that follow it in the same write.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let b = start_with(|c| {
        c.fsync = warren_storage::FsyncPolicy::Always;
        c.data_dir = dir.path().to_path_buf();
    })
    .await;
    let mut c = RawClient::handshake(b.addr).await;
    c.open_channel(1).await;
    c.send(&queue_declare(1, "dq", true)).await;
    c.expect_method((50, 11)).await;
    c.send(&tx(1, 10)).await;
    c.expect_method((90, 11)).await;
    let mut burst = publish_frames(1, "", "dq", false, true, b"p");
    burst.extend(tx(1, 20));
    burst.extend(publish_frames(1, "", "dq", false, true, b"too soon"));
    c.send(&burst).await;
    let f = next_method(&mut c).await;
    assert_eq!((f.channel, f.ids()), (0, (10, 50)), "connection.close");
    assert_eq!(
        close_text(&f),
        (
            "CHANNEL_ERROR - unexpected command while processing 'tx.commit'".to_string(),
            (60, 40)
        )
    );

    // channel.close is still taken: the commit is not answered, the channel closes.
    let mut c = RawClient::handshake(b.addr).await;
    c.open_channel(1).await;
    c.send(&tx(1, 10)).await;
    c.expect_method((90, 11)).await;
    let mut burst = publish_frames(1, "", "dq", false, true, b"p");
    burst.extend(tx(1, 20));
    burst.extend(frame(1, 1, &method(20, 40, &[0, 200, 0, 0, 0, 0, 0])));
    c.send(&burst).await;
    let f = next_method(&mut c).await;
    assert_eq!((f.channel, f.ids()), (1, (20, 41)), "channel.close-ok");
    c.open_channel(1).await;
}

#[tokio::test]
async fn a_transaction_is_bounded() {
    let b = start_with(|c| {
        c.max_message_size = 1024;
        c.tx_max_bytes = 4096;
    })
    .await;
    let mut c = RawClient::handshake(b.addr).await;
    c.open_channel(1).await;
    c.send(&queue_declare(1, "q", false)).await;
    c.expect_method((50, 11)).await;
    c.send(&tx(1, 10)).await;
    c.expect_method((90, 11)).await;
    let mut burst = Vec::new();
    for _ in 0..10 {
        burst.extend(publish_frames(1, "", "q", false, false, &[7u8; 1000]));
    }
    burst.extend(tx(1, 20));
    c.send(&burst).await;
    // The fourth publish would pass 4096 bytes: refused, the transaction goes with the
    // channel.
    expect_channel_close(
        &mut c,
        1,
        "PRECONDITION_FAILED - transaction too large: its uncommitted messages would take \
         more than 4096 bytes",
        (60, 40),
    )
    .await;
    c.open_channel(1).await;
    c.send(&tx(1, 10)).await;
    c.expect_method((90, 11)).await;
    let mut burst = Vec::new();
    for _ in 0..3 {
        burst.extend(publish_frames(1, "", "q", false, false, &[7u8; 1000]));
    }
    burst.extend(tx(1, 20));
    c.send(&burst).await;
    c.expect_method((90, 21)).await;
    c.send(&queue_declare(1, "q", false)).await;
    let ok = c.expect_method((50, 11)).await;
    let n = ok.payload[4] as usize;
    let count = u32::from_be_bytes(ok.payload[5 + n..9 + n].try_into().unwrap());
    assert_eq!(count, 3, "only the second transaction's messages");
}

// ----- durability -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_persistent_messages_survive_sigkill_uncommitted_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut child = common::spawn_warren(dir.path(), port, &[], Stdio::null());
    let conn = common::lapin_connect_port(port).await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "dq", true).await;
    ch.exchange_declare(
        "dx".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare(&ch, "dq2", true).await;
    for q in ["dq", "dq2"] {
        ch.queue_bind(
            q.into(),
            "dx".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    ch.tx_select().await.unwrap();
    for round in 0..5 {
        for i in 0..20 {
            publish(&ch, "dx", "", format!("{round}.{i}").as_bytes(), true).await;
        }
        ch.tx_commit().await.unwrap();
    }
    // Published, not committed: lost with the broker.
    for i in 0..7 {
        publish(&ch, "dx", "", format!("open {i}").as_bytes(), true).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(conn);

    let mut child = common::spawn_warren(dir.path(), port, &[], Stdio::null());
    let conn = common::lapin_connect_port(port).await;
    let ch = conn.create_channel().await.unwrap();
    for q in ["dq", "dq2"] {
        let bodies = get_all(&ch, q).await;
        let expect: Vec<Vec<u8>> = (0..5)
            .flat_map(|r| (0..20).map(move |i| format!("{r}.{i}").into_bytes()))
            .collect();
        assert_eq!(bodies, expect, "{q}: every committed message, nothing else");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// With every fdatasync failing (libfiu), a commit of persistent messages is never
/// answered commit-ok: RabbitMQ's 406 "partial tx completion" instead. Needs `fiu-run`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_sync_fails_is_406() {
    if Command::new("fiu-run").arg("-h").output().is_err() {
        eprintln!("amqp_tx: fiu-run not installed (apt-get install fiu-utils); not tested");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut child = Command::new("fiu-run")
        .args([
            "-x",
            "-c",
            "enable name=posix/io/sync/fdatasync",
            env!("CARGO_BIN_EXE_warren"),
        ])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--fsync",
            "always",
            "--http",
            "127.0.0.1:0",
            "--prometheus",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let conn = common::lapin_connect_port(port).await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "durable", true).await;
    declare(&ch, "transient", false).await;
    ch.tx_select().await.unwrap();
    publish(&ch, "", "durable", b"never durable", true).await;
    let e = tokio::time::timeout(Duration::from_secs(5), ch.tx_commit())
        .await
        .expect("an answer")
        .unwrap_err();
    assert_eq!(lapin_code(&e), Some(406), "partial tx completion");
    // Nothing to sync: commit-ok at once.
    let ch = conn.create_channel().await.unwrap();
    ch.tx_select().await.unwrap();
    publish(&ch, "", "transient", b"t", false).await;
    ch.tx_commit().await.unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
}
