//! A leader's deliveries across a change of leader.
//!
//! Which consumer holds which message is not replicated (`cluster/queue_machine.rs`); the
//! leader's writer only tells the group how far it has handed messages out (an
//! `OutMark`). Messages go out first in id order, so every message up to the mark that
//! the group has never seen returned went out from that leader, and is still out unless
//! it has been settled since. A new leader, once its copy has applied everything the last
//! leader committed (`queue_feed`), takes those of its ready messages as held for the
//! last leader (`take_over_held`, `Replica::taken_over`):
//! - a dead leader's (no live connection carries its node's beacons: a killed process's
//!   sockets close with it; or an earlier start of this node) are returned at once,
//!   before the new leader hands anything out, each counting a return (`redelivered`,
//!   `x-delivery-count`, the delivery limit), at the head of the queue: RabbitMQ's next
//!   leader returns a dead leader's checkouts so
//!   (`tests/cluster_reference/rabbitmq_failover_redelivery.md`);
//! - a silent but connected one's (paused, its link gone quiet, or a leader that handed
//!   its leadership on and lives) are held for `TAKEN_OVER_LEASE_MS`: settled meanwhile
//!   (the deposed leader's consumers ack them), they leave; otherwise they are returned,
//!   counted, as above;
//! - the last leader may have granted some to another member's consumers: each member
//!   names what its consumers hold in its first ask to the new leader, and those stay
//!   with it (`replica_claims.rs`; a dead leader's are returned only once the live
//!   members have spoken, or a short wait has passed);
//! - any node's return of one frees it.
//!
//! Before this, the next leader had those messages ready at once and delivered them again
//! as first deliveries (`redelivered` false, no `x-delivery-count`). What it still gets
//! wrong: a delivery held by a member that does not claim in time (paused, cut off) is
//! delivered again, counted (a duplicate, at least once); a redelivery (a message
//! returned before) the dead leader's own consumers held is not in the mark, so it is
//! delivered again counted once less than RabbitMQ counts, as is what the last leader
//! handed them in its last commit round before it died.

use std::collections::{HashSet, VecDeque};

use super::dispatch::return_delivery;
use super::queue::replica::{OutMark, Taken};
use super::queue::Queue;
use super::replicated::{replica_of, QueueRef};
use super::vhost::VHost;

/// How long a leader that took over holds what the last leader handed out, when that
/// leader's node is not known to be gone (milliseconds): its consumers' acks settle them
/// meanwhile.
pub const TAKEN_OVER_LEASE_MS: u64 = 3_000;

/// A node's process: its node id and incarnation (its start time, `WriteId::started_at`).
pub type Process = (u64, u64);

/// What a leader taking over knows of the cluster: its own process, and whether a node is
/// gone (no live connection carries its beacons: it died, or the link broke).
pub struct Cluster<'a> {
    pub me: Process,
    pub gone: &'a dyn Fn(u64) -> bool,
    /// The nodes that may hold some of what the last leader handed out: the group's
    /// voters as this node last saw them, and the nodes whose beacons say they hold
    /// messages of the group lent to them (`cluster::claims::Beacon::lent`).
    pub members: &'a [u64],
}

impl Cluster<'_> {
    /// Whether `mark`'s process is certainly not running: its node is gone, or it is an
    /// earlier start of this node.
    fn dead(&self, mark: &OutMark) -> bool {
        match mark.node == self.me.0 {
            true => mark.incarnation != self.me.1,
            false => (self.gone)(mark.node),
        }
    }

    /// The other members that may hold some of what the last leader handed out, and can
    /// say so (`replica_claims.rs`): not this node, none that is gone.
    fn live_others(&self) -> Vec<u64> {
        self.members
            .iter()
            .copied()
            .filter(|&n| n != self.me.0 && !(self.gone)(n))
            .collect()
    }
}

