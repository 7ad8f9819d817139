//! `warren cluster rebalance` (`src/cluster/transfer.rs`): quorum queues' leaderships move
//! to the nodes that lead fewest, while publishers with confirms keep going, and no
//! confirmed message is lost. Three real nodes behind the test's proxies.

use crate::cluster_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cluster_support::quorum::*;
use cluster_support::Cluster;
use serde_json::Value;

const QUEUES: usize = 12;

/// How many groups each node leads in `view`.
fn led_by(view: &BTreeMap<String, (Option<u64>, u64)>) -> BTreeMap<u64, usize> {
    let mut count = BTreeMap::from([(1, 0), (2, 0), (3, 0)]);
    for (leader, _) in view.values() {
        *count
            .entry(leader.expect("agreed views have leaders"))
            .or_default() += 1;
    }
    count
}

/// Publishes one message to each queue per round, through node 1 with confirms, until
/// `stop`; returns the bodies confirmed (`q{i}-{round}`).
fn publish_until(port: u16, stop: Arc<AtomicBool>) -> BTreeSet<String> {
    runtime().block_on(async {
        let (_conn, ch) = confirm_channel(port).await;
        let mut confirmed = BTreeSet::new();
        let mut round = 0;
        while !stop.load(Ordering::Relaxed) {
            for i in 0..QUEUES {
                let body = format!("q{i}-{round}");
                if publish_all(&ch, &format!("q{i}"), std::slice::from_ref(&body)).await == 1 {
                    confirmed.insert(body);
                }
            }
            round += 1;
        }
        confirmed
    })
}

#[test]
fn rebalance_moves_leaders_to_a_restarted_node_without_losing_confirmed_messages() {
    let mut c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    declare_queues(&c, QUEUES);
    agreed_leaders(&c, &[1, 2, 3], QUEUES);
    // Node 3 goes down: its groups elect leaders among 1 and 2. Back up, it leads none.
    c.node_mut(3).kill();
    agreed_leaders(&c, &[1, 2], QUEUES);
    c.node_mut(3).start();
    let before = agreed_leaders(&c, &[1, 2, 3], QUEUES);
    assert_eq!(led_by(&before)[&3], 0, "{before:?}");
    // Past every leader's lease on its own election (a leader does not vote for another
    // node within it), and node 3's copies caught up.
    std::thread::sleep(Duration::from_secs(3));

    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (port, stop) = (c.node(1).amqp, stop.clone());
        std::thread::spawn(move || publish_until(port, stop))
    };
    std::thread::sleep(Duration::from_millis(500));
    let out = c.node(2).cluster_command(&["rebalance", "--json"]);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let confirmed = publisher.join().expect("the publisher");
    let report: Value = serde_json::from_str(&out.expect("rebalance ran")).expect("JSON");
    println!("rebalance: {report}");
    assert_eq!(report["failed"], serde_json::json!([]), "{report}");
    assert_eq!(report["before"]["3"], 0, "{report}");
    assert_eq!(report["moved"], 4, "{report}");
    for node in ["1", "2", "3"] {
        assert_eq!(report["after"][node], 4, "{report}");
    }

    // Every node agrees: each leads four, in a later term than before for the four moved.
    let after = agreed_leaders(&c, &[1, 2, 3], QUEUES);
    assert_eq!(
        led_by(&after),
        BTreeMap::from([(1, 4), (2, 4), (3, 4)]),
        "{after:?}\n{}",
        c.logs()
    );
    for (group, (leader, term)) in &after {
        if *leader == Some(3) {
            assert!(*term > before[group].1, "{group}: moved without a new term");
        }
    }

    // Every confirmed message is in its queue, once.
    assert!(
        confirmed.len() >= QUEUES,
        "the publisher confirmed {confirmed:?}"
    );
    let rt = runtime();
    let consumed: BTreeSet<String> = rt.block_on(async {
        let conn = connect(c.node(3).amqp).await;
        let mut all = BTreeSet::new();
        for i in 0..QUEUES {
            // `consume` uses one consumer tag: a channel of its own for each queue.
            let ch = conn.create_channel().await.unwrap();
            let queue = format!("q{i}");
            let want = confirmed
                .iter()
                .filter(|b| b.starts_with(&format!("{queue}-")))
                .count();
            let got = consume(&ch, &queue, want, Duration::from_secs(30)).await;
            let distinct: BTreeSet<String> = got.iter().cloned().collect();
            assert_eq!(got.len(), distinct.len(), "{queue}: duplicates in {got:?}");
            all.extend(distinct);
        }
        all
    });
    let lost: Vec<&String> = confirmed.difference(&consumed).collect();
    assert!(lost.is_empty(), "confirmed but not consumed: {lost:?}");
}

