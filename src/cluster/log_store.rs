//! A Raft group's log in a Warren segment log (`warren_storage::Log`): openraft's
//! `RaftLogStorage` over the engine's CRC-checked records, group commit and suffix
//! truncation.
//!
//! A group's directory holds two engine logs: `entries/`, the Raft log entries in index
//! order, and `meta/`, the vote, the committed log id and the purge point (the last log id
//! purged), each record superseding (acking) its predecessor of the same kind. Keeping them
//! apart lets a truncation remove a suffix of `entries/` whole (`Log::truncate_from`)
//! without touching the vote. Raft indexes are not the engine's sequence numbers (those are
//! never reused, and a truncated suffix is written again at the same indexes): an index map
//! from Raft index to sequence number is rebuilt at open by reading `entries/` in order.
//!
//! Durability is what Raft needs: `append` reports an entry flushed only once its sync
//! (the engine's group commit, shared with every other log of the process) has completed;
//! `save_vote` returns only once the vote is durable; `truncate` is durable when it returns
//! (`Log::truncate_from`). Entries and records are MessagePack (`codec.rs`); the JSON
//! of logs written before that still reads.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, OptionalSend, RaftLogId, RaftLogReader, StorageError, StorageIOError,
    Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Mutex;
use warren_storage::{BatchRecord, Cursor, GroupCommit, Log, LogConfig, Ticket};

use super::codec;
use super::types::GroupTypes;

type NodeId = u64;
type Error = StorageError<NodeId>;

/// Record kinds (`BatchRecord::kind`).
const KIND_ENTRY: u8 = 1;
const KIND_VOTE: u8 = 2;
const KIND_COMMITTED: u8 = 3;
const KIND_PURGED: u8 = 4;

/// A group's log store; clones share it (the log reader openraft asks for is a clone).
/// `C` is the group's kind (a queue group, the metadata group).
pub struct LogStore<C> {
    inner: Arc<Mutex<Inner>>,
    /// Bytes appended since the log was opened (`log_growth.rs` asks for snapshots by it).
    appended: Arc<AtomicU64>,
    kind: PhantomData<fn() -> C>,
}

impl<C> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            inner: self.inner.clone(),
            appended: self.appended.clone(),
            kind: PhantomData,
        }
    }
}

struct Inner {
    log: Log,
    meta: Log,
    commit: Arc<GroupCommit>,
    /// Raft index -> sequence number of the live entry at that index.
    index: BTreeMap<u64, u64>,
    vote: Option<(Vote<NodeId>, u64)>,
    committed: Option<(Option<LogId<NodeId>>, u64)>,
    purged: Option<(LogId<NodeId>, u64)>,
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

/// The first segment of a group's logs. Segments are written with zeros when created
/// (file.rs: so later syncs are pure data flushes), so the whole first segment sits in the
/// page cache, and the kernel maps all of it into the process at the first touch (fault-
/// around). A node holds two logs per queue group and a cluster may have thousands of
/// idle groups: 4 KiB, not the engine's 64, keeps that to a page each.
const GROUP_FIRST_SEGMENT: usize = 4 * 1024;

/// Bytes of entries replication sends in one append (`limited_get_log_entries`).
const APPEND_BYTES: usize = 4 << 20;

fn decode<T: DeserializeOwned>(payload: &[u8]) -> io::Result<T> {
    codec::decode(payload)
}

impl<C: GroupTypes> LogStore<C> {
    /// Opens (or creates) the log in `dir`: the index map, vote, committed id and purge
    /// point are read back from its records.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        commit: Arc<GroupCommit>,
    ) -> io::Result<LogStore<C>> {
        let config = LogConfig {
            first_segment_size: GROUP_FIRST_SEGMENT,
            ..config
        };
        let open = |name: &str| -> io::Result<Log> {
            let (log, report) = Log::open(&dir.join(name), config.clone(), commit.clone())?;
            if !report.is_clean() {
                tracing::warn!(dir = %dir.display(), "raft {name} log recovered: {report:?}");
            }
            Ok(log)
        };
        std::fs::create_dir_all(dir)?;
        let mut inner = Inner {
            log: open("entries")?,
            meta: open("meta")?,
            commit,
            index: BTreeMap::new(),
            vote: None,
            committed: None,
            purged: None,
        };
        let mut cursor = Cursor::at(0);
        let mut superseded = Vec::new();
        while let Some(rec) = inner.log.read_next(&mut cursor) {
            let entry: Entry<C> = decode(&rec.payload)?;
            let at = entry.get_log_id().index;
            // An entry at an index already held replaces it and everything after (a
            // truncation a crash undid; `truncate_from` is durable, this makes it harmless).
            superseded.extend(inner.index.split_off(&at).into_values());
            inner.index.insert(at, rec.seq);
        }
        let mut meta_superseded = Vec::new();
        let mut cursor = Cursor::at(0);
        while let Some(rec) = inner.meta.read_next(&mut cursor) {
            let superseded = &mut meta_superseded;
            match rec.kind() {
                KIND_VOTE => {
                    let vote = decode(&rec.payload)?;
                    superseded.extend(inner.vote.replace((vote, rec.seq)).map(|v| v.1));
                }
                KIND_COMMITTED => {
                    let c = decode(&rec.payload)?;
                    superseded.extend(inner.committed.replace((c, rec.seq)).map(|v| v.1));
                }
                KIND_PURGED => {
                    let p = decode(&rec.payload)?;
                    superseded.extend(inner.purged.replace((p, rec.seq)).map(|v| v.1));
                }
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: record {} of unknown kind {other}",
                            dir.display(),
                            rec.seq
                        ),
                    ))
                }
            }
        }
        if let Some((p, _)) = inner.purged {
            // Purged entries whose acks a crash lost.
            let kept = inner.index.split_off(&(p.index + 1));
            superseded.extend(std::mem::replace(&mut inner.index, kept).into_values());
        }
        for seq in superseded {
            inner.log.ack(seq)?;
        }
        for seq in meta_superseded {
            inner.meta.ack(seq)?;
        }
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
            appended: Arc::default(),
            kind: PhantomData,
        })
    }

    /// The count of bytes appended to this log from now on.
    pub fn appended_bytes(&self) -> Arc<AtomicU64> {
        self.appended.clone()
    }
}

