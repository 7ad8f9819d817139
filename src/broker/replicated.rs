//! The model's side of quorum queues replicated by a cluster (`queue/replica.rs` says how
//! such a queue behaves). The cluster is wired in by the server: it implements
//! `QueueReplication` (told when a client declares or deletes a quorum queue here) and
//! calls the `replica_*` methods below with what its Raft groups commit. The model never
//! waits for the cluster: a publish leaves its message in the queue's `outgoing` list and
//! its confirm waits on a replication ticket.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::Notify;
use warren_storage::{BatchRecord, Ticket};

use super::confirms::ReplicaTickets;
use super::declare::QueueSpec;
use super::error::BrokerError;
use super::publish::{refused_dead_letter, Incoming, Refused};
use super::queue::replica::{DeadMark, GroupMessage, Replica, ReplicaWork};
use super::queue::Overflow;
use super::vhost::{now_millis, VHost};

/// What the cluster is told by the model.
pub trait QueueReplication: Send + Sync {
    /// A client declared quorum queue `name` in `vhost` on this node (`args_raw`: its
    /// arguments as the client sent them).
    fn declared(&self, vhost: &str, name: &str, args_raw: &[u8]);
    /// A client deleted it.
    fn deleted(&self, vhost: &str, name: &str);
    /// A client changed `vhost`'s exchanges or bindings here (replicated_topology.rs).
    fn topology(&self, vhost: &str, change: super::replicated_topology::TopologyChange);
    /// A basic.get of quorum queue `name` in `vhost` on this member, which does not lead
    /// it: asks the leader for one ready message. Resolves to the grant, or `None`
    /// (nothing ready, no leader in time, or this node leads the queue now).
    fn leader_get(&self, vhost: &str, name: &str) -> LeaderGetWait;
}

/// What a basic.get on a member that does not lead waits for (`QueueReplication::leader_get`).
pub type LeaderGetWait =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<GetGrant>> + Send + 'static>>;

/// The message a leader handed this node for a basic.get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetGrant {
    /// Its group id.
    pub id: u64,
    /// The changes of leader this node's copy had seen when the leader was asked
    /// (`Replica::leaders_seen`): a grant of a leader replaced since is given back, not
    /// delivered (`replica_late_grants.rs`).
    pub leaders_seen: u64,
}

/// The cluster's hook, set once by the server when the node is in a cluster, and the
/// tickets replicated publishes' confirms wait for; every vhost shares it.
#[derive(Default)]
pub struct ReplicationSlot {
    hook: OnceLock<Arc<dyn QueueReplication>>,
    pub tickets: Arc<ReplicaTickets>,
}

impl ReplicationSlot {
    /// Sets the hook; false if one was set already.
    pub fn set(&self, hook: Arc<dyn QueueReplication>) -> bool {
        self.hook.set(hook).is_ok()
    }

    pub fn get(&self) -> Option<&Arc<dyn QueueReplication>> {
        self.hook.get()
    }
}

/// A replicated queue as the cluster names it: its name and the broker's id of the
/// queue (a queue deleted and declared again is another queue, and its old group's late
/// work must not reach it).
pub type QueueRef<'a> = (&'a str, u64);

/// The group size quorum queue arguments `args_raw` ask for (`x-quorum-initial-group-size`);
/// `None` for every voter of the cluster.
pub fn initial_group_size(args_raw: &[u8]) -> Option<usize> {
    let args = super::declare::decode_args(args_raw).ok()?;
    super::queue::quorum_args::initial_group_size(&args)
}

/// The connection id of work that is not a client's (not authorised per user).
pub(super) const NO_CONNECTION: u64 = 0;

impl VHost {
    /// Tells the cluster about a quorum queue a client declared (and makes it a replica:
    /// its messages go through the group from the first publish on).
    pub(super) fn replicate_declared(&mut self, name: &Arc<str>) {
        let Some(hook) = self.replication.get().cloned() else {
            return;
        };
        if self.from_cluster {
            return;
        }
        let Some(q) = self.queues.get_mut(name) else {
            return;
        };
        let Some(qs) = q.quorum.as_mut() else {
            return;
        };
        qs.replica.get_or_insert_with(Box::default);
        hook.declared(&self.name, name, &q.args_raw);
    }

