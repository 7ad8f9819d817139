//! The `x-` arguments a classic queue acts on, read once when the queue is created or
//! recovered (they were validated by `args.rs` at declare), so the hot paths test a field
//! rather than look up a table.

use std::sync::Arc;

use amq_protocol_types::{AMQPValue, FieldTable};

use crate::protocol::table::int_value;

/// What happens to a publish that would take a full queue over its length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// The oldest ready messages are dropped (dead-lettered as `maxlen`).
    #[default]
    DropHead,
    /// The new message is refused: nacked under confirms, otherwise dropped.
    RejectPublish,
    /// As `RejectPublish`, and the refused message is dead-lettered.
    RejectPublishDlx,
}

/// A queue's behaviour-changing arguments.
#[derive(Debug, Clone, Default)]
pub struct QueueFeatures {
    /// `x-message-ttl`, milliseconds.
    pub message_ttl: Option<u64>,
    /// `x-expires`: the queue is deleted after this many idle milliseconds.
    pub expires: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    /// `x-dead-letter-exchange` (may be "", the default exchange).
    pub dead_letter_exchange: Option<Arc<str>>,
    pub dead_letter_routing_key: Option<Arc<str>>,
    /// `x-dead-letter-strategy: at-least-once` with `x-overflow: reject-publish` and a
    /// dead-letter exchange (RabbitMQ falls back to at-most-once otherwise): a dead letter
    /// of a quorum queue routed nowhere is kept until it can be routed.
    pub dead_letter_at_least_once: bool,
    /// `x-max-priority`, 1..=255 (0 means no priorities, as RabbitMQ treats it).
    pub max_priority: Option<u8>,
    pub single_active_consumer: bool,
    /// `x-message-deduplication` (the deduplication plugin's queue argument).
    pub deduplication: bool,
}

fn string(v: &AMQPValue) -> Option<Arc<str>> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into()),
        AMQPValue::ShortString(s) => Some(s.as_str().into()),
        _ => None,
    }
}

impl QueueFeatures {
    /// Reads the arguments (validated already; an unreadable value counts as absent).
    pub fn from_args(args: &FieldTable) -> QueueFeatures {
        let t = args.inner();
        let non_negative = |k: &str| {
            t.get(k)
                .and_then(int_value)
                .and_then(|n| u64::try_from(n).ok())
        };
        let overflow = match t.get("x-overflow").and_then(string).as_deref() {
            Some("reject-publish") => Overflow::RejectPublish,
            Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
            _ => Overflow::DropHead,
        };
        let dead_letter_exchange = t.get("x-dead-letter-exchange").and_then(string);
        let at_least_once =
            t.get("x-dead-letter-strategy").and_then(string).as_deref() == Some("at-least-once");
        QueueFeatures {
            dead_letter_at_least_once: at_least_once
                && overflow == Overflow::RejectPublish
                && dead_letter_exchange.is_some(),
            message_ttl: non_negative("x-message-ttl"),
            expires: non_negative("x-expires").filter(|&n| n > 0),
            max_length: non_negative("x-max-length"),
            max_length_bytes: non_negative("x-max-length-bytes"),
            overflow,
            dead_letter_exchange,
            dead_letter_routing_key: t.get("x-dead-letter-routing-key").and_then(string),
            max_priority: non_negative("x-max-priority")
                .filter(|&n| n > 0)
                .map(|n| n.min(255) as u8),
            single_active_consumer: matches!(
                t.get("x-single-active-consumer"),
                Some(AMQPValue::Boolean(true))
            ),
            deduplication: matches!(
                t.get("x-message-deduplication"),
                Some(AMQPValue::Boolean(true))
            ),
        }
    }

    /// True if the queue has a length or size limit.
    pub fn has_length_limit(&self) -> bool {
        self.max_length.is_some() || self.max_length_bytes.is_some()
    }
}
