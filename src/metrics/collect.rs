//! One scrape's numbers, copied out of the broker: per vhost under its lock for as long as
//! the copy takes (`VHost::totals`, and per queue for `/metrics/per-object`), the broker's
//! counters and the engine's measurements from atomics, the process and the file system
//! from `/proc` and `statvfs`, segment files from a walk of the data dir. Rendering
//! happens afterwards, with nothing held.

use std::sync::Arc;

use warren_storage::StorageSnapshot;

use super::segments::{self, SegmentTally};
use super::MetricsState;
use crate::alarms::{self, AlarmState};
use crate::broker::stats::StatsSnapshot;

/// A queue's series in `/metrics/per-object`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRow {
    pub vhost: Arc<str>,
    pub queue: Arc<str>,
    pub ready: u64,
    pub unacked: u64,
    pub consumers: u64,
}

/// Object counts summed over every vhost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub queues: u64,
    pub connections: u64,
    pub channels: u64,
    pub consumers: u64,
    pub ready: u64,
    pub unacked: u64,
}

/// Everything a scrape renders.
#[derive(Debug)]
pub struct Snapshot {
    pub totals: Totals,
    /// Per queue, sorted by vhost then name; `None` for the aggregated endpoint.
    pub queues: Option<Vec<QueueRow>>,
    pub stats: StatsSnapshot,
    pub storage: StorageSnapshot,
    pub segments: SegmentTally,
    pub alarms: AlarmState,
    pub memory_limit: u64,
    pub disk_free_limit: u64,
    pub resident_bytes: Option<u64>,
    pub disk_free: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub recovery_seconds: f64,
    pub node: Arc<str>,
}

/// Copies the numbers of one scrape out of the broker and the system.
pub fn collect(state: &MetricsState, per_object: bool) -> Snapshot {
    let mut totals = Totals::default();
    let mut rows = per_object.then(Vec::new);
    for name in state.broker.vhost_names() {
        let Some(vh) = state.broker.vhost(&name) else {
            continue; // deleted since the names were read
        };
        let (t, queues) = vh.with(|m| {
            let queues = rows.is_some().then(|| {
                m.queue_names()
                    .into_iter()
                    .filter_map(|q| {
                        let (ready, unacked, consumers) = m.queue_stats(&q)?;
                        Some((q, ready, unacked, consumers as u64))
                    })
                    .collect::<Vec<_>>()
            });
            (m.totals(), queues)
        });
        totals.queues += t.queues;
        totals.connections += t.connections;
        totals.channels += t.channels;
        totals.consumers += t.consumers;
        totals.ready += t.messages_ready;
        totals.unacked += t.messages_unacknowledged;
        if let (Some(rows), Some(queues)) = (rows.as_mut(), queues) {
            rows.extend(
                queues
                    .into_iter()
                    .map(|(queue, ready, unacked, consumers)| QueueRow {
                        vhost: name.clone(),
                        queue,
                        ready,
                        unacked,
                        consumers,
                    }),
            );
        }
    }
    if let Some(rows) = rows.as_mut() {
        rows.sort_unstable_by(|a, b| (&a.vhost, &a.queue).cmp(&(&b.vhost, &b.queue)));
    }
    let data_dir = state.alarms.data_dir();
    Snapshot {
        totals,
        queues: rows,
        stats: state.broker.stats(),
        storage: state.broker.commit().metrics().snapshot(),
        segments: segments::tally(data_dir),
        alarms: state.alarms.state(),
        memory_limit: state.alarms.memory_limit(),
        disk_free_limit: state.alarms.disk_free_limit(),
        resident_bytes: alarms::resident_bytes(),
        disk_free: alarms::free_bytes(data_dir),
        open_fds: open_fds(),
        max_fds: max_fds(),
        recovery_seconds: state.recovery.as_secs_f64(),
        node: state.node.clone(),
    }
}

/// File descriptors this process has open.
fn open_fds() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    // Less the one read_dir itself holds.
    Some((dir.count() as u64).saturating_sub(1))
}

/// The soft limit on open file descriptors.
fn max_fds() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0).then_some(lim.rlim_cur)
}
