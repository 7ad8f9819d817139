//! Moving a quorum queue's leadership to another member, and `warren cluster rebalance`,
//! which moves leaderships until every node leads about as many queues as the others (as
//! `rabbitmq-queues rebalance quorum` does).
//!
//! openraft 0.9 has no leader transfer, so it is made from what it has. On the leader:
//!
//! 1. New writes to the group wait (`Group::writes`, taken for writing); the ones already
//!    made commit first, since each holds the gate for reading until it has.
//! 2. The leader waits until the target's log matches its own, so that the target's vote
//!    request is not refused for a shorter log.
//! 3. It asks the target to stand (`RpcKind::Stand`); the target calls
//!    `trigger().elect()` and answers once it leads, or fails after `STAND_WAIT`. The old
//!    leader grants the vote (its log is no longer than the target's) and steps down;
//!    with its vote and its own, the target has a majority of three.
//! 4. The writes that waited go on, and are forwarded to the new leader.
//!
//! A leader refuses to vote for another node within its lease (`election_timeout_max`,
//! 1.5 s) of its own election, so a group elected more recently cannot be moved yet;
//! its target then stands again on its own (detector.rs) and wins once the lease is out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::group::{decode, Group};
use super::node::{ClusterNode, NodeStatus};
use super::queue_groups::queue_group_name;
use super::types::QueueRaft;
use super::wire::RpcKind;

/// How long the leader waits for writes in progress and for the target to catch up.
const CATCH_UP_WAIT: Duration = Duration::from_secs(3);
/// How long the target waits to win after standing.
const STAND_WAIT: Duration = Duration::from_secs(3);
/// How long a transfer may take in all, as the node that asked for it waits.
const TRANSFER_WAIT: Duration = Duration::from_secs(10);
/// Transfers a rebalance runs at once.
const TRANSFERS_AT_ONCE: usize = 16;

/// A request to a group's leader: give the leadership to node `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRequest {
    pub to: u64,
}

/// What `warren cluster rebalance` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebalanceReport {
    /// Quorum queues each node led before and after, nodes that answered only.
    pub before: BTreeMap<u64, usize>,
    pub after: BTreeMap<u64, usize>,
    /// Leaderships moved.
    pub moved: usize,
    /// The moves that failed, each as `group: why`.
    pub failed: Vec<String>,
    /// Queue groups without a leader when asked (not counted, not moved).
    pub leaderless: usize,
}

/// One queue group as the rebalance sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Led {
    pub group: String,
    pub leader: u64,
    pub voters: Vec<u64>,
}

/// The moves `(group, from, to)` that leave every node within one leadership of every
/// other node that could take it: repeatedly, the node leading most gives one of its
/// groups to the voter of that group leading least, when that voter leads at least two
/// fewer. Only nodes in `nodes` take leaderships. Each move lowers the sum of the squared
/// counts, so this ends.
pub fn plan(groups: &[Led], nodes: &[u64]) -> Vec<(String, u64, u64)> {
    let mut count = counts(groups, nodes);
    let mut by_leader: BTreeMap<u64, Vec<&Led>> = BTreeMap::new();
    for g in groups {
        by_leader.entry(g.leader).or_default().push(g);
    }
    let mut moves = Vec::new();
    let mut done: Vec<u64> = Vec::new();
    loop {
        let from = count
            .iter()
            .filter(|(n, _)| !done.contains(n))
            .max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n)))
            .map(|(n, c)| (*n, *c));
        let Some((from, most)) = from else { break };
        let led = by_leader.entry(from).or_default();
        let mut best: Option<(usize, usize, u64)> = None; // (count, index in led, to)
        for (i, g) in led.iter().enumerate() {
            for to in g.voters.iter().filter(|v| **v != from && nodes.contains(v)) {
                let c = count[to];
                if c + 2 <= most && best.is_none_or(|(bc, _, bt)| (c, *to) < (bc, bt)) {
                    best = Some((c, i, *to));
                }
            }
        }
        let Some((_, i, to)) = best else {
            done.push(from);
            continue;
        };
        let g = led.swap_remove(i);
        *count.get_mut(&from).expect("counted") -= 1;
        *count.get_mut(&to).expect("counted") += 1;
        moves.push((g.group.clone(), from, to));
        by_leader.entry(to).or_default().push(g);
        done.clear();
    }
    moves
}

