//! The bridge between the broker's quorum queues and the cluster's Raft groups (wired by
//! the server when the node is in a cluster; the broker and the cluster know nothing of
//! each other):
//!
//! - a client declares (or deletes) a quorum queue on any node: the bridge writes it to the
//!   metadata group, with the nodes that will hold it (every voter, the list rotated by
//!   the queue's name so that groups' first members, and so their leaders, are spread);
//! - every node applies that entry: it declares the queue in its broker if it has not
//!   (`VHost::replica_attach`), opens the queue's group and starts a task that feeds what
//!   the group commits into the broker's copy, tells it whether this node leads, and
//!   writes what is published and settled here to the group (the confirm tickets of those
//!   publishes complete when the write commits, or fail after the write deadline);
//! - a quorum queue that held messages before its node joined a cluster has them written
//!   to its group before the broker's copy of the group replaces its store (`migrate`).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::broker::confirms::ReplicaTickets;
use crate::broker::replicated::{LeaderGetWait, QueueReplication};
use crate::broker::replicated_topology::TopologyChange;
use crate::broker::BrokerHandle;
use crate::cluster::group::{Group, WriteError};
use crate::cluster::machine::Tapped;
use crate::cluster::meta_machine::{MetaCommand, MetaState, QueueDecl, ANY_GROUP};
use crate::cluster::node::ClusterNode;
use crate::cluster::queue_groups::{MetaTap, OpenedQueue};
use crate::cluster::types::{QueueCommand, QueueRaft};

mod access;
mod applied_here;
mod checkout;
mod meta_writes;
mod own_writes;
mod queue_feed;
mod topology;
use applied_here::AppliedHere;
use queue_feed::{batches, QueueFeed};
use topology::{index_of, stale, CatchUp, Missed, OwnChanges, ToSettle};

/// The bridge of one node.
pub struct Replication {
    node: Arc<ClusterNode>,
    broker: BrokerHandle,
    tickets: Arc<ReplicaTickets>,
    /// The queues whose groups are open here, by (vhost, name).
    open: Mutex<HashMap<(String, String), OpenQueue>>,
    /// Held through the whole of `ensure` and `remove`. They run from the metadata
    /// follower and from the task that opens what a given-up deletion deferred; `ensure`
    /// checks `open`, awaits (moving old messages, opening the group) and inserts, so
    /// without it two callers could both find a queue unopened and start two writers and
    /// feeds for one group, or a `remove` could come between the check and the insert.
    opening: tokio::sync::Mutex<()>,
    /// Queues of the group not opened here while a deletion of the name by this node is
    /// on its way (`OwnChanges::deleting`): opened once it is back, unless it took them
    /// away.
    deferred: Mutex<HashMap<(String, String), (u64, QueueDecl)>>,
    /// Declarations and deletions for the metadata group, written in the order they
    /// happened here (a queue deleted and declared again must not be declared first).
    meta_writes: tokio::sync::mpsc::UnboundedSender<MetaCommand>,
    /// Exchange and binding changes written from here and not yet back (topology.rs).
    own_changes: Arc<OwnChanges>,
    /// The last metadata entry the broker has taken in (applied_here.rs).
    applied_here: AppliedHere,
    /// This start of the node (`ClusterNode::started_at`, different at every start;
    /// checkout.rs: a restarted node holds nothing).
    incarnation: u64,
    /// The last access entry of the metadata group this node has made (access.rs).
    access_mirrored: tokio::sync::watch::Sender<u64>,
    /// Where a change made from a blocking thread waits for the cluster (access.rs).
    runtime: tokio::runtime::Handle,
    /// Numbers for the rounds this node's queue writers send.
    rounds: Arc<queue_feed::RoundNumbers>,
}

/// A replicated queue on this node: its group and the broker's id of the queue (which
/// incarnation of the name it is).
#[derive(Debug, Clone)]
struct OpenQueue {
    group: u64,
    queue_id: u64,
    /// The last log index of the group the broker's copy has been fed (`QueueFeed::fed`).
    fed: Arc<AtomicU64>,
    /// Where this node's consumers get the queue's messages (checkout.rs).
    source: checkout::Source,
}

