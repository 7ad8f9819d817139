//! A queue: its store (one log, or one per priority level: store.rs), its consumers and
//! the features its arguments turn on (features.rs); `kind.rs` is the seam where queue
//! types (classic today; stream and quorum later) validate their arguments.
//!
//! Invariants:
//! - every live message of the store is exactly one of: ready (not yet read, or requeued),
//!   delivered and unacked (counted in `unacked`), dead-lettered and waiting for its
//!   new copies to be durable (in `dead_lettering`), or, in a replicated quorum queue,
//!   held dead-lettered by its group and set aside here (counted in `parked`);
//! - with a byte limit, `ready_bytes` is the body size of the ready messages.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use amq_protocol_types::FieldTable;
use bytes::Bytes;

use super::dead_letter::{DeadLetter, DeathReason};
use super::dedup::{dedup_key, QueueDedup};
use super::flow::QueueFlow;
use super::message;
use super::outbox::Outbox;
use crate::protocol::properties;
use warren_storage::{BatchRecord, StoredRecord, Ticket};

pub mod args;
mod features;
mod held_dead;
mod kind;
mod parked;
pub mod quorum;
pub mod quorum_args;
pub mod replica;
pub mod storage_info;
mod store;
pub mod stream;
pub mod stream_args;
pub mod stream_tracking;
use super::admin::QueueCounters;
pub use features::{Overflow, QueueFeatures};
pub use kind::QueueType;
use quorum::QuorumState;
pub use store::{Position, Store};
use stream::StreamState;

/// A consumer attached to a queue.
pub struct Consumer {
    /// Unique within the vhost: a tag can be reused after a cancel, a serial cannot.
    pub serial: u64,
    pub conn: u64,
    pub channel: u16,
    pub tag: Arc<str>,
    pub no_ack: bool,
    pub exclusive: bool,
    /// Per-consumer prefetch (0 = unlimited).
    pub prefetch: u16,
    /// `x-priority` of basic.consume: higher-priority consumers are served first.
    pub priority: i32,
    pub unacked: u32,
    pub outbox: Arc<Outbox>,
    /// On a stream: the offset this consumer reads next (its own cursor in the log).
    pub reader: Option<warren_storage::Cursor>,
    /// When basic.consume registered it: a single-active-consumer quorum queue serves
    /// the earliest across the cluster (`replica_sac.rs`).
    pub subscribed: std::time::Instant,
}

pub struct Queue {
    pub name: Arc<str>,
    pub id: u64,
    pub durable: bool,
    /// The connection that owns an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub args_raw: Vec<u8>,
    pub args: FieldTable,
    pub features: QueueFeatures,
    /// The messages: one log, or one per priority level (store.rs). Messages are named
    /// by their id in the store.
    pub store: Store,
    pub consumers: Vec<Consumer>,
    pub rr: usize,
    pub unacked: u64,
    /// Set by the first consumer: an auto-delete queue goes when its last consumer does.
    pub had_consumer: bool,
    /// Dead-lettered messages kept until their new copies are durable (then acked): a
    /// crash in between can duplicate a dead letter, never lose it.
    pub dead_lettering: VecDeque<Dying>,
    /// Body bytes of those (`forget_dying` keeps it true).
    dead_lettering_bytes: u64,
    /// Messages of a replicated quorum queue that its group holds dead-lettered, set
    /// aside here (`parked.rs`, `Replica::parked`): neither ready, nor unacked, nor
    /// dead-lettering on this node. 0 on every other queue: one comparison on the
    /// delivery path.
    pub parked: u64,
    /// Body bytes of those.
    parked_bytes: u64,
    /// When the dead letters routed nowhere are next published again (0: none held).
    pub unroutable_retry_at: u64,
    /// For a kept dead letter (by its seq) that some of its queues refused: the queues
    /// that already hold a copy, which its next attempts leave out (RabbitMQ's dead-letter
    /// worker, too, sends again only to the queues that have not taken it).
    pub dead_letter_copies: HashMap<u64, Vec<Arc<str>>>,
    /// Body bytes of the ready messages (kept only under `x-max-length-bytes`).
    ready_bytes: u64,
    /// When the queue was last used (declared, consumed from, read by basic.get), for
    /// `x-expires`; milliseconds since the epoch.
    pub last_used: u64,
    /// A message with its own `expiration` was stored: the head must be watched even
    /// without a queue TTL.
    pub has_expiring: bool,
    /// Some consumer gave an `x-priority`: dispatch compares priorities.
    pub consumer_priorities: bool,
    /// Under `x-message-deduplication`: the deduplication values of the messages in it.
    pub dedup: Option<QueueDedup>,
    /// Message counters for the management API.
    pub counters: QueueCounters,
    /// Messages that left the ready set by any way (delivered, fetched, expired, dropped
    /// by a length limit, purged, marked dead by the group), for flow control: what
    /// publishers outrun is all of it, not only the deliveries.
    left_ready: u64,
    /// Set for a stream queue (`x-queue-type: stream`, stream.rs): read without
    /// consuming, retention instead of acks. Classic features stay off.
    pub stream: Option<Box<StreamState>>,
    /// Publisher flow control (flow.rs): whether the queue holds its publishers back.
    pub flow: QueueFlow,
    /// Set for a quorum queue (`x-queue-type: quorum`, quorum.rs): delivery counts and
    /// limit.
    pub quorum: Option<Box<QuorumState>>,
}

