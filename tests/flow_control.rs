//! Publisher flow control (issue 15, src/broker/flow.rs), with lapin clients and the
//! management API as the observer:
//! - consumers that drain fast but not as fast as the publisher put the publisher's
//!   connection in `flow` (its socket stops being read), the queue's backlog stays short,
//!   every message is confirmed and delivered once, in order, and nothing waits forever;
//! - a publisher to another queue at the same time is never held;
//! - a slow consumer (a work queue) never holds its publisher: the backlog goes to disk, as
//!   in RabbitMQ;
//! - no-ack consumers (read on a raw socket, so that a slow reader is slow at the broker and
//!   not in a client library's buffers): a publisher that outruns an active one is held
//!   and its backlog stays short; one that stopped reading, or reads slowly, does not hold
//!   it;
//! - a held publisher goes on as soon as its queue's last consumer cancels.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, PublisherConfirm};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One GET of the management API as guest (`Connection: close`), parsed.
async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete answer");
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    serde_json::from_str(body).unwrap()
}

async fn connect(b: &common::TestBroker, name: &str) -> Connection {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(&b.url(), props).await.unwrap()
}

/// A broker with `queues` declared; its management API's address.
async fn broker_with(queues: &[&str]) -> (common::TestBroker, SocketAddr) {
    let b = common::start().await;
    let http = b.http_addr.unwrap();
    let setup = connect(&b, "setup").await;
    let ch = setup.create_channel().await.unwrap();
    for q in queues {
        declare(&ch, q).await;
    }
    (b, http)
}

/// A connection named `name` and a channel on it in confirm mode.
async fn confirming(b: &common::TestBroker, name: &str) -> (Connection, Channel) {
    let conn = connect(b, name).await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (conn, ch)
}

/// The queue is empty: everything published was delivered, nothing lost.
async fn assert_drained(http: SocketAddr, queue: &str) {
    let q = get_json(http, &format!("/api/queues/%2F/{queue}")).await;
    assert_eq!(
        q["messages"].as_u64(),
        Some(0),
        "nothing left, nothing lost"
    );
}

async fn declare(ch: &Channel, queue: &str) {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
}

/// Publishes `n` numbered messages to `queue` without waiting between them (lapin
/// pipelines them); returns the confirms to await.
async fn publish_numbered(ch: &Channel, queue: &str, n: u64) -> Vec<PublisherConfirm> {
    publish_range(ch, queue, 0..n).await
}

/// Publishes the messages numbered `range` (as `publish_numbered`).
async fn publish_range(
    ch: &Channel,
    queue: &str,
    range: std::ops::Range<u64>,
) -> Vec<PublisherConfirm> {
    publish_sized(ch, queue, range, 8).await
}

/// Publishes the messages numbered `range`, each body its number padded to `size` bytes.
async fn publish_sized(
    ch: &Channel,
    queue: &str,
    range: std::ops::Range<u64>,
    size: usize,
) -> Vec<PublisherConfirm> {
    let mut confirms = Vec::with_capacity((range.end - range.start) as usize);
    let mut body = vec![0u8; size.max(8)];
    for i in range {
        body[..8].copy_from_slice(&i.to_be_bytes());
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default(),
            )
            .await
            .unwrap();
        confirms.push(confirm);
    }
    confirms
}

async fn all_acked(confirms: Vec<PublisherConfirm>) {
    for c in confirms {
        assert!(
            c.await.unwrap().is_ack(),
            "every publish is confirmed with an ack"
        );
    }
}

/// Runs a client on a thread of its own, as another process would: lapin's publish waits
/// synchronously while its socket is full (which is what flow control causes), and that
/// must not stall the runtime the in-process broker runs on.
fn on_own_thread(
    client: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::sync::oneshot::Receiver<()> {
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(client);
        let _ = done.send(());
    });
    finished
}

/// Waits (up to 2 minutes each) for a publisher that flow held to finish with every
/// publish confirmed, then for its consumer to have taken every message.
async fn held_publisher_and_consumer_finish<T>(
    publisher: tokio::sync::oneshot::Receiver<()>,
    consumer: tokio::task::JoinHandle<T>,
) -> T {
    let within = Duration::from_secs(120);
    tokio::time::timeout(within, publisher)
        .await
        .expect("the held publisher finishes: nothing is blocked forever")
        .expect("and all its publishes were confirmed");
    tokio::time::timeout(within, consumer)
        .await
        .expect("every message is consumed")
        .unwrap()
}

