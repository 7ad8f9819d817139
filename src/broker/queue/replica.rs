//! A quorum queue in a cluster: its messages live in the queue's Raft group, and this
//! node's store is a copy of what the group has committed.
//!
//! - A publish on this node does not go into the store: it waits in `outgoing` until the
//!   node's bridge writes it to the group; its confirm waits for the commit (a replication
//!   ticket, `confirms.rs`). Every member, this one included, then adds the committed
//!   message to its copy (`VHost::replica_enqueued`).
//! - Only the member that leads the group hands messages to consumers: the copies of the
//!   others wait, ready, for the day their node leads (a message delivered by a leader
//!   that died unacked is delivered again by the next one: at least once).
//! - A message that leaves this node's copy for good (acked, dropped, purged) is named in
//!   `settled` by its group id, for the bridge to write as a settle; a settle committed by
//!   the group removes the message from every copy that still has it.
//!
//! The copy is kept with transient records (nothing synced for it): the group's log is
//! what is durable, and after a restart the copy is rebuilt from the group.
//!
//! Consumers on a member that does not lead are served through the leader
//! (`broker/replica_checkout.rs`): the leader hands that node ids of ready messages
//! (`remote`), and the node delivers them from its own copy (`granted`). A node that is
//! not a member of the group has no copy (`lent_only`): the leader lends it the messages
//! themselves, and its store holds only those until they are settled or given back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::broker::dead_letter::DeathReason;

/// The cluster side of a replicated quorum queue on this node.
#[derive(Debug, Default)]
pub struct Replica {
    /// This node leads the queue's group (and so delivers its messages).
    pub leading: bool,
    /// This node is not a member of the group: no copy is fed here, and the store holds
    /// only what the leader lent this node's consumers (`VHost::replica_lent`).
    pub lent_only: bool,
    /// Published here, not yet handed to the group: the stored message and the ticket its
    /// confirm waits for.
    pub outgoing: Vec<(Bytes, u64)>,
    /// Group ids of messages that left this node's copy, not yet handed to the group.
    pub settled: Vec<u64>,
    /// Group ids of messages returned here (nack, reject or recover with requeue, a
    /// channel closed), not yet handed to the group: every copy counts the delivery, if
    /// the group does (`returned_seen`).
    pub returned: Vec<u64>,
    /// For each of `returned`, the returns the message had when the delivery it gives
    /// back went out (`went_out`): the group ignores a return of a delivery it has taken
    /// back since (`QueueCommand::Round`'s `seen`).
    pub returned_seen: Vec<u32>,
    /// Group id -> the returns a message had when it last went out from here (delivered
    /// to a consumer here, granted by this leader to another node, or granted to this
    /// node by the leader), for those above 0 (none recorded: 0). Its return names that
    /// count (`returned_here`).
    out_with: HashMap<u64, u32>,
    /// Returns this node counted itself and handed to the group, by group id, until the
    /// group's commit of them comes back (then they are not counted twice).
    counted_here: HashMap<u64, u32>,
    /// Store seq -> group message id, and back.
    id_of: HashMap<u64, u64>,
    seq_of: HashMap<u64, u64>,
    /// Wakes the bridge's task for this queue when `outgoing` or `settled` grows.
    pub wake: Arc<Notify>,
    /// On a member that does not lead: wakes its checkout task when this node's consumers
    /// have room and nothing the leader granted is left to deliver, so it asks at once
    /// rather than at its next tick.
    pub room: Arc<Notify>,
    /// On the leader: messages handed to consumers of other nodes, by node.
    pub remote: HashMap<u64, RemoteHolder>,
    /// On a leader that took a single-active-consumer queue over from another: until this
    /// time (milliseconds since the epoch) no consumer is served, while the other members'
    /// consumers make themselves known (`replica_sac::SETTLE_MS`).
    pub sac_settling_until: u64,
    /// On another member: store seqs of the messages the leader handed to this node's
    /// consumers, not delivered yet, in the order they were handed.
    pub granted: VecDeque<u64>,
    /// Group ids the leader handed this node before this copy had them.
    pub awaited: HashSet<u64>,
    /// Store seqs the group settled while a delivery of them was out here (another
    /// leader's consumer acked them): the channel's ack finds them, a return drops them.
    pub settled_out: HashSet<u64>,
    /// Dead letters of this node under at-least-once, not yet handed to the group as a
    /// round's `discarded`: (group id, reason, when it died).
    pub discarded: Vec<DeadMark>,
    /// Store seqs the group marked dead-lettered while they were out here (a delivery, a
    /// loan to another node, this node's own dead-lettering): should one come back, it is
    /// set aside (`Queue::park`) rather than made ready.
    pub dead: HashMap<u64, (DeathReason, u64)>,
    /// Store seqs set aside because the group holds them dead-lettered (`parked.rs`):
    /// reason, when it died, body bytes.
    pub parked: HashMap<u64, (DeathReason, u64, u64)>,
    /// On the leader: the highest group id it has handed out, which its writer tells the
    /// group (`OutMark`); and how far it has told it.
    pub out_through: u64,
    out_told: u64,
    /// The store seq of the message at `out_through` (or the last one past it looked at).
    out_seq: u64,
    /// The group's `OutMark` as this copy has applied it.
    pub group_out: Option<OutMark>,
    /// On a leader that took over: what the last leader handed out, held for it.
    pub taken_over: TakenOver,
    /// How many changes of leader (or of term) this copy's Raft has shown: a member's
    /// first ask after each names what its consumers hold (`replica_claims.rs`).
    pub leaders_seen: u64,
}

