//! What a quorum queue does differently from a classic one on a single node, as RabbitMQ
//! 3.10's quorum queues do it (recorded in `tests/fidelity/golden/quorum.json`):
//! - every message is kept on disk whatever its delivery mode (`publish.rs`);
//! - a message returned to the queue (nack or reject with requeue, basic.recover, its
//!   channel closed) counts a delivery; the count travels in the `x-delivery-count`
//!   header: on every basic.get (0 for a first delivery), on a basic.deliver once it is
//!   above 0;
//! - with `x-delivery-limit` N, a message returned more than N times is dropped, or
//!   dead-lettered with reason `delivery_limit`, instead of requeued;
//! - `x-overflow: reject-publish` refuses a publish only once the queue is already over
//!   its limit (RabbitMQ's limit is checked before the enqueue, not for it);
//! - a channel-wide prefetch (basic.qos global) cannot consume from it (540).
//!
//! Replication (a Raft group per queue) is the cluster's; on one node the queue's log is
//! the classic store. Delivery counts live in memory: after a restart a message the log
//! marks as possibly delivered counts 1 (RabbitMQ keeps the exact count in its Raft log;
//! a message returned several times before a restart is under-counted here).

use std::collections::HashMap;

use amq_protocol_types::{AMQPValue, FieldTable};
use bytes::Bytes;

use super::replica::Replica;
use super::Queue;
use crate::broker::message;
use crate::protocol::table;

/// The header RabbitMQ's quorum queues count deliveries in.
pub const DELIVERY_COUNT: &str = "x-delivery-count";

/// A quorum queue's own state.
#[derive(Debug, Default)]
pub struct QuorumState {
    /// `x-delivery-limit`: returns a message may take before it is dropped or
    /// dead-lettered (a negative or non-integer limit is no limit).
    pub delivery_limit: Option<u64>,
    /// Returns per message id, for messages returned at least once and still live.
    returns: HashMap<u64, u32>,
    /// Set in a cluster: the queue's messages live in its Raft group (replica.rs).
    pub replica: Option<Box<Replica>>,
}

impl QuorumState {
    /// One more return of message `id`: whether it may go back to the queue.
    fn count(&mut self, id: u64) -> Returned {
        let n = self.returns.entry(id).or_insert(0);
        *n = n.saturating_add(1);
        match self.delivery_limit {
            Some(limit) if u64::from(*n) > limit => Returned::OverLimit,
            _ => Returned::Requeued,
        }
    }

    pub fn from_args(args: &FieldTable) -> QuorumState {
        QuorumState {
            delivery_limit: args
                .inner()
                .get("x-delivery-limit")
                .and_then(table::int_value)
                .and_then(|n| u64::try_from(n).ok()),
            returns: HashMap::new(),
            replica: None,
        }
    }
}

/// What returning a delivery to a quorum queue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// Ready again (also what a classic queue always does).
    Requeued,
    /// Over its delivery limit: to be dropped or dead-lettered.
    OverLimit,
}

impl Queue {
    #[inline]
    pub fn is_quorum(&self) -> bool {
        self.quorum.is_some()
    }

    /// A replicated quorum queue on a node that does not lead its group: its copy waits
    /// (only the leader delivers, replica.rs).
    #[inline]
    pub fn waits_for_leader(&self) -> bool {
        self.quorum
            .as_ref()
            .and_then(|qs| qs.replica.as_ref())
            .is_some_and(|r| !r.leading)
    }

    /// Whether message `seq`, returned by a channel, was settled by the group while its
    /// delivery was out (then it goes: `VHost::replica_settled`).
    pub fn settled_by_group(&self, seq: u64) -> bool {
        self.quorum
            .as_ref()
            .and_then(|qs| qs.replica.as_ref())
            .is_some_and(|r| r.settled_out.contains(&seq))
    }

