//! One Raft group on this node, whatever its kind: the requests peers send it, writes from
//! this node (forwarded to the leader when this node is not it), and its status.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, ForwardToLeader, InstallSnapshotError, RaftError};
use openraft::raft::{ClientWriteResponse, InstallSnapshotRequest, VoteRequest};
use openraft::{Raft, ServerState};
use serde::{Deserialize, Serialize};

use super::codec;
use super::log_growth::LogGrowth;
use super::network::Peers;
use super::transport::Reply;
use super::types::{now_ms, GroupTypes, LeaderStamp};
use super::wire::RpcKind;

type NodeId = u64;

/// What `warren cluster status` and the management API show of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    pub group: String,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    /// On the leader: how many entries each member is behind the leader's last one
    /// (`null` for a member nothing is known of yet).
    pub lag: Vec<(NodeId, Option<u64>)>,
    /// The index of the last entry in this node's snapshot, and of the last entry purged
    /// from its log (`log_growth.rs`).
    #[serde(default)]
    pub snapshot: Option<u64>,
    #[serde(default)]
    pub purged: Option<u64>,
}

/// A group as the node's request router sees it (any kind).
pub trait GroupRpc: Send + Sync + 'static {
    fn handle(&self, kind: RpcKind, body: Vec<u8>) -> Reply;
    fn status(&self) -> GroupStatus;
}

/// A group of kind `C`: its Raft instance and name.
pub struct Group<C: GroupTypes> {
    pub name: Arc<str>,
    pub raft: Raft<C>,
    peers: Arc<Peers>,
    /// Held for reading by each write this node's Raft takes until it is committed, for
    /// writing while the leadership is handed to another member (transfer.rs): writes
    /// made then wait, and go to the new leader.
    pub(super) writes: Arc<tokio::sync::RwLock<()>>,
    /// A queue group's log growth here, by which it is asked for snapshots.
    pub(super) growth: Option<Arc<LogGrowth>>,
}

/// A request body as `T`, or why not (the text a failed response carries).
pub(super) fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    codec::decode(body).map_err(|e| format!("bad request body: {e}"))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    codec::encode(value).map_err(|e| e.to_string())
}

/// Why a write did not commit.
#[derive(Debug)]
pub enum WriteError {
    /// No leader answered within the deadline (an election, a partition, no quorum).
    NoLeader,
    /// The group refused it (a fatal Raft error, a bad command).
    Failed(String),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::NoLeader => write!(f, "no leader within the deadline"),
            WriteError::Failed(why) => write!(f, "{why}"),
        }
    }
}

pub(super) type WriteResult<C> = Result<
    ClientWriteResponse<C>,
    RaftError<NodeId, ClientWriteError<NodeId, openraft::BasicNode>>,
>;

impl<C: GroupTypes> Group<C> {
    pub fn new(name: Arc<str>, raft: Raft<C>, peers: Arc<Peers>) -> Self {
        Group {
            name,
            raft,
            peers,
            writes: Arc::default(),
            growth: None,
        }
    }

    /// The group, asked for snapshots as its log here grows (`log_growth.rs`).
    pub fn with_growth(self, growth: LogGrowth) -> Self {
        Group {
            growth: Some(Arc::new(growth)),
            ..self
        }
    }

