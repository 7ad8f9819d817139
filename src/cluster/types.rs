//! The Raft types of the cluster's groups: what every group kind shares (`GroupTypes`),
//! and a replicated queue group's entries (`QueueCommand`) and answers (`QueueResponse`).

use std::io::Cursor;

use openraft::impls::OneshotResponder;
use openraft::{BasicNode, Entry, RaftTypeConfig, TokioRuntime};
use serde::{Deserialize, Serialize};

/// What every group kind of the cluster (queue groups, the metadata group) has in common:
/// nodes named by a number with an address, entries that are openraft's own, snapshots
/// held in memory, tokio. The log store and the network are written once against it.
pub trait GroupTypes:
    RaftTypeConfig<
    NodeId = u64,
    Node = BasicNode,
    Entry = Entry<Self>,
    SnapshotData = Cursor<Vec<u8>>,
    AsyncRuntime = TokioRuntime,
    Responder = OneshotResponder<Self>,
>
{
}

impl<C> GroupTypes for C where
    C: RaftTypeConfig<
        NodeId = u64,
        Node = BasicNode,
        Entry = Entry<C>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = TokioRuntime,
        Responder = OneshotResponder<C>,
    >
{
}

/// A command of a replicated queue, as RabbitMQ's quorum queues replicate them
/// (`rabbit_fifo`: enqueue, settle, return).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueCommand {
    /// A published message (the stored message bytes: exchange, routing key, content
    /// header, body). Its id is `message_id(index, 0)`, `index` the entry's.
    Enqueue {
        #[serde(with = "base64_bytes")]
        message: bytes::Bytes,
    },
    /// Messages published together (one entry, one round of replication): the k-th
    /// gets id `message_id(index, k)`. At most `MAX_BATCH` of them.
    EnqueueBatch {
        #[serde(with = "base64_list")]
        messages: Vec<bytes::Bytes>,
        /// When the messages were enqueued (milliseconds since the epoch, the clock of the
        /// leader that took the entry: `LeaderStamp`; the writing node's in entries of
        /// earlier builds): a copy rebuilt from the log later times their TTL from it, as
        /// the first copies did from their commit. 0 in what the earliest builds wrote (a
        /// rebuilt copy then counts from the rebuild).
        #[serde(default, skip_serializing_if = "is_zero", rename = "at")]
        enqueued_at: u64,
    },
    /// A delivery acked, or rejected for good.
    Settle { id: u64 },
    /// Deliveries acked together.
    SettleBatch { ids: Vec<u64> },
    /// A delivery given back (nack or reject with requeue, a consumer gone): one more
    /// delivery counted; past the queue's delivery limit the message is dropped.
    Return { id: u64 },
    /// Deliveries given back together, each as `Return`.
    ReturnBatch { ids: Vec<u64> },
    /// One round of a node's writer: messages published (ids as `EnqueueBatch`), then
    /// deliveries given back (as `ReturnBatch`), then deliveries acked (as
    /// `SettleBatch`). One entry, so one commit round for all three: written apart, a
    /// round of publishes waited for the settles before it.
    ///
    /// `discarded`, applied after the messages and before the returns: messages
    /// dead-lettered under `x-dead-letter-strategy: at-least-once`, as RabbitMQ's
    /// `discard` moves them to its dead-letter state. Each stays in the group, never to be
    /// delivered again nor dropped by its delivery limit, until the settle written once its
    /// dead-letter copies are durable; whichever member leads publishes those copies should
    /// the node that dead-lettered it die first. Absent from what earlier builds wrote, and
    /// ignored by them (serde skips a field it does not know): a cluster of mixed builds
    /// keeps the earlier behaviour, the message ready again if that node dies.
    Round {
        #[serde(with = "base64_list")]
        messages: Vec<bytes::Bytes>,
        returned: Vec<u64>,
        settled: Vec<u64>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        discarded: Vec<DeadMark>,
        /// As `EnqueueBatch`'s.
        #[serde(default, skip_serializing_if = "is_zero", rename = "at")]
        enqueued_at: u64,
        /// The writing node and its number for the round (`WriteId`): a round committed
        /// twice, its writer having sent it again through a new leader after the first
        /// try's entry reached a majority all the same, is applied once
        /// (`queue_machine::LastRounds`). `None` in rounds no writer numbered and in what
        /// earlier builds wrote (which apply every copy).
        #[serde(default, skip_serializing_if = "Option::is_none", rename = "w")]
        write: Option<(u64, WriteId)>,
        /// For each of `returned`, the returns the message had when the delivery it
        /// gives back went out (its `x-delivery-count` then). A return of a message
        /// returned more often since is of a delivery the group has taken back already
        /// (the leader returned what a node held when the node's connection closed, and
        /// that node's consumer gave it back later): it is ignored, as RabbitMQ's queue
        /// ignores a return of a message its consumer no longer has checked out. Empty in
        /// what earlier builds wrote (then every return counts). A member of an earlier
        /// build counts every return: while a cluster is upgraded its counts may run
        /// ahead of the newer members' (a message dropped there for its delivery limit a
        /// return early).
        #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "rs")]
        seen: Vec<u32>,
        /// Never written: the positions in `returned` of the returns the group ignored
        /// (ascending), filled in for the broker's copy as the entry is applied
        /// (`queue_machine`'s `for_tap`). By position: one round may return a message
        /// twice, once stale and once not.
        #[serde(skip)]
        stale: Vec<u32>,
        /// Written by a leader: the highest message id it has handed out (to its own
        /// consumers, or granted to another node's). Messages go out first in id order,
        /// so every message up to it that has never been returned went out; the next
        /// leader takes those as held by this writer's node (`OutMark`), as RabbitMQ's
        /// replicated checkouts let its next leader return a dead leader's deliveries.
        /// 0 in members' rounds and in what earlier builds wrote.
        #[serde(default, skip_serializing_if = "is_zero", rename = "ot")]
        out_through: u64,
    },
}

