//! Exchanges and bindings in a cluster (issue 16): three `warren` processes on loopback
//! (a fault-injecting proxy on every link, `cluster_support`) and lapin. An exchange
//! declared on one node, and a binding from it to a quorum queue or to another exchange,
//! are on every node, so a publisher on any node routes through them; a binding to a
//! classic queue stays on that queue's node. Declarations and deletions made on both sides
//! of a partition, and while a node is down, end with every node agreeing.

use crate::cluster_support;

use std::collections::BTreeSet;
use std::time::Duration;

use cluster_support::quorum::*;
use cluster_support::Cluster;
use lapin::options::{
    BasicPublishOptions, ExchangeBindOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, ExchangeKind};

/// A node's exchanges (the predeclared ones left out) and bindings (the default
/// exchange's left out), as its management API lists them.
type Topology = (BTreeSet<String>, BTreeSet<String>);

fn topology(c: &Cluster, id: u64) -> Option<Topology> {
    let node = c.node(id);
    let exchanges = node.api_get("/api/exchanges/%2F")?;
    let bindings = node.api_get("/api/bindings/%2F")?;
    let exchanges = exchanges
        .as_array()?
        .iter()
        .filter_map(|e| e["name"].as_str())
        .filter(|n| !n.is_empty() && !n.starts_with("amq."))
        .map(String::from)
        .collect();
    let bindings = bindings
        .as_array()?
        .iter()
        .filter(|b| b["source"] != "")
        .map(|b| {
            format!(
                "{}->{}:{}/{}",
                b["source"].as_str().unwrap_or("?"),
                b["destination_type"].as_str().unwrap_or("?"),
                b["destination"].as_str().unwrap_or("?"),
                b["routing_key"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    Some((exchanges, bindings))
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Waits until every node of `ids` has topology `want`.
fn wait_topology(c: &Cluster, ids: &[u64], want: &Topology) {
    wait_for("every node with the topology", c, ELECTION, || {
        ids.iter()
            .all(|id| topology(c, *id).as_ref() == Some(want))
            .then_some(())
    });
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

async fn channel(port: u16) -> (lapin::Connection, Channel) {
    let conn = connect(port).await;
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

/// Publishes `n` mandatory messages to `exchange` with `key` and confirms (bodies `TAG-I`):
/// how many came back unroutable.
async fn publish_mandatory(ch: &Channel, exchange: &str, key: &str, tag: &str, n: usize) -> usize {
    let mut returned = 0;
    for i in 0..n {
        let mandatory = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let body = format!("{tag}-{i}");
        let confirm = ch
            .basic_publish(
                exchange.into(),
                key.into(),
                mandatory,
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(30), confirm).await {
            Ok(Ok(Confirmation::Ack(None))) => {}
            Ok(Ok(Confirmation::Ack(Some(_)))) => returned += 1,
            other => panic!("publish {i} to {exchange}: {other:?}"),
        }
    }
    returned
}

#[test]
fn exchanges_and_bindings_declared_on_one_node_route_on_every_node() {
    let c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    let rt = runtime();
    let none = FieldTable::default;

    rt.block_on(async {
        let (_conn, ch) = channel(c.node(1).amqp).await;
        ch.queue_declare("orders".into(), durable(), quorum())
            .await
            .unwrap();
        ch.queue_declare("audit-here".into(), durable(), none())
            .await
            .unwrap();
        let (topic, fanout) = (ExchangeKind::Topic, ExchangeKind::Fanout);
        ch.exchange_declare("shop".into(), topic, durable_exchange(), none())
            .await
            .unwrap();
        ch.exchange_declare("all".into(), fanout, durable_exchange(), none())
            .await
            .unwrap();
        let bind = QueueBindOptions::default();
        ch.queue_bind(
            "orders".into(),
            "shop".into(),
            "order.*".into(),
            bind,
            none(),
        )
        .await
        .unwrap();
        let e2e = ExchangeBindOptions::default();
        ch.exchange_bind("all".into(), "shop".into(), "#".into(), e2e, none())
            .await
            .unwrap();
        // A classic queue is node 1's alone, and so is its binding.
        ch.queue_bind("audit-here".into(), "all".into(), "".into(), bind, none())
            .await
            .unwrap();
    });
    let shared = ["shop->queue:orders/order.*", "shop->exchange:all/#"];
    let everywhere = (set(&["all", "shop"]), set(&shared));
    let on_node_1 = (
        set(&["all", "shop"]),
        set(&[shared[0], shared[1], "all->queue:audit-here/"]),
    );
    wait_topology(&c, &[2, 3], &everywhere);
    wait_topology(&c, &[1], &on_node_1);

    // Published on nodes 2 and 3, which declared nothing: routed to the quorum queue (a
    // mandatory message with nowhere to go would come back), confirmed by its group.
    let leader = queue_leader(&c, &[1, 2, 3], None);
    let got = rt.block_on(async {
        for id in [2, 3] {
            let (_conn, ch) = confirm_channel(c.node(id).amqp).await;
            let tag = format!("node{id}");
            assert_eq!(
                publish_mandatory(&ch, "shop", "order.new", &tag, 20).await,
                0
            );
        }
        let (_conn, ch) = channel(c.node(leader).amqp).await;
        consume(&ch, "orders", 40, Duration::from_secs(20)).await
    });
    let distinct: BTreeSet<String> = got.into_iter().collect();
    assert_eq!(distinct.len(), 40, "every message routed on nodes 2 and 3");

    // Unbound on node 3: nodes 1 and 2 stop routing there too.
    rt.block_on(async {
        let (_conn, ch) = channel(c.node(3).amqp).await;
        ch.queue_unbind("orders".into(), "shop".into(), "order.*".into(), none())
            .await
            .unwrap();
    });
    let unbound = (set(&["all", "shop"]), set(&[shared[1]]));
    wait_topology(&c, &[2, 3], &unbound);
    rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(2).amqp).await;
        // Through "all" to node 1's classic queue only: not routable on node 2.
        assert_eq!(
            publish_mandatory(&ch, "shop", "order.late", "late", 3).await,
            3
        );
    });

    // Deleted on node 2: gone from every node, with the bindings from and to it.
    rt.block_on(async {
        let (_conn, ch) = channel(c.node(2).amqp).await;
        ch.exchange_delete("shop".into(), ExchangeDeleteOptions::default())
            .await
            .unwrap();
    });
    wait_topology(&c, &[2, 3], &(set(&["all"]), set(&[])));
    wait_topology(&c, &[1], &(set(&["all"]), set(&["all->queue:audit-here/"])));
}

#[test]
fn declarations_on_both_sides_of_a_partition_and_a_node_down_end_with_every_node_agreeing() {
    let mut c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    let rt = runtime();
    let none = FieldTable::default;
    let bind = QueueBindOptions::default;
    let fanout = || ExchangeKind::Fanout;

    rt.block_on(async {
        let (_conn, ch) = channel(c.node(1).amqp).await;
        for q in ["q0", "q1"] {
            ch.queue_declare(q.into(), durable(), quorum())
                .await
                .unwrap();
        }
        ch.exchange_declare("shared".into(), fanout(), durable_exchange(), none())
            .await
            .unwrap();
        // Deleted and declared again at once, then bound to a classic queue of node 1:
        // node 1 applying its own deletion after that would take the binding.
        ch.queue_declare("local".into(), durable(), none())
            .await
            .unwrap();
        for _ in 0..2 {
            ch.exchange_declare("again".into(), fanout(), durable_exchange(), none())
                .await
                .unwrap();
            ch.exchange_delete("again".into(), ExchangeDeleteOptions::default())
                .await
                .unwrap();
        }
        ch.exchange_declare("again".into(), fanout(), durable_exchange(), none())
            .await
            .unwrap();
        ch.queue_bind("local".into(), "again".into(), "".into(), bind(), none())
            .await
            .unwrap();
    });
    wait_topology(&c, &[2, 3], &(set(&["again", "shared"]), set(&[])));
    let local_binding = set(&["again->queue:local/"]);
    wait_topology(
        &c,
        &[1],
        &(set(&["again", "shared"]), local_binding.clone()),
    );

    // Node 3 cut off: the majority and the minority each change the topology.
    c.isolate(3);
    rt.block_on(async {
        let (_conn, ch) = channel(c.node(1).amqp).await;
        for i in 0..10 {
            let x = format!("x{i}");
            ch.exchange_declare(x.as_str().into(), fanout(), durable_exchange(), none())
                .await
                .unwrap();
            let q = format!("q{}", i % 2);
            ch.queue_bind(q.into(), x.into(), "".into(), bind(), none())
                .await
                .unwrap();
        }
        for i in 0..5 {
            let x = format!("x{i}");
            ch.exchange_delete(x.into(), ExchangeDeleteOptions::default())
                .await
                .unwrap();
        }
        ch.queue_bind("q0".into(), "shared".into(), "".into(), bind(), none())
            .await
            .unwrap();

        let (_conn, ch) = channel(c.node(3).amqp).await;
        for i in 0..4 {
            let m = format!("m{i}");
            ch.exchange_declare(m.into(), fanout(), durable_exchange(), none())
                .await
                .unwrap();
        }
        for i in 0..3 {
            let (dest, source) = (format!("m{}", i + 1), format!("m{i}"));
            let e2e = ExchangeBindOptions::default();
            ch.exchange_bind(dest.into(), source.into(), "".into(), e2e, none())
                .await
                .unwrap();
        }
        // Deleted in the minority while the majority binds to it: deleted everywhere,
        // with that binding, once the minority's deletion commits.
        ch.exchange_delete("shared".into(), ExchangeDeleteOptions::default())
            .await
            .unwrap();
    });

    // Node 2 goes down (no majority left at all) and node 1 changes more meanwhile.
    c.node_mut(2).kill();
    rt.block_on(async {
        let (_conn, ch) = channel(c.node(1).amqp).await;
        ch.exchange_declare("late".into(), fanout(), durable_exchange(), none())
            .await
            .unwrap();
        ch.queue_bind("q1".into(), "late".into(), "k".into(), bind(), none())
            .await
            .unwrap();
    });
    std::thread::sleep(Duration::from_secs(2));
    c.node_mut(2).start();
    c.heal_all();

    let exchanges = [
        "again", "late", "m0", "m1", "m2", "m3", "x5", "x6", "x7", "x8", "x9",
    ];
    let bindings = [
        "late->queue:q1/k",
        "m0->exchange:m1/",
        "m1->exchange:m2/",
        "m2->exchange:m3/",
        "x5->queue:q1/",
        "x6->queue:q0/",
        "x7->queue:q1/",
        "x8->queue:q0/",
        "x9->queue:q1/",
    ];
    wait_topology(&c, &[2, 3], &(set(&exchanges), set(&bindings)));
    let mut on_node_1 = set(&bindings);
    on_node_1.extend(local_binding);
    wait_topology(&c, &[1], &(set(&exchanges), on_node_1));
}

/// A node away while the metadata group took over 5,000 changes (openraft snapshots its
/// state every 5,000 entries and keeps 1,000 after the snapshot) comes back behind the
/// leader's purged log: it can only catch up by installing the group's snapshot. It
/// then lists what every other node lists: what was made while it was away, and not
/// what was deleted (an exchange with its binding, a user, a vhost).
#[test]
fn a_node_behind_the_purged_metadata_log_catches_up_from_the_snapshot() {
    let mut c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    let rt = runtime();
    let none = FieldTable::default;
    let fanout = || ExchangeKind::Fanout;
    let api = |c: &Cluster, id: u64, method: &str, path: &str, body: Option<serde_json::Value>| {
        let node = c.node(id);
        let answer = node.api_call(method, path, body.as_ref(), "guest:guest");
        answer.map(|(status, _)| status)
    };
    rt.block_on(async {
        let (_conn, ch) = channel(c.node(1).amqp).await;
        ch.queue_declare("kept".into(), durable(), quorum())
            .await
            .unwrap();
        for x in ["gone", "stays"] {
            ch.exchange_declare(x.into(), fanout(), durable_exchange(), none())
                .await
                .unwrap();
            let bind = QueueBindOptions::default();
            ch.queue_bind("kept".into(), x.into(), "".into(), bind, none())
                .await
                .unwrap();
        }
    });
    let user = serde_json::json!({"password": "pw", "tags": ""});
    assert_eq!(
        api(&c, 1, "PUT", "/api/users/gone-user", Some(user)),
        Some(201)
    );
    assert_eq!(api(&c, 1, "PUT", "/api/vhosts/gone-vhost", None), Some(201));
    wait_for("node 3 with the first definitions", &c, ELECTION, || {
        agreed(&c, &[1, 2, 3]).ok()
    });
    let away_at = c.node(3).meta().unwrap()["last_log_index"]
        .as_u64()
        .unwrap();
    c.node_mut(3).kill();

    rt.block_on(async {
        churn_past_a_snapshot(&c).await;
        let (_conn, ch) = channel(c.node(2).amqp).await;
        ch.exchange_delete("gone".into(), ExchangeDeleteOptions::default())
            .await
            .unwrap();
    });
    assert_eq!(
        api(&c, 2, "DELETE", "/api/users/gone-user", None),
        Some(204)
    );
    assert_eq!(
        api(&c, 2, "DELETE", "/api/vhosts/gone-vhost", None),
        Some(204)
    );
    let purged = wait_for("the logs purged past node 3", &c, ELECTION * 6, || {
        let purged = |id: u64| c.node(id).meta()?["purged"].as_u64();
        let purged = purged(1)?.min(purged(2)?);
        (purged > away_at).then_some(purged)
    });

    c.node_mut(3).start();
    let defs = wait_for("node 3 agreeing", &c, ELECTION * 3, || {
        agreed(&c, &[1, 2, 3]).ok()
    });
    let snapshot = c.node(3).meta().unwrap()["snapshot"].as_u64();
    assert!(
        snapshot.is_some_and(|s| s >= purged),
        "node 3's snapshot {snapshot:?}: it did not install the leader's (purged to {purged})"
    );
    let exchanges = &defs["exchanges"];
    assert!(exchanges.contains("/ stays fanout"), "{exchanges:?}");
    assert!(exchanges.contains("/ churn-2-1200 fanout"), "{exchanges:?}");
    assert!(!exchanges.contains("/ gone fanout"), "{exchanges:?}");
    assert_eq!(exchanges.len(), 1 + 2 * 13, "{exchanges:?}");
    assert_eq!(
        defs["bindings"],
        ["/ stays->queue:kept/".to_string()].into_iter().collect(),
    );
    assert!(!defs["users"].contains("gone-user"), "{:?}", defs["users"]);
    assert!(
        !defs["vhosts"].contains("gone-vhost"),
        "{:?}",
        defs["vhosts"]
    );
    assert!(
        defs["queues"].contains("/ kept quorum"),
        "{:?}",
        defs["queues"]
    );
}

/// Over 5,000 metadata entries through nodes 1 and 2 (openraft snapshots the metadata
/// state every 5,000 and keeps 1,000 after it): exchanges declared and deleted, every
/// hundredth kept (`churn-{node}-{i}`).
async fn churn_past_a_snapshot(c: &Cluster) {
    let churn = |id: u64| {
        let port = c.node(id).amqp;
        async move {
            let (_conn, ch) = channel(port).await;
            for i in 0..1300 {
                let x = format!("churn-{id}-{i}");
                let (kind, none) = (ExchangeKind::Fanout, FieldTable::default());
                ch.exchange_declare(x.as_str().into(), kind, durable_exchange(), none)
                    .await
                    .unwrap();
                if i % 100 != 0 {
                    let delete = ExchangeDeleteOptions::default();
                    ch.exchange_delete(x.into(), delete).await.unwrap();
                }
            }
        }
    };
    tokio::join!(churn(1), churn(2));
}

/// A quorum queue a client declared on node 3 while node 3 could reach the others but
/// hear nothing back from them (the links they dial to it cut), deleted through node 1
/// before node 3 read either entry, and then over 5,000 metadata entries: node 3 catches
/// up from the group's snapshot, which has neither entry (both are behind it). The queue
/// node 3 made for its client must go: no entry will ever name it again, and it would
/// stay on node 3 alone (entry by entry, `Replication::drop_leftover` takes it away).
/// Meanwhile another quorum queue, open on node 3 before, was deleted and declared again
/// (a new group): node 3 must hold it in its new group, not drop it.
#[test]
fn a_quorum_queue_declared_and_deleted_behind_a_snapshot_does_not_stay_on_its_node() {
    let c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], Some(3), ELECTION);
    let rt = runtime();
    rt.block_on(declare(c.node(1).amqp, "again", quorum()));
    wait_for("the queue on node 3", &c, ELECTION, || {
        c.node(3).api_get("/api/queues/%2F/again").map(drop)
    });
    c.links[&(1, 3)].cut();
    c.links[&(2, 3)].cut();
    let away_at = c.node(3).meta().unwrap()["last_log_index"]
        .as_u64()
        .unwrap();
    rt.block_on(async {
        let (_conn, ch) = channel(c.node(3).amqp).await;
        ch.queue_declare("left".into(), durable(), quorum())
            .await
            .unwrap();
    });
    // Node 3's declaration reaches the others: they make the queue.
    wait_for("the queue on node 1", &c, ELECTION, || {
        c.node(1).api_get("/api/queues/%2F/left").map(drop)
    });
    rt.block_on(async {
        let (_conn, ch) = channel(c.node(1).amqp).await;
        for name in ["left", "again"] {
            ch.queue_delete(name.into(), QueueDeleteOptions::default())
                .await
                .unwrap();
        }
        ch.queue_declare("again".into(), durable(), quorum())
            .await
            .unwrap();
        let (_conn, ch) = confirm_channel(c.node(1).amqp).await;
        assert_eq!(publish_all(&ch, "again", &bodies(0..1)).await, 1);
        churn_past_a_snapshot(&c).await;
    });
    let purged = wait_for("the logs purged past node 3", &c, ELECTION * 6, || {
        let purged = |id: u64| c.node(id).meta()?["purged"].as_u64();
        let purged = purged(1)?.min(purged(2)?);
        (purged > away_at).then_some(purged)
    });
    assert!(
        c.node(3).api_get("/api/queues/%2F/left").is_some(),
        "node 3 lost its client's queue before it heard of the deletion"
    );

    c.heal_all();
    wait_for("node 3 past the purge", &c, ELECTION * 3, || {
        let snapshot = c.node(3).meta()?["snapshot"].as_u64()?;
        (snapshot >= purged).then_some(())
    });
    wait_for("the queue gone from node 3", &c, ELECTION, || {
        let (status, _) = c.node(3).api_status("/api/queues/%2F/left")?;
        (status == 404).then_some(())
    });
    wait_for(
        "node 3's copy of the queue declared again",
        &c,
        ELECTION,
        || (queue_messages(&c, 3, "again")? == 1).then_some(()),
    );
}

/// A node cut off declares an exchange and binds a quorum queue to it (its clients are
/// answered; the changes wait for the majority) and is killed before the cut heals: the
/// changes never reached the group. Restarted, it sends them again once it has caught up,
/// and every node has them; an exchange the majority deleted meanwhile, which the node
/// still had, stays deleted.
#[test]
fn a_node_killed_with_changes_not_yet_in_the_cluster_sends_them_again() {
    let mut c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    let rt = runtime();
    let none = FieldTable::default;
    let fanout = || ExchangeKind::Fanout;
    rt.block_on(async {
        let (_conn, ch) = channel(c.node(1).amqp).await;
        ch.queue_declare("orders".into(), durable(), quorum())
            .await
            .unwrap();
        ch.exchange_declare("old".into(), fanout(), durable_exchange(), none())
            .await
            .unwrap();
    });
    wait_topology(&c, &[1, 2, 3], &(set(&["old"]), set(&[])));

    c.isolate(3);
    rt.block_on(async {
        let (_conn, ch) = channel(c.node(3).amqp).await;
        ch.exchange_declare("made-alone".into(), fanout(), durable_exchange(), none())
            .await
            .unwrap();
        let bind = QueueBindOptions::default();
        ch.queue_bind(
            "orders".into(),
            "made-alone".into(),
            "k".into(),
            bind,
            none(),
        )
        .await
        .unwrap();
        let (_conn, ch) = channel(c.node(1).amqp).await;
        ch.exchange_delete("old".into(), ExchangeDeleteOptions::default())
            .await
            .unwrap();
    });
    wait_topology(&c, &[1, 2], &(set(&[]), set(&[])));
    // Node 3 has made them, and still has the exchange the majority deleted.
    let alone = (
        set(&["made-alone", "old"]),
        set(&["made-alone->queue:orders/k"]),
    );
    wait_topology(&c, &[3], &alone);
    c.node_mut(3).kill();
    c.heal_all();
    c.node_mut(3).start();

    let want = (set(&["made-alone"]), set(&["made-alone->queue:orders/k"]));
    wait_topology(&c, &[1, 2, 3], &want);
    let log = std::fs::read_to_string(&c.node(3).log).unwrap();
    assert!(
        log.contains("had not reached the cluster; sent again changes=2"),
        "node 3 did not send its changes again:\n{}",
        c.logs()
    );
}
