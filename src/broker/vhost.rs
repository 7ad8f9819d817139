//! One virtual host: its exchanges, queues and bindings, the channels of the connections
//! attached to it, and its durable definitions. A `VHost` is synchronous and socket-free;
//! `VHostHandle` (handle.rs) owns its lock and does its file work after releasing it.
//!
//! A vhost's files live in one directory: `definitions.toml` and `queues/qNNNNNNNN/`
//! (for `/`, the data dir itself, the layout FORMAT.md documents).

use std::collections::{HashSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use amq_protocol_types::FieldTable;
use warren_storage::{AckFlush, Compacted, CompactionJob, GroupCommit, Log, LogConfig};

use super::channel::{Attached, ChannelState};
use super::dead_letter::DeadLetter;
use super::dedup::{self, DedupCache, DEDUP_TYPE};
use super::definitions::{self, BindingDef, Definitions, ExchangeDef, QueueDef};
use super::delayed::{delayed_kind, DelayedStore, DELAYED_TYPE};
use super::error::BrokerError;
use super::exchange::{Binding, Dest, Exchange, ExchangeKind};
use super::fast_map::FastMap;
use super::outbox::Outgoing;
use super::policy::PolicySet;
use super::queue::storage_info::CompactionRecord;
use super::queue::Queue;
use super::stats::BrokerStats;
use super::timers::Deadlines;
use super::{ChannelKey, OpenReport};
use crate::protocol::table;

/// What `VHost::totals` counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VHostTotals {
    pub exchanges: u64,
    pub queues: u64,
    pub connections: u64,
    pub channels: u64,
    pub consumers: u64,
    pub messages_ready: u64,
    pub messages_unacknowledged: u64,
    /// The queues' message counters summed.
    pub counters: super::admin::QueueCounters,
}

/// The model of one vhost.
pub struct VHost {
    pub(super) name: Arc<str>,
    pub(super) dir: PathBuf,
    pub(super) log_config: LogConfig,
    pub(super) commit: Arc<GroupCommit>,
    pub(super) exchanges: FastMap<Arc<str>, Exchange>,
    /// Boxed: a map sized for growth keeps empty slots, which cost a pointer each rather
    /// than a whole queue.
    pub(super) queues: FastMap<Arc<str>, Box<Queue>>,
    pub(super) channels: FastMap<ChannelKey, ChannelState>,
    pub(super) connections: FastMap<u64, Attached>,
    pub(super) next_queue_id: u64,
    pub(super) next_consumer_serial: u64,
    pub(super) name_counter: u64,
    pub(super) route_scratch: Vec<Arc<str>>,
    /// Set by the last publish batch if a queue it stored to is in flow (flow.rs); taken
    /// by the publishing connection under the same lock (`take_flow_pause`).
    pub(super) flow_pause: Option<super::flow::FlowPause>,
    /// Deliveries of one dispatch burst, handed to the consumer's outbox at once (kept to
    /// reuse its allocation).
    pub(super) delivery_scratch: Vec<super::outbox::Outgoing>,
    pub(super) stats: Arc<BrokerStats>,
    /// Durable definitions changed: render and write them after the lock is released.
    defs_dirty: bool,
    /// Bumped at every rendering, so renderings are written in order.
    defs_version: u64,
    /// Logs of deleted queues, whose files are removed after the lock is released.
    doomed: Vec<Log>,
    /// Dead letters waiting to be published (see dead_letter.rs), and whether that is
    /// under way (dead-lettering can cause more dead letters).
    pub(super) pending_dead: VecDeque<DeadLetter>,
    pub(super) draining_dead: bool,
    /// Queues with timed work (expiry, x-expires, dead letters awaiting a sync), with when
    /// it is next due (milliseconds since the epoch).
    pub(super) timed: FastMap<Arc<str>, u64>,
    pub(super) deadlines: Arc<Deadlines>,
    /// Direct reply-to: reply name -> the channel whose reply consumer it is.
    pub(super) reply_names: FastMap<Arc<str>, ChannelKey>,
    /// Messages held by delayed exchanges (delayed.rs).
    pub(super) delayed: DelayedStore,
    /// Caches of deduplicating exchanges, by exchange name (dedup.rs), and the cache
    /// files of deleted ones, to remove.
    pub(super) dedup_caches: FastMap<Arc<str>, DedupCache>,
    dedup_removed: Vec<PathBuf>,
    /// How many delayed or deduplicating exchanges exist: while none does, publishing
    /// skips looking for them.
    pub(super) special_exchanges: usize,
    /// The vhost was deleted: its files are gone and must not be written again.
    deleted: bool,
    /// What compaction did to each queue (by queue id) since the start, for the console.
    pub(super) compactions: FastMap<u64, CompactionRecord>,
    /// The vhost's max-queues limit, if any (kept here so declare checks it under the
    /// vhost lock; set by the broker from the access database).
    pub(super) max_queues: Option<u64>,
    /// The vhost's policies (policy.rs), applied to every queue's features.
    pub(super) policies: Arc<PolicySet>,
    /// The cluster's part in quorum queues (replicated.rs); empty on a single node.
    pub(super) replication: Arc<super::replicated::ReplicationSlot>,
    /// Set while the cluster itself declares or deletes a queue here, so that it is not
    /// told about its own work.
    pub(super) from_cluster: bool,
    /// Replication tickets issued by the last `store` call, in message order.
    pub(super) replica_issued: Vec<u64>,
}