/// One message a leader that took over holds for the last leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub seq: u64,
    /// The node whose mark named it.
    pub node: u64,
    /// Until when it is held (milliseconds since the epoch).
    pub until: u64,
    /// The process whose mark named it is dead: it is held only while the live members
    /// say what their consumers hold (`replica_claims.rs`), then returned.
    pub dead: bool,
}

/// What the group knows of a leader's deliveries (a writer's round says it: the cluster's
/// `QueueCommand::Round`'s `out_through`): every message with an id up to `through` the
/// group has never seen returned went out from node `node`'s process `incarnation`, and
/// may still be out there. Messages go out first in id order, so no id list is needed.
/// The next leader takes those as held by that node (`replica_takeover::take_over_held`),
/// as RabbitMQ's replicated checkouts let its next leader return a dead leader's
/// deliveries counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutMark {
    pub node: u64,
    pub incarnation: u64,
    pub through: u64,
}

impl OutMark {
    /// Moves `current` on to `mark` if it names more: a mark only moves forwards (a
    /// deposed leader's late round, below it, changes nothing).
    pub fn advance(current: &mut Option<OutMark>, mark: OutMark) {
        if current.is_none_or(|m| mark.through > m.through) {
            *current = Some(mark);
        }
    }
}

/// A dead letter as the group records it: (group id, reason, when it died, ms).
pub type DeadMark = (u64, DeathReason, u64);

/// A message of the group as this node's copy takes it.
#[derive(Debug, Clone, Copy)]
pub struct GroupMessage<'a> {
    /// Its id in the group.
    pub id: u64,
    /// The stored message bytes (exchange, routing key, content header, body).
    pub stored: &'a [u8],
    /// Returns so far (`x-delivery-count`).
    pub returns: u32,
    /// When it was enqueued (milliseconds since the epoch, the writing node's stamp), which
    /// a copy rebuilt from the group's state times its TTL from; 0 when the group does not
    /// know (entries of earlier builds, messages lent).
    pub enqueued_at: u64,
}

/// What the leader has handed to one other node's consumers.
#[derive(Debug, Default)]
pub struct RemoteHolder {
    /// The node's process (its start time): a restarted node holds nothing.
    pub incarnation: u64,
    /// When the node last asked (milliseconds since the epoch): its lease.
    pub last_seen: u64,
    /// Group id -> store seq of each message out with it, and the returns it had when it
    /// was granted: a return from this node of an earlier delivery (a lower count) does
    /// not release it (`replica_checkout::remote_returned`).
    pub held: HashMap<u64, (u64, u32)>,
    /// Its earliest consumer, on a single-active-consumer queue (`replica_sac.rs`).
    pub candidate: Option<crate::broker::replica_sac::Candidate>,
}