    /// Whether message `seq` of a quorum queue goes out as returned at least once (with
    /// `redelivered` set): its `delivery_count` is above 0.
    pub fn was_returned(&self, seq: u64) -> bool {
        self.delivery_count(seq) > 0
    }

    /// The returns message `seq` of a quorum queue goes out here with (its
    /// `x-delivery-count`). On a member, at least the count the leader granted it with:
    /// the leader counts a return (of a gone node's delivery, say) and may hand the
    /// message out again before this copy has applied the group's record of that return.
    /// Going by the copy alone, such a message went out as a first delivery.
    #[inline]
    pub fn delivery_count(&self, seq: u64) -> u32 {
        let Some(qs) = self.quorum.as_ref() else {
            return 0;
        };
        let here = qs.returns.get(&seq).copied().unwrap_or(0);
        let granted = qs.replica.as_ref().map_or(0, |r| r.granted_count(seq));
        here.max(granted)
    }

    /// How often message `id` of a quorum queue has been returned.
    pub fn returns_of(&self, id: u64) -> u32 {
        self.quorum
            .as_ref()
            .and_then(|qs| qs.returns.get(&id).copied())
            .unwrap_or(0)
    }

    /// Counts a return of message `id`; says whether it may go back to the queue.
    pub fn count_return(&mut self, id: u64) -> Returned {
        let Some(qs) = self.quorum.as_mut() else {
            return Returned::Requeued;
        };
        if let Some(r) = qs.replica.as_mut() {
            r.returned_here(id);
        }
        qs.count(id)
    }

    /// Message `id` has been returned `returns` times (a replicated queue's copy rebuilt
    /// from its group, replica.rs).
    pub fn set_returns(&mut self, id: u64, returns: u32) {
        if let Some(qs) = self.quorum.as_mut() {
            qs.returns.insert(id, returns);
        }
    }

    /// Message `seq` goes out (to a consumer here, or granted by the leader to another
    /// node): a replicated queue's leader notes the returns it goes out with, which its
    /// return will name (`Replica::went_out`), and how far it has handed out, which the
    /// group hears (`Replica::handed_out`).
    #[inline]
    pub fn note_out(&mut self, seq: u64) {
        let Some(qs) = self.quorum.as_mut() else {
            return;
        };
        // On the leader of a group only (a member names the count its grant carried: its
        // copy's may include returns of its own the group will ignore).
        let Some(r) = qs.replica.as_mut().filter(|r| r.leading) else {
            return;
        };
        // Most messages go out never returned: no count to note.
        let returns = match qs.returns.is_empty() {
            true => None,
            false => qs.returns.get(&seq).copied(),
        };
        r.handed_out(seq, returns);
    }

    /// A return this node counted when it happened that the group ignored (of a delivery
    /// it had taken back already): counted no more.
    pub fn uncount_return(&mut self, seq: u64) {
        if let Some(qs) = self.quorum.as_mut() {
            if let Some(n) = qs.returns.get_mut(&seq) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    qs.returns.remove(&seq);
                }
            }
        }
    }

    /// A return the group committed (replica.rs): counted in the copy of a node that did
    /// not count it itself when it happened.
    pub fn count_replicated_return(&mut self, id: u64) {
        if let Some(qs) = self.quorum.as_mut() {
            qs.count(id);
        }
    }

    /// After a restart: a live message that may have been delivered before it was out
    /// with a consumer (or returned) when the broker stopped, so it has been returned at
    /// least once, as RabbitMQ counts a delivery still checked out at shutdown. Counts of
    /// several returns are not kept across a restart (they live in memory): such a
    /// message starts again at 1.
    pub(super) fn recover_returns(&mut self) {
        let Some(mark) = self
            .store
            .level_log(0)
            .and_then(|l| l.redelivered_through())
        else {
            return;
        };
        let Some(qs) = self.quorum.as_mut() else {
            return;
        };
        self.store.scan(|rec| {
            if rec.seq <= mark {
                qs.returns.insert(rec.seq, 1);
            }
        });
    }

    /// Forgets message `id` (it left the queue).
    #[inline]
    pub(super) fn forget_returns(&mut self, id: u64) {
        if let Some(qs) = self.quorum.as_mut() {
            qs.returns.remove(&id);
            if let Some(r) = qs.replica.as_mut() {
                r.left(id);
            }
        }
    }

    /// Forgets every ready message's count (after a purge: only delivered ones stay).
    pub(super) fn forget_ready_returns(&mut self, ready: &[u64]) {
        if let Some(qs) = self.quorum.as_mut() {
            for id in ready {
                qs.returns.remove(id);
                if let Some(r) = qs.replica.as_mut() {
                    r.left(*id);
                }
            }
        }
    }

    /// The stored message `payload` (store seq `seq`) as it is handed out: for a quorum queue with
    /// its `x-delivery-count` header, on a basic.get always and on a basic.deliver once the
    /// message was returned. Classic queues and first deliveries keep their bytes.
    #[inline]
    pub fn outgoing_payload(&self, seq: u64, payload: Bytes, get: bool) -> Bytes {
        if self.quorum.is_none() {
            return payload;
        }
        let count = self.delivery_count(seq);
        if count == 0 && !get {
            return payload;
        }
        with_delivery_count(&payload, count).unwrap_or(payload)
    }
}

