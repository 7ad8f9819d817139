//! The clients of the Jepsen-style workload (tests/cluster_jepsen.rs): publishers with
//! confirms and consumers that ack, one of each per node and queue, which reconnect to
//! their node after every failure and write what happened to a history file, one JSON
//! object a line. `tools/jepsen_check.py` reads the history and decides.
//!
//! The history's records:
//! - `{"f":"publish","type":"ok"|"fail"|"info","value","queue","node","invoked","t"}`:
//!   one per publish, once its fate is known. `ok` is a confirm (basic.ack), `fail` a
//!   basic.nack, `info` unknown (the connection failed, or no confirm came in time).
//! - `{"f":"deliver","value","queue","node","consumer","redelivered","t"}`: a delivery,
//!   written before it is acked.
//! - `{"f":"fault","type":"start"|"end","fault","node",...,"t"}`: the nemesis (written by
//!   the test).
//!
//! A value is `P-S-N`: publisher P's N-th publish on its S-th connection. RabbitMQ keeps
//! the order of one channel's publishes to a queue, and the checker holds Warren to that
//! per connection (a new connection makes no promise about the old one's stragglers).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::PublisherConfirm;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{json, Value};

/// How many publishes a publisher has waiting for their confirms.
const WINDOW: usize = 8;
/// A publish not confirmed within this is of unknown fate: the publisher gives up on the
/// connection. Longer than the broker's own 10 s write deadline, after which it nacks.
const CONFIRM_WAIT: Duration = Duration::from_secs(15);
/// Unacked deliveries a consumer holds at most.
const PREFETCH: u16 = 16;
/// How long any other client call may take before the client gives up on its connection:
/// a call on a connection whose node died is not always failed by lapin, and a client
/// that waits for ever would stop the workload on that node for good.
const CALL_WAIT: Duration = Duration::from_secs(5);

/// `call`'s result if it succeeds within `CALL_WAIT`.
async fn within<T>(call: impl std::future::Future<Output = lapin::Result<T>>) -> Option<T> {
    tokio::time::timeout(CALL_WAIT, call).await.ok()?.ok()
}

/// The history file, shared by every client and the nemesis.
#[derive(Clone)]
pub struct History {
    out: Arc<Mutex<BufWriter<File>>>,
    start: Instant,
    /// Confirms and deliveries so far (the test prints progress).
    pub confirmed: Arc<AtomicU64>,
    pub delivered: Arc<AtomicU64>,
    /// When the last delivery was written (milliseconds since start).
    pub last_delivery: Arc<AtomicU64>,
    /// Per queue, when the latest confirmed publish was invoked (milliseconds since
    /// start): the nemesis waits for one invoked after a fault's heal before the next
    /// fault, so no fault's unavailability runs on into the next one's.
    confirmed_invoked: Arc<Mutex<HashMap<&'static str, u64>>>,
}

impl History {
    pub fn create(path: &std::path::Path) -> History {
        History {
            out: Arc::new(Mutex::new(BufWriter::new(File::create(path).unwrap()))),
            start: Instant::now(),
            confirmed: Arc::default(),
            delivered: Arc::default(),
            last_delivery: Arc::default(),
            confirmed_invoked: Arc::default(),
        }
    }

    /// Whether a publish to `queue` invoked at or after `since` (milliseconds since
    /// start) has been confirmed.
    pub fn confirmed_since(&self, queue: &str, since: u64) -> bool {
        let latest = self.confirmed_invoked.lock().unwrap();
        latest.get(queue).is_some_and(|t| *t >= since)
    }

    /// Milliseconds since the workload started.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Appends `record` with its time.
    pub fn write(&self, mut record: Value) {
        record["t"] = json!(self.now());
        let mut out = self.out.lock().unwrap();
        serde_json::to_writer(&mut *out, &record).unwrap();
        out.write_all(b"\n").unwrap();
    }

    pub fn flush(&self) {
        self.out.lock().unwrap().flush().unwrap();
    }
}

/// Where a client works and when it stops.
#[derive(Clone)]
pub struct Client {
    pub node: u64,
    pub port: u16,
    pub history: History,
    pub stop: Arc<AtomicBool>,
}

impl Client {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// A connection to the client's node, or `None` after 2 s (the node may be down).
    async fn connect(&self) -> Option<Connection> {
        let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port);
        let attempt = Connection::connect(&url, ConnectionProperties::default());
        tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .ok()?
            .ok()
    }
}

/// A publish waiting for its confirm.
struct Pending {
    value: String,
    queue: &'static str,
    invoked: u64,
    confirm: PublisherConfirm,
}

impl Pending {
    fn record(&self, client: &Client, outcome: &str) {
        client.history.write(json!({
            "f": "publish", "type": outcome, "value": self.value, "queue": self.queue,
            "node": client.node, "invoked": self.invoked,
        }));
        if outcome == "ok" {
            client.history.confirmed.fetch_add(1, Ordering::Relaxed);
            let mut latest = client.history.confirmed_invoked.lock().unwrap();
            let t = latest.entry(self.queue).or_default();
            *t = (*t).max(self.invoked);
        }
    }
}