/// On the leader: takes what `mark` says its process handed out (ready here, never
/// returned, id up to `mark.through`, not past its TTL: expiry takes those) as held for
/// it, except what the last leader granted this node that no consumer here took. Nothing
/// when the mark is this process's own (its consumers have those, or it made them ready
/// itself as it stopped leading). Returns whether that process is dead and something was
/// taken (then it is returned once the members have claimed theirs: `await_claims`).
pub(super) fn take_over_held(
    q: &mut Queue,
    mark: OutMark,
    cluster: &Cluster<'_>,
    now: u64,
) -> bool {
    if (mark.node, mark.incarnation) == cluster.me {
        return false;
    }
    let mut taken = Vec::new();
    let mut put_back = Vec::new();
    // In the order they go out (the requeued ones, then the log): the walk ends at the
    // first message of the log past the mark. What it takes in passing and leaves is put
    // back among the requeued ones, so it goes out `redelivered` (AMQP's "may have been
    // delivered before": true of all but this node's undelivered grants).
    while let Some((rec, at)) = q.peek() {
        let requeued = at.requeued();
        let id = replica_of(q).and_then(|r| r.id_of(rec.seq));
        if !requeued && id.is_none_or(|id| id > mark.through) {
            break;
        }
        let seq = rec.seq;
        let expired = q.can_expire() && q.deadline(&rec).is_some_and(|d| d < now);
        q.take(&rec, at);
        let undelivered = replica_of(q).is_some_and(|r| r.taken_over.undelivered.contains(&seq));
        match id {
            Some(id)
                if id <= mark.through && q.returns_of(seq) == 0 && !expired && !undelivered =>
            {
                taken.push((id, seq))
            }
            _ => put_back.push(seq),
        }
    }
    for seq in put_back {
        q.restore(seq);
    }
    let dead = cluster.dead(&mark);
    for &(_, seq) in &taken {
        q.store.mark_delivered(seq);
        q.unacked += 1;
    }
    if taken.is_empty() {
        return false;
    }
    tracing::info!(
        queue = %q.name,
        node = mark.node,
        taken = taken.len(),
        dead,
        "cluster: the last leader's deliveries held for it"
    );
    let r = replica_of(q).expect("a replica: checked above");
    // A dead process's are held only while the members say what they hold
    // (`VHost::await_claims` sets when).
    let until = now + TAKEN_OVER_LEASE_MS;
    for (id, seq) in taken {
        let node = mark.node;
        let t = Taken {
            seq,
            node,
            until,
            dead: false, // `VHost::await_claims` says so.
        };
        r.taken_over.held.insert(id, t);
    }
    dead
}

/// Group message `id` was settled (`returned` false) or returned by the group: if it was
/// held for the last leader, it is not any more (a returned one is ready again, a settled
/// one is the caller's to remove). Whether it was.
pub(super) fn taken_over_done(q: &mut Queue, id: u64, returned: bool) -> bool {
    let Some(r) = replica_of(q) else {
        return false;
    };
    if r.taken_over.held.is_empty() {
        return false;
    }
    let Some(taken) = r.taken_over.held.remove(&id) else {
        return false;
    };
    r.forget_out(id);
    match returned {
        true => q.requeue(taken.seq),
        false => q.unacked -= 1,
    }
    true
}

/// This node stops leading (or its copy is reset): what it held for the last leader is
/// ready again, uncounted, and what it kept apart is forgotten.
pub(super) fn release_taken_over(q: &mut Queue) {
    let Some(r) = replica_of(q) else {
        return;
    };
    // A get waiting for the members' claims goes on (and finds this node not leading).
    r.taken_over
        .waiting
        .store(false, std::sync::atomic::Ordering::Release);
    let taken = std::mem::take(&mut r.taken_over);
    let mut held: Vec<(u64, u64)> = taken.held.into_iter().map(|(id, t)| (id, t.seq)).collect();
    held.sort_unstable();
    for (_, seq) in held {
        q.requeue(seq);
    }
}

impl VHost {
    /// On a leader taking over queue `queue` (before it dispatches), `undelivered` the
    /// store seqs the last leader granted this node that no consumer here took: holds what
    /// the group's mark names for the last leader (returned once the live members have
    /// claimed theirs if that process is dead), and hands nothing out until those claims
    /// are in (`replica_claims.rs`).
    pub(super) fn take_over(
        &mut self,
        (name, id): QueueRef<'_>,
        cluster: &Cluster<'_>,
        undelivered: HashSet<u64>,
        now: u64,
    ) {
        // (The members' claims are waited for whenever something was handed out before:
        // what a member's consumers hold may be ready here, whoever led.)
        let Some(q) = self.replica_queue(name, id) else {
            return;
        };
        let Some(r) = replica_of(q) else {
            return;
        };
        r.taken_over.undelivered = undelivered;
        r.taken_over.members = cluster.live_others();
        let Some(mark) = r.group_out else {
            return;
        };
        let dead = take_over_held(q, mark, cluster, now).then_some(mark.node);
        // Some may be with the members' consumers: they say so first.
        self.await_claims((name, id), dead, now);
    }

