//! The quorum queues' Raft groups on this node: one group per queue, named `queue-N`
//! (N: the index of the metadata entry that declared the queue, the same on every node),
//! its log, snapshot and state under `DATA_DIR/cluster/queues/N/`. The metadata group
//! says which queues exist and which nodes hold each; the bridge (`src/replication.rs`)
//! opens and closes the groups here as it learns that.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{Duration, Instant};

use super::codec;
use super::detector::{lead_new_group, queue_raft_config};
use super::group::{forward_write, Group, GroupRpc, WriteError};
use super::log_growth::LogGrowth;
use super::log_store::LogStore;
use super::machine::Tapped;
use super::meta_machine::{MetaCommand, MetaRaft, MetaResponse, MetaState, NodeInfo};
use super::network::GroupNetwork;
use super::node::{ClusterNode, NodeStatus, WRITE_DEADLINE};
use super::queue_machine::{QueueMachine, QueueState};
use super::snapshot_bodies::{Pinned, SnapshotBodies};
use super::types::{QueueCommand, QueueRaft, QueueResponse};

/// What the metadata group tells its tap.
pub type MetaTap = UnboundedReceiver<Tapped<MetaCommand, MetaState>>;
/// What a queue group tells its tap.
pub type QueueTap = UnboundedReceiver<Tapped<QueueCommand, QueueState>>;

/// A queue group opened on this node: the group, its state when the tap started (no
/// bodies: they are read from `bodies`, where they stay until `pinned` is given back),
/// and the tap.
pub struct OpenedQueue {
    pub group: Arc<Group<QueueRaft>>,
    pub state: QueueState,
    /// The log index `state` is the state after.
    pub applied: u64,
    pub tap: QueueTap,
    pub bodies: SnapshotBodies,
    pub pinned: Pinned,
    /// The vote this node had saved for the group when it opened it (none in a new
    /// group): whom it followed or stood as before a restart.
    pub saved_vote: Option<openraft::Vote<u64>>,
}

/// A queue group's name on the cluster port.
pub fn queue_group_name(group: u64) -> String {
    format!("queue-{group}")
}

impl ClusterNode {
    /// The metadata, the index of the last entry it holds, and what is applied after
    /// it: the first call gets the state as the node opened it and every entry applied
    /// since (its start's replay and catch-up included); a later one the state as
    /// applied so far.
    pub async fn meta_tap(&self) -> (MetaState, u64, MetaTap) {
        if let Some(first) = self.first_tap.lock().expect("first tap").take() {
            return first;
        }
        self.meta_machine.tap::<MetaRaft>().await
    }

    /// Commits a metadata command (through the leader).
    pub async fn meta_write(&self, cmd: MetaCommand) -> Result<MetaResponse, WriteError> {
        self.meta.write(cmd, WRITE_DEADLINE).await
    }

    /// Whether the metadata group's state, as this node has applied it so far, has
    /// binding `def` in `vhost`.
    pub async fn meta_has_binding(
        &self,
        vhost: &str,
        def: &crate::broker::replicated_topology::BindingDef,
    ) -> bool {
        self.meta_machine
            .inspect(|s| s.state.has_binding(vhost, def))
            .await
    }

    /// The bindings of `vhost` that end at `end`, in the metadata group's state as this
    /// node has applied it so far.
    pub async fn meta_bindings_of(
        &self,
        vhost: &str,
        end: super::meta_machine::Endpoint<'_>,
    ) -> Vec<crate::broker::replicated_topology::BindingDef> {
        self.meta_machine
            .inspect(|s| s.state.bindings_of(vhost, end))
            .await
    }

    /// `vhost`'s quorum queue `name` (group, declaration) in the metadata group's state as
    /// this node has applied it so far.
    pub async fn meta_queue(
        &self,
        vhost: &str,
        name: &str,
    ) -> Option<(u64, super::meta_machine::QueueDecl)> {
        self.meta_machine
            .inspect(|s| s.state.queue(vhost, name).map(|(g, d)| (g, d.clone())))
            .await
    }

    /// The access database as this node has applied it.
    pub async fn meta_access(&self) -> Option<crate::broker::access_db::AccessData> {
        self.meta_machine.inspect(|s| s.state.access.clone()).await
    }

