//! A Raft group's log in a Warren segment log: openraft's `RaftLogStorage` over the
//! engine's CRC-checked records and group commit.
//!
//! A group's records live in a `SharedLog` (shared_log.rs), tagged with the group: every
//! quorum-queue group of a node writes into one log, so a sync round flushes one file, not
//! one per busy group; the metadata group has one of its own. A group's records are its
//! entries (tagged with their Raft index), its vote, committed log id and purge point
//! (each superseding, and acking, its predecessor of the same kind) and its truncations.
//! Raft indexes are not the engine's sequence numbers (those are never reused, and a
//! truncated suffix is written again at the same indexes): the map from Raft index to
//! sequence number is rebuilt at open from the group's records, in the order written.
//!
//! Durability is what Raft needs: `append` reports an entry flushed only once its sync
//! (the engine's group commit, shared with every other log of the process) has completed;
//! `save_vote` returns only once the vote is durable; `truncate` returns once a record of
//! the truncation is durable (a suffix of a shared log cannot be cut off; the truncated
//! entries are acked, and the record keeps them out of the map at the next open should a
//! crash lose those acks, until a purge passes it). Entries and records are MessagePack
//! (`codec.rs`); the JSON of logs written before that still reads. A group directory in
//! the layout of earlier builds (`entries/` and `meta/`, two engine logs of its own) is
//! moved into the shared log when the group opens.
//!
//! A quorum queue's snapshot does not carry its messages (`snapshot_bodies.rs`): the bodies
//! stay in the entries that enqueued them. A store opened with `open_keeping_bodies` keeps
//! the entries a purge passes whose messages the current snapshot still holds (`kept`),
//! and the bodies a snapshot installed from the leader brought (`bodies`, records of their
//! own), until a later snapshot no longer refers to them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, OptionalSend, RaftLogId, RaftLogReader, StorageError, StorageIOError,
    Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{watch, Mutex};
use warren_storage::{GroupCommit, LogConfig, Ticket};

use super::codec;
use super::shared_log::{Found, Item, SharedLog};
use super::types::GroupTypes;

type NodeId = u64;
type Error = StorageError<NodeId>;

/// Record kinds (`BatchRecord::kind`).
pub(super) const KIND_ENTRY: u8 = 1;
pub(super) const KIND_VOTE: u8 = 2;
pub(super) const KIND_COMMITTED: u8 = 3;
pub(super) const KIND_PURGED: u8 = 4;
/// Entries from this record's index on were truncated.
const KIND_TRUNCATED: u8 = 5;
/// Bodies of messages enqueued by the entry at this record's index, installed with a
/// snapshot (`snapshot_bodies.rs`).
pub(super) const KIND_BODIES: u8 = 6;

/// A group's log store; clones share it (the log reader openraft asks for is a clone).
/// `C` is the group's kind (a queue group, the metadata group).
pub struct LogStore<C> {
    inner: Arc<Mutex<Inner>>,
    /// Bytes appended since the log was opened (`log_growth.rs` asks for snapshots by it).
    appended: Arc<AtomicU64>,
    /// The group's durable snapshots, as its state machine reports them.
    snapshot: SnapshotReports,
    kind: PhantomData<fn() -> C>,
}

/// Where a group's state machine reports its durable snapshots to the group's log store:
/// the index of the last one, and whether a purge waits for one that covers it
/// (`LogStore::wait_for_snapshots`). Clones share it.
#[derive(Clone)]
pub struct SnapshotReports(Arc<(watch::Sender<u64>, AtomicBool)>);

impl SnapshotReports {
    fn new() -> SnapshotReports {
        SnapshotReports(Arc::new((watch::channel(0).0, AtomicBool::new(false))))
    }

    /// The group's snapshot through log index `index` is durable.
    pub fn durable(&self, index: u64) {
        self.0 .0.send_if_modified(|at| {
            let newer = index > *at;
            *at = (*at).max(index);
            newer
        });
    }
}

impl<C> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            inner: self.inner.clone(),
            appended: self.appended.clone(),
            snapshot: self.snapshot.clone(),
            kind: PhantomData,
        }
    }
}

