//! Dead letters of a replicated quorum queue under `x-dead-letter-strategy: at-least-once`,
//! as the cluster sees them (RabbitMQ keeps them in the queue's replicated state, its
//! `discard` command, and its dead-letter worker on the leader publishes them):
//!
//! - the node that dead-letters a message records it for the group (`Queue::hold_dead`,
//!   written as a `Discard` by the bridge) and publishes its copies itself, as before;
//! - once the group commits it, every other copy sets the message aside
//!   (`replica_discarded`, `queue/parked.rs`): it is never delivered again;
//! - the node that leads the queue publishes what is set aside in its copy
//!   (`publish_parked`): at once when it takes the lead or a mark arrives, and within a
//!   second of one coming back to it (a delivery given back, a loan run out, copies that
//!   failed). So a dead letter outlives the node that held it, and at worst is published
//!   twice (at least once): a node that stops leading goes on with the dead letters it
//!   holds itself, as a member holds its consumers' deliveries (its mark may not have
//!   reached the group: parking them there could leave one published by nobody).

use super::queue::replica::DeadMark;
use super::replicated::{replica_of, QueueRef};
use super::vhost::VHost;

/// How soon the leader publishes a dead letter set aside when it came back to it (copies
/// that failed come back at once: this keeps a target without a majority from being
/// tried in a loop).
pub(super) const PARKED_RETRY_MS: u64 = 1_000;

impl VHost {
    /// Dead letters the group committed (group id, reason, when it died): each ready one in
    /// this copy is set aside, never to be delivered again; one out here (a delivery, a
    /// loan, this node's own dead-lettering) is set aside should it come back. One the
    /// leader had handed this node's consumers, not yet delivered, goes back to it. The
    /// leader publishes what is set aside.
    pub fn replica_discarded(&mut self, (name, id): QueueRef<'_>, marks: &[DeadMark]) {
        let Some(q) = self.replica_queue(name, id) else {
            return;
        };
        for &(id, reason, died_at) in marks {
            let Some(seq) = replica_of(q).and_then(|r| r.seq_of(id)) else {
                continue;
            };
            if q.take_ready(seq) {
                q.park(seq, (reason, died_at));
                if let Some(r) = replica_of(q).filter(|r| !r.granted.is_empty()) {
                    if let Some(i) = r.granted.iter().position(|s| *s == seq) {
                        // The leader holds it for this node: give it back, so that it
                        // is the leader's to publish (a return keeps a marked message).
                        r.granted.remove(i);
                        r.handed_back(seq);
                    }
                }
            } else if q.store.is_taken(seq) {
                if let Some(r) = replica_of(q) {
                    r.dead.insert(seq, (reason, died_at));
                }
            }
        }
        self.publish_parked(name);
    }

    /// On the leader of a replicated quorum queue: publishes the dead letters set aside
    /// in its copy as any dead letter is published, with the reason and time of their
    /// death. They stay marked (`Replica::dead`): given back, or kept when this node stops
    /// leading, they are set aside again, never made ready.
    pub(super) fn publish_parked(&mut self, queue: &str) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        if q.parked == 0 || q.waits_for_leader() {
            return;
        }
        let parked = q.take_parked();
        tracing::info!(vhost = %self.name, queue = %q.name, dead_letters = parked.len(),
            "publishing the dead letters the queue's group holds (at-least-once)");
        for (seq, mark) in parked {
            let Some(rec) = q.store.read(seq) else {
                continue;
            };
            if let Some(r) = replica_of(q) {
                r.dead.insert(seq, mark);
            }
            let (reason, died_at) = mark;
            let dead = q.hold_dead_since(seq, rec.payload, reason, Some(died_at));
            self.pending_dead.push_back(dead);
        }
        self.drain_dead_letters();
    }

    /// Dead letters set aside on the leader since it last published: published within
    /// `PARKED_RETRY_MS` (a queue timer).
    pub(super) fn schedule_parked(&mut self, queue: &str, now: u64) {
        self.schedule(queue, now + PARKED_RETRY_MS);
    }
}
