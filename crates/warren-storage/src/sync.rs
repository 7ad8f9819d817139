//! fsync policies and group commit.
//!
//! Appenders register the segment file they dirtied and get a [`Ticket`]: the number of the
//! sync round that will cover their bytes. One sync thread runs rounds: it takes the whole
//! dirty set, fdatasyncs every file in it (concurrently), then publishes the round as
//! complete. Under `always` a round starts as soon as something is dirty, so a lone append
//! pays exactly one sync and, under load, everything that arrives during a sync rides the
//! next one: batches form by themselves, with no timer. Under `interval:MS` rounds run on a
//! timer. Under `never` nothing is synced and every ticket is complete at once.
//!
//! Invariant: a ticket `t` is reported durable only after a round numbered `>= t` finished
//! every fdatasync in it without error; a failed round's tickets are reported failed.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::StorageMetrics;
use crate::segment::SegmentFile;

/// When appended bytes are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every persistent append is durable before its completion resolves (group commit).
    Always,
    /// A timer syncs dirty files; completion waits for the covering sync.
    Interval(Duration),
    /// Never sync; completion resolves once the bytes are in the map (page cache).
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            _ => {
                let ms = s
                    .strip_prefix("interval:")
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .filter(|&ms| ms > 0)
                    .ok_or_else(|| {
                        format!("bad fsync policy {s:?}: expected always, never or interval:MS")
                    })?;
                Ok(Self::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Always => write!(f, "always"),
            Self::Never => write!(f, "never"),
            Self::Interval(d) => write!(f, "interval:{}", d.as_millis()),
        }
    }
}

/// Which system-call path the sync thread uses for a round with several dirty files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncBackend {
    /// One fdatasync per file, on scoped threads so they overlap.
    Threads,
    /// All fdatasyncs of a round submitted in one io_uring batch.
    #[cfg(feature = "io-uring")]
    IoUring,
}

/// The sync round that covers an append. `Ticket::DONE` is complete from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Ticket(pub u64);

impl Ticket {
    pub const DONE: Ticket = Ticket(0);
}

/// How many failed round numbers are remembered; older failures are long resolved.
const FAILED_MEMORY: usize = 4096;

#[derive(Default)]
struct State {
    dirty: Vec<Arc<SegmentFile>>,
    next_round: u64,
    completed: u64,
    failed: VecDeque<u64>,
    shutdown: bool,
    rounds: u64,
    files_synced: u64,
    /// `register` calls since the last round was taken: that round's batch size.
    registered: u64,
}

/// Counters for benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncStats {
    pub rounds: u64,
    pub files_synced: u64,
}

/// The group-commit service shared by every log of a broker.
pub struct GroupCommit {
    policy: FsyncPolicy,
    state: Mutex<State>,
    /// Wakes waiters when a round completes.
    done: Condvar,
    /// Wakes the sync thread when something becomes dirty (or on shutdown).
    work: Condvar,
    watch: tokio::sync::watch::Sender<u64>,
    /// Round durations, batch sizes and compaction totals (read by the broker's metrics).
    metrics: StorageMetrics,
}

impl GroupCommit {
    /// Starts the service (and its sync thread, unless the policy is `never`).
    pub fn start(policy: FsyncPolicy) -> Arc<Self> {
        Self::start_with(policy, default_backend())
    }

    pub fn start_with(policy: FsyncPolicy, backend: SyncBackend) -> Arc<Self> {
        let (watch, _) = tokio::sync::watch::channel(0);
        let gc = Arc::new(GroupCommit {
            policy,
            state: Mutex::new(State {
                next_round: 1,
                ..Default::default()
            }),
            done: Condvar::new(),
            work: Condvar::new(),
            watch,
            metrics: StorageMetrics::default(),
        });
        if policy != FsyncPolicy::Never {
            let worker = gc.clone();
            std::thread::Builder::new()
                .name("warren-sync".into())
                .spawn(move || worker.run(backend))
                .expect("spawn sync thread");
        }
        gc
    }

    pub fn policy(&self) -> FsyncPolicy {
        self.policy
    }

