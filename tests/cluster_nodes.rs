//! Warren nodes as a cluster (issue 16): three `warren` processes on loopback with a
//! fault-injecting proxy on every link, driven and observed through `warren cluster
//! status|join|leave`. Elections, kill -9 and SIGSTOP of the leader, a partition that
//! isolates the leader, a node joining during it and leaving after.

use crate::cluster_support;

use std::time::{Duration, Instant};

use cluster_support::Cluster;

const ELECTION: Duration = Duration::from_secs(20);

fn table_ids(c: &Cluster, id: u64) -> Vec<u64> {
    let s = c.node(id).status().expect("status");
    s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_u64().unwrap())
        .collect()
}

fn started_at(c: &Cluster, on: u64, of: u64) -> u64 {
    let s = c.node(on).status().expect("status");
    s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == of)
        .map_or(0, |n| n["started_at"].as_u64().unwrap())
}

fn wait_for(what: &str, c: &Cluster, within: Duration, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !ok() {
        assert!(
            Instant::now() < until,
            "{what}: not within {within:?}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn voters(c: &Cluster, id: u64) -> Vec<u64> {
    let m = c.node(id).meta().expect("meta");
    m["voters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

fn applied(c: &Cluster, id: u64) -> Option<u64> {
    c.node(id).meta()?["last_applied"].as_u64()
}

#[test]
fn three_nodes_elect_fail_over_and_catch_up() {
    let mut c = Cluster::new(3, 0);
    let (leader, term) = c.agreed_leader(&[1, 2, 3], None, ELECTION);
    // Every node wrote itself into the node table through the leader.
    wait_for("node table of 3 on every node", &c, ELECTION, || {
        (1..=3).all(|id| table_ids(&c, id) == vec![1, 2, 3])
    });
    assert_eq!(voters(&c, 1), vec![1, 2, 3]);
    let s = c.node(leader).status().unwrap();
    let meta = &s["groups"][0];
    assert_eq!(meta["state"], "leader");
    assert_eq!(meta["lag"].as_array().unwrap().len(), 3, "{meta}");

    // kill -9 the leader: the two others elect one of themselves, in a later term.
    let before = started_at(&c, leader, leader);
    c.node_mut(leader).kill();
    let others: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let killed = Instant::now();
    let (second, term2) = c.agreed_leader(&others, Some(leader), ELECTION);
    eprintln!(
        "leader {leader} killed; node {second} leads after {:?}",
        killed.elapsed()
    );
    assert!(term2 > term);

    // Restarted on its data dir, the old leader follows the new one and catches up,
    // and its new start is in the node table (a write through the new leader).
    c.node_mut(leader).start();
    let (third, _) = c.agreed_leader(&[1, 2, 3], None, ELECTION);
    assert_eq!(
        third, second,
        "a restarted node does not disturb a live leader"
    );
    wait_for("restart recorded", &c, ELECTION, || {
        started_at(&c, second, leader) > before
    });
    wait_for(
        "the restarted node applied what the leader did",
        &c,
        ELECTION,
        || applied(&c, leader).is_some() && applied(&c, leader) == applied(&c, second),
    );

    // The management API lists the cluster's nodes, each with whether it answers now.
    let running = |c: &Cluster, on: u64| -> Vec<(String, bool)> {
        let nodes = c.node(on).api_get("/api/nodes").expect("/api/nodes");
        nodes
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["name"].as_str().unwrap().to_owned(), n["running"] == true))
            .collect()
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let names: Vec<(String, bool)> = (1..=3)
        .map(|id| (format!("warren-{id}@{}", host.trim()), true))
        .collect();
    assert_eq!(running(&c, second), names);
    let down = others.iter().copied().find(|&id| id != second).unwrap();
    c.node_mut(down).kill();
    let listed = running(&c, second);
    assert!(
        listed
            .iter()
            .all(|(n, up)| *up != n.starts_with(&format!("warren-{down}@"))),
        "node {down} down: {listed:?}"
    );
    c.node_mut(down).start();
    c.agreed_leader(&[1, 2, 3], None, ELECTION);

    // SIGSTOP the leader: the others replace it; on SIGCONT it steps down.
    c.node(second).pause();
    let awake: Vec<u64> = (1..=3).filter(|&id| id != second).collect();
    let (fourth, _) = c.agreed_leader(&awake, Some(second), ELECTION);
    c.node(second).resume();
    let (fifth, _) = c.agreed_leader(&[1, 2, 3], None, ELECTION);
    assert_eq!(fifth, fourth);
}

#[test]
fn an_isolated_leader_is_replaced_a_node_joins_and_leaves() {
    let mut c = Cluster::new(3, 1);
    let (leader, term) = c.agreed_leader(&[1, 2, 3], None, ELECTION);
    wait_for("node table of 3", &c, ELECTION, || {
        (1..=3).all(|id| table_ids(&c, id).len() == 3)
    });

    // Cut every link of the leader: the majority elects a new one; the old leader
    // cannot reach anyone.
    c.isolate(leader);
    let majority: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let (new_leader, new_term) = c.agreed_leader(&majority, Some(leader), ELECTION);
    assert!(new_term > term);
    let stale = c.node(leader).meta().unwrap();
    assert_ne!(stale["leader"].as_u64(), Some(new_leader), "{stale}");

    // While it is cut off, node 4 starts and joins through the majority: the membership
    // change commits without the isolated node.
    c.node_mut(4).start();
    let joined = c.node(4).cluster_command(&[
        "join",
        &format!("127.0.0.1:{}", c.node(majority[0]).cluster),
    ]);
    assert!(joined.is_ok(), "{joined:?}\n{}", c.logs());
    wait_for("voters 1-4 on the majority", &c, ELECTION, || {
        majority
            .iter()
            .all(|&id| voters(&c, id) == vec![1, 2, 3, 4])
    });

    // Healed: the old leader learns the new term and membership, and every node agrees,
    // node 4's entry in the node table included.
    c.heal_all();
    let (after, _) = c.agreed_leader(&[1, 2, 3, 4], None, ELECTION);
    assert_ne!(
        after, leader,
        "a node that missed a term cannot win with a stale log"
    );
    wait_for(
        "all four agree on voters and node table",
        &c,
        ELECTION,
        || {
            (1..=4).all(|id| {
                voters(&c, id) == vec![1, 2, 3, 4] && table_ids(&c, id) == vec![1, 2, 3, 4]
            })
        },
    );

    // Node 4 leaves: the voters are 1-3 again on every remaining node.
    let left = c.node(4).cluster_command(&["leave"]);
    assert!(left.is_ok(), "{left:?}");
    wait_for("voters 1-3 again", &c, ELECTION, || {
        (1..=3).all(|id| voters(&c, id) == vec![1, 2, 3])
    });
}

#[test]
fn cluster_commands_refuse_without_a_node() {
    let c = Cluster::new(0, 1);
    // Node 1 of this "cluster" is not started: status cannot reach it (exit 1), and the
    // command says which address it tried.
    let err = c.node(1).cluster_command(&["status"]).unwrap_err();
    assert!(
        err.contains(&format!("127.0.0.1:{}", c.node(1).cluster)),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["cluster", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--node-id"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["--cluster-peers", "2=127.0.0.1:1", "cluster", "status"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "cluster flags without --node-id are a usage error"
    );
}
