//! openraft's state machine for any group kind: the replicated state (`Replicated`: a
//! queue, the cluster's metadata) behind a lock, the last applied log id and membership
//! kept beside it (`Applied`), and snapshots that are the state serialised (`codec.rs`:
//! MessagePack; a snapshot written as JSON by an earlier build still reads). Applying the same
//! entries in the same order gives every member the same state; a member that fell behind
//! the leader's purged log installs a snapshot whole. A machine opened on a directory keeps
//! its current snapshot there (`snapshot_file.rs`) and starts from it after a restart.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder,
    StorageError, StorageIOError, StoredMembership,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::codec;
use super::snapshot_file::SnapshotFile;
use super::types::GroupTypes;

type NodeId = u64;
type Error = StorageError<NodeId>;

/// A group's replicated state.
pub trait Replicated<C: GroupTypes>:
    Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// Applies one command at log index `index`.
    fn apply(&mut self, index: u64, cmd: &C::D) -> C::R;
    /// The answer to a blank or membership entry.
    fn nothing() -> C::R;
}

/// The replicated state with what openraft needs kept beside it (and in every snapshot):
/// the last applied log id and the membership. Reads of the state go through `Deref`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "S: Serialize + DeserializeOwned")]
pub struct Applied<S> {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, BasicNode>,
    pub state: S,
}

impl<S> std::ops::Deref for Applied<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.state
    }
}

/// The last snapshot built or installed: its metadata and its bytes.
type CurrentSnapshot = Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>;

/// What a machine tells its tap (the part of the node that mirrors a group's state, such
/// as the broker's copy of a replicated queue), in the order it happened.
#[derive(Debug)]
pub enum Tapped<D, S> {
    /// A command was applied at this log index.
    Applied(u64, D),
    /// The state was replaced whole (a snapshot installed from the leader) with the
    /// state after this log index.
    Reset(u64, S),
}

/// The tap's sender, kept type-erased so that `Machine<S>` need not name the command
/// type (`apply` is generic over the group kind and knows it).
type TapSlot = Arc<std::sync::Mutex<Option<Arc<dyn std::any::Any + Send + Sync>>>>;

/// A group's state machine with its current snapshot; clones share them.
pub struct Machine<S> {
    state: Arc<Mutex<Applied<S>>>,
    snapshot: Arc<Mutex<CurrentSnapshot>>,
    snapshots_built: Arc<AtomicU64>,
    /// The size of the last snapshot built (`log_growth.rs`).
    snapshot_bytes: Arc<AtomicU64>,
    /// Where snapshots are kept; `None` for a machine in memory (tests, fuzzing).
    file: Option<SnapshotFile>,
    tap: TapSlot,
}

impl<S> Clone for Machine<S> {
    fn clone(&self) -> Self {
        Machine {
            state: self.state.clone(),
            snapshot: self.snapshot.clone(),
            snapshots_built: self.snapshots_built.clone(),
            snapshot_bytes: self.snapshot_bytes.clone(),
            file: self.file.clone(),
            tap: self.tap.clone(),
        }
    }
}

impl<S: Clone + Default> Machine<S> {
    pub fn with_state(state: S) -> Self {
        Machine {
            state: Arc::new(Mutex::new(Applied {
                state,
                ..Applied::default()
            })),
            snapshot: Arc::default(),
            snapshots_built: Arc::default(),
            snapshot_bytes: Arc::default(),
            file: None,
            tap: TapSlot::default(),
        }
    }

    /// The size of the last snapshot built, from now on (`log_growth.rs`).
    pub fn snapshot_bytes(&self) -> Arc<AtomicU64> {
        self.snapshot_bytes.clone()
    }

    /// Starts telling a tap what is applied from now on; returns the state so far (what
    /// the tap starts from) and the receiver. One tap per machine: a second replaces it.
    pub async fn tap<C: GroupTypes>(
        &self,
    ) -> (
        S,
        u64,
        tokio::sync::mpsc::UnboundedReceiver<Tapped<C::D, S>>,
    )
    where
        S: Replicated<C>,
    {
        let state = self.state.lock().await;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Tapped<C::D, S>>();
        *self.tap.lock().expect("tap") = Some(Arc::new(tx));
        let index = state.last_applied.map_or(0, |l| l.index);
        (state.state.clone(), index, rx)
    }