    /// Records that `file` holds bytes that must become durable; returns the ticket of the
    /// round that will cover them.
    pub fn register(&self, file: &Arc<SegmentFile>) -> Ticket {
        if self.policy == FsyncPolicy::Never {
            return Ticket::DONE;
        }
        let mut st = self.state.lock().expect("sync state");
        st.registered += 1;
        if !file.dirty.swap(true, Ordering::Relaxed) {
            st.dirty.push(file.clone());
            if self.policy == FsyncPolicy::Always && st.dirty.len() == 1 {
                self.work.notify_one();
            }
        }
        Ticket(st.next_round)
    }

    /// `Some(Ok)` once the ticket is durable, `Some(Err)` if its sync failed, `None` while
    /// it is still pending.
    pub fn status(&self, t: Ticket) -> Option<Result<(), ()>> {
        if t == Ticket::DONE {
            return Some(Ok(()));
        }
        let st = self.state.lock().expect("sync state");
        Self::status_locked(&st, t)
    }

    fn status_locked(st: &State, t: Ticket) -> Option<Result<(), ()>> {
        if st.completed < t.0 {
            None
        } else if st.failed.contains(&t.0) {
            Some(Err(()))
        } else {
            Some(Ok(()))
        }
    }

    /// Blocks until the ticket's round completes.
    pub fn wait(&self, t: Ticket) -> io::Result<()> {
        if t == Ticket::DONE {
            return Ok(());
        }
        let mut st = self.state.lock().expect("sync state");
        loop {
            match Self::status_locked(&st, t) {
                Some(Ok(())) => return Ok(()),
                Some(Err(())) => return Err(io::Error::other("fdatasync failed")),
                None => st = self.done.wait(st).expect("sync state"),
            }
        }
    }

    /// A watch of the completed round number, for async waiters.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.watch.subscribe()
    }

    /// The engine's measurements: sync rounds (here) and compactions (`Log`).
    pub fn metrics(&self) -> &StorageMetrics {
        &self.metrics
    }

    pub fn stats(&self) -> SyncStats {
        let st = self.state.lock().expect("sync state");
        SyncStats {
            rounds: st.rounds,
            files_synced: st.files_synced,
        }
    }

    /// Waits until everything registered so far is durable: the round in progress, and a
    /// final one for files still dirty (started at once, even under `interval`). For a
    /// clean shutdown.
    pub fn flush(&self) -> io::Result<()> {
        let last = {
            let st = self.state.lock().expect("sync state");
            if st.dirty.is_empty() {
                Ticket(st.next_round.saturating_sub(1))
            } else {
                Ticket(st.next_round)
            }
        };
        self.work.notify_all();
        self.wait(last)
    }

    /// Stops the sync thread after a final round.
    pub fn shutdown(&self) {
        self.state.lock().expect("sync state").shutdown = true;
        self.work.notify_all();
    }

    fn run(&self, backend: SyncBackend) {
        let mut syncer = Syncer::new(backend);
        loop {
            let (files, round, appends) = {
                let mut st = self.state.lock().expect("sync state");
                match self.policy {
                    FsyncPolicy::Interval(every) => {
                        if !st.shutdown {
                            st = self.work.wait_timeout(st, every).expect("sync state").0;
                        }
                    }
                    _ => {
                        while st.dirty.is_empty() && !st.shutdown {
                            st = self.work.wait(st).expect("sync state");
                        }
                    }
                }
                if st.dirty.is_empty() {
                    if st.shutdown {
                        return;
                    }
                    continue;
                }
                let files = std::mem::take(&mut st.dirty);
                for f in &files {
                    f.dirty.store(false, Ordering::Relaxed);
                }
                let round = st.next_round;
                st.next_round += 1;
                (files, round, std::mem::take(&mut st.registered))
            };
            let started = Instant::now();
            let ok = syncer.sync_all(&files).is_ok();
            self.metrics
                .fsync_ns
                .observe(started.elapsed().as_nanos().min(u64::MAX as u128) as u64);
            self.metrics.batch.observe(appends);
            // Let go of the files before the round is published: a waiter may then rely on
            // the sync thread holding none of them (a retired segment is recycled only
            // once nothing else holds its mapping).
            let synced_files = files.len() as u64;
            drop(files);
            {
                let mut st = self.state.lock().expect("sync state");
                st.completed = round;
                st.rounds += 1;
                st.files_synced += synced_files;
                if !ok {
                    st.failed.push_back(round);
                    if st.failed.len() > FAILED_MEMORY {
                        st.failed.pop_front();
                    }
                }
            }
            self.done.notify_all();
            self.watch.send_replace(round);
        }
    }
}

