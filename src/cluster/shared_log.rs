//! One engine log holding the Raft logs of many groups: a node's quorum-queue groups all
//! write their entries, votes, committed ids, purge points and truncations into one
//! `warren_storage::Log` (`DATA_DIR/cluster/queue-log/`), each record tagged with its
//! group, so a sync round flushes one file however many groups wrote in it.
//!
//! Why: a round of group commit fdatasyncs every file dirtied in it. With a log per group,
//! a node with a thousand busy groups flushed a thousand files per round (the engine's
//! criterion bench: 64 appenders on one log 98.9 k durable appends/s, on 64 logs 22.5 k;
//! BENCHMARKS.md "Storage engine"). The per-group view (Raft index -> sequence number)
//! is kept by each group's `LogStore`; this file only stores, finds and reclaims records.
//!
//! A record's payload is a 16-byte tag (group number, Raft index; both little-endian, the
//! index 0 for records that are not entries) followed by what the group's store wrote.
//! Opening the log reads every tag once (no entry is decoded) and keeps each group's
//! records until the group claims them. Space comes back as in any engine log: records
//! acked by purges and truncations leave segments that are deleted when empty, and
//! compacted (live records copied, sequence numbers kept) when sparse, so an idle group's
//! last entries do not pin a busy group's old segments.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use warren_storage::{BatchRecord, Cursor, GroupCommit, Log, LogConfig, Ticket};

/// Bytes of the tag before each record's own payload.
const TAG_LEN: usize = 16;

/// A record found at open, waiting for its group to claim it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub seq: u64,
    pub kind: u8,
    /// The Raft index the record names (entries and truncations), else 0.
    pub index: u64,
}

/// One record to append: its kind, the Raft index it names (or 0), and its payload.
pub struct Item<'a> {
    pub kind: u8,
    pub index: u64,
    pub payload: &'a [u8],
}

pub struct SharedLog {
    log: Mutex<Log>,
    commit: Arc<GroupCommit>,
    dir: PathBuf,
    /// What open found, by group, until the group's store claims it.
    unclaimed: Mutex<HashMap<u64, Vec<Found>>>,
}

fn tag(group: u64, index: u64) -> [u8; TAG_LEN] {
    let mut t = [0u8; TAG_LEN];
    t[..8].copy_from_slice(&group.to_le_bytes());
    t[8..].copy_from_slice(&index.to_le_bytes());
    t
}

fn untag(payload: &[u8]) -> Option<(u64, u64)> {
    let group = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let index = u64::from_le_bytes(payload.get(8..TAG_LEN)?.try_into().ok()?);
    Some((group, index))
}

impl SharedLog {
    /// Opens (or creates) the log in `dir` and sorts its records by group.
    pub fn open(dir: &Path, config: LogConfig, commit: Arc<GroupCommit>) -> io::Result<Arc<Self>> {
        let (log, report) = Log::open(dir, config, commit.clone())?;
        if !report.is_clean() {
            tracing::warn!(dir = %dir.display(), "raft log recovered: {report:?}");
        }
        let mut unclaimed: HashMap<u64, Vec<Found>> = HashMap::new();
        let mut cursor = Cursor::at(0);
        while let Some(rec) = log.read_next(&mut cursor) {
            let (group, index) = untag(&rec.payload).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: record {} is {} bytes, shorter than its group tag",
                        dir.display(),
                        rec.seq,
                        rec.payload.len()
                    ),
                )
            })?;
            unclaimed.entry(group).or_default().push(Found {
                seq: rec.seq,
                kind: rec.kind(),
                index,
            });
        }
        Ok(Arc::new(SharedLog {
            log: Mutex::new(log),
            commit,
            dir: dir.to_path_buf(),
            unclaimed: Mutex::new(unclaimed),
        }))
    }

    pub fn commit(&self) -> &Arc<GroupCommit> {
        &self.commit
    }

    /// The records open found for `group`, in the order they were written (each group
    /// claims its records once; a group opened anew finds none).
    pub fn claim(&self, group: u64) -> Vec<Found> {
        self.unclaimed
            .lock()
            .expect("unclaimed")
            .remove(&group)
            .unwrap_or_default()
    }

    /// Groups with records no store has claimed (a group removed while this node was
    /// down leaves its records here).
    pub fn unclaimed_groups(&self) -> Vec<u64> {
        let mut groups: Vec<u64> = self
            .unclaimed
            .lock()
            .expect("unclaimed")
            .keys()
            .copied()
            .collect();
        groups.sort_unstable();
        groups
    }

    /// Appends `items` for `group` as consecutive records (persistent: synced under
    /// `--fsync always` before their ticket completes); returns the first one's sequence
    /// number and the covering sync.
    pub fn append(&self, group: u64, items: &[Item<'_>]) -> io::Result<(u64, Ticket)> {
        let tags: Vec<[u8; TAG_LEN]> = items.iter().map(|i| tag(group, i.index)).collect();
        let parts: Vec<[&[u8]; 2]> = items
            .iter()
            .zip(&tags)
            .map(|(i, t)| [&t[..], i.payload])
            .collect();
        let batch: Vec<BatchRecord<'_>> = items
            .iter()
            .zip(&parts)
            .map(|(i, p)| BatchRecord {
                timestamp: 0,
                persistent: true,
                kind: i.kind,
                parts: p,
            })
            .collect();
        self.log.lock().expect("shared log").append_batch(&batch)
    }

    /// The payloads of records `seqs` of `group` (the tag removed), in order. A record
    /// that is gone, or tagged with another group, is an error naming it.
    pub fn read(&self, group: u64, seqs: impl IntoIterator<Item = u64>) -> io::Result<Vec<Bytes>> {
        let log = self.log.lock().expect("shared log");
        seqs.into_iter()
            .map(|seq| {
                let rec = log.read(seq).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{}: record {seq} missing", self.dir.display()),
                    )
                })?;
                match untag(&rec.payload) {
                    Some((g, _)) if g == group => Ok(rec.payload.slice(TAG_LEN..)),
                    _ => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: record {seq} is not group {group}'s",
                            self.dir.display()
                        ),
                    )),
                }
            })
            .collect()
    }

    /// Acks records (they are never read again; their space comes back with upkeep).
    pub fn ack(&self, seqs: impl IntoIterator<Item = u64>) -> io::Result<()> {
        let mut log = self.log.lock().expect("shared log");
        for seq in seqs {
            log.ack(seq)?;
        }
        Ok(())
    }

    /// Acks records and writes the acks out at once (not synced): for a deleted group,
    /// whose records should not come back after a kill -9 to wait unclaimed.
    pub fn ack_and_flush(&self, seqs: impl IntoIterator<Item = u64>) -> io::Result<()> {
        let flush = {
            let mut log = self.log.lock().expect("shared log");
            for seq in seqs {
                log.ack(seq)?;
            }
            log.take_ack_flush()
        };
        flush.write()
    }

    /// Writes pending acks and compacts sparse segments, the file I/O without the lock
    /// (appends go on meanwhile). Run periodically.
    pub fn upkeep(&self) -> io::Result<()> {
        let (flush, jobs) = {
            let mut log = self.log.lock().expect("shared log");
            (log.take_ack_flush(), log.plan_compaction())
        };
        flush.write()?;
        let mut installed = false;
        for job in jobs {
            let done = job.run()?;
            installed |= self
                .log
                .lock()
                .expect("shared log")
                .install_compaction(done)?;
        }
        if installed {
            warren_storage::segment::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Bytes of segment files on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.log.lock().expect("shared log").disk_bytes()
    }
}