/// Starts the bridge: hands the broker's quorum queues to the cluster, opens the groups
/// of the queues the metadata group knows, and follows it from then on.
pub async fn start(node: Arc<ClusterNode>, broker: BrokerHandle) -> Arc<Replication> {
    let (meta_writes, pending) = tokio::sync::mpsc::unbounded_channel();
    let own_changes = Arc::new(OwnChanges::default());
    let (given_up, mut deletions_given_up) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(meta_writes::write_meta(
        node.clone(),
        pending,
        own_changes.clone(),
        given_up,
    ));
    let (applied_here, known) = AppliedHere::open(&node.meta_dir());
    let bridge = Arc::new(Replication {
        tickets: broker.replica_tickets(),
        node: node.clone(),
        broker: broker.clone(),
        open: Mutex::default(),
        opening: tokio::sync::Mutex::new(()),
        deferred: Mutex::default(),
        meta_writes,
        own_changes,
        applied_here,
        incarnation: node.started_at(),
        access_mirrored: tokio::sync::watch::Sender::new(0),
        runtime: tokio::runtime::Handle::current(),
        rounds: Arc::new(queue_feed::RoundNumbers::new(
            node.node_id(),
            node.started_at(),
        )),
    });
    node.set_checkout_handler(bridge.clone());
    // A deletion the writer gave up on will not come back: what waited for it opens now.
    let opener = bridge.clone();
    tokio::spawn(async move {
        while let Some((vhost, name)) = deletions_given_up.recv().await {
            opener.open_deferred(&vhost, &name).await;
        }
    });
    let local = broker.replicate_quorum_queues(bridge.clone());
    // The state the node opened and what was applied since: the entries replayed and
    // caught up on while it started. Those past what the broker had taken in before
    // (all of them, when the state opened is past it) it has not seen (topology.rs).
    let (opened, opened_at, mut tap) = node.meta_tap().await;
    let unseen = |index: u64| known.is_none_or(|k| index > k);
    let mut catch_up = CatchUp::new(opened, node.node_id(), node.started_at());
    let mut missed = Missed::default();
    if opened_at > 0 && unseen(opened_at) {
        missed.everything();
    }
    let mut last = opened_at;
    while let Ok(event) = tap.try_recv() {
        last = last.max(index_of(&event));
        if unseen(index_of(&event)) {
            missed.note(&event);
        }
        catch_up.follow(&event);
    }
    let state = catch_up.state().clone();
    bridge.own_changes.taken_in_as(node.node_id(), &state);
    // A node the node table does not list yet is new to the cluster: the exchanges and
    // bindings it brings are made known (a node that was in it before only catches up:
    // what it has and the cluster has not was deleted while it was away, or made here
    // and lost on the way, which `CatchUp` tells apart).
    let new_here = !state.nodes.contains_key(&node.node_id());
    // Access first: the cluster's queues and exchanges live in its vhosts.
    bridge.join_access(&state, new_here).await;
    bridge.reconcile(&state, false).await;
    if !new_here {
        bridge.take_missed(&state, &missed);
    }
    // Queues before the bindings to them: the group keeps no binding to a quorum queue
    // it does not have.
    for (vhost, name, arguments) in local {
        if state.queue_group(&vhost, &name).is_some() {
            continue;
        }
        if !new_here && missed.deleted_queue(&vhost, &name) {
            // Deleted in the cluster while this node was away.
            if let Some(vh) = broker.vhost(&vhost) {
                vh.with(|m| m.replica_delete_any(&name));
            }
        } else {
            // Declared before this node was in a cluster (or the write was lost): the
            // cluster learns of it now.
            bridge.declared(&vhost, &name, &arguments);
        }
    }
    if new_here {
        for vhost in broker.vhost_names() {
            if let Some(vh) = broker.vhost(&vhost) {
                for change in vh.with(|m| m.replicated_topology()) {
                    bridge.topology(&vhost, change);
                }
            }
        }
    }
    bridge.applied_here.record(last);
    // A node that was in the cluster before sends again what it made and the cluster
    // never got, once it has caught up (topology.rs).
    let catch_up = match (new_here, catch_up.caught_up()) {
        (true, _) => None,
        (false, true) => {
            bridge.resend_lost_changes(catch_up.state());
            None
        }
        (false, false) => Some(catch_up),
    };
    tokio::spawn(bridge.clone().follow_meta(tap, catch_up));
    bridge
}

