//! Which committed exchange and binding changes this node applies.
//!
//! A client's change is made on its node at once and reaches the other nodes through the
//! metadata group. Applied in the group's order on every node, the changes leave every
//! node alike, except that a node has already made its own: applying its own older
//! entries again could undo what it did since (a node that deleted an exchange and
//! declared it again would delete it once more on the first entry, and with it the
//! bindings to its classic queues). So a change to one exchange (or one binding) is left
//! out on a node that has a change of its own to it still to come in the log: the log's
//! later entry settles it, and the node has made that one already. Every node thus ends
//! with what the log's last entry for each exchange and binding says.
//!
//! A node brought up to date by a snapshot instead of the entries also removes what the
//! snapshot no longer has (`stale`): the deletions it missed.
//!
//! A node killed, or cut off and then killed, before its changes reached the group has
//! made them and answered its clients, and nothing of them is left in its memory. When it
//! starts again it follows the group until its own `NodeUp` entry of this start is
//! applied (`CatchUp`): every entry before it is then applied here, so an exchange or
//! binding it has and the group's state has not can only be one of its own changes that
//! never got there (`only_here`), and it sends it again, as it would have had it
//! lived. A deletion of its own that got lost is not sent again: the group's exchange of
//! that name may be a later declaration through another node, and the node takes the
//! group's state back instead (`reconcile` at the start).

use std::collections::BTreeSet;
use std::sync::Mutex;

use crate::broker::replicated::QueueReplication;
use crate::broker::replicated_topology::{BindingDef, TopologyChange};
use crate::cluster::machine::{Replicated, Tapped};
use crate::cluster::meta_machine::{
    Endpoint, LastWrites, MetaCommand, MetaState, QueueDecl, WriteId,
};

use super::own_writes::OwnWrites;
use super::Replication;

/// This node's changes written to the metadata group and not yet applied back
/// (`own_writes.rs`), and the writes the group has taken in.
#[derive(Default)]
pub(super) struct OwnChanges {
    writes: OwnWrites,
    /// Every node's last write taken in here, as the group's state has it.
    taken_in: Mutex<LastWrites>,
}

/// What a change is about: an exchange (declared, deleted), or one binding.
fn subject(change: &TopologyChange) -> String {
    match change {
        TopologyChange::Declared(def) => format!("exchange {}", def.name),
        TopologyChange::Deleted(name) => format!("exchange {name}"),
        TopologyChange::Bound(b) | TopologyChange::Unbound(b) => format!(
            "binding {} {} {} {} {:?}",
            b.source, b.to_exchange, b.destination, b.routing_key, b.arguments
        ),
    }
}

/// A numbered write that `OwnChanges` follows: its vhost, subject and number.
fn own_write(cmd: &MetaCommand) -> Option<(&str, String, WriteId)> {
    match cmd {
        MetaCommand::Topology {
            vhost,
            change,
            write: Some(id),
            ..
        } => Some((vhost, subject(change), *id)),
        MetaCommand::DeleteQueue {
            vhost,
            name,
            write: Some((_, id)),
            ..
        } => Some((vhost, queue_deletion(name), *id)),
        MetaCommand::DeclareQueue(QueueDecl {
            vhost,
            name,
            write: Some((_, id)),
            ..
        }) => Some((vhost, queue_declaration(name), *id)),
        _ => None,
    }
}

/// The subject of a quorum queue's deletion.
fn queue_deletion(name: &str) -> String {
    format!("deletion of queue {name}")
}

/// The subject of a quorum queue's declaration.
fn queue_declaration(name: &str) -> String {
    format!("declaration of queue {name}")
}

impl OwnChanges {
    /// This node writes `change`.
    pub(super) fn written(&self, vhost: &str, change: &TopologyChange) {
        self.writes.written(vhost, subject(change));
    }

    /// This node writes the deletion of quorum queue `name`.
    pub(super) fn deletion_written(&self, vhost: &str, name: &str) {
        self.writes.written(vhost, queue_deletion(name));
    }

