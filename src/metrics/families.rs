//! The families, rendered from a `Snapshot` by `prometheus-client` in the Prometheus text
//! format. Names, types and help texts of `rabbitmq_*` families are RabbitMQ 3.10.8's
//! (`tests/prometheus/rabbitmq-3.10.8-*.txt`); the crate adds `_total` to counter names,
//! so counters are written here without it. Families RabbitMQ has but Warren cannot count
//! honestly are left out rather than sent as zeros (README's Metrics section lists them).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use warren_storage::HistogramSnapshot;

use super::collect::{QueueRow, Snapshot};

type Result = std::result::Result<(), std::fmt::Error>;

/// The RabbitMQ version whose behaviour Warren follows (as the management API reports it).
const RABBITMQ_VERSION: &str = "3.10.8";
/// RabbitMQ's label for AMQP 0-9-1 on `rabbitmq_global_*`.
const PROTOCOL: (&str, &str) = ("protocol", "amqp091");
/// The queue-type label of the delivery and ack counters. Warren counts them for all its
/// queues together, so stream deliveries and acks are included under the classic label
/// (RabbitMQ splits them by type).
const CLASSIC: (&str, &str) = ("queue_type", "rabbit_classic_queue");

/// The text of one scrape.
pub fn render(snapshot: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Result {
        rabbitmq_node(self, &mut e)?;
        rabbitmq_queues(self, &mut e)?;
        rabbitmq_global(self, &mut e)?;
        warren_storage(self, &mut e)
    }
}

fn gauge<V: EncodeGaugeValue>(e: &mut DescriptorEncoder, name: &str, help: &str, v: V) -> Result {
    e.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

/// RabbitMQ's `untyped` families (alarms, build and identity info).
fn untyped<S: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    labels: &S,
    v: u64,
) -> Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Unknown)?;
    m.encode_family(labels)?.encode_gauge(&v)
}

/// A counter; `name` without `_total` (the encoder adds it).
fn counter<S: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    labels: &S,
    v: u64,
) -> Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    m.encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

/// RabbitMQ's three alarm families (untyped, 0 or 1).
fn alarms(s: &Snapshot, e: &mut DescriptorEncoder) -> Result {
    let none: [(&str, &str); 0] = [];
    untyped(
        e,
        "rabbitmq_alarms_file_descriptor_limit",
        "is 1 if file descriptor limit alarm is in effect",
        &none,
        0, // Warren has no file descriptor alarm
    )?;
    untyped(
        e,
        "rabbitmq_alarms_free_disk_space_watermark",
        "is 1 if free disk space watermark alarm is in effect",
        &none,
        s.alarms.disk as u64,
    )?;
    untyped(
        e,
        "rabbitmq_alarms_memory_used_watermark",
        "is 1 if VM memory watermark alarm is in effect",
        &none,
        s.alarms.memory as u64,
    )
}

/// Alarms, connection and channel totals, memory, disk, objects, node identity.
fn rabbitmq_node(s: &Snapshot, e: &mut DescriptorEncoder) -> Result {
    let none: [(&str, &str); 0] = [];
    // RabbitMQ 3.10's /metrics/per-object has no alarm families.
    if s.queues.is_none() {
        alarms(s, e)?;
    }
    let st = &s.stats;
    counter(
        e,
        "rabbitmq_connections_opened",
        "Total number of connections opened",
        &none,
        st.connections_opened,
    )?;
    counter(
        e,
        "rabbitmq_connections_closed",
        "Total number of connections closed or terminated",
        &none,
        st.connections_closed,
    )?;
    counter(
        e,
        "rabbitmq_channels_opened",
        "Total number of channels opened",
        &none,
        st.channels_opened,
    )?;
    counter(
        e,
        "rabbitmq_channels_closed",
        "Total number of channels closed",
        &none,
        st.channels_closed,
    )?;
    if let Some(v) = s.open_fds {
        gauge(e, "rabbitmq_process_open_fds", "Open file descriptors", v)?;
    }
    if let Some(v) = s.max_fds {
        gauge(
            e,
            "rabbitmq_process_max_fds",
            "Open file descriptors limit",
            v,
        )?;
    }
    if let Some(v) = s.resident_bytes {
        gauge(
            e,
            "rabbitmq_process_resident_memory_bytes",
            "Memory used in bytes",
            v,
        )?;
    }
    if let Some(v) = s.disk_free {
        gauge(
            e,
            "rabbitmq_disk_space_available_bytes",
            "Disk space available in bytes",
            v,
        )?;
    }
    gauge(
        e,
        "rabbitmq_resident_memory_limit_bytes",
        "Memory high watermark in bytes",
        s.memory_limit,
    )?;
    gauge(
        e,
        "rabbitmq_disk_space_available_limit_bytes",
        "Free disk space low watermark in bytes",
        s.disk_free_limit,
    )?;
    let t = &s.totals;
    gauge(
        e,
        "rabbitmq_connections",
        "Connections currently open",
        t.connections,
    )?;
    gauge(
        e,
        "rabbitmq_channels",
        "Channels currently open",
        t.channels,
    )?;
    gauge(
        e,
        "rabbitmq_consumers",
        "Consumers currently connected",
        t.consumers,
    )?;
    gauge(e, "rabbitmq_queues", "Queues available", t.queues)?;
    untyped(
        e,
        "rabbitmq_build_info",
        "RabbitMQ & Erlang/OTP version info",
        &[
            ("rabbitmq_version", RABBITMQ_VERSION),
            ("product_name", "Warren"),
            ("product_version", env!("CARGO_PKG_VERSION")),
        ],
        1,
    )?;
    untyped(
        e,
        "rabbitmq_identity_info",
        "RabbitMQ node & cluster identity info",
        &[("rabbitmq_node", &*s.node), ("rabbitmq_cluster", &*s.node)],
        1,
    )
}

