//! The metadata group: the one Raft group every node is a member of, holding what the
//! whole cluster must agree on. So far that is the node table (each node's addresses and
//! version, written by the node itself when it starts), the quorum queues (each with
//! the nodes of its own group), and the exchanges and the bindings to exchanges and
//! quorum queues (`broker/replicated_topology.rs`), and the access database (vhosts,
//! users, permissions, policies, parameters: `broker/access_change.rs`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::machine::{Machine, Replicated};
pub use super::types::WriteId;
use crate::broker::access_change::{self, AccessChange};
use crate::broker::access_db::AccessData;
use crate::broker::replicated_topology::{BindingDef, ExchangeDef, TopologyChange};

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
    /// The node that wrote the declaration and which of its writes it is (none in
    /// entries older than the field): a declaration committed twice, with another node's
    /// deletion between, must not declare the queue again.
    #[serde(default)]
    pub write: Option<(NodeId, WriteId)>,
}

/// The group of a `DeleteQueue` written by a node that deleted a quorum queue before the
/// queue's declaration reached it (its own still in the writer, or another node's still
/// on its way): no group of a queue has it, as a group is its declaration's log index and
/// index 0 is the group's first membership entry.
pub const ANY_GROUP: u64 = 0;

/// A command of the metadata group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// A node started (or restarted): its entry in the node table.
    NodeUp(NodeInfo),
    /// A quorum queue was declared (a no-op if the vhost already has one of that name).
    DeclareQueue(QueueDecl),
    /// A quorum queue was deleted: the one of group `group` (a queue declared again
    /// since, under a new group, stays), or with `group` [`ANY_GROUP`] whichever the name
    /// has when the entry is applied.
    DeleteQueue {
        vhost: String,
        name: String,
        group: u64,
        /// Its node and which of its writes it is (see `QueueDecl::write`).
        #[serde(default)]
        write: Option<(NodeId, WriteId)>,
    },
    /// An exchange declared or deleted, a binding made or removed, by a client of node
    /// `origin` in `vhost`.
    Topology {
        origin: NodeId,
        vhost: String,
        change: TopologyChange,
        /// Which of its node's writes this is (none in entries older than the field).
        #[serde(default)]
        write: Option<WriteId>,
    },
    /// Changes to the access database made through a node: refused whole if the result
    /// does not hold together (`access_change::checked`).
    Access(Vec<AccessChange>),
    /// What a node brings into the cluster's access database: every record of it whose
    /// key the cluster does not have (the first node's makes the database).
    AccessMerge(AccessData),
}

/// Metadata carries no time of its leader's.
impl super::types::LeaderStamp for MetaCommand {}

/// The last metadata write taken in from each node. A node's writes go one after another
/// (the next once the last is committed), so a write numbered at most its node's last of
/// the same start is one committed already.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastWrites(BTreeMap<NodeId, WriteId>);

impl LastWrites {
    /// Whether write `write` of node `origin` is new, noting it if so.
    pub fn first_time(&mut self, origin: NodeId, write: Option<WriteId>) -> bool {
        let Some(write) = write else {
            return true;
        };
        if self.covers(origin, write) {
            return false;
        }
        if self
            .0
            .get(&origin)
            .is_some_and(|last| write.started_at < last.started_at)
        {
            // A write of an earlier start, forwarded before that start ended and
            // committed only now: new, but the start recorded stays the later one, or a
            // snapshot would no longer cover that start's writes.
            return true;
        }
        self.0.insert(origin, write);
        true
    }

    /// Whether write `id` of node `origin` is one taken in already.
    pub fn covers(&self, origin: NodeId, id: WriteId) -> bool {
        self.0
            .get(&origin)
            .is_some_and(|last| last.started_at == id.started_at && id.seq <= last.seq)
    }

    /// `first_time` of a queue's declaration or deletion.
    pub fn first_time_of(&mut self, write: Option<(NodeId, WriteId)>) -> bool {
        write.is_none_or(|(origin, id)| self.first_time(origin, Some(id)))
    }
}