/// On a leader that took over from another: what the group's `OutMark` said the last
/// leader handed out, held until it is settled or returned, or the short lease ends
/// (`replica_takeover.rs`). Which node's consumer has each is not known.
#[derive(Debug, Default)]
pub struct TakenOver {
    /// Group id -> what is held.
    pub held: HashMap<u64, Taken>,
    /// Store seqs the last leader granted this node that no consumer here took: never
    /// delivered, never taken over (kept for as long as this node leads).
    pub undelivered: HashSet<u64>,
    /// The other members that were live when this node took over: what they claim (their
    /// first ask names what their consumers hold, `replica_claims.rs`) stays with them.
    pub members: Vec<u64>,
    /// Members whose claim has come.
    pub claimed: HashSet<u64>,
    /// While some of `members` have not claimed: until this time (milliseconds since the
    /// epoch) nothing is handed out, so what the dead leader's consumers had goes out
    /// first. 0: nothing is held back.
    pub claims_until: u64,
    /// Set while the claims are awaited: what a basic.get waiting for them watches.
    pub waiting: Arc<AtomicBool>,
}

impl TakenOver {
    /// The members whose claim has not come yet.
    pub fn unclaimed(&self) -> impl Iterator<Item = u64> + '_ {
        self.members
            .iter()
            .copied()
            .filter(|n| !self.claimed.contains(n))
    }
}

impl Replica {
    /// Records that group message `id` is stored here as `seq`.
    pub fn stored(&mut self, id: u64, seq: u64) {
        self.id_of.insert(seq, id);
        self.seq_of.insert(id, seq);
        if !self.awaited.is_empty() && self.awaited.remove(&id) {
            self.granted.push_back(seq);
        }
    }

    /// Whether group message `id` is in this node's copy.
    pub fn holds(&self, id: u64) -> bool {
        self.seq_of.contains_key(&id)
    }

    /// The store seq of group message `id`, forgetting it: the caller removes it from the
    /// store because the group settled it (so it is not written back as a settle).
    pub fn forget_id(&mut self, id: u64) -> Option<u64> {
        let seq = self.seq_of.remove(&id)?;
        self.id_of.remove(&seq);
        self.forget_out(id);
        if !self.dead.is_empty() {
            self.dead.remove(&seq);
        }
        Some(seq)
    }

    /// Message `seq` left the copy here: its settle goes to the group.
    pub fn left(&mut self, seq: u64) {
        if !self.settled_out.is_empty() {
            self.settled_out.remove(&seq);
        }
        if !self.dead.is_empty() {
            self.dead.remove(&seq);
        }
        if let Some(id) = self.id_of.remove(&seq) {
            self.seq_of.remove(&id);
            self.forget_out(id);
            self.settled.push(id);
            self.wake.notify_one();
        }
    }

    /// Group message `id` went out with `returns` returns counted (a delivery here, a
    /// grant): its return will say so. The highest count stands: a member's copy may lag
    /// the count the leader granted the message with.
    pub fn went_out(&mut self, id: u64, returns: u32) {
        if returns > 0 {
            let n = self.out_with.entry(id).or_insert(0);
            *n = (*n).max(returns);
        }
    }

    /// On the leader: message `seq` goes out (to a consumer here, or granted to another
    /// node) with `returns` counted (`None`: never returned). The group hears how far the
    /// leader has handed out; the writer is woken for it only when it has nothing else
    /// to write (a busy writer's next round carries it anyway).
    pub fn handed_out(&mut self, seq: u64, returns: Option<u32>) {
        if let (Some(n), Some(id)) = (returns, self.id_of(seq)) {
            self.went_out(id, n);
        }
        // Store seqs follow group ids in order: one lookup per message past the last.
        if seq <= self.out_seq {
            return;
        }
        let Some(id) = self.id_of(seq) else {
            return;
        };
        self.out_seq = seq;
        if id > self.out_through {
            self.out_through = id;
            if self.outgoing.is_empty() && self.settled.is_empty() && self.returned.is_empty() {
                self.wake.notify_one();
            }
        }
    }

