//! openraft's state machine for any group kind: the replicated state (`Replicated`: a
//! queue, the cluster's metadata) behind a lock, the last applied log id and membership
//! kept beside it (`Applied`), and snapshots that are the state serialised (`codec.rs`:
//! MessagePack; a snapshot written as JSON by an earlier build still reads). Applying the same
//! entries in the same order gives every member the same state; a member that fell behind
//! the leader's purged log installs a snapshot whole. A machine opened on a directory keeps
//! its current snapshot there (`snapshot_file.rs`) and starts from it after a restart.
//! A machine opened with `on_disk_with_bodies` (a quorum queue's) keeps message bodies in
//! its group's log, out of its state and its snapshot file (`snapshot_bodies.rs`).

use std::io::Cursor;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
use super::log_store::SnapshotReports;
use super::snapshot_bodies::SnapshotBodies;
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
    /// What the tap is told of `cmd`, applied with `answer`: the command itself, unless
    /// applying it changed nothing the tap may repeat (a queue's round committed twice).
    fn for_tap(cmd: C::D, _answer: &C::R) -> C::D {
        cmd
    }

    // A state whose bodies can stay in the group's log (a queue's messages,
    // `snapshot_bodies.rs`) overrides these; another holds everything itself.

    /// From now on, applying keeps bodies out of the state.
    fn keep_bodies_elsewhere(&mut self) {}
    /// The ids of the bodies the state refers to, in increasing order.
    fn body_ids(&self) -> Vec<u64> {
        Vec::new()
    }
    /// Takes the bodies the state holds out of it, with their ids.
    fn take_bodies(&mut self) -> Vec<(u64, bytes::Bytes)> {
        Vec::new()
    }
    /// Puts bodies (of ids the state refers to) into it.
    fn put_bodies(&mut self, _bodies: Vec<(u64, bytes::Bytes)>) {}
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
    /// Where bodies are kept when not in the state (`None`: in it).
    bodies: Option<SnapshotBodies>,
    /// Where durable snapshots are reported to the group's log store (`reporting_to`).
    reports: Option<SnapshotReports>,
    /// Set while openraft starts the group (`Raft::new`): it asks for the current
    /// snapshot then for its metadata alone, so the bodies are not read for it.
    starting: Arc<AtomicBool>,
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
            bodies: self.bodies.clone(),
            reports: self.reports.clone(),
            starting: self.starting.clone(),
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
            bodies: None,
            reports: None,
            starting: Arc::default(),
            tap: TapSlot::default(),
        }
    }

    /// Says that openraft is starting the group (`true`, before `Raft::new`) or has
    /// started it (`false`): see `starting`.
    pub fn set_starting(&self, starting: bool) {
        self.starting.store(starting, Ordering::Release);
    }

    /// The size of the last snapshot built, from now on (`log_growth.rs`).
    pub fn snapshot_bytes(&self) -> Arc<AtomicU64> {
        self.snapshot_bytes.clone()
    }

    /// Starts telling a tap what is applied from now on; returns the state so far (what
    /// the tap starts from; a state installed whole later comes with its bodies) and the
    /// receiver. One tap per machine: a second replaces it.
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
        // Without the bodies kept in the log: the tap reads them a step at a time
        // (`SnapshotBodies::read`), a deep queue is not read into memory whole.
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

    /// As `on_disk`, with the bodies in the group's log (`snapshot_bodies.rs`). A snapshot
    /// of an earlier build, which carries its bodies, has them written into the log.
    pub async fn on_disk_with_bodies<C: GroupTypes>(
        dir: &std::path::Path,
        state: S,
        bodies: SnapshotBodies,
    ) -> std::io::Result<Self>
    where
        S: Replicated<C>,
    {
        let mut machine = Self::on_disk(dir, state)?;
        {
            let mut applied = machine.state.lock().await;
            applied.state.keep_bodies_elsewhere();
            let inline = applied.state.take_bodies();
            if !inline.is_empty() {
                bodies.keep(inline, &[]).await?;
            }
            bodies.retain(&applied.state.body_ids()).await?;
        }
        machine = machine.reporting_to(bodies.snapshot_reports());
        machine.bodies = Some(bodies);
        Ok(machine)
    }

    /// Reports this machine's durable snapshots to its group's log store, starting with
    /// the one it opened from: a purge there waits for one that covers it
    /// (`LogStore::wait_for_snapshots`). Called before the machine is shared.
    pub fn reporting_to(mut self, reports: SnapshotReports) -> Self {
        // Unshared yet, so the lock is free; were it not, reporting nothing only makes a
        // purge wait for the next snapshot.
        let opened = self.snapshot.try_lock().ok().and_then(|current| {
            current
                .as_ref()
                .and_then(|(meta, _)| meta.last_log_id)
                .map(|l| l.index)
        });
        reports.durable(opened.unwrap_or(0));
        self.reports = Some(reports);
        self
    }

    fn report_durable(&self, last: Option<LogId<NodeId>>) {
        if let Some(reports) = &self.reports {
            reports.durable(last.map_or(0, |l| l.index));
        }
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

/// Puts into `state` the bodies of the messages it refers to, read from the log. A body
/// the log does not have is logged, not fatal: the message's id and returns stay, and
/// every other message is served.
async fn fill_bodies<C: GroupTypes, S: Replicated<C>>(bodies: &SnapshotBodies, state: &mut S) {
    let ids = state.body_ids();
    match bodies.read(&ids).await {
        Ok(found) => {
            if found.len() < ids.len() {
                tracing::error!(
                    missing = ids.len() - found.len(),
                    "cluster: bodies of a queue's messages are not in its log"
                );
            }
            state.put_bodies(found);
        }
        Err(e) => tracing::error!("cluster: reading a queue's bodies from its log: {e}"),
    }
}

impl<C: GroupTypes, S: Replicated<C>> RaftSnapshotBuilder<C> for Machine<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, Error> {
        let started = std::time::Instant::now();
        // The lock is held for the clone only (a queue's messages are shared bytes), and
        // the encoding is done off the async threads: a snapshot of a few megabytes took
        // up to 50 ms of a worker as JSON.
        let state = self.state.lock().await.clone();
        let cloned = started.elapsed();
        let keeps_bodies = self.bodies.is_some();
        let (state, data, ids) = tokio::task::spawn_blocking(move || {
            let data = codec::encode(&state);
            let ids = if keeps_bodies {
                state.state.body_ids()
            } else {
                Vec::new()
            };
            (state, data, ids)
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
        // The current snapshot's lock is held from here on: a snapshot installed from the
        // leader meanwhile (newer than this one) is neither overwritten on disk nor has the
        // bodies it needs let go, and the bodies the one before held are let go only once
        // no send of it is reading them (`get_current_snapshot`).
        let mut current = self.snapshot.lock().await;
        if current.as_ref().is_some_and(|(m, _)| m.last_log_id > last) {
            tracing::debug!(id = %meta.snapshot_id, "cluster: snapshot built behind the installed one, not kept");
            return Ok(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            });
        }
        self.persist(&meta, &data).await?;
        tracing::debug!(id = %meta.snapshot_id, bytes = data.len(), ?cloned, ?encoded,
            total = ?started.elapsed(), "cluster: snapshot built");
        self.report_durable(last);
        if let Some(bodies) = &self.bodies {
            bodies.retain(&ids).await.map_err(snapshot_error)?;
        }
        *current = Some((meta.clone(), data.clone()));
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
                        let _ = tap.send(Tapped::Applied(index, S::for_tap(cmd, &answer)));
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
        let mut data = snapshot.into_inner();
        let mut state: Applied<S> = codec::decode(&data).map_err(snapshot_error)?;
        // Held from here on, as `build_snapshot` holds it: a snapshot built meanwhile
        // neither overwrites this one on disk nor lets go of the bodies it needs.
        let mut snapshot = self.snapshot.lock().await;
        // The bodies the leader sent go into this node's log (durable before the snapshot
        // that refers to them is), and out of the state and its file.
        let mut sent = Vec::new();
        if let Some(bodies) = &self.bodies {
            state.state.keep_bodies_elsewhere();
            sent = state.state.take_bodies();
            let ids = state.state.body_ids();
            let held = ids.len();
            if sent.len() < held {
                tracing::error!(
                    missing = held - sent.len(),
                    "cluster: a snapshot from the leader lacks message bodies"
                );
            }
            bodies
                .keep(sent.clone(), &ids)
                .await
                .map_err(snapshot_error)?;
            data = codec::encode(&state).map_err(snapshot_error)?;
            tracing::info!(
                index = meta.last_log_id.map_or(0, |l| l.index),
                messages = held,
                "cluster: a queue's snapshot installed from its leader, bodies kept in the log"
            );
        }
        self.persist(meta, &data).await?;
        self.report_durable(meta.last_log_id);
        if let Some(bodies) = &self.bodies {
            let ids = state.state.body_ids();
            bodies.retain(&ids).await.map_err(snapshot_error)?;
        }
        let mut current = self.state.lock().await;
        if let Some(tap) = self.tap_sender::<C>() {
            let index = meta.last_log_id.map_or(0, |l| l.index);
            let mut copy = state.state.clone();
            copy.put_bodies(sent);
            let _ = tap.send(Tapped::Reset(index, copy));
        }
        *current = state;
        drop(current);
        *snapshot = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, Error> {
        let current = self.snapshot.lock().await;
        let Some((meta, data)) = current.as_ref() else {
            return Ok(None);
        };
        let data = match &self.bodies {
            // A snapshot to send: with the bodies, read from the log while the lock keeps
            // them there.
            Some(bodies) if !self.starting.load(Ordering::Acquire) => {
                let mut state: Applied<S> = codec::decode(data).map_err(snapshot_error)?;
                fill_bodies(bodies, &mut state.state).await;
                codec::encode(&state).map_err(snapshot_error)?
            }
            _ => data.clone(),
        };
        Ok(Some(Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
