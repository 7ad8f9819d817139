//! How a cluster notices a quorum queue's missing leader (`src/cluster/detector.rs`): one
//! beacon per node pair instead of a heartbeat per group. Three real nodes behind the
//! test's proxies, which count the bytes each link carries.

use crate::cluster_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cluster_support::quorum::*;
use cluster_support::Cluster;

/// With per-group heartbeats, 60 idle groups on three nodes would send 480 appends a
/// second and their answers (about 120 KB/s); beacons are 24 small requests a second.
/// And no group changes leader or term while nothing happens.
#[test]
fn idle_queue_groups_keep_their_leaders_with_no_traffic_per_group() {
    const QUEUES: usize = 60;
    let c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    declare_queues(&c, QUEUES);
    agreed_leaders(&c, &[1, 2, 3], QUEUES);
    // Let declarations and first elections finish replicating.
    std::thread::sleep(Duration::from_secs(2));
    let before = agreed_leaders(&c, &[1, 2, 3], QUEUES);
    let (bytes, at) = (c.link_bytes(), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let rate = (c.link_bytes() - bytes) as f64 / at.elapsed().as_secs_f64();
    let after = agreed_leaders(&c, &[1, 2, 3], QUEUES);
    assert_eq!(before, after, "a group changed leader or term while idle");
    println!("idle links with {QUEUES} quorum queues: {rate:.0} bytes/s");
    assert!(
        rate < 30_000.0,
        "idle links carried {rate:.0} bytes/s with {QUEUES} queues"
    );
}

/// A leader that stops (SIGSTOP: its connections stay open, nothing answers) loses its
/// groups to the two others, which take publishes; resumed, it follows the new leaders.
#[test]
fn a_paused_leaders_groups_elect_new_leaders_and_it_follows_when_resumed() {
    const QUEUES: usize = 12;
    let c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    declare_queues(&c, QUEUES);
    let before = agreed_leaders(&c, &[1, 2, 3], QUEUES);
    let mut led: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (group, (leader, _)) in &before {
        led.entry(leader.unwrap()).or_default().push(group.clone());
    }
    let (paused, groups) = led
        .iter()
        .max_by_key(|(_, g)| g.len())
        .map(|(n, g)| (*n, g.clone()))
        .unwrap();
    c.node(paused).pause();
    let others: Vec<u64> = (1..=3).filter(|id| *id != paused).collect();
    let at = Instant::now();
    let during = agreed_leaders(&c, &others, QUEUES);
    println!(
        "node {paused} paused; its {} groups had new leaders after {:?}",
        groups.len(),
        at.elapsed()
    );
    for g in &groups {
        assert!(during[g].1 > before[g].1, "{g}: no new term");
    }
    // Every queue takes a confirmed publish from a node that is up.
    let rt = runtime();
    rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(others[0]).amqp).await;
        for i in 0..QUEUES {
            let queue = format!("q{i}");
            let n = publish_all(&ch, &queue, &bodies(0..1)).await;
            assert_eq!(n, 1, "{queue}: the publish was not confirmed");
        }
    });
    c.node(paused).resume();
    let after = agreed_leaders(&c, &[1, 2, 3], QUEUES);
    for g in &groups {
        assert_ne!(after[g].0, Some(paused), "{g}: led by the resumed node");
    }
    wait_for("every copy holding its message", &c, ELECTION, || {
        (1..=3)
            .all(|id| (0..QUEUES).all(|i| queue_messages(&c, id, &format!("q{i}")) == Some(1)))
            .then_some(())
    });
}
