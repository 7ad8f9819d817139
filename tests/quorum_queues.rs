//! Quorum queues on one node, with a real client (lapin): the `x-delivery-count` header
//! RabbitMQ 3.10 adds (on every basic.get, on a basic.deliver once the message came back),
//! `x-delivery-limit` ending in a dead-letter queue with reason `delivery_limit`, the
//! management API's `type`, a channel-wide prefetch refused (540), and across a kill -9:
//! transient messages kept (a classic queue beside it loses its own) and a delivery that
//! was out counted as a return; at-least-once dead letters that route nowhere kept until
//! they do, sent again only to the queues that refused them, and counted towards the
//! length limit. The protocol answers themselves (declare rules, errors,
//! counts, flags, the header's value) are compared with RabbitMQ's recording in
//! `tests/fidelity` (`quorum/*`).

use crate::common;

use std::io::{Read, Write};
use std::process::Stdio;

use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicNackOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, ExchangeKind};

/// The ready messages of `queue`, as a passive declaration answers.
async fn ready(ch: &lapin::Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions {
        passive: true,
        ..durable()
    };
    let ok = ch.queue_declare(queue.into(), passive, FieldTable::default());
    ok.await.unwrap().message_count()
}

fn quorum_args(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    for (k, v) in extra {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn header<'a>(props: &'a BasicProperties, key: &str) -> Option<&'a AMQPValue> {
    props.headers().as_ref()?.inner().get(key)
}

fn delivery_count(props: &BasicProperties) -> Option<i64> {
    match header(props, "x-delivery-count")? {
        AMQPValue::LongLongInt(n) => Some(*n),
        other => panic!("x-delivery-count of an unexpected type: {other:?}"),
    }
}

async fn get(ch: &lapin::Channel, queue: &str) -> Option<lapin::message::BasicGetMessage> {
    ch.basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
}

