//! What the engine measures about itself, for the broker's metrics: how long sync rounds
//! take, how many appends each one covers, and what compaction reclaims.
//!
//! Recording is a few relaxed atomic adds with no allocation and no lock, so it can sit on
//! the sync thread's path; reading takes a copy (`snapshot`) whose fields may be a few
//! observations apart from each other, which is what a scrape needs.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds of the sync-round duration buckets, in nanoseconds: 50 µs to 2.5 s.
pub const FSYNC_BOUNDS_NS: [u64; 15] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
];

/// Upper bounds of the group-commit batch buckets, in appends per sync round.
pub const BATCH_BOUNDS: [u64; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// A histogram of integer observations over fixed bounds (`N` finite buckets and one for
/// everything above the last bound).
#[derive(Debug)]
pub struct AtomicHistogram<const N: usize> {
    bounds: &'static [u64; N],
    /// Per bucket (not cumulative); index `N` is above every bound.
    buckets: [AtomicU64; N],
    over: AtomicU64,
    sum: AtomicU64,
    count: AtomicU64,
}

/// A copy of a histogram: per-bucket counts with their upper bounds, the sum and count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// (upper bound, observations in this bucket alone), ascending; the last one's bound
    /// is `u64::MAX` (+Inf).
    pub buckets: Vec<(u64, u64)>,
    pub sum: u64,
    pub count: u64,
}

impl<const N: usize> AtomicHistogram<N> {
    pub const fn new(bounds: &'static [u64; N]) -> Self {
        AtomicHistogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; N],
            over: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation: three relaxed adds.
    pub fn observe(&self, v: u64) {
        let i = self.bounds.partition_point(|&b| b < v);
        match self.buckets.get(i) {
            Some(b) => b.fetch_add(1, Relaxed),
            None => self.over.fetch_add(1, Relaxed),
        };
        self.sum.fetch_add(v, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets: Vec<(u64, u64)> = self
            .bounds
            .iter()
            .zip(&self.buckets)
            .map(|(&b, c)| (b, c.load(Relaxed)))
            .collect();
        buckets.push((u64::MAX, self.over.load(Relaxed)));
        // The count is the buckets' total, so a scrape is self-consistent even while the
        // sync thread observes.
        let count = buckets.iter().map(|(_, n)| n).sum();
        HistogramSnapshot {
            buckets,
            sum: self.sum.load(Relaxed),
            count,
        }
    }
}

/// The engine's measurements, one set per `GroupCommit` (that is, per broker: every log
/// of a broker shares it).
#[derive(Debug)]
pub struct StorageMetrics {
    /// Wall time of each sync round (all its fdatasyncs), in nanoseconds.
    pub fsync_ns: AtomicHistogram<15>,
    /// Appends (`GroupCommit::register` calls: one per log per append batch) that each
    /// sync round made durable.
    pub batch: AtomicHistogram<11>,
    compactions: AtomicU64,
    reclaimed: AtomicU64,
}

impl Default for StorageMetrics {
    fn default() -> Self {
        StorageMetrics {
            fsync_ns: AtomicHistogram::new(&FSYNC_BOUNDS_NS),
            batch: AtomicHistogram::new(&BATCH_BOUNDS),
            compactions: AtomicU64::new(0),
            reclaimed: AtomicU64::new(0),
        }
    }
}

/// A copy of `StorageMetrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSnapshot {
    pub fsync_ns: HistogramSnapshot,
    pub batch: HistogramSnapshot,
    /// Compacted segment files installed.
    pub compactions: u64,
    /// Bytes those compactions saved.
    pub reclaimed_bytes: u64,
}

impl StorageMetrics {
    /// A compacted segment was installed, saving `bytes`.
    pub fn compacted(&self, bytes: u64) {
        self.compactions.fetch_add(1, Relaxed);
        self.reclaimed.fetch_add(bytes, Relaxed);
    }

    pub fn snapshot(&self) -> StorageSnapshot {
        StorageSnapshot {
            fsync_ns: self.fsync_ns.snapshot(),
            batch: self.batch.snapshot(),
            compactions: self.compactions.load(Relaxed),
            reclaimed_bytes: self.reclaimed.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_buckets() {
        static BOUNDS: [u64; 3] = [1, 10, 100];
        let h = AtomicHistogram::new(&BOUNDS);
        for v in [0, 1, 2, 10, 11, 100, 101, 5000] {
            h.observe(v);
        }
        let s = h.snapshot();
        // le=1: 0 and 1; le=10: 2 and 10; le=100: 11 and 100; above: 101 and 5000.
        assert_eq!(s.buckets, vec![(1, 2), (10, 2), (100, 2), (u64::MAX, 2)]);
        assert_eq!(s.count, 8);
        assert_eq!(s.sum, 5225);
    }
}