/// What applying a metadata command answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    Nothing,
    Done,
    /// The queue's group number (new, or the existing queue's).
    Queue(u64),
    /// An access change applied: the index of its entry (a node waits until it has made
    /// the change itself before answering its client).
    Applied(u64),
    /// An access change refused, and why.
    Refused(String),
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
    /// Exchanges by vhost and name (the first declaration of a name holds).
    #[serde(default)]
    pub exchanges: BTreeMap<String, BTreeMap<String, ExchangeDef>>,
    /// Bindings to exchanges and quorum queues, by vhost.
    #[serde(default)]
    pub bindings: BTreeMap<String, BTreeSet<BindingDef>>,
    /// The access database; `None` until the first node has brought its own.
    #[serde(default)]
    pub access: Option<AccessData>,
    /// The last metadata write of each node taken in.
    #[serde(default)]
    pub last_writes: LastWrites,
}

impl MetaState {
    /// `vhost`'s quorum queue `name`: its group number and declaration.
    pub fn queue(&self, vhost: &str, name: &str) -> Option<(u64, &QueueDecl)> {
        self.queues
            .iter()
            .find(|(_, q)| q.vhost == vhost && q.name == name)
            .map(|(g, q)| (*g, q))
    }

    /// The group number of `vhost`'s quorum queue `name`.
    pub fn queue_group(&self, vhost: &str, name: &str) -> Option<u64> {
        self.queue(vhost, name).map(|(group, _)| group)
    }

    /// Every change that builds `vhost`'s topology as it stands: its exchanges, then the
    /// bindings.
    pub fn topology(&self, vhost: &str) -> Vec<TopologyChange> {
        let exchanges = self
            .exchanges
            .get(vhost)
            .into_iter()
            .flat_map(|e| e.values());
        let bindings = self.bindings.get(vhost).into_iter().flatten();
        exchanges
            .cloned()
            .map(TopologyChange::Declared)
            .chain(bindings.cloned().map(TopologyChange::Bound))
            .collect()
    }

    /// Whether `vhost` has binding `def`.
    pub fn has_binding(&self, vhost: &str, def: &BindingDef) -> bool {
        self.bindings.get(vhost).is_some_and(|b| b.contains(def))
    }

    /// The bindings of `vhost` that end at `end`.
    pub fn bindings_of(&self, vhost: &str, end: Endpoint) -> Vec<BindingDef> {
        let bindings = self.bindings.get(vhost).into_iter().flatten();
        bindings.filter(|b| end.holds(b)).cloned().collect()
    }

    /// Whether binding `def` joins things `vhost` has: its source exchange, and its
    /// destination exchange or quorum queue (a predeclared exchange is always there).
    fn binds(&self, vhost: &str, def: &BindingDef) -> bool {
        let exchange = |name: &str| {
            name.is_empty()
                || name.starts_with("amq.")
                || self
                    .exchanges
                    .get(vhost)
                    .is_some_and(|e| e.contains_key(name))
        };
        let destination = match def.to_exchange {
            true => exchange(&def.destination),
            false => self.queue_group(vhost, &def.destination).is_some(),
        };
        exchange(&def.source) && destination
    }

    fn change_topology(&mut self, vhost: &str, change: &TopologyChange) {
        match change {
            TopologyChange::Declared(def) => {
                let exchanges = self.exchanges.entry(vhost.into()).or_default();
                exchanges
                    .entry(def.name.clone())
                    .or_insert_with(|| def.clone());
            }
            TopologyChange::Deleted(name) => {
                if let Some(exchanges) = self.exchanges.get_mut(vhost) {
                    exchanges.remove(name);
                }
                self.unbind_all(vhost, |b| Endpoint::Exchange(name).holds(b));
            }
            TopologyChange::Bound(def) => {
                // A binding made on a node that had not yet applied the deletion of its
                // source or destination is not kept: its node takes it back when it
                // applies this entry (`Replication::follow_meta`).
                if !self.binds(vhost, def) {
                    return;
                }
                self.bindings
                    .entry(vhost.into())
                    .or_default()
                    .insert(def.clone());
            }
            TopologyChange::Unbound(def) => {
                if let Some(bindings) = self.bindings.get_mut(vhost) {
                    bindings.remove(def);
                }
            }
        }
    }

