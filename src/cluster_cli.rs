//! `warren cluster status|join|leave|rebalance`: talks to a running node over its cluster port
//! (`--cluster-listen` of the same flags or config file), as `rabbitmqctl cluster_status`,
//! `join_cluster`, `forget_cluster_node` and `rabbitmq-queues rebalance quorum` do over
//! Erlang distribution.

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

use crate::cluster::node::{JoinRequest, LeaveRequest, NodeStatus};
use crate::cluster::settings::ClusterConfig;
use crate::cluster::transfer::RebalanceReport;
use crate::cluster::transport::Peer;
use crate::cluster::wire::RpcKind;
use crate::config::{ClusterAction, Config};

/// How long a command waits for the node (a join waits for the new member to catch up).
const TIMEOUT: Duration = Duration::from_secs(60);
/// How long a rebalance may take (a thousand queues move in batches of a few at a time).
const REBALANCE_TIMEOUT: Duration = Duration::from_secs(600);

/// Where this machine reaches a node listening on `addr` (an unspecified address is
/// reached on loopback).
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip().is_unspecified() {
        true => SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port()),
        false => addr,
    }
}

/// Runs the command; `Ok` is what to print, `Err` why it failed.
pub fn run(config: &Config, action: ClusterAction) -> Result<String, String> {
    let cluster = config
        .cluster
        .as_ref()
        .ok_or("warren cluster needs the node's --node-id and --cluster-listen")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(command(cluster, action))
}

async fn command(cluster: &ClusterConfig, action: ClusterAction) -> Result<String, String> {
    let local = Peer::new(reachable(cluster.listen).to_string());
    match action {
        ClusterAction::Status { json } => {
            let answer = ask(&local, RpcKind::NodeStatus, Vec::new()).await?;
            let status: NodeStatus = serde_json::from_slice(&answer)
                .map_err(|e| format!("unexpected answer from the node: {e}"))?;
            Ok(match json {
                true => serde_json::to_string_pretty(&status).map_err(|e| e.to_string())?,
                false => render(&status),
            })
        }
        ClusterAction::Join { addr } => {
            if cluster.listen.ip().is_unspecified() {
                return Err(
                    "join: --cluster-listen must be the address other nodes reach this one at"
                        .into(),
                );
            }
            let request = JoinRequest {
                id: cluster.node_id,
                addr: cluster.listen.to_string(),
            };
            let body = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
            ask(&Peer::new(addr.clone()), RpcKind::Join, body).await?;
            Ok(format!(
                "node {} joined the cluster of {addr}",
                cluster.node_id
            ))
        }
        ClusterAction::Leave => {
            let request = LeaveRequest {
                id: cluster.node_id,
            };
            let body = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
            ask(&local, RpcKind::Leave, body).await?;
            Ok(format!("node {} left its cluster", cluster.node_id))
        }
        ClusterAction::Rebalance { json } => {
            let answer = local
                .call(RpcKind::Rebalance, "", &[], REBALANCE_TIMEOUT)
                .await
                .map_err(|e| format!("node at {}: {e}", local.addr()))?;
            let report: RebalanceReport = serde_json::from_slice(&answer)
                .map_err(|e| format!("unexpected answer from the node: {e}"))?;
            match json {
                true => serde_json::to_string_pretty(&report).map_err(|e| e.to_string()),
                false if report.failed.is_empty() => Ok(render_rebalance(&report)),
                false => Err(render_rebalance(&report)),
            }
        }
    }
}

/// What a rebalance did, as a table of leaders per node before and after.
fn render_rebalance(r: &RebalanceReport) -> String {
    let total: usize = r.before.values().sum();
    let mut out = format!(
        "Re-balanced the leaders of {total} quorum queues: {} moved, {} failed\n\n",
        r.moved,
        r.failed.len()
    );
    let _ = writeln!(
        out,
        "{:<6} {:>14} {:>13}",
        "node", "leaders before", "leaders after"
    );
    for (node, before) in &r.before {
        let after = r.after.get(node).copied().unwrap_or(0);
        let _ = writeln!(out, "{node:<6} {before:>14} {after:>13}");
    }
    if r.leaderless > 0 {
        let _ = writeln!(
            out,
            "\n{} queue(s) had no leader and were left",
            r.leaderless
        );
    }
    for f in &r.failed {
        let _ = writeln!(out, "failed: {f}");
    }
    out
}

/// One request to a node, and its answer.
async fn ask(peer: &Peer, kind: RpcKind, body: Vec<u8>) -> Result<Vec<u8>, String> {
    peer.call(kind, "", &body, TIMEOUT)
        .await
        .map_err(|e| format!("node at {}: {e}", peer.addr()))
}

/// The status as a table.
fn render(s: &NodeStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {} (cluster port {})",
        s.node_id, s.cluster_listen
    );
    let _ = writeln!(
        out,
        "\n{:<24} {:<10} {:>6} {:>7} {:<12} {:>10} {:>10}  lag",
        "group", "state", "term", "leader", "voters", "last log", "applied"
    );
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    for g in &s.groups {
        let voters: Vec<String> = g.voters.iter().map(u64::to_string).collect();
        let lag: Vec<String> = g
            .lag
            .iter()
            .map(|(id, behind)| format!("{id}:{}", opt(*behind)))
            .collect();
        let _ = writeln!(
            out,
            "{:<24} {:<10} {:>6} {:>7} {:<12} {:>10} {:>10}  {}",
            g.group,
            g.state,
            g.term,
            opt(g.leader),
            voters.join(","),
            opt(g.last_log_index),
            opt(g.last_applied),
            lag.join(" ")
        );
    }
    let _ = writeln!(
        out,
        "\n{:<6} {:<22} {:<22} version",
        "node", "cluster", "amqp"
    );
    for n in &s.nodes {
        let _ = writeln!(
            out,
            "{:<6} {:<22} {:<22} {}",
            n.id, n.cluster, n.amqp, n.version
        );
    }
    out
}