struct Inner {
    shared: Arc<SharedLog>,
    group: u64,
    /// Raft index -> sequence number of the live entry at that index.
    index: BTreeMap<u64, u64>,
    vote: Option<(Vote<NodeId>, u64)>,
    committed: Option<(Option<LogId<NodeId>>, u64)>,
    purged: Option<(LogId<NodeId>, u64)>,
    /// Truncation records still needed: (first index truncated, sequence number).
    truncations: Vec<(u64, u64)>,
    /// Entries at or below the purge point kept for the bodies the snapshot refers to:
    /// Raft index -> sequence number.
    kept: BTreeMap<u64, u64>,
    /// Bodies installed with a snapshot (`KIND_BODIES`): index of the entry that enqueued
    /// them -> sequence number. Read before `kept` and `index`: an entry held here at that
    /// index may be one the leader never committed.
    bodies: BTreeMap<u64, u64>,
    needed: Needed,
}

/// Which entries' bodies `kept` and `bodies` must keep.
struct Needed {
    keep: Keep,
    /// Entries kept whatever `keep` says, by readers still to read them: index -> readers.
    pinned: BTreeMap<u64, u32>,
    /// Indexes of bodies written since the last `retain`: for a snapshot not yet durable,
    /// which the next `retain` names.
    incoming: BTreeSet<u64>,
}

impl Needed {
    /// Whether the bodies of the entry at `index` are still needed: the snapshot refers
    /// to them, a reader has pinned them, or they came with a snapshot not yet retained.
    fn holds(&self, index: u64) -> bool {
        self.keep.wants(index) || self.pinned.contains_key(&index) || self.incoming.contains(&index)
    }
}

/// What a purge keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Keep {
    /// Nothing: the group's snapshots carry their whole state (the metadata group).
    Nothing,
    /// Every entry: the state machine has not said yet what its snapshot refers to.
    All,
    /// The entries whose messages the current snapshot holds (by Raft index).
    Entries(BTreeSet<u64>),
}

impl Keep {
    fn wants(&self, index: u64) -> bool {
        match self {
            Keep::Nothing => false,
            Keep::All => true,
            Keep::Entries(set) => set.contains(&index),
        }
    }
}

