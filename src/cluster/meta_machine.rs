//! The metadata group: the one Raft group every node is a member of, holding what the
//! whole cluster must agree on. So far that is the node table (each node's addresses and
//! version, written by the node itself when it starts); the cluster-wide definitions
//! (vhosts, users, permissions, policies, exchanges, bindings, queues) go through it next.

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

/// A command of the metadata group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// A node started (or restarted): its entry in the node table.
    NodeUp(NodeInfo),
}

/// What applying a metadata command answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    Nothing,
    Done,
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
}

impl Replicated<MetaRaft> for MetaState {
    fn apply(&mut self, _index: u64, cmd: &MetaCommand) -> MetaResponse {
        match cmd {
            MetaCommand::NodeUp(info) => {
                self.nodes.insert(info.id, info.clone());
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