    /// The tap's sender, if one is attached for this group kind.
    fn tap_sender<C: GroupTypes>(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedSender<Tapped<C::D, S>>>
    where
        S: Replicated<C>,
    {
        let slot = self.tap.lock().expect("tap");
        let any = slot.as_ref()?;
        any.downcast_ref::<tokio::sync::mpsc::UnboundedSender<Tapped<C::D, S>>>()
            .cloned()
    }

    /// A copy of the state (for tests and the management API).
    pub async fn state(&self) -> Applied<S> {
        self.state.lock().await.clone()
    }

    /// Reads the state in place.
    pub async fn inspect<T>(&self, f: impl FnOnce(&Applied<S>) -> T) -> T {
        f(&*self.state.lock().await)
    }
}

impl<S: Clone + Default + Serialize + DeserializeOwned> Machine<S> {
    /// A machine that keeps its snapshots in `dir`, starting from the one there (`state`
    /// when there is none: a new group).
    pub fn on_disk(dir: &std::path::Path, state: S) -> std::io::Result<Self> {
        let file = SnapshotFile::new(dir);
        let mut machine = Machine::with_state(state);
        if let Some((meta, data)) = file.load()? {
            let applied: Applied<S> = codec::decode(&data).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: snapshot state: {e}", file.path().display()),
                )
            })?;
            machine.state = Arc::new(Mutex::new(applied));
            machine.snapshot = Arc::new(Mutex::new(Some((meta, data))));
        }
        machine.file = Some(file);
        Ok(machine)
    }

    /// Writes the snapshot to the machine's directory (off the async threads: it fsyncs).
    async fn persist(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        data: &[u8],
    ) -> Result<(), Error> {
        let Some(file) = self.file.clone() else {
            return Ok(());
        };
        let (meta, data) = (meta.clone(), data.to_vec());
        let written = tokio::task::spawn_blocking(move || file.store(&meta, &data))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r);
        written.map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)).into())
    }
}

fn snapshot_error(e: std::io::Error) -> Error {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

impl<C: GroupTypes, S: Replicated<C>> RaftSnapshotBuilder<C> for Machine<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, Error> {
        let started = std::time::Instant::now();
        // The lock is held for the clone only (a queue's messages are shared bytes), and
        // the encoding is done off the async threads: a snapshot of a few megabytes took
        // up to 50 ms of a worker as JSON.
        let state = self.state.lock().await.clone();
        let cloned = started.elapsed();
        let (state, data) = tokio::task::spawn_blocking(move || {
            let data = codec::encode(&state);
            (state, data)
        })
        .await
        .map_err(|e| snapshot_error(std::io::Error::other(e.to_string())))?;
        let data = data.map_err(snapshot_error)?;
        let encoded = started.elapsed();
        let last = state.last_applied;
        let n = self.snapshots_built.fetch_add(1, Ordering::Relaxed);
        self.snapshot_bytes
            .store(data.len() as u64, Ordering::Relaxed);
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: state.membership.clone(),
            snapshot_id: match last {
                Some(id) => format!("{}-{}-{n}", id.leader_id.term, id.index),
                None => format!("none-{n}"),
            },
        };
        self.persist(&meta, &data).await?;
        tracing::debug!(id = %meta.snapshot_id, bytes = data.len(), ?cloned, ?encoded,
            total = ?started.elapsed(), "cluster: snapshot built");
        *self.snapshot.lock().await = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<C: GroupTypes, S: Replicated<C>> RaftStateMachine<C> for Machine<S> {
    type SnapshotBuilder = Machine<S>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), Error> {
        let s = self.state.lock().await;
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<C::R>, Error>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let tap = self.tap_sender::<C>();
        let mut s = self.state.lock().await;
        let mut out = Vec::new();
        for entry in entries {
            s.last_applied = Some(entry.log_id);
            out.push(match entry.payload {
                EntryPayload::Blank => S::nothing(),
                EntryPayload::Normal(cmd) => {
                    let index = entry.log_id.index;
                    let answer = s.state.apply(index, &cmd);
                    if let Some(tap) = &tap {
                        // A tap that went away (its group closed) just stops listening.
                        let _ = tap.send(Tapped::Applied(index, cmd));
                    }
                    answer
                }
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(entry.log_id), m);
                    S::nothing()
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
        let state: Applied<S> = codec::decode(&data).map_err(snapshot_error)?;
        self.persist(meta, &data).await?;
        let mut current = self.state.lock().await;
        if let Some(tap) = self.tap_sender::<C>() {
            let index = meta.last_log_id.map_or(0, |l| l.index);
            let _ = tap.send(Tapped::Reset(index, state.state.clone()));
        }
        *current = state;
        drop(current);
        *self.snapshot.lock().await = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, Error> {
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