/// io_uring when built with it (it won the benchmark with many dirty files; it falls back
/// to threads at run time if the kernel refuses a ring), else threads.
fn default_backend() -> SyncBackend {
    #[cfg(feature = "io-uring")]
    return SyncBackend::IoUring;
    #[cfg(not(feature = "io-uring"))]
    SyncBackend::Threads
}

/// Runs the fdatasyncs of one round.
struct Syncer {
    #[cfg(feature = "io-uring")]
    ring: Option<io_uring::IoUring>,
}

impl Syncer {
    fn new(backend: SyncBackend) -> Self {
        #[cfg(feature = "io-uring")]
        {
            let ring = match backend {
                SyncBackend::IoUring => io_uring::IoUring::new(256).ok(),
                SyncBackend::Threads => None,
            };
            Syncer { ring }
        }
        #[cfg(not(feature = "io-uring"))]
        {
            let _ = backend;
            Syncer {}
        }
    }

    fn sync_all(&mut self, files: &[Arc<SegmentFile>]) -> io::Result<()> {
        if files.len() == 1 {
            return files[0].sync_data();
        }
        #[cfg(feature = "io-uring")]
        if let Some(ring) = self.ring.as_mut() {
            return sync_uring(ring, files);
        }
        sync_threads(files)
    }
}

/// fdatasyncs every file, overlapping them on scoped threads (at most 64 at once): the
/// device merges concurrent flushes, so a round costs about one flush, not one per file.
fn sync_threads(files: &[Arc<SegmentFile>]) -> io::Result<()> {
    let mut result = Ok(());
    for chunk in files.chunks(64) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .skip(1)
                .map(|f| s.spawn(move || f.sync_data()))
                .collect();
            if let Err(e) = chunk[0].sync_data() {
                result = Err(e);
            }
            for h in handles {
                match h.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => result = Err(e),
                    Err(_) => result = Err(io::Error::other("sync thread panicked")),
                }
            }
        });
    }
    result
}

#[cfg(feature = "io-uring")]
fn sync_uring(ring: &mut io_uring::IoUring, files: &[Arc<SegmentFile>]) -> io::Result<()> {
    use io_uring::{opcode, types};
    let mut result = Ok(());
    for chunk in files.chunks(ring.params().sq_entries() as usize) {
        {
            let mut sq = ring.submission();
            for (i, f) in chunk.iter().enumerate() {
                let op = opcode::Fsync::new(types::Fd(f.raw_fd()))
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(i as u64);
                // SAFETY: the fds outlive the submission (we wait for every completion).
                unsafe {
                    sq.push(&op)
                        .map_err(|_| io::Error::other("io_uring queue full"))?
                };
            }
        }
        ring.submit_and_wait(chunk.len())?;
        let mut seen = 0;
        while seen < chunk.len() {
            let cqes: Vec<_> = ring.completion().collect();
            if cqes.is_empty() {
                ring.submit_and_wait(1)?;
                continue;
            }
            for cqe in cqes {
                seen += 1;
                if cqe.result() < 0 {
                    result = Err(io::Error::from_raw_os_error(-cqe.result()));
                }
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_policies() {
        assert_eq!("always".parse(), Ok(FsyncPolicy::Always));
        assert_eq!("never".parse(), Ok(FsyncPolicy::Never));
        assert_eq!(
            "interval:250".parse(),
            Ok(FsyncPolicy::Interval(Duration::from_millis(250)))
        );
        assert!("interval:0".parse::<FsyncPolicy>().is_err());
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }
}