    /// This node writes the declaration of quorum queue `name` (a client declared it here).
    pub(super) fn declaration_written(&self, vhost: &str, name: &str) {
        self.writes.written(vhost, queue_declaration(name));
    }

    /// Whether a declaration of quorum queue `name` by this node is on its way.
    pub(super) fn declaring(&self, vhost: &str, name: &str) -> bool {
        self.writes.pending(vhost, queue_declaration(name))
    }

    /// This node's declaration `id` of queue `name` (of this start) was applied.
    pub(super) fn declaration_applied(&self, vhost: &str, name: &str, id: WriteId) {
        self.writes.done(vhost, queue_declaration(name), id);
    }

    /// The writer numbered `cmd` (a change, deletion or declaration noted by `written`,
    /// `deletion_written` or `declaration_written`).
    pub(super) fn numbered(&self, cmd: &MetaCommand) {
        if let Some((vhost, subject, id)) = own_write(cmd) {
            self.writes.numbered(vhost, subject, id);
        }
    }

    /// The writer gave `cmd` up: it will not come back.
    pub(super) fn given_up(&self, cmd: &MetaCommand) {
        if let Some((vhost, subject, id)) = own_write(cmd) {
            self.writes.done(vhost, subject, id);
        }
    }

    /// Whether a committed write is new (not one committed before: see `WriteId`). Asked
    /// of every topology entry, and with `first_time_of` of every queue declaration and
    /// deletion, in the log's order, as the group's state does.
    pub(super) fn first_time(&self, origin: u64, write: Option<WriteId>) -> bool {
        let mut taken_in = self.taken_in.lock().expect("writes taken in");
        taken_in.first_time(origin, write)
    }

    /// `first_time` of a queue's declaration or deletion.
    pub(super) fn first_time_of(&self, write: Option<(u64, WriteId)>) -> bool {
        let mut taken_in = self.taken_in.lock().expect("writes taken in");
        taken_in.first_time_of(write)
    }

    /// The group's state, as of the entries from which on `first_time` is asked; the
    /// writes of this node (`me`) it holds are done (a snapshot brings no entry for them).
    pub(super) fn taken_in_as(&self, me: u64, state: &MetaState) {
        self.writes.taken_in(me, &state.last_writes);
        *self.taken_in.lock().expect("writes taken in") = state.last_writes.clone();
    }

    /// Whether a change of this node's own to what `change` is about is on its way.
    pub(super) fn pending(&self, vhost: &str, change: &TopologyChange) -> bool {
        self.writes.pending(vhost, subject(change))
    }

    /// Whether a deletion of quorum queue `name` by this node is on its way.
    pub(super) fn deleting(&self, vhost: &str, name: &str) -> bool {
        self.writes.pending(vhost, queue_deletion(name))
    }

    /// This node's deletion `id` of queue `name` (of this start) was applied.
    pub(super) fn deletion_applied(&self, vhost: &str, name: &str, id: WriteId) {
        self.writes.done(vhost, queue_deletion(name), id);
    }

    /// Whether to apply a committed `change`, written by this node (`own`: its number, if
    /// of this start) or another: not while a later change of this node's own to the same
    /// thing is still to come.
    pub(super) fn applies(
        &self,
        own: Option<WriteId>,
        vhost: &str,
        change: &TopologyChange,
    ) -> bool {
        if let Some(id) = own {
            self.writes.done(vhost, subject(change), id);
        }
        !self.pending(vhost, change)
    }
}

/// What takes away the exchanges and bindings of `here` that `wanted` does not have
/// (`only_here`): unbindings first, then deletions.
pub(super) fn stale(here: Vec<TopologyChange>, wanted: &[TopologyChange]) -> Vec<TopologyChange> {
    let (mut unbind, mut delete) = (Vec::new(), Vec::new());
    for change in only_here(here, wanted) {
        match change {
            TopologyChange::Bound(b) => unbind.push(TopologyChange::Unbound(b)),
            TopologyChange::Declared(d) => delete.push(TopologyChange::Deleted(d.name)),
            TopologyChange::Unbound(_) | TopologyChange::Deleted(_) => {}
        }
    }
    unbind.extend(delete);
    unbind
}

