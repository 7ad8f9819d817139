//! Removing a log's suffix: what a Raft follower does with its uncommitted entries when a
//! new leader's log disagrees with them (the cluster's replicated queues keep their Raft
//! log in a Warren log).
//!
//! A truncated record is acked, like any record that leaves the log, so the engine's
//! invariants hold unchanged: sequence numbers are never reused (the next append gets
//! `next_seq` as before; a Raft layer maps its own indexes onto them) and recovery needs no
//! new case. What truncation adds is durability: a queue's acks may be lost in a crash
//! (the message comes back as a redelivery), a truncated Raft entry must never come back.
//! So every pending ack batch is written and synced, and the directory with it, before a
//! segment left empty is deleted and before the call returns.

use std::fs::File;
use std::io;

use crate::log::{Cursor, Log};
use crate::sync::FsyncPolicy;
use crate::{acks, file, segment};

impl Log {
    /// Removes every live record whose sequence number is `from` or later; returns how
    /// many. Under any fsync policy but `never` the removal is durable when this returns.
    pub fn truncate_from(&mut self, from: u64) -> io::Result<u64> {
        let mut doomed = Vec::new();
        let mut cursor = Cursor::at(from);
        while let Some(rec) = self.read_next(&mut cursor) {
            doomed.push(rec.seq);
        }
        for &seq in &doomed {
            let i = self
                .segment_index(seq)
                .expect("a record just read has a segment");
            let was_live = self.segments[i].ack(seq);
            assert!(
                was_live,
                "record {seq} read as live but not live in its segment"
            );
            self.live -= 1;
            self.unflushed[i].1.push(seq);
        }
        let sync = self.commit.policy() != FsyncPolicy::Never;
        let mut wrote = false;
        for (base, batch) in self.unflushed.iter_mut() {
            if batch.is_empty() {
                continue;
            }
            let path = self.dir.join(segment::ack_file_name(*base));
            acks::append_batch(&path, batch)?;
            if sync {
                File::open(&path)?.sync_data()?;
            }
            batch.clear();
            wrote = true;
        }
        if wrote && sync {
            // A new ack file's directory entry, before any segment file goes.
            file::sync_dir(&self.dir)?;
        }
        self.drop_empty_segments()?;
        Ok(doomed.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogConfig;
    use crate::sync::GroupCommit;

    fn config() -> LogConfig {
        LogConfig {
            segment_size: 4096,
            compact_below: 0.5,
            ack_batch: 1024,
            ..LogConfig::default()
        }
    }

    fn body(seq: u64) -> Vec<u8> {
        format!("entry-{seq}-{}", "x".repeat(200)).into_bytes()
    }

    fn live_seqs(log: &Log) -> Vec<u64> {
        let mut cursor = Cursor::at(0);
        let mut out = Vec::new();
        while let Some(rec) = log.read_next(&mut cursor) {
            assert_eq!(&rec.payload[..], &body(rec.seq)[..]);
            out.push(rec.seq);
        }
        out
    }

    #[test]
    fn a_truncated_suffix_is_gone_now_after_a_reopen_and_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let commit = GroupCommit::start(FsyncPolicy::Always);
        let (mut log, _) = Log::open(dir.path(), config(), commit.clone()).unwrap();
        for seq in 0..100 {
            assert_eq!(log.append(0, true, &body(seq)).unwrap().seq, seq);
        }
        // Some acks still pending in memory below the cut: they stay acked.
        log.ack(3).unwrap();
        log.ack(10).unwrap();
        let segments_before = log.segment_count();
        assert!(segments_before > 3, "the suffix spans several segments");
        assert_eq!(log.truncate_from(40).unwrap(), 60);
        assert!(
            log.segment_count() < segments_before,
            "emptied segments are deleted"
        );
        let expected: Vec<u64> = (0..40).filter(|s| *s != 3 && *s != 10).collect();
        assert_eq!(live_seqs(&log), expected);
        assert_eq!(log.live(), 38);
        assert!(log.read(40).is_none() && log.read(99).is_none());
        // Sequence numbers are not reused.
        assert_eq!(log.next_seq(), 100);
        assert_eq!(log.append(0, true, &body(100)).unwrap().seq, 100);
        // A kill -9 now: the files as they are, opened by a new log.
        let snap = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), snap.path().join(entry.file_name())).unwrap();
        }
        let (crashed, report) = Log::open(snap.path(), config(), commit.clone()).unwrap();
        assert!(report.is_clean(), "{report:?}");
        let mut after: Vec<u64> = expected.clone();
        after.push(100);
        assert_eq!(live_seqs(&crashed), after);
        drop(crashed);
        log.close().unwrap();
        let (reopened, _) = Log::open(dir.path(), config(), commit).unwrap();
        assert_eq!(live_seqs(&reopened), after);
        assert_eq!(reopened.next_seq(), 101);
    }

    #[test]
    fn truncating_past_the_end_or_everything() {
        let dir = tempfile::tempdir().unwrap();
        let commit = GroupCommit::start(FsyncPolicy::Never);
        let (mut log, _) = Log::open(dir.path(), config(), commit).unwrap();
        for seq in 0..30 {
            log.append(0, true, &body(seq)).unwrap();
        }
        assert_eq!(log.truncate_from(30).unwrap(), 0);
        assert_eq!(log.truncate_from(1_000).unwrap(), 0);
        assert_eq!(log.live(), 30);
        assert_eq!(log.truncate_from(0).unwrap(), 30);
        assert_eq!(log.live(), 0);
        assert!(live_seqs(&log).is_empty());
        assert_eq!(log.append(0, true, &body(30)).unwrap().seq, 30);
        assert_eq!(live_seqs(&log), vec![30]);
    }
}