impl Inner {
    /// Appends records of `kind` to `entries/` (KIND_ENTRY) or `meta/`; returns the first
    /// one's sequence number and the covering sync.
    fn append(&mut self, kind: u8, payloads: &[Vec<u8>]) -> io::Result<(u64, Ticket)> {
        let parts: Vec<[&[u8]; 1]> = payloads.iter().map(|p| [&p[..]]).collect();
        let batch: Vec<BatchRecord<'_>> = parts
            .iter()
            .map(|p| BatchRecord {
                timestamp: 0,
                persistent: true,
                kind,
                parts: p,
            })
            .collect();
        match kind {
            KIND_ENTRY => self.log.append_batch(&batch),
            _ => self.meta.append_batch(&batch),
        }
    }

    /// Writes a record that supersedes `old` (acked once the new one is appended).
    fn replace<T: Serialize>(
        &mut self,
        kind: u8,
        value: &T,
        old: Option<u64>,
    ) -> io::Result<(u64, Ticket)> {
        let payload = codec::encode(value)?;
        let (seq, ticket) = self.append(kind, &[payload])?;
        if let Some(old) = old {
            self.meta.ack(old)?;
        }
        Ok((seq, ticket))
    }

    /// The entries in `range`, up to the first that brings their stored size to `bytes`
    /// (the first always, whatever its size).
    fn read_entries<C: GroupTypes>(
        &self,
        range: (Bound<u64>, Bound<u64>),
        bytes: usize,
    ) -> io::Result<Vec<Entry<C>>> {
        let mut entries = Vec::new();
        let mut size = 0usize;
        for (&at, &seq) in self.index.range(range) {
            if size >= bytes {
                break;
            }
            let rec = self.log.read(seq).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("raft entry {at} (record {seq}) missing"),
                )
            })?;
            size += rec.payload.len();
            entries.push(decode(&rec.payload)?);
        }
        Ok(entries)
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
            (inner.commit.clone(), ticket)
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
                .map(codec::encode)
                .collect::<io::Result<Vec<_>>>()
                .map_err(write_logs)?;
            let (first, ticket) = inner.append(KIND_ENTRY, &payloads).map_err(write_logs)?;
            let bytes: usize = payloads.iter().map(Vec::len).sum();
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
            (inner.commit.clone(), ticket)
        };
        // The flush notification waits for the sync, not this call: openraft pipelines.
        tokio::spawn(async move {
            callback.log_io_completed(durable(&commit, ticket).await);
        });
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), Error> {
        let mut inner = self.inner.lock().await;
        let doomed = inner.index.split_off(&log_id.index);
        if let Some(&first) = doomed.values().next() {
            inner.log.truncate_from(first).map_err(write_logs)?;
        }
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), Error> {
        let started = std::time::Instant::now();
        let mut inner = self.inner.lock().await;
        let old = inner.purged.map(|p| p.1);
        let (seq, _) = inner
            .replace(KIND_PURGED, &log_id, old)
            .map_err(write_logs)?;
        inner.purged = Some((log_id, seq));
        let kept = inner.index.split_off(&(log_id.index + 1));
        let gone = std::mem::replace(&mut inner.index, kept);
        for seq in gone.into_values() {
            inner.log.ack(seq).map_err(write_logs)?;
        }
        tracing::debug!(upto = log_id.index, took = ?started.elapsed(), "cluster: log purged");
        Ok(())
    }
}
