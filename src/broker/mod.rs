//! THE MODEL: exchanges, queues, bindings, consumers and routing for the one vhost, `/`.
//!
//! One `Broker` value holds the whole model; connections call it under a mutex. Each
//! queue's messages live in its storage log; the heap holds per-message state only for
//! delivered, unacked messages. Durable definitions are persisted in `definitions.toml`.

pub mod confirms;
pub mod definitions;
pub mod exchange;
pub mod fast_map;
pub mod message;
pub mod outbox;
pub mod queue;
pub mod topic;

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use amq_protocol_types::FieldTable;
use bytes::Bytes;

use crate::protocol::error::{AmqpError, ReplyCode};
use crate::protocol::table;
use definitions::{BindingDef, Definitions, ExchangeDef, QueueDef};
use exchange::{Binding, Dest, Exchange, ExchangeKind};
use fast_map::FastMap;
use outbox::{Outbox, Outgoing};
use queue::{Consumer, Queue};
use warren_storage::{AckFlush, BatchRecord, GroupCommit, Log, LogConfig, Ticket};

/// Key of a channel: (connection id, channel number).
pub type ChannelKey = (u64, u16);

/// A delivered, unacked message.
#[derive(Debug, Clone)]
struct Unacked {
    queue: Arc<str>,
    seq: u64,
    /// The consumer it went to (None for basic.get).
    consumer: Option<Arc<str>>,
}

/// Per-channel delivery state kept by the model.
struct ChannelState {
    outbox: Arc<Outbox>,
    next_tag: u64,
    /// Unacked deliveries by tag: `unacked[i]` is tag `first_tag + i`; acked ones are None.
    first_tag: u64,
    unacked: VecDeque<Option<Unacked>>,
    unacked_count: usize,
    /// Prefetch for consumers created from now on (basic.qos global=false).
    consumer_prefetch: u16,
    /// Limit on the channel's unacked total (basic.qos global=true).
    channel_prefetch: u16,
    flow_active: bool,
    /// Consumer tag -> queue name.
    consumers: FastMap<Arc<str>, Arc<str>>,
}

impl ChannelState {
    fn take_unacked(&mut self, tag: u64) -> Option<Unacked> {
        let i = tag.checked_sub(self.first_tag)? as usize;
        let u = self.unacked.get_mut(i)?.take()?;
        self.unacked_count -= 1;
        while matches!(self.unacked.front(), Some(None)) {
            self.unacked.pop_front();
            self.first_tag += 1;
        }
        Some(u)
    }

    /// Assigns the next delivery tag. `unacked` is what to remember until the message is
    /// settled, or None for a no-ack delivery (its slot stays empty so tags keep indexing
    /// the ring).
    fn next_delivery(&mut self, unacked: Option<Unacked>) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        if self.unacked.is_empty() {
            self.first_tag = tag;
        }
        match unacked {
            Some(u) => {
                self.unacked.push_back(Some(u));
                self.unacked_count += 1;
            }
            None if self.unacked.is_empty() => self.first_tag = self.next_tag,
            None => self.unacked.push_back(None),
        }
        tag
    }

    /// Tags of every unacked delivery up to and including `tag`.
    fn tags_through(&self, tag: u64) -> Vec<u64> {
        self.unacked
            .iter()
            .enumerate()
            .filter(|(_, u)| u.is_some())
            .map(|(i, _)| self.first_tag + i as u64)
            .take_while(|&t| t <= tag)
            .collect()
    }

    fn is_unacked(&self, tag: u64) -> bool {
        tag.checked_sub(self.first_tag)
            .and_then(|i| self.unacked.get(i as usize))
            .is_some_and(|u| u.is_some())
    }
}

/// Result of routing and storing one published message.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    /// At least one queue received it.
    pub routed: bool,
    /// The sync covering every persistent copy (DONE if none needs one).
    pub ticket: confirms::ConfirmTicket,
    /// A queue failed to store it: the confirm must be a nack.
    pub failed: bool,
}

/// A message to publish: routing information, the content header as received, whether it
/// is persistent (delivery-mode 2), its raw headers table, and its body frames.
#[derive(Debug, Clone, Copy)]
pub struct PublishRequest<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub header: &'a [u8],
    pub persistent: bool,
    pub headers_table: Option<&'a [u8]>,
    pub body: &'a [&'a [u8]],
}

/// A message handed out by basic.get.
pub struct Got {
    pub delivery_tag: u64,
    pub redelivered: bool,
    pub message_count: u32,
    pub payload: Bytes,
}

/// Queue declare-ok figures.
pub struct QueueInfo {
    pub name: Arc<str>,
    pub messages: u32,
    pub consumers: u32,
}

/// Tuning the model needs.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    pub log: LogConfig,
    /// Most deliveries waiting in one connection's outbox.
    pub outbox_limit: usize,
}