/// What every vhost shares with the broker (and the other vhosts).
#[derive(Clone)]
pub(super) struct SharedWithBroker {
    pub stats: Arc<BrokerStats>,
    pub deadlines: Arc<Deadlines>,
    pub replication: Arc<super::replicated::ReplicationSlot>,
}

/// A queue's compaction jobs: (queue name, queue id, jobs with their priority level).
pub(super) type CompactionPlan = (Arc<str>, u64, Vec<(usize, CompactionJob)>);

/// File work an operation left for after the lock (see `VHostHandle`).
#[derive(Default)]
pub(super) struct PendingIo {
    /// (version, text) of the definitions file to write.
    pub definitions: Option<(u64, String)>,
    pub doomed: Vec<Log>,
}

pub(super) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl VHost {
    /// Opens a vhost from its directory: restores durable definitions, recovers each
    /// durable queue's log, and removes what transient queues left behind.
    pub(super) fn open(
        name: &str,
        dir: &Path,
        log_config: LogConfig,
        commit: Arc<GroupCommit>,
        shared: SharedWithBroker,
        report: &mut OpenReport,
    ) -> io::Result<VHost> {
        let SharedWithBroker {
            stats,
            deadlines,
            replication,
        } = shared;
        if !dir.join("queues").exists() {
            std::fs::create_dir_all(dir.join("queues"))?;
            // Durable before any queue in it confirms a message.
            warren_storage::segment::sync_dir(dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                warren_storage::segment::sync_dir(parent)?;
            }
        }
        let defs = definitions::load(dir)?;
        let delayed = DelayedStore::open(dir, log_config.clone(), commit.clone())?;
        let mut vh = VHost {
            name: name.into(),
            dir: dir.to_path_buf(),
            log_config,
            commit,
            exchanges: FastMap::default(),
            queues: FastMap::default(),
            channels: FastMap::default(),
            connections: FastMap::default(),
            next_queue_id: defs.next_queue_id.max(1),
            next_consumer_serial: 1,
            name_counter: now_millis(),
            route_scratch: Vec::new(),
            flow_pause: None,
            delivery_scratch: Vec::new(),
            stats,
            defs_dirty: false,
            defs_version: 0,
            doomed: Vec::new(),
            compactions: FastMap::default(),
            pending_dead: VecDeque::new(),
            draining_dead: false,
            timed: FastMap::default(),
            deadlines,
            reply_names: FastMap::default(),
            delayed,
            dedup_caches: FastMap::default(),
            dedup_removed: Vec::new(),
            special_exchanges: 0,
            deleted: false,
            max_queues: None,
            policies: Arc::default(),
            replication,
            from_cluster: false,
            replica_issued: Vec::new(),
        };
        vh.declare_builtin_exchanges();
        vh.restore_exchanges(&defs, report);
        let keep_dirs = vh.restore_queues(&defs, report)?;
        for entry in std::fs::read_dir(dir.join("queues"))? {
            let path = entry?.path();
            if !keep_dirs.contains(&path) {
                std::fs::remove_dir_all(&path)?;
            }
        }
        vh.restore_bindings(&defs);
        // As RabbitMQ's init_max_length: a queue back over its length limit (drops not yet
        // on disk at a crash) is cut down at once. Its dropped messages are dead-lettered
        // again, so a dead letter may be duplicated, never lost.
        let limited: Vec<Arc<str>> = vh
            .queues
            .values()
            .filter(|q| q.features.has_length_limit() && q.over_limit())
            .map(|q| q.name.clone())
            .collect();
        for name in limited {
            vh.trim(&name);
        }
        Ok(vh)
    }

    fn restore_exchanges(&mut self, defs: &Definitions, report: &mut OpenReport) {
        for e in &defs.exchanges {
            let raw = definitions::from_hex(&e.arguments).unwrap_or_default();
            let args = table::decode(&raw).unwrap_or_default();
            let delayed = e.kind == DELAYED_TYPE;
            let dedup = e.kind == DEDUP_TYPE;
            if dedup {
                match DedupCache::from_args(&args) {
                    Ok(mut cache) => {
                        let path = dedup::cache_path(&self.dir, &e.name);
                        if cache.on_disk {
                            if let Ok(bytes) = std::fs::read(&path) {
                                if !cache.load(&bytes, now_millis()) {
                                    report.problems.push(format!(
                                        "exchange '{}': damaged deduplication cache {} \
                                         (starting empty)",
                                        e.name,
                                        path.display()
                                    ));
                                }
                            }
                        }
                        self.dedup_caches.insert(e.name.as_str().into(), cache);
                    }
                    Err(why) => {
                        report
                            .problems
                            .push(format!("exchange '{}': {}", e.name, why.text()));
                        continue;
                    }
                }
            }
            let kind = match ExchangeKind::parse(&e.kind) {
                Some(kind) => kind,
                None if dedup => ExchangeKind::Fanout,
                None if delayed => match delayed_kind(&args) {
                    Ok(kind) => kind,
                    Err(why) => {
                        report
                            .problems
                            .push(format!("exchange '{}': {}", e.name, why.text()));
                        continue;
                    }
                },
                None => {
                    report
                        .problems
                        .push(format!("exchange '{}': unknown type {}", e.name, e.kind));
                    continue;
                }
            };
            let mut ex = Exchange::new(&e.name, kind, true, e.auto_delete, e.internal, raw, args);
            ex.delayed = delayed;
            ex.dedup = dedup;
            self.insert_exchange(ex);
        }
    }

    fn restore_queues(
        &mut self,
        defs: &Definitions,
        report: &mut OpenReport,
    ) -> io::Result<HashSet<PathBuf>> {
        let mut keep_dirs = HashSet::new();
        for q in &defs.queues {
            let raw = definitions::from_hex(&q.arguments).unwrap_or_default();
            let args = table::decode(&raw).unwrap_or_default();
            let dir = self.queue_dir(q.id);
            let (store, recs) = self.open_store(&dir, &q.name, &args)?;
            for rec in &recs {
                for c in &rec.corruptions {
                    report.problems.push(format!("queue '{}': {c}", q.name));
                }
                for (path, why) in &rec.unreadable {
                    report
                        .problems
                        .push(format!("queue '{}': {}: {why}", q.name, path.display()));
                }
                report.discarded_unwritten += rec.discarded_unwritten.len();
            }
            report.messages += store.live();
            report.queues += 1;
            keep_dirs.insert(dir);
            let name: Arc<str> = q.name.as_str().into();
            let queue = Queue::new(
                name.clone(),
                q.id,
                true,
                None,
                q.auto_delete,
                raw,
                args,
                store,
            );
            // Dead letters kept before the restart are published again from the first
            // timer on (after the policies are set: at-least-once may be a policy's).
            let timed = queue.can_expire()
                || queue.features.expires.is_some()
                || queue.unroutable_retry_at != 0;
            self.queues.insert(name.clone(), Box::new(queue));
            if timed {
                // x-expires restarts from the recovery, as in RabbitMQ.
                self.schedule(&name, now_millis());
            }
            self.next_queue_id = self.next_queue_id.max(q.id + 1);
        }
        Ok(keep_dirs)
    }

    fn restore_bindings(&mut self, defs: &Definitions) {
        for b in &defs.bindings {
            let raw = definitions::from_hex(&b.arguments).unwrap_or_default();
            let args = table::decode(&raw).unwrap_or_default();
            let dest = match b.destination_type.as_str() {
                "queue" => Dest::Queue(b.destination.as_str().into()),
                _ => Dest::Exchange(b.destination.as_str().into()),
            };
            if let Some(ex) = self.exchanges.get_mut(b.source.as_str()) {
                ex.bind(Binding {
                    dest,
                    routing_key: b.routing_key.clone(),
                    args_raw: raw,
                    args,
                });
            }
        }
    }

    fn declare_builtin_exchanges(&mut self) {
        // amq.rabbitmq.trace is internal: it exists (clients declare it passively, bind
        // to it) but cannot be published to, as in RabbitMQ.
        for (name, kind, internal) in [
            ("", ExchangeKind::Direct, false),
            ("amq.direct", ExchangeKind::Direct, false),
            ("amq.fanout", ExchangeKind::Fanout, false),
            ("amq.topic", ExchangeKind::Topic, false),
            ("amq.headers", ExchangeKind::Headers, false),
            ("amq.match", ExchangeKind::Headers, false),
            ("amq.rabbitmq.trace", ExchangeKind::Topic, true),
        ] {
            self.insert_exchange(Exchange::new(
                name,
                kind,
                true,
                false,
                internal,
                vec![0, 0, 0, 0],
                FieldTable::default(),
            ));
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn insert_exchange(&mut self, mut ex: Exchange) {
        ex.alternate = self.policies.alternate_exchange(&ex.name, &ex.args);
        if ex.delayed || ex.dedup {
            self.special_exchanges += 1;
        }
        if let Some(old) = self.exchanges.insert(ex.name.clone(), ex) {
            if old.delayed || old.dedup {
                self.special_exchanges -= 1;
            }
        }
    }

    pub(super) fn queue_dir(&self, id: u64) -> PathBuf {
        self.dir.join("queues").join(format!("q{id:08}"))
    }

    pub(super) fn not_found(&self, what: &str, name: &str) -> BrokerError {
        BrokerError::not_found(what, name, &self.name)
    }

    /// Durable definitions changed: they are written when the current operation ends.
    pub(super) fn definitions_changed(&mut self) {
        self.defs_dirty = true;
    }

    /// Takes the file work the last operation left: rendered definitions if they
    /// changed, logs of deleted queues. Cheap when there is none (the common case).
    pub(super) fn take_pending_io(&mut self) -> io::Result<PendingIo> {
        let mut io = PendingIo::default();
        if self.defs_dirty && !self.deleted {
            self.defs_dirty = false;
            self.defs_version += 1;
            let text = definitions::render(&self.snapshot_definitions())?;
            io.definitions = Some((self.defs_version, text));
        }
        if !self.doomed.is_empty() {
            io.doomed = std::mem::take(&mut self.doomed);
        }
        Ok(io)
    }

    /// The durable exchanges, queues and bindings (what definitions.toml holds).
    pub fn durable_definitions(&self) -> Definitions {
        self.snapshot_definitions()
    }

    /// The names of the queues, and the exchanges with their types (for an import's
    /// checks).
    pub fn queue_and_exchange_names(
        &self,
    ) -> (
        std::collections::HashSet<String>,
        std::collections::HashMap<String, String>,
    ) {
        let queues = self.queues.keys().map(|q| q.to_string()).collect();
        let exchanges = self
            .exchanges
            .values()
            .map(|x| (x.name.to_string(), x.type_name().to_string()))
            .collect();
        (queues, exchanges)
    }

    /// An exchange's type as declared, if it exists.
    pub fn exchange_type(&self, name: &str) -> Option<String> {
        self.exchanges.get(name).map(|x| x.type_name().to_string())
    }

    pub fn has_queue(&self, name: &str) -> bool {
        self.queues.contains_key(name)
    }

    pub fn has_exchange(&self, name: &str) -> bool {
        self.exchanges.contains_key(name)
    }

    fn snapshot_definitions(&self) -> Definitions {
        let mut defs = Definitions {
            next_queue_id: self.next_queue_id,
            ..Default::default()
        };
        let durable_queue = |name: &str| self.queues.get(name).is_some_and(|q| q.durable);
        let durable_exchange = |name: &str| self.exchanges.get(name).is_some_and(|e| e.durable);
        for ex in self.exchanges.values().filter(|e| e.durable) {
            if !ex.name.is_empty() && !ex.name.starts_with("amq.") {
                defs.exchanges.push(ExchangeDef {
                    name: ex.name.to_string(),
                    kind: ex.type_name().into(),
                    auto_delete: ex.auto_delete,
                    internal: ex.internal,
                    arguments: definitions::to_hex(&ex.args_raw),
                });
            }
            for b in &ex.bindings {
                let (dest_type, durable) = match &b.dest {
                    Dest::Queue(q) => ("queue", durable_queue(q)),
                    Dest::Exchange(e) => ("exchange", durable_exchange(e)),
                };
                if durable {
                    defs.bindings.push(BindingDef {
                        source: ex.name.to_string(),
                        destination: b.dest.name().to_string(),
                        destination_type: dest_type.into(),
                        routing_key: b.routing_key.clone(),
                        arguments: definitions::to_hex(&b.args_raw),
                    });
                }
            }
        }
        for q in self.queues.values().filter(|q| q.durable) {
            defs.queues.push(QueueDef {
                name: q.name.to_string(),
                id: q.id,
                auto_delete: q.auto_delete,
                arguments: definitions::to_hex(&q.args_raw),
            });
        }
        defs.exchanges.sort_by(|a, b| a.name.cmp(&b.name));
        defs.queues.sort_by(|a, b| a.name.cmp(&b.name));
        defs
    }

    pub(super) fn check_queue_access(&self, name: &str, conn: u64) -> Result<&Queue, BrokerError> {
        let q = self
            .queues
            .get(name)
            .ok_or_else(|| self.not_found("queue", name))?;
        if q.exclusive_owner.is_some_and(|o| o != conn) {
            return Err(BrokerError::ResourceLocked(format!(
                "cannot obtain exclusive access to locked queue '{name}' in vhost '{}'",
                self.name
            )));
        }
        Ok(q)
    }

    /// Removes a consumer. Under single active consumer the next one takes over (the
    /// caller dispatches); an idle `x-expires` queue starts counting down.
    pub(super) fn detach_consumer(&mut self, queue: &str, key: ChannelKey, tag: &str) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        q.consumers
            .retain(|c| !(c.conn == key.0 && c.channel == key.1 && &*c.tag == tag));
        q.consumer_priorities = q.consumers.iter().any(|c| c.priority != 0);
        if q.rr >= q.consumers.len() {
            q.rr = 0;
        }
        if q.consumers.is_empty() {
            // Nobody drains it now, and a consumer that comes later starts a fresh
            // judgement: whoever waits on the gate goes.
            q.flow.disengage();
        }
        let now = now_millis();
        q.last_used = now;
        if q.consumers.is_empty() && q.features.expires.is_some() {
            let name = q.name.clone();
            self.schedule(&name, now);
        }
    }

    pub(super) fn maybe_auto_delete(&mut self, queue: &str) {
        let doomed = self
            .queues
            .get(queue)
            .is_some_and(|q| q.auto_delete && q.consumers.is_empty() && q.had_consumer);
        if doomed {
            self.remove_queue(queue);
        }
    }

    /// Is `name` a topic exchange? (Publishes to one need a topic-permission check.)
    pub fn is_topic_exchange(&self, name: &str) -> bool {
        self.exchanges
            .get(name)
            .is_some_and(|x| x.kind == super::exchange::ExchangeKind::Topic)
    }

    /// The vhost was deleted (its model lives on only until its connections are gone).
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// Sets the vhost's queue limit (from its record in the access database).
    pub fn set_queue_limit(&mut self, max: Option<u64>) {
        self.max_queues = max;
    }

    /// The vhost is being deleted: its connections are asked to close (320), its queues
    /// and exchanges go (their logs' files are removed once the lock is released) and
    /// nothing of it is written again. Returns how many connections were asked to close.
    pub(super) fn shut_down_deleted(&mut self) -> usize {
        self.deleted = true;
        let closed = self.close_connections(None, &format!("vhost '{}' is deleted", self.name));
        let names: Vec<Arc<str>> = self.queues.keys().cloned().collect();
        for name in names {
            self.remove_queue(&name);
        }
        self.exchanges.clear();
        self.timed.clear();
        closed
    }

    /// Deletes a queue: its consumers get basic.cancel, its bindings go, and its log's
    /// files are removed once the lock is released. Returns its ready count.
    pub(super) fn remove_queue(&mut self, name: &str) -> u32 {
        let Some(q) = self.queues.remove(name) else {
            return 0;
        };
        let count = q.ready().min(u32::MAX as u64) as u32;
        // Publishes still waiting for the group go nowhere now: their confirms are nacks,
        // and a dead letter waiting for one goes back to its queue.
        if let Some(r) = q.quorum.as_ref().and_then(|qs| qs.replica.as_ref()) {
            for (_, t) in &r.outgoing {
                self.replication.tickets.complete(*t, false);
            }
        }
        for c in &q.consumers {
            if let Some(ch) = self.channels.get_mut(&(c.conn, c.channel)) {
                ch.consumers.remove(&c.tag);
            }
            c.outbox.push(Outgoing::Cancel {
                channel: c.channel,
                consumer_tag: c.tag.clone(),
            });
        }
        self.unbind_everywhere(&Dest::Queue(q.name.clone()));
        if q.durable {
            self.definitions_changed();
        }
        self.doomed.extend(q.store.into_logs());
        count
    }

    /// Removes every binding to `dest` (a deleted queue or exchange). An auto-delete
    /// exchange left without bindings goes too, as in RabbitMQ, and so on down the chain.
    pub(super) fn unbind_everywhere(&mut self, dest: &Dest) {
        let mut emptied = Vec::new();
        for ex in self.exchanges.values_mut() {
            if ex.unbind_all_to(dest) > 0 && ex.auto_delete && ex.bindings.is_empty() {
                emptied.push(ex.name.clone());
            }
        }
        for name in emptied {
            self.remove_exchange(&name);
        }
    }

    /// Deletes an exchange and the bindings to it.
    pub(super) fn remove_exchange(&mut self, name: &str) {
        let Some(ex) = self.exchanges.remove(name) else {
            return;
        };
        if ex.delayed || ex.dedup {
            self.special_exchanges -= 1;
        }
        if self.dedup_caches.remove(name).is_some_and(|c| c.on_disk) {
            self.dedup_removed.push(dedup::cache_path(&self.dir, name));
        }
        if ex.durable {
            self.definitions_changed();
        }
        self.unbind_everywhere(&Dest::Exchange(ex.name.clone()));
        self.replicate_exchange_deleted(name);
    }

    /// A name for a server-named queue or consumer.
    pub(super) fn generated_name(&mut self, prefix: &str) -> String {
        self.name_counter = self
            .name_counter
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut x = self.name_counter ^ now_millis().rotate_left(17);
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut s = String::from(prefix);
        for _ in 0..22 {
            s.push(ALPHABET[(x & 63) as usize] as char);
            x = x.rotate_right(6) ^ 0x9e37_79b9_7f4a_7c15;
        }
        s
    }

    // ----- upkeep -------------------------------------------------------------------

    /// Takes every queue's pending ack batches, to be written after the lock is released.
    pub(super) fn take_ack_flushes(&mut self) -> Vec<AckFlush> {
        let mut flushes = Vec::new();
        for q in self.queues.values_mut() {
            q.store.take_ack_flushes(&mut flushes);
        }
        if let Some(f) = self.delayed.take_ack_flush() {
            flushes.push(f);
        }
        flushes
    }

    /// Plans compaction of every queue's sparse segments.
    pub(super) fn plan_compaction(&self) -> Vec<CompactionPlan> {
        self.queues
            .values()
            .map(|q| (q.name.clone(), q.id, q.store.plan_compaction()))
            .filter(|(_, _, jobs)| !jobs.is_empty())
            .collect()
    }

    /// Installs a compacted segment if its queue still exists; returns the queue's
    /// directory (to fsync after the lock) when it was installed.
    pub(super) fn install_compaction(
        &mut self,
        queue: &str,
        id: u64,
        level: usize,
        done: Compacted,
    ) -> io::Result<Option<PathBuf>> {
        match self.queues.get_mut(queue).filter(|q| q.id == id) {
            Some(q) => {
                let reclaimed = done.reclaimed;
                let installed = q.store.install_compaction(level, done)?;
                if installed.is_some() {
                    // Records of deleted queues are dropped once they could outnumber the
                    // queues: the map stays as small as the set of queues, at O(1)
                    // amortised per compaction.
                    if self.compactions.len() > self.queues.len() {
                        let live: std::collections::HashSet<u64> =
                            self.queues.values().map(|q| q.id).collect();
                        self.compactions.retain(|qid, _| live.contains(qid));
                    }
                    self.compactions
                        .entry(id)
                        .or_default()
                        .record(now_millis(), reclaimed);
                }
                Ok(installed)
            }
            None => {
                // The queue was deleted meanwhile (its directory goes with it).
                done.discard()?;
                Ok(None)
            }
        }
    }

    /// The deduplication cache files to write (changed) and remove (deleted exchanges).
    pub(super) fn take_dedup_files(&mut self) -> (Vec<(PathBuf, Vec<u8>)>, Vec<PathBuf>) {
        let mut writes = Vec::new();
        for (name, cache) in self.dedup_caches.iter_mut() {
            if let Some(bytes) = cache.take_snapshot() {
                writes.push((dedup::cache_path(&self.dir, name), bytes));
            }
        }
        (writes, std::mem::take(&mut self.dedup_removed))
    }

    /// Writes pending acks of every log (clean shutdown).
    pub(super) fn flush_all_acks(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for q in self.queues.values_mut() {
            if let Err(e) = q.store.flush_acks() {
                problems.push(format!("queue '{}': {e}", q.name));
            }
        }
        if let Some(f) = self.delayed.take_ack_flush() {
            if let Err(e) = f.write() {
                problems.push(format!("delayed messages: {e}"));
            }
        }
        problems
    }

    /// (ready, unacked, consumers) of a queue, for tests and management.
    pub fn queue_stats(&self, name: &str) -> Option<(u64, u64, usize)> {
        let q = self.queues.get(name)?;
        Some((q.ready(), q.unacked, q.consumers.len()))
    }

    /// Counts for the management API's overview, taken in one pass under the lock.
    pub fn totals(&self) -> VHostTotals {
        let mut t = VHostTotals {
            exchanges: self.exchanges.len() as u64,
            queues: self.queues.len() as u64,
            connections: self.connections.len() as u64,
            channels: self.channels.len() as u64,
            ..VHostTotals::default()
        };
        for q in self.queues.values() {
            t.consumers += q.consumers.len() as u64;
            t.messages_ready += q.ready();
            t.messages_unacknowledged += q.unacked;
            t.counters.add(&q.counters);
        }
        t
    }

    /// Names of this vhost's queues.
    pub fn queue_names(&self) -> Vec<Arc<str>> {
        self.queues.keys().cloned().collect()
    }
}