    /// Makes every quorum queue here a replica waiting for its group; returns their names
    /// and arguments.
    pub(super) fn make_quorum_queues_replicas(&mut self) -> Vec<(String, Vec<u8>)> {
        let mut found = Vec::new();
        for q in self.queues.values_mut() {
            if q.quorum.is_none() {
                continue;
            }
            // Not a replica yet: dead letters it kept on its own go to the group as messages
            // (queue/held_dead.rs).
            if q.quorum.as_ref().is_some_and(|qs| qs.replica.is_none()) {
                let released = q.release_held_dead();
                if released > 0 {
                    tracing::info!(queue = %q.name, released,
                        "kept dead letters made ready again: they go to the queue's group");
                }
            }
            if let Some(qs) = q.quorum.as_mut() {
                qs.replica.get_or_insert_with(Box::default);
                found.push((q.name.to_string(), q.args_raw.clone()));
            }
        }
        found
    }

    /// Tells the cluster a client deleted quorum queue `name`.
    pub(super) fn replicate_deleted(&self, name: &str) {
        if let Some(hook) = self.replication.get().filter(|_| !self.from_cluster) {
            hook.deleted(&self.name, name);
        }
    }

    /// The messages quorum queue `name` holds in its store before it is attached: those
    /// it kept from before this node was in a cluster (a copy's records are transient and
    /// do not survive a restart, so after the first start in a cluster there are none).
    /// The bridge writes them to the queue's group before `replica_attach` empties the
    /// store, so that they are not lost by joining a cluster.
    pub fn replica_preexisting(&self, name: &str) -> Vec<bytes::Bytes> {
        let mut found = Vec::new();
        if let Some(q) = self.queues.get(name).filter(|q| q.quorum.is_some()) {
            q.store.scan_ready(|rec| found.push(rec.payload.clone()));
        }
        found
    }

    /// Makes quorum queue `name` a replica of its group, declaring it (durable, with
    /// `args_raw`) if this node does not have it yet. Its store is emptied: the copy is
    /// rebuilt from the group. Returns the handle that wakes the bridge for it, and the
    /// queue's id (which incarnation of the name it is). `lent_only`: this node is not a
    /// member of the group (replica.rs).
    pub fn replica_attach(
        &mut self,
        name: &str,
        args_raw: &[u8],
        lent_only: bool,
    ) -> Result<(Arc<Notify>, u64), BrokerError> {
        if !self.queues.contains_key(name) {
            let spec = QueueSpec {
                name,
                passive: false,
                durable: true,
                exclusive: false,
                auto_delete: false,
                args_raw,
            };
            self.from_cluster = true;
            let declared = self.queue_declare(NO_CONNECTION, &spec);
            self.from_cluster = false;
            declared?;
        }
        let q = self.queues.get_mut(name).expect("declared above");
        let Some(qs) = q.quorum.as_mut() else {
            return Err(BrokerError::PreconditionFailed(format!(
                "queue '{name}' in vhost '{}' exists and is not a quorum queue",
                self.name
            )));
        };
        qs.replica.get_or_insert_with(Box::default);
        super::replica_checkout::release_all(q);
        let replica = replica_of(q).expect("made above");
        replica.clear();
        replica.lent_only = lent_only;
        let wake = replica.wake.clone();
        // The group's marks come back with the rebuild (ids forgotten: no settle written).
        for (seq, _) in q.take_parked() {
            let _ = q.ack(seq);
        }
        q.purge_ready().map_err(BrokerError::storage)?;
        Ok((wake, q.id))
    }

    /// The cluster deleted quorum queue `name` (a client deleted it on some node), the
    /// incarnation with queue id `id`: one declared again here since is another queue.
    pub fn replica_delete(&mut self, name: &str, id: u64) {
        if self.queues.get(name).is_none_or(|q| q.id != id) {
            return;
        }
        self.from_cluster = true;
        let _ = self.queue_delete(NO_CONNECTION, name, false, false);
        self.from_cluster = false;
    }

    /// Deletes quorum queue `name` here, whichever incarnation: the cluster deleted it
    /// while this node was away, and its group is not open here. Whether there was one.
    pub fn replica_delete_any(&mut self, name: &str) -> bool {
        let queue = self.queues.get(name).filter(|q| q.quorum.is_some());
        let Some(id) = queue.map(|q| q.id) else {
            return false;
        };
        self.replica_delete(name, id);
        true
    }