    /// `data` after `change`, if it holds together.
    fn change_access(&mut self, index: u64, change: impl FnOnce(&mut AccessData)) -> MetaResponse {
        let mut data = self.access.clone().unwrap_or_default();
        change(&mut data);
        match access_change::checked(data.clone()) {
            Ok(_) => {
                self.access = Some(data);
                MetaResponse::Applied(index)
            }
            Err(why) => MetaResponse::Refused(why),
        }
    }

    fn unbind_all(&mut self, vhost: &str, gone: impl Fn(&BindingDef) -> bool) {
        if let Some(bindings) = self.bindings.get_mut(vhost) {
            bindings.retain(|b| !gone(b));
        }
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
                if !self.last_writes.first_time_of(decl.write) {
                    // Answered with the name's group, as the first time (its writer
                    // names it in a deletion: `meta_writes.rs`).
                    return self
                        .queue_group(&decl.vhost, &decl.name)
                        .map_or(MetaResponse::Done, MetaResponse::Queue);
                }
                if let Some(g) = self.queue_group(&decl.vhost, &decl.name) {
                    return MetaResponse::Queue(g);
                }
                self.queues.insert(index, decl.clone());
                MetaResponse::Queue(index)
            }
            MetaCommand::DeleteQueue {
                vhost,
                name,
                group,
                write,
            } => {
                if !self.last_writes.first_time_of(*write) {
                    return MetaResponse::Done;
                }
                let current = self.queue_group(vhost, name);
                if let Some(current) = current.filter(|g| *group == ANY_GROUP || g == group) {
                    self.queues.remove(&current);
                    self.unbind_all(vhost, |b| Endpoint::Queue(name).holds(b));
                }
                MetaResponse::Done
            }
            MetaCommand::Topology {
                origin,
                vhost,
                change,
                write,
            } => {
                if self.last_writes.first_time(*origin, *write) {
                    self.change_topology(vhost, change);
                }
                MetaResponse::Done
            }
            MetaCommand::Access(changes) => {
                if self.access.is_none() {
                    return MetaResponse::Refused(NO_ACCESS_DATABASE_YET.into());
                }
                self.change_access(index, |data| access_change::apply(data, changes))
            }
            MetaCommand::AccessMerge(from) => {
                self.change_access(index, |data| access_change::merge(data, from))
            }
        }
    }

    fn nothing() -> MetaResponse {
        MetaResponse::Nothing
    }
}

/// Why an access change is refused before the first node's database was merged in: the
/// node that sent it waits for the merge and sends it again (`replication/access.rs`).
pub const NO_ACCESS_DATABASE_YET: &str = "the cluster has no access database yet";

/// The metadata group's state machine.
pub type MetaMachine = Machine<MetaState>;

/// What bindings end at: an exchange (the bindings from it and to it) or a quorum queue
/// (the bindings to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    Exchange(&'a str),
    Queue(&'a str),
}

