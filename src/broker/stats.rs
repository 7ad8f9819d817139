//! Cheap broker-wide counters: relaxed atomic adds on the hot paths (once per batch, not
//! per message where a batch exists), readable at any time without taking a model lock —
//! for the management API, Prometheus metrics and logs.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Running totals since the broker started.
#[derive(Debug, Default)]
pub struct BrokerStats {
    connections_opened: AtomicU64,
    connections_closed: AtomicU64,
    channels_opened: AtomicU64,
    channels_closed: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    acked: AtomicU64,
    confirmed: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub connections_opened: u64,
    pub connections_closed: u64,
    pub channels_opened: u64,
    pub channels_closed: u64,
    pub published: u64,
    pub delivered: u64,
    pub acked: u64,
    /// Publishes confirmed (basic.ack) to publishers; nacks are not counted.
    pub confirmed: u64,
}

impl StatsSnapshot {
    pub fn connections(&self) -> u64 {
        self.connections_opened - self.connections_closed
    }
}

impl BrokerStats {
    pub fn connection_opened(&self) {
        self.connections_opened.fetch_add(1, Relaxed);
    }
    pub fn connection_closed(&self) {
        self.connections_closed.fetch_add(1, Relaxed);
    }
    pub fn channel_opened(&self) {
        self.channels_opened.fetch_add(1, Relaxed);
    }
    pub fn channel_closed(&self) {
        self.channels_closed.fetch_add(1, Relaxed);
    }
    pub fn published(&self, n: u64) {
        self.published.fetch_add(n, Relaxed);
    }
    pub fn delivered(&self, n: u64) {
        if n > 0 {
            self.delivered.fetch_add(n, Relaxed);
        }
    }
    pub fn acked(&self, n: u64) {
        if n > 0 {
            self.acked.fetch_add(n, Relaxed);
        }
    }

    /// Counted by the connection as it sends confirms: once per channel per flush.
    pub fn confirmed(&self, n: u64) {
        if n > 0 {
            self.confirmed.fetch_add(n, Relaxed);
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connections_opened: self.connections_opened.load(Relaxed),
            connections_closed: self.connections_closed.load(Relaxed),
            channels_opened: self.channels_opened.load(Relaxed),
            channels_closed: self.channels_closed.load(Relaxed),
            published: self.published.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            acked: self.acked.load(Relaxed),
            confirmed: self.confirmed.load(Relaxed),
        }
    }
}

impl super::vhost::VHost {
    /// The broker's counters, for events counted outside the model (publisher confirms,
    /// counted by the connection that sends them).
    pub fn counters(&self) -> &Arc<BrokerStats> {
        &self.stats
    }
}
