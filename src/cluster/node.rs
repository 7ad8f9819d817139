//! This node in the cluster: it serves the cluster port, hosts the Raft groups (the
//! metadata group; the quorum queues' groups are opened by `queue_groups.rs`), bootstraps a new cluster, records itself in the node table, logs
//! leader changes, and answers `warren cluster status|join|leave` (`rebalance`: transfer.rs).
//!
//! Bootstrap: on a fresh data dir, the node with the lowest id of `--cluster-peers` (and
//! itself) initialises the metadata group with all of them as voters; the others wait to
//! hear from it. A node that is to join an existing cluster later is started with
//! `--cluster-peers` naming members that have a lower id, so it never initialises a
//! cluster of its own, and is added with `warren cluster join`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers, Raft};
use serde::{Deserialize, Serialize};
use warren_storage::{GroupCommit, LogConfig};

use super::group::{decode, Group, GroupRpc, GroupStatus};
use super::log_store::LogStore;
use super::meta_machine::{MetaCommand, MetaMachine, MetaRaft, MetaState, NodeInfo};
use super::network::{GroupNetwork, Peers};
use super::settings::ClusterConfig;
use super::shared_log::{self, SharedLog};
use super::transport::{self, Peer, Reply, RpcHandler};
use super::types::{now_ms, QueueRaft};
use super::wire::{RpcKind, MAX_PAYLOAD_ENTRIES};

/// The metadata group's name.
pub const META: &str = "meta";

/// How long `probe_nodes` waits for a node's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the Raft logs write their pending acks and compact sparse segments.
const UPKEEP_EVERY: Duration = Duration::from_secs(2);

/// How long a write waits for a leader before giving up.
pub(super) const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// Raft timing for the metadata group (the quorum queues' groups: detector.rs). Elections
/// start after 1-2 s without a heartbeat: a loaded two-core machine syncing to disk can
/// stall for hundreds of milliseconds, and a spurious election costs more than a second of
/// waiting after a real failure.
pub(super) fn raft_config() -> Arc<openraft::Config> {
    let config = openraft::Config {
        cluster_name: "warren".into(),
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        max_payload_entries: MAX_PAYLOAD_ENTRIES,
        ..Default::default()
    };
    Arc::new(config.validate().expect("a valid raft config"))
}

/// What `warren cluster status` prints (as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: u64,
    pub cluster_listen: String,
    pub groups: Vec<GroupStatus>,
    /// The node table of the metadata group, as this node has applied it.
    pub nodes: Vec<NodeInfo>,
}

/// A `join` request: the node to add, and where the cluster reaches it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub id: u64,
    pub addr: String,
}

/// A `leave` request: the node to remove.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaveRequest {
    pub id: u64,
}

/// This node.
pub struct ClusterNode {
    pub(super) config: ClusterConfig,
    /// The address the cluster reaches this node at.
    advertised: String,
    pub(super) peers: Arc<Peers>,
    pub meta: Arc<Group<MetaRaft>>,
    pub(super) meta_machine: MetaMachine,
    /// The metadata machine's first tap, attached before Raft opens the group: the state
    /// as the node opened it and every entry applied since, until the bridge takes them
    /// (`meta_tap`). Entries applied while the node starts would otherwise reach no one.
    pub(super) first_tap: std::sync::Mutex<Option<(MetaState, u64, super::queue_groups::MetaTap)>>,
    pub(super) groups: RwLock<HashMap<String, Arc<dyn GroupRpc>>>,
    /// The quorum queues' groups on this node, by group number (queue_groups.rs).
    pub(super) queue_groups: RwLock<HashMap<u64, Arc<Group<QueueRaft>>>>,
    /// Answers other members' checkouts (checkout.rs), once the bridge sets it.
    pub(super) checkout: std::sync::OnceLock<Arc<dyn super::checkout::CheckoutHandler>>,
    /// Where groups keep their files, and how.
    pub(super) data_dir: std::path::PathBuf,
    pub(super) log: LogConfig,
    /// The Raft log every quorum-queue group of this node writes into (shared_log.rs).
    pub(super) queue_log: Arc<SharedLog>,
    /// Each open queue group's log store, to forget its records when the queue goes.
    pub(super) queue_stores: std::sync::Mutex<HashMap<u64, LogStore<QueueRaft>>>,
    /// When peers last claimed to lead each queue group (detector.rs).
    pub(super) claims: super::detector::Claims,
    /// The queue groups this node holds no copy of whose lent messages its consumers
    /// hold (`Beacon::lent`).
    lent_holding: std::sync::Mutex<std::collections::BTreeSet<u64>>,
    /// When this process started, milliseconds since the epoch, or just after its last
    /// start's if the clock is behind that (`start_number.rs`): its `NodeUp` entry
    /// carries it, so the node knows that entry from those of its earlier starts, and it
    /// numbers the node's writes.
    started_at: u64,
}