/// The queue groups' leaders and voters from each node's own status (a node that says it
/// leads a group is believed over what others last heard), and how many have none.
fn leaders(statuses: &[NodeStatus]) -> (Vec<Led>, usize) {
    let mut best: BTreeMap<String, (u64, Option<Led>)> = BTreeMap::new();
    for s in statuses {
        for g in s.groups.iter().filter(|g| g.group.starts_with("queue-")) {
            let entry = best.entry(g.group.clone()).or_insert((0, None));
            if g.state == "leader" && (entry.1.is_none() || g.term > entry.0) {
                let led = Led {
                    group: g.group.clone(),
                    leader: s.node_id,
                    voters: g.voters.clone(),
                };
                *entry = (g.term, Some(led));
            }
        }
    }
    let leaderless = best.values().filter(|(_, l)| l.is_none()).count();
    (
        best.into_values().filter_map(|(_, l)| l).collect(),
        leaderless,
    )
}

fn counts(groups: &[Led], nodes: &[u64]) -> BTreeMap<u64, usize> {
    let mut count: BTreeMap<u64, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    for g in groups {
        *count.entry(g.leader).or_default() += 1;
    }
    count
}

impl ClusterNode {
    /// Every node's status that answers now, this node's included.
    async fn statuses(&self) -> Vec<NodeStatus> {
        let mut all: Vec<NodeStatus> = self
            .ask_nodes()
            .await
            .into_iter()
            .filter_map(|(_, s)| s)
            .collect();
        all.push(self.status().await);
        all
    }

    /// Moves leaderships until they are spread (see `plan`), and says what it did.
    pub async fn rebalance(self: Arc<Self>) -> RebalanceReport {
        let statuses = self.statuses().await;
        let nodes: Vec<u64> = statuses.iter().map(|s| s.node_id).collect();
        let (groups, leaderless) = leaders(&statuses);
        let before = counts(&groups, &nodes);
        let moves = plan(&groups, &nodes);
        let addresses = self.cluster_addresses().await;
        tracing::info!(
            queues = groups.len(),
            moves = moves.len(),
            "cluster: rebalancing the leaders of quorum queues"
        );
        let mut failed = Vec::new();
        let mut moved = 0;
        for batch in moves.chunks(TRANSFERS_AT_ONCE) {
            let mut running = tokio::task::JoinSet::new();
            for (group, from, to) in batch.iter().cloned() {
                let node = self.clone();
                let from_addr = addresses.get(&from).cloned().unwrap_or_default();
                running.spawn(async move {
                    let result = node.ask_transfer(&group, from, &from_addr, to).await;
                    (group, result)
                });
            }
            while let Some(Ok((group, result))) = running.join_next().await {
                match result {
                    Ok(()) => moved += 1,
                    Err(why) => failed.push(format!("{group}: {why}")),
                }
            }
        }
        let (after_groups, _) = leaders(&self.statuses().await);
        let after = counts(&after_groups, &nodes);
        tracing::info!(
            moved,
            failed = failed.len(),
            "cluster: rebalanced the leaders of quorum queues"
        );
        RebalanceReport {
            before,
            after,
            moved,
            failed,
            leaderless,
        }
    }

    /// Asks `from`, the leader of `group`, to give it to `to` (itself if it is this node).
    async fn ask_transfer(
        &self,
        group: &str,
        from: u64,
        from_addr: &str,
        to: u64,
    ) -> Result<(), String> {
        if from == self.config.node_id {
            return self.transfer(group, to).await;
        }
        let body = serde_json::to_vec(&TransferRequest { to }).map_err(|e| e.to_string())?;
        self.peers
            .peer(from, from_addr)
            .call(RpcKind::Transfer, group, &body, TRANSFER_WAIT)
            .await
            .map(drop)
            .map_err(|e| format!("node {from}: {e}"))
    }