    /// Commits `cmd` through the group's leader and returns what applying it answered.
    /// When this node is not the leader the command is forwarded to the one it knows;
    /// while there is none (an election) it retries until `deadline` has passed.
    pub async fn write(&self, cmd: C::D, deadline: Duration) -> Result<C::R, WriteError>
    where
        C::D: Clone + LeaderStamp,
    {
        let until = tokio::time::Instant::now() + deadline;
        // Encoded only to be forwarded, once however many times. A retry takes another
        // clone (a queue group's messages are shared bytes: no body is copied).
        let mut body: Option<Vec<u8>> = None;
        loop {
            let written = {
                let _open = self.writes.read().await;
                // Taken here only if this node leads: stamped now, with its clock.
                let mut cmd = cmd.clone();
                cmd.stamp(now_ms());
                self.raft.client_write(cmd).await
            };
            let result: WriteResult<C> = match written {
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    match (f.leader_id, f.leader_node) {
                        (Some(id), Some(node)) => {
                            let body = match &mut body {
                                Some(body) => body,
                                empty => empty.insert(encode(&cmd).map_err(WriteError::Failed)?),
                            };
                            let left = until.saturating_duration_since(tokio::time::Instant::now());
                            let to = (id, node.addr.as_str());
                            forward_write(&self.peers, &self.name, to, body, left).await?
                        }
                        _ => Err(RaftError::APIError(ClientWriteError::ForwardToLeader(
                            ForwardToLeader::empty(),
                        ))),
                    }
                }
                other => other,
            };
            match result {
                Ok(response) => return Ok(response.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    if tokio::time::Instant::now() >= until {
                        return Err(WriteError::NoLeader);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(WriteError::Failed(e.to_string())),
            }
        }
    }
}

/// Sends an encoded write for group `name` to node `to` (id, address) and returns what it
/// answered; a node that cannot be asked (gone, cut off) answers as if it knew no leader,
/// so the caller waits for one.
pub(super) async fn forward_write<C: GroupTypes>(
    peers: &Peers,
    name: &str,
    (id, addr): (NodeId, &str),
    body: &[u8],
    left: Duration,
) -> Result<WriteResult<C>, WriteError> {
    match peers
        .peer(id, addr)
        .call(RpcKind::ClientWrite, name, body, left)
        .await
    {
        Ok(answer) => decode(&answer).map_err(WriteError::Failed),
        Err(_) => Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(
            ForwardToLeader::empty(),
        )))),
    }
}

impl<C: GroupTypes> GroupRpc for Group<C>
where
    C::D: LeaderStamp,
{
    fn handle(&self, kind: RpcKind, body: Vec<u8>) -> Reply {
        let raft = self.raft.clone();
        let writes = self.writes.clone();
        Box::pin(async move {
            match kind {
                RpcKind::Append => {
                    let req = decode(&body)?;
                    encode(&raft.append_entries(req).await)
                }
                RpcKind::Vote => {
                    let req: VoteRequest<NodeId> = decode(&body)?;
                    encode(&raft.vote(req).await)
                }
                RpcKind::Snapshot => {
                    let req: InstallSnapshotRequest<C> = decode(&body)?;
                    let answer: Result<_, RaftError<NodeId, InstallSnapshotError>> =
                        raft.install_snapshot(req).await;
                    encode(&answer)
                }
                RpcKind::ClientWrite => {
                    let mut cmd: C::D = decode(&body)?;
                    // Answered from here only if this node leads; otherwise the caller
                    // gets the forward-to-leader error and asks again. The leader's clock
                    // times it, not the writer's: stamped once past the write gate, which a
                    // leader transfer may hold for seconds (and then fail, this node still
                    // leading).
                    let _open = writes.read().await;
                    cmd.stamp(now_ms());
                    let answer: WriteResult<C> = raft.client_write(cmd).await;
                    encode(&answer)
                }
                other => Err(format!("{other:?} is not a group request")),
            }
        })
    }

    fn status(&self) -> GroupStatus {
        let m = self.raft.metrics().borrow().clone();
        let last = m.last_log_index;
        let lag = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, matched)| {
                        let behind = match (last, matched) {
                            (Some(l), Some(m)) => Some(l.saturating_sub(m.index)),
                            (None, _) => Some(0),
                            (Some(_), None) => None,
                        };
                        (*id, behind)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let config = m.membership_config.membership();
        GroupStatus {
            group: self.name.to_string(),
            state: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .into(),
            term: m.current_term,
            leader: m.current_leader,
            voters: config.voter_ids().collect(),
            learners: config.learner_ids().collect(),
            last_log_index: last,
            last_applied: m.last_applied.map(|l| l.index),
            lag,
            snapshot: m.snapshot.map(|l| l.index),
            purged: m.purged.map(|l| l.index),
        }
    }
}