/// What the group knows of a leader's deliveries (`Round`'s `out_through` and its writer).
pub use crate::broker::queue::replica::OutMark;

/// The wall clock in milliseconds since the epoch (0 if it reads before the epoch).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A command the leader of its group stamps with its own clock as it takes it, as
/// RabbitMQ's leader times an enqueue (ra's `system_time` in the command's metadata): a
/// node that writes through the leader may run its clock behind or ahead of the leader's,
/// and a write may wait out an election before a leader takes it.
pub trait LeaderStamp {
    /// Sets the command's time to `now_ms`, the leader's clock, where it has one.
    fn stamp(&mut self, _now_ms: u64) {}
}

impl LeaderStamp for QueueCommand {
    /// The enqueue time of the messages of an `EnqueueBatch` or a `Round` (left 0 where
    /// there are none, as the writer left it).
    fn stamp(&mut self, now_ms: u64) {
        match self {
            QueueCommand::EnqueueBatch {
                messages,
                enqueued_at,
            }
            | QueueCommand::Round {
                messages,
                enqueued_at,
                ..
            } if !messages.is_empty() => *enqueued_at = now_ms,
            _ => {}
        }
    }
}

/// Which write of which start of its node an entry is: a metadata change (a topology
/// change, a quorum queue's declaration or deletion) or a queue writer's round. A write
/// whose answer was lost (its leader stepped down, the link to it broke) is sent again
/// and may then be committed twice; the second entry is left out, or it would undo what
/// came between (another node's unbinding, its own node's next change) or, in a queue,
/// enqueue its messages twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WriteId {
    /// Its node's `started_at` (a node's writes are numbered from 1 at every start).
    pub started_at: u64,
    pub seq: u64,
}

/// Whether a time is absent (0: not written by earlier builds).
pub(crate) fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A dead letter of a `Round`: why it died (`DeadMark::REJECTED` ...) and when
/// (milliseconds since the epoch), which its `x-death` entry keeps wherever it is
/// published from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadMark {
    pub id: u64,
    pub reason: u8,
    pub died_at: u64,
}

impl DeadMark {
    pub const REJECTED: u8 = 0;
    pub const EXPIRED: u8 = 1;
    pub const MAXLEN: u8 = 2;
    pub const DELIVERY_LIMIT: u8 = 3;
}

/// Messages one entry may enqueue: ids leave room for this many per entry.
pub const MAX_BATCH: usize = 1 << 16;

/// The id of the `k`-th message enqueued by the entry at `index`: unique for the group's
/// life, increasing in enqueue order.
pub const fn message_id(index: u64, k: usize) -> u64 {
    (index << 16) | k as u64
}

/// The index of the entry that enqueued message `id`, and the message's place in it.
pub const fn entry_of(id: u64) -> (u64, usize) {
    (id >> 16, (id & 0xFFFF) as usize)
}

