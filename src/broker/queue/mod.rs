//! A queue: its log, the read cursor, requeued messages and its consumers; `kind.rs` is
//! the seam where queue types (classic today; stream and quorum later) validate their
//! arguments.
//!
//! Invariants:
//! - every live record of the log is exactly one of: ready (at or after the cursor, or in
//!   `requeued`), or delivered and unacked (counted in `unacked`);
//! - `requeued` holds live sequence numbers below the cursor, delivered again before
//!   anything at the cursor, lowest first (their original order).

use std::collections::BTreeSet;
use std::sync::Arc;

use amq_protocol_types::FieldTable;

use super::outbox::Outbox;
use warren_storage::{Cursor, Log, StoredRecord};

pub mod args;
mod kind;
pub use kind::QueueType;

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
    pub unacked: u32,
    pub outbox: Arc<Outbox>,
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
    pub log: Log,
    cursor: Cursor,
    requeued: BTreeSet<u64>,
    pub consumers: Vec<Consumer>,
    pub rr: usize,
    pub unacked: u64,
    /// Set by the first consumer: an auto-delete queue goes when its last consumer does.
    pub had_consumer: bool,
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
        log: Log,
    ) -> Self {
        Queue {
            name,
            id,
            durable,
            exclusive_owner,
            auto_delete,
            args_raw,
            args,
            log,
            cursor: Cursor::at(0),
            requeued: BTreeSet::new(),
            consumers: Vec::new(),
            rr: 0,
            unacked: 0,
            had_consumer: false,
        }
    }

    /// Messages waiting to be delivered.
    pub fn ready(&self) -> u64 {
        let live = self.log.live();
        assert!(
            self.unacked <= live,
            "queue '{}': {} unacked of {live} live",
            self.name,
            self.unacked
        );
        live - self.unacked
    }

    /// Takes the next message to deliver: requeued ones first, then the log in order.
    /// Returns the record and whether it may have been delivered before.
    pub fn take_next(&mut self) -> Option<(StoredRecord, bool)> {
        while let Some(seq) = self.requeued.pop_first() {
            if let Some(rec) = self.log.read(seq) {
                return Some((rec, true));
            }
        }
        let rec = self.log.read_next(&mut self.cursor)?;
        let redelivered = self.log.redelivered_through().is_some_and(|h| rec.seq <= h);
        Some((rec, redelivered))
    }

    /// Settles a delivered, unacked message for good (ack, or reject without requeue).
    pub fn settle(&mut self, seq: u64) -> std::io::Result<()> {
        assert!(self.unacked > 0, "settle with nothing unacked");
        self.unacked -= 1;
        self.log.ack(seq)?;
        Ok(())
    }

    /// Returns a delivered, unacked message to the queue.
    pub fn requeue(&mut self, seq: u64) {
        assert!(self.unacked > 0, "requeue with nothing unacked");
        self.unacked -= 1;
        if self.log.is_live(seq) {
            self.requeued.insert(seq);
        }
    }

    /// Acks every ready message (delivered ones are left alone); returns how many.
    pub fn purge_ready(&mut self) -> std::io::Result<u64> {
        let mut purged = 0;
        for seq in std::mem::take(&mut self.requeued) {
            if self.log.ack(seq)? {
                purged += 1;
            }
        }
        while let Some(rec) = self.log.read_next(&mut self.cursor) {
            if self.log.ack(rec.seq)? {
                purged += 1;
            }
        }
        self.log.flush_acks()?;
        Ok(purged)
    }
}