    /// The group's `OutMark` as a committed round (or a state the copy was rebuilt from)
    /// has it. On the leader, a mark of another process's (a deposed leader's round that
    /// committed after this node took over) takes what it names for that process.
    pub fn replica_out_mark(
        &mut self,
        (name, id): QueueRef<'_>,
        mark: OutMark,
        cluster: &Cluster<'_>,
    ) {
        let now = super::vhost::now_millis();
        let Some(q) = self.replica_queue(name, id) else {
            return;
        };
        let Some(r) = replica_of(q) else {
            return;
        };
        let before = r.group_out;
        r.group_marked_out(mark);
        if !r.leading || r.group_out == before {
            return;
        }
        if take_over_held(q, mark, cluster, now) {
            // Returned at once if the members have claimed already, or after the wait.
            self.await_claims((name, id), Some(mark.node), now);
        }
    }

    /// On the leader: returns what it held for the last leader whose lease ran out.
    pub(super) fn expire_taken_over(&mut self, queue: QueueRef<'_>, now: u64) {
        self.end_claims(queue.0, now);
        let due = self
            .replica_queue(queue.0, queue.1)
            .and_then(replica_of)
            .is_some_and(|r| r.taken_over.held.values().any(|t| now > t.until));
        if due {
            self.return_taken_over(queue, |t| now > t.until, now);
        }
    }

    /// On the leader: node `node` is gone; what it handed out as leader before this node
    /// is returned, once the live members have claimed what their consumers hold of it
    /// (or at once; `replica_claims.rs`); a member awaited for its claim is awaited no
    /// more.
    pub(super) fn taken_over_node_gone(&mut self, queue: QueueRef<'_>, node: u64, now: u64) {
        let Some(r) = self.replica_queue(queue.0, queue.1).and_then(replica_of) else {
            return;
        };
        let to = &mut r.taken_over;
        let awaited = to.claims_until != 0 && to.unclaimed().any(|n| n == node);
        let concerned = awaited || to.held.values().any(|t| t.node == node);
        to.members.retain(|&n| n != node);
        if concerned {
            self.await_claims(queue, Some(node), now);
        }
    }

    /// Returns what this leader held for the last leader that `which` picks, each counted
    /// (`dispatch::return_delivery`: requeued as redelivered, or past the delivery limit
    /// dead-lettered or dropped), in id order, and hands it out again.
    pub(super) fn return_taken_over(
        &mut self,
        (name, id): QueueRef<'_>,
        which: impl Fn(&Taken) -> bool,
        now: u64,
    ) {
        let Some(q) = self.replica_queue(name, id) else {
            return;
        };
        let Some(r) = replica_of(q) else {
            return;
        };
        let mut picked: Vec<(u64, u64)> = r
            .taken_over
            .held
            .iter()
            .filter(|(_, t)| which(t))
            .map(|(id, t)| (*id, t.seq))
            .collect();
        picked.sort_unstable();
        for (id, _) in &picked {
            r.taken_over.held.remove(id);
        }
        if picked.is_empty() {
            self.dispatch(name); // What was held back for the members' claims goes out.
            return;
        }
        tracing::info!(
            queue = name,
            returned = picked.len(),
            "cluster: the last leader's deliveries returned"
        );
        let mut dead = VecDeque::new();
        for (_, seq) in picked {
            if let Err(e) = return_delivery(q, seq, &mut dead) {
                tracing::error!(
                    queue = name,
                    "cluster: returning the last leader's deliveries: {e}"
                );
            }
        }
        self.pending_dead.extend(dead);
        self.drain_dead_letters();
        self.dispatch(name);
        self.arm_expiry(name, now);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::broker::definitions_import::import_json;
    use crate::broker::queue::replica::GroupMessage;
    use crate::broker::replica_checkout::Ask;
    use crate::broker::replicated::tests::stored_message;
    use crate::broker::replicated::CommittedReturns;
    use crate::broker::BrokerHandle;

    pub(in crate::broker) const ME: Process = (2, 9);
    /// Node 1's process that led before this node.
    pub(in crate::broker) const LAST: Process = (1, 7);

    fn none_gone(_: u64) -> bool {
        false
    }

    fn all_gone(_: u64) -> bool {
        true
    }

    /// Node 2, every other node's beacons coming in.
    pub(in crate::broker) const LINKED: Cluster<'static> = Cluster {
        me: ME,
        gone: &none_gone,
        members: &[],
    };

