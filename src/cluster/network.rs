//! openraft's network for any group kind: its RPCs (append, vote, snapshot chunks) become
//! requests on the peer connections of `transport.rs`, named by the group; answers and
//! openraft's own errors come back encoded by `codec.rs`.
//!
//! A peer's address is this node's own `--cluster-peers` entry when there is one (so a
//! test can put a fault-injecting proxy between each pair of nodes), else the address the
//! group's membership records for it.

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::codec;
use super::transport::{CallError, Peer};
use super::types::GroupTypes;
use super::vote_refusals::VoteRefusals;
use super::wire::RpcKind;

type NodeId = u64;

/// This node's connections to its peers, by node id.
pub struct Peers {
    me: NodeId,
    /// Addresses from `--cluster-peers` (they win over a membership's addresses).
    configured: BTreeMap<NodeId, String>,
    open: Mutex<HashMap<NodeId, Arc<Peer>>>,
    /// A second connection to each peer for the failure detector's beacons
    /// (`detector.rs`): on the first, a beacon would wait behind every append queued
    /// before it, and under load that is longer than the silence that starts an election.
    control: Mutex<HashMap<NodeId, Arc<Peer>>>,
    /// The refusals of this node's vote requests that the detector acts on.
    pub refusals: Arc<VoteRefusals>,
}

impl Peers {
    pub fn new(me: NodeId, configured: BTreeMap<NodeId, String>) -> Peers {
        Peers {
            me,
            configured,
            open: Mutex::new(HashMap::new()),
            control: Mutex::new(HashMap::new()),
            refusals: Default::default(),
        }
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The connection to `id`, reached at its configured address or else at `addr`.
    pub fn peer(&self, id: NodeId, addr: &str) -> Arc<Peer> {
        self.connection_in(&self.open, id, addr)
    }

    /// The control connection to `id` (beacons only), addressed as `peer`.
    pub fn control_peer(&self, id: NodeId, addr: &str) -> Arc<Peer> {
        self.connection_in(&self.control, id, addr)
    }

    fn connection_in(
        &self,
        map: &Mutex<HashMap<NodeId, Arc<Peer>>>,
        id: NodeId,
        addr: &str,
    ) -> Arc<Peer> {
        let addr = self.configured.get(&id).map_or(addr, String::as_str);
        let mut open = map.lock().expect("peers map");
        match open.get(&id) {
            Some(p) if p.addr() == addr => p.clone(),
            _ => {
                let p = Arc::new(Peer::new(addr.to_owned()));
                open.insert(id, p.clone());
                p
            }
        }
    }
}

/// The network factory of one group.
pub struct GroupNetwork<C> {
    peers: Arc<Peers>,
    group: Arc<str>,
    kind: PhantomData<fn() -> C>,
}

impl<C> GroupNetwork<C> {
    pub fn new(peers: Arc<Peers>, group: Arc<str>) -> Self {
        GroupNetwork {
            peers,
            group,
            kind: PhantomData,
        }
    }
}

/// One group's link to one peer.
pub struct Link<C> {
    peer: Arc<Peer>,
    group: Arc<str>,
    me: NodeId,
    target: NodeId,
    refusals: Arc<VoteRefusals>,
    kind: PhantomData<fn() -> C>,
}

impl<C: GroupTypes> RaftNetworkFactory<C> for GroupNetwork<C> {
    type Network = Link<C>;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Link<C> {
        Link {
            peer: self.peers.peer(target, &node.addr),
            group: self.group.clone(),
            me: self.peers.me,
            target,
            refusals: self.peers.refusals.clone(),
            kind: PhantomData,
        }
    }
}

/// How long a call may wait when openraft gives no deadline of its own.
const DEFAULT_TTL: Duration = Duration::from_secs(5);

impl<C: GroupTypes> Link<C> {
    /// One round trip: the request as `codec.rs` encodes it, the answer as `Result<T, RaftError<E>>`.
    async fn call<Req, T, E>(
        &self,
        kind: RpcKind,
        action: RPCTypes,
        request: &Req,
        option: &RPCOption,
    ) -> Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = codec::encode(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let ttl = match option.hard_ttl() {
            t if t.is_zero() => DEFAULT_TTL,
            t => t,
        };
        let answer = self
            .peer
            .call(kind, &self.group, &body, ttl)
            .await
            .map_err(|e| match e {
                CallError::Timeout => RPCError::Timeout(Timeout {
                    action,
                    id: self.me,
                    target: self.target,
                    timeout: ttl,
                }),
                other => RPCError::Unreachable(Unreachable::new(&other)),
            })?;
        let result: Result<T, RaftError<NodeId, E>> =
            codec::decode(&answer).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl<C: GroupTypes> RaftNetwork<C> for Link<C> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RpcKind::Append, RPCTypes::AppendEntries, &rpc, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(RpcKind::Snapshot, RPCTypes::InstallSnapshot, &rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let response = self
            .call(RpcKind::Vote, RPCTypes::Vote, &rpc, &option)
            .await?;
        self.refusals
            .observe(&self.group, &rpc, &response, self.target);
        Ok(response)
    }
}