/// The ticket of a dead letter whose copies are not published yet.
const NOT_YET_PUBLISHED: Ticket = Ticket(u64::MAX);

/// A dead-lettered message held in its queue until its copies are durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dying {
    /// The sync covering the copies in this node's queues (`Ticket::DONE`: none).
    pub sync: Ticket,
    /// The commit of the copies in replicated queues (`ReplicaTickets`; 0: none).
    pub committed: u64,
    /// The original, in this queue's store.
    pub seq: u64,
    /// Its body's size.
    pub bytes: u64,
    /// Routed to no queue under `x-dead-letter-strategy: at-least-once`: kept, and
    /// published again for this reason, with the time it died (ms), once its dead-letter
    /// exchange routes it (`VHost::retry_unroutable`).
    pub unroutable: Option<(DeathReason, u64)>,
    /// Refused by some of the queues it routes to, under at-least-once: once the copies
    /// the others took are durable, kept as `unroutable` with this reason and time, and
    /// published again to the queues without a copy (`Queue::dead_letter_copies`).
    pub refused: Option<(DeathReason, u64)>,
}

/// Body size of a stored message (0 if malformed: a disk is untrusted input).
pub fn body_len(payload: &[u8]) -> u64 {
    message::view(payload).map_or(0, |m| m.body.len() as u64)
}