/// The metadata group's log store (group 0 of `meta_log`) and state machine in `dir`, as a
/// node opens them: a purge of the log waits until the machine reports a durable snapshot
/// that covers it (openraft purges a follower's log before the snapshot from the leader
/// is written, as it does a queue group's).
pub fn open_metadata_group(
    meta_log: Arc<SharedLog>,
    dir: &Path,
    log: LogConfig,
) -> io::Result<(LogStore<MetaRaft>, MetaMachine)> {
    let store = LogStore::<MetaRaft>::open_in(meta_log, 0, dir, log)?;
    store.wait_for_snapshots();
    let machine =
        MetaMachine::on_disk(dir, MetaState::default())?.reporting_to(store.snapshot_reports());
    Ok((store, machine))
}

impl ClusterNode {
    /// Binds the cluster port, opens the metadata group under `data_dir/cluster/` and
    /// starts serving. `info` is this node's entry for the node table (its id, cluster
    /// address and start time are filled in here).
    pub async fn start(
        config: ClusterConfig,
        data_dir: &Path,
        log: LogConfig,
        commit: Arc<GroupCommit>,
        mut info: NodeInfo,
    ) -> io::Result<Arc<ClusterNode>> {
        let listener = transport::bind(config.listen).await.map_err(|e| {
            io::Error::new(e.kind(), format!("--cluster-listen {}: {e}", config.listen))
        })?;
        let advertised = listener.local_addr()?.to_string();
        let peers = Arc::new(Peers::new(config.node_id, config.peers.clone()));
        let meta_dir = data_dir.join("cluster").join(META);
        std::fs::create_dir_all(&meta_dir)?;
        let started_at = super::start_number::next(&data_dir.join("cluster"), now_ms())?;
        let meta_log = SharedLog::open(&meta_dir.join("log"), log.clone(), commit.clone())?;
        let (store, machine) = open_metadata_group(meta_log.clone(), &meta_dir, log.clone())?;
        let (opened, opened_at, first_tap) = machine.tap::<MetaRaft>().await;
        let queue_log = SharedLog::open(
            &data_dir.join("cluster").join("queue-log"),
            log.clone(),
            commit.clone(),
        )?;
        shared_log::spawn_upkeep(meta_log, UPKEEP_EVERY);
        shared_log::spawn_upkeep(queue_log.clone(), UPKEEP_EVERY);
        let name: Arc<str> = META.into();
        let raft = Raft::new(
            config.node_id,
            raft_config(),
            GroupNetwork::new(peers.clone(), name.clone()),
            store,
            machine.clone(),
        )
        .await
        .map_err(|e| io::Error::other(format!("metadata group: {e}")))?;
        let meta = Arc::new(Group::new(name, raft, peers.clone()));
        let mut groups: HashMap<String, Arc<dyn GroupRpc>> = HashMap::new();
        groups.insert(META.into(), meta.clone());
        let node = Arc::new(ClusterNode {
            advertised: advertised.clone(),
            config,
            peers,
            meta,
            meta_machine: machine,
            first_tap: std::sync::Mutex::new(Some((opened, opened_at, first_tap))),
            groups: RwLock::new(groups),
            queue_groups: RwLock::default(),
            checkout: std::sync::OnceLock::new(),
            data_dir: data_dir.to_path_buf(),
            log,
            queue_log,
            queue_stores: Default::default(),
            claims: Default::default(),
            lent_holding: Default::default(),
            started_at,
        });
        tokio::spawn(transport::serve(listener, node.clone()));
        tracing::info!(
            node = node.config.node_id,
            peers = ?node.config.peers,
            "cluster port listening on {advertised}"
        );
        node.bootstrap().await?;
        info.id = node.config.node_id;
        info.cluster = advertised;
        info.started_at = node.started_at;
        tokio::spawn(node.clone().announce(info));
        tokio::spawn(node.clone().send_beacons());
        tokio::spawn(node.clone().watch_leaders());
        tokio::spawn(node.clone().snapshot_grown_logs());
        tokio::spawn(log_leader_changes(
            node.meta.raft.clone(),
            node.config.node_id,
        ));
        Ok(node)
    }

