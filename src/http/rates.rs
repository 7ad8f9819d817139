//! Message rates, as RabbitMQ's statistics database gives them in `*_details.rate`:
//! every `INTERVAL` a task copies the broker-wide counters and each queue's counters
//! (one pass per vhost under its lock: a few words per queue) and keeps the change per
//! second since the previous sample. Handlers read the last rates; nothing is computed
//! on a request and nothing is added to the hot paths.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::broker::admin::QueueCounters;
use crate::broker::stats::StatsSnapshot;
use crate::broker::BrokerHandle;

/// RabbitMQ's default `collect_statistics_interval`.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// Per-second rates of a queue over the last interval.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct QueueRates {
    pub publish: f64,
    pub deliver: f64,
    pub deliver_no_ack: f64,
    pub get: f64,
    pub get_no_ack: f64,
    pub deliver_get: f64,
    pub redeliver: f64,
    pub ack: f64,
    pub get_empty: f64,
    pub messages: f64,
    pub messages_ready: f64,
    pub messages_unacknowledged: f64,
}

/// Broker-wide per-second rates over the last interval.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct GlobalRates {
    pub publish: f64,
    pub confirm: f64,
    pub deliver_get: f64,
    pub ack: f64,
    pub messages: f64,
    pub messages_ready: f64,
    pub messages_unacknowledged: f64,
}

#[derive(Debug, Clone, Copy)]
struct QueueSample {
    id: u64,
    counters: QueueCounters,
    ready: u64,
    unacked: u64,
    rates: QueueRates,
}

/// A connection's traffic counters and their rates (bytes per second).
#[derive(Debug, Default, Clone, Copy)]
struct OctetSample {
    recv: u64,
    send: u64,
    recv_rate: f64,
    send_rate: f64,
}

#[derive(Default)]
struct Sampled {
    at: Option<Instant>,
    global: StatsSnapshot,
    depth: (u64, u64),
    global_rates: GlobalRates,
    /// vhost -> queue -> sample (looked up by `&str`, without building keys).
    queues: HashMap<Arc<str>, HashMap<Arc<str>, QueueSample>>,
    /// vhost -> the highest queue id at the last sample: a queue at or below it with no
    /// sample was there and idle (its sample was dropped); one above it is new.
    max_queue_id: HashMap<Arc<str>, u64>,
    connections: HashMap<u64, OctetSample>,
}

/// The last sampled rates.
#[derive(Default)]
pub struct Rates(RwLock<Sampled>);

impl Rates {
    /// The rates of queue `name` in `vhost` (zero until two samples exist).
    pub fn queue(&self, vhost: &str, name: &str) -> QueueRates {
        let s = self.0.read().expect("rates lock");
        s.queues
            .get(vhost)
            .and_then(|qs| qs.get(name))
            .map(|q| q.rates)
            .unwrap_or_default()
    }

    /// The summed rates of a vhost's queues (every vhost's with `None`).
    pub fn vhost(&self, vhost: Option<&str>) -> QueueRates {
        let s = self.0.read().expect("rates lock");
        let mut t = QueueRates::default();
        let vhosts = s
            .queues
            .iter()
            .filter(|(v, _)| vhost.is_none_or(|w| ***v == *w));
        for q in vhosts.flat_map(|(_, qs)| qs.values()).map(|q| q.rates) {
            t.publish += q.publish;
            t.deliver += q.deliver;
            t.deliver_no_ack += q.deliver_no_ack;
            t.get += q.get;
            t.get_no_ack += q.get_no_ack;
            t.get_empty += q.get_empty;
            t.deliver_get += q.deliver_get;
            t.redeliver += q.redeliver;
            t.ack += q.ack;
            t.messages += q.messages;
            t.messages_ready += q.messages_ready;
            t.messages_unacknowledged += q.messages_unacknowledged;
        }
        t
    }

    /// (received, sent) bytes per second of a connection.
    pub fn connection(&self, id: u64) -> (f64, f64) {
        let s = self.0.read().expect("rates lock");
        s.connections
            .get(&id)
            .map_or((0.0, 0.0), |c| (c.recv_rate, c.send_rate))
    }

    pub fn global(&self) -> GlobalRates {
        self.0.read().expect("rates lock").global_rates
    }

