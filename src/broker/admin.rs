//! What the management API (and metrics) read from the model: plain copies of queues,
//! exchanges, bindings, consumers, channels and connections, taken in one pass under the
//! vhost lock and rendered after it is released. Nothing here is on a hot path: the
//! counters it copies are bumped where the work already happens (per batch or under the
//! lock already held), and a snapshot never stops publishers for longer than one pass.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use amq_protocol_types::FieldTable;

use super::policy::Target;
use super::queue::storage_info::QueueStorage;
use super::queue::Queue;
use super::vhost::VHost;

/// Per-queue message counters since the queue was declared (or the broker started), as
/// RabbitMQ's `message_stats` counts them. Bumped under the vhost lock.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounters {
    /// Messages routed to the queue.
    pub publish: u64,
    /// Deliveries to consumers needing an ack, and without.
    pub deliver: u64,
    pub deliver_no_ack: u64,
    /// basic.get answers with a message, needing an ack, and without.
    pub get: u64,
    pub get_no_ack: u64,
    /// Deliveries (of either kind) of messages delivered before.
    pub redeliver: u64,
    /// Acknowledged deliveries.
    pub ack: u64,
    /// basic.get answered get-empty.
    pub get_empty: u64,
}

impl QueueCounters {
    /// Adds another queue's counters (for totals).
    pub fn add(&mut self, o: &QueueCounters) {
        self.publish += o.publish;
        self.deliver += o.deliver;
        self.deliver_no_ack += o.deliver_no_ack;
        self.get += o.get;
        self.get_no_ack += o.get_no_ack;
        self.redeliver += o.redeliver;
        self.ack += o.ack;
        self.get_empty += o.get_empty;
    }

    /// No message went through the queue (RabbitMQ then shows no `message_stats`).
    pub fn is_idle(&self) -> bool {
        *self == QueueCounters::default()
    }

    /// RabbitMQ's `deliver_get`: every message handed out.
    pub fn deliver_get(&self) -> u64 {
        self.deliver + self.deliver_no_ack + self.get + self.get_no_ack
    }
}

/// A connection as the management API lists it: fixed at connection.open, with traffic
/// counters the connection's task bumps once per socket read or write.
#[derive(Debug)]
pub struct ConnectionInfo {
    pub id: u64,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub user: Arc<str>,
    pub vhost: Arc<str>,
    /// The client's properties table as sent (length-prefixed), decoded when shown.
    pub client_properties: Vec<u8>,
    /// Milliseconds since the epoch.
    pub connected_at: u64,
    /// (protocol, cipher suite) of a TLS connection, as rustls names them.
    pub tls: Option<(String, String)>,
    /// The SASL mechanism the client logged in with (one of those offered).
    pub auth_mechanism: &'static str,
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    pub recv_oct: AtomicU64,
    pub send_oct: AtomicU64,
    pub recv_cnt: AtomicU64,
    pub send_cnt: AtomicU64,
    /// When the connection was last held by publisher flow control (milliseconds since
    /// the epoch; 0 = never): shown as state `flow` for a second after, as RabbitMQ's
    /// `credit_flow` reports it.
    pub last_flow: AtomicU64,
}

/// Milliseconds since the epoch (what `connected_at` holds).
pub fn now_millis() -> u64 {
    super::vhost::now_millis()
}

impl ConnectionInfo {
    /// A plain connection from `peer` to `local`, opened now; the caller fills in what
    /// the handshake negotiated.
    pub fn new(id: u64, (peer, local): (SocketAddr, SocketAddr), user: &str, vhost: &str) -> Self {
        ConnectionInfo {
            id,
            peer,
            local,
            user: user.into(),
            vhost: vhost.into(),
            client_properties: Vec::new(),
            connected_at: now_millis(),
            tls: None,
            auth_mechanism: "",
            frame_max: 0,
            channel_max: 0,
            heartbeat: 0,
            recv_oct: AtomicU64::new(0),
            send_oct: AtomicU64::new(0),
            recv_cnt: AtomicU64::new(0),
            send_cnt: AtomicU64::new(0),
            last_flow: AtomicU64::new(0),
        }
    }

    /// RabbitMQ's name for it: `PEER -> LOCAL` (made when asked: it is shown, not kept).
    pub fn name(&self) -> String {
        format!("{} -> {}", self.peer, self.local)
    }

    /// A socket read of `bytes`.
    pub fn received(&self, bytes: usize) {
        self.recv_oct.fetch_add(bytes as u64, Relaxed);
        self.recv_cnt.fetch_add(1, Relaxed);
    }

    /// The connection is (still) held by flow control.
    pub fn in_flow(&self) {
        self.last_flow.store(now_millis(), Relaxed);
    }

    /// RabbitMQ's connection state: `flow` if flow control held it within the last
    /// second, else `running`.
    pub fn state(&self) -> &'static str {
        let last = self.last_flow.load(Relaxed);
        match last != 0 && now_millis() < last + 1000 {
            true => "flow",
            false => "running",
        }
    }

    /// A socket write of `bytes`.
    pub fn sent(&self, bytes: usize) {
        self.send_oct.fetch_add(bytes as u64, Relaxed);
        self.send_cnt.fetch_add(1, Relaxed);
    }
}

