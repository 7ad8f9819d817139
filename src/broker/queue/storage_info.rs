//! What a queue's messages take on disk, for operators (the web console's storage view):
//! its logs' segment figures summed over priority levels, and what compaction last did
//! to it. Read-only, O(segments): nothing here reads a record or a file.

use warren_storage::LogStats;

use super::store::Store;

/// Compaction of one queue since the broker started (the figures are not persisted:
/// after a restart a queue shows none until its next compaction).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompactionRecord {
    /// When the last compacted segment was installed, in milliseconds since the epoch.
    pub last_at: u64,
    /// Bytes that last compaction saved.
    pub last_reclaimed: u64,
    /// Compacted segments installed, and the bytes they saved in all.
    pub count: u64,
    pub reclaimed: u64,
}

impl CompactionRecord {
    /// Notes one installed compaction that saved `bytes` at `now` (ms since the epoch).
    pub fn record(&mut self, now: u64, bytes: u64) {
        self.last_at = now;
        self.last_reclaimed = bytes;
        self.count += 1;
        self.reclaimed = self.reclaimed.saturating_add(bytes);
    }
}

/// A queue's storage picture.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueStorage {
    pub logs: LogStats,
    /// Logs: one, or one per priority level in use.
    pub levels: u64,
    pub compaction: Option<CompactionRecord>,
}

impl Store {
    /// The segment figures of every level's log, summed, and how many logs there are.
    pub fn storage_stats(&self) -> (LogStats, u64) {
        let mut total = LogStats::default();
        let mut levels = 0;
        for level in self.levels.iter().flatten() {
            total.add(&level.log.stats());
            levels += 1;
        }
        (total, levels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_keeps_the_last_and_the_totals() {
        let mut r = CompactionRecord::default();
        r.record(1000, 500);
        r.record(2000, 300);
        assert_eq!(
            r,
            CompactionRecord {
                last_at: 2000,
                last_reclaimed: 300,
                count: 2,
                reclaimed: 800
            }
        );
    }
}