    /// Each node's cluster address, from the node table.
    pub async fn cluster_addresses(&self) -> BTreeMap<u64, String> {
        self.meta_machine
            .inspect(|s| {
                s.nodes
                    .iter()
                    .map(|(id, n)| (*id, n.cluster.clone()))
                    .collect()
            })
            .await
    }

    /// The metadata group's voters: the nodes a new quorum queue is spread over. Before
    /// this node has heard the group's membership (a cluster's first moments) they are the
    /// nodes it was started with, the membership a new cluster is initialised with: a queue
    /// spread over no node would never get a group.
    pub fn voters(&self) -> Vec<u64> {
        let m = self.meta.raft.metrics().borrow().clone();
        let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
        if voters.is_empty() {
            let mut configured: Vec<u64> = self.config.members().collect();
            configured.sort_unstable();
            return configured;
        }
        voters
    }

    /// Opens queue group `group` with `members` (this node among them). The first member
    /// initialises a new group; the others wait to hear from it.
    pub async fn open_queue_group(&self, group: u64, members: &[u64]) -> io::Result<OpenedQueue> {
        if self
            .queue_groups
            .read()
            .expect("groups")
            .contains_key(&group)
        {
            // Opened already: whoever opened it holds its tap.
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("queue group {group} is open"),
            ));
        }
        let dir = self
            .data_dir
            .join("cluster")
            .join("queues")
            .join(group.to_string());
        let store = LogStore::<QueueRaft>::open_keeping_bodies(
            self.queue_log.clone(),
            group,
            &dir,
            self.log.clone(),
        )?;
        self.queue_stores
            .lock()
            .expect("stores")
            .insert(group, store.clone());
        store.wait_for_snapshots();
        let bodies = SnapshotBodies::new(store.clone());
        let machine = QueueMachine::open_on_log(&dir, bodies.clone()).await?;
        let (state, applied, tap) = machine.tap::<QueueRaft>().await;
        // Before openraft starts (and may snapshot): the copy is rebuilt from this state.
        let ids: Vec<u64> = state.messages.keys().copied().collect();
        let pinned = bodies.pin(&ids).await;
        let growth = LogGrowth::new(
            store.appended_bytes(),
            machine.snapshot_bytes(),
            self.config.snapshot_every,
        );
        let saved_vote = store.saved_vote().await;
        let name: Arc<str> = queue_group_name(group).into();
        machine.set_starting(true);
        let raft = Raft::new(
            self.config.node_id,
            queue_raft_config(),
            GroupNetwork::new(self.peers.clone(), name.clone()),
            store,
            machine.clone(),
        )
        .await;
        machine.set_starting(false);
        let raft = raft.map_err(|e| io::Error::other(format!("queue group {group}: {e}")))?;
        let g = Arc::new(Group::new(name.clone(), raft, self.peers.clone()).with_growth(growth));
        self.queue_groups
            .write()
            .expect("groups")
            .insert(group, g.clone());
        let rpc: Arc<dyn GroupRpc> = g.clone();
        self.groups
            .write()
            .expect("groups")
            .insert(name.to_string(), rpc);
        if members.first() == Some(&self.config.node_id) {
            let initialized = g.raft.is_initialized().await.unwrap_or(true);
            if !initialized {
                let addresses = self
                    .meta_machine
                    .inspect(|s| {
                        members
                            .iter()
                            .map(|id| {
                                let addr = s.nodes.get(id).map(|n| n.cluster.clone());
                                (*id, BasicNode::new(addr.unwrap_or_default()))
                            })
                            .collect::<BTreeMap<_, _>>()
                    })
                    .await;
                match g.raft.initialize(addresses).await {
                    Ok(()) => {
                        tokio::spawn(lead_new_group(g.raft.clone()));
                    }
                    Err(e) => tracing::debug!("queue group {group} already initialised: {e}"),
                }
            }
        }
        Ok(OpenedQueue {
            group: g,
            state,
            applied,
            tap,
            bodies,
            pinned,
            saved_vote,
        })
    }

    /// Stops queue group `group` and removes its files (the queue was deleted).
    pub async fn close_queue_group(&self, group: u64) {
        let g = self.queue_groups.write().expect("groups").remove(&group);
        self.groups
            .write()
            .expect("groups")
            .remove(&queue_group_name(group));
        if let Some(g) = g {
            let _ = g.raft.shutdown().await;
        }
        let store = self.queue_stores.lock().expect("stores").remove(&group);
        if let Some(store) = store {
            if let Err(e) = store.forget().await {
                tracing::warn!("cluster: forgetting queue group {group}'s log: {e}");
            }
        }
        let dir = self
            .data_dir
            .join("cluster")
            .join("queues")
            .join(group.to_string());
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!("cluster: removing {}: {e}", dir.display());
            }
        }
    }
}

