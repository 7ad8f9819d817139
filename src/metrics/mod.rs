//! Prometheus metrics on `--prometheus` (default 127.0.0.1:15692), as RabbitMQ 3.10's
//! `rabbitmq_prometheus` plugin serves them: `/metrics` aggregated (one series per
//! family), `/metrics/per-object` with a series per queue labelled `vhost` and `queue`,
//! both in the Prometheus text format (0.0.4) written by the `prometheus-client` crate, with
//! RabbitMQ's family names, types and help texts (checked against a recording of RabbitMQ
//! 3.10.8 in `tests/prometheus/`), plus Warren's storage families (`warren_*`).
//!
//! A scrape copies numbers out of the broker (`collect.rs`: the public model API, each
//! vhost's lock held only while its counts are copied; atomics for everything else; a walk
//! of the data dir for segment files, `segments.rs`), then renders with no lock held
//! (`families.rs`). `server.rs` is the listener.

mod collect;
mod families;
mod segments;
mod server;

use std::sync::Arc;
use std::time::Duration;

use crate::alarms::Alarms;
use crate::broker::BrokerHandle;

pub use collect::{collect, Snapshot};
pub use server::{bind, serve};

/// What a scrape reads.
#[derive(Clone)]
pub struct MetricsState {
    pub broker: BrokerHandle,
    /// Alarm state and limits, and the data dir (whose file system they watch).
    pub alarms: Arc<Alarms>,
    /// RabbitMQ-style node name, `warren@HOST` (as the management API's overview).
    pub node: Arc<str>,
    /// How long this start's recovery of the data dir took.
    pub recovery: Duration,
}

/// Renders the metrics as the endpoint would: aggregated, or per object.
pub fn render(state: &MetricsState, per_object: bool) -> String {
    families::render(collect(state, per_object))
}