fn read_logs(e: io::Error) -> Error {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_logs(e: io::Error) -> Error {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn write_vote(e: io::Error) -> Error {
    StorageIOError::write_vote(AnyError::new(&e)).into()
}

/// How long a purge waits for a durable snapshot that covers it (`wait_for_snapshots`).
const SNAPSHOT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Bytes of entries replication sends in one append (`limited_get_log_entries`).
const APPEND_BYTES: usize = 4 << 20;

fn decode<T: DeserializeOwned>(payload: &[u8]) -> io::Result<T> {
    codec::decode(payload)
}

impl<C: GroupTypes> LogStore<C> {
    /// A group with a log of its own in `dir/log` (tests; the node opens the metadata
    /// group's own log itself, to run its upkeep, and calls `open_in`).
    pub fn open(
        dir: &Path,
        config: LogConfig,
        commit: Arc<GroupCommit>,
    ) -> io::Result<LogStore<C>> {
        std::fs::create_dir_all(dir)?;
        let shared = SharedLog::open(&dir.join("log"), config.clone(), commit)?;
        Self::open_in(shared, 0, dir, config)
    }

    /// Group `group`'s store in `shared`, from the records it holds for the group. `dir`
    /// is the group's directory: a log there in an earlier build's layout is moved in.
    pub fn open_in(
        shared: Arc<SharedLog>,
        group: u64,
        dir: &Path,
        config: LogConfig,
    ) -> io::Result<LogStore<C>> {
        Self::open_with(shared, group, dir, config, Keep::Nothing)
    }

    /// As `open_in`, for a group whose snapshots refer to bodies in its log (a quorum
    /// queue's, `snapshot_bodies.rs`): what a purge passes is kept until the state machine
    /// says which entries its snapshot refers to (`retain`).
    pub fn open_keeping_bodies(
        shared: Arc<SharedLog>,
        group: u64,
        dir: &Path,
        config: LogConfig,
    ) -> io::Result<LogStore<C>> {
        Self::open_with(shared, group, dir, config, Keep::All)
    }

    fn open_with(
        shared: Arc<SharedLog>,
        group: u64,
        dir: &Path,
        config: LogConfig,
        keep: Keep,
    ) -> io::Result<LogStore<C>> {
        let mut found = shared.claim(group);
        found.extend(super::log_import::import::<C>(&shared, group, dir, config)?);
        let mut inner = Inner {
            shared,
            group,
            index: BTreeMap::new(),
            vote: None,
            committed: None,
            purged: None,
            truncations: Vec::new(),
            kept: BTreeMap::new(),
            bodies: BTreeMap::new(),
            needed: Needed {
                keep,
                pinned: BTreeMap::new(),
                incoming: BTreeSet::new(),
            },
        };
        let superseded = inner.rebuild(&found)?;
        inner.shared.ack(superseded)?;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
            appended: Arc::default(),
            snapshot: SnapshotReports::new(),
            kind: PhantomData,
        })
    }

    /// The vote this node last saved for the group (kept across restarts).
    pub async fn saved_vote(&self) -> Option<Vote<NodeId>> {
        self.inner.lock().await.vote.map(|v| v.0)
    }

    /// The count of bytes appended to this log from now on.
    pub fn appended_bytes(&self) -> Arc<AtomicU64> {
        self.appended.clone()
    }

    /// Acks every record of the group (its queue was deleted): the shared log reclaims
    /// their space. The store must not be used afterwards.
    pub async fn forget(&self) -> io::Result<()> {
        let mut inner = self.inner.lock().await;
        let mut seqs: Vec<u64> = std::mem::take(&mut inner.index).into_values().collect();
        seqs.extend(inner.vote.take().map(|v| v.1));
        seqs.extend(inner.committed.take().map(|c| c.1));
        seqs.extend(inner.purged.take().map(|p| p.1));
        seqs.extend(inner.truncations.drain(..).map(|t| t.1));
        seqs.extend(std::mem::take(&mut inner.kept).into_values());
        seqs.extend(std::mem::take(&mut inner.bodies).into_values());
        inner.shared.ack_and_flush(seqs)
    }

    /// The snapshot now current refers to the bodies of the entries `entries` (Raft
    /// indexes) and no others: what a purge passed or a snapshot brought and it does not
    /// refer to is acked. Called once that snapshot is durable.
    pub async fn retain(&self, entries: BTreeSet<u64>) -> io::Result<()> {
        let mut inner = self.inner.lock().await;
        inner.needed.keep = Keep::Entries(entries);
        inner.needed.incoming.clear();
        inner.prune()
    }

    /// From now on a purge waits (up to `SNAPSHOT_WAIT`) until the group's state machine
    /// has a durable snapshot that covers it. openraft purges a follower's log as soon as
    /// it hands a snapshot from the leader to the state machine, before the machine has
    /// written it: a crash in between left a log purged past the snapshot the node
    /// restarted from.
    pub fn wait_for_snapshots(&self) {
        self.snapshot.0 .1.store(true, Ordering::Release);
    }

    /// Where the group's state machine reports its durable snapshots
    /// (`Machine::reporting_to`).
    pub fn snapshot_reports(&self) -> SnapshotReports {
        self.snapshot.clone()
    }

    /// Keeps the entries `entries` (Raft indexes) whatever later snapshots refer to, until
    /// `unpin`: a reader that started from a snapshot's state (the broker's copy rebuilt
    /// as the group opens) reads their bodies meanwhile.
    pub async fn pin(&self, entries: &BTreeSet<u64>) {
        let mut inner = self.inner.lock().await;
        for &index in entries {
            *inner.needed.pinned.entry(index).or_insert(0) += 1;
        }
    }

    /// Ends a `pin` of `entries`.
    pub async fn unpin(&self, entries: &BTreeSet<u64>) -> io::Result<()> {
        let mut inner = self.inner.lock().await;
        for index in entries {
            if let Some(n) = inner.needed.pinned.get_mut(index) {
                *n -= 1;
                if *n == 0 {
                    inner.needed.pinned.remove(index);
                }
            }
        }
        inner.prune()
    }

    /// Writes `records` (entry index, payload) as bodies installed with a snapshot and
    /// waits until they are durable; each supersedes earlier bodies at its index.
    pub async fn keep_bodies(&self, records: Vec<(u64, Vec<u8>)>) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let (commit, ticket) = {
            let mut inner = self.inner.lock().await;
            let (first, ticket) = inner.append(KIND_BODIES, &records)?;
            let mut old = Vec::new();
            for (k, (index, _)) in records.iter().enumerate() {
                old.extend(inner.bodies.insert(*index, first + k as u64));
                inner.needed.incoming.insert(*index);
            }
            inner.shared.ack(old)?;
            (inner.shared.commit().clone(), ticket)
        };
        durable(&commit, ticket).await
    }

    /// For each of `indexes`: the bodies installed for it (`KIND_BODIES`) or else the
    /// entry this log holds at it, as (index, kind, payload); an index with neither is
    /// left out.
    pub async fn read_for_bodies(&self, indexes: &[u64]) -> io::Result<Vec<(u64, u8, Bytes)>> {
        let inner = self.inner.lock().await;
        let mut out = Vec::with_capacity(indexes.len());
        for step in indexes.chunks(64) {
            let found: Vec<(u64, u8, u64)> = step
                .iter()
                .filter_map(|&i| {
                    let entry = || inner.kept.get(&i).or_else(|| inner.index.get(&i));
                    match inner.bodies.get(&i) {
                        Some(&seq) => Some((i, KIND_BODIES, seq)),
                        None => entry().map(|&seq| (i, KIND_ENTRY, seq)),
                    }
                })
                .collect();
            let payloads = inner.shared.read(inner.group, found.iter().map(|f| f.2))?;
            out.extend(found.iter().zip(payloads).map(|(f, p)| (f.0, f.1, p)));
        }
        Ok(out)
    }
}