    /// Node 2's copy of quorum queue `q` with five messages (ids `id(0)`..`id(4)`), the
    /// third returned once; `f` runs with the vhost and the queue.
    pub(in crate::broker) fn with_copy(f: impl FnOnce(&mut VHost, QueueRef<'_>)) {
        let dir = tempfile::tempdir().unwrap();
        let broker = BrokerHandle::open_ephemeral(dir.path()).unwrap();
        let q = r#"{"queues": [{"name": "q", "vhost": "/", "durable": true,
                    "auto_delete": false, "arguments": {"x-queue-type": "quorum"}}]}"#;
        import_json(&broker, q.as_bytes()).expect("declared");
        broker.vhost("/").unwrap().with(|m| {
            let (_, qid) = m.replica_attach("q", &[], false).unwrap();
            let stored = stored_message();
            let messages: Vec<GroupMessage<'_>> = (0..5)
                .map(|k| GroupMessage {
                    id: id(k),
                    stored: &stored,
                    returns: (k == 2) as u32,
                    enqueued_at: 0,
                })
                .collect();
            m.replica_add(("q", qid), &messages, &[]);
            f(m, ("q", qid));
        });
    }

    pub(in crate::broker) fn id(k: u64) -> u64 {
        (1 << 16) | k
    }

    /// The copy takes the group's mark that the last leader handed out through message
    /// `k`, then leads.
    pub(in crate::broker) fn lead_after_last_through(m: &mut VHost, queue: QueueRef<'_>, k: u64) {
        m.replica_out_mark(queue, mark(id(k), LAST), &LINKED);
        m.replica_leading(queue, true, true, &LINKED);
    }

    pub(in crate::broker) fn mark(through: u64, (node, incarnation): Process) -> OutMark {
        OutMark {
            node,
            incarnation,
            through,
        }
    }

    /// (ready, unacked, returns of the first message) of the copy.
    pub(in crate::broker) fn state(m: &mut VHost, queue: QueueRef<'_>) -> (u64, u64, u32) {
        state_of(m, queue, 0)
    }

    /// (ready, unacked, returns of message `k`) of the copy.
    pub(in crate::broker) fn state_of(
        m: &mut VHost,
        (name, qid): QueueRef<'_>,
        k: u64,
    ) -> (u64, u64, u32) {
        let q = m.replica_queue(name, qid).unwrap();
        let seq = replica_of(q).unwrap().seq_of(id(k)).unwrap();
        (q.ready(), q.unacked, q.returns_of(seq))
    }

    /// The last leader handed out the first four (one of them a redelivery): the new
    /// leader holds the three never returned for the last leader's node, the returned one
    /// and the fifth stay ready. A dead leader never asks: a short lease later they are
    /// returned, each counted.
    #[test]
    fn a_new_leader_holds_what_the_last_one_handed_out_and_returns_it_counted() {
        with_copy(|m, queue| {
            // Followed as a member: the mark is only noted.
            m.replica_out_mark(queue, mark(id(3), LAST), &LINKED);
            assert_eq!(state(m, queue), (5, 0, 0));
            m.replica_leading(queue, true, true, &LINKED);
            assert_eq!(state(m, queue), (2, 3, 0), "ids 0, 1, 3 held");
            let now = super::super::vhost::now_millis();
            m.replica_expire_remote(queue, now + TAKEN_OVER_LEASE_MS / 2);
            assert_eq!(state(m, queue).1, 3, "within the lease");
            m.replica_expire_remote(queue, now + TAKEN_OVER_LEASE_MS + 500);
            assert_eq!(state(m, queue), (5, 0, 1), "returned, counted");
        });
    }

    /// The last leader's node is gone (its connection closed, or it is an earlier start
    /// of this node): what it handed out is returned at once, counted, at the head of the
    /// queue, before the new leader hands out anything.
    #[test]
    fn a_dead_leaders_deliveries_are_returned_at_once() {
        for (mark_of, gone) in [
            (LAST, &all_gone as &dyn Fn(u64) -> bool),
            ((2, 8), &none_gone),
        ] {
            with_copy(|m, queue| {
                // No other member could hold any of it (`replica_claims.rs` has those).
                let cluster = Cluster {
                    me: ME,
                    gone,
                    members: &[ME.0],
                };
                m.replica_out_mark(queue, mark(id(3), mark_of), &cluster);
                m.replica_leading(queue, true, true, &cluster);
                assert_eq!(state(m, queue), (5, 0, 1), "returned, counted");
                let q = m.replica_queue(queue.0, queue.1).unwrap();
                let head = q.peek().map(|(rec, _)| rec.seq);
                let first = replica_of(q).unwrap().seq_of(id(0));
                assert_eq!(head, first, "at the head");
            });
        }
    }

    /// A deposed leader that lives on: what its consumers ack within the lease is settled
    /// and leaves; the rest is returned, counted, when the lease ends, whatever that node
    /// asks meanwhile.
    #[test]
    fn what_the_last_leader_settles_within_the_lease_leaves() {
        with_copy(|m, queue| {
            lead_after_last_through(m, queue, 1);
            assert_eq!(state(m, queue), (3, 2, 0));
            let now = super::super::vhost::now_millis();
            let ask = Ask {
                node: LAST.0,
                incarnation: LAST.1,
                want: 0,
                first: None,
                get: false,
                held: None,
                claim_only: false,
            };
            assert_eq!(m.replica_grant(queue, ask, now), Some(Vec::new()));
            m.replica_settled(queue, &[id(0)]);
            assert_eq!(state_of(m, queue, 1), (3, 1, 0), "the first settled");
            let _ = m.replica_grant(queue, ask, now + TAKEN_OVER_LEASE_MS);
            m.replica_expire_remote(queue, now + TAKEN_OVER_LEASE_MS + 500);
            assert_eq!(
                state_of(m, queue, 1),
                (4, 0, 1),
                "the second returned, counted"
            );
        });
    }

    /// A deposed leader's round that commits after this node took over names more: those
    /// are taken too (a message the last leader granted this node, which no consumer here
    /// took, is not).
    #[test]
    fn a_later_mark_of_the_last_leader_takes_what_it_adds() {
        with_copy(|m, queue| {
            lead_after_last_through(m, queue, 0);
            assert_eq!(state(m, queue), (4, 1, 0));
            let q = m.replica_queue(queue.0, queue.1).unwrap();
            let r = replica_of(q).unwrap();
            let fifth = r.seq_of(id(4)).unwrap();
            r.taken_over.undelivered.insert(fifth);
            m.replica_out_mark(queue, mark(id(4), LAST), &LINKED);
            assert_eq!(
                state(m, queue),
                (2, 3, 0),
                "ids 1 and 3 as well, not 2 nor 4"
            );
        });
    }

    /// Which node's consumer has a taken-over message is not known: a return of it from
    /// a third node frees it (the group counted that return).
    #[test]
    fn any_nodes_return_frees_a_taken_over_message() {
        with_copy(|m, queue| {
            lead_after_last_through(m, queue, 0);
            assert_eq!(state(m, queue), (4, 1, 0));
            let third = CommittedReturns {
                ids: &[id(0)],
                seen: &[0],
                from: Some(3),
                mine: false,
                stale: &[],
            };
            m.replica_returned(queue, third);
            assert_eq!(state(m, queue), (5, 0, 1));
        });
    }

    /// This process's own mark (it led, stopped, and leads again) takes nothing: its
    /// consumers have what it handed out. A deposed leader's round that commits late,
    /// its mark below the group's, changes nothing either.
    #[test]
    fn a_mark_of_this_process_takes_nothing() {
        with_copy(|m, queue| {
            m.replica_out_mark(queue, mark(id(4), ME), &LINKED);
            m.replica_leading(queue, true, true, &LINKED);
            assert_eq!(state(m, queue), (5, 0, 0));
            m.replica_out_mark(queue, mark(id(1), LAST), &LINKED);
            assert_eq!(state(m, queue), (5, 0, 0), "the mark only moves forwards");
        });
    }
}