pub struct Broker {
    config: BrokerConfig,
    commit: Arc<GroupCommit>,
    exchanges: FastMap<Arc<str>, Exchange>,
    queues: FastMap<Arc<str>, Queue>,
    channels: FastMap<ChannelKey, ChannelState>,
    next_queue_id: u64,
    next_conn_id: u64,
    name_counter: u64,
    route_scratch: Vec<Arc<str>>,
}

fn not_found(what: &str, name: &str) -> AmqpError {
    AmqpError::channel(
        ReplyCode::NotFound,
        format!("no {what} '{name}' in vhost '/'"),
    )
}

fn io_error(e: io::Error) -> AmqpError {
    AmqpError::channel(ReplyCode::InternalError, format!("storage error: {e}"))
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Startup summary.
#[derive(Debug, Default)]
pub struct OpenReport {
    pub queues: usize,
    pub messages: u64,
    pub problems: Vec<String>,
}

impl Broker {
    /// Opens the model from the data dir: restores durable definitions, recovers each
    /// durable queue's log, and removes what transient queues left behind.
    pub fn open(
        config: BrokerConfig,
        commit: Arc<GroupCommit>,
    ) -> io::Result<(Broker, OpenReport)> {
        std::fs::create_dir_all(config.data_dir.join("queues"))?;
        let defs = definitions::load(&config.data_dir)?;
        let mut broker = Broker {
            config,
            commit,
            exchanges: FastMap::default(),
            queues: FastMap::default(),
            channels: FastMap::default(),
            next_queue_id: defs.next_queue_id.max(1),
            next_conn_id: 1,
            name_counter: now_millis(),
            route_scratch: Vec::new(),
        };
        let mut report = OpenReport::default();
        broker.declare_builtin_exchanges();
        for e in &defs.exchanges {
            let Some(kind) = ExchangeKind::parse(&e.kind) else {
                report
                    .problems
                    .push(format!("exchange '{}': unknown type {}", e.name, e.kind));
                continue;
            };
            let raw = definitions::from_hex(&e.arguments).unwrap_or_default();
            let args = table::decode(&raw).unwrap_or_default();
            broker.insert_exchange(Exchange::new(
                &e.name,
                kind,
                true,
                e.auto_delete,
                e.internal,
                raw,
                args,
            ));
        }
        let mut keep_dirs = std::collections::HashSet::new();
        for q in &defs.queues {
            let raw = definitions::from_hex(&q.arguments).unwrap_or_default();
            let args = table::decode(&raw).unwrap_or_default();
            let dir = broker.queue_dir(q.id);
            let (log, rec) = Log::open(&dir, broker.config.log.clone(), broker.commit.clone())?;
            for c in &rec.corruptions {
                report.problems.push(format!("queue '{}': {c}", q.name));
            }
            for (path, why) in &rec.unreadable {
                report
                    .problems
                    .push(format!("queue '{}': {}: {why}", q.name, path.display()));
            }
            report.messages += log.live();
            keep_dirs.insert(dir);
            let name: Arc<str> = q.name.as_str().into();
            broker.queues.insert(
                name.clone(),
                Queue::new(name, q.id, true, None, q.auto_delete, raw, args, log),
            );
            broker.next_queue_id = broker.next_queue_id.max(q.id + 1);
        }
        report.queues = broker.queues.len();
        for entry in std::fs::read_dir(broker.config.data_dir.join("queues"))? {
            let path = entry?.path();
            if !keep_dirs.contains(&path) {
                std::fs::remove_dir_all(&path)?;
            }
        }
        for b in &defs.bindings {
            let raw = definitions::from_hex(&b.arguments).unwrap_or_default();
            let args = table::decode(&raw).unwrap_or_default();
            let dest = match b.destination_type.as_str() {
                "queue" => Dest::Queue(b.destination.as_str().into()),
                _ => Dest::Exchange(b.destination.as_str().into()),
            };
            if let Some(ex) = broker.exchanges.get_mut(b.source.as_str()) {
                ex.bind(Binding {
                    dest,
                    routing_key: b.routing_key.clone(),
                    args_raw: raw,
                    args,
                });
            }
        }
        Ok((broker, report))
    }

    fn declare_builtin_exchanges(&mut self) {
        for (name, kind) in [
            ("", ExchangeKind::Direct),
            ("amq.direct", ExchangeKind::Direct),
            ("amq.fanout", ExchangeKind::Fanout),
            ("amq.topic", ExchangeKind::Topic),
            ("amq.headers", ExchangeKind::Headers),
            ("amq.match", ExchangeKind::Headers),
        ] {
            self.insert_exchange(Exchange::new(
                name,
                kind,
                true,
                false,
                false,
                vec![0, 0, 0, 0],
                FieldTable::default(),
            ));
        }
    }

    fn insert_exchange(&mut self, ex: Exchange) {
        self.exchanges.insert(ex.name.clone(), ex);
    }

    fn queue_dir(&self, id: u64) -> PathBuf {
        self.config
            .data_dir
            .join("queues")
            .join(format!("q{id:08}"))
    }

    fn persist_definitions(&mut self) -> Result<(), AmqpError> {
        let mut defs = Definitions {
            next_queue_id: self.next_queue_id,
            ..Default::default()
        };
        let durable_queue = |name: &str| self.queues.get(name).is_some_and(|q| q.durable);
        let durable_exchange = |name: &str| self.exchanges.get(name).is_some_and(|e| e.durable);
        for ex in self.exchanges.values() {
            if ex.durable && !ex.name.is_empty() && !ex.name.starts_with("amq.") {
                defs.exchanges.push(ExchangeDef {
                    name: ex.name.to_string(),
                    kind: ex.kind.as_str().into(),
                    auto_delete: ex.auto_delete,
                    internal: ex.internal,
                    arguments: definitions::to_hex(&ex.args_raw),
                });
            }
            if !ex.durable {
                continue;
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
        definitions::store(&self.config.data_dir, &defs).map_err(io_error)
    }

    // ----- connections and channels -------------------------------------------------

    pub fn register_connection(&mut self) -> u64 {
        let id = self.next_conn_id;
        self.next_conn_id += 1;
        id
    }

    /// Closes everything a connection held: its channels (requeueing their unacked
    /// messages) and its exclusive queues.
    pub fn close_connection(&mut self, conn: u64) {
        let keys: Vec<ChannelKey> = self
            .channels
            .keys()
            .filter(|k| k.0 == conn)
            .copied()
            .collect();
        for key in keys {
            self.close_channel(key);
        }
        let exclusive: Vec<Arc<str>> = self
            .queues
            .values()
            .filter(|q| q.exclusive_owner == Some(conn))
            .map(|q| q.name.clone())
            .collect();
        for name in exclusive {
            let _ = self.remove_queue(&name);
        }
    }

    pub fn open_channel(&mut self, key: ChannelKey, outbox: Arc<Outbox>) {
        self.channels.insert(
            key,
            ChannelState {
                outbox,
                next_tag: 1,
                first_tag: 1,
                unacked: VecDeque::new(),
                unacked_count: 0,
                consumer_prefetch: 0,
                channel_prefetch: 0,
                flow_active: true,
                consumers: FastMap::default(),
            },
        );
    }

    /// Closes a channel: cancels its consumers and requeues its unacked messages.
    pub fn close_channel(&mut self, key: ChannelKey) {
        let Some(ch) = self.channels.remove(&key) else {
            return;
        };
        let mut touched: Vec<Arc<str>> = Vec::new();
        for (tag, queue) in &ch.consumers {
            self.detach_consumer(queue, key, tag);
            if !touched.contains(queue) {
                touched.push(queue.clone());
            }
        }
        for u in ch.unacked.into_iter().flatten() {
            if let Some(q) = self.queues.get_mut(&u.queue) {
                q.requeue(u.seq);
                if !touched.contains(&u.queue) {
                    touched.push(u.queue.clone());
                }
            }
        }
        for q in touched {
            self.maybe_auto_delete(&q);
            self.dispatch(&q);
        }
    }

    fn detach_consumer(&mut self, queue: &str, key: ChannelKey, tag: &str) {
        if let Some(q) = self.queues.get_mut(queue) {
            q.consumers
                .retain(|c| !(c.conn == key.0 && c.channel == key.1 && &*c.tag == tag));
        }
    }

    fn maybe_auto_delete(&mut self, queue: &str) {
        let doomed = self
            .queues
            .get(queue)
            .is_some_and(|q| q.auto_delete && q.consumers.is_empty() && q.had_consumer);
        if doomed {
            let _ = self.remove_queue(queue);
        }
    }

    pub fn channel_flow(&mut self, key: ChannelKey, active: bool) {
        let queues: Vec<Arc<str>> = match self.channels.get_mut(&key) {
            Some(ch) => {
                ch.flow_active = active;
                ch.consumers.values().cloned().collect()
            }
            None => return,
        };
        if active {
            for q in queues {
                self.dispatch(&q);
            }
        }
    }

    /// Called when a connection drained a full outbox: resume dispatch to its consumers.
    pub fn resume_connection(&mut self, conn: u64) {
        let queues: Vec<Arc<str>> = self
            .channels
            .iter()
            .filter(|(k, _)| k.0 == conn)
            .flat_map(|(_, ch)| ch.consumers.values().cloned())
            .collect();
        for q in queues {
            self.dispatch(&q);
        }
    }

    // ----- exchanges ----------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    pub fn exchange_declare(
        &mut self,
        name: &str,
        kind: &str,
        passive: bool,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        args_raw: &[u8],
    ) -> Result<(), AmqpError> {
        if passive {
            return match self.exchanges.get(name) {
                Some(_) => Ok(()),
                None => Err(not_found("exchange", name)),
            };
        }
        if name.is_empty() || name.starts_with("amq.") {
            if let Some(ex) = self.exchanges.get(name) {
                if ex.kind.as_str() == kind {
                    return Ok(());
                }
            }
            return Err(AmqpError::channel(
                ReplyCode::AccessRefused,
                format!("exchange name '{name}' contains reserved prefix 'amq.*'"),
            ));
        }
        let Some(kind_parsed) = ExchangeKind::parse(kind) else {
            return Err(AmqpError::connection(
                ReplyCode::CommandInvalid,
                format!("unknown exchange type '{kind}'"),
            ));
        };
        let args = table::decode(args_raw)?;
        if let Some(ex) = self.exchanges.get(name) {
            if ex.kind != kind_parsed
                || ex.durable != durable
                || ex.auto_delete != auto_delete
                || ex.internal != internal
                || ex.args != args
            {
                return Err(AmqpError::channel(
                    ReplyCode::PreconditionFailed,
                    format!("inequivalent arg for exchange '{name}' in vhost '/'"),
                ));
            }
            return Ok(());
        }
        self.insert_exchange(Exchange::new(
            name,
            kind_parsed,
            durable,
            auto_delete,
            internal,
            args_raw.to_vec(),
            args,
        ));
        if durable {
            self.persist_definitions()?;
        }
        Ok(())
    }

    pub fn exchange_delete(&mut self, name: &str, if_unused: bool) -> Result<(), AmqpError> {
        if name.is_empty() || name.starts_with("amq.") {
            return Err(AmqpError::channel(
                ReplyCode::AccessRefused,
                format!("cannot delete reserved exchange '{name}'"),
            ));
        }
        let Some(ex) = self.exchanges.get(name) else {
            return Ok(()); // RabbitMQ: deleting a missing exchange succeeds.
        };
        let dest = Dest::Exchange(ex.name.clone());
        let used_as_source = !ex.bindings.is_empty();
        if if_unused && used_as_source {
            return Err(AmqpError::channel(
                ReplyCode::PreconditionFailed,
                format!("exchange '{name}' in vhost '/' in use"),
            ));
        }
        let ex = self.exchanges.remove(name).expect("checked");
        for other in self.exchanges.values_mut() {
            other.unbind_all_to(&dest);
        }
        if ex.durable {
            self.persist_definitions()?;
        }
        Ok(())
    }

    fn check_queue_access(&self, name: &str, conn: u64) -> Result<&Queue, AmqpError> {
        let q = self
            .queues
            .get(name)
            .ok_or_else(|| not_found("queue", name))?;
        if q.exclusive_owner.is_some_and(|o| o != conn) {
            return Err(AmqpError::channel(
                ReplyCode::ResourceLocked,
                format!("cannot obtain exclusive access to locked queue '{name}' in vhost '/'"),
            ));
        }
        Ok(q)
    }

    fn bind_common(
        &mut self,
        conn: u64,
        source: &str,
        dest: Dest,
        routing_key: &str,
        args_raw: &[u8],
        bind: bool,
    ) -> Result<(), AmqpError> {
        if source.is_empty() || (matches!(dest, Dest::Exchange(ref d) if d.is_empty())) {
            return Err(AmqpError::channel(
                ReplyCode::AccessRefused,
                "operation not permitted on the default exchange",
            ));
        }
        match &dest {
            Dest::Queue(q) => {
                self.check_queue_access(q, conn)?;
            }
            Dest::Exchange(e) => {
                if !self.exchanges.contains_key(&**e) {
                    return Err(not_found("exchange", e));
                }
            }
        }
        let args = table::decode(args_raw)?;
        let dest_durable = match &dest {
            Dest::Queue(q) => self.queues.get(&**q).is_some_and(|q| q.durable),
            Dest::Exchange(e) => self.exchanges.get(&**e).is_some_and(|e| e.durable),
        };
        let ex = self
            .exchanges
            .get_mut(source)
            .ok_or_else(|| not_found("exchange", source))?;
        let changed = if bind {
            ex.bind(Binding {
                dest,
                routing_key: routing_key.to_owned(),
                args_raw: args_raw.to_vec(),
                args,
            })
        } else {
            ex.unbind(&dest, routing_key, &args)
        };
        if changed && ex.durable && dest_durable {
            self.persist_definitions()?;
        }
        Ok(())
    }

    pub fn exchange_bind(
        &mut self,
        conn: u64,
        dest: &str,
        source: &str,
        routing_key: &str,
        args: &[u8],
        bind: bool,
    ) -> Result<(), AmqpError> {
        self.bind_common(
            conn,
            source,
            Dest::Exchange(dest.into()),
            routing_key,
            args,
            bind,
        )
    }

    pub fn queue_bind(
        &mut self,
        conn: u64,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        args: &[u8],
        bind: bool,
    ) -> Result<(), AmqpError> {
        if !self.queues.contains_key(queue) {
            return Err(not_found("queue", queue));
        }
        let name = self.queues.get_key_value(queue).expect("checked").0.clone();
        self.bind_common(conn, exchange, Dest::Queue(name), routing_key, args, bind)
    }

    // ----- queues -------------------------------------------------------------------

    fn generated_name(&mut self, prefix: &str) -> String {
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

    #[allow(clippy::too_many_arguments)]
    pub fn queue_declare(
        &mut self,
        conn: u64,
        name: &str,
        passive: bool,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        args_raw: &[u8],
    ) -> Result<QueueInfo, AmqpError> {
        if passive {
            let q = self.check_queue_access(name, conn)?;
            return Ok(QueueInfo {
                name: q.name.clone(),
                messages: q.ready().min(u32::MAX as u64) as u32,
                consumers: q.consumers.len() as u32,
            });
        }
        let name = if name.is_empty() {
            self.generated_name("amq.gen-")
        } else if name.starts_with("amq.") {
            return Err(AmqpError::channel(
                ReplyCode::AccessRefused,
                format!("queue name '{name}' contains reserved prefix 'amq.*'"),
            ));
        } else {
            name.to_owned()
        };
        let args = table::decode(args_raw)?;
        if let Some(q) = self.queues.get(name.as_str()) {
            self.check_queue_access(&name, conn)?;
            if q.durable != durable
                || q.auto_delete != auto_delete
                || q.exclusive_owner.is_some() != exclusive
                || q.args != args
            {
                return Err(AmqpError::channel(
                    ReplyCode::PreconditionFailed,
                    format!("inequivalent arg for queue '{name}' in vhost '/'"),
                ));
            }
            return Ok(QueueInfo {
                name: q.name.clone(),
                messages: q.ready().min(u32::MAX as u64) as u32,
                consumers: q.consumers.len() as u32,
            });
        }
        let id = self.next_queue_id;
        self.next_queue_id += 1;
        let dir = self.queue_dir(id);
        let _ = std::fs::remove_dir_all(&dir);
        let (log, _) =
            Log::open(&dir, self.config.log.clone(), self.commit.clone()).map_err(io_error)?;
        let arc: Arc<str> = name.as_str().into();
        let owner = exclusive.then_some(conn);
        self.queues.insert(
            arc.clone(),
            Queue::new(
                arc.clone(),
                id,
                durable,
                owner,
                auto_delete,
                args_raw.to_vec(),
                args,
                log,
            ),
        );
        // Every queue is bound to the default exchange by its name (implicitly: the
        // default exchange routes by queue name, see `route`).
        if durable {
            self.persist_definitions()?;
        }
        Ok(QueueInfo {
            name: arc,
            messages: 0,
            consumers: 0,
        })
    }

    pub fn queue_purge(&mut self, conn: u64, name: &str) -> Result<u32, AmqpError> {
        self.check_queue_access(name, conn)?;
        let q = self.queues.get_mut(name).expect("checked");
        let n = q.purge_ready().map_err(io_error)?;
        Ok(n.min(u32::MAX as u64) as u32)
    }

    pub fn queue_delete(
        &mut self,
        conn: u64,
        name: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> Result<u32, AmqpError> {
        let q = match self.check_queue_access(name, conn) {
            Ok(q) => q,
            Err(e) if e.code == ReplyCode::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        if if_unused && !q.consumers.is_empty() {
            return Err(AmqpError::channel(
                ReplyCode::PreconditionFailed,
                format!("queue '{name}' in vhost '/' in use"),
            ));
        }
        if if_empty && q.ready() > 0 {
            return Err(AmqpError::channel(
                ReplyCode::PreconditionFailed,
                format!("queue '{name}' in vhost '/' is not empty"),
            ));
        }
        self.remove_queue(name)
    }

    /// Deletes a queue: its consumers get basic.cancel, its bindings and log go.
    fn remove_queue(&mut self, name: &str) -> Result<u32, AmqpError> {
        let Some(q) = self.queues.remove(name) else {
            return Ok(0);
        };
        let count = q.ready().min(u32::MAX as u64) as u32;
        for c in &q.consumers {
            if let Some(ch) = self.channels.get_mut(&(c.conn, c.channel)) {
                ch.consumers.remove(&c.tag);
            }
            c.outbox.push(Outgoing::Cancel {
                channel: c.channel,
                consumer_tag: c.tag.clone(),
            });
        }
        let dest = Dest::Queue(q.name.clone());
        for ex in self.exchanges.values_mut() {
            ex.unbind_all_to(&dest);
        }
        let durable = q.durable;
        q.log.destroy().map_err(io_error)?;
        if durable {
            self.persist_definitions()?;
        }
        Ok(count)
    }

    // ----- publishing ---------------------------------------------------------------

    /// Routes a message and appends it to every matching queue's log.
    pub fn publish(&mut self, msg: &PublishRequest<'_>) -> Result<Published, AmqpError> {
        self.publish_batch(std::slice::from_ref(msg))
            .pop()
            .expect("one result per message")
    }

    /// Routes a batch of messages (in order) and appends them to their queues' logs: one
    /// batch append per queue, so persistent messages cost one write system call per queue
    /// per batch rather than one each. Returns one result per message.
    pub fn publish_batch(
        &mut self,
        msgs: &[PublishRequest<'_>],
    ) -> Vec<Result<Published, AmqpError>> {
        let mut results: Vec<Result<Published, AmqpError>> = Vec::with_capacity(msgs.len());
        // (queue, message index) pairs in publish order.
        let mut deliveries: Vec<(Arc<str>, usize)> = Vec::new();
        let mut targets = std::mem::take(&mut self.route_scratch);
        for (i, m) in msgs.iter().enumerate() {
            match self.route(m, &mut targets) {
                Ok(()) => {
                    results.push(Ok(Published {
                        routed: !targets.is_empty(),
                        ticket: Ticket::DONE,
                        failed: false,
                    }));
                    deliveries.extend(targets.drain(..).map(|q| (q, i)));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        self.route_scratch = targets;
        if deliveries.is_empty() {
            return results;
        }
        // Stored payload of each message: prefix (exchange, routing key, header length),
        // content header, body parts. Prefixes live in one buffer; parts in one list.
        let mut prefixes: Vec<u8> = Vec::with_capacity(msgs.len() * 32);
        let mut prefix_ranges: Vec<(usize, usize)> = Vec::with_capacity(msgs.len());
        for m in msgs {
            let mut prefix = [0u8; message::MAX_PREFIX];
            let n = message::encode_prefix(&mut prefix, m.exchange, m.routing_key, m.header.len());
            prefix_ranges.push((prefixes.len(), prefixes.len() + n));
            prefixes.extend_from_slice(&prefix[..n]);
        }
        let mut parts: Vec<&[u8]> = Vec::with_capacity(msgs.len() * 3);
        let mut part_ranges: Vec<(usize, usize)> = Vec::with_capacity(msgs.len());
        for (m, (a, b)) in msgs.iter().zip(&prefix_ranges) {
            let start = parts.len();
            parts.push(&prefixes[*a..*b]);
            parts.push(m.header);
            parts.extend_from_slice(m.body);
            part_ranges.push((start, parts.len()));
        }
        // Group by queue, keeping publish order within each queue.
        deliveries.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let now = now_millis();
        let mut batch: Vec<BatchRecord<'_>> = Vec::new();
        let mut k = 0;
        while k < deliveries.len() {
            let queue = deliveries[k].0.clone();
            let end = deliveries[k..]
                .iter()
                .position(|d| d.0 != queue)
                .map_or(deliveries.len(), |p| k + p);
            if let Some(q) = self.queues.get_mut(&queue) {
                batch.clear();
                batch.extend(deliveries[k..end].iter().map(|&(_, i)| {
                    let (a, b) = part_ranges[i];
                    BatchRecord {
                        timestamp: now,
                        persistent: msgs[i].persistent && q.durable,
                        parts: &parts[a..b],
                    }
                }));
                let outcome = q.log.append_batch(&batch);
                for &(_, i) in &deliveries[k..end] {
                    if let Ok(p) = results[i].as_mut() {
                        match outcome {
                            Ok((_, ticket)) => p.ticket = p.ticket.max(ticket),
                            Err(_) => p.failed = true,
                        }
                    }
                }
                self.dispatch(&queue);
            }
            k = end;
        }
        results
    }

    /// Finds the queues a message goes to (into `targets`, cleared first).
    fn route(&self, m: &PublishRequest<'_>, targets: &mut Vec<Arc<str>>) -> Result<(), AmqpError> {
        targets.clear();
        let Some(ex) = self.exchanges.get(m.exchange) else {
            return Err(not_found("exchange", m.exchange));
        };
        if ex.internal {
            return Err(AmqpError::channel(
                ReplyCode::AccessRefused,
                format!(
                    "cannot publish to internal exchange '{}' in vhost '/'",
                    m.exchange
                ),
            ));
        }
        if m.exchange.is_empty() {
            if let Some((name, _)) = self.queues.get_key_value(m.routing_key) {
                targets.push(name.clone());
            }
        } else {
            exchange::route_all(&self.exchanges, ex, m.routing_key, m.headers_table, targets);
        }
        Ok(())
    }

    // ----- consuming ----------------------------------------------------------------

    /// Hands ready messages of `queue` to its consumers, round-robin, while any consumer
    /// has credit (prefetch, channel flow, outbox room).
    pub fn dispatch(&mut self, queue: &str) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        if q.consumers.is_empty() {
            return;
        }
        while q.ready() > 0 {
            let n = q.consumers.len();
            let mut chosen = None;
            for k in 0..n {
                let i = (q.rr + k) % n;
                let c = &q.consumers[i];
                let Some(ch) = self.channels.get(&(c.conn, c.channel)) else {
                    continue;
                };
                let consumer_ok = c.no_ack || c.prefetch == 0 || c.unacked < c.prefetch as u32;
                let channel_ok = c.no_ack
                    || ch.channel_prefetch == 0
                    || ch.unacked_count < ch.channel_prefetch as usize;
                if ch.flow_active && consumer_ok && channel_ok && c.outbox.has_room() {
                    chosen = Some(i);
                    break;
                }
            }
            let Some(i) = chosen else { break };
            let Some((rec, redelivered)) = q.take_next() else {
                break;
            };
            q.rr = (i + 1) % n;
            q.log.mark_delivered(rec.seq);
            let c = &mut q.consumers[i];
            let ch = self
                .channels
                .get_mut(&(c.conn, c.channel))
                .expect("checked above");
            let tag = if c.no_ack {
                let _ = q.log.ack(rec.seq);
                ch.next_delivery(None)
            } else {
                c.unacked += 1;
                q.unacked += 1;
                ch.next_delivery(Some(Unacked {
                    queue: q.name.clone(),
                    seq: rec.seq,
                    consumer: Some(c.tag.clone()),
                }))
            };
            c.outbox.push(Outgoing::Deliver {
                channel: c.channel,
                consumer_tag: c.tag.clone(),
                delivery_tag: tag,
                redelivered,
                payload: rec.payload,
            });
        }
    }

    pub fn qos(&mut self, key: ChannelKey, prefetch_count: u16, global: bool) {
        let queues: Vec<Arc<str>> = match self.channels.get_mut(&key) {
            Some(ch) => {
                if global {
                    ch.channel_prefetch = prefetch_count;
                } else {
                    ch.consumer_prefetch = prefetch_count;
                }
                ch.consumers.values().cloned().collect()
            }
            None => return,
        };
        for q in queues {
            self.dispatch(&q);
        }
    }

    /// Registers a consumer; returns its tag. The caller sends consume-ok, then calls
    /// `dispatch` for the queue (so deliveries follow consume-ok).
    pub fn consume(
        &mut self,
        key: ChannelKey,
        queue: &str,
        tag: &str,
        no_ack: bool,
        exclusive: bool,
        args_raw: &[u8],
    ) -> Result<Arc<str>, AmqpError> {
        table::decode(args_raw)?;
        let q = self.check_queue_access(queue, key.0)?;
        if q.consumers.iter().any(|c| c.exclusive) {
            return Err(AmqpError::channel(
                ReplyCode::AccessRefused,
                format!("queue '{queue}' in vhost '/' in exclusive use"),
            ));
        }
        if exclusive && !q.consumers.is_empty() {
            return Err(AmqpError::channel(
                ReplyCode::AccessRefused,
                format!("cannot obtain exclusive access to queue '{queue}' in vhost '/'"),
            ));
        }
        let queue_name = q.name.clone();
        let tag: Arc<str> = if tag.is_empty() {
            self.generated_name("amq.ctag-").into()
        } else {
            tag.into()
        };
        let ch = self
            .channels
            .get_mut(&key)
            .ok_or_else(|| AmqpError::connection(ReplyCode::ChannelError, "channel not open"))?;
        if ch.consumers.contains_key(&tag) {
            return Err(AmqpError::connection(
                ReplyCode::NotAllowed,
                format!("attempt to reuse consumer tag '{tag}'"),
            ));
        }
        ch.consumers.insert(tag.clone(), queue_name.clone());
        let consumer = Consumer {
            conn: key.0,
            channel: key.1,
            tag: tag.clone(),
            no_ack,
            exclusive,
            prefetch: ch.consumer_prefetch,
            unacked: 0,
            outbox: ch.outbox.clone(),
        };
        let q = self.queues.get_mut(&queue_name).expect("checked");
        q.consumers.push(consumer);
        q.had_consumer = true;
        Ok(tag)
    }

    /// The queue a consumer reads, for the dispatch that follows consume-ok.
    pub fn consumer_queue(&self, key: ChannelKey, tag: &str) -> Option<Arc<str>> {
        self.channels.get(&key)?.consumers.get(tag).cloned()
    }

    /// Cancels a consumer; returns false if the tag was unknown (RabbitMQ answers
    /// cancel-ok anyway).
    pub fn cancel(&mut self, key: ChannelKey, tag: &str) -> bool {
        let Some(queue) = self
            .channels
            .get_mut(&key)
            .and_then(|ch| ch.consumers.remove(tag))
        else {
            return false;
        };
        self.detach_consumer(&queue, key, tag);
        self.maybe_auto_delete(&queue);
        true
    }

    pub fn get(
        &mut self,
        key: ChannelKey,
        queue: &str,
        no_ack: bool,
    ) -> Result<Option<Got>, AmqpError> {
        self.check_queue_access(queue, key.0)?;
        let q = self.queues.get_mut(queue).expect("checked");
        let Some((rec, redelivered)) = q.take_next() else {
            return Ok(None);
        };
        q.log.mark_delivered(rec.seq);
        let ch = self
            .channels
            .get_mut(&key)
            .ok_or_else(|| AmqpError::connection(ReplyCode::ChannelError, "channel not open"))?;
        let tag = if no_ack {
            q.log.ack(rec.seq).map_err(io_error)?;
            ch.next_delivery(None)
        } else {
            q.unacked += 1;
            ch.next_delivery(Some(Unacked {
                queue: q.name.clone(),
                seq: rec.seq,
                consumer: None,
            }))
        };
        Ok(Some(Got {
            delivery_tag: tag,
            redelivered,
            message_count: q.ready().min(u32::MAX as u64) as u32,
            payload: rec.payload,
        }))
    }

    /// Settles deliveries: ack, or nack/reject with or without requeue. An unknown tag is
    /// a channel error (406), as in RabbitMQ. `tag` 0 with `multiple` means all.
    pub fn settle(
        &mut self,
        key: ChannelKey,
        tag: u64,
        multiple: bool,
        ack: bool,
        requeue: bool,
    ) -> Result<(), AmqpError> {
        let Some(ch) = self.channels.get_mut(&key) else {
            return Ok(());
        };
        let tags = if multiple {
            let upto = if tag == 0 { u64::MAX } else { tag };
            let tags = ch.tags_through(upto);
            if tag != 0 && tags.is_empty() && !ch.is_unacked(tag) {
                return Err(unknown_tag(tag));
            }
            tags
        } else {
            if !ch.is_unacked(tag) {
                return Err(unknown_tag(tag));
            }
            vec![tag]
        };
        let mut touched: Vec<Arc<str>> = Vec::new();
        for t in tags {
            let Some(u) = ch.take_unacked(t) else {
                continue;
            };
            let Some(q) = self.queues.get_mut(&u.queue) else {
                continue;
            };
            if let Some(tag) = &u.consumer {
                if let Some(c) = q
                    .consumers
                    .iter_mut()
                    .find(|c| c.conn == key.0 && c.channel == key.1 && &c.tag == tag)
                {
                    c.unacked = c.unacked.saturating_sub(1);
                }
            }
            if ack || !requeue {
                q.unacked = q.unacked.saturating_sub(1);
                q.log.ack(u.seq).map_err(io_error)?;
            } else {
                q.requeue(u.seq);
            }
            if !touched.contains(&u.queue) {
                touched.push(u.queue);
            }
        }
        for q in touched {
            self.dispatch(&q);
        }
        Ok(())
    }

    /// basic.recover: every unacked delivery of the channel goes back to its queue.
    pub fn recover(&mut self, key: ChannelKey) -> Result<(), AmqpError> {
        self.settle(key, 0, true, false, true)
    }

    // ----- upkeep -------------------------------------------------------------------

    /// Takes every queue's pending ack batches, to be written after the broker lock is
    /// released (see `AckFlush`).
    pub fn take_ack_flushes(&mut self) -> Vec<AckFlush> {
        self.queues
            .values_mut()
            .map(|q| q.log.take_ack_flush())
            .filter(|f| !f.is_empty())
            .collect()
    }

    /// Compacts sparse segments of every queue log.
    pub fn compact(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for q in self.queues.values_mut() {
            if let Err(e) = q.log.compact() {
                problems.push(format!("queue '{}': {e}", q.name));
            }
        }
        problems
    }

    /// Writes pending acks of every log (clean shutdown).
    pub fn shutdown(&mut self) {
        for q in self.queues.values_mut() {
            let _ = q.log.flush_acks();
        }
    }

    /// (ready, unacked, consumers) of a queue, for tests and management.
    pub fn queue_stats(&self, name: &str) -> Option<(u64, u64, usize)> {
        let q = self.queues.get(name)?;
        Some((q.ready(), q.unacked, q.consumers.len()))
    }
}

fn unknown_tag(tag: u64) -> AmqpError {
    AmqpError::channel(
        ReplyCode::PreconditionFailed,
        format!("unknown delivery tag {tag}"),
    )
}