/// Queue depths and consumers: one unlabelled series (aggregated) or one per queue.
fn rabbitmq_queues(s: &Snapshot, e: &mut DescriptorEncoder) -> Result {
    type Field = fn(&QueueRow) -> u64;
    let t = &s.totals;
    let families: [(&str, &str, Field, u64); 4] = [
        (
            "rabbitmq_queue_messages_ready",
            "Messages ready to be delivered to consumers",
            |q| q.ready,
            t.ready,
        ),
        (
            "rabbitmq_queue_messages_unacked",
            "Messages delivered to consumers but not yet acknowledged",
            |q| q.unacked,
            t.unacked,
        ),
        (
            "rabbitmq_queue_messages",
            "Sum of ready and unacknowledged messages - total queue depth",
            |q| q.ready + q.unacked,
            t.ready + t.unacked,
        ),
        (
            "rabbitmq_queue_consumers",
            "Consumers on a queue",
            |q| q.consumers,
            t.consumers,
        ),
    ];
    for (name, help, field, total) in families {
        let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
        match &s.queues {
            None => m.encode_gauge(&total)?,
            Some(rows) => {
                for q in rows {
                    let labels = [("vhost", &*q.vhost), ("queue", &*q.queue)];
                    m.encode_family(&labels)?.encode_gauge(&field(q))?;
                }
            }
        }
    }
    Ok(())
}

/// The node-wide message counters RabbitMQ labels with the protocol (and queue type).
fn rabbitmq_global(s: &Snapshot, e: &mut DescriptorEncoder) -> Result {
    let st = &s.stats;
    gauge_labelled(
        e,
        "rabbitmq_global_consumers",
        "Current number of consumers",
        &[PROTOCOL],
        s.totals.consumers,
    )?;
    counter(
        e,
        "rabbitmq_global_messages_acknowledged",
        "Total number of messages acknowledged by consumers",
        &[PROTOCOL, CLASSIC],
        st.acked,
    )?;
    counter(
        e,
        "rabbitmq_global_messages_confirmed",
        "Total number of messages confirmed to publishers",
        &[PROTOCOL],
        st.confirmed,
    )?;
    counter(
        e,
        "rabbitmq_global_messages_delivered",
        "Total number of messages delivered to consumers",
        &[PROTOCOL, CLASSIC],
        st.delivered,
    )?;
    counter(
        e,
        "rabbitmq_global_messages_received",
        "Total number of messages received from publishers",
        &[PROTOCOL],
        st.published,
    )
}

fn gauge_labelled<S: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    labels: &S,
    v: u64,
) -> Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    m.encode_family(labels)?.encode_gauge(&v)
}

/// Warren's own: segment files, sync rounds, compaction, recovery.
fn warren_storage(s: &Snapshot, e: &mut DescriptorEncoder) -> Result {
    let none: [(&str, &str); 0] = [];
    gauge(
        e,
        "warren_segment_files",
        "Segment files (<base>.seg) in the data dir",
        s.segments.files,
    )?;
    gauge(
        e,
        "warren_segment_bytes",
        "Bytes reserved on disk by segment files (preallocated: their capacity)",
        s.segments.bytes,
    )?;
    histogram(
        e,
        "warren_fsync_seconds",
        "Duration of a group-commit sync round (every fdatasync in it)",
        &s.storage.fsync_ns,
        1e-9,
    )?;
    histogram(
        e,
        "warren_group_commit_batch_size",
        "Appends (one per queue per publish batch) made durable by one sync round",
        &s.storage.batch,
        1.0,
    )?;
    counter(
        e,
        "warren_compaction_runs",
        "Segments rewritten by compaction",
        &none,
        s.storage.compactions,
    )?;
    counter(
        e,
        "warren_compaction_bytes_reclaimed",
        "Bytes saved by compacting segments",
        &none,
        s.storage.reclaimed_bytes,
    )?;
    gauge(
        e,
        "warren_recovery_seconds",
        "How long recovering the data dir took at this start",
        s.recovery_seconds,
    )
}

/// A histogram from the engine's integer buckets, scaled (nanoseconds to seconds).
fn histogram(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &HistogramSnapshot,
    scale: f64,
) -> Result {
    let buckets: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .map(|&(bound, n)| {
            let le = if bound == u64::MAX {
                f64::INFINITY
            } else {
                bound as f64 * scale
            };
            (le, n)
        })
        .collect();
    e.encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(h.sum as f64 * scale, h.count, &buckets, None)
}