    /// The names of the quorum queues here.
    pub fn quorum_queue_names(&self) -> Vec<String> {
        self.queues
            .values()
            .filter(|q| q.quorum.is_some())
            .map(|q| q.name.to_string())
            .collect()
    }

    /// The publishes and settles waiting for the group (`None`: no such replica).
    pub fn replica_work(&mut self, (name, id): QueueRef<'_>) -> Option<ReplicaWork> {
        let replica = self
            .replica_queue(name, id)?
            .quorum
            .as_mut()?
            .replica
            .as_mut()?;
        Some(replica.take_work())
    }

    /// Messages the group committed: added to this node's copy and handed to consumers if
    /// this node leads.
    pub fn replica_enqueued(&mut self, queue: QueueRef<'_>, messages: &[GroupMessage<'_>]) {
        self.replica_copy(queue, messages);
        // Over a drop-head limit, the leader drops the oldest (its settles reach the
        // other copies); elsewhere `trim` leaves the copy alone.
        self.trim(queue.0);
        self.dispatch(queue.0);
        self.arm_expiry(queue.0, now_millis());
    }

    /// Adds messages the group holds to this node's copy, their TTLs timed by `ttl_from`.
    fn replica_copy(&mut self, (name, id): QueueRef<'_>, messages: &[GroupMessage<'_>]) {
        let Some(q) = self.replica_queue(name, id) else {
            return;
        };
        let now = now_millis();
        for m in messages {
            let (id, message) = (m.id, m.stored);
            if q.quorum
                .as_ref()
                .and_then(|qs| qs.replica.as_ref())
                .is_none_or(|r| r.holds(id))
            {
                continue;
            }
            let parts = [message];
            // Transient: the group's log is what is durable (module comment of replica.rs).
            let record = BatchRecord {
                timestamp: ttl_from(m.enqueued_at, now),
                persistent: false,
                kind: 0,
                parts: &parts,
            };
            let Ok(seq) = q.append_one(record) else {
                continue;
            };
            q.counters.publish += 1;
            q.appended(super::queue::body_len(message), message_header(message));
            if let Some(r) = q.quorum.as_mut().and_then(|qs| qs.replica.as_mut()) {
                r.stored(id, seq);
            }
        }
    }

    /// Settles the group committed: the messages leave this node's copy. One whose
    /// delivery is still out with a channel here (another leader's consumer acked it) stays
    /// until that channel acks it or gives it back, and then goes: removing it now would
    /// leave the queue counting an unacked delivery of a message it no longer has.
    pub fn replica_settled(&mut self, (name, id): QueueRef<'_>, ids: &[u64]) {
        let Some(q) = self.replica_queue(name, id) else {
            return;
        };
        for &id in ids {
            let seq = q
                .quorum
                .as_mut()
                .and_then(|qs| qs.replica.as_mut())
                .and_then(|r| r.forget_id(id));
            let Some(seq) = seq else {
                continue;
            };
            // Out with another node (`remote_done`), or set aside here as a dead letter
            // the group held: gone now.
            let elsewhere = super::replica_checkout::remote_done(q, id, false);
            if elsewhere || (q.parked > 0 && q.unpark(seq)) {
                let _ = q.ack(seq);
            } else if q.store.is_taken(seq) {
                if let Some(r) = replica_of(q) {
                    r.settled_out.insert(seq);
                }
            } else {
                let _ = q.ack(seq);
            }
        }
    }

    /// Returns the group committed (`returns`): counted in this copy, except those this
    /// node counted itself when they happened (so a new leader, or a restarted node
    /// replaying the log, goes on from the same count). Those the group ignored
    /// (`returns.stale`: of deliveries it had taken back already) count nowhere: this
    /// node uncounts those it wrote itself. On the leader another node's return frees
    /// what that node holds of the message if it is of the delivery held
    /// (`replica_checkout::remote_returned`), counted or not.
    pub fn replica_returned(&mut self, (name, id): QueueRef<'_>, returns: CommittedReturns<'_>) {
        let Some(q) = self.replica_queue(name, id) else {
            return;
        };
        let Some(r) = replica_of(q) else {
            return;
        };
        let CommittedReturns {
            ids,
            seen,
            from,
            mine,
            stale,
        } = returns;
        debug_assert!(stale.windows(2).all(|w| w[0] < w[1]), "positions ascend");
        let seen_of = |i: usize| (seen.len() == ids.len()).then(|| seen[i]);
        // Those this node counted itself it made itself (a consumer here gave it back, or
        // a gone node's holdings returned: `replica_checkout::return_held`): the message
        // may be out again by now, with another node too, and is not that node's return.
        // Another node's return is never one of those (`from` is known), so it counts
        // here whatever this node has counted of its own that is still on its way.
        let mut elsewhere = Vec::with_capacity(ids.len());
        let mut seqs = Vec::with_capacity(ids.len());
        let mut uncount = Vec::new();
        let mut stale = stale.iter().peekable();
        for (i, &id) in ids.iter().enumerate() {
            let counted_here = (mine || from.is_none()) && !r.count_committed_return(id);
            let ignored = stale.next_if(|&&p| p as usize == i).is_some();
            match (ignored, counted_here) {
                (true, true) => uncount.extend(r.seq_of(id)),
                (true, false) => elsewhere.push((id, seen_of(i))),
                (false, true) => {}
                (false, false) => {
                    seqs.extend(r.seq_of(id));
                    elsewhere.push((id, seen_of(i)));
                }
            }
        }
        for seq in uncount {
            q.uncount_return(seq);
        }
        for seq in seqs {
            q.count_replicated_return(seq);
        }
        if replica_of(q).is_some_and(|r| !r.remote.is_empty() || !r.taken_over.held.is_empty()) {
            for (id, seen) in elsewhere {
                super::replica_checkout::remote_returned(q, id, from, seen);
            }
            self.dispatch(name);
            // Given back past its TTL, a message expires rather than going out again.
            self.arm_expiry(name, now_millis());
        }
    }

    /// What this node's writer could not write to the group: written again
    /// (`Replica::write_again`).
    pub fn replica_write_again(
        &mut self,
        (name, id): QueueRef<'_>,
        returned: Vec<u64>,
        seen: Vec<u32>,
        settled: Vec<u64>,
        out_through: u64,
    ) {
        if let Some(r) = self.replica_queue(name, id).and_then(replica_of) {
            r.write_again(returned, seen, settled, out_through);
        }
    }

    /// The group's state replaced this node's copy whole (a snapshot installed): the copy
    /// takes the group's messages with their delivery counts, and its dead letters
    /// (`dead`).
    pub fn replica_reset(
        &mut self,
        (name, id): QueueRef<'_>,
        messages: &[GroupMessage<'_>],
        dead: &[DeadMark],
    ) {
        let Some(q) = self.replica_queue(name, id) else {
            return;
        };
        super::replica_checkout::release_all(q);
        if let Some(r) = q.quorum.as_mut().and_then(|qs| qs.replica.as_mut()) {
            r.clear();
        }
        // What was set aside comes back with the group's marks (the ids are forgotten
        // above: these acks write no settle).
        for (seq, _) in q.take_parked() {
            let _ = q.ack(seq);
        }
        let _ = q.purge_ready();
        self.replica_add((name, id), messages, dead);
    }

    /// Adds messages of the group's state to this node's copy (rebuilt from the group a
    /// step at a time after a `replica_reset`), with their delivery counts, and the dead
    /// letters among them (`dead`), set aside before any is handed out.
    pub fn replica_add(
        &mut self,
        (name, id): QueueRef<'_>,
        messages: &[GroupMessage<'_>],
        dead: &[DeadMark],
    ) {
        self.replica_copy((name, id), messages);
        if let Some(q) = self.replica_queue(name, id) {
            take_group_returns(q, messages);
        }
        self.replica_discarded((name, id), dead);
        self.trim(name);
        self.dispatch(name);
        self.arm_expiry(name, now_millis());
    }

    /// Whether this node leads the queue's group: only the leader delivers. `took_over`:
    /// it leads after another did (a failover, a leader transfer), not as the queue's
    /// first leader.
    ///
    /// A new leader first takes what the group says the last leader handed out as held by
    /// that leader's node (`replica_takeover.rs`): not delivered again as if never
    /// delivered, but returned, counted, if that node does not claim it.
    pub fn replica_leading(
        &mut self,
        (name, id): QueueRef<'_>,
        leading: bool,
        took_over: bool,
        cluster: &super::replica_takeover::Cluster<'_>,
    ) {
        let now = now_millis();
        let Some(q) = self.replica_queue(name, id) else {
            return;
        };
        let settle = leading && took_over && q.features.single_active_consumer;
        let Some(r) = replica_of(q) else {
            return;
        };
        r.leading = leading;
        let settled_at = now + super::replica_sac::SETTLE_MS;
        if settle {
            // Served once the other nodes' consumers are known (`replica_sac.rs`).
            r.sac_settling_until = settled_at;
        }
        if leading {
            // What the old leader handed this node is ready in this copy anyway (and no
            // consumer here took it: it was never delivered).
            let undelivered: HashSet<u64> = r.drop_grants().into_iter().collect();
            self.take_over((name, id), cluster, undelivered, now);
            if settle {
                self.schedule(name, settled_at);
            }
            self.publish_parked(name);
            self.trim(name);
            self.dispatch(name);
            // The copy's messages and its use were timed by no one while another led.
            self.arm_timers_as_leader(name, now);
        } else if let Some(q) = self.replica_queue(name, id) {
            super::replica_checkout::release_all(q);
            // This node's consumers ask the new leader at once.
            if let Some(r) = replica_of(q) {
                r.room.notify_one();
            }
        }
    }
}

impl VHost {
    /// Publishes to replicated quorum queue `queue`: not stored here but handed to its
    /// group, each with a replication ticket its confirm waits for, and copied into the
    /// store when the group commits them (`replica_enqueued`). A `reject-publish` limit
    /// refuses once the queue is over it, counting the copy and what waits to be written
    /// (soft, as RabbitMQ's quorum queues' limit is). `replica_issued` gets one ticket per
    /// message, 0 for a refused one.
    pub(super) fn store_replicated(
        &mut self,
        queue: &str,
        msgs: &[Incoming<'_>],
        out: &mut Vec<Result<Ticket, Refused>>,
    ) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        let refusing = q.features.has_length_limit() && q.features.overflow != Overflow::DropHead;
        for m in msgs {
            let waiting = replica_of(q).map_or(0, |r| r.outgoing.len() as u64);
            let held = q.held_dead_letters().0;
            let over = q
                .features
                .max_length
                .is_some_and(|max| q.ready() + held + waiting > max)
                || q.is_full_for(m.body_len);
            if refusing && over {
                out.push(Err(Refused::Full));
                self.replica_issued.push(0);
                if let Some(dead) = refused_dead_letter(q, m) {
                    self.pending_dead.push_back(dead);
                }
                continue;
            }
            let t = self.replication.tickets.issue();
            let r = replica_of(q).expect("a replica");
            r.outgoing.push((Bytes::from(m.parts.concat()), t));
            self.replica_issued.push(t);
            out.push(Ok(Ticket::DONE));
        }
        if let Some(r) = replica_of(q) {
            r.wake.notify_one();
        }
    }

    /// Queue `name` if it is the incarnation with id `id`.
    pub(super) fn replica_queue(
        &mut self,
        name: &str,
        id: u64,
    ) -> Option<&mut super::queue::Queue> {
        self.queues
            .get_mut(name)
            .filter(|q| q.id == id)
            .map(|q| &mut **q)
    }
}

/// The content header of a stored message (empty if it cannot be read).
fn message_header(stored: &[u8]) -> &[u8] {
    super::message::view(stored).map_or(&[], |m| m.header)
}

/// How recent an enqueue must be for a copy to time the message from when it takes it.
const FRESH_ENQUEUE_MS: u64 = 1_000;

/// What the TTL of a message the group enqueued at `enqueued_at` (the clock of the leader
/// that took it; 0 if the entry has none) counts from in a copy that takes it at `now`. A
/// message the group has just committed: from now, on every member alike, as RabbitMQ's
/// leader times an enqueue as it applies it (a TTL of 0 still reaches a consumer waiting
/// here; the stamp is a commit round older). An older one (the log replayed after a
/// restart, a member catching up after being away, a copy rebuilt from a snapshot): from its
/// enqueue, so that copy expires it when the first copies did; never later than now, as the
/// leader's clock may run ahead of this node's.
fn ttl_from(enqueued_at: u64, now: u64) -> u64 {
    match enqueued_at {
        0 => now,
        at if now.saturating_sub(at) <= FRESH_ENQUEUE_MS => now,
        at => at,
    }
}

/// Takes the group's delivery counts of `messages` into `q`'s store, where they are held.
pub(super) fn take_group_returns(q: &mut super::queue::Queue, messages: &[GroupMessage<'_>]) {
    for m in messages.iter().filter(|m| m.returns > 0) {
        if let Some(seq) = replica_of(q).and_then(|r| r.seq_of(m.id)) {
            q.set_returns(seq, m.returns);
        }
    }
}

/// Returns a group entry committed, as `VHost::replica_returned` takes them.
#[derive(Debug, Clone, Copy)]
pub struct CommittedReturns<'a> {
    /// The group ids returned, in the entry's order.
    pub ids: &'a [u64],
    /// For each of `ids`, the returns its delivery went out with (empty: not known).
    pub seen: &'a [u32],
    /// The node that wrote them (`None`: not known, as in entries of earlier builds).
    pub from: Option<u64>,
    /// Written by this node's process (its writer's own round).
    pub mine: bool,
    /// The positions in `ids` of the returns the group ignored (of deliveries it had
    /// taken back already), ascending.
    pub stale: &'a [u32],
}

/// A queue's replica, if it has one.
pub(super) fn replica_of(q: &mut super::queue::Queue) -> Option<&mut Replica> {
    q.quorum.as_mut()?.replica.as_deref_mut()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::broker::definitions_import::import_json;
    use crate::broker::BrokerHandle;

    /// A stored message (exchange, routing key, an empty content header, a body).
    pub(in crate::broker) fn stored_message() -> Vec<u8> {
        let mut prefix = [0u8; super::super::message::MAX_PREFIX];
        let header = [0u8, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0];
        let n = super::super::message::encode_prefix(&mut prefix, "", "q", header.len());
        [&prefix[..n], &header[..], b"m"].concat()
    }

    /// Node 2's copy of a quorum queue another node (1) leads, holding message `A`:
    /// returns of it committed by the group count once each here, whichever way this
    /// node's own returns and the group's commits interleave, and a return of this node's
    /// that the group ignored (stale: of a delivery the leader had taken back) is
    /// uncounted; another node's stale return counts nothing. The copy ends where the
    /// group's count is.
    #[test]
    fn a_copy_counts_what_the_group_counted_and_uncounts_its_own_stale_returns() {
        const A: u64 = 1 << 16;
        let dir = tempfile::tempdir().unwrap();
        let broker = BrokerHandle::open_ephemeral(dir.path()).unwrap();
        let q = r#"{"queues": [{"name": "q", "vhost": "/", "durable": true,
                    "auto_delete": false, "arguments": {"x-queue-type": "quorum"}}]}"#;
        import_json(&broker, q.as_bytes()).expect("declared");
        let vh = broker.vhost("/").unwrap();
        vh.with(|m| {
            let (_, qid) = m.replica_attach("q", &[], false).unwrap();
            let queue = ("q", qid);
            let stored = stored_message();
            let message = GroupMessage {
                id: A,
                stored: &stored,
                returns: 0,
                enqueued_at: 0,
            };
            m.replica_enqueued(queue, &[message]);
            let q = m.replica_queue("q", qid).unwrap();
            let seq = replica_of(q).unwrap().seq_of(A).unwrap();
            let leaders = |stale: &'static [u32]| CommittedReturns {
                ids: &[A],
                seen: &[],
                from: Some(1),
                mine: false,
                stale,
            };
            let own = |stale: &'static [u32]| CommittedReturns {
                ids: &[A],
                seen: &[],
                from: Some(2),
                mine: true,
                stale,
            };
            let count = |m: &mut VHost| m.replica_queue("q", qid).unwrap().returns_of(seq);

            // This node's consumer gives its delivery back (counted here at once); the
            // leader's return of the same delivery (it had taken it back) commits first,
            // then this node's, which the group ignored.
            m.replica_queue("q", qid).unwrap().count_return(seq);
            assert_eq!(count(m), 1);
            m.replica_returned(queue, leaders(&[]));
            assert_eq!(count(m), 2, "the leader's return counts here too");
            m.replica_returned(queue, own(&[0]));
            assert_eq!(count(m), 1, "this node's own stale return uncounted");

            // The leader's return applied here before this node's consumer gives the
            // delivery back.
            m.replica_returned(queue, leaders(&[]));
            m.replica_queue("q", qid).unwrap().count_return(seq);
            assert_eq!(count(m), 3);
            m.replica_returned(queue, own(&[0]));
            assert_eq!(count(m), 2);

            // This node's return commits first and counts; the leader's, stale, does not.
            m.replica_queue("q", qid).unwrap().count_return(seq);
            m.replica_returned(queue, own(&[]));
            m.replica_returned(queue, leaders(&[0]));
            assert_eq!(count(m), 3);

            // A return of an earlier build's entry (no writer known, none of this node's
            // on its way) counts.
            m.replica_returned(queue, unknown_writer());
            assert_eq!(count(m), 4);

            // One round of this node's with the message twice: its stale return of the
            // delivery the leader took back, and the return of its next delivery. One
            // uncounted, one kept.
            let q = m.replica_queue("q", qid).unwrap();
            q.count_return(seq);
            q.count_return(seq);
            assert_eq!(count(m), 6);
            let twice = CommittedReturns {
                ids: &[A, A],
                seen: &[3, 4],
                from: Some(2),
                mine: true,
                stale: &[0],
            };
            m.replica_returned(queue, twice);
            assert_eq!(count(m), 5);

            // A return this node's writer gave up on is written again: the try committed
            // late counts, the second is stale. (What the returns above left for the
            // writer is taken first.)
            m.replica_work(queue);
            m.replica_queue("q", qid).unwrap().count_return(seq);
            assert_eq!(count(m), 6);
            let work = m.replica_work(queue).unwrap();
            assert_eq!(
                (&work.returned[..], &work.returned_seen[..]),
                (&[A][..], &[0][..])
            );
            m.replica_write_again(queue, work.returned, work.returned_seen, vec![A], 0);
            let again = m.replica_work(queue).unwrap();
            assert_eq!((again.returned, again.settled), (vec![A], vec![A]));
            m.replica_returned(queue, own(&[]));
            m.replica_returned(queue, own(&[0]));
            assert_eq!(count(m), 6);
        });
    }

    fn unknown_writer() -> CommittedReturns<'static> {
        CommittedReturns {
            ids: &[1 << 16],
            seen: &[],
            from: None,
            mine: false,
            stale: &[],
        }
    }

    /// A return names the returns its delivery went out with: the count a grant carried
    /// (a member's copy may lag it), or 0 for a message never returned; a dead letter
    /// handed back to the leader is never stale; a grant dropped undelivered forgets its
    /// count.
    #[test]
    fn a_return_names_the_count_its_delivery_went_out_with() {
        let mut r = Replica::default();
        r.stored(7, 70);
        r.stored(8, 80);
        r.went_out(7, 2);
        r.went_out(7, 1); // A lagging copy's own count: the higher stands.
        r.returned_here(70);
        r.returned_here(80);
        r.handed_back(80);
        // Taken with the return: the next delivery of 7 names its own count.
        r.returned_here(70);
        r.went_out(8, 3);
        r.granted.push_back(80);
        assert_eq!(r.drop_grants(), [80]);
        r.grant_given_back(80);
        let work = r.take_work();
        assert_eq!(work.returned, [7, 8, 8, 7, 8]);
        assert_eq!(work.returned_seen, [2, 0, u32::MAX, 0, 0]);
        // Counted here as they happened: the returns of deliveries, not the give-backs.
        assert!(!r.count_committed_return(7));
        assert!(!r.count_committed_return(7));
        assert!(!r.count_committed_return(8));
        assert!(r.count_committed_return(8));
    }

    #[test]
    fn a_fresh_commit_is_timed_from_now_an_older_enqueue_from_its_stamp() {
        let now = 1_700_000_100_000;
        // No stamp (an earlier build's entry): now.
        assert_eq!(ttl_from(0, now), now);
        // Committed a moment after its stamp: now (so a TTL of 0 is not already over).
        assert_eq!(ttl_from(now - 5, now), now);
        assert_eq!(ttl_from(now - FRESH_ENQUEUE_MS, now), now);
        // Replayed or caught up later: from the enqueue.
        assert_eq!(ttl_from(now - 21_000, now), now - 21_000);
        // A writer whose clock runs ahead: never later than now.
        assert_eq!(ttl_from(now + 60_000, now), now);
    }
}