impl Endpoint<'_> {
    /// Whether binding `b` ends here.
    pub fn holds(self, b: &BindingDef) -> bool {
        self.holds_parts(&b.source, &b.destination, b.to_exchange)
    }

    /// Whether the binding from `source` to `destination` (an exchange if `to_exchange`)
    /// ends here.
    pub fn holds_parts(self, source: &str, destination: &str, to_exchange: bool) -> bool {
        match self {
            Endpoint::Exchange(name) => source == name || (to_exchange && destination == name),
            Endpoint::Queue(name) => !to_exchange && destination == name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(name: &str, kind: &str) -> TopologyChange {
        TopologyChange::Declared(ExchangeDef {
            name: name.into(),
            kind: kind.into(),
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: vec![0, 0, 0, 0],
        })
    }

    fn binding(source: &str, destination: &str, to_exchange: bool) -> BindingDef {
        BindingDef {
            source: source.into(),
            destination: destination.into(),
            to_exchange,
            routing_key: "k".into(),
            arguments: vec![0, 0, 0, 0],
        }
    }

    fn apply(state: &mut MetaState, index: u64, change: TopologyChange) {
        let cmd = MetaCommand::Topology {
            origin: 1,
            vhost: "/".into(),
            change,
            write: None,
        };
        assert_eq!(state.apply(index, &cmd), MetaResponse::Done);
    }

    #[test]
    fn a_write_committed_twice_is_taken_in_once() {
        let mut s = MetaState::default();
        let write = |origin, started_at, seq, change| MetaCommand::Topology {
            origin,
            vhost: "/".into(),
            change,
            write: Some(WriteId { started_at, seq }),
        };
        let exchanges = |s: &MetaState| s.exchanges.get("/").map_or(0, |e| e.len());
        s.apply(1, &write(1, 100, 1, exchange("x", "direct")));
        s.apply(2, &write(2, 200, 1, TopologyChange::Deleted("x".into())));
        assert_eq!(exchanges(&s), 0);
        // Node 1's first write again (its answer was lost): not taken in, x stays deleted.
        s.apply(3, &write(1, 100, 1, exchange("x", "direct")));
        assert_eq!(exchanges(&s), 0);
        // Its next write, and the first of its next start, are.
        s.apply(4, &write(1, 100, 2, exchange("x", "direct")));
        assert_eq!(exchanges(&s), 1);
        s.apply(5, &write(1, 100, 2, TopologyChange::Deleted("x".into())));
        assert_eq!(exchanges(&s), 1);
        s.apply(6, &write(1, 300, 1, TopologyChange::Deleted("x".into())));
        assert_eq!(exchanges(&s), 0);
        // An entry from before write numbers is always taken in.
        apply(&mut s, 7, exchange("x", "direct"));
        apply(&mut s, 8, exchange("y", "direct"));
        assert_eq!(exchanges(&s), 2);
    }

    #[test]
    fn a_queue_declaration_or_deletion_committed_twice_is_taken_in_once() {
        let mut s = MetaState::default();
        let id = |origin, seq| {
            Some((
                origin,
                WriteId {
                    started_at: 100,
                    seq,
                },
            ))
        };
        let declare = |write| {
            MetaCommand::DeclareQueue(QueueDecl {
                vhost: "/".into(),
                name: "q".into(),
                arguments: vec![],
                members: vec![1],
                write,
            })
        };
        let delete = |write| MetaCommand::DeleteQueue {
            vhost: "/".into(),
            name: "q".into(),
            group: ANY_GROUP,
            write,
        };
        s.apply(10, &declare(id(1, 1)));
        s.apply(11, &delete(id(2, 1)));
        // A write of node 2's earlier start committed late is new, and leaves node 2's
        // last write of this start where it was.
        let earlier = WriteId {
            started_at: 50,
            seq: 7,
        };
        assert!(s.last_writes.first_time(2, Some(earlier)));
        assert!(s.last_writes.covers(2, id(2, 1).unwrap().1));
        // Node 1's declaration again: the queue stays deleted.
        s.apply(12, &declare(id(1, 1)));
        assert_eq!(s.queue_group("/", "q"), None);
        // Node 1 declares it anew, and node 2's deletion comes again: it stays.
        s.apply(13, &declare(id(1, 2)));
        s.apply(14, &delete(id(2, 1)));
        assert_eq!(s.queue_group("/", "q"), Some(13));
        // Numbers are shared with the node's topology writes.
        let topology = MetaCommand::Topology {
            origin: 1,
            vhost: "/".into(),
            change: exchange("x", "direct"),
            write: Some(WriteId {
                started_at: 100,
                seq: 3,
            }),
        };
        s.apply(15, &topology);
        s.apply(16, &delete(id(1, 3)));
        assert_eq!(s.queue_group("/", "q"), Some(13));
        s.apply(17, &delete(id(1, 4)));
        assert_eq!(s.queue_group("/", "q"), None);
    }

    #[test]
    fn a_deletion_takes_its_group_or_with_any_group_whichever_the_name_has() {
        let mut s = MetaState::default();
        let declare = |name: &str| {
            MetaCommand::DeclareQueue(QueueDecl {
                vhost: "/".into(),
                name: name.into(),
                arguments: vec![],
                members: vec![1],
                write: None,
            })
        };
        let delete = |group| MetaCommand::DeleteQueue {
            vhost: "/".into(),
            name: "q".into(),
            group,
            write: None,
        };
        s.apply(5, &declare("q"));
        s.apply(6, &declare("other"));
        s.apply(7, &delete(4));
        assert_eq!(
            s.queue_group("/", "q"),
            Some(5),
            "an older group's deletion"
        );
        s.apply(8, &delete(ANY_GROUP));
        assert_eq!(s.queue_group("/", "q"), None);
        assert_eq!(s.queue_group("/", "other"), Some(6));
        s.apply(9, &delete(ANY_GROUP));
        assert_eq!(s.queue_group("/", "other"), Some(6), "nothing of that name");
        s.apply(10, &declare("q"));
        s.apply(11, &delete(10));
        assert_eq!(s.queue_group("/", "q"), None);
    }

    #[test]
    fn topology_first_declaration_holds_and_deletions_take_their_bindings() {
        let mut s = MetaState::default();
        // A binding to a quorum queue the state does not have is not kept.
        apply(&mut s, 1, exchange("x", "direct"));
        apply(&mut s, 2, TopologyChange::Bound(binding("x", "q", false)));
        apply(&mut s, 2, TopologyChange::Bound(binding("x", "y", true)));
        apply(
            &mut s,
            2,
            TopologyChange::Bound(binding("nowhere", "x", true)),
        );
        assert_eq!(s.topology("/"), vec![exchange("x", "direct")]);
        let mut s = MetaState::default();
        for (index, name) in [(20, "q"), (21, "q2")] {
            let decl = MetaCommand::DeclareQueue(QueueDecl {
                vhost: "/".into(),
                name: name.into(),
                arguments: vec![],
                members: vec![1],
                write: None,
            });
            assert_eq!(s.apply(index, &decl), MetaResponse::Queue(index));
        }
        apply(&mut s, 1, exchange("x", "direct"));
        apply(&mut s, 2, exchange("x", "fanout"));
        apply(&mut s, 3, exchange("y", "fanout"));
        apply(&mut s, 4, TopologyChange::Bound(binding("x", "q", false)));
        apply(&mut s, 5, TopologyChange::Bound(binding("x", "y", true)));
        apply(&mut s, 6, TopologyChange::Bound(binding("y", "q2", false)));
        assert_eq!(
            s.topology("/"),
            vec![
                exchange("x", "direct"),
                exchange("y", "fanout"),
                TopologyChange::Bound(binding("x", "q", false)),
                TopologyChange::Bound(binding("x", "y", true)),
                TopologyChange::Bound(binding("y", "q2", false)),
            ]
        );
        // Deleting y takes the binding to it and the one from it.
        apply(&mut s, 7, TopologyChange::Deleted("y".into()));
        assert_eq!(
            s.topology("/"),
            vec![
                exchange("x", "direct"),
                TopologyChange::Bound(binding("x", "q", false))
            ]
        );
        // A quorum queue's deletion takes the bindings to it.
        let delete = MetaCommand::DeleteQueue {
            vhost: "/".into(),
            name: "q".into(),
            group: 20,
            write: None,
        };
        s.apply(9, &delete);
        assert_eq!(s.topology("/"), vec![exchange("x", "direct")]);
        assert_eq!(s.queue_group("/", "q"), None);
        assert!(s.topology("other").is_empty());
        apply(
            &mut s,
            10,
            TopologyChange::Unbound(binding("x", "q", false)),
        );
    }
}