    /// Initialises the metadata group on a fresh cluster, from the lowest-numbered node.
    async fn bootstrap(&self) -> io::Result<()> {
        let me = self.config.node_id;
        if self.config.members().any(|id| id < me) {
            return Ok(());
        }
        let initialized = self
            .meta
            .raft
            .is_initialized()
            .await
            .map_err(|e| io::Error::other(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        let mut members = BTreeMap::new();
        members.insert(me, BasicNode::new(&self.advertised));
        for (id, addr) in &self.config.peers {
            members.insert(*id, BasicNode::new(addr));
        }
        tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "initialising a new cluster");
        if let Err(e) = self.meta.raft.initialize(members).await {
            // Another start of this node got there first: nothing to do.
            tracing::debug!("cluster already initialised: {e}");
        }
        Ok(())
    }

    /// Writes this node's entry in the node table, retrying until a leader takes it.
    async fn announce(self: Arc<Self>, info: NodeInfo) {
        loop {
            match self
                .meta
                .write(MetaCommand::NodeUp(info.clone()), WRITE_DEADLINE)
                .await
            {
                Ok(_) => {
                    tracing::info!("cluster: this node is in the node table");
                    return;
                }
                Err(e) => {
                    tracing::warn!("cluster: cannot record this node yet ({e}); retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Stops the groups' Raft (their logs are durable already).
    pub async fn shutdown(&self) {
        let queues: Vec<_> = self
            .queue_groups
            .read()
            .expect("groups")
            .values()
            .cloned()
            .collect();
        for g in queues {
            let _ = g.raft.shutdown().await;
        }
        if let Err(e) = self.meta.raft.shutdown().await {
            tracing::warn!("cluster: metadata group did not stop cleanly: {e}");
        }
    }

    pub fn node_id(&self) -> u64 {
        self.config.node_id
    }

    /// The metadata group's directory.
    pub fn meta_dir(&self) -> std::path::PathBuf {
        self.data_dir.join("cluster").join(META)
    }

    /// When this process started (its `NodeUp` entry's `started_at`).
    pub fn started_at(&self) -> u64 {
        self.started_at
    }

    /// Whether node `peer` is gone as far as this node knows: the connection its beacons
    /// came on ended, and none carries them since (it died or stopped, or the link broke;
    /// detector.rs).
    pub fn peer_gone(&self, peer: u64) -> bool {
        self.claims.gone(peer)
    }

    /// The connection `peer`'s beacons come on (`Claims::link`): it changes when the
    /// peer restarts (a restarted Raft leader may lead on in the same term, so its
    /// members see no new leader in their metrics).
    pub fn peer_link(&self, peer: u64) -> Option<u64> {
        self.claims.link(peer)
    }

    /// Whether this node's consumers hold messages of queue group `group` lent to them
    /// (it holds no copy of the group): its beacons say so from the next on, so that a
    /// member taking over the group's lead waits for its claim.
    pub fn note_lent_holding(&self, group: u64, holding: bool) {
        let mut lent = self.lent_holding.lock().expect("lent holding");
        match holding {
            true => lent.insert(group),
            false => lent.remove(&group),
        };
    }

    /// The groups `note_lent_holding` has noted, for a beacon.
    pub(super) fn lent_groups(&self) -> Vec<u64> {
        let lent = self.lent_holding.lock().expect("lent holding");
        lent.iter().copied().collect()
    }

    /// The peers whose last beacon said their consumers hold lent messages of `group`.
    pub fn lent_holders(&self, group: u64) -> Vec<u64> {
        self.claims.lent_holders(group)
    }

    /// Every group's status and the node table.
    pub async fn status(&self) -> NodeStatus {
        let groups: Vec<Arc<dyn GroupRpc>> = {
            let g = self.groups.read().expect("groups");
            let mut v: Vec<_> = g.iter().collect();
            v.sort_by(|a, b| a.0.cmp(b.0));
            v.into_iter().map(|(_, g)| g.clone()).collect()
        };
        NodeStatus {
            node_id: self.config.node_id,
            cluster_listen: self.advertised.clone(),
            groups: groups.iter().map(|g| g.status()).collect(),
            nodes: self.node_table().await,
        }
    }

    /// The node table, each other node with whether it answers on its cluster port now
    /// (asked at once, at most `PROBE_TIMEOUT` each); this node is `true`.
    pub async fn probe_nodes(&self) -> Vec<(NodeInfo, bool)> {
        self.answered(self.ask_nodes().await)
    }

    /// `ask_nodes`' answers as whether each node answered (this node always does).
    pub fn answered(&self, answers: Vec<(NodeInfo, Option<NodeStatus>)>) -> Vec<(NodeInfo, bool)> {
        answers
            .into_iter()
            .map(|(info, status)| {
                let up = info.id == self.config.node_id || status.is_some();
                (info, up)
            })
            .collect()
    }

    /// The node table as this node has applied it (nothing is asked of the others).
    pub async fn node_table(&self) -> Vec<NodeInfo> {
        self.meta_machine
            .inspect(|s| s.nodes.values().cloned().collect())
            .await
    }

    /// The node table, each other node with its status if it answers now (asked at once,
    /// at most `PROBE_TIMEOUT` each); this node's own entry has none.
    pub async fn ask_nodes(&self) -> Vec<(NodeInfo, Option<NodeStatus>)> {
        let table = self.node_table().await;
        let mut asked = tokio::task::JoinSet::new();
        for (i, info) in table.iter().enumerate() {
            if info.id != self.config.node_id {
                let peer = self.peers.peer(info.id, &info.cluster);
                asked.spawn(async move {
                    let answer = peer.call(RpcKind::NodeStatus, "", &[], PROBE_TIMEOUT).await;
                    let status = answer.ok().and_then(|a| decode::<NodeStatus>(&a).ok());
                    (i, status)
                });
            }
        }
        let mut statuses: Vec<Option<NodeStatus>> = vec![None; table.len()];
        while let Some(Ok((i, status))) = asked.join_next().await {
            statuses[i] = status;
        }
        table.into_iter().zip(statuses).collect()
    }

    /// Adds a node to the metadata group (as a learner until it has caught up, then as
    /// a voter). Runs on the leader; other nodes forward the request there.
    async fn add_member(&self, join: JoinRequest) -> Result<(), String> {
        if let Some(leader) = self.leader_elsewhere().await? {
            return forward(&leader, RpcKind::Join, &join).await;
        }
        let raft = &self.meta.raft;
        raft.add_learner(join.id, BasicNode::new(&join.addr), true)
            .await
            .map_err(|e| e.to_string())?;
        raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([join.id])), false)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(node = join.id, addr = %join.addr, "cluster: node joined");
        Ok(())
    }

    /// Removes a node from the metadata group; on the leader, like `add_member`.
    async fn remove_member(&self, leave: LeaveRequest) -> Result<(), String> {
        if let Some(leader) = self.leader_elsewhere().await? {
            return forward(&leader, RpcKind::Leave, &leave).await;
        }
        self.meta
            .raft
            .change_membership(
                ChangeMembers::RemoveVoters(BTreeSet::from([leave.id])),
                false,
            )
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(node = leave.id, "cluster: node left");
        Ok(())
    }

    /// The metadata leader's connection when it is another node; `None` when this node
    /// leads. Waits through an election (up to the write deadline).
    async fn leader_elsewhere(&self) -> Result<Option<Arc<Peer>>, String> {
        let until = tokio::time::Instant::now() + WRITE_DEADLINE;
        loop {
            let m = self.meta.raft.metrics().borrow().clone();
            if let Some(leader) = m.current_leader {
                if leader == self.config.node_id {
                    return Ok(None);
                }
                let addr = m
                    .membership_config
                    .membership()
                    .get_node(&leader)
                    .map(|n| n.addr.clone())
                    .unwrap_or_default();
                return Ok(Some(self.peers.peer(leader, &addr)));
            }
            if tokio::time::Instant::now() >= until {
                return Err("no metadata leader".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Sends a join or leave request to another node and waits for its answer.
async fn forward<T: Serialize>(peer: &Arc<Peer>, kind: RpcKind, request: &T) -> Result<(), String> {
    let body = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    peer.call(kind, "", &body, WRITE_DEADLINE * 3)
        .await
        .map(|_| ())
        .map_err(|e| format!("node at {}: {e}", peer.addr()))
}

/// Logs each change of the metadata group's leader (operators read these after a
/// failure: who leads, since which term).
async fn log_leader_changes(raft: Raft<MetaRaft>, me: u64) {
    let mut metrics = raft.metrics();
    let mut last = None;
    loop {
        let (leader, term) = {
            let m = metrics.borrow_and_update();
            if let Err(e) = &m.running_state {
                tracing::error!("cluster: the metadata group stopped: {e}");
                return;
            }
            (m.current_leader, m.current_term)
        };
        if leader != last {
            match leader {
                Some(l) if l == me => {
                    tracing::info!(term, "cluster: this node leads the metadata group")
                }
                Some(l) => tracing::info!(
                    term,
                    leader = l,
                    "cluster: node {l} leads the metadata group"
                ),
                None => tracing::warn!(term, "cluster: the metadata group has no leader"),
            }
            last = leader;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

impl RpcHandler for ClusterNode {
    fn handle(self: Arc<Self>, conn: u64, kind: RpcKind, group: String, body: Vec<u8>) -> Reply {
        match kind {
            RpcKind::NodeStatus => Box::pin(async move {
                serde_json::to_vec(&self.status().await).map_err(|e| e.to_string())
            }),
            RpcKind::Join => Box::pin(async move {
                let req: JoinRequest = decode(&body)?;
                self.add_member(req).await.map(|_| b"{}".to_vec())
            }),
            RpcKind::Leave => Box::pin(async move {
                let req: LeaveRequest = decode(&body)?;
                self.remove_member(req).await.map(|_| b"{}".to_vec())
            }),
            RpcKind::Checkout => Box::pin(async move { self.answer_checkout(&group, &body) }),
            RpcKind::Transfer | RpcKind::Stand | RpcKind::Rebalance => {
                Box::pin(async move { self.answer_transfer(kind, &group, &body).await })
            }
            RpcKind::Beacon => {
                // Recorded here, on the connection's reading task, not on a task of its
                // own: under load a spawned task can wait long enough to look like silence.
                let recorded = decode::<super::detector::Beacon>(&body).map(|b| {
                    self.receive_beacon(conn, &b);
                    Vec::new()
                });
                Box::pin(async move { recorded })
            }
            _ => {
                let found = self.groups.read().expect("groups").get(&group).cloned();
                match found {
                    Some(g) => g.handle(kind, body),
                    None => Box::pin(async move { Err(format!("no group '{group}' here")) }),
                }
            }
        }
    }
    fn closed(&self, conn: u64) {
        self.beacon_link_closed(conn);
    }
}