impl Inner {
    /// Rebuilds the index map and the vote, committed id and purge point from the group's
    /// records in the order they were written; returns the records they supersede.
    fn rebuild(&mut self, found: &[Found]) -> io::Result<Vec<u64>> {
        let mut superseded = Vec::new();
        let single = |f: &Found| -> io::Result<bytes::Bytes> {
            Ok(self.shared.read(self.group, [f.seq])?.remove(0))
        };
        let (mut vote, mut committed, mut purged) = (None, None, None);
        let mut truncations = Vec::new();
        for f in found {
            match f.kind {
                KIND_ENTRY => {
                    // An entry at an index already held replaces it and everything after
                    // (a truncation whose acks a crash lost).
                    superseded.extend(self.index.split_off(&f.index).into_values());
                    self.index.insert(f.index, f.seq);
                }
                KIND_TRUNCATED => {
                    superseded.extend(self.index.split_off(&f.index).into_values());
                    truncations.push((f.index, f.seq));
                }
                KIND_BODIES if self.needed.keep == Keep::Nothing => superseded.push(f.seq),
                KIND_BODIES => superseded.extend(self.bodies.insert(f.index, f.seq)),
                KIND_VOTE => {
                    let v: Vote<NodeId> = decode(&single(f)?)?;
                    superseded.extend(vote.replace((v, f.seq)).map(|v: (_, u64)| v.1));
                }
                KIND_COMMITTED => {
                    let c: Option<LogId<NodeId>> = decode(&single(f)?)?;
                    superseded.extend(committed.replace((c, f.seq)).map(|v: (_, u64)| v.1));
                }
                KIND_PURGED => {
                    let p: LogId<NodeId> = decode(&single(f)?)?;
                    superseded.extend(purged.replace((p, f.seq)).map(|v: (_, u64)| v.1));
                }
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "raft log of group {}: record {} of unknown kind {other}",
                            self.group, f.seq
                        ),
                    ))
                }
            }
        }
        self.vote = vote;
        self.committed = committed;
        self.purged = purged;
        self.truncations = truncations;
        if let Some((p, _)) = self.purged {
            // Purged entries: kept while the snapshot may refer to them (the state machine
            // says which it does once it has read its snapshot), acked otherwise (their
            // acks a crash lost).
            superseded.extend(self.pass_purge_point(p.index));
        }
        Ok(superseded)
    }

    /// Acks what `kept` and `bodies` hold that is no longer needed.
    fn prune(&mut self) -> io::Result<()> {
        let Inner {
            kept,
            bodies,
            needed,
            shared,
            ..
        } = self;
        let mut gone = Vec::new();
        for map in [kept, bodies] {
            map.retain(|&index, &mut seq| {
                let held = needed.holds(index);
                if !held {
                    gone.push(seq);
                }
                held
            });
        }
        shared.ack(gone)
    }

    /// Takes the entries through `index` out of the index map: those whose bodies are
    /// needed into `kept` (unless bodies installed for that index replace them); returns
    /// the records to ack, the rest of them and the truncation records passed.
    fn pass_purge_point(&mut self, index: u64) -> Vec<u64> {
        let above = self.index.split_off(&(index + 1));
        let passed = std::mem::replace(&mut self.index, above);
        let mut gone = self.passed_truncations(index);
        for (at, seq) in passed {
            if self.needed.holds(at) && !self.bodies.contains_key(&at) {
                gone.extend(self.kept.insert(at, seq));
            } else {
                gone.push(seq);
            }
        }
        gone
    }

    /// Drops the truncation records a purge through `index` makes needless (the entries
    /// they removed are below the purge point, or were replaced by entries written after
    /// them and committed); returns them.
    fn passed_truncations(&mut self, index: u64) -> Vec<u64> {
        let (gone, kept): (Vec<_>, Vec<_>) = self.truncations.iter().partition(|t| t.0 <= index);
        self.truncations = kept;
        gone.into_iter().map(|t| t.1).collect()
    }

    /// Appends records of `kind` (entries with their indexes); returns the first one's
    /// sequence number and the covering sync.
    fn append(&self, kind: u8, payloads: &[(u64, Vec<u8>)]) -> io::Result<(u64, Ticket)> {
        let items: Vec<Item<'_>> = payloads
            .iter()
            .map(|(index, p)| Item {
                kind,
                index: *index,
                payload: p,
            })
            .collect();
        self.shared.append(self.group, &items)
    }

    /// Writes a record that supersedes `old` (acked once the new one is appended).
    fn replace<T: Serialize>(
        &mut self,
        kind: u8,
        value: &T,
        old: Option<u64>,
    ) -> io::Result<(u64, Ticket)> {
        let payload = codec::encode(value)?;
        let (seq, ticket) = self.append(kind, &[(0, payload)])?;
        self.shared.ack(old)?;
        Ok((seq, ticket))
    }

    /// The entries in `range`, up to the first that brings their stored size to `bytes`
    /// (the first always, whatever its size).
    fn read_entries<C: GroupTypes>(
        &self,
        range: (Bound<u64>, Bound<u64>),
        bytes: usize,
    ) -> io::Result<Vec<Entry<C>>> {
        // In steps of 64 records (the shared log's lock is taken per step, and decoding
        // happens without it); sizes are known only once read.
        let mut entries = Vec::new();
        let mut size = 0usize;
        let mut next = range.0;
        loop {
            let seqs: Vec<(u64, u64)> = self
                .index
                .range((next, range.1))
                .take(64)
                .map(|(&at, &seq)| (at, seq))
                .collect();
            let Some(&(last, _)) = seqs.last() else {
                return Ok(entries);
            };
            let payloads = self.shared.read(self.group, seqs.iter().map(|s| s.1))?;
            for payload in payloads {
                if size >= bytes {
                    return Ok(entries);
                }
                size += payload.len();
                entries.push(decode(&payload)?);
            }
            next = Bound::Excluded(last);
        }
    }

    fn last_log_id<C: GroupTypes>(&self) -> io::Result<Option<LogId<NodeId>>> {
        match self.index.last_key_value() {
            Some((&at, _)) => Ok(self
                .read_entries::<C>((Bound::Included(at), Bound::Included(at)), usize::MAX)?
                .pop()
                .map(|e| *e.get_log_id())),
            None => Ok(None),
        }
    }
}