/// A queue at one moment.
#[derive(Debug, Clone)]
pub struct QueueSnapshot {
    pub name: Arc<str>,
    pub durable: bool,
    pub auto_delete: bool,
    /// The owning connection of an exclusive queue.
    pub owner: Option<u64>,
    pub arguments: FieldTable,
    /// `classic`, `quorum` or `stream`.
    pub queue_type: &'static str,
    pub policy: Option<String>,
    pub operator_policy: Option<String>,
    /// The policy keys in effect (policy and operator policy merged).
    pub effective_policy: serde_json::Map<String, serde_json::Value>,
    pub ready: u64,
    pub unacked: u64,
    /// Dead-lettered messages still in the queue: waiting for their copies to be durable,
    /// or (at-least-once) for a route.
    pub dead_lettered: u64,
    pub consumers: usize,
    /// Consumers holding the queue: the exclusive one, or the active single consumer.
    pub exclusive_consumer_tag: Option<Arc<str>>,
    pub single_active_consumer_tag: Option<Arc<str>>,
    pub counters: QueueCounters,
    /// Milliseconds since the epoch of the last use (declare, consume, get).
    pub last_used: u64,
}

/// An exchange at one moment.
#[derive(Debug, Clone)]
pub struct ExchangeSnapshot {
    pub name: Arc<str>,
    pub kind: &'static str,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    pub policy: Option<String>,
}

/// A binding: `destination_type` is `queue` or `exchange`. The default exchange's
/// implicit bindings (one per queue, key = queue name) are listed as RabbitMQ lists them.
#[derive(Debug, Clone)]
pub struct BindingSnapshot {
    pub source: Arc<str>,
    pub destination: Arc<str>,
    pub destination_type: &'static str,
    pub routing_key: String,
    pub arguments: FieldTable,
}

/// A consumer at one moment.
#[derive(Debug, Clone)]
pub struct ConsumerSnapshot {
    pub queue: Arc<str>,
    pub tag: Arc<str>,
    pub conn: u64,
    pub channel: u16,
    pub ack_required: bool,
    pub exclusive: bool,
    pub prefetch: u16,
    /// `x-priority` (0 when not given).
    pub priority: i32,
    /// Whether it receives: false for a waiting consumer under single active consumer.
    pub active: bool,
}

/// A channel's model-side state at one moment.
#[derive(Debug, Clone)]
pub struct ChannelSnapshot {
    pub conn: u64,
    pub number: u16,
    pub unacked: usize,
    pub prefetch: u16,
    pub global_prefetch: u16,
    pub consumers: usize,
    pub mode: super::ChannelMode,
}

/// Everything of one vhost the API lists, taken in one pass.
#[derive(Debug, Default, Clone)]
pub struct VHostSnapshot {
    pub queues: Vec<QueueSnapshot>,
    pub exchanges: Vec<ExchangeSnapshot>,
    pub bindings: Vec<BindingSnapshot>,
    pub consumers: Vec<ConsumerSnapshot>,
    pub channels: Vec<ChannelSnapshot>,
    pub connections: Vec<Arc<ConnectionInfo>>,
}

/// What a caller wants copied (a queue list need not copy bindings).
#[derive(Debug, Default, Clone, Copy)]
pub struct Want {
    pub queues: bool,
    pub exchanges: bool,
    pub bindings: bool,
    pub consumers: bool,
    pub channels: bool,
    pub connections: bool,
}

impl Want {
    pub const QUEUES: Want = Want {
        queues: true,
        exchanges: false,
        bindings: false,
        consumers: false,
        channels: false,
        connections: false,
    };
    pub const EXCHANGES: Want = Want {
        exchanges: true,
        queues: false,
        ..Want::QUEUES
    };
    pub const BINDINGS: Want = Want {
        bindings: true,
        queues: false,
        ..Want::QUEUES
    };
    /// Connections with their channels and consumers.
    pub const ATTACHED: Want = Want {
        consumers: true,
        channels: true,
        connections: true,
        queues: false,
        ..Want::QUEUES
    };
}

impl VHost {
    fn queue_snapshot(&self, q: &Queue) -> QueueSnapshot {
        let sac = q.features.single_active_consumer;
        QueueSnapshot {
            name: q.name.clone(),
            durable: q.durable,
            auto_delete: q.auto_delete,
            owner: q.exclusive_owner,
            arguments: q.args.clone(),
            queue_type: if q.is_stream() {
                "stream"
            } else if q.is_quorum() {
                "quorum"
            } else {
                "classic"
            },
            policy: self
                .policies
                .applied(Target::Queue, &q.name)
                .map(str::to_owned),
            operator_policy: self
                .policies
                .applied_operator(Target::Queue, &q.name)
                .map(str::to_owned),
            effective_policy: self.policies.effective_definition(Target::Queue, &q.name),
            ready: q.ready(),
            unacked: q.unacked,
            dead_lettered: q.dead_lettering.len() as u64 + q.parked,
            consumers: q.consumers.len(),
            exclusive_consumer_tag: q
                .consumers
                .iter()
                .find(|c| c.exclusive)
                .map(|c| c.tag.clone()),
            single_active_consumer_tag: q.consumers.first().filter(|_| sac).map(|c| c.tag.clone()),
            counters: q.counters,
            last_used: q.last_used,
        }
    }

