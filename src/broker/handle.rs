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

use super::access::{self, User, UserUsage};
use super::access_db::{self, AccessDb};
use super::confirms::ConfirmTracker;
use super::definitions;
use super::error::BrokerError;
use super::grants::Grants;
use super::stats::{BrokerStats, StatsSnapshot};
use super::timers::Deadlines;
use super::vhost::now_millis;
use super::vhost::{PendingIo, SharedWithBroker, VHost};
use super::{BrokerConfig, OpenReport};

mod access_update;
pub use access_update::AccessReplication;

/// The default vhost, whose files are the data dir itself.
pub const DEFAULT_VHOST: &str = "/";

/// The whole broker: its vhosts, connection ids and counters. Cheap to clone.
#[derive(Clone)]
pub struct BrokerHandle(Arc<Shared>);

struct Shared {
    config: BrokerConfig,
    commit: Arc<GroupCommit>,
    vhosts: RwLock<HashMap<Arc<str>, VHostHandle>>,
    next_conn_id: AtomicU64,
    stats: Arc<BrokerStats>,
    deadlines: Arc<Deadlines>,
    /// Users, vhosts' records, permissions (read on every login and connection.open).
    access: RwLock<AccessDb>,
    /// Serialises changes to the access database: each is written to `access.json`
    /// before it is visible (see `update_access`).
    access_writer: Mutex<()>,
    /// Connections and channels per user, for user limits.
    usage: Mutex<HashMap<String, Arc<UserUsage>>>,
    /// Bumped by every change of the access database, so connections know to look up
    /// their permissions again (one atomic load per check of a cached permission).
    access_epoch: AtomicU64,
    /// The cluster's part in quorum queues, shared by every vhost (replicated.rs).
    replication: Arc<super::replicated::ReplicationSlot>,
    /// The cluster's part in access changes, on a node in a cluster (access_update.rs).
    access_hook: std::sync::OnceLock<Arc<dyn AccessReplication>>,
}