    /// Takes one sample of `broker` and updates the rates.
    pub fn sample(&self, broker: &BrokerHandle) {
        let now = Instant::now();
        let global = broker.stats();
        let mut fresh: HashMap<Arc<str>, HashMap<Arc<str>, QueueSample>> = HashMap::new();
        let mut depth = (0u64, 0u64);
        let mut octets: HashMap<u64, OctetSample> = HashMap::new();
        let mut max_ids: HashMap<Arc<str>, u64> = HashMap::new();
        for name in broker.vhost_names() {
            let Some(vh) = broker.vhost(&name) else {
                continue;
            };
            let (queues, conns) = vh.with(|m| (m.queue_counters(), m.connection_infos()));
            for c in conns {
                octets.insert(
                    c.id,
                    OctetSample {
                        recv: c.recv_oct.load(Relaxed),
                        send: c.send_oct.load(Relaxed),
                        ..OctetSample::default()
                    },
                );
            }
            let samples = fresh.entry(name.clone()).or_default();
            let top = max_ids.entry(name.clone()).or_default();
            for (queue, id, counters, ready, unacked) in queues {
                depth.0 += ready;
                depth.1 += unacked;
                *top = (*top).max(id);
                samples.insert(
                    queue,
                    QueueSample {
                        id,
                        counters,
                        ready,
                        unacked,
                        rates: QueueRates::default(),
                    },
                );
            }
        }
        let mut s = self.0.write().expect("rates lock");
        if let Some(at) = s.at {
            let secs = now.duration_since(at).as_secs_f64().max(1e-3);
            let per = |new: u64, old: u64| new.saturating_sub(old) as f64 / secs;
            let signed = |new: u64, old: u64| (new as f64 - old as f64) / secs;
            let queues = fresh
                .iter_mut()
                .flat_map(|(v, qs)| qs.iter_mut().map(move |(n, q)| (v, n, q)));
            for (vhost, name, q) in queues {
                // A queue deleted and declared again under its name starts over, and a
                // new one has no rates yet; one that was there but kept no sample was
                // idle: all zeros.
                let old = s.queues.get(vhost).and_then(|qs| qs.get(name));
                let was_there = s.max_queue_id.get(vhost).is_some_and(|&m| q.id <= m);
                let idle = QueueSample {
                    id: q.id,
                    counters: QueueCounters::default(),
                    ready: 0,
                    unacked: 0,
                    rates: QueueRates::default(),
                };
                let old = match old.filter(|o| o.id == q.id) {
                    Some(old) => old,
                    None if was_there && old.is_none() => &idle,
                    None => continue,
                };
                let (c, o) = (&q.counters, &old.counters);
                q.rates = QueueRates {
                    publish: per(c.publish, o.publish),
                    deliver: per(c.deliver, o.deliver),
                    deliver_no_ack: per(c.deliver_no_ack, o.deliver_no_ack),
                    get: per(c.get, o.get),
                    get_no_ack: per(c.get_no_ack, o.get_no_ack),
                    deliver_get: per(c.deliver_get(), o.deliver_get()),
                    redeliver: per(c.redeliver, o.redeliver),
                    ack: per(c.ack, o.ack),
                    get_empty: per(c.get_empty, o.get_empty),
                    messages: signed(q.ready + q.unacked, old.ready + old.unacked),
                    messages_ready: signed(q.ready, old.ready),
                    messages_unacknowledged: signed(q.unacked, old.unacked),
                };
            }
            for (id, c) in octets.iter_mut() {
                if let Some(old) = s.connections.get(id) {
                    c.recv_rate = per(c.recv, old.recv);
                    c.send_rate = per(c.send, old.send);
                }
            }
            s.global_rates = GlobalRates {
                publish: per(global.published, s.global.published),
                deliver_get: per(global.delivered, s.global.delivered),
                ack: per(global.acked, s.global.acked),
                confirm: per(global.confirmed, s.global.confirmed),
                messages: signed(depth.0 + depth.1, s.depth.0 + s.depth.1),
                messages_ready: signed(depth.0, s.depth.0),
                messages_unacknowledged: signed(depth.1, s.depth.1),
            };
        }
        // A queue never used and empty, with no change to show, is not kept: a missing
        // sample reads as all zeros, so idle queues (most of them, on a big broker) cost
        // nothing between samples.
        for qs in fresh.values_mut() {
            qs.retain(|_, q| {
                q.counters != QueueCounters::default()
                    || q.ready != 0
                    || q.unacked != 0
                    || q.rates != QueueRates::default()
            });
            qs.shrink_to_fit();
        }
        s.at = Some(now);
        s.global = global;
        s.depth = depth;
        s.queues = fresh;
        s.max_queue_id = max_ids;
        s.connections = octets;
    }
}

/// Samples every `INTERVAL` until the task is dropped (the sampling itself runs on the
/// blocking pool: it takes every vhost's lock in turn).
pub async fn run(rates: Arc<Rates>, broker: BrokerHandle) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (r, b) = (rates.clone(), broker.clone());
        if tokio::task::spawn_blocking(move || r.sample(&b))
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{definitions_import, publish_for_test as publish};

    #[test]
    fn rates_follow_the_counters_and_idle_queues_keep_no_sample() {
        let dir = tempfile::tempdir().expect("dir");
        let broker = BrokerHandle::open_ephemeral(dir.path()).expect("broker");
        let defs = br#"{"queues": [
            {"name": "busy", "vhost": "/", "durable": true, "auto_delete": false, "arguments": {}},
            {"name": "idle", "vhost": "/", "durable": true, "auto_delete": false, "arguments": {}}]}"#;
        definitions_import::import_json(&broker, defs).expect("import");
        let rates = Rates::default();
        rates.sample(&broker);
        publish(&broker, "busy", 10);
        rates.sample(&broker);
        let busy = rates.queue("/", "busy");
        assert!(busy.publish > 0.0, "{busy:?}");
        assert!(busy.messages_ready > 0.0, "{busy:?}");
        assert_eq!(rates.queue("/", "idle"), QueueRates::default());
        let s = rates.0.read().expect("lock");
        let kept: Vec<&str> = s.queues["/"].keys().map(|k| &**k).collect();
        assert_eq!(kept, ["busy"], "only the used queue keeps a sample");
        assert!(s.global_rates.publish > 0.0);
        drop(s);
        // Nothing more happened: the busy queue's rates fall to zero but it keeps its
        // sample (its counters are not zero).
        rates.sample(&broker);
        assert_eq!(rates.queue("/", "busy").publish, 0.0);
        assert!(rates.0.read().expect("lock").queues["/"].contains_key("busy"));
    }
}