/// `get`, tried every 250 ms for up to 15 s.
async fn get_eventually(
    ch: &lapin::Channel,
    queue: &str,
) -> Option<lapin::message::BasicGetMessage> {
    for _ in 0..60 {
        if let Some(m) = get(ch, queue).await {
            return Some(m);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    None
}

/// A quorum queue's `messages_dlx` as the management API shows it.
fn messages_dlx(addr: std::net::SocketAddr, queue: &str) -> Option<u64> {
    let body = http_get(addr, &format!("/api/queues/%2F/{queue}"));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["messages_dlx"].as_u64()
}

/// `messages_dlx` once it is 0, tried every 250 ms for up to 15 s (the last seen if not).
async fn dead_letters_gone(addr: std::net::SocketAddr, queue: &str) -> Option<u64> {
    let mut dlx = None;
    for _ in 0..60 {
        dlx = messages_dlx(addr, queue);
        if dlx == Some(0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    dlx
}

async fn nack_requeue(ch: &lapin::Channel, tag: u64) {
    ch.basic_nack(
        tag,
        BasicNackOptions {
            multiple: false,
            requeue: true,
        },
    )
    .await
    .unwrap();
}

/// GET of a management API path as guest; the response body.
fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "GET {path}: {out}");
    out.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// PUT of a management API path as guest, with a JSON body; the status line.
fn http_put(addr: std::net::SocketAddr, path: &str, body: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines().next().unwrap_or("").to_owned()
}

// The `delivery-limit` policy limits a quorum queue that has no argument of its own (the
// lower of the two wins when both are set, as RabbitMQ's args_policy_lookup with min).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_limit_policy_applies_to_quorum_queues() {
    let b = common::start().await;
    let status = http_put(
        b.http_addr.unwrap(),
        "/api/policies/%2F/limit-returns",
        r#"{"pattern":"^qq$","apply-to":"queues","definition":{"delivery-limit":1}}"#,
    );
    assert!(status.starts_with("HTTP/1.1 20"), "{status}");
    let conn = common::lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare("qq".into(), durable(), quorum_args(&[]))
        .await
        .unwrap();
    ch.basic_publish(
        "".into(),
        "qq".into(),
        Default::default(),
        b"m",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    for expected in 0..=1 {
        let m = get(&ch, "qq").await.expect("still in the queue");
        assert_eq!(delivery_count(&m.delivery.properties), Some(expected));
        nack_requeue(&ch, m.delivery.delivery_tag).await;
    }
    // Returned twice, over the policy's limit of 1: dropped (no dead-letter exchange).
    assert!(get(&ch, "qq").await.is_none());
}

// Two workers: the management API answers on this runtime while the test blocks on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_count_grows_per_return_and_the_limit_dead_letters() {
    let b = common::start().await;
    let conn = common::lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare("dlq".into(), durable(), FieldTable::default())
        .await
        .unwrap();
    let args = quorum_args(&[
        ("x-delivery-limit", AMQPValue::LongInt(2)),
        (
            "x-dead-letter-exchange",
            AMQPValue::LongString(LongString::from("")),
        ),
        (
            "x-dead-letter-routing-key",
            AMQPValue::LongString(LongString::from("dlq")),
        ),
    ]);
    ch.queue_declare("qq".into(), durable(), args)
        .await
        .unwrap();
    ch.basic_publish(
        "".into(),
        "qq".into(),
        Default::default(),
        b"m1",
        BasicProperties::default().with_delivery_mode(1),
    )
    .await
    .unwrap();

    // basic.get: the count on every delivery, 0 for the first; each return adds one.
    for expected in 0..=2 {
        let m = get(&ch, "qq").await.expect("the message is ready");
        assert_eq!(delivery_count(&m.delivery.properties), Some(expected));
        assert_eq!(m.delivery.redelivered, expected > 0);
        assert_eq!(&m.delivery.data[..], b"m1");
        nack_requeue(&ch, m.delivery.delivery_tag).await;
    }
    // Third return: over the limit of 2, dead-lettered instead of requeued.
    assert!(get(&ch, "qq").await.is_none());
    let dead = get(&ch, "dlq").await.expect("dead-lettered");
    assert_eq!(&dead.delivery.data[..], b"m1");
    let Some(AMQPValue::FieldArray(deaths)) = header(&dead.delivery.properties, "x-death") else {
        panic!("no x-death: {:?}", dead.delivery.properties);
    };
    let AMQPValue::FieldTable(death) = &deaths.as_slice()[0] else {
        panic!("x-death entry is not a table");
    };
    assert_eq!(
        death.inner().get("reason"),
        Some(&AMQPValue::LongString(LongString::from("delivery_limit")))
    );
    // The dead letter is a new message: it does not carry the old count.
    assert_eq!(delivery_count(&dead.delivery.properties), None);

    // basic.deliver: no count on a first delivery, then the count of returns.
    ch.basic_publish(
        "".into(),
        "qq".into(),
        Default::default(),
        b"m2",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            "qq".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let first = consumer.next().await.unwrap().unwrap();
    assert_eq!(delivery_count(&first.properties), None);
    assert!(!first.redelivered);
    nack_requeue(&ch, first.delivery_tag).await;
    let again = consumer.next().await.unwrap().unwrap();
    assert_eq!(delivery_count(&again.properties), Some(1));
    assert!(again.redelivered);

    let body = http_get(b.http_addr.unwrap(), "/api/queues/%2F/qq");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["type"], "quorum", "{json}");
    assert_eq!(json["arguments"]["x-queue-type"], "quorum", "{json}");
    let node = json["node"].as_str().expect("a node name");
    assert_eq!(json["leader"], node, "{json}");
    assert_eq!(json["members"], serde_json::json!([node]), "{json}");
    assert_eq!(json["online"], serde_json::json!([node]), "{json}");
}

/// Under `x-dead-letter-strategy: at-least-once` with `x-overflow: reject-publish`, a dead
/// letter that routes nowhere (its exchange missing, then binding nothing) stays in the
/// quorum queue, neither ready nor dropped, and goes once a queue is bound (Warren tries
/// again every 5 s; RabbitMQ's dead-letter worker every 180 s by default). With
/// `drop-head` RabbitMQ falls back to at-most-once: the dead letter is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_dead_letters_that_route_nowhere_wait_for_a_route() {
    let b = common::start().await;
    let conn = common::lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    let unix_seconds = || {
        let since = std::time::UNIX_EPOCH.elapsed().unwrap();
        since.as_secs()
    };
    let rejected_at = unix_seconds();
    for (queue, overflow) in [("kept", "reject-publish"), ("dropped", "drop-head")] {
        let args = quorum_args(&[
            ("x-dead-letter-exchange", text("dlx")),
            ("x-dead-letter-strategy", text("at-least-once")),
            ("x-overflow", text(overflow)),
        ]);
        ch.queue_declare(queue.into(), durable(), args)
            .await
            .unwrap();
        let props = BasicProperties::default().with_delivery_mode(2);
        ch.basic_publish(
            "".into(),
            queue.into(),
            Default::default(),
            queue.as_bytes(),
            props,
        )
        .await
        .unwrap();
        let m = get(&ch, queue).await.expect("published");
        ch.basic_reject(m.delivery.delivery_tag, Default::default())
            .await
            .unwrap();
    }
    // A consumer of the queue never gets the dead letter it keeps.
    let mut consumer = ch
        .basic_consume(
            "kept".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    // Past a retry with the exchange missing.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert_eq!(ready(&ch, "kept").await, 0, "kept, not ready");
    // The management API counts it in `messages` and `messages_dlx`, as RabbitMQ does.
    let body = http_get(b.http_addr.unwrap(), "/api/queues/%2F/kept");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let counts = ["messages", "messages_ready", "messages_dlx"].map(|k| json[k].as_u64());
    assert_eq!(counts, [Some(1), Some(0), Some(1)], "{json}");
    let kinds = ExchangeKind::Fanout;
    let options = ExchangeDeclareOptions::default();
    ch.exchange_declare("dlx".into(), kinds, options, FieldTable::default())
        .await
        .unwrap();
    ch.queue_declare("dlq".into(), durable(), FieldTable::default())
        .await
        .unwrap();
    let bind = QueueBindOptions::default();
    ch.queue_bind(
        "dlq".into(),
        "dlx".into(),
        "".into(),
        bind,
        FieldTable::default(),
    )
    .await
    .unwrap();
    let dead = get_eventually(&ch, "dlq").await;
    let dead = dead.expect("the kept dead letter goes once dlx routes it");
    assert_eq!(&dead.delivery.data[..], b"kept");
    let Some(AMQPValue::FieldArray(deaths)) = header(&dead.delivery.properties, "x-death") else {
        panic!("no x-death: {:?}", dead.delivery.properties);
    };
    let AMQPValue::FieldTable(death) = &deaths.as_slice()[0] else {
        panic!("x-death entry is not a table");
    };
    assert_eq!(death.inner().get("reason"), Some(&text("rejected")));
    assert_eq!(death.inner().get("queue"), Some(&text("kept")));
    // The time it died, not the time it went (6 s later at least).
    let Some(AMQPValue::Timestamp(died)) = death.inner().get("time") else {
        panic!("no time in {death:?}");
    };
    assert!(
        *died <= rejected_at + 1,
        "died {died}, rejected at {rejected_at}"
    );
    // The one under drop-head was dropped: nothing more comes, and its queue is empty.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert!(
        get(&ch, "dlq").await.is_none(),
        "dropped at once (at-most-once)"
    );
    assert!(get(&ch, "dropped").await.is_none());
    let early = futures_lite::future::poll_once(consumer.next()).await;
    assert!(early.is_none(), "the consumer got {early:?}");
}

// RabbitMQ 3.10.8, asked the same on a private node (pika): m2 acked, m3 nacked, 1 ready.
#[tokio::test]
async fn held_dead_letters_count_towards_the_length_limit() {
    let b = common::start().await;
    let conn = common::lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    let args = quorum_args(&[
        ("x-max-length", AMQPValue::LongLongInt(1)),
        ("x-overflow", text("reject-publish")),
        ("x-dead-letter-exchange", text("missing")),
        ("x-dead-letter-strategy", text("at-least-once")),
    ]);
    ch.queue_declare("limited".into(), durable(), args)
        .await
        .unwrap();
    let publish = |body: &'static [u8]| common::publish_confirmed(&ch, "", "limited", body, true);
    assert!(publish(b"m1").await.is_ack());
    let m = get(&ch, "limited").await.expect("published");
    ch.basic_reject(m.delivery.delivery_tag, Default::default())
        .await
        .unwrap();
    // Held (its exchange is missing): none ready, one counted.
    assert!(
        publish(b"m2").await.is_ack(),
        "0 ready + 1 held is not over 1"
    );
    assert!(!publish(b"m3").await.is_ack(), "1 ready + 1 held is over 1");
    assert_eq!(ready(&ch, "limited").await, 1);
}

// RabbitMQ 3.10.8, asked the same on a private node (pika): t1 stays at its 2 messages
// and t2 gets m1 at once; within 5 s of t1 being emptied, m1 is in t1; t2 has it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_dead_letters_go_later_to_the_queues_that_refused_them() {
    let b = common::start().await;
    let conn = common::lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    let (fanout, options) = (ExchangeKind::Fanout, ExchangeDeclareOptions::default());
    ch.exchange_declare("dlxp".into(), fanout, options, FieldTable::default())
        .await
        .unwrap();
    let src = quorum_args(&[
        ("x-dead-letter-exchange", text("dlxp")),
        ("x-dead-letter-strategy", text("at-least-once")),
        ("x-overflow", text("reject-publish")),
    ]);
    let full = quorum_args(&[
        ("x-max-length", AMQPValue::LongLongInt(1)),
        ("x-overflow", text("reject-publish")),
    ]);
    for (queue, args) in [("src", src), ("t1", full), ("t2", quorum_args(&[]))] {
        ch.queue_declare(queue.into(), durable(), args)
            .await
            .unwrap();
    }
    for queue in ["t1", "t2"] {
        let bind = QueueBindOptions::default();
        let none = FieldTable::default();
        ch.queue_bind(queue.into(), "dlxp".into(), "".into(), bind, none)
            .await
            .unwrap();
    }
    // t1 over its limit (1 is not over 1, so the second is taken too), then `dead`
    // published to src and rejected there.
    let fill_and_reject = |fillers: [&'static [u8]; 2], dead: &'static [u8]| {
        let ch = &ch;
        async move {
            for (queue, body) in [("t1", fillers[0]), ("t1", fillers[1]), ("src", dead)] {
                let confirm = common::publish_confirmed(ch, "", queue, body, true).await;
                assert!(confirm.is_ack());
            }
            let m = get(ch, "src").await.expect("published");
            ch.basic_reject(m.delivery.delivery_tag, Default::default())
                .await
                .unwrap();
        }
    };
    fill_and_reject([b"filler1", b"filler2"], b"m1").await;
    let mut in_t2 = 0;
    for _ in 0..40 {
        in_t2 = ready(&ch, "t2").await;
        if in_t2 > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(in_t2, 1, "t2 takes its copy at once");
    assert_eq!(ready(&ch, "t1").await, 2, "t1 refuses its copy");
    assert_eq!(ready(&ch, "src").await, 0, "kept, not ready");
    let api = b.http_addr.unwrap();
    assert_eq!(messages_dlx(api, "src"), Some(1));
    for filler in [&b"filler1"[..], b"filler2"] {
        let m = get(&ch, "t1").await.expect("filler");
        assert_eq!(&m.delivery.data[..], filler);
        ch.basic_ack(m.delivery.delivery_tag, Default::default())
            .await
            .unwrap();
    }
    let later = get_eventually(&ch, "t1").await;
    let later = later.expect("the dead letter goes to t1 once it has room");
    assert_eq!(&later.delivery.data[..], b"m1");
    assert!(header(&later.delivery.properties, "x-death").is_some());
    // Not sent again to t2, which had it; and no longer held by src.
    assert_eq!(ready(&ch, "t2").await, 1);
    let dlx = dead_letters_gone(api, "src").await;
    assert_eq!(dlx, Some(0), "src lets go of it once t1 has it");

    // Refused by t1 again, then t1 unbound: the copy in t2 is all it needs, as
    // RabbitMQ's worker decides when the routes change.
    fill_and_reject([b"filler3", b"filler4"], b"m2").await;
    let unbind = ch.queue_unbind("t1".into(), "dlxp".into(), "".into(), FieldTable::default());
    unbind.await.unwrap();
    let dlx = dead_letters_gone(api, "src").await;
    assert_eq!(
        dlx,
        Some(0),
        "src lets go of m2 once only t2, which has it, is bound"
    );
    assert_eq!(ready(&ch, "t2").await, 2, "m1 and m2, each once");
    assert_eq!(ready(&ch, "t1").await, 2, "the fillers only");
}

#[tokio::test]
async fn a_channel_wide_prefetch_cannot_consume_from_a_quorum_queue() {
    let b = common::start().await;
    let conn = common::lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare("qq".into(), durable(), quorum_args(&[]))
        .await
        .unwrap();
    ch.basic_qos(5, lapin::options::BasicQosOptions { global: true })
        .await
        .unwrap();
    let closed = common::watch_close(&conn);
    let err = ch
        .basic_consume(
            "qq".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("RabbitMQ closes the connection with 540");
    assert_eq!(common::lapin_code(&err), Some(540), "{err}");
    let (code, text) = closed.await.unwrap();
    assert_eq!(code, 540);
    assert!(text.contains("does not support global qos"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_messages_in_a_quorum_queue_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut broker = common::spawn_warren(dir.path(), port, &[], Stdio::null());
    {
        let conn = common::lapin_connect_port(port).await;
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        ch.queue_declare("qq".into(), durable(), quorum_args(&[]))
            .await
            .unwrap();
        ch.queue_declare("classic".into(), durable(), FieldTable::default())
            .await
            .unwrap();
        for queue in ["qq", "classic"] {
            for body in [&b"transient-1"[..], b"transient-2"] {
                let confirm = common::publish_confirmed(&ch, "", queue, body, false).await;
                assert!(confirm.is_ack());
            }
        }
        // A message out with a client (got, never acked) when the broker dies.
        ch.queue_declare("held".into(), durable(), quorum_args(&[]))
            .await
            .unwrap();
        common::publish_confirmed(&ch, "", "held", b"held", true).await;
        let m = get(&ch, "held").await.expect("published");
        assert_eq!(delivery_count(&m.delivery.properties), Some(0));
        // The log's "may have been delivered" mark is written by the broker's 200 ms
        // maintenance, off the model lock: let one pass run before the kill.
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    }
    broker.kill().unwrap(); // SIGKILL
    broker.wait().unwrap();
    let mut broker = common::spawn_warren(dir.path(), port, &[], Stdio::null());
    let conn = common::lapin_connect_port(port).await;
    let ch = conn.create_channel().await.unwrap();
    let mut bodies = Vec::new();
    while let Some(m) = get(&ch, "qq").await {
        bodies.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
        // Stored as published: delivery mode 1 is still what the consumer sees.
        assert_eq!(m.delivery.properties.delivery_mode(), &None);
    }
    assert_eq!(bodies, ["transient-1", "transient-2"]);
    // The classic queue beside it drops transient messages at recovery, as RabbitMQ does.
    assert!(get(&ch, "classic").await.is_none());
    // RabbitMQ counts a delivery still out at shutdown as a return.
    let m = get(&ch, "held").await.expect("kept");
    assert_eq!(delivery_count(&m.delivery.properties), Some(1));
    assert!(m.delivery.redelivered);
    broker.kill().unwrap();
    broker.wait().unwrap();
}
