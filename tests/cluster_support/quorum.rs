//! What the quorum-queue cluster tests share: waiting on the nodes' management APIs, a
//! queue group's leader as every node sees it, and lapin helpers (connect, declare a
//! quorum queue, publish with confirms or in a transaction, consume, get, nack).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::Value;

use super::Cluster;

pub const ELECTION: Duration = Duration::from_secs(20);

pub fn wait_for<T>(
    what: &str,
    c: &Cluster,
    within: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let until = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < until,
            "{what}: not within {within:?}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The status of the (only) queue group on node `id`.
pub fn queue_group(c: &Cluster, id: u64) -> Option<Value> {
    let s = c.node(id).status()?;
    s["groups"]
        .as_array()?
        .iter()
        .find(|g| g["group"].as_str().is_some_and(|n| n.starts_with("queue-")))
        .cloned()
}

/// The queue group's leader as every node of `ids` sees it (all agreeing, not `not`).
pub fn queue_leader(c: &Cluster, ids: &[u64], not: Option<u64>) -> u64 {
    wait_for("an agreed queue leader", c, ELECTION, || {
        let leaders: Vec<Option<u64>> = ids
            .iter()
            .map(|id| queue_group(c, *id).and_then(|g| g["leader"].as_u64()))
            .collect();
        let first = (*leaders.first()?)?;
        (leaders.iter().all(|l| *l == Some(first)) && Some(first) != not && ids.contains(&first))
            .then_some(first)
    })
}

/// The queue's message count in node `id`'s copy (its management API).
pub fn messages(c: &Cluster, id: u64) -> Option<u64> {
    queue_messages(c, id, "orders")
}

/// How many messages node `id`'s copy of queue `name` holds (its management API).
pub fn queue_messages(c: &Cluster, id: u64, name: &str) -> Option<u64> {
    c.node(id).api_get(&format!("/api/queues/%2F/{name}"))?["messages"].as_u64()
}

pub fn applied(c: &Cluster, id: u64) -> Option<u64> {
    queue_group(c, id)?["last_applied"].as_u64()
}

pub async fn connect(port: u16) -> Connection {
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    for _ in 0..200 {
        if let Ok(c) = Connection::connect(&url, ConnectionProperties::default()).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no broker on port {port}");
}

/// The runtime the tests' AMQP clients run on (the tests themselves are plain threads).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A connection to `port` and a channel on it in confirm mode.
pub async fn confirm_channel(port: u16) -> (Connection, Channel) {
    let conn = connect(port).await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (conn, ch)
}

pub fn quorum() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    t
}

/// `x-queue-type: quorum` and `extra` arguments.
pub fn quorum_with(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = quorum();
    for (k, v) in extra {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

/// Declares durable queue `name` with `arguments` through the node on AMQP port `port`.
pub async fn declare(port: u16, name: &str, arguments: FieldTable) {
    let conn = connect(port).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(name.into(), durable(), arguments)
        .await
        .unwrap();
    conn.close(200, "bye".into()).await.unwrap();
}

pub fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Publishes `bodies` to `queue` with confirms; returns how many were acked.
pub async fn publish_all(ch: &Channel, queue: &str, bodies: &[String]) -> usize {
    let mut confirms = Vec::new();
    for b in bodies {
        let c = ch
            .basic_publish(
                "".into(),
                queue.into(),
                Default::default(),
                b.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap();
        confirms.push(c);
    }
    let mut acked = 0;
    for c in confirms {
        let confirm = tokio::time::timeout(Duration::from_secs(30), c)
            .await
            .expect("a confirm within 30 s");
        acked += confirm.unwrap().is_ack() as usize;
    }
    acked
}

/// Consumes from `queue` until `want` distinct bodies have arrived (acking each), or
/// `within` passes; returns every body received, duplicates included.
pub async fn consume(ch: &Channel, queue: &str, want: usize, within: Duration) -> Vec<String> {
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut distinct = BTreeSet::new();
    let until = tokio::time::Instant::now() + within;
    while distinct.len() < want {
        let next = tokio::time::timeout_at(until, consumer.next()).await;
        let Ok(Some(Ok(d))) = next else {
            break;
        };
        let body = String::from_utf8(d.data.clone()).unwrap();
        distinct.insert(body.clone());
        got.push(body);
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    got
}

pub async fn get(ch: &Channel) -> Option<lapin::message::BasicGetMessage> {
    ch.basic_get("orders".into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
}

/// basic.get of `orders` every 100 ms until a message comes, for at most `within`.
pub async fn get_within(ch: &Channel, within: Duration) -> Option<lapin::message::BasicGetMessage> {
    let until = Instant::now() + within;
    loop {
        if let Some(m) = get(ch).await {
            return Some(m);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn nack_requeue(ch: &Channel, tag: u64) {
    let requeue = BasicNackOptions {
        multiple: false,
        requeue: true,
    };
    ch.basic_nack(tag, requeue).await.unwrap();
}

pub fn delivery_count(props: &BasicProperties) -> Option<i64> {
    match props.headers().as_ref()?.inner().get("x-delivery-count")? {
        AMQPValue::LongLongInt(n) => Some(*n),
        other => panic!("x-delivery-count of an unexpected type: {other:?}"),
    }
}

pub fn bodies(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m-{i:04}")).collect()
}

/// Node `id`'s RabbitMQ-style name, as its management API gives it.
pub fn node_name(c: &Cluster, id: u64) -> String {
    let overview = c.node(id).api_get("/api/overview").expect("an overview");
    overview["node"].as_str().expect("a node name").to_owned()
}

/// The queue `orders` as node `id`'s management API places it: its `node`, `leader`,
/// `members` and `online` (both sorted).
pub fn placement(c: &Cluster, id: u64) -> Option<(String, String, Vec<String>, Vec<String>)> {
    let q = c.node(id).api_get("/api/queues/%2F/orders")?;
    let names = |key: &str| -> Option<Vec<String>> {
        let mut v: Vec<String> = q[key]
            .as_array()?
            .iter()
            .map(|n| n.as_str().map(String::from))
            .collect::<Option<_>>()?;
        v.sort();
        Some(v)
    };
    let text = |key: &str| q[key].as_str().map(String::from);
    Some((
        text("node")?,
        text("leader")?,
        names("members")?,
        names("online")?,
    ))
}

/// `node-is-quorum-critical` on node `id`: its status code and the queues it names.
pub fn quorum_critical(c: &Cluster, id: u64) -> Option<(u16, Vec<String>)> {
    let (status, body) = c
        .node(id)
        .api_status("/api/health/checks/node-is-quorum-critical")?;
    let queues = body["queues"].as_array().map_or_else(Vec::new, |qs| {
        qs.iter()
            .filter_map(|q| q["name"].as_str().map(String::from))
            .collect()
    });
    Some((status, queues))
}

/// The queue groups node `id` has open.
pub fn queue_groups(c: &Cluster, id: u64) -> Option<Vec<String>> {
    let s = c.node(id).status()?;
    Some(
        s["groups"]
            .as_array()?
            .iter()
            .filter_map(|g| g["group"].as_str())
            .filter(|n| n.starts_with("queue-"))
            .map(str::to_owned)
            .collect(),
    )
}

/// Publishes `bodies` to `queue` in one transaction and commits it: the commit's answer.
pub async fn publish_in_tx(ch: &Channel, queue: &str, bodies: &[String]) -> lapin::Result<()> {
    for b in bodies {
        ch.basic_publish(
            "".into(),
            queue.into(),
            Default::default(),
            b.as_bytes(),
            BasicProperties::default(),
        )
        .await?;
    }
    ch.tx_commit().await
}

/// Each queue group's (leader, term) as node `id` sees it.
pub fn group_leaders(c: &Cluster, id: u64) -> Option<BTreeMap<String, (Option<u64>, u64)>> {
    let s = c.node(id).status()?;
    Some(
        s["groups"]
            .as_array()?
            .iter()
            .filter(|g| g["group"].as_str().is_some_and(|n| n.starts_with("queue-")))
            .map(|g| {
                let name = g["group"].as_str().unwrap_or_default().to_owned();
                (
                    name,
                    (g["leader"].as_u64(), g["term"].as_u64().unwrap_or(0)),
                )
            })
            .collect(),
    )
}

/// Waits until nodes `ids` hold `groups` queue groups and agree on every group's leader
/// (one of `ids`) and term; returns that view.
pub fn agreed_leaders(
    c: &Cluster,
    ids: &[u64],
    groups: usize,
) -> BTreeMap<String, (Option<u64>, u64)> {
    wait_for("every group led, all nodes agreeing", c, ELECTION, || {
        let views: Vec<_> = ids.iter().map(|id| group_leaders(c, *id)).collect();
        let first = views.first()?.clone()?;
        let settled = first.len() == groups
            && first
                .values()
                .all(|(l, _)| l.is_some_and(|l| ids.contains(&l)))
            && views.iter().all(|v| v.as_ref() == Some(&first));
        settled.then_some(first)
    })
}

/// Declares quorum queues `q0`…`q{n-1}` through node 1.
pub fn declare_queues(c: &Cluster, n: usize) {
    let rt = runtime();
    rt.block_on(async {
        for i in 0..n {
            declare(c.node(1).amqp, &format!("q{i}"), quorum()).await;
        }
    });
}

/// Quorum queue `orders` declared through node 1 of three with
/// `x-quorum-initial-group-size` 2, once two nodes hold its group and agree on its
/// leader: the two members, the node that does not hold it, and the leader.
pub fn orders_on_two_of_three(c: &Cluster, rt: &tokio::runtime::Runtime) -> (Vec<u64>, u64, u64) {
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    let two = quorum_with(&[("x-quorum-initial-group-size", AMQPValue::LongInt(2))]);
    rt.block_on(declare(c.node(1).amqp, "orders", two));
    let members: Vec<u64> = wait_for("the group on two nodes", c, ELECTION, || {
        let holding: Vec<u64> = (1..=3).filter(|id| queue_group(c, *id).is_some()).collect();
        (holding.len() == 2).then_some(holding)
    });
    let outsider = (1..=3).find(|id| !members.contains(id)).unwrap();
    let leader = queue_leader(c, &members, None);
    (members, outsider, leader)
}

/// What a node lists, by kind (`definitions`).
pub type Definitions = BTreeMap<&'static str, BTreeSet<String>>;

/// What a node lists, by kind: exchanges, quorum queues, bindings (the default
/// exchange's left out), users, vhosts, permissions. `None` if it does not answer.
pub fn definitions(c: &Cluster, id: u64) -> Option<Definitions> {
    let node = c.node(id);
    let list = |path: &str, item: &dyn Fn(&Value) -> Option<String>| -> Option<BTreeSet<String>> {
        let all = node.api_get(path)?;
        Some(all.as_array()?.iter().filter_map(item).collect())
    };
    let text = |v: &Value, key: &str| v[key].as_str().unwrap_or("?").to_string();
    let mut out = BTreeMap::new();
    out.insert(
        "exchanges",
        list("/api/exchanges", &|e| {
            let name = text(e, "name");
            let ours = !name.is_empty() && !name.starts_with("amq.");
            ours.then(|| format!("{} {name} {}", text(e, "vhost"), text(e, "type")))
        })?,
    );
    out.insert(
        "queues",
        list("/api/queues", &|q| {
            Some(format!(
                "{} {} {}",
                text(q, "vhost"),
                text(q, "name"),
                text(q, "type")
            ))
        })?,
    );
    out.insert(
        "bindings",
        list("/api/bindings", &|b| {
            (b["source"] != "").then(|| {
                let (vhost, source) = (text(b, "vhost"), text(b, "source"));
                let (kind, dest) = (text(b, "destination_type"), text(b, "destination"));
                format!("{vhost} {source}->{kind}:{dest}/{}", text(b, "routing_key"))
            })
        })?,
    );
    out.insert("users", list("/api/users", &|u| Some(text(u, "name")))?);
    out.insert("vhosts", list("/api/vhosts", &|v| Some(text(v, "name")))?);
    out.insert(
        "permissions",
        list("/api/permissions", &|p| {
            let (v, u) = (text(p, "vhost"), text(p, "user"));
            let rights = [text(p, "configure"), text(p, "write"), text(p, "read")];
            Some(format!("{v} {u} {rights:?}"))
        })?,
    );
    Some(out)
}

/// The definitions of nodes `ids`, if all answer and list the same; else what differs.
pub fn agreed(c: &Cluster, ids: &[u64]) -> Result<Definitions, String> {
    let views: Vec<_> = ids.iter().map(|id| (*id, definitions(c, *id))).collect();
    let Some(first) = views[0].1.clone() else {
        return Err(format!("node {} does not answer", ids[0]));
    };
    for (id, view) in views.iter().skip(1) {
        let Some(view) = view else {
            return Err(format!("node {id} does not answer"));
        };
        for (kind, items) in &first {
            let theirs = &view[kind];
            if items != theirs {
                let only_1: Vec<_> = items.difference(theirs).collect();
                let only_n: Vec<_> = theirs.difference(items).collect();
                return Err(format!(
                    "{kind}: only on node {} {only_1:?}, only on node {id} {only_n:?}",
                    ids[0]
                ));
            }
        }
    }
    Ok(first)
}
