//! Dead letters a replicated quorum queue's group holds (`x-dead-letter-strategy:
//! at-least-once`, a round's `discarded` in the group, as RabbitMQ's `discard` moves a message to its
//! dead-letter state): on every node the message is set aside from the copy ("parked":
//! neither ready, nor unacked, nor dead-lettering here), never delivered again, until the
//! node that leads the queue publishes its dead letter (`VHost::publish_parked`) or the
//! group settles it.
//!
//! A message the group marks while it is out here (a delivery, a loan to another node,
//! this node's own dead-lettering) keeps its mark in `Replica::dead`, so that, should it
//! come back (`Queue::restore`), it is parked rather than made ready.

use super::{body_len, Queue};
use crate::broker::dead_letter::DeathReason;
use crate::broker::replicated::replica_of;

impl Queue {
    /// Under at-least-once: records this node's dead letter `seq` for the group (written
    /// with the next round), and marks it here at once, so that should its copies fail before
    /// the group has it, it is parked, not made ready.
    pub(super) fn record_dead(&mut self, seq: u64, reason: DeathReason) {
        let Some(r) = replica_of(self) else {
            return;
        };
        let Some(id) = r.id_of(seq) else {
            return;
        };
        let now = crate::broker::vhost::now_millis();
        r.discarded.push((id, reason, now));
        r.dead.insert(seq, (reason, now));
        r.wake.notify_one();
    }

    /// The group's dead-letter mark of taken message `seq`, taken off it (it is parked
    /// now, or published).
    pub(in crate::broker) fn marked_dead(&mut self, seq: u64) -> Option<(DeathReason, u64)> {
        let r = replica_of(self)?;
        if r.dead.is_empty() {
            return None;
        }
        r.dead.remove(&seq)
    }

    /// Sets aside taken message `seq`, which the group holds dead-lettered for `reason`
    /// since `died_at`.
    pub fn park(&mut self, seq: u64, (reason, died_at): (DeathReason, u64)) {
        let bytes = self.store.read(seq).map_or(0, |rec| body_len(&rec.payload));
        let Some(r) = replica_of(self) else {
            debug_assert!(false, "only a replicated quorum queue parks");
            return;
        };
        if r.parked.insert(seq, (reason, died_at, bytes)).is_none() {
            self.parked += 1;
            self.parked_bytes += bytes;
        }
    }

    /// Takes parked message `seq` off the parked ones (the group settled it); whether it
    /// was parked.
    pub fn unpark(&mut self, seq: u64) -> bool {
        let Some(r) = replica_of(self) else {
            return false;
        };
        let Some((_, _, bytes)) = r.parked.remove(&seq) else {
            return false;
        };
        self.parked -= 1;
        self.parked_bytes -= bytes;
        true
    }

    /// Takes every parked message off (to publish, or to drop with the copy): (seq,
    /// (reason, when it died)).
    pub fn take_parked(&mut self) -> Vec<(u64, (DeathReason, u64))> {
        let Some(r) = replica_of(self) else {
            return Vec::new();
        };
        let parked = r
            .parked
            .drain()
            .map(|(seq, (reason, died_at, _))| (seq, (reason, died_at)))
            .collect();
        self.parked = 0;
        self.parked_bytes = 0;
        parked
    }

    /// Takes ready message `seq` out of the ready ones, wherever it is among them (the
    /// group marked it dead-lettered); false if it is not ready.
    pub fn take_ready(&mut self, seq: u64) -> bool {
        let Some(rec) = self.store.read(seq) else {
            return false;
        };
        if !self.store.take_ready(seq) {
            return false;
        }
        if self.features.max_length_bytes.is_some() {
            self.ready_bytes = self.ready_bytes.saturating_sub(body_len(&rec.payload));
        }
        self.left_ready += 1;
        true
    }
}
