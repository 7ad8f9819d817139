//! A read-only picture of one log's files, for operators (the web console's storage
//! view): how many segments it has, how many bytes they reserve and hold, and how much of
//! what was written is still live. Computed from per-segment counters the log keeps
//! anyway, so it costs O(segments) and touches no file.

use crate::log::Log;

/// What one log (or several, summed) holds on disk.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    /// Segment files.
    pub segments: u64,
    /// Bytes the segment files take (they are preallocated: their capacity).
    pub file_bytes: u64,
    /// Bytes written into them (headers and records, live or acked).
    pub written_bytes: u64,
    /// Records in the segments, acked or not (compaction removes acked ones).
    pub records: u64,
    /// Records not yet acked.
    pub live_records: u64,
}

impl LogStats {
    /// Adds another log's figures (a queue with priorities has one log per level).
    pub fn add(&mut self, o: &LogStats) {
        self.segments += o.segments;
        self.file_bytes += o.file_bytes;
        self.written_bytes += o.written_bytes;
        self.records += o.records;
        self.live_records += o.live_records;
    }
}

impl Log {
    /// This log's figures: one pass over its segments' counters.
    pub fn stats(&self) -> LogStats {
        let mut s = LogStats::default();
        for seg in &self.segments {
            s.segments += 1;
            s.file_bytes += seg.file().len() as u64;
            s.written_bytes += seg.write_pos() as u64;
            s.records += u64::from(seg.records());
            s.live_records += u64::from(seg.live());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use crate::{FsyncPolicy, GroupCommit, Log, LogConfig};

    #[test]
    fn stats_follow_appends_and_acks() {
        let dir = tempfile::tempdir().unwrap();
        let commit = GroupCommit::start(FsyncPolicy::Never);
        let (mut log, _) = Log::open(&dir.path().join("q"), LogConfig::default(), commit).unwrap();
        let empty = log.stats();
        assert_eq!(
            (empty.segments, empty.records, empty.live_records),
            (1, 0, 0)
        );
        for _ in 0..10 {
            log.append(0, false, &[7u8; 100]).unwrap();
        }
        log.ack(3).unwrap();
        let s = log.stats();
        assert_eq!((s.records, s.live_records), (10, 9));
        assert!(s.written_bytes > 1000 && s.written_bytes <= s.file_bytes);
    }
}
