//! When a quorum queue's group takes a snapshot: by how much its log has grown, not by
//! its number of entries.
//!
//! openraft snapshots every `LogsSinceLast(n)` entries and purges a log only up to a
//! snapshot. A queue group's entry is a batch of messages, from a few bytes to many
//! megabytes, so no entry count suits every queue: at openraft's 5,000, a group taking
//! 1 KiB messages at 55 k/s (entries of about 560 KB) would hold some 2.8 GB of log on
//! each node before its first snapshot, and every new segment of that log was fallocated and zero-filled (a quarter
//! of the leader's CPU under `perf`; a purged segment would have been reused as a spare,
//! already written). So each node also asks for a snapshot once its log of the group has
//! grown by `max(every, 4 × the last snapshot)` since it last asked (`every`:
//! `--cluster-snapshot-every`, 64 MiB by default): a short queue snapshots every 64 MiB of
//! log and reuses its segments; a long one (a snapshot names every message it holds)
//! spends at most a quarter of what it writes on snapshots.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use super::node::ClusterNode;

/// Log growth between snapshots while the queue's state is small, by default.
pub const SNAPSHOT_EVERY: u64 = 64 << 20;
/// How often the node looks at its queue groups' logs.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// One group's log growth on this node.
pub struct LogGrowth {
    /// Bytes appended to the group's log since it was opened (`LogStore::append`).
    appended: Arc<AtomicU64>,
    /// Size of the last snapshot this node built (`Machine::build_snapshot`).
    snapshot: Arc<AtomicU64>,
    /// `appended` when this node last asked for a snapshot.
    asked_at: AtomicU64,
    /// Growth between snapshots while the state is small.
    every: u64,
}

impl LogGrowth {
    pub fn new(appended: Arc<AtomicU64>, snapshot: Arc<AtomicU64>, every: u64) -> LogGrowth {
        LogGrowth {
            appended,
            snapshot,
            asked_at: AtomicU64::new(0),
            every,
        }
    }

    /// Whether the log has grown enough since the last ask; if so this counts as the ask.
    pub fn take_due(&self) -> bool {
        let now = self.appended.load(Relaxed);
        let since = now.saturating_sub(self.asked_at.load(Relaxed));
        let every = self
            .every
            .max(self.snapshot.load(Relaxed).saturating_mul(4));
        if since < every {
            return false;
        }
        self.asked_at.store(now, Relaxed);
        true
    }
}

impl ClusterNode {
    /// Asks each queue group whose log here has grown enough for a snapshot
    /// (`trigger().snapshot()`: built in the background, then the log is purged up to it).
    pub(super) async fn snapshot_grown_logs(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(LOOK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let due: Vec<_> = {
                let open = self.queue_groups.read().expect("groups");
                open.values()
                    .filter(|g| g.growth.as_ref().is_some_and(|g| g.take_due()))
                    .cloned()
                    .collect()
            };
            for g in due {
                tracing::debug!(group = %g.name, "cluster: log grown; snapshot asked for");
                let _ = g.raft.trigger().snapshot().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_due_every_64_mib_or_four_snapshots_of_growth() {
        let (appended, snapshot) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let g = LogGrowth::new(appended.clone(), snapshot.clone(), SNAPSHOT_EVERY);
        assert!(!g.take_due());
        appended.store(SNAPSHOT_EVERY - 1, Relaxed);
        assert!(!g.take_due());
        appended.store(SNAPSHOT_EVERY, Relaxed);
        assert!(g.take_due());
        assert!(!g.take_due(), "asked once for that growth");
        // A 100 MiB state: the next ask after 400 MiB more, not 64.
        snapshot.store(100 << 20, Relaxed);
        appended.store(SNAPSHOT_EVERY + (399 << 20), Relaxed);
        assert!(!g.take_due());
        appended.store(SNAPSHOT_EVERY + (400 << 20), Relaxed);
        assert!(g.take_due());
    }
}