/// Where a node writes a queue's commands: its own member of the group (forwarded to the
/// leader from there), or, on a node that does not hold the queue, the group's members.
enum GroupTarget {
    Local(Arc<Group<QueueRaft>>),
    Remote {
        node: Arc<ClusterNode>,
        group: u64,
        members: Vec<u64>,
    },
}

impl GroupTarget {
    async fn write(&self, cmd: QueueCommand, deadline: Duration) -> Result<(), WriteError> {
        match self {
            GroupTarget::Local(group) => group.write(cmd, deadline).await.map(drop),
            GroupTarget::Remote {
                node,
                group,
                members,
            } => node
                .write_to_group(*group, members, &cmd, deadline)
                .await
                .map(drop),
        }
    }
}

/// How long a node keeps trying to move a queue's messages from before the cluster into
/// its group (the group may still be electing its first leader).
const MIGRATE_FOR: Duration = Duration::from_secs(300);

/// Writes `messages`, kept by queue `decl` from before this node was in a cluster, to the
/// queue's group, each batch as a round numbered from `rounds`; true once every one is
/// committed. A batch written again after a write that timed out keeps its number: the
/// copy committed second is left out unless a later batch's round came between them
/// (`queue_machine::LastRounds`); a crash before the store is emptied writes them again
/// at the next start: at least once, never lost.
async fn migrate(
    target: &GroupTarget,
    decl: &QueueDecl,
    messages: &[Bytes],
    rounds: &queue_feed::RoundNumbers,
) -> bool {
    let give_up = Instant::now() + MIGRATE_FOR;
    for chunk in batches(messages, Bytes::len) {
        // Copied: these are views of the store's segment mappings, and the group's state
        // keeps a body it is given (a view would keep a whole segment mapped). Their TTLs
        // count from the move (the store's own times are not carried; the leader stamps
        // its clock: `LeaderStamp`).
        let batch = chunk.iter().map(|b| Bytes::copy_from_slice(b)).collect();
        let cmd = queue_feed::numbered_round(batch, checkout::now_ms(), rounds);
        loop {
            match target.write(cmd.clone(), Duration::from_secs(10)).await {
                Ok(_) => break,
                Err(e) if Instant::now() < give_up => {
                    tracing::warn!(queue = %decl.name, "cluster: moving messages into the group: {e}; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::error!(queue = %decl.name,
                        "cluster: messages from before the cluster not moved into the group ({e}); kept here, tried again at the next start");
                    return false;
                }
            }
        }
    }
    tracing::info!(vhost = %decl.vhost, queue = %decl.name, messages = messages.len(),
        "cluster: messages from before the cluster moved into the queue's group");
    true
}

/// The nodes a new queue is spread over: the voters rotated by the name's hash (so that
/// first members, and leaders, spread), the first `size` of them when the queue asks for
/// fewer (`x-quorum-initial-group-size`; more than there are voters means all of them).
fn members_for(voters: &[u64], vhost: &str, name: &str, size: Option<usize>) -> Vec<u64> {
    let mut members = voters.to_vec();
    members.sort_unstable();
    if members.is_empty() {
        return members;
    }
    let hash = crc32fast::hash(format!("{vhost}/{name}").as_bytes()) as usize;
    let turn = hash % members.len();
    members.rotate_left(turn);
    members.truncate(size.unwrap_or(usize::MAX).max(1));
    members
}

impl QueueReplication for Replication {
    fn declared(&self, vhost: &str, name: &str, args_raw: &[u8]) {
        let size = crate::broker::replicated::initial_group_size(args_raw);
        let decl = QueueDecl {
            vhost: vhost.into(),
            name: name.into(),
            arguments: args_raw.to_vec(),
            members: members_for(&self.node.voters(), vhost, name, size),
            write: None, // Numbered by the writer.
        };
        self.own_changes.declaration_written(vhost, name);
        let _ = self.meta_writes.send(MetaCommand::DeclareQueue(decl));
    }