/// Waits, without blocking the runtime, for the sync covering `ticket`.
async fn durable(commit: &GroupCommit, ticket: Ticket) -> io::Result<()> {
    let mut rounds = commit.subscribe();
    loop {
        match commit.status(ticket) {
            Some(Ok(())) => return Ok(()),
            Some(Err(())) => return Err(io::Error::other("fdatasync failed")),
            None => {
                if rounds.changed().await.is_err() {
                    return Err(io::Error::other("the sync thread stopped"));
                }
            }
        }
    }
}

impl<C: GroupTypes> RaftLogReader<C> for LogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, Error> {
        let inner = self.inner.lock().await;
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        inner.read_entries(bounds, usize::MAX).map_err(read_logs)
    }

    /// What replication sends in one append: at most `APPEND_BYTES` of entries (at least
    /// one). openraft gives an append `heartbeat_interval` (250 ms for queue groups) and
    /// asks for up to `max_payload_entries` at once; a follower 64 entries of large
    /// messages behind was sent 64 MiB in each try, which could not be taken in time, and
    /// was sent the same again: it never caught up (`tests/cluster_quorum.rs`).
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<C>>, Error> {
        let inner = self.inner.lock().await;
        let bounds = (Bound::Included(start), Bound::Excluded(end));
        inner.read_entries(bounds, APPEND_BYTES).map_err(read_logs)
    }
}