/// The exchanges and bindings of `here` that `cluster` (the group's topology of the same
/// vhost) does not have: exchanges compared by name (a node's own exchange of a name
/// another node declared first stays), bindings whole.
pub(super) fn only_here(
    here: Vec<TopologyChange>,
    cluster: &[TopologyChange],
) -> Vec<TopologyChange> {
    let mut exchanges = BTreeSet::new();
    let mut bindings = BTreeSet::new();
    for c in cluster {
        match c {
            TopologyChange::Declared(d) => exchanges.insert(d.name.as_str()),
            TopologyChange::Bound(b) => bindings.insert(b),
            _ => false,
        };
    }
    here.into_iter()
        .filter(|change| match change {
            TopologyChange::Declared(d) => !exchanges.contains(d.name.as_str()),
            TopologyChange::Bound(b) => !bindings.contains(b),
            _ => false,
        })
        .collect()
}

/// What makes the bindings that end at `end` in `here` (replicated bindings on this node)
/// the group's `group` bindings of it: unbindings, then bindings.
pub(super) fn bindings_to_settle(
    here: Vec<BindingDef>,
    group: Vec<BindingDef>,
    end: Endpoint,
) -> Vec<TopologyChange> {
    let here: BTreeSet<BindingDef> = here.into_iter().filter(|b| end.holds(b)).collect();
    let group: BTreeSet<BindingDef> = group.into_iter().collect();
    let unbind = here
        .difference(&group)
        .cloned()
        .map(TopologyChange::Unbound);
    let bind = group.difference(&here).cloned().map(TopologyChange::Bound);
    unbind.chain(bind).collect()
}

/// Where to settle the bindings after an entry (`Replication::settle_bindings_of`): an
/// exchange's, or a quorum queue's.
pub(super) struct ToSettle {
    vhost: String,
    exchange: bool,
    name: String,
}

impl ToSettle {
    pub(super) fn new(vhost: &str, exchange: bool, name: &str) -> ToSettle {
        ToSettle {
            vhost: vhost.to_string(),
            exchange,
            name: name.to_string(),
        }
    }

    fn end(&self) -> Endpoint<'_> {
        match self.exchange {
            true => Endpoint::Exchange(&self.name),
            false => Endpoint::Queue(&self.name),
        }
    }
}

/// What the entries applied while this node started (before the bridge followed the
/// group) changed: the exchanges and bindings they named and the queues they deleted, or
/// everything if a snapshot was installed. The broker never saw those entries; of what
/// they changed, it takes the group's state whole (`Replication::take_missed`).
#[derive(Default)]
pub(super) struct Missed {
    everything: bool,
    subjects: BTreeSet<(String, String)>,
    deleted_queues: BTreeSet<(String, String)>,
}

/// The log index of a tapped event.
pub(super) fn index_of(event: &Tapped<MetaCommand, MetaState>) -> u64 {
    match event {
        Tapped::Applied(index, _) | Tapped::Reset(index, _) => *index,
    }
}

impl Missed {
    /// Entries were missed whole (a snapshot past what the broker took in).
    pub(super) fn everything(&mut self) {
        self.everything = true;
    }

    pub(super) fn note(&mut self, event: &Tapped<MetaCommand, MetaState>) {
        match event {
            Tapped::Reset(..) => self.everything = true,
            Tapped::Applied(_, MetaCommand::Topology { vhost, change, .. }) => {
                self.subjects.insert((vhost.clone(), subject(change)));
            }
            Tapped::Applied(_, MetaCommand::DeleteQueue { vhost, name, .. }) => {
                self.deleted_queues.insert((vhost.clone(), name.clone()));
            }
            Tapped::Applied(..) => {}
        }
    }