    /// (name, id, counters, ready, unacked) of every queue, for the rate sampler.
    pub fn queue_counters(&self) -> Vec<(Arc<str>, u64, QueueCounters, u64, u64)> {
        self.queues
            .values()
            .map(|q| (q.name.clone(), q.id, q.counters, q.ready(), q.unacked))
            .collect()
    }

    /// The attached connections.
    pub fn connection_infos(&self) -> Vec<Arc<ConnectionInfo>> {
        self.connections.values().map(|a| a.info.clone()).collect()
    }

    /// One queue, if it exists.
    pub fn queue_snapshot_of(&self, name: &str) -> Option<QueueSnapshot> {
        self.queues.get(name).map(|q| self.queue_snapshot(q))
    }

    /// One queue's storage picture (O(its segments)), if it exists.
    pub fn queue_storage_of(&self, name: &str) -> Option<QueueStorage> {
        let q = self.queues.get(name)?;
        let (logs, levels) = q.store.storage_stats();
        Some(QueueStorage {
            logs,
            levels,
            compaction: self.compactions.get(&q.id).copied(),
        })
    }

    /// The parts of the vhost `want` asks for.
    pub fn snapshot(&self, want: Want) -> VHostSnapshot {
        let mut s = VHostSnapshot::default();
        if want.queues {
            s.queues = self
                .queues
                .values()
                .map(|q| self.queue_snapshot(q))
                .collect();
        }
        if want.exchanges {
            s.exchanges = self
                .exchanges
                .values()
                .map(|e| ExchangeSnapshot {
                    name: e.name.clone(),
                    kind: e.type_name(),
                    durable: e.durable,
                    auto_delete: e.auto_delete,
                    internal: e.internal,
                    arguments: e.args.clone(),
                    policy: self
                        .policies
                        .applied(Target::Exchange, &e.name)
                        .map(str::to_owned),
                })
                .collect();
        }
        if want.bindings {
            s.bindings = self.binding_snapshots();
        }
        if want.consumers {
            for q in self.queues.values() {
                let sac = q.features.single_active_consumer;
                for (i, c) in q.consumers.iter().enumerate() {
                    s.consumers.push(ConsumerSnapshot {
                        queue: q.name.clone(),
                        tag: c.tag.clone(),
                        conn: c.conn,
                        channel: c.channel,
                        ack_required: !c.no_ack,
                        exclusive: c.exclusive,
                        prefetch: c.prefetch,
                        priority: c.priority,
                        active: !sac || i == 0,
                    });
                }
            }
        }
        if want.channels {
            s.channels = self
                .channels
                .iter()
                .map(|(&(conn, number), ch)| ChannelSnapshot {
                    conn,
                    number,
                    unacked: ch.unacked_count,
                    prefetch: ch.consumer_prefetch,
                    global_prefetch: ch.channel_prefetch,
                    consumers: ch.consumers.len(),
                    mode: ch.mode,
                })
                .collect();
        }
        if want.connections {
            s.connections = self.connections.values().map(|a| a.info.clone()).collect();
        }
        s
    }

    /// Every binding, the default exchange's implicit ones first (as RabbitMQ lists).
    fn binding_snapshots(&self) -> Vec<BindingSnapshot> {
        let mut out: Vec<BindingSnapshot> = self
            .queues
            .keys()
            .map(|q| BindingSnapshot {
                source: "".into(),
                destination: q.clone(),
                destination_type: "queue",
                routing_key: q.to_string(),
                arguments: FieldTable::default(),
            })
            .collect();
        for e in self.exchanges.values() {
            for b in &e.bindings {
                let (destination, destination_type) = match &b.dest {
                    super::exchange::Dest::Queue(n) => (n.clone(), "queue"),
                    super::exchange::Dest::Exchange(n) => (n.clone(), "exchange"),
                };
                out.push(BindingSnapshot {
                    source: e.name.clone(),
                    destination,
                    destination_type,
                    routing_key: b.routing_key.clone(),
                    arguments: b.args.clone(),
                });
            }
        }
        out
    }

    /// Asks connection `conn` to close with 320 and `text` (an operator closed it);
    /// false if it is not attached here.
    pub fn close_connection_forced(&mut self, conn: u64, text: &str) -> bool {
        match self.connections.get(&conn) {
            Some(a) => {
                a.outbox
                    .push(super::outbox::Outgoing::Close { text: text.into() });
                true
            }
            None => false,
        }
    }
}