/// What the observer saw of one connection and one queue while a test ran.
#[derive(Default)]
struct Seen {
    /// The connection (by its connection_name) was listed in state `flow`.
    flow: AtomicBool,
    /// The most ready messages the queue was seen with.
    max_ready: AtomicU64,
}

/// Polls the management API every 20 ms until `stop`: the state of the connection named
/// `conn` and the ready count of `queue`.
fn observe(
    http: SocketAddr,
    conn: &'static str,
    queue: &'static str,
    stop: Arc<AtomicBool>,
) -> (Arc<Seen>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let task = tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let conns = get_json(http, "/api/connections").await;
            for c in conns.as_array().unwrap() {
                let name = c["client_properties"]["connection_name"].as_str();
                if name == Some(conn) && c["state"] == "flow" {
                    s.flow.store(true, Ordering::Relaxed);
                }
            }
            let q = get_json(http, &format!("/api/queues/%2F/{queue}")).await;
            let ready = q["messages_ready"].as_u64().unwrap_or(0);
            s.max_ready.fetch_max(ready, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (seen, task)
}

/// Consumes `n` numbered messages from `queue` in order (prefetch `prefetch`, acking each),
/// sleeping `pause` after every `every` deliveries; returns how many arrived.
async fn consume_numbered(
    ch: Channel,
    queue: &str,
    n: u64,
    prefetch: u16,
    (every, pause): (u64, Duration),
    got: Arc<AtomicU64>,
) {
    ch.basic_qos(prefetch, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..n {
        let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("a delivery within 30 s: nothing is blocked forever")
            .expect("consumer open")
            .expect("delivery ok");
        let seq = u64::from_be_bytes(d.data[..8].try_into().unwrap());
        assert_eq!(seq, i, "delivered once each, in publish order");
        d.ack(BasicAckOptions::default()).await.unwrap();
        got.store(i + 1, Ordering::Relaxed);
        if (i + 1) % every == 0 {
            tokio::time::sleep(pause).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_behind_hold_the_publisher_and_only_it() {
    let (b, http) = broker_with(&["fc-busy", "fc-other"]).await;
    const N: u64 = 150_000;
    const OTHER: u64 = 20_000;
    const WARM_UP: u64 = 5_000;

    // The consumer: fast (well above flow's ACTIVE_FLOOR), but paced (1 ms after every
    // 200 deliveries), so a publisher that pipelines runs ahead of it.
    let cconn = connect(&b, "fc-consumer").await;
    let got = Arc::new(AtomicU64::new(0));
    let consumer = tokio::spawn(consume_numbered(
        cconn.create_channel().await.unwrap(),
        "fc-busy",
        N,
        500,
        (200, Duration::from_millis(1)),
        got.clone(),
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let (busy, busy_task) = observe(http, "fc-publisher", "fc-busy", stop.clone());
    let (other, other_task) = observe(http, "fc-other-publisher", "fc-other", stop.clone());

    // Two publishers at once: one to the consumed queue, one to a queue nobody reads.
    let (_pconn, pch) = confirming(&b, "fc-publisher").await;
    let (_oconn, och) = confirming(&b, "fc-other-publisher").await;
    // The consumer is first seen at work (flow engages only for active consumers: one
    // still starting would let the backlog grow long before, and a long backlog is held
    // where it is rather than drained), then the publisher floods.
    let warmed = got.clone();
    let publisher = on_own_thread(async move {
        all_acked(publish_range(&pch, "fc-busy", 0..WARM_UP).await).await;
        while warmed.load(Ordering::Relaxed) < WARM_UP {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        all_acked(publish_range(&pch, "fc-busy", WARM_UP..N).await).await;
    });
    let other_publisher = on_own_thread(async move {
        let confirms = publish_numbered(&och, "fc-other", OTHER).await;
        all_acked(confirms).await;
    });

    let within = Duration::from_secs(120);
    tokio::time::timeout(within, other_publisher)
        .await
        .expect("the other queue's publisher finishes")
        .expect("and all its publishes were confirmed");
    held_publisher_and_consumer_finish(publisher, consumer).await;
    stop.store(true, Ordering::Relaxed);
    busy_task.await.unwrap();
    other_task.await.unwrap();

    assert_eq!(got.load(Ordering::Relaxed), N);
    assert!(
        busy.flow.load(Ordering::Relaxed),
        "the publisher ahead of the consumers was listed in state flow"
    );
    let max_ready = busy.max_ready.load(Ordering::Relaxed);
    // In runs where flow did not hold the publisher (while this test was being made) the
    // backlog reached 84,000-120,000; with it, under 20,000 on an otherwise idle machine
    // and 37,000-57,000 with two CPU hogs beside the test.
    assert!(
        max_ready < N / 3,
        "flow kept the backlog short: at most {max_ready} of {N} ready"
    );
    assert!(
        !other.flow.load(Ordering::Relaxed),
        "the publisher to another queue was never held"
    );
    let q = get_json(http, "/api/queues/%2F/fc-other").await;
    assert_eq!(q["messages_ready"].as_u64(), Some(OTHER));
    assert_drained(http, "fc-busy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_never_holds_its_publisher() {
    let (b, http) = broker_with(&["fc-work"]).await;
    const N: u64 = 30_000;

    // A work-queue consumer: prefetch 1, 5 ms per message.
    let cconn = connect(&b, "fc-worker").await;
    let got = Arc::new(AtomicU64::new(0));
    let consumer = tokio::spawn(consume_numbered(
        cconn.create_channel().await.unwrap(),
        "fc-work",
        N,
        1,
        (1, Duration::from_millis(5)),
        got.clone(),
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let (seen, task) = observe(http, "fc-producer", "fc-work", stop.clone());
    let (_pconn, pch) = confirming(&b, "fc-producer").await;
    let confirms = publish_numbered(&pch, "fc-work", N).await;
    tokio::time::timeout(Duration::from_secs(60), all_acked(confirms))
        .await
        .expect("the producer is confirmed long before its consumer is done");
    let consumed = got.load(Ordering::Relaxed);
    // Let the observer see the backlog, then stop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    consumer.abort();

    assert!(
        consumed < N / 2,
        "the producer finished at its own pace, not the consumer's ({consumed} of {N} consumed)"
    );
    assert!(
        !seen.flow.load(Ordering::Relaxed),
        "a slow consumer does not put its publisher in flow"
    );
    assert!(
        seen.max_ready.load(Ordering::Relaxed) > N / 2,
        "the backlog waits in the queue"
    );
}

/// A no-ack consumer of `queue` on a raw socket: basic.consume, then `n` deliveries read in
/// publish order, with a 1 ms sleep after every `every` of them (`None`: consume, then
/// never read again). Bodies start with their number, as `publish_sized` writes them.
async fn raw_no_ack_consumer(
    addr: SocketAddr,
    queue: &str,
    n: u64,
    every: Option<u64>,
    got: Arc<AtomicU64>,
) -> common::RawClient {
    let mut c = common::RawClient::handshake(addr).await;
    c.open_channel(1).await;
    let mut consume = vec![0, 0];
    consume.extend(common::shortstr(queue));
    consume.extend(common::shortstr("raw"));
    consume.push(0b10); // no-ack
    consume.extend_from_slice(&0u32.to_be_bytes()); // no arguments
    c.send(&common::frame(1, 1, &common::method(60, 20, &consume)))
        .await;
    c.expect_method((60, 21)).await;
    let Some(every) = every else {
        return c;
    };
    let mut next = 0;
    while next < n {
        let f = c
            .recv()
            .await
            .expect("a frame within 5 s: nothing waits forever");
        if f.kind != 3 {
            continue;
        }
        let seq = u64::from_be_bytes(f.payload[..8].try_into().unwrap());
        assert_eq!(seq, next, "delivered once each, in publish order");
        next += 1;
        got.store(next, Ordering::Relaxed);
        if next % every == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_outrunning_no_ack_consumers_is_held() {
    let (b, http) = broker_with(&["fc-no-ack"]).await;
    const N: u64 = 60_000;
    const WARM_UP: u64 = 2_000;

    // Active (at most 20 deliveries per millisecond, ten times ACTIVE_FLOOR's rate) and
    // slower than a publisher that pipelines. 1 KiB bodies, so that the socket buffers
    // between them hold a few thousand, not the whole run.
    let got = Arc::new(AtomicU64::new(0));
    let consumer = tokio::spawn(raw_no_ack_consumer(
        b.addr,
        "fc-no-ack",
        N,
        Some(20),
        got.clone(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, task) = observe(http, "fc-no-ack-publisher", "fc-no-ack", stop.clone());
    let (_pconn, pch) = confirming(&b, "fc-no-ack-publisher").await;
    // Flow engages for consumers seen at work: a first few, then the flood.
    let warmed = got.clone();
    let publisher = on_own_thread(async move {
        all_acked(publish_sized(&pch, "fc-no-ack", 0..WARM_UP, 1024).await).await;
        while warmed.load(Ordering::Relaxed) < WARM_UP {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        all_acked(publish_sized(&pch, "fc-no-ack", WARM_UP..N, 1024).await).await;
    });
    held_publisher_and_consumer_finish(publisher, consumer).await;
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();

    assert_eq!(got.load(Ordering::Relaxed), N);
    let max_ready = seen.max_ready.load(Ordering::Relaxed);
    assert!(
        seen.flow.load(Ordering::Relaxed),
        "the publisher ahead of its no-ack consumer was listed in state flow \
         (at most {max_ready} ready)"
    );
    assert!(
        max_ready < N / 3,
        "flow kept the backlog short: at most {max_ready} of {N} ready"
    );
    assert_drained(http, "fc-no-ack").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_ack_consumer_that_stops_reading_does_not_hold_its_publisher() {
    let (b, http) = broker_with(&["fc-stalled"]).await;
    // 60 MB of 1 KiB bodies: far more than the socket buffers and the outbox take.
    const N: u64 = 60_000;

    let stalled = raw_no_ack_consumer(b.addr, "fc-stalled", 0, None, Default::default()).await;
    let (_pconn, pch) = confirming(&b, "fc-stalled-publisher").await;
    let publisher = on_own_thread(async move {
        all_acked(publish_sized(&pch, "fc-stalled", 0..N, 1024).await).await;
    });
    // What the stalled consumer took before its socket filled (an outbox, the buffers)
    // looks like work for a moment, so flow may hold the publisher once, for at most
    // MAX_PAUSE (1 s); after that its consumer took nothing and flow ends. Held batch
    // after batch instead, the 60,000 publishes (about 240 batches of 256) would take
    // minutes.
    tokio::time::timeout(Duration::from_secs(60), publisher)
        .await
        .expect("the publisher is not held by a consumer that reads nothing")
        .expect("and all its publishes were confirmed");
    let q = get_json(http, "/api/queues/%2F/fc-stalled").await;
    let ready = q["messages_ready"].as_u64().unwrap();
    assert!(
        ready > N / 2,
        "the backlog waits in the queue ({ready} ready)"
    );
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_ack_consumer_that_reads_slowly_does_not_hold_its_publisher() {
    let (b, _http) = broker_with(&["fc-slow-reader"]).await;
    const N: u64 = 30_000;

    // At most one delivery a millisecond (about 500 a second here): reading, but under
    // flow's ACTIVE_FLOOR rate, and leaving its socket full, so slow of its own doing. Flow
    // must not match the publisher to it. (This does not tell the socket check apart from
    // a floor a tenth as high for every no-ack consumer: a slow reader's deliveries come
    // in bursts of a whole outbox, 1,024, which leave windows empty and end flow either
    // way; measured, that rule held this publisher 3-4 s, 48c869f9's rule 1.6-2.4 s. The
    // bounds' unit tests in flow.rs tell them apart.)
    let got = Arc::new(AtomicU64::new(0));
    let consumer = tokio::spawn(raw_no_ack_consumer(
        b.addr,
        "fc-slow-reader",
        N,
        Some(1),
        got.clone(),
    ));
    let (_pconn, pch) = confirming(&b, "fc-slow-reader-publisher").await;
    let publisher = on_own_thread(async move {
        all_acked(publish_sized(&pch, "fc-slow-reader", 0..N, 1024).await).await;
    });
    // At the consumer's pace the 30,000 would take over 30 s. Its first burst into the
    // socket buffers looks like work, so flow may hold the publisher once (MAX_PAUSE).
    tokio::time::timeout(Duration::from_secs(20), publisher)
        .await
        .expect("the publisher is not held to a slow reader's pace")
        .expect("and all its publishes were confirmed");
    let read = got.load(Ordering::Relaxed);
    assert!(
        read < N / 2,
        "the publisher finished at its own pace ({read} of {N} read by then)"
    );
    consumer.abort();
}

/// Ready messages in `queue` now.
async fn ready(http: SocketAddr, queue: &str) -> u64 {
    let q = get_json(http, &format!("/api/queues/%2F/{queue}")).await;
    q["messages_ready"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_publisher_goes_on_as_soon_as_the_last_consumer_cancels() {
    let (b, http) = broker_with(&["fc-cancel"]).await;
    const BATCH: u64 = 10_000;

    // An acking consumer, fast but paced (1 ms after every 200), until told to stop; after
    // that it reads on without acking (a consumer that stops reading would leave lapin's
    // buffers full) until its cancel ends the stream.
    let cconn = connect(&b, "fc-cancel-consumer").await;
    let cch = cconn.create_channel().await.unwrap();
    cch.basic_qos(500, BasicQosOptions::default())
        .await
        .unwrap();
    let mut deliveries = cch
        .basic_consume(
            "fc-cancel".into(),
            "fc-cancel-tag".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let stop_acking = Arc::new(AtomicBool::new(false));
    let got = Arc::new(AtomicU64::new(0));
    let (stop, taken) = (stop_acking.clone(), got.clone());
    let consumer = tokio::spawn(async move {
        while let Some(d) = deliveries.next().await {
            if stop.load(Ordering::Relaxed) {
                continue;
            }
            d.unwrap().ack(BasicAckOptions::default()).await.unwrap();
            if taken.fetch_add(1, Ordering::Relaxed) % 200 == 199 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });

    // A publisher that pipelines batches until told to stop: one batch while the consumer
    // warms up, then on and on.
    let (_pconn, pch) = confirming(&b, "fc-cancel-publisher").await;
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let (stop, warmed) = (stop_publishing.clone(), got.clone());
    let publisher = on_own_thread(async move {
        all_acked(publish_range(&pch, "fc-cancel", 0..BATCH).await).await;
        while warmed.load(Ordering::Relaxed) < BATCH {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut sent = BATCH;
        while !stop.load(Ordering::Relaxed) {
            all_acked(publish_range(&pch, "fc-cancel", sent..sent + BATCH).await).await;
            sent += BATCH;
        }
        PUBLISHED.store(sent, Ordering::Relaxed);
    });
    static PUBLISHED: AtomicU64 = AtomicU64::new(0);

    // Once the consumer has taken the first batch, wait for flow to hold the publisher.
    tokio::time::timeout(Duration::from_secs(60), async {
        while got.load(Ordering::Relaxed) < BATCH {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the consumer takes the first batch");
    let stop_observing = Arc::new(AtomicBool::new(false));
    let (seen, observer) = observe(
        http,
        "fc-cancel-publisher",
        "fc-cancel",
        stop_observing.clone(),
    );
    tokio::time::timeout(Duration::from_secs(60), async {
        while !seen.flow.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("flow holds the publisher ahead of its consumer");
    stop_observing.store(true, Ordering::Relaxed);
    observer.await.unwrap();

    // The consumer stops acking, so nothing opens the gate: the publisher's next pause
    // lasts its whole MAX_PAUSE (1 s). Once the ready count has stood still for 100 ms
    // the publisher is in that pause, with 0.6-0.9 s of it left.
    stop_acking.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(10), async {
        let (mut last, mut since) = (ready(http, "fc-cancel").await, std::time::Instant::now());
        while since.elapsed() < Duration::from_millis(100) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let now = ready(http, "fc-cancel").await;
            if now != last {
                (last, since) = (now, std::time::Instant::now());
            }
        }
    })
    .await
    .expect("flow pauses the publisher of a consumer that stopped acking");
    // The consumer cancels: its queue has no consumer left, and its held publisher must go
    // on at once (detach_consumer disengages flow), not when its pause runs out.
    cch.basic_cancel("fc-cancel-tag".into(), Default::default())
        .await
        .unwrap();
    let cancelled = std::time::Instant::now();
    let at_cancel = ready(http, "fc-cancel").await;
    loop {
        let now = ready(http, "fc-cancel").await;
        if now > at_cancel + 1_000 {
            break;
        }
        assert!(
            cancelled.elapsed() < Duration::from_millis(500),
            "the publisher went on within 0.5 s of the cancel ({now} ready, {at_cancel} at it)"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop_publishing.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(30), consumer)
        .await
        .expect("the cancel ends the consumer's stream")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(120), publisher)
        .await
        .expect("the publisher finishes")
        .expect("and all its publishes were confirmed");
    // What the consumer counted was acked; what it had been sent since waits unacked.
    let (published, taken) = (
        PUBLISHED.load(Ordering::Relaxed),
        got.load(Ordering::Relaxed),
    );
    let q = get_json(http, "/api/queues/%2F/fc-cancel").await;
    assert_eq!(
        q["messages"].as_u64(),
        Some(published - taken),
        "nothing lost"
    );
}