    fn deleted(&self, vhost: &str, name: &str) {
        let key = (vhost.to_string(), name.to_string());
        let open = self.open.lock().expect("open").get(&key).map(|o| o.group);
        // Without a group here the queue's declaration has not reached this node yet (its
        // own is still in the writer, ahead of this deletion, or another node's is on its
        // way): the writer names the group its own declaration was answered with, else the
        // deletion is of whichever group the name has when it is applied. Were nothing
        // written, the group would keep the queue and every node declare it again. Until
        // the deletion is back, no group of the name opens here (`OwnChanges::deleting`).
        let group = open.unwrap_or(ANY_GROUP);
        self.own_changes.deletion_written(vhost, name);
        let _ = self.meta_writes.send(MetaCommand::DeleteQueue {
            vhost: key.0,
            name: key.1,
            group,
            write: None, // Numbered by the writer.
        });
    }

    fn topology(&self, vhost: &str, change: TopologyChange) {
        self.own_changes.written(vhost, &change);
        // Numbered by the writer (`meta_writes.rs`), in the order it writes them.
        let _ = self.meta_writes.send(MetaCommand::Topology {
            origin: self.node.node_id(),
            vhost: vhost.to_string(),
            change,
            write: None,
        });
    }

    fn leader_get(&self, vhost: &str, name: &str) -> LeaderGetWait {
        self.ask_leader_for_one(vhost, name)
    }
}

impl Replication {
    /// Follows the metadata group: queues declared and deleted, a snapshot installed.
    async fn follow_meta(self: Arc<Self>, mut tap: MetaTap, mut catch_up: Option<CatchUp>) {
        // Settles put off until this node has caught up and sent again what it lost
        // (topology.rs): until then a change of its own that never reached the group is
        // not known as its own, and a settle would take it away.
        let mut put_off = Vec::new();
        while let Some(event) = tap.recv().await {
            if let Some(c) = &mut catch_up {
                c.follow(&event);
            }
            let index = index_of(&event);
            let settle = match event {
                Tapped::Applied(_, MetaCommand::DeclareQueue(decl)) => {
                    match self.own_changes.first_time_of(decl.write) {
                        true => {
                            let (vhost, name) = (&decl.vhost, &decl.name);
                            if let Some((origin, id)) = decl.write {
                                if origin == self.node.node_id() {
                                    self.own_changes.declaration_applied(vhost, name, id);
                                }
                            }
                            // The declaration in force, as the state has it: this entry's,
                            // or an earlier one's (this one is then a no-op, and its index
                            // no group). The state may be a few entries ahead; what it says
                            // then, a later entry says again, and if the name is gone by
                            // then, a queue declared here for it is left over.
                            match self.node.meta_queue(vhost, name).await {
                                Some((group, first)) => self.ensure(group, &first).await,
                                None => self.drop_leftover(vhost, name).await,
                            }
                            Some(ToSettle::new(vhost, false, name))
                        }
                        false => None,
                    }
                }
                Tapped::Applied(
                    _,
                    MetaCommand::DeleteQueue {
                        vhost,
                        name,
                        group,
                        write,
                    },
                ) => match self.own_changes.first_time_of(write) {
                    true => {
                        self.remove(&vhost, &name, group).await;
                        if let Some((origin, id)) = write {
                            if origin == self.node.node_id() {
                                self.own_changes.deletion_applied(&vhost, &name, id);
                                self.open_deferred(&vhost, &name).await;
                            }
                        }
                        self.drop_leftover(&vhost, &name).await;
                        Some(ToSettle::new(&vhost, false, &name))
                    }
                    false => None,
                },
                Tapped::Applied(
                    _,
                    MetaCommand::Topology {
                        origin,
                        vhost,
                        change,
                        write,
                    },
                ) => match self.own_changes.first_time(origin, write) {
                    true => {
                        // Ends this node's write of this number, if it is one of this start.
                        let own = write.filter(|_| origin == self.node.node_id());
                        self.committed_topology(own, &vhost, change).await
                    }
                    false => None,
                },
                Tapped::Applied(index, MetaCommand::Access(_) | MetaCommand::AccessMerge(_)) => {
                    self.access_applied(index).await;
                    None
                }
                Tapped::Applied(_, MetaCommand::NodeUp(_)) => None,
                Tapped::Reset(index, state) => {
                    self.own_changes.taken_in_as(self.node.node_id(), &state);
                    self.access_reset(index, &state).await;
                    self.reconcile(&state, true).await;
                    None
                }
            };
            match (settle, &catch_up) {
                (Some(at), None) => self.settle_bindings_of(&at).await,
                (Some(at), Some(_)) => put_off.push(at),
                (None, _) => {}
            }
            self.applied_here.record(index);
            if catch_up.as_ref().is_some_and(CatchUp::caught_up) {
                if let Some(c) = catch_up.take() {
                    self.resend_lost_changes(c.state());
                    for at in put_off.drain(..) {
                        self.settle_bindings_of(&at).await;
                    }
                }
            }
        }
    }