    /// The group's mark moved on (it only moves forwards: `queue_machine`'s `mark_out`).
    pub fn group_marked_out(&mut self, mark: OutMark) {
        OutMark::advance(&mut self.group_out, mark);
    }

    /// Message `seq` was returned here and counted (`Queue::count_return`: a delivery
    /// given back, or what the leader held for a gone node): the return goes to the
    /// group, with the count its delivery went out with.
    pub fn returned_here(&mut self, seq: u64) {
        let seen = self.take_out_count(seq);
        self.give_back(seq, seen, true);
    }

    /// The count message `seq` went out with (0 if none was noted), forgotten.
    fn take_out_count(&mut self, seq: u64) -> u32 {
        let id = self.id_of(seq);
        id.and_then(|id| self.out_with.remove(&id)).unwrap_or(0)
    }

    /// Message `seq`, granted to this node, goes back to the leader undelivered (the
    /// basic.get it was for has no channel any more): not counted here; the group's
    /// commit of the return counts it.
    pub fn grant_given_back(&mut self, seq: u64) {
        let seen = self.take_out_count(seq);
        self.give_back(seq, seen, false);
    }

    /// Message `seq`, held for this node by the leader, goes back to it whatever was
    /// counted since (a dead letter whose copies failed, or that the group marked while
    /// it waited here): a return the group never takes as stale, not counted here until
    /// the group commits it. (A dead letter given back after the leader took the delivery
    /// back counts twice: what its delivery limit needs is that it counts at all.)
    pub fn handed_back(&mut self, seq: u64) {
        self.take_out_count(seq);
        self.give_back(seq, u32::MAX, false);
    }

    /// Group message `id`, granted to this node by a leader replaced since, goes back
    /// undelivered, whether or not this copy has it yet (`replica_late_grants.rs`): as
    /// `grant_given_back`, with the count the grant carried.
    pub fn late_grant_given_back(&mut self, id: u64) {
        let seen = match self.out_with.is_empty() {
            true => 0,
            false => self.out_with.remove(&id).unwrap_or(0),
        };
        self.give_back_id(id, seen, false);
    }

    /// `counted`: this node counted the return as it happened (`counted_here`), so the
    /// group's commit of it is not counted again here.
    fn give_back(&mut self, seq: u64, seen: u32, counted: bool) {
        if let Some(&id) = self.id_of.get(&seq) {
            self.give_back_id(id, seen, counted);
        }
    }

    fn give_back_id(&mut self, id: u64, seen: u32, counted: bool) {
        self.returned.push(id);
        self.returned_seen.push(seen);
        // A node with no copy never hears the group's commit of it back.
        if counted && !self.lent_only {
            *self.counted_here.entry(id).or_insert(0) += 1;
        }
        self.wake.notify_one();
    }

    /// Returns and settles this node's writer could not write (its deadline passed with
    /// no commit): written again, ahead of what came since. A return the group commits
    /// twice (the first try committed late after all) counts once: the second names a
    /// count below the message's (`seen`); a settle twice is a settle of nothing. Left
    /// unwritten, the leader would hold the messages for this node for as long as it
    /// asks, and no consumer here has them.
    pub fn write_again(
        &mut self,
        returned: Vec<u64>,
        seen: Vec<u32>,
        settled: Vec<u64>,
        out_through: u64,
    ) {
        debug_assert_eq!(returned.len(), seen.len());
        if out_through > 0 {
            // Told again with the next round.
            self.out_told = self.out_told.min(out_through - 1);
        }
        if returned.is_empty() && settled.is_empty() {
            if out_through > 0 {
                self.wake.notify_one();
            }
            return;
        }
        self.returned.splice(0..0, returned);
        self.returned_seen.splice(0..0, seen);
        self.settled.splice(0..0, settled);
        self.wake.notify_one();
    }

