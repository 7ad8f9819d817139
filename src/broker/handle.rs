//! The handles through which everything else reaches the model, and which own its locking.
//!
//! Locks (docs/ARCHITECTURE.md, "Locking"):
//! - one `Mutex<VHost>` per vhost guards that vhost's exchanges, queues, bindings and the
//!   channels of its connections. Work on one vhost never waits for another.
//! - `vhosts` (a `RwLock` over the map of vhosts) is read-locked only to find a vhost,
//!   never while a vhost lock is taken.
//! - a per-vhost definitions-writer `Mutex` is taken after the vhost lock is released, to
//!   write the newest rendered definitions in order.
//!
//! No file I/O runs under a vhost lock except appends (pwritev into a segment), segment
//! rollover and a new queue's first segment: definitions, deleted queues' files, ack
//! batches and compaction all run after it is released (see `VHostHandle::with`).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use warren_storage::{segment, AckFlush, GroupCommit};

use super::access::{self, User};
use super::confirms::ConfirmTracker;
use super::definitions;
use super::error::BrokerError;
use super::stats::{BrokerStats, StatsSnapshot};
use super::timers::Deadlines;
use super::vhost::now_millis;
use super::vhost::{PendingIo, VHost};
use super::{BrokerConfig, OpenReport};

/// The default vhost, whose files are the data dir itself.
pub const DEFAULT_VHOST: &str = "/";

/// The whole broker: its vhosts, connection ids and counters. Cheap to clone.
#[derive(Clone)]
pub struct BrokerHandle(Arc<Shared>);

struct Shared {
    commit: Arc<GroupCommit>,
    vhosts: RwLock<HashMap<Arc<str>, VHostHandle>>,
    next_conn_id: AtomicU64,
    stats: Arc<BrokerStats>,
    deadlines: Arc<Deadlines>,
}

/// One vhost's model behind its lock. Cheap to clone.
#[derive(Clone)]
pub struct VHostHandle(Arc<VHostShared>);

struct VHostShared {
    name: Arc<str>,
    dir: PathBuf,
    model: Mutex<VHost>,
    /// Version of the definitions last written (see `VHostHandle::finish_io`).
    definitions_written: Mutex<u64>,
}

impl BrokerHandle {
    /// Opens the broker from the data dir: recovers every vhost (today: `/`).
    pub fn open(
        config: BrokerConfig,
        commit: Arc<GroupCommit>,
    ) -> io::Result<(BrokerHandle, OpenReport)> {
        let stats = Arc::new(BrokerStats::default());
        let deadlines = Arc::new(Deadlines::default());
        let mut report = OpenReport::default();
        let root = VHost::open(
            DEFAULT_VHOST,
            &config.data_dir,
            config.log.clone(),
            commit.clone(),
            stats.clone(),
            deadlines.clone(),
            &mut report,
        )?;
        let mut vhosts = HashMap::new();
        vhosts.insert(
            Arc::from(DEFAULT_VHOST),
            VHostHandle::new(DEFAULT_VHOST, &config.data_dir, root),
        );
        let shared = Shared {
            commit,
            vhosts: RwLock::new(vhosts),
            next_conn_id: AtomicU64::new(1),
            stats,
            deadlines,
        };
        Ok((BrokerHandle(Arc::new(shared)), report))
    }

    /// A broker on `dir` with no fsync and small segments, for fuzzing and tests.
    pub fn open_ephemeral(dir: &Path) -> io::Result<BrokerHandle> {
        let config = BrokerConfig {
            data_dir: dir.to_path_buf(),
            log: warren_storage::LogConfig {
                segment_size: 64 * 1024,
                ..Default::default()
            },
        };
        let commit = GroupCommit::start(warren_storage::FsyncPolicy::Never);
        Ok(BrokerHandle::open(config, commit)?.0)
    }

    /// Tells connections when a publish's sync has completed.
    pub fn confirm_tracker(&self) -> ConfirmTracker {
        ConfirmTracker::new(self.0.commit.clone())
    }

    /// The group commit every log of this broker registers its syncs with.
    pub fn commit(&self) -> &Arc<GroupCommit> {
        &self.0.commit
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.0.stats.snapshot()
    }