/// Where a vhost's files live: `/` in the data dir itself (the layout before vhosts
/// existed), any other under `vhosts/`, its name percent-encoded so that any name is a
/// safe directory name.
pub fn vhost_dir(data_dir: &Path, name: &str) -> PathBuf {
    if name == DEFAULT_VHOST {
        return data_dir.to_path_buf();
    }
    let mut enc = String::with_capacity(name.len() + 8);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    data_dir.join("vhosts").join(enc)
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

/// Removes what deleted vhosts left behind: a crash between the record's removal and
/// the files' leaves a `vhosts/` directory without a record (or, for `/`, its files in
/// the data dir), which must not come back if a vhost of that name is created again.
fn sweep_deleted_vhosts(
    data_dir: &Path,
    access: &AccessDb,
    report: &mut OpenReport,
) -> io::Result<()> {
    let known: Vec<PathBuf> = access
        .vhosts()
        .map(|v| vhost_dir(data_dir, &v.name))
        .collect();
    if let Ok(entries) = std::fs::read_dir(data_dir.join("vhosts")) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !known.contains(&path) {
                std::fs::remove_dir_all(&path)?;
                report.problems.push(format!(
                    "removed {}: a deleted vhost's files",
                    path.display()
                ));
            }
        }
    }
    if access.vhost(DEFAULT_VHOST).is_none() && data_dir.join("queues").exists() {
        for sub in ["queues", "delayed", "dedup"] {
            match std::fs::remove_dir_all(data_dir.join(sub)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        match std::fs::remove_file(data_dir.join(definitions::FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        report
            .problems
            .push("removed the files of the deleted vhost '/'".into());
    }
    Ok(())
}

impl BrokerHandle {
    /// Opens the broker from the data dir: loads the access database (a first start
    /// creates the default user and vhost) and recovers every vhost.
    pub fn open(
        config: BrokerConfig,
        commit: Arc<GroupCommit>,
    ) -> io::Result<(BrokerHandle, OpenReport)> {
        std::fs::create_dir_all(&config.data_dir)?;
        let access = match access_db::load(&config.data_dir)? {
            Some(db) => db,
            None => {
                let a = &config.access;
                let db = AccessDb::first_start(&a.default_user, &a.default_pass, &a.default_vhost);
                access_db::store_rendered(&config.data_dir, &db.render()?)?;
                tracing::info!(
                    user = %a.default_user,
                    vhost = %a.default_vhost,
                    "first start: created the default user and vhost"
                );
                db
            }
        };
        let stats = Arc::new(BrokerStats::default());
        let deadlines = Arc::new(Deadlines::default());
        let replication: Arc<super::replicated::ReplicationSlot> = Arc::default();
        let mut report = OpenReport::default();
        sweep_deleted_vhosts(&config.data_dir, &access, &mut report)?;
        let mut vhosts = HashMap::new();
        for def in access.vhosts() {
            let dir = vhost_dir(&config.data_dir, &def.name);
            let mut model = VHost::open(
                &def.name,
                &dir,
                config.log.clone(),
                commit.clone(),
                SharedWithBroker {
                    stats: stats.clone(),
                    deadlines: deadlines.clone(),
                    replication: replication.clone(),
                },
                &mut report,
            )?;
            model.set_queue_limit(access_db::limit_value(def.limits.max_queues));
            model.set_policies(Arc::new(access.policy_set(&def.name)));
            vhosts.insert(
                Arc::from(def.name.as_str()),
                VHostHandle::new(&def.name, &dir, model),
            );
        }
        let shared = Shared {
            config,
            commit,
            vhosts: RwLock::new(vhosts),
            next_conn_id: AtomicU64::new(1),
            stats,
            deadlines,
            access: RwLock::new(access),
            access_writer: Mutex::new(()),
            usage: Mutex::new(HashMap::new()),
            access_epoch: AtomicU64::new(0),
            replication,
            access_hook: std::sync::OnceLock::new(),
        };
        Ok((BrokerHandle(Arc::new(shared)), report))
    }

    /// The tickets confirms of replicated publishes wait for (the cluster completes them).
    pub fn replica_tickets(&self) -> Arc<super::confirms::ReplicaTickets> {
        self.0.replication.tickets.clone()
    }

    /// Puts quorum queues in the cluster's hands (replicated.rs): set once, before clients
    /// connect. Every quorum queue already here becomes a replica waiting for its group
    /// (nothing is delivered from it or stored in it until the cluster attaches it).
    /// Returns the quorum queues found, as (vhost, name, arguments).
    pub fn replicate_quorum_queues(
        &self,
        hook: Arc<dyn super::replicated::QueueReplication>,
    ) -> Vec<(String, String, Vec<u8>)> {
        if !self.0.replication.set(hook) {
            return Vec::new();
        }
        let mut found = Vec::new();
        for name in self.vhost_names() {
            if let Some(vh) = self.vhost(&name) {
                for (queue, args) in vh.with(|m| m.make_quorum_queues_replicas()) {
                    found.push((name.to_string(), queue, args));
                }
            }
        }
        found
    }

    /// A broker on `dir` with no fsync and small segments, for fuzzing and tests.
    pub fn open_ephemeral(dir: &Path) -> io::Result<BrokerHandle> {
        let config = BrokerConfig {
            data_dir: dir.to_path_buf(),
            log: warren_storage::LogConfig {
                segment_size: 64 * 1024,
                ..Default::default()
            },
            access: access::AccessConfig::default(),
        };
        let commit = GroupCommit::start(warren_storage::FsyncPolicy::Never);
        Ok(BrokerHandle::open(config, commit)?.0)
    }

    /// How many handles to this broker exist (the fuzz targets reuse a broker only when
    /// theirs is the last one).
    #[doc(hidden)]
    pub fn handle_count(&self) -> usize {
        Arc::strong_count(&self.0)
    }

    /// Tells connections when a publish's sync has completed.
    pub fn confirm_tracker(&self) -> ConfirmTracker {
        ConfirmTracker::new(self.0.commit.clone(), self.0.replication.tickets.clone())
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

    fn access(&self) -> std::sync::RwLockReadGuard<'_, AccessDb> {
        self.0.access.read().expect("access lock")
    }

    /// The user's shared usage counters.
    fn user(&self, name: &str, tags: Vec<String>) -> User {
        let usage = self
            .0
            .usage
            .lock()
            .expect("usage lock")
            .entry(name.to_owned())
            .or_default()
            .clone();
        User {
            name: name.into(),
            impersonator: tags.iter().any(|t| t == "impersonator"),
            tags,
            usage,
        }
    }

    /// Checks credentials from a SASL exchange.
    pub fn authenticate(
        &self,
        mechanism: &str,
        user: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<User, BrokerError> {
        let tags = {
            let db = self.access();
            access::authenticate(&db, &self.0.config.access, mechanism, user, password, peer)?;
            db.user(user)
                .map(|u| u.def.tags.clone())
                .unwrap_or_default()
        };
        Ok(self.user(user, tags))
    }

    /// Accepts a user named by a verified client certificate (SASL EXTERNAL).
    pub fn authenticate_external(&self, user: &str, peer: IpAddr) -> Result<User, BrokerError> {
        let tags = {
            let db = self.access();
            access::authenticate_external(&db, &self.0.config.access, user, peer)?;
            db.user(user)
                .map(|u| u.def.tags.clone())
                .unwrap_or_default()
        };
        Ok(self.user(user, tags))
    }

    /// The vhost `user` opens with connection.open, if it exists and they may use it, with
    /// their permissions there. The connection counts against the user's limit until
    /// `user.usage.connection_closed()`; the caller attaches it to the vhost.
    ///
    /// The connection (`conn`, its `outbox`) is attached to the vhost under the access
    /// database's read lock, so a concurrent change either comes before (its grants are
    /// the ones returned) or after (its refresh of attached connections reaches this one);
    /// the epoch returned belongs with the grants.
    pub fn open_vhost(
        &self,
        user: &User,
        name: &str,
        outbox: Arc<super::outbox::Outbox>,
        info: Arc<super::admin::ConnectionInfo>,
    ) -> Result<(VHostHandle, Arc<Grants>, u64), BrokerError> {
        let conn = info.id;
        let db = self.access();
        let vh = self.vhost(name);
        let open = vh.as_ref().map(|v| v.with(|m| m.connection_count()));
        let grants = access::open_vhost(&db, user, name, open)?;
        let vh = vh.expect("access::open_vhost checked it exists");
        let epoch = self.access_epoch();
        let limit = db
            .vhost(name)
            .and_then(|v| access_db::limit_value(v.limits.max_connections));
        if let Err(e) = vh.with(|m| m.attach_connection(conn, grants.clone(), outbox, info, limit))
        {
            user.usage.connection_closed();
            return Err(e);
        }
        Ok((vh, grants, epoch))
    }

    /// May `user` open another channel? Counted until `user.usage.channels_closed`.
    pub fn open_channel(&self, user: &User) -> Result<(), BrokerError> {
        access::open_channel(&self.access(), user)
    }

    /// Reads the access database.
    pub fn read_access<R>(&self, f: impl FnOnce(&AccessDb) -> R) -> R {
        f(&self.access())
    }

    /// Changes with every change of the access database.
    pub fn access_epoch(&self) -> u64 {
        self.0.access_epoch.load(Ordering::Acquire)
    }

    /// The user's permissions in the vhost now (nothing allowed if they have none).
    pub fn grants(&self, user: &str, vhost: &str) -> Arc<Grants> {
        self.access()
            .grants(user, vhost)
            .unwrap_or_else(|| Arc::new(Grants::nothing(user, vhost)))
    }

    pub fn vhost(&self, name: &str) -> Option<VHostHandle> {
        self.0
            .vhosts
            .read()
            .expect("vhosts lock")
            .get(name)
            .cloned()
    }

    /// The names of every vhost.
    pub fn vhost_names(&self) -> Vec<Arc<str>> {
        self.0
            .vhosts
            .read()
            .expect("vhosts lock")
            .keys()
            .cloned()
            .collect()
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

    /// Applies retention by age to every stream (a stream nobody publishes to must still
    /// lose its old segments) and writes the streams' changed tracking files (stored
    /// offsets, publisher sequences) without the lock. Returns problems to log.
    pub fn stream_upkeep(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for vh in self.all_vhosts() {
            for (dir, bytes) in vh.with(|m| m.stream_upkeep()) {
                if let Err(e) = super::queue::stream_tracking::write(&dir, &bytes) {
                    problems.push(format!("{}: stream tracking: {e}", dir.display()));
                }
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
            let (mut done, mut run_failed) = (Vec::new(), Vec::new());
            for (queue, id, jobs) in plans {
                for (level, job) in jobs {
                    match job.run() {
                        Ok(c) => done.push((queue.clone(), id, level, c)),
                        Err(e) => run_failed.push((queue.clone(), id, e)),
                    }
                }
            }
            let (dirs, failed) = vh.with(|m| {
                let mut dirs = Vec::new();
                // A queue deleted while its job ran took its files with it: nothing failed
                // (100 queues deleted at the end of a warren-perf run logged 100 errors).
                let mut failed: Vec<String> = run_failed
                    .into_iter()
                    .filter(|(queue, id, _)| m.queues.get(queue).is_some_and(|q| q.id == *id))
                    .map(|(queue, _, e)| format!("queue '{queue}': compaction: {e}"))
                    .collect();
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

    /// Removes a deleted vhost's files: its whole directory, or for `/` (the data dir
    /// itself) what the vhost keeps there.
    fn remove_files(&self) -> io::Result<()> {
        let dir = &self.0.dir;
        if self.0.name.as_ref() != DEFAULT_VHOST {
            return match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        for sub in ["queues", "delayed", "dedup"] {
            match std::fs::remove_dir_all(dir.join(sub)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        match std::fs::remove_file(dir.join(definitions::FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
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
                definitions::write_rendered(&self.0.dir, definitions::FILE, &text)?;
                *written = version;
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
