//! `warren cluster status|join|leave`: talks to a running node over its cluster port
//! (`--cluster-listen` of the same flags or config file), as `rabbitmqctl cluster_status`,
//! `join_cluster` and `forget_cluster_node` do over Erlang distribution.

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

use crate::cluster::node::{JoinRequest, LeaveRequest, NodeStatus};
use crate::cluster::settings::ClusterConfig;
use crate::cluster::transport::Peer;
use crate::cluster::wire::RpcKind;
use crate::config::{ClusterAction, Config};

/// How long a command waits for the node (a join waits for the new member to catch up).
const TIMEOUT: Duration = Duration::from_secs(60);

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
    }
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
