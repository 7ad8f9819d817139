//! The metadata group: the one Raft group every node is a member of, holding what the
//! whole cluster must agree on. So far that is the node table (each node's addresses and
//! version, written by the node itself when it starts) and the quorum queues (each with
//! the nodes of its own group); the other cluster-wide definitions (vhosts, users,
//! permissions, policies, exchanges, bindings) go through it next.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::machine::{Machine, Replicated};

type NodeId = u64;

/// A node as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    /// Its RabbitMQ-style name (`warren-ID@HOST`), as the management API shows it.
    #[serde(default)]
    pub name: String,
    /// Its cluster port.
    pub cluster: String,
    /// Its AMQP listener.
    pub amqp: String,
    /// Its management API, if it runs one.
    pub http: Option<String>,
    pub version: String,
    /// When it last started, milliseconds since the epoch.
    pub started_at: u64,
}

/// A quorum queue of the cluster: each is its own Raft group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDecl {
    pub vhost: String,
    pub name: String,
    /// Its arguments as the declaring client sent them (an AMQP field table), so that
    /// every node declares it alike.
    pub arguments: Vec<u8>,
    /// The nodes that hold it; the first one starts the group (and usually leads it).
    pub members: Vec<NodeId>,
}

/// A command of the metadata group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// A node started (or restarted): its entry in the node table.
    NodeUp(NodeInfo),
    /// A quorum queue was declared (a no-op if the vhost already has one of that name).
    DeclareQueue(QueueDecl),
    /// A quorum queue was deleted: the one of group `group` (a queue declared again
    /// since, under a new group, stays).
    DeleteQueue {
        vhost: String,
        name: String,
        group: u64,
    },
}

/// What applying a metadata command answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    Nothing,
    Done,
    /// The queue's group number (new, or the existing queue's).
    Queue(u64),
}

openraft::declare_raft_types!(
    /// The metadata group.
    pub MetaRaft:
        D = MetaCommand,
        R = MetaResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<MetaRaft>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The replicated metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// Quorum queues by group number (the index of the entry that declared each: the same
    /// on every node, and never reused).
    #[serde(default)]
    pub queues: BTreeMap<u64, QueueDecl>,
}

impl MetaState {
    /// The group number of `vhost`'s quorum queue `name`.
    pub fn queue_group(&self, vhost: &str, name: &str) -> Option<u64> {
        self.queues
            .iter()
            .find(|(_, q)| q.vhost == vhost && q.name == name)
            .map(|(g, _)| *g)
    }
}

impl Replicated<MetaRaft> for MetaState {
    fn apply(&mut self, index: u64, cmd: &MetaCommand) -> MetaResponse {
        match cmd {
            MetaCommand::NodeUp(info) => {
                self.nodes.insert(info.id, info.clone());
                MetaResponse::Done
            }
            MetaCommand::DeclareQueue(decl) => {
                if let Some(g) = self.queue_group(&decl.vhost, &decl.name) {
                    return MetaResponse::Queue(g);
                }
                self.queues.insert(index, decl.clone());
                MetaResponse::Queue(index)
            }
            MetaCommand::DeleteQueue { vhost, name, group } => {
                if self.queue_group(vhost, name) == Some(*group) {
                    self.queues.remove(group);
                }
                MetaResponse::Done
            }
        }
    }

    fn nothing() -> MetaResponse {
        MetaResponse::Nothing
    }
}

/// The metadata group's state machine.
pub type MetaMachine = Machine<MetaState>;