    /// Opens every queue `state` has, closes the ones it no longer has; makes the
    /// exchanges and bindings it has. With `sweep` (a snapshot installed: this node is
    /// caught up to it) also removes the exchanges, bindings and quorum queues it does not
    /// have, unless this node's own change to them is still on its way.
    async fn reconcile(&self, state: &MetaState, sweep: bool) {
        // Before the state's queues are deferred again: kept only if the state has them.
        self.deferred
            .lock()
            .expect("deferred")
            .retain(|(v, n), (g, _)| state.queue_group(v, n) == Some(*g));
        // Closed first: a name the state has under another group (deleted and declared
        // again while this node was away) is then opened under the new one, where
        // `ensure` would find it open and leave it to be closed after.
        let gone: Vec<((String, String), u64)> = {
            let open = self.open.lock().expect("open");
            open.iter()
                .filter(|((v, n), o)| state.queue_group(v, n) != Some(o.group))
                .map(|(k, o)| (k.clone(), o.group))
                .collect()
        };
        for ((vhost, name), group) in gone {
            self.remove(&vhost, &name, group).await;
        }
        for (group, decl) in &state.queues {
            self.ensure(*group, decl).await;
        }
        let mut vhosts: std::collections::BTreeSet<String> =
            state.exchanges.keys().cloned().collect();
        vhosts.extend(state.bindings.keys().cloned());
        if sweep {
            vhosts.extend(self.broker.vhost_names().iter().map(|v| v.to_string()));
        }
        for vhost in &vhosts {
            let wanted = state.topology(vhost);
            let mut changes = Vec::new();
            if sweep {
                let here = self
                    .broker
                    .vhost(vhost)
                    .map_or_else(Vec::new, |vh| vh.with(|m| m.replicated_topology()));
                changes.extend(stale(here, &wanted));
            }
            changes.extend(wanted);
            for change in changes {
                if self.own_changes.applies(None, vhost, &change) {
                    self.apply_topology(vhost, &change);
                }
            }
        }
        if sweep {
            // A quorum queue a client declared here whose name the state lacks: one whose
            // declaration and deletion the snapshot covers is left over, as when the
            // entries are applied one by one (`drop_leftover` keeps what is open or
            // deferred here, and what this node's own declaration or deletion, still on
            // its way, will settle).
            for vhost in self.broker.vhost_names() {
                let Some(vh) = self.broker.vhost(&vhost) else {
                    continue;
                };
                for name in vh.with(|m| m.quorum_queue_names()) {
                    if state.queue_group(&vhost, &name).is_none() {
                        self.drop_leftover(&vhost, &name).await;
                    }
                }
            }
        }
    }

