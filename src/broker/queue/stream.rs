//! A stream queue (`x-queue-type: stream`): the queue's log read without consuming it.
//! Nothing is ever acked; each consumer has its own cursor (a sequence number, which is
//! the message's offset) and a credit of its prefetch; the log is shortened only from
//! the front, a segment at a time, by retention (`x-max-length-bytes`, `x-max-age`).
//!
//! Invariants:
//! - a stream's queue-level `unacked` stays 0 and nothing is requeued: a consumer's
//!   unacked count is only its credit;
//! - `last_chunk`, when set, is an offset in `[first_seq, next_seq)` of the log.

use std::sync::Weak;

use amq_protocol_types::{AMQPValue, FieldTable};
use bytes::Bytes;
use tokio::sync::Notify;
use warren_storage::{Cursor, Log, Retention};

use super::stream_args::{parse_max_age, MaxAge, OffsetSpec};
use super::stream_tracking::Tracking;
use super::Queue;
use crate::broker::message;
use crate::protocol::table;

/// The header a delivered stream message carries: its offset.
pub const OFFSET_HEADER: &str = "x-stream-offset";

/// A stream's own state beside its log.
#[derive(Debug, Default)]
pub struct StreamState {
    /// Stream-protocol sessions reading this stream, woken after every append.
    pub listeners: Vec<Weak<Notify>>,
    /// Stored consumer offsets and publisher sequences (`stream_tracking.rs`).
    pub tracking: Tracking,
    pub retention: Retention,
    /// The first offset of the newest chunk (one publish batch): where `last` starts.
    /// After a restart, the newest message (chunks are not recorded on disk).
    pub last_chunk: Option<u64>,
    /// The log started a segment since retention last ran: it may drop one now.
    pub retention_due: bool,
}

/// A stream's settings as its arguments (policy values already merged) give them.
pub struct StreamSettings {
    pub max_bytes: Option<AMQPValue>,
    pub max_age: Option<AMQPValue>,
}

impl StreamSettings {
    pub fn retention(&self) -> Retention {
        let max_bytes = self
            .max_bytes
            .as_ref()
            .and_then(table::int_value)
            .and_then(|n| u64::try_from(n).ok());
        let max_age_ms = match &self.max_age {
            Some(AMQPValue::LongString(s)) => match parse_max_age(s.as_bytes()) {
                MaxAge::Millis(ms) => Some(ms),
                _ => None,
            },
            Some(v) => table::int_value(v).and_then(|n| u64::try_from(n).ok()),
            None => None,
        };
        Retention {
            max_bytes,
            max_age_ms,
        }
    }
}

/// True if `args` declare a stream.
pub fn is_stream_args(args: &FieldTable) -> bool {
    super::QueueType::from_args(args) == Ok(super::QueueType::Stream)
}

impl Queue {
    #[inline]
    pub fn is_stream(&self) -> bool {
        self.stream.is_some()
    }

    /// The arguments compared when the queue is declared again (its type's own).
    pub fn compared_args(&self) -> &'static [&'static str] {
        if self.is_stream() {
            &super::stream_args::STREAM_ARGS
        } else if self.is_quorum() {
            &super::quorum_args::QUORUM_ARGS
        } else {
            &super::args::COMPARED
        }
    }

    /// The stream's log (a stream has one level).
    pub fn stream_log(&self) -> &Log {
        self.store.level_log(0).expect("a stream has level 0")
    }

    /// Where a consumer asking for `spec` starts reading.
    pub fn stream_start(&self, spec: OffsetSpec) -> Cursor {
        let log = self.stream_log();
        let (first, next) = (log.first_seq(), log.next_seq());
        let seq = match spec {
            OffsetSpec::First => first,
            OffsetSpec::Next => next,
            OffsetSpec::Last => self
                .stream
                .as_ref()
                .and_then(|s| s.last_chunk)
                .filter(|&c| c >= first && c < next)
                .unwrap_or(next.saturating_sub(1).max(first)),
            // Past the end, the consumer waits for that very offset (RabbitMQ skips what
            // is written below it).
            OffsetSpec::Offset(n) => u64::try_from(n).unwrap_or(0).max(first),
            OffsetSpec::Timestamp(ms) => log.seq_at_time(ms).max(first),
        };
        Cursor::at(seq)
    }

    /// For a stream, where the log stands before an append: (next offset, segments).
    pub fn stream_position(&self) -> Option<(u64, usize)> {
        self.stream.as_ref()?;
        let log = self.stream_log();
        Some((log.next_seq(), log.segment_count()))
    }

    /// Notes a chunk appended to the stream: `before` is `stream_position` before it.
    pub fn stream_appended(&mut self, before: (u64, usize)) {
        let segments = self.stream_log().segment_count();
        if let Some(s) = self.stream.as_mut() {
            s.last_chunk = Some(before.0);
            s.retention_due |= segments != before.1;
            // Wake the stream-protocol readers (a permit is kept for one not waiting yet).
            s.listeners.retain(|l| match l.upgrade() {
                Some(n) => {
                    n.notify_one();
                    true
                }
                None => false,
            });
        }
    }
}

/// A stored message with `x-stream-offset` set to `offset` in its headers (the form a
/// stream delivers over AMQP 0-9-1). `None` if the stored message is malformed.
pub fn with_offset(payload: &[u8], offset: u64) -> Option<Bytes> {
    message::with_header(
        payload,
        OFFSET_HEADER,
        AMQPValue::LongLongInt(offset as i64),
    )
}