    fn queue_group(&self, name: &str) -> Result<Arc<Group<QueueRaft>>, String> {
        let id = name
            .strip_prefix("queue-")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|id| queue_group_name(*id) == name);
        let groups = self.queue_groups.read().expect("groups");
        id.and_then(|id| groups.get(&id).cloned())
            .ok_or_else(|| format!("no quorum queue group '{name}' here"))
    }

    /// On the leader of `group`: gives the leadership to `to` (see the module's doc).
    pub(super) async fn transfer(&self, group: &str, to: u64) -> Result<(), String> {
        let g = self.queue_group(group)?;
        let deadline = Instant::now() + CATCH_UP_WAIT;
        let (leading, is_voter, addr) = {
            let m = g.raft.metrics().borrow().clone();
            let membership = m.membership_config.membership();
            let addr = membership.get_node(&to).map(|n| n.addr.clone());
            let is_voter = membership.voter_ids().any(|v| v == to);
            (m.state == ServerState::Leader, is_voter, addr)
        };
        if !leading {
            return Err(format!("node {} does not lead it", self.config.node_id));
        }
        if to == self.config.node_id {
            return Ok(());
        }
        let (true, Some(addr)) = (is_voter, addr) else {
            return Err(format!("node {to} is not a voter of it"));
        };
        let _paused = tokio::time::timeout_at(deadline, g.writes.write())
            .await
            .map_err(|_| "writes in progress did not finish in time".to_string())?;
        // An idle group sends nothing (no heartbeats, detector.rs): one round trip tells
        // the leader where a target that was away stands.
        let _ = g.raft.trigger().heartbeat().await;
        let mut metrics = g.raft.metrics();
        loop {
            let caught_up = {
                let m = metrics.borrow_and_update();
                if m.state != ServerState::Leader {
                    return Err("lost the leadership while waiting".into());
                }
                let matched = m.replication.as_ref().and_then(|r| r.get(&to).cloned());
                matched.flatten().map(|l| l.index) == m.last_log_index
            };
            if caught_up {
                break;
            }
            let changed = tokio::time::timeout_at(deadline, metrics.changed()).await;
            if !matches!(changed, Ok(Ok(()))) {
                return Err(format!("node {to} did not catch up in time"));
            }
        }
        self.peers
            .peer(to, &addr)
            .call(
                RpcKind::Stand,
                group,
                &[],
                STAND_WAIT + Duration::from_secs(1),
            )
            .await
            .map(drop)
            .map_err(|e| format!("node {to}: {e}"))
    }

    /// On the target of a transfer: stands for election in `group` and answers once this
    /// node leads it.
    pub(super) async fn stand(&self, group: &str) -> Result<(), String> {
        let g = self.queue_group(group)?;
        g.raft.trigger().elect().await.map_err(|e| e.to_string())?;
        let me = self.config.node_id;
        g.raft
            .wait(Some(STAND_WAIT))
            .metrics(
                |m| m.state == ServerState::Leader && m.current_leader == Some(me),
                "leads",
            )
            .await
            .map(drop)
            .map_err(|_| format!("node {me} stood but did not win"))
    }

    /// Answers the cluster-port requests of this module.
    pub(super) async fn answer_transfer(
        self: Arc<Self>,
        kind: RpcKind,
        group: &str,
        body: &[u8],
    ) -> Result<Vec<u8>, String> {
        match kind {
            RpcKind::Transfer => {
                let req: TransferRequest = decode(body)?;
                self.transfer(group, req.to).await.map(|_| b"{}".to_vec())
            }
            RpcKind::Stand => self.stand(group).await.map(|_| b"{}".to_vec()),
            RpcKind::Rebalance => {
                serde_json::to_vec(&self.rebalance().await).map_err(|e| e.to_string())
            }
            other => Err(format!("{other:?} is not a transfer request")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn led(group: u32, leader: u64, voters: &[u64]) -> Led {
        Led {
            group: format!("queue-{group}"),
            leader,
            voters: voters.to_vec(),
        }
    }

    fn after(groups: &[Led], nodes: &[u64], moves: &[(String, u64, u64)]) -> BTreeMap<u64, usize> {
        let mut moved = groups.to_vec();
        for (group, from, to) in moves {
            let g = moved.iter_mut().find(|g| &g.group == group).expect("moved");
            assert_eq!(g.leader, *from, "{group} moved from its leader");
            assert!(g.voters.contains(to), "{group} moved to a voter");
            g.leader = *to;
        }
        counts(&moved, nodes)
    }

    #[test]
    fn all_leaders_on_one_node_are_spread_evenly() {
        let groups: Vec<Led> = (0..60).map(|i| led(i, 1, &[1, 2, 3])).collect();
        let moves = plan(&groups, &[1, 2, 3]);
        assert_eq!(moves.len(), 40);
        let counts = after(&groups, &[1, 2, 3], &moves);
        assert_eq!(counts, BTreeMap::from([(1, 20), (2, 20), (3, 20)]));
    }

    #[test]
    fn a_balanced_cluster_moves_nothing() {
        let groups: Vec<Led> = (0..7)
            .map(|i| led(i, 1 + u64::from(i) % 3, &[1, 2, 3]))
            .collect();
        assert!(plan(&groups, &[1, 2, 3]).is_empty());
    }

    #[test]
    fn leaders_go_only_to_voters_that_answered() {
        // Node 3 is down (not in `nodes`); groups 0-9 live on nodes 1 and 2 only, 10-19
        // on 1 and 3.
        let mut groups: Vec<Led> = (0..10).map(|i| led(i, 1, &[1, 2])).collect();
        groups.extend((10..20).map(|i| led(i, 1, &[1, 3])));
        let moves = plan(&groups, &[1, 2]);
        let counts = after(&groups, &[1, 2], &moves);
        assert_eq!(counts, BTreeMap::from([(1, 10), (2, 10)]));
        assert!(moves.iter().all(|(_, _, to)| *to == 2));
    }

    #[test]
    fn a_node_that_cannot_give_is_left_and_the_rest_still_balance() {
        // Node 1 leads 6 groups no other answering node holds; node 2 leads 6 that node 3
        // also holds.
        let mut groups: Vec<Led> = (0..6).map(|i| led(i, 1, &[1, 4])).collect();
        groups.extend((6..12).map(|i| led(i, 2, &[2, 3])));
        let moves = plan(&groups, &[1, 2, 3]);
        let counts = after(&groups, &[1, 2, 3], &moves);
        assert_eq!(counts, BTreeMap::from([(1, 6), (2, 3), (3, 3)]));
    }

    #[test]
    fn each_groups_leader_is_the_node_that_says_it_leads() {
        use super::super::group::GroupStatus;
        let status = |node: u64, groups: Vec<(&str, &str, u64)>| NodeStatus {
            node_id: node,
            cluster_listen: String::new(),
            nodes: Vec::new(),
            groups: groups
                .into_iter()
                .map(|(name, state, term)| GroupStatus {
                    group: name.into(),
                    state: state.into(),
                    term,
                    leader: None,
                    voters: vec![1, 2, 3],
                    learners: Vec::new(),
                    last_log_index: None,
                    last_applied: None,
                    lag: Vec::new(),
                    snapshot: None,
                    purged: None,
                })
                .collect(),
        };
        let statuses = [
            // Node 1 still thinks it leads queue-1 in term 3; node 2 leads it in term 4.
            status(1, vec![("meta", "leader", 9), ("queue-1", "leader", 3)]),
            status(
                2,
                vec![("queue-1", "leader", 4), ("queue-2", "candidate", 5)],
            ),
            status(3, vec![("queue-2", "follower", 5)]),
        ];
        let (groups, leaderless) = leaders(&statuses);
        assert_eq!(groups, vec![led(1, 2, &[1, 2, 3])]);
        assert_eq!(leaderless, 1);
    }
}