    /// Whether a change here to match the group's state is one of those entries' doing.
    pub(super) fn changed(&self, vhost: &str, change: &TopologyChange) -> bool {
        let key = (vhost.to_string(), subject(change));
        let to_deleted_queue = match change {
            TopologyChange::Bound(b) | TopologyChange::Unbound(b) => {
                let queue = (vhost.to_string(), b.destination.clone());
                !b.to_exchange && self.deleted_queues.contains(&queue)
            }
            _ => false,
        };
        self.everything || to_deleted_queue || self.subjects.contains(&key)
    }

    /// Whether queue `name` was deleted by one of those entries.
    pub(super) fn deleted_queue(&self, vhost: &str, name: &str) -> bool {
        let key = (vhost.to_string(), name.to_string());
        self.everything || self.deleted_queues.contains(&key)
    }
}

/// The metadata group's state as this node applies it after a start, kept until the
/// node's `NodeUp` entry of this start is applied.
pub(super) struct CatchUp {
    state: MetaState,
    me: u64,
    started_at: u64,
}

impl CatchUp {
    pub(super) fn new(state: MetaState, me: u64, started_at: u64) -> CatchUp {
        CatchUp {
            state,
            me,
            started_at,
        }
    }

    /// Follows one event of the tap (before it is acted on here).
    pub(super) fn follow(&mut self, event: &Tapped<MetaCommand, MetaState>) {
        match event {
            Tapped::Applied(index, cmd) => {
                self.state.apply(*index, cmd);
            }
            Tapped::Reset(_, state) => self.state = state.clone(),
        }
    }

    /// The group's state after the events followed so far.
    pub(super) fn state(&self) -> &MetaState {
        &self.state
    }

    /// Whether this start's `NodeUp` entry is applied.
    pub(super) fn caught_up(&self) -> bool {
        let me = self.state.nodes.get(&self.me);
        me.is_some_and(|n| n.started_at == self.started_at)
    }
}

impl Replication {
    /// A committed change as the group's state kept it: a binding it did not keep (its
    /// source or destination was deleted before it) is taken back, here too (the node
    /// that made it has it). The state may be a few entries past this one: what it says
    /// then, a later entry says again.
    pub(super) async fn as_kept(&self, vhost: &str, change: TopologyChange) -> TopologyChange {
        match change {
            TopologyChange::Bound(b) if !self.node.meta_has_binding(vhost, &b).await => {
                TopologyChange::Unbound(b)
            }
            change => change,
        }
    }

    /// Takes in a committed exchange or binding change, written by this node (`own`: its
    /// number, if of this start) or another. Returns the exchange whose bindings to settle then (`settle_bindings_of`).
    pub(super) async fn committed_topology(
        &self,
        own: Option<WriteId>,
        vhost: &str,
        change: TopologyChange,
    ) -> Option<ToSettle> {
        let exchange = match &change {
            TopologyChange::Declared(def) => Some(def.name.clone()),
            TopologyChange::Deleted(name) => Some(name.clone()),
            TopologyChange::Bound(_) | TopologyChange::Unbound(_) => None,
        };
        if self.own_changes.applies(own, vhost, &change) {
            let change = self.as_kept(vhost, change).await;
            self.apply_topology(vhost, &change);
        }
        exchange.map(|name| ToSettle::new(vhost, true, &name))
    }