    /// A new connection's id (unique for the broker's life).
    pub fn register_connection(&self) -> u64 {
        self.0.stats.connection_opened();
        self.0.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A connection is gone: the caller has detached it from its vhost, if any.
    pub fn connection_closed(&self) {
        self.0.stats.connection_closed();
    }

    /// Checks credentials from a SASL exchange.
    pub fn authenticate(
        &self,
        mechanism: &str,
        user: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<User, BrokerError> {
        access::authenticate(mechanism, user, password, peer)
    }

    /// Looks up a user whom something outside SASL vouched for (SASL EXTERNAL: the name in
    /// a verified TLS client certificate). No password is checked.
    pub fn authenticate_external(&self, user: &str, peer: IpAddr) -> Result<User, BrokerError> {
        access::authenticate_external(user, peer)
    }

    /// The vhost `user` opens with connection.open, if it exists and they may use it.
    pub fn open_vhost(&self, user: &User, name: &str) -> Result<VHostHandle, BrokerError> {
        let found = self.vhost(name);
        access::check_vhost(user, name, found.is_some())?;
        Ok(found.expect("checked"))
    }

    pub fn vhost(&self, name: &str) -> Option<VHostHandle> {
        self.0
            .vhosts
            .read()
            .expect("vhosts lock")
            .get(name)
            .cloned()
    }

    fn all_vhosts(&self) -> Vec<VHostHandle> {
        self.0
            .vhosts
            .read()
            .expect("vhosts lock")
            .values()
            .cloned()
            .collect()
    }

    /// Takes every vhost's pending ack batches, each under its own lock; the caller
    /// writes them (`AckFlush::write`) with no lock held.
    pub fn take_ack_flushes(&self) -> Vec<AckFlush> {
        self.all_vhosts()
            .iter()
            .flat_map(|vh| vh.with(|m| m.take_ack_flushes()))
            .collect()
    }

    /// Writes the deduplication caches kept on disk that changed (taken under each vhost's
    /// lock, written without it). Returns problems to log.
    pub fn write_dedup_caches(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for vh in self.all_vhosts() {
            let (writes, removals) = vh.with(|m| m.take_dedup_files());
            if let Err(e) = super::dedup::write_cache_files(writes, removals) {
                problems.push(format!("vhost '{}': deduplication cache: {e}", vh.name()));
            }
        }
        problems
    }

    /// Compacts sparse segments of every queue: planned under each vhost's lock, written
    /// and synced without it, installed under it again. Returns problems to log.
    pub fn compact(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for vh in self.all_vhosts() {
            let plans = vh.with(|m| m.plan_compaction());
            if plans.is_empty() {
                continue;
            }
            let mut done = Vec::new();
            for (queue, id, jobs) in plans {
                for (level, job) in jobs {
                    match job.run() {
                        Ok(c) => done.push((queue.clone(), id, level, c)),
                        Err(e) => problems.push(format!("queue '{queue}': compaction: {e}")),
                    }
                }
            }
            let (dirs, failed) = vh.with(|m| {
                let mut dirs = Vec::new();
                let mut failed = Vec::new();
                for (queue, id, level, c) in done {
                    match m.install_compaction(&queue, id, level, c) {
                        Ok(Some(dir)) if !dirs.contains(&dir) => dirs.push(dir),
                        Ok(_) => {}
                        Err(e) => failed.push(format!("queue '{queue}': compaction: {e}")),
                    }
                }
                (dirs, failed)
            });
            problems.extend(failed);
            for dir in dirs {
                if let Err(e) = segment::sync_dir(&dir) {
                    problems.push(format!("{}: {e}", dir.display()));
                }
            }
        }
        problems
    }

    /// Runs the timed work that is due (message expiry, idle queues under `x-expires`,
    /// dead letters whose copies' sync completed): a single atomic load when nothing is.
    pub fn run_timers(&self) {
        let now = now_millis();
        if !self.0.deadlines.take_due(now) {
            return;
        }
        for vh in self.all_vhosts() {
            vh.with(|m| m.run_timers(now));
        }
    }

    /// Writes every log's pending acks (clean shutdown). Returns problems to log.
    pub fn flush_all_acks(&self) -> Vec<String> {
        self.all_vhosts()
            .iter()
            .flat_map(|vh| vh.with(|m| m.flush_all_acks()))
            .collect()
    }
}

impl VHostHandle {
    fn new(name: &str, dir: &Path, model: VHost) -> Self {
        VHostHandle(Arc::new(VHostShared {
            name: name.into(),
            dir: dir.to_path_buf(),
            model: Mutex::new(model),
            definitions_written: Mutex::new(0),
        }))
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    fn lock(&self) -> MutexGuard<'_, VHost> {
        self.0.model.lock().expect("vhost lock")
    }

    /// Runs `f` on the vhost's model under its lock, then — with the lock released —
    /// does the file work `f` left behind (durable definitions, deleted queues' files).
    /// A failure of that work is logged; use `try_with` where the caller must hear of it.
    pub fn with<R>(&self, f: impl FnOnce(&mut VHost) -> R) -> R {
        let (r, io) = {
            let mut model = self.lock();
            let r = f(&mut model);
            (r, model.take_pending_io())
        };
        if let Err(e) = self.finish_io(io) {
            tracing::error!(vhost = %self.0.name, "writing definitions or removing files: {e}");
        }
        r
    }

    /// As `with`, for operations that answer a client: a failure to make the change
    /// durable (e.g. writing definitions) is returned as a storage error.
    pub fn try_with<R>(
        &self,
        f: impl FnOnce(&mut VHost) -> Result<R, BrokerError>,
    ) -> Result<R, BrokerError> {
        let (r, io) = {
            let mut model = self.lock();
            let r = f(&mut model);
            (r, model.take_pending_io())
        };
        let done = self.finish_io(io);
        let r = r?;
        done.map_err(BrokerError::storage)?;
        Ok(r)
    }

    /// File work left by an operation, done without the model lock. Definitions are
    /// written newest-first-wins: a rendering older than the last one written is dropped
    /// (the newer one includes its change).
    fn finish_io(&self, io: io::Result<PendingIo>) -> io::Result<()> {
        let io = io?;
        let mut first_error = None;
        for log in io.doomed {
            if let Err(e) = log.destroy() {
                first_error.get_or_insert(e);
            }
        }
        if let Some((version, text)) = io.definitions {
            let mut written = self.0.definitions_written.lock().expect("definitions lock");
            if version > *written {
                definitions::write_rendered(&self.0.dir, &text)?;
                *written = version;
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
