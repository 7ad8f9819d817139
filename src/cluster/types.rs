//! The Raft types of a replicated queue group: what its log entries carry (`QueueCommand`)
//! and what applying one answers (`QueueResponse`).

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// A command of a replicated queue, as RabbitMQ's quorum queues replicate them
/// (`rabbit_fifo`: enqueue, settle, return).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueCommand {
    /// A published message (the stored message bytes: exchange, routing key, content
    /// header, body). Its id is the index of the entry that enqueued it.
    Enqueue { message: Vec<u8> },
    /// A delivery acked, or rejected for good.
    Settle { id: u64 },
    /// A delivery given back (nack or reject with requeue, a consumer gone): one more
    /// delivery counted; past the queue's delivery limit the message is dropped.
    Return { id: u64 },
}

/// What applying an entry answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueResponse {
    /// A blank or membership entry.
    Nothing,
    Enqueued {
        id: u64,
    },
    /// `false` for an id the queue does not hold (settled already, or never enqueued).
    Settled {
        found: bool,
    },
    /// The message's returns so far, and whether it stays in the queue (false: dropped
    /// for its delivery limit, or not held).
    Returned {
        returns: u32,
        kept: bool,
    },
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