impl ClusterNode {
    /// Commits `cmd` to queue group `group`, which this node does not hold, through the
    /// group's `members`: each is asked in turn; one that does not lead names the leader,
    /// which is asked next; while there is none, it retries until `deadline` has passed.
    pub async fn write_to_group(
        &self,
        group: u64,
        members: &[u64],
        cmd: &QueueCommand,
        deadline: Duration,
    ) -> Result<QueueResponse, WriteError> {
        if members.is_empty() {
            return Err(WriteError::Failed(format!(
                "queue group {group} has no members"
            )));
        }
        let until = Instant::now() + deadline;
        let body = codec::encode(cmd).map_err(|e| WriteError::Failed(e.to_string()))?;
        let name = queue_group_name(group);
        let addresses = self.cluster_addresses().await;
        let (mut turn, mut leader) = (0, None);
        loop {
            let target = leader.take().or_else(|| {
                let id = members[turn % members.len()];
                turn += 1;
                addresses.get(&id).map(|addr| (id, addr.clone()))
            });
            if let Some((id, addr)) = target {
                let left = until.saturating_duration_since(Instant::now());
                let to = (id, addr.as_str());
                match forward_write::<QueueRaft>(&self.peers, &name, to, &body, left).await? {
                    Ok(response) => return Ok(response.data),
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                        leader = f.leader_id.zip(f.leader_node).map(|(id, n)| (id, n.addr));
                    }
                    Err(e) => return Err(WriteError::Failed(e.to_string())),
                }
            }
            if Instant::now() >= until {
                return Err(WriteError::NoLeader);
            }
            if leader.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Where a quorum queue of the cluster lives, as this node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePlacement {
    pub vhost: String,
    pub name: String,
    /// The nodes that hold it (its group's voters), in declaration order.
    pub members: Vec<u64>,
    /// Its group's leader: as this node's member of the group last heard, or, on a node
    /// that is not a member, as the members answered; `None` while there is none (an
    /// election, no quorum) or no member answered.
    pub leader: Option<u64>,
}

impl ClusterNode {
    /// Whether the cluster has any quorum queue.
    pub async fn has_quorum_queues(&self) -> bool {
        self.meta_machine.inspect(|s| !s.queues.is_empty()).await
    }

    /// Every quorum queue of the cluster with its members and leader (for the
    /// management API: RabbitMQ's `leader`, `members`, `online`). The leader of a group
    /// this node does not hold is the one its members name in `answers` (`ask_nodes`).
    pub async fn queue_placements(
        &self,
        answers: &[(NodeInfo, Option<NodeStatus>)],
    ) -> Vec<QueuePlacement> {
        let declared: Vec<(u64, QueuePlacement)> = self
            .meta_machine
            .inspect(|s| {
                s.queues
                    .iter()
                    .map(|(g, q)| {
                        let placement = QueuePlacement {
                            vhost: q.vhost.clone(),
                            name: q.name.clone(),
                            members: q.members.clone(),
                            leader: None,
                        };
                        (*g, placement)
                    })
                    .collect()
            })
            .await;
        let groups = self.queue_groups.read().expect("groups");
        let named_by_members = |g: u64, members: &[u64]| -> Option<u64> {
            let name = queue_group_name(g);
            answers
                .iter()
                .filter(|(info, _)| members.contains(&info.id))
                .filter_map(|(_, status)| status.as_ref())
                .flat_map(|status| status.groups.iter())
                .find(|gs| gs.group == name && gs.leader.is_some())
                .and_then(|gs| gs.leader)
        };
        declared
            .into_iter()
            .map(|(g, mut placement)| {
                placement.leader = match groups.get(&g) {
                    Some(group) => group.raft.metrics().borrow().current_leader,
                    None => named_by_members(g, &placement.members),
                };
                placement
            })
            .collect()
    }
}
