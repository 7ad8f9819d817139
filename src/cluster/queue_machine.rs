//! The state machine of a replicated queue group: the messages a quorum queue holds, in
//! enqueue order, each with the returns it has taken, and the group's last applied log id
//! and membership. Applying the same entries in the same order gives every member the same
//! queue; a snapshot is that state serialised (JSON), installed whole on a member that fell
//! behind the leader's purged log.
//!
//! Which consumer holds which message is not replicated here yet (RabbitMQ's `rabbit_fifo`
//! replicates checkouts too): it comes with the broker's use of the groups.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::types::{QueueCommand, QueueRaft, QueueResponse};

type NodeId = u64;
type Error = StorageError<NodeId>;

/// A message held by the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub message: Vec<u8>,
    /// Returns so far (RabbitMQ's `x-delivery-count`).
    pub returns: u32,
}

/// The replicated state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, BasicNode>,
    /// Message id (the index of the entry that enqueued it) -> message, in enqueue order.
    pub messages: BTreeMap<u64, Held>,
    /// `x-delivery-limit`: a message returned more often is dropped.
    pub delivery_limit: Option<u32>,
}

impl QueueState {
    /// Applies one command at log index `index`.
    pub fn apply_command(&mut self, index: u64, cmd: &QueueCommand) -> QueueResponse {
        match cmd {
            QueueCommand::Enqueue { message } => {
                self.messages.insert(
                    index,
                    Held {
                        message: message.clone(),
                        returns: 0,
                    },
                );
                QueueResponse::Enqueued { id: index }
            }
            QueueCommand::Settle { id } => QueueResponse::Settled {
                found: self.messages.remove(id).is_some(),
            },
            QueueCommand::Return { id } => {
                let Some(held) = self.messages.get_mut(id) else {
                    return QueueResponse::Returned {
                        returns: 0,
                        kept: false,
                    };
                };
                held.returns = held.returns.saturating_add(1);
                let returns = held.returns;
                let kept = self.delivery_limit.is_none_or(|limit| returns <= limit);
                if !kept {
                    self.messages.remove(id);
                }
                QueueResponse::Returned { returns, kept }
            }
        }
    }
}

/// The last snapshot built or installed: its metadata and its bytes.
type CurrentSnapshot = Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>;

/// A group's state machine with its current snapshot; clones share them.
#[derive(Clone, Default)]
pub struct QueueMachine {
    state: Arc<Mutex<QueueState>>,
    snapshot: Arc<Mutex<CurrentSnapshot>>,
    snapshots_built: Arc<std::sync::atomic::AtomicU64>,
}

impl QueueMachine {
    pub fn new(delivery_limit: Option<u32>) -> QueueMachine {
        let m = QueueMachine::default();
        m.state
            .try_lock()
            .expect("a new machine is not shared yet")
            .delivery_limit = delivery_limit;
        m
    }

    /// A copy of the state (for tests and the management API).
    pub async fn state(&self) -> QueueState {
        self.state.lock().await.clone()
    }

    /// Reads the state in place.
    pub async fn inspect<T>(&self, f: impl FnOnce(&QueueState) -> T) -> T {
        f(&*self.state.lock().await)
    }
}

fn snapshot_error(e: serde_json::Error) -> Error {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

impl RaftSnapshotBuilder<QueueRaft> for QueueMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<QueueRaft>, Error> {
        let state = self.state.lock().await.clone();
        let data = serde_json::to_vec(&state).map_err(snapshot_error)?;
        let n = self
            .snapshots_built
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id: match state.last_applied {
                Some(id) => format!("{}-{}-{n}", id.leader_id.term, id.index),
                None => format!("none-{n}"),
            },
        };
        *self.snapshot.lock().await = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<QueueRaft> for QueueMachine {
    type SnapshotBuilder = QueueMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), Error> {
        let s = self.state.lock().await;
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<QueueResponse>, Error>
    where
        I: IntoIterator<Item = Entry<QueueRaft>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut s = self.state.lock().await;
        let mut out = Vec::new();
        for entry in entries {
            s.last_applied = Some(entry.log_id);
            out.push(match entry.payload {
                EntryPayload::Blank => QueueResponse::Nothing,
                EntryPayload::Normal(cmd) => s.apply_command(entry.log_id.index, &cmd),
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(entry.log_id), m);
                    QueueResponse::Nothing
                }
            });
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, Error> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), Error> {
        let data = snapshot.into_inner();
        let state: QueueState = serde_json::from_slice(&data).map_err(snapshot_error)?;
        *self.state.lock().await = state;
        *self.snapshot.lock().await = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<QueueRaft>>, Error> {
        Ok(self
            .snapshot
            .lock()
            .await
            .as_ref()
            .map(|(meta, data)| Snapshot {
                meta: meta.clone(),
                snapshot: Box::new(Cursor::new(data.clone())),
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_count_and_the_limit_drops() {
        let mut s = QueueState {
            delivery_limit: Some(1),
            ..QueueState::default()
        };
        let enq = |m: &[u8]| QueueCommand::Enqueue {
            message: m.to_vec(),
        };
        assert_eq!(
            s.apply_command(3, &enq(b"a")),
            QueueResponse::Enqueued { id: 3 }
        );
        assert_eq!(
            s.apply_command(4, &enq(b"b")),
            QueueResponse::Enqueued { id: 4 }
        );
        let ret = QueueCommand::Return { id: 3 };
        assert_eq!(
            s.apply_command(5, &ret),
            QueueResponse::Returned {
                returns: 1,
                kept: true
            }
        );
        assert_eq!(
            s.apply_command(6, &ret),
            QueueResponse::Returned {
                returns: 2,
                kept: false
            }
        );
        assert_eq!(
            s.apply_command(7, &QueueCommand::Settle { id: 3 }),
            QueueResponse::Settled { found: false }
        );
        assert_eq!(
            s.apply_command(8, &QueueCommand::Settle { id: 4 }),
            QueueResponse::Settled { found: true }
        );
        assert!(s.messages.is_empty());
    }
}