/// Publisher `id`: `rate` publishes a second through its node, to `queues` in turn, with
/// confirms, until stopped; a new connection after every failure.
pub async fn publisher(client: Client, id: u64, queues: &'static [&'static str], rate: u32) {
    let mut session = 0u64;
    while !client.stopped() {
        let Some(conn) = client.connect().await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        session += 1;
        publish_on(&client, &conn, id, session, queues, rate).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(200, "bye".into())).await;
    }
}

/// Publishes on one connection until it fails or the workload stops; every publish made
/// on it is recorded with its fate before this returns.
async fn publish_on(
    client: &Client,
    conn: &Connection,
    id: u64,
    session: u64,
    queues: &'static [&'static str],
    rate: u32,
) {
    let Some(ch) = within(conn.create_channel()).await else {
        return;
    };
    if within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .is_none()
    {
        return;
    }
    let mut pace = tokio::time::interval(Duration::from_secs(1) / rate);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut healthy = true;
    let mut seq = 0u64;
    while healthy && !client.stopped() {
        pace.tick().await;
        let queue = queues[seq as usize % queues.len()];
        let value = format!("{id}-{session}-{seq}");
        seq += 1;
        let invoked = client.history.now();
        let props = BasicProperties::default().with_delivery_mode(2);
        let sent = within(ch.basic_publish(
            "".into(),
            queue.into(),
            Default::default(),
            value.as_bytes(),
            props,
        ))
        .await;
        match sent {
            Some(confirm) => pending.push_back(Pending {
                value,
                queue,
                invoked,
                confirm,
            }),
            None => {
                // Whether the frame left before the failure is unknown.
                client.history.write(json!({
                    "f": "publish", "type": "info", "value": value, "queue": queue,
                    "node": client.node, "invoked": invoked,
                }));
                healthy = false;
            }
        }
        while healthy && pending.len() >= WINDOW {
            healthy = settle_front(client, &mut pending).await;
        }
    }
    // Wait for what is out, unless the connection already failed.
    while healthy && !pending.is_empty() {
        healthy = settle_front(client, &mut pending).await;
    }
    for p in pending {
        p.record(client, "info");
    }
}

/// Waits for the oldest pending publish's confirm and records it; false if the connection
/// failed or the confirm did not come in time (that publish is then recorded as unknown).
async fn settle_front(client: &Client, pending: &mut VecDeque<Pending>) -> bool {
    let Some(mut front) = pending.pop_front() else {
        return true;
    };
    let outcome = tokio::time::timeout(CONFIRM_WAIT, &mut front.confirm).await;
    match outcome {
        Ok(Ok(c)) if c.is_ack() => front.record(client, "ok"),
        Ok(Ok(c)) if c.is_nack() => front.record(client, "fail"),
        _ => {
            front.record(client, "info");
            return false;
        }
    }
    true
}

/// Consumer of `queue` through its node: acks everything it is given, recording each
/// delivery first; a new connection after every failure.
pub async fn consumer(client: Client, queue: &'static str) {
    let mut session = 0u64;
    while !client.stopped() {
        let Some(conn) = client.connect().await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        session += 1;
        let name = format!("c{}-{queue}-{session}", client.node);
        consume_on(&client, &conn, queue, &name).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(200, "bye".into())).await;
    }
}

async fn consume_on(client: &Client, conn: &Connection, queue: &'static str, name: &str) {
    let Some(ch) = within(conn.create_channel()).await else {
        return;
    };
    if within(ch.basic_qos(PREFETCH, BasicQosOptions::default()))
        .await
        .is_none()
    {
        return;
    }
    let consume = within(ch.basic_consume(
        queue.into(),
        name.into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await;
    let Some(mut deliveries) = consume else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return;
    };
    while !client.stopped() {
        let next = tokio::time::timeout(Duration::from_millis(500), deliveries.next()).await;
        let delivery = match next {
            // Quiet: go on unless the connection is gone (lapin does not always end a
            // consumer's stream when its connection fails).
            Err(_) if conn.status().connected() && ch.status().connected() => continue,
            Err(_) => return,
            Ok(Some(Ok(d))) => d,
            Ok(_) => return,
        };
        client.history.write(json!({
            "f": "deliver", "value": String::from_utf8_lossy(&delivery.data), "queue": queue,
            "node": client.node, "consumer": name, "redelivered": delivery.redelivered,
        }));
        client.history.delivered.fetch_add(1, Ordering::Relaxed);
        client
            .history
            .last_delivery
            .store(client.history.now(), Ordering::Relaxed);
        if within(delivery.ack(BasicAckOptions::default()))
            .await
            .is_none()
        {
            return;
        }
    }
}