/// Runs `upkeep` on `log` every `every` until the runtime stops (on a blocking thread:
/// compaction writes and syncs files).
pub fn spawn_upkeep(log: Arc<SharedLog>, every: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let log = log.clone();
            match tokio::task::spawn_blocking(move || log.upkeep()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("cluster: raft log upkeep: {e}"),
                Err(_) => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_storage::FsyncPolicy;

    fn config() -> LogConfig {
        LogConfig {
            segment_size: 4096,
            first_segment_size: 4096,
            ..LogConfig::default()
        }
    }

    #[test]
    fn records_are_found_again_by_group_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let commit = GroupCommit::start(FsyncPolicy::Always);
        let log = SharedLog::open(dir.path(), config(), commit.clone()).unwrap();
        let item = |kind, index, payload| Item {
            kind,
            index,
            payload,
        };
        let (a, t) = log
            .append(7, &[item(1, 1, b"a1"), item(1, 2, b"a2")])
            .unwrap();
        commit.wait(t).unwrap();
        let (b, _) = log.append(9, &[item(2, 0, b"vote")]).unwrap();
        let (c, t) = log.append(7, &[item(1, 3, b"a3")]).unwrap();
        commit.wait(t).unwrap();
        assert_eq!(log.read(7, [a + 1, c]).unwrap(), [&b"a2"[..], b"a3"]);
        assert!(log.read(7, [b]).is_err(), "group 9's record is not 7's");
        // Acked and written out (an ack only in memory is lost with the process).
        log.ack_and_flush([a]).unwrap();
        drop(log);

        let log = SharedLog::open(dir.path(), config(), commit).unwrap();
        assert_eq!(log.unclaimed_groups(), [7, 9]);
        let found = log.claim(7);
        let seen: Vec<(u64, u8, u64)> = found.iter().map(|f| (f.seq, f.kind, f.index)).collect();
        assert_eq!(seen, [(a + 1, 1, 2), (c, 1, 3)]);
        assert!(log.claim(7).is_empty(), "claimed once");
        assert_eq!(
            log.claim(9),
            [Found {
                seq: b,
                kind: 2,
                index: 0
            }]
        );
    }

    #[test]
    fn a_record_without_a_tag_is_reported_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let commit = GroupCommit::start(FsyncPolicy::Never);
        {
            let (mut log, _) = Log::open(dir.path(), config(), commit.clone()).unwrap();
            log.append(0, true, b"short").unwrap();
        }
        let err = SharedLog::open(dir.path(), config(), commit).err().unwrap();
        assert!(err.to_string().contains("record 0"), "{err}");
    }

    #[test]
    fn upkeep_compacts_what_an_idle_group_pins() {
        let dir = tempfile::tempdir().unwrap();
        let commit = GroupCommit::start(FsyncPolicy::Never);
        let log = SharedLog::open(dir.path(), config(), commit).unwrap();
        let body = [5u8; 200];
        let mut busy = Vec::new();
        let mut idle = Vec::new();
        for k in 0..200u64 {
            let group = if k % 20 == 0 { 2 } else { 1 };
            let (seq, _) = log
                .append(
                    group,
                    &[Item {
                        kind: 1,
                        index: k,
                        payload: &body,
                    }],
                )
                .unwrap();
            if group == 1 { &mut busy } else { &mut idle }.push(seq);
        }
        let before = log.disk_bytes();
        log.ack(busy).unwrap();
        log.upkeep().unwrap();
        assert!(
            log.disk_bytes() < before / 2,
            "{} of {before} bytes left",
            log.disk_bytes()
        );
        assert_eq!(log.read(2, idle.iter().copied()).unwrap().len(), 10);
    }
}
