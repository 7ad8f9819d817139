//! The cluster's settings: `--node-id`, `--cluster-listen`, `--cluster-peers`,
//! `--cluster-snapshot-every` (flags, `WARREN_*` variables or the TOML file's `node_id`,
//! `cluster_listen`, `cluster_peers`, `cluster_snapshot_every`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// A node's place in a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub node_id: u64,
    /// The cluster port: Raft traffic between nodes and `warren cluster` commands.
    pub listen: SocketAddr,
    /// The other nodes, by id: where this node reaches them.
    pub peers: BTreeMap<u64, String>,
    /// Bytes a quorum queue's log grows by between snapshots (`log_growth.rs`).
    pub snapshot_every: u64,
}

/// The least `--cluster-snapshot-every` (small values are for tests: a snapshot names
/// every message the queue holds, and a group asks for one at most every 250 ms).
pub const SNAPSHOT_EVERY_MIN: u64 = 4 << 10;

impl ClusterConfig {
    /// Every member's id, this node's included.
    pub fn members(&self) -> impl Iterator<Item = u64> + '_ {
        std::iter::once(self.node_id).chain(self.peers.keys().copied())
    }
}

/// `ID=ADDR,ID=ADDR,...` (an entry for this node itself is skipped).
pub fn parse_peers(text: &str, me: u64) -> Result<BTreeMap<u64, String>, String> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("--cluster-peers: '{item}' is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("--cluster-peers: '{id}' is not a node id"))?;
        let addr = addr.trim();
        if addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            return Err(format!("--cluster-peers: '{addr}' is not HOST:PORT"));
        }
        if id == me {
            continue;
        }
        if peers.insert(id, addr.to_owned()).is_some() {
            return Err(format!("--cluster-peers: node {id} is listed twice"));
        }
    }
    Ok(peers)
}

/// The cluster settings from the merged flags and file: none without a node id; the
/// others refused alone.
pub fn resolve(
    node_id: Option<u64>,
    listen: Option<SocketAddr>,
    peers: Option<&str>,
    snapshot_every: Option<u64>,
) -> Result<Option<ClusterConfig>, String> {
    let Some(node_id) = node_id else {
        if listen.is_some() || peers.is_some() || snapshot_every.is_some() {
            return Err(
                "--cluster-listen, --cluster-peers and --cluster-snapshot-every need --node-id"
                    .into(),
            );
        }
        return Ok(None);
    };
    let snapshot_every = snapshot_every.unwrap_or(super::log_growth::SNAPSHOT_EVERY);
    if snapshot_every < SNAPSHOT_EVERY_MIN {
        return Err(format!(
            "--cluster-snapshot-every must be at least {SNAPSHOT_EVERY_MIN}"
        ));
    }
    let listen = listen.ok_or("--node-id needs --cluster-listen (the cluster port)")?;
    let peers = parse_peers(peers.unwrap_or(""), node_id)?;
    Ok(Some(ClusterConfig {
        node_id,
        listen,
        peers,
        snapshot_every,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_refuse() {
        let p = parse_peers("1=a:1, 2=127.0.0.1:25672,3=b:3", 1).unwrap();
        assert_eq!(p.keys().copied().collect::<Vec<_>>(), vec![2, 3]);
        assert!(parse_peers("2=a", 1).is_err());
        assert!(parse_peers("x=a:1", 1).is_err());
        assert!(parse_peers("2=a:1,2=b:2", 1).is_err());
        assert_eq!(resolve(None, None, None, None), Ok(None));
        assert!(resolve(None, None, Some("2=a:1"), None).is_err());
        assert!(resolve(None, None, None, Some(1 << 20)).is_err());
        assert!(resolve(Some(1), None, None, None).is_err());
        let listen = Some("127.0.0.1:9".parse().unwrap());
        let c = resolve(Some(1), listen, Some("2=a:1"), None)
            .unwrap()
            .unwrap();
        assert_eq!(c.members().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(c.snapshot_every, 64 << 20);
        assert!(resolve(Some(1), listen, None, Some(SNAPSHOT_EVERY_MIN - 1)).is_err());
        let c = resolve(Some(1), listen, None, Some(SNAPSHOT_EVERY_MIN)).unwrap();
        assert_eq!(c.unwrap().snapshot_every, SNAPSHOT_EVERY_MIN);
    }
}