    /// Makes queue `decl` (group `group`) a replica here and opens its group, once.
    async fn ensure(&self, group: u64, decl: &QueueDecl) {
        let _opening = self.opening.lock().await;
        let key = (decl.vhost.clone(), decl.name.clone());
        if self.open.lock().expect("open").contains_key(&key) {
            return; // A repeated declaration: the queue's group is the first one's.
        }
        // Not a group the cluster has deleted since the caller looked (a deferred opening
        // is taken out of `deferred` before this lock: a deletion applied meanwhile found
        // nothing to remove); a later entry says what the name is now.
        let in_force = self.node.meta_queue(&decl.vhost, &decl.name).await;
        if in_force.is_none_or(|(g, _)| g != group) {
            return;
        }
        if self.defer(group, decl) {
            return;
        }
        let Some(vh) = self.broker.vhost(&decl.vhost) else {
            tracing::warn!(vhost = %decl.vhost, queue = %decl.name,
                "cluster: quorum queue in a vhost this node does not have");
            return;
        };
        // Messages the queue kept from before this node was in a cluster go into the group
        // first: attaching empties the store for the group's copy. Otherwise the queue is
        // attached first, so that a queue this node cannot hold opens no group.
        let preexisting = vh.with(|m| m.replica_preexisting(&decl.name));
        let mut target = None;
        if !preexisting.is_empty() {
            let Some(t) = self.target(group, decl).await else {
                return;
            };
            if !migrate(&t.0, decl, &preexisting, &self.rounds).await {
                // Left on disk, unattached: the next start tries again.
                return;
            }
            target = Some(t);
        }
        drop(preexisting);
        let member = decl.members.contains(&self.node.node_id());
        // Checked again under the vhost's lock, which a client's deletion holds as it
        // notes itself (`deleted`).
        let attached = vh.with(|m| {
            let deleting = self.own_changes.deleting(&decl.vhost, &decl.name);
            (!deleting).then(|| m.replica_attach(&decl.name, &decl.arguments, !member))
        });
        let Some(attached) = attached else {
            self.defer(group, decl);
            return;
        };
        let (wake, queue_id) = match attached {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(vhost = %decl.vhost, queue = %decl.name,
                    "cluster: cannot hold quorum queue here: {e}");
                return;
            }
        };
        let (target, opened) = match target {
            Some(t) => t,
            None => match self.target(group, decl).await {
                Some(t) => t,
                None => return,
            },
        };
        let fed = Arc::new(AtomicU64::new(0));
        let source = match member {
            true => checkout::Source::Copy(fed.clone()),
            false => checkout::Source::Lent(decl.members.clone()),
        };
        let open = OpenQueue {
            group,
            queue_id,
            fed: fed.clone(),
            source: source.clone(),
        };
        let earlier = self.open.lock().expect("open").insert(key, open);
        // `opening` is held since the check at the top: nothing opened it meanwhile.
        debug_assert!(
            earlier.is_none(),
            "a quorum queue's group opened twice here"
        );
        tracing::info!(vhost = %decl.vhost, queue = %decl.name, group, members = ?decl.members,
            member = opened.is_some(), "cluster: quorum queue replicated");
        let feed = QueueFeed {
            vhost: vh,
            name: decl.name.clone(),
            queue_id,
            me: self.node.node_id(),
            node: self.node.clone(),
            fed: fed.clone(),
            rounds: self.rounds.clone(),
        };
        tokio::spawn(
            feed.clone()
                .write(Arc::new(target), wake, self.tickets.clone()),
        );
        let consumers = checkout::Member {
            vhost: feed.vhost.clone(),
            name: feed.name.clone(),
            queue_id,
            group,
            node: self.node.clone(),
            incarnation: self.incarnation,
            source,
        };
        tokio::spawn(consumers.serve_consumers());
        if let Some(opened) = opened {
            tokio::spawn(feed.follow(opened));
        }
    }

    /// Where this node writes queue `decl`'s commands: a member opens the group here
    /// (and follows it: the opened group is returned too); another node writes through
    /// the members (its clients publish to the queue; the group's leader delivers,
    /// elsewhere). `None`, logged, if the group cannot be opened.
    async fn target(
        &self,
        group: u64,
        decl: &QueueDecl,
    ) -> Option<(GroupTarget, Option<OpenedQueue>)> {
        if !decl.members.contains(&self.node.node_id()) {
            let remote = GroupTarget::Remote {
                node: self.node.clone(),
                group,
                members: decl.members.clone(),
            };
            return Some((remote, None));
        }
        match self.node.open_queue_group(group, &decl.members).await {
            Ok(o) => Some((GroupTarget::Local(o.group.clone()), Some(o))),
            Err(e) => {
                tracing::error!(queue = %decl.name, "cluster: cannot open the queue's group: {e}");
                None
            }
        }
    }

    /// The queue of group `group` (any group: `ANY_GROUP`) was deleted in the cluster:
    /// gone here too, with its group (a queue of that name declared again since is left
    /// alone).
    async fn remove(&self, vhost: &str, name: &str, group: u64) {
        let _opening = self.opening.lock().await;
        let key = (vhost.to_string(), name.to_string());
        let matches = |g: u64| group == ANY_GROUP || g == group;
        {
            let mut deferred = self.deferred.lock().expect("deferred");
            if deferred.get(&key).is_some_and(|(g, _)| matches(*g)) {
                deferred.remove(&key);
            }
        }
        let open = {
            let mut open = self.open.lock().expect("open");
            match open.get(&key) {
                Some(o) if matches(o.group) => open.remove(&key),
                _ => None,
            }
        };
        let Some(open) = open else {
            return;
        };
        if let Some(vh) = self.broker.vhost(vhost) {
            vh.with(|m| m.replica_delete(name, open.queue_id));
        }
        self.node.close_queue_group(open.group).await;
    }

    /// A quorum queue `name` a client declared here whose declaration the cluster took in
    /// as a no-op (another node's of the name was in force) and whose name the cluster has
    /// deleted since, before this node opened that group (this node was behind, or cut
    /// off, and read the state past the deletion): no entry will attach it or take it
    /// away, and it would stay on this node alone. Deleted here, unless the name is open
    /// here, the cluster has it again (a later entry attaches the queue), or a declaration
    /// or deletion of it by this node is still on its way. Checked under the vhost's lock,
    /// which a client's declaration holds as it notes itself (`declared`).
    async fn drop_leftover(&self, vhost: &str, name: &str) {
        let _opening = self.opening.lock().await;
        let key = (vhost.to_string(), name.to_string());
        if self.open.lock().expect("open").contains_key(&key)
            || self.deferred.lock().expect("deferred").contains_key(&key)
            || self.node.meta_queue(vhost, name).await.is_some()
        {
            return;
        }
        let Some(vh) = self.broker.vhost(vhost) else {
            return;
        };
        let dropped = vh.with(|m| {
            let own_to_come =
                self.own_changes.declaring(vhost, name) || self.own_changes.deleting(vhost, name);
            (!own_to_come && m.replica_delete_any(name)).then_some(())
        });
        if dropped.is_some() {
            tracing::info!(vhost, queue = name,
                "cluster: a quorum queue declared here was deleted in the cluster before this node took in its declaration; deleted here too");
        }
    }

    /// Whether queue `decl` (group `group`) waits for a deletion of its name by this node
    /// (`OwnChanges::deleting`); if so it is noted, unless an earlier declaration of the
    /// name is (a later one follows a deletion, which takes the earlier away).
    fn defer(&self, group: u64, decl: &QueueDecl) -> bool {
        let key = (decl.vhost.clone(), decl.name.clone());
        let mut deferred = self.deferred.lock().expect("deferred");
        if !self.own_changes.deleting(&decl.vhost, &decl.name) {
            deferred.remove(&key);
            return false;
        }
        deferred.entry(key).or_insert_with(|| (group, decl.clone()));
        true
    }

    /// Opens the queue of name `name` whose opening waited for this node's deletion of the
    /// name (`ensure`), once no deletion of it is on its way any more: applied, or given
    /// up by the writer.
    async fn open_deferred(&self, vhost: &str, name: &str) {
        if self.own_changes.deleting(vhost, name) {
            return;
        }
        let key = (vhost.to_string(), name.to_string());
        let deferred = self.deferred.lock().expect("deferred").remove(&key);
        if let Some((group, decl)) = deferred {
            self.ensure(group, &decl).await;
        }
    }
}