impl Queue {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: Arc<str>,
        id: u64,
        durable: bool,
        exclusive_owner: Option<u64>,
        auto_delete: bool,
        args_raw: Vec<u8>,
        args: FieldTable,
        store: Store,
    ) -> Self {
        let kind = QueueType::from_args(&args).unwrap_or(QueueType::Classic);
        let is_stream = kind == QueueType::Stream;
        let quorum = (kind == QueueType::Quorum).then(|| Box::new(QuorumState::from_args(&args)));
        let features = match is_stream {
            // A stream's x-max-length-bytes is retention, not a classic limit.
            true => QueueFeatures::default(),
            false => QueueFeatures::from_args(&args),
        };
        let stream = is_stream.then(|| {
            let log = store.level_log(0);
            let last = log.and_then(|l| l.next_seq().checked_sub(1));
            let tracking = log.map(|l| stream_tracking::Tracking::load(l.dir()));
            let settings = stream::StreamSettings {
                max_bytes: args.inner().get("x-max-length-bytes").cloned(),
                max_age: args.inner().get("x-max-age").cloned(),
            };
            Box::new(StreamState {
                retention: settings.retention(),
                last_chunk: last,
                retention_due: false,
                listeners: Vec::new(),
                tracking: tracking.unwrap_or_default(),
            })
        });
        let mut q = Queue {
            name,
            id,
            durable,
            exclusive_owner,
            auto_delete,
            args_raw,
            args,
            features,
            store,
            consumers: Vec::new(),
            rr: 0,
            unacked: 0,
            had_consumer: false,
            dead_lettering: VecDeque::new(),
            dead_lettering_bytes: 0,
            parked: 0,
            parked_bytes: 0,
            unroutable_retry_at: 0,
            dead_letter_copies: HashMap::new(),
            ready_bytes: 0,
            last_used: super::vhost::now_millis(),
            has_expiring: false,
            consumer_priorities: false,
            dedup: None,
            counters: QueueCounters::default(),
            left_ready: 0,
            stream,
            flow: QueueFlow::default(),
            quorum,
        };
        q.rebuild_dedup();
        q.recover_returns();
        // Dead letters kept before a restart are kept again (held_dead.rs).
        let marks = q.store.take_recovered_marks();
        if !marks.is_empty() {
            let held = q.hold_marked_dead(marks, super::vhost::now_millis());
            tracing::info!(queue = %q.name, held, "kept dead letters held again (at-least-once)");
        }
        // A recovered backlog may hold messages with their own expiration: watch its head
        // (cheap) rather than scan it. (A stream's messages never expire.)
        q.has_expiring = q.store.live() > 0 && !is_stream;
        if q.features.max_length_bytes.is_some() {
            // One pass over a recovered backlog, only for queues with a byte limit.
            let mut bytes = 0;
            q.store.scan_ready(|rec| bytes += body_len(&rec.payload));
            q.ready_bytes = bytes;
        }
        q
    }

    /// Replaces the queue's features (a policy changed); returns the old ones. A byte
    /// limit that was not there before needs the ready bytes counted: one pass over the
    /// backlog, as at recovery.
    pub fn set_features(&mut self, features: QueueFeatures) -> QueueFeatures {
        let counted = self.features.max_length_bytes.is_some();
        let old = std::mem::replace(&mut self.features, features);
        if self.features.max_length_bytes.is_some() && !counted {
            let mut bytes = 0;
            self.store.scan_ready(|rec| bytes += body_len(&rec.payload));
            self.ready_bytes = bytes;
        }
        old
    }

    /// The consumers that may be delivered to: under single active consumer only the
    /// first (the active one; the others wait their turn), otherwise all.
    pub fn serving(&self) -> &[Consumer] {
        match self.features.single_active_consumer {
            true => &self.consumers[..self.consumers.len().min(1)],
            false => &self.consumers,
        }
    }

    /// Messages published to the queue, delivered from it, and gone from its ready set by
    /// any way so far, for flow control.
    #[inline]
    pub fn flow_counts(&self) -> super::flow::Counts {
        super::flow::Counts {
            published: self.counters.publish,
            delivered: self.counters.deliver + self.counters.deliver_no_ack,
            left: self.left_ready,
        }
    }

    /// Messages waiting to be delivered.
    #[inline]
    pub fn ready(&self) -> u64 {
        let live = self.store.live();
        let held = self.unacked + self.dead_lettering.len() as u64 + self.parked;
        assert!(
            held <= live,
            "queue '{}': {} unacked, {} dead-lettering and {} parked of {live} live",
            self.name,
            self.unacked,
            self.dead_lettering.len(),
            self.parked
        );
        live - held
    }

    /// True if the queue is over its length or byte limit.
    pub fn over_limit(&self) -> bool {
        self.features.max_length.is_some_and(|m| self.ready() > m)
            || self
                .features
                .max_length_bytes
                .is_some_and(|m| self.ready_bytes > m)
    }

    /// The dead letters a quorum queue under at-least-once dead-lettering holds, and
    /// their bytes: they count towards its length limit, as in RabbitMQ (which is why it
    /// wants `reject-publish` there: what cannot be dead-lettered stops new messages).
    pub fn held_dead_letters(&self) -> (u64, u64) {
        match self.features.dead_letter_at_least_once && self.is_quorum() {
            true => (
                self.dead_lettering.len() as u64 + self.parked,
                self.dead_lettering_bytes + self.parked_bytes,
            ),
            false => (0, 0),
        }
    }

    /// Takes dead letter `i` out of `dead_lettering`.
    pub fn forget_dying(&mut self, i: usize) -> Option<Dying> {
        let d = self.dead_lettering.remove(i)?;
        self.dead_lettering_bytes -= d.bytes;
        if !self.dead_letter_copies.is_empty() {
            self.dead_letter_copies.remove(&d.seq);
        }
        Some(d)
    }

    /// True if one more message of `body` bytes would take the queue over a limit (for
    /// `reject-publish`).
    pub fn is_full_for(&self, body: u64) -> bool {
        if self.is_quorum() {
            // RabbitMQ's quorum queues refuse only once already over the limit.
            let (held, held_bytes) = self.held_dead_letters();
            return self
                .features
                .max_length
                .is_some_and(|m| self.ready() + held > m)
                || self
                    .features
                    .max_length_bytes
                    .is_some_and(|m| self.ready_bytes + held_bytes > m);
        }
        self.features.max_length.is_some_and(|m| self.ready() >= m)
            || self
                .features
                .max_length_bytes
                .is_some_and(|m| self.ready_bytes + body > m)
    }

    /// Notes newly appended ready messages (sizes and expirations).
    pub fn appended(&mut self, body: u64, header: &[u8]) {
        if self.features.max_length_bytes.is_some() {
            self.ready_bytes += body;
        }
        // A stream keeps `expiration` as a property only: its messages never expire.
        self.has_expiring |= self.stream.is_none() && properties::has_expiration(header);
    }

    /// Appends messages of one priority level (0 for a plain queue); the caller notes
    /// each with `appended`.
    pub fn append(&mut self, level: usize, batch: &[BatchRecord<'_>]) -> std::io::Result<Ticket> {
        self.store.append_batch(level, batch)
    }

    /// Appends one message (a replicated quorum queue's copy, `replicated.rs`); returns
    /// its id.
    pub fn append_one(&mut self, record: BatchRecord<'_>) -> std::io::Result<u64> {
        self.store.append_one(record)
    }

    /// The priority level a message with this content header goes to.
    pub fn level_of(&self, header: &[u8]) -> usize {
        match self.features.max_priority {
            None => 0,
            Some(max) => properties::decode(header)
                .ok()
                .and_then(|h| h.priority)
                .map_or(0, |p| p.min(max) as usize),
        }
    }

    /// True if no feature needs looking at per delivery: one level, nothing expires, no
    /// byte limit, no deduplication (dispatch's fast path).
    #[inline]
    pub fn is_plain(&self) -> bool {
        !self.can_expire()
            && self.features.max_length_bytes.is_none()
            && self.features.max_priority.is_none()
            && self.dedup.is_none()
            && self.store.nothing_ahead()
    }

    /// Takes the next message of a plain queue (`is_plain`): requeued ones first, then
    /// the log in order; returns it and whether it may have been delivered before.
    #[inline]
    pub fn take_next_plain(&mut self) -> Option<(StoredRecord, bool)> {
        let (log, cursor, requeued) = self.store.plain()?;
        while let Some(seq) = requeued.pop_first() {
            if let Some(rec) = log.read(seq) {
                self.left_ready += 1;
                return Some((rec, true));
            }
        }
        let rec = log.read_next(cursor)?;
        let redelivered = log.redelivered_through().is_some_and(|h| rec.seq <= h);
        self.left_ready += 1;
        Some((rec, redelivered))
    }

    /// The next message to deliver without taking it (its `seq` is its id).
    pub fn peek(&mut self) -> Option<(StoredRecord, Position)> {
        self.store.peek()
    }

    /// Takes the message `peek` returned; returns whether it may have been delivered
    /// before.
    pub fn take(&mut self, rec: &StoredRecord, at: Position) -> bool {
        if self.features.max_length_bytes.is_some() {
            self.ready_bytes = self.ready_bytes.saturating_sub(body_len(&rec.payload));
        }
        self.left_ready += 1;
        self.store.take(rec.seq, at)
    }

    /// Takes message `seq` out of order (a replica delivering what its group's leader
    /// handed it); `None` if it is not live or is out already.
    pub fn take_granted(&mut self, seq: u64) -> Option<StoredRecord> {
        let rec = self.store.read(seq)?;
        if !self.store.take_ahead(seq) {
            return None;
        }
        if self.features.max_length_bytes.is_some() {
            self.ready_bytes = self.ready_bytes.saturating_sub(body_len(&rec.payload));
        }
        self.left_ready += 1;
        Some(rec)
    }

    /// When `rec` expires (milliseconds since the epoch): its enqueue time plus the
    /// shorter of the queue's TTL and its own `expiration`; `None` if it never does.
    pub fn deadline(&self, rec: &StoredRecord) -> Option<u64> {
        let own = if self.has_expiring {
            message::view(&rec.payload)
                .filter(|m| properties::has_expiration(m.header))
                .and_then(|m| {
                    properties::parse_expiration(properties::decode(m.header).ok()?.expiration?)
                        .ok()
                })
        } else {
            None
        };
        let ttl = match (self.features.message_ttl, own) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(rec.timestamp.saturating_add(ttl))
    }

    /// True if messages in this queue can expire.
    #[inline]
    pub fn can_expire(&self) -> bool {
        self.features.message_ttl.is_some() || self.has_expiring
    }

    /// Holds a taken message for dead-lettering: neither ready nor unacked until its
    /// copies are published and durable (then it is acked). Returns the dead letter to
    /// queue (`VHost::pending_dead`). Under at-least-once the group of a replicated queue
    /// records it too (`parked.rs`).
    pub(in crate::broker) fn hold_dead(
        &mut self,
        seq: u64,
        payload: Bytes,
        reason: DeathReason,
    ) -> DeadLetter {
        if self.features.dead_letter_at_least_once {
            self.record_dead(seq, reason);
        }
        self.hold_dead_since(seq, payload, reason, None)
    }

    /// As `hold_dead`, for a message that died at `died_at` (ms; `None`: now) and that
    /// its group already holds dead-lettered.
    pub(in crate::broker) fn hold_dead_since(
        &mut self,
        seq: u64,
        payload: Bytes,
        reason: DeathReason,
        died_at: Option<u64>,
    ) -> DeadLetter {
        let bytes = body_len(&payload);
        self.dead_lettering_bytes += bytes;
        self.dead_lettering.push_back(Dying {
            sync: NOT_YET_PUBLISHED,
            committed: 0,
            seq,
            bytes,
            unroutable: None,
            refused: None,
        });
        DeadLetter {
            queue: self.name.clone(),
            queue_id: self.id,
            seq: Some(seq),
            payload,
            reason,
            died_at,
        }
    }

    /// Removes a message from the store for good (acked, dropped, dead-lettered).
    #[inline]
    pub fn ack(&mut self, id: u64) -> std::io::Result<bool> {
        if let Some(d) = self.dedup.as_mut() {
            if let Some(rec) = self.store.read(id) {
                if let Some(m) = message::view(&rec.payload) {
                    d.remove(m.header);
                }
            }
        }
        self.forget_returns(id);
        self.store.ack(id)
    }

    /// Recomputes the deduplication values from the stored messages (at recovery, and
    /// after a purge).
    fn rebuild_dedup(&mut self) {
        if !self.features.deduplication {
            return;
        }
        let mut d = QueueDedup::default();
        self.store.scan(|rec| {
            if let Some(key) = message::view(&rec.payload).and_then(|m| dedup_key(m.header)) {
                d.add(key);
            }
        });
        self.dedup = Some(d);
    }

    /// Settles a delivered, unacked message for good (ack, or reject without requeue).
    #[inline]
    pub fn settle(&mut self, seq: u64) -> std::io::Result<()> {
        assert!(self.unacked > 0, "settle with nothing unacked");
        self.unacked -= 1;
        self.ack(seq)?;
        Ok(())
    }

    /// Returns a delivered, unacked message to the queue.
    pub fn requeue(&mut self, seq: u64) {
        assert!(self.unacked > 0, "requeue with nothing unacked");
        self.unacked -= 1;
        self.restore(seq);
    }

    /// Makes a taken message ready again (a requeue, or a dead letter whose copies could
    /// not be made durable); one the group marked dead-lettered meanwhile is set aside.
    pub fn restore(&mut self, seq: u64) {
        if let Some(mark) = self.marked_dead(seq) {
            return self.park(seq, mark);
        }
        if let Some(rec) = self.store.restore(seq) {
            if self.features.max_length_bytes.is_some() {
                self.ready_bytes += body_len(&rec.payload);
            }
        }
    }

    /// Acks every ready message (delivered ones are left alone); returns how many.
    pub fn purge_ready(&mut self) -> std::io::Result<u64> {
        if self.is_quorum() {
            let mut ready = Vec::new();
            self.store.scan_ready(|rec| ready.push(rec.seq));
            self.forget_ready_returns(&ready);
        }
        self.ready_bytes = 0;
        let purged = self.store.purge_ready()?;
        self.left_ready += purged;
        self.rebuild_dedup();
        let (ready, counts) = (self.ready(), self.flow_counts());
        self.flow
            .after_dispatch(ready, counts, super::vhost::now_millis());
        Ok(purged)
    }
}
