//! Timed work on queues, as RabbitMQ does it: messages expire at the head of their queue
//! (`x-message-ttl`, or their own `expiration`, the shorter winning) and are never
//! delivered once expired; an unused queue with `x-expires` is deleted after that idle
//! time; dead-lettered originals are acked once their copies' sync completes.
//!
//! Each queue with such work sits in `VHost::timed` with the time it is next due; the
//! broker-wide `Deadlines` holds the earliest, so the server's timer task costs one atomic
//! load when nothing is due. Nothing here walks a backlog: expiry looks at the head only.

use std::sync::Arc;

use super::dead_letter::DeathReason;
use super::replicated::replica_of;
use super::vhost::VHost;

/// How often a queue holding messages with their own `expiration` is looked at even when
/// its head has none (such messages expire once they reach the head; this bounds how late
/// that is noticed when nothing else touches the queue).
const PER_MESSAGE_RECHECK_MS: u64 = 1_000;

/// How often dead letters waiting for their copies' sync are looked at.
const SYNC_RECHECK_MS: u64 = 2;

/// The shortest idle time after which the leader of a replicated queue that other nodes
/// have asked about deletes it under `x-expires`: longer than a node with consumers
/// waits between two asks (its lease, `replication/checkout.rs`, plus a fed-through wait).
const ASKS_SLACK_MS: u64 = crate::broker::replica_sac::CANDIDATE_FRESH_MS;

impl VHost {
    /// Arms `queue`'s timer for its expiring messages, if it has any and, replicated, this
    /// node leads it: for what the group committed, gave back or handed to a new leader
    /// (a classic queue's publish arms it in `publish.rs`).
    pub(super) fn arm_expiry(&mut self, queue: &str, now: u64) {
        if self
            .queues
            .get(queue)
            .is_some_and(|q| q.can_expire() && !q.waits_for_leader())
        {
            self.schedule(queue, now);
        }
    }

    /// This node took the lead of replicated queue `queue`: its timer is armed for what
    /// the leader times (expiring messages, `x-expires`), and the queue counts as used
    /// from now, as the old leader's view of its use is not known here.
    pub(super) fn arm_timers_as_leader(&mut self, queue: &str, now: u64) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        q.last_used = q.last_used.max(now);
        if q.can_expire() || q.features.expires.is_some() {
            self.schedule(queue, now);
        }
    }

    /// Notes that `queue` has timed work due at `at` (milliseconds since the epoch).
    pub(super) fn schedule(&mut self, queue: &str, at: u64) {
        let Some((name, _)) = self.queues.get_key_value(queue) else {
            return;
        };
        let due = self.timed.entry(name.clone()).or_insert(u64::MAX);
        *due = (*due).min(at);
        self.deadlines.wake_at(at);
    }

    /// Expires the messages at the head of `queue` whose deadline is before `now`: they
    /// are dead-lettered (reason `expired`) or, without a dead-letter exchange, dropped.
    /// A replicated queue's leader expires for the group (its settles reach the other
    /// copies); a copy that does not lead never does, or each copy would dead-letter the
    /// same message.
    pub(super) fn expire_head(&mut self, queue: &str, now: u64) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        // A new leader waiting for the members' claims: what a live member's consumer
        // holds may be ready here, past its TTL, and is not to be expired
        // (`replica_claims.rs`); expiry resumes when the wait ends.
        if !q.can_expire() || q.waits_for_leader() || super::replica_claims::holds_back(q) {
            return;
        }
        while let Some((rec, after)) = q.peek() {
            if q.deadline(&rec).is_none_or(|d| d >= now) {
                break;
            }
            q.take(&rec, after);
            self.pending_dead
                .push_back(q.hold_dead(rec.seq, rec.payload, DeathReason::Expired));
        }
        self.drain_dead_letters();
    }

    /// Runs every queue's timed work due at `now`, then tells the broker when this vhost
    /// is next due.
    pub(super) fn run_timers(&mut self, now: u64) {
        let due: Vec<Arc<str>> = self
            .timed
            .iter()
            .filter(|(_, &at)| at <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            self.timed.remove(&name);
            self.run_queue_timers(&name, now);
        }
        if let Some(next) = self.fire_delayed(now) {
            self.deadlines.wake_at(next);
        }
        if let Some(&next) = self.timed.values().min() {
            self.deadlines.wake_at(next);
        }
    }

    fn run_queue_timers(&mut self, name: &Arc<str>, now: u64) {
        self.publish_parked(name);
        let waiting_for_sync = self.settle_dead_lettering(name, now);
        let unroutable_retry = self.retry_unroutable(name, now);
        self.expire_head(name, now);
        // A new leader's wait for the members' claims (`replica_claims.rs`) may be over.
        self.end_claims(name, now);
        // Messages that expired at the head may leave room for consumers' next ones.
        self.dispatch_at(name, now);
        let Some(q) = self.queues.get_mut(name) else {
            return;
        };
        let mut next = u64::MAX;
        // A replicated queue is used on every node that has consumers of it: its leader,
        // whom they ask for messages (`replica_grant`), judges, and deletes it from the
        // cluster; a copy that does not lead never expires it on its own.
        let judges_use = q.consumers.is_empty() && !q.waits_for_leader();
        if let Some(expires) = q.features.expires.filter(|_| judges_use) {
            // Other nodes' consumers ask about every second, or a little more: they keep
            // a shorter x-expires from firing between two asks.
            let asked = replica_of(q).is_some_and(|r| !r.remote.is_empty());
            let period = if asked {
                expires.max(ASKS_SLACK_MS)
            } else {
                expires
            };
            let at = q.last_used.saturating_add(period);
            if at <= now {
                tracing::info!(vhost = %self.name, queue = %name, "queue expired (x-expires)");
                if q.is_quorum() {
                    self.replicate_deleted(name);
                }
                self.remove_queue(name);
                return;
            }
            next = next.min(at);
        }
        if q.store.live() == 0 {
            q.has_expiring = false;
        }
        if waiting_for_sync {
            next = next.min(now + SYNC_RECHECK_MS);
        }
        // A new leader's single-active-consumer window (`replica_sac::SETTLE_MS`) ends with
        // a dispatch: a timer that fired inside it (an expiry armed as it took the lead)
        // must not lose that.
        // So does its wait for the members' claims (`replica_claims.rs`).
        if let Some(r) = replica_of(q) {
            let ends = [r.sac_settling_until, r.taken_over.claims_until];
            if let Some(until) = ends.into_iter().filter(|until| *until > now).min() {
                next = next.min(until);
            }
        }
        if let Some(at) = unroutable_retry {
            next = next.min(at);
        }
        if q.can_expire() && !q.waits_for_leader() {
            if let Some(deadline) = q.peek().and_then(|(rec, _)| q.deadline(&rec)) {
                // Expired once the clock passes the deadline (see `dispatch_at`).
                next = next.min(deadline + 1);
            }
            if q.has_expiring {
                next = next.min(now + PER_MESSAGE_RECHECK_MS);
            }
        }
        if next != u64::MAX {
            self.schedule(name, next);
        }
    }
}