/// A copy of stored message `payload` whose headers carry `x-delivery-count: count` (a
/// signed 64-bit integer, as RabbitMQ sets it). `None` if the stored message cannot be
/// read (then it goes out as stored).
pub fn with_delivery_count(payload: &Bytes, count: u32) -> Option<Bytes> {
    message::with_header(
        payload,
        DELIVERY_COUNT,
        AMQPValue::LongLongInt(i64::from(count)),
    )
}

#[cfg(test)]
pub(in crate::broker) mod tests {
    use super::*;
    use crate::broker::dead_letter::encode_table;
    use crate::protocol::properties;
    use amq_protocol_types::ShortString;

    fn stored(headers: Option<&FieldTable>) -> Bytes {
        let mut props = vec![0u8, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
        match headers {
            Some(h) => {
                props.extend_from_slice(&properties::FLAG_HEADERS.to_be_bytes());
                props.extend_from_slice(&encode_table(h));
            }
            None => props.extend_from_slice(&[0, 0]),
        }
        let mut prefix = [0u8; message::MAX_PREFIX];
        let n = message::encode_prefix(&mut prefix, "ex", "rk", props.len());
        let mut out = prefix[..n].to_vec();
        out.extend_from_slice(&props);
        out.extend_from_slice(b"hello");
        Bytes::from(out)
    }

    pub(in crate::broker) fn count_of(payload: &Bytes) -> Option<AMQPValue> {
        let m = message::view(payload).expect("readable");
        let props = properties::decode(m.header).expect("header");
        let t = table::decode(props.headers?).expect("table");
        t.inner().get(DELIVERY_COUNT).cloned()
    }

    #[test]
    fn the_count_joins_the_message_headers_and_keeps_the_rest() {
        let mut h = FieldTable::default();
        h.insert(ShortString::from("a"), AMQPValue::LongInt(1));
        let out = with_delivery_count(&stored(Some(&h)), 2).expect("rewritten");
        assert_eq!(count_of(&out), Some(AMQPValue::LongLongInt(2)));
        let m = message::view(&out).unwrap();
        assert_eq!(
            (m.exchange, m.routing_key, m.body),
            (&b"ex"[..], &b"rk"[..], &b"hello"[..])
        );
        let t = table::decode(properties::decode(m.header).unwrap().headers.unwrap()).unwrap();
        assert_eq!(t.inner().get("a"), Some(&AMQPValue::LongInt(1)));
        let bare = with_delivery_count(&stored(None), 0).expect("rewritten");
        assert_eq!(count_of(&bare), Some(AMQPValue::LongLongInt(0)));
    }
}