/// What applying an entry answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueResponse {
    /// A blank or membership entry.
    Nothing,
    /// The (first) message's id.
    Enqueued { id: u64 },
    /// How many of a batch's ids the queue held.
    SettledMany { found: u64 },
    /// How many of a batch's ids the queue held, and how many of those it dropped.
    ReturnedMany { found: u64, dropped: u64 },
    /// A `Round`: its first message's id, then its returns and settles as
    /// `ReturnedMany` and `SettledMany` count them.
    RoundDone {
        id: u64,
        returned: u64,
        dropped: u64,
        settled: u64,
        /// The positions in the round's `returned` of the returns it ignored (of
        /// deliveries taken back since: `Round`'s `seen`), ascending.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        stale: Vec<u32>,
    },
    /// `false` for an id the queue does not hold (settled already, or never enqueued).
    Settled { found: bool },
    /// The message's returns so far, and whether it stays in the queue (false: dropped
    /// for its delivery limit, or not held).
    Returned { returns: u32, kept: bool },
    /// A `Round` applied already (`queue_machine::LastRounds`): nothing done again.
    Repeated,
}

openraft::declare_raft_types!(
    /// A replicated queue group.
    pub QueueRaft:
        D = QueueCommand,
        R = QueueResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<QueueRaft>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Message bytes in an entry: a base64 string in JSON (human-readable formats), where
/// bytes would otherwise be an array of numbers (up to four characters a byte, and slow
/// both ways); raw bytes in MessagePack (`codec.rs`).
pub(super) mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S, B>(bytes: &B, s: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        B: AsRef<[u8]> + ?Sized,
    {
        let bytes = bytes.as_ref();
        if s.is_human_readable() {
            s.serialize_str(&STANDARD.encode(bytes))
        } else {
            s.serialize_bytes(bytes)
        }
    }

    /// Read into a `Vec<u8>`, then handed over whole (`bytes::Bytes` takes it without a
    /// copy).
    pub fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: From<Vec<u8>>,
    {
        let bytes = if d.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            STANDARD.decode(text.as_bytes()).map_err(D::Error::custom)?
        } else {
            d.deserialize_byte_buf(ByteBuf)?
        };
        Ok(T::from(bytes))
    }

    /// Bytes as a binary format hands them over.
    struct ByteBuf;

    impl<'de> serde::de::Visitor<'de> for ByteBuf {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }

    /// One message as `serialize` writes it, for a list of them.
    pub(super) struct Bytes<'a>(pub &'a [u8]);

    impl serde::Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize(self.0, s)
        }
    }

    /// One message as `deserialize` reads it, for a list of them.
    pub(super) struct Owned(pub Vec<u8>);

    impl<'de> Deserialize<'de> for Owned {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Owned, D::Error> {
            deserialize(d).map(Owned)
        }
    }
}

/// A message that may be absent, as `base64_bytes` writes it when present (with
/// `skip_serializing_if = "Option::is_none"` and `default`, absent is no field at all).
pub(super) mod base64_option {
    use super::base64_bytes::{Bytes, Owned};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<bytes::Bytes>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_some(&Bytes(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bytes::Bytes>, D::Error> {
        let owned = <Option<Owned>>::deserialize(d)?;
        Ok(owned.map(|Owned(b)| bytes::Bytes::from(b)))
    }
}

/// A list of messages, each as `base64_bytes` writes it.
pub(super) mod base64_list {
    use super::base64_bytes::{Bytes, Owned};
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S, B>(list: &[B], s: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        B: AsRef<[u8]>,
    {
        let mut seq = s.serialize_seq(Some(list.len()))?;
        for bytes in list {
            seq.serialize_element(&Bytes(bytes.as_ref()))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: From<Vec<u8>>,
    {
        let list = <Vec<Owned>>::deserialize(d)?;
        Ok(list.into_iter().map(|Owned(b)| T::from(b)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_stamps_the_enqueue_time_of_messages_and_only_of_messages() {
        let one = || vec![bytes::Bytes::from_static(b"m")];
        let mut batch = QueueCommand::EnqueueBatch {
            messages: one(),
            enqueued_at: 5,
        };
        batch.stamp(9);
        assert!(matches!(
            batch,
            QueueCommand::EnqueueBatch { enqueued_at: 9, .. }
        ));
        let round = |messages: Vec<bytes::Bytes>| QueueCommand::Round {
            messages,
            returned: vec![1],
            settled: vec![],
            discarded: vec![],
            enqueued_at: 0,
            write: None,
            seen: vec![],
            stale: vec![],
            out_through: 0,
        };
        let (mut full, mut empty) = (round(one()), round(Vec::new()));
        full.stamp(9);
        empty.stamp(9);
        assert!(matches!(full, QueueCommand::Round { enqueued_at: 9, .. }));
        // No message: no time (the field is left out of the entry).
        assert!(matches!(empty, QueueCommand::Round { enqueued_at: 0, .. }));
        let mut settle = QueueCommand::SettleBatch { ids: vec![3] };
        settle.stamp(9);
        assert_eq!(settle, QueueCommand::SettleBatch { ids: vec![3] });
    }
}