/// Rebalanced once, the cluster is balanced: a second rebalance moves nothing, says so
/// in its table, and leaves every leader and term as it was.
#[test]
fn a_second_rebalance_moves_nothing() {
    let c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    declare_queues(&c, 9);
    agreed_leaders(&c, &[1, 2, 3], 9);
    // Past every leader's lease on its own election.
    std::thread::sleep(Duration::from_secs(3));
    let first: Value = serde_json::from_str(
        &c.node(1)
            .cluster_command(&["rebalance", "--json"])
            .expect("rebalance ran"),
    )
    .expect("JSON");
    assert_eq!(first["failed"], serde_json::json!([]), "{first}");
    let balanced = agreed_leaders(&c, &[1, 2, 3], 9);
    assert_eq!(
        led_by(&balanced),
        BTreeMap::from([(1, 3), (2, 3), (3, 3)]),
        "{first}\n{}",
        c.logs()
    );
    let text = c
        .node(3)
        .cluster_command(&["rebalance"])
        .expect("rebalance ran");
    println!("{text}");
    assert!(
        text.contains("Re-balanced the leaders of 9 quorum queues: 0 moved, 0 failed"),
        "{text}"
    );
    assert_eq!(agreed_leaders(&c, &[1, 2, 3], 9), balanced);
}

/// `POST /api/rebalance/queues`, as RabbitMQ's management API: 204 at once to an
/// administrator, the rebalance running on; other methods 405; a user without the
/// administrator tag refused.
#[test]
fn the_management_api_starts_a_rebalance() {
    let mut c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    declare_queues(&c, 6);
    agreed_leaders(&c, &[1, 2, 3], 6);
    c.node_mut(3).kill();
    agreed_leaders(&c, &[1, 2], 6);
    c.node_mut(3).start();
    let before = agreed_leaders(&c, &[1, 2, 3], 6);
    assert_eq!(led_by(&before)[&3], 0, "{before:?}");
    std::thread::sleep(Duration::from_secs(3));

    let node = c.node(2);
    let user = serde_json::json!({"password": "pw", "tags": "monitoring"});
    let made = node.api_call("PUT", "/api/users/watcher", Some(&user), "guest:guest");
    assert_eq!(made.map(|(s, _)| s), Some(201));
    let refused = node.api_call("POST", "/api/rebalance/queues", None, "watcher:pw");
    assert_eq!(refused.map(|(s, _)| s), Some(401), "a monitoring user");
    let get = node.api_call("GET", "/api/rebalance/queues", None, "guest:guest");
    assert_eq!(get.map(|(s, _)| s), Some(405));
    let started = node.api_call("POST", "/api/rebalance/queues", None, "guest:guest");
    assert_eq!(started.map(|(s, _)| s), Some(204));
    wait_for("leaders spread", &c, ELECTION, || {
        let view = agreed_leaders(&c, &[1, 2, 3], 6);
        (led_by(&view) == BTreeMap::from([(1, 2), (2, 2), (3, 2)])).then_some(())
    });
}