    /// Drops what the leader granted this node that no consumer took (its consumers are
    /// gone): the store seqs granted, in order; ids still awaited are forgotten.
    pub fn drop_grants(&mut self) -> VecDeque<u64> {
        let granted = std::mem::take(&mut self.granted);
        if !self.out_with.is_empty() {
            for id in self.awaited.iter() {
                self.out_with.remove(id);
            }
            for seq in &granted {
                if let Some(id) = self.id_of.get(seq) {
                    self.out_with.remove(id);
                }
            }
        }
        self.awaited.clear();
        granted
    }

    /// The returns counted of group message `id` when it last went out from here (0 if
    /// none was noted).
    pub fn out_count(&self, id: u64) -> u32 {
        self.out_with.get(&id).copied().unwrap_or(0)
    }

    /// The returns counted of message `seq` (a store seq) when it last went out from
    /// here or was granted to this node (0 if none was noted).
    #[inline]
    pub fn granted_count(&self, seq: u64) -> u32 {
        if self.out_with.is_empty() {
            return 0;
        }
        self.id_of(seq).map_or(0, |id| self.out_count(id))
    }

    /// Forgets the count message `id` went out with (its grant was dropped undelivered,
    /// or another node's return of it came back to the leader).
    pub fn forget_out(&mut self, id: u64) {
        if !self.out_with.is_empty() {
            self.out_with.remove(&id);
        }
    }

    /// A return of group message `id` came back from the group: whether it still needs
    /// counting here (false for one this node counted when it happened).
    pub fn count_committed_return(&mut self, id: u64) -> bool {
        match self.counted_here.get_mut(&id) {
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    self.counted_here.remove(&id);
                }
                false
            }
            None => true,
        }
    }

    /// The group id of the message stored here as `seq`.
    pub fn id_of(&self, seq: u64) -> Option<u64> {
        self.id_of.get(&seq).copied()
    }

    /// The store seq of group message `id`, if the copy here holds it.
    pub fn seq_of(&self, id: u64) -> Option<u64> {
        self.seq_of.get(&id).copied()
    }

    /// Forgets every message (the copy is rebuilt from a snapshot of the group).
    pub fn clear(&mut self) {
        self.id_of.clear();
        self.seq_of.clear();
        self.counted_here.clear();
        self.out_with.clear();
        self.granted.clear();
        self.awaited.clear();
        self.dead.clear();
        self.group_out = None;
        debug_assert!(
            self.remote.is_empty(),
            "released before the copy is cleared"
        );
    }

    /// What the bridge writes next.
    pub fn take_work(&mut self) -> ReplicaWork {
        let out_through = match self.leading && self.out_through > self.out_told {
            true => self.out_through,
            false => 0,
        };
        self.out_told = self.out_told.max(out_through);
        ReplicaWork {
            out_through,
            published: std::mem::take(&mut self.outgoing),
            settled: std::mem::take(&mut self.settled),
            returned: std::mem::take(&mut self.returned),
            returned_seen: std::mem::take(&mut self.returned_seen),
            discarded: std::mem::take(&mut self.discarded),
        }
    }
}

/// What a replica has for its group: the messages published here (with their confirm
/// tickets), the group ids of messages settled and returned here, and its dead letters
/// under at-least-once.
#[derive(Debug, Default)]
pub struct ReplicaWork {
    pub published: Vec<(Bytes, u64)>,
    pub settled: Vec<u64>,
    pub returned: Vec<u64>,
    /// For each of `returned`, the returns its delivery went out with.
    pub returned_seen: Vec<u32>,
    pub discarded: Vec<DeadMark>,
    /// On the leader: how far it has handed messages out, when that moved on since it was
    /// last told (0: nothing to tell).
    pub out_through: u64,
}