impl<C: GroupTypes> RaftLogStorage<C> for LogStore<C> {
    type LogReader = LogStore<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, Error> {
        let inner = self.inner.lock().await;
        let last_purged_log_id = inner.purged.map(|p| p.0);
        let last = inner.last_log_id::<C>().map_err(read_logs)?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), Error> {
        let (commit, ticket) = {
            let mut inner = self.inner.lock().await;
            let old = inner.vote.map(|v| v.1);
            let (seq, ticket) = inner.replace(KIND_VOTE, vote, old).map_err(write_vote)?;
            inner.vote = Some((*vote, seq));
            (inner.shared.commit().clone(), ticket)
        };
        // Raft's safety rests on a vote never forgotten: durable before we answer.
        durable(&commit, ticket).await.map_err(write_vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, Error> {
        Ok(self.inner.lock().await.vote.map(|v| v.0))
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), Error> {
        let mut inner = self.inner.lock().await;
        let old = inner.committed.map(|c| c.1);
        // Not waited for: a committed id lost in a crash is found again from the leader.
        let (seq, _) = inner
            .replace(KIND_COMMITTED, &committed, old)
            .map_err(write_logs)?;
        inner.committed = Some((committed, seq));
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, Error> {
        Ok(self.inner.lock().await.committed.and_then(|c| c.0))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), Error>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<C>> = entries.into_iter().collect();
        let (commit, ticket) = {
            let mut inner = self.inner.lock().await;
            let payloads = entries
                .iter()
                .map(|e| Ok((e.get_log_id().index, codec::encode(e)?)))
                .collect::<io::Result<Vec<_>>>()
                .map_err(write_logs)?;
            let (first, ticket) = inner.append(KIND_ENTRY, &payloads).map_err(write_logs)?;
            let bytes: usize = payloads.iter().map(|p| p.1.len()).sum();
            self.appended.fetch_add(bytes as u64, Ordering::Relaxed);
            for (k, e) in entries.iter().enumerate() {
                let at = e.get_log_id().index;
                // openraft truncates before it appends over a conflict; an index still
                // held here is a bug in the caller, not something to paper over.
                assert!(
                    inner.index.range(at..).next().is_none(),
                    "raft append at index {at} over a held suffix"
                );
                inner.index.insert(at, first + k as u64);
            }
            (inner.shared.commit().clone(), ticket)
        };
        // The flush notification waits for the sync, not this call: openraft pipelines.
        tokio::spawn(async move {
            callback.log_io_completed(durable(&commit, ticket).await);
        });
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), Error> {
        let (commit, ticket) = {
            let mut inner = self.inner.lock().await;
            let doomed = inner.index.split_off(&log_id.index);
            if doomed.is_empty() {
                return Ok(());
            }
            let at = log_id.index;
            let (seq, ticket) = inner
                .append(KIND_TRUNCATED, &[(at, Vec::new())])
                .map_err(write_logs)?;
            inner.truncations.push((at, seq));
            inner.shared.ack(doomed.into_values()).map_err(write_logs)?;
            (inner.shared.commit().clone(), ticket)
        };
        // Durable before openraft goes on (as a cut-off suffix of an own log was).
        durable(&commit, ticket).await.map_err(write_logs)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), Error> {
        let started = std::time::Instant::now();
        if self.snapshot.0 .1.load(Ordering::Acquire) {
            let mut durable = self.snapshot.0 .0.subscribe();
            let covered = durable.wait_for(|&at| at >= log_id.index);
            if !matches!(
                tokio::time::timeout(SNAPSHOT_WAIT, covered).await,
                Ok(Ok(_))
            ) {
                let why = format!("purge to {}: no durable snapshot covers it", log_id.index);
                return Err(write_logs(io::Error::other(why)));
            }
        }
        let mut inner = self.inner.lock().await;
        let old = inner.purged.map(|p| p.1);
        let (seq, _) = inner
            .replace(KIND_PURGED, &log_id, old)
            .map_err(write_logs)?;
        inner.purged = Some((log_id, seq));
        let gone = inner.pass_purge_point(log_id.index);
        inner.shared.ack(gone).map_err(write_logs)?;
        tracing::debug!(upto = log_id.index, took = ?started.elapsed(), "cluster: log purged");
        Ok(())
    }
}