    /// After an entry that declared or deleted an exchange or a quorum queue (`end`),
    /// applied here or left out for a change of this node's own still to come: makes the
    /// bindings that end there the group's, but for those a change of this node's own is
    /// on its way for. A deletion left out would otherwise leave here the bindings it took
    /// away in the group (another node's binding to the old exchange or queue, applied
    /// here to this node's new one of that name). The group's state may be a few entries
    /// past this one: what it says then, a later entry says again.
    pub(super) async fn settle_bindings_of(&self, at: &ToSettle) {
        let (vhost, end) = (at.vhost.as_str(), at.end());
        let group = self.node.meta_bindings_of(vhost, end).await;
        let Some(vh) = self.broker.vhost(vhost) else {
            return;
        };
        // Under the vhost's lock: a client's change and its note in `own_changes` are
        // made together under it.
        vh.with(|m| {
            let here = m.replicated_bindings(|s, d, x| end.holds_parts(s, d, x));
            for change in bindings_to_settle(here, group, end) {
                if self.own_changes.pending(vhost, &change) {
                    continue;
                }
                tracing::debug!(vhost, "cluster: {change:?} to match the group");
                if let Err(e) = m.apply_topology(&change) {
                    tracing::debug!(vhost, "cluster: {change:?} not applied here: {e}");
                }
            }
        });
    }

    /// Applies an exchange or binding change the metadata group committed. What does not
    /// apply here (an inequivalent exchange of that name, a missing source or
    /// destination) is logged and left: the first declaration of a name holds.
    pub(super) fn apply_topology(&self, vhost: &str, change: &TopologyChange) {
        let Some(vh) = self.broker.vhost(vhost) else {
            tracing::warn!(
                vhost,
                "cluster: topology of a vhost this node does not have"
            );
            return;
        };
        if let Err(e) = vh.with(|m| m.apply_topology(change)) {
            match change {
                // Nothing here to take away: the source or destination is gone already.
                TopologyChange::Unbound(_) | TopologyChange::Deleted(_) => {
                    tracing::debug!(vhost, "cluster: {change:?} not applied here: {e}")
                }
                _ => tracing::warn!(vhost, "cluster: {change:?} not applied here: {e}"),
            }
        }
    }

    /// Takes away the exchanges and bindings the entries applied while this node
    /// started deleted (`Missed`); what they made, `reconcile` makes.
    pub(super) fn take_missed(&self, state: &MetaState, missed: &Missed) {
        for vhost in self.broker.vhost_names() {
            let Some(vh) = self.broker.vhost(&vhost) else {
                continue;
            };
            let here = vh.with(|m| m.replicated_topology());
            for change in stale(here, &state.topology(&vhost)) {
                if missed.changed(&vhost, &change)
                    && self.own_changes.applies(None, &vhost, &change)
                {
                    self.apply_topology(&vhost, &change);
                }
            }
        }
    }

    /// Sends again the exchanges and bindings this node has and the group's `state` does
    /// not (see the module's comment), but for those a change of its own is on its way for.
    pub(super) fn resend_lost_changes(&self, state: &MetaState) {
        let mut sent = 0;
        for vhost in self.broker.vhost_names() {
            let Some(vh) = self.broker.vhost(&vhost) else {
                continue;
            };
            // Under the vhost's lock: a client's change and its note in `own_changes`
            // are made together under it.
            vh.with(|m| {
                let wanted = state.topology(&vhost);
                for change in only_here(m.replicated_topology(), &wanted) {
                    if !self.own_changes.pending(&vhost, &change) {
                        self.topology(&vhost, change);
                        sent += 1;
                    }
                }
            });
        }
        if sent > 0 {
            tracing::warn!(
                changes = sent,
                "cluster: exchanges and bindings made here before the last stop had not reached the cluster; sent again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::replicated_topology::ExchangeDef;

    fn deleted(name: &str) -> TopologyChange {
        TopologyChange::Deleted(name.into())
    }

    fn declared(name: &str) -> TopologyChange {
        TopologyChange::Declared(ExchangeDef {
            name: name.into(),
            kind: "fanout".into(),
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: vec![0, 0, 0, 0],
        })
    }

    fn binding(source: &str, queue: &str) -> BindingDef {
        BindingDef {
            source: source.into(),
            destination: queue.into(),
            to_exchange: false,
            routing_key: String::new(),
            arguments: vec![0, 0, 0, 0],
        }
    }

    #[test]
    fn an_exchanges_bindings_are_settled_to_the_groups() {
        let to_exchange = |source: &str, destination: &str| BindingDef {
            to_exchange: true,
            ..binding(source, destination)
        };
        let here = vec![
            binding("x", "q"),
            to_exchange("y", "x"),
            to_exchange("x", "x"),
            // Neither from x nor to it: left alone.
            binding("y", "x"),
            binding("y", "q"),
        ];
        let group = vec![binding("x", "q"), binding("x", "r")];
        assert_eq!(
            bindings_to_settle(here, group, Endpoint::Exchange("x")),
            vec![
                TopologyChange::Unbound(to_exchange("x", "x")),
                TopologyChange::Unbound(to_exchange("y", "x")),
                TopologyChange::Bound(binding("x", "r")),
            ]
        );
        // A quorum queue's: the bindings to it.
        let here = vec![binding("x", "q"), binding("y", "q"), to_exchange("x", "q")];
        assert_eq!(
            bindings_to_settle(here, vec![binding("y", "q")], Endpoint::Queue("q")),
            vec![TopologyChange::Unbound(binding("x", "q"))]
        );
    }

    #[test]
    fn stale_unbinds_then_deletes_what_the_cluster_does_not_have() {
        let mut other_kind = declared("kept");
        if let TopologyChange::Declared(d) = &mut other_kind {
            d.kind = "direct".into();
        }
        let here = vec![
            declared("gone"),
            other_kind,
            TopologyChange::Bound(binding("kept", "q1")),
            TopologyChange::Bound(binding("kept", "q2")),
        ];
        let wanted = vec![
            declared("kept"),
            TopologyChange::Bound(binding("kept", "q1")),
        ];
        assert_eq!(
            stale(here, &wanted),
            vec![
                TopologyChange::Unbound(binding("kept", "q2")),
                TopologyChange::Deleted("gone".into()),
            ]
        );
    }

    #[test]
    fn a_change_waits_for_this_nodes_later_changes_to_the_same_exchange() {
        let own = OwnChanges::default();
        let id = |seq| WriteId {
            started_at: 100,
            seq,
        };
        let write = |change: TopologyChange, seq| MetaCommand::Topology {
            origin: 1,
            vhost: "/".into(),
            change,
            write: Some(id(seq)),
        };
        // Deleted and declared again here: the deletion's entry must not apply.
        own.written("/", &deleted("x"));
        own.written("/", &deleted("x"));
        own.numbered(&write(deleted("x"), 1));
        own.numbered(&write(deleted("x"), 2));
        assert!(!own.applies(Some(id(1)), "/", &deleted("x")));
        assert!(
            !own.applies(None, "/", &deleted("x")),
            "another node's, before ours"
        );
        assert!(own.applies(Some(id(2)), "/", &deleted("x")), "our last one");
        assert!(
            own.applies(None, "/", &deleted("x")),
            "another node's, after ours"
        );
        assert!(own.applies(None, "/", &deleted("y")));
        assert!(own.applies(None, "other", &deleted("x")));
        // A write given up counts no more.
        own.written("/", &deleted("z"));
        own.numbered(&write(deleted("z"), 3));
        own.given_up(&write(deleted("z"), 3));
        assert!(own.applies(None, "/", &deleted("z")));
        // Nor one a snapshot installed holds (no entry comes for it).
        own.written("/", &deleted("w"));
        own.numbered(&write(deleted("w"), 4));
        let mut state = MetaState::default();
        state.apply(9, &write(deleted("w"), 4));
        own.taken_in_as(1, &state);
        assert!(own.applies(None, "/", &deleted("w")));
        // A queue's deletion, the same way.
        own.deletion_written("/", "q");
        assert!(own.deleting("/", "q") && !own.deleting("/", "r"));
        let delete = MetaCommand::DeleteQueue {
            vhost: "/".into(),
            name: "q".into(),
            group: 0,
            write: Some((1, id(5))),
        };
        own.numbered(&delete);
        own.deletion_applied("/", "q", id(5));
        assert!(!own.deleting("/", "q"));
        // And its declaration: on its way until applied or given up, apart from a
        // deletion of the same name.
        let declare = |seq| {
            MetaCommand::DeclareQueue(QueueDecl {
                vhost: "/".into(),
                name: "q".into(),
                arguments: Vec::new(),
                members: vec![1],
                write: Some((1, id(seq))),
            })
        };
        own.declaration_written("/", "q");
        own.declaration_written("/", "q");
        own.numbered(&declare(6));
        own.numbered(&declare(7));
        assert!(own.declaring("/", "q") && !own.deleting("/", "q"));
        own.declaration_applied("/", "q", id(6));
        assert!(own.declaring("/", "q"), "the second is still on its way");
        own.given_up(&declare(7));
        assert!(!own.declaring("/", "q"));
    }

    #[test]
    fn only_here_is_what_this_node_has_and_the_group_has_not() {
        let mut other_kind = declared("kept");
        if let TopologyChange::Declared(d) = &mut other_kind {
            d.kind = "direct".into();
        }
        let here = vec![
            declared("made-here"),
            other_kind,
            TopologyChange::Bound(binding("kept", "q1")),
            TopologyChange::Bound(binding("kept", "q2")),
        ];
        let cluster = vec![
            declared("kept"),
            declared("only-there"),
            TopologyChange::Bound(binding("kept", "q1")),
            TopologyChange::Bound(binding("kept", "q3")),
        ];
        assert_eq!(
            only_here(here, &cluster),
            vec![
                declared("made-here"),
                TopologyChange::Bound(binding("kept", "q2")),
            ]
        );
    }

    #[test]
    fn missed_entries_name_what_they_changed() {
        let topology = |change: TopologyChange| {
            Tapped::Applied(
                1,
                MetaCommand::Topology {
                    origin: 2,
                    vhost: "/".into(),
                    change,
                    write: None,
                },
            )
        };
        let mut missed = Missed::default();
        missed.note(&topology(deleted("x")));
        missed.note(&Tapped::Applied(
            2,
            MetaCommand::DeleteQueue {
                vhost: "/".into(),
                name: "q".into(),
                group: 7,
                write: None,
            },
        ));
        assert!(missed.changed("/", &deleted("x")));
        assert!(missed.changed("/", &declared("x")), "the same exchange");
        assert!(!missed.changed("/", &deleted("y")));
        assert!(!missed.changed("other", &deleted("x")));
        let to_q = TopologyChange::Unbound(binding("y", "q"));
        assert!(missed.changed("/", &to_q), "a binding to a deleted queue");
        assert!(!missed.changed("/", &TopologyChange::Unbound(binding("y", "r"))));
        assert!(missed.deleted_queue("/", "q"));
        assert!(!missed.deleted_queue("/", "r"));
        missed.note(&Tapped::Reset(3, MetaState::default()));
        assert!(
            missed.changed("/", &deleted("y")),
            "a snapshot changes everything"
        );
        assert!(missed.deleted_queue("/", "r"));
    }

    #[test]
    fn catching_up_ends_at_this_starts_own_node_entry() {
        let node_up = |started_at: u64| {
            let info = crate::cluster::meta_machine::NodeInfo {
                id: 3,
                name: "warren-3".into(),
                cluster: String::new(),
                amqp: String::new(),
                http: None,
                version: String::new(),
                started_at,
            };
            Tapped::Applied(1, MetaCommand::NodeUp(info))
        };
        let mut catch_up = CatchUp::new(MetaState::default(), 3, 500);
        assert!(!catch_up.caught_up());
        catch_up.follow(&node_up(100));
        assert!(!catch_up.caught_up(), "an earlier start's entry");
        catch_up.follow(&node_up(500));
        assert!(catch_up.caught_up());
        assert!(catch_up.state().nodes.contains_key(&3));
    }
}
