//! Streams in the model (the queue side is `queue/stream.rs`): a stream's store opened
//! with its segment size, basic.consume with an offset, delivery by each consumer's own
//! cursor, acks as credit, retention after appends and on upkeep, and the operations a
//! stream refuses as RabbitMQ 3.10 does (basic.get, purge, nack/reject: 540).

use std::io;
use std::path::Path;
use std::sync::Arc;

use amq_protocol_types::FieldTable;
use warren_storage::{Cursor, RecoveryReport};

use super::channel::Unacked;
use super::dispatch::credit;
use super::error::BrokerError;
use super::outbox::Outgoing;
use super::queue::stream::{is_stream_args, with_offset, StreamSettings};
use super::queue::{stream_args, Queue, QueueFeatures, Store};
use super::stream_convert::{amqp10_to_stored, KIND_AMQP10};
use super::vhost::{now_millis, VHost};
use super::ChannelKey;
use crate::protocol::table::int_value;

/// Bounds on a stream's segment size: small enough segments make retention fine-grained
/// (and tests quick); a segment's offsets are 32-bit in its index.
const MIN_SEGMENT: i64 = 4096;
const MAX_SEGMENT: i64 = 1 << 30;

/// RabbitMQ's name for a queue in its error texts.
fn rs(queue: &str, vhost: &str) -> String {
    format!("queue '{queue}' in vhost '{vhost}'")
}

/// The 540 a stream answers to an operation it does not do.
pub(super) fn not_supported(what: &str, queue: &str, vhost: &str) -> BrokerError {
    BrokerError::NotImplemented(format!(
        "{what} not supported by stream queues {}",
        rs(queue, vhost)
    ))
}

impl VHost {
    /// Opens a queue's store: a stream's with its own segment size (policy over argument),
    /// a classic queue's with one level per priority.
    pub(super) fn open_store(
        &self,
        dir: &Path,
        name: &str,
        args: &FieldTable,
    ) -> io::Result<(Store, Vec<RecoveryReport>)> {
        if is_stream_args(args) {
            let mut config = self.log_config.clone();
            let size = self
                .policies
                .stream_setting(name, args, "stream-max-segment-size-bytes");
            if let Some(n) = size.as_ref().and_then(int_value) {
                config.segment_size = n.clamp(MIN_SEGMENT, MAX_SEGMENT) as usize;
            }
            return Store::open(dir, config, self.commit.clone(), 0);
        }
        let max_priority = QueueFeatures::from_args(args).max_priority.unwrap_or(0);
        Store::open(
            dir,
            self.log_config.clone(),
            self.commit.clone(),
            max_priority,
        )
    }

    /// Sets a stream's retention from its arguments and the policies (the policy's value
    /// wins for streams), and applies it at once.
    pub(super) fn apply_stream_policy(&mut self, name: &Arc<str>) {
        let Some(q) = self.queues.get_mut(name) else {
            return;
        };
        let settings = StreamSettings {
            max_bytes: self
                .policies
                .stream_setting(name, &q.args, "max-length-bytes"),
            max_age: self.policies.stream_setting(name, &q.args, "max-age"),
        };
        if let Some(s) = q.stream.as_mut() {
            s.retention = settings.retention();
        }
        self.apply_retention(name, now_millis());
    }

    /// Drops whole segments from the front of stream `name` that its retention no longer
    /// keeps. Consumers reading there move on to the first offset left.
    pub(super) fn apply_retention(&mut self, name: &str, now: u64) {
        let Some(q) = self.queues.get_mut(name) else {
            return;
        };
        let Some(retention) = q.stream.as_mut().map(|s| {
            s.retention_due = false;
            s.retention
        }) else {
            return;
        };
        let Some(log) = q.store.level_log_mut(0) else {
            return;
        };
        match log.apply_retention(&retention, now) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(queue = name, dropped = n, "stream retention"),
            Err(e) => tracing::error!(queue = name, "stream retention: {e}"),
        }
    }

    /// Retention by age on every stream (upkeep): it must not wait for the next append.
    /// Returns the tracking files to write (directory, content), for the caller to write
    /// without the lock.
    pub fn stream_upkeep(&mut self) -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let writes = self
            .queues
            .values_mut()
            .filter_map(|q| {
                let dir = q.store.level_log(0)?.dir().to_path_buf();
                q.stream.as_mut()?.tracking.take_write(&dir)
            })
            .collect();
        let now = now_millis();
        let streams: Vec<Arc<str>> = self
            .queues
            .values()
            .filter(|q| {
                q.stream
                    .as_ref()
                    .is_some_and(|s| !s.retention.is_unlimited())
            })
            .map(|q| q.name.clone())
            .collect();
        for name in streams {
            self.apply_retention(&name, now);
        }
        writes
    }

    /// Checks a basic.consume on stream `q` as RabbitMQ does (its arguments, then a
    /// prefetch is required, manual acks, no global qos) and says where the consumer
    /// starts reading.
    pub(super) fn stream_consume_start(
        &self,
        q: &Queue,
        key: ChannelKey,
        args: &FieldTable,
        no_ack: bool,
    ) -> Result<Cursor, BrokerError> {
        let spec = stream_args::parse_consume(args, now_millis(), &q.name, &self.name)?;
        let ch = self.channels.get(&key).ok_or(BrokerError::ChannelNotOpen)?;
        if ch.consumer_prefetch == 0 {
            return Err(BrokerError::PreconditionFailed(format!(
                "consumer prefetch count is not set for '{}'",
                rs(&q.name, &self.name)
            )));
        }
        if no_ack {
            return Err(not_supported(
                "automatic acknowledgement",
                &q.name,
                &self.name,
            ));
        }
        if ch.channel_prefetch > 0 {
            return Err(BrokerError::NotImplemented(format!(
                "{} does not support global qos",
                rs(&q.name, &self.name)
            )));
        }
        Ok(q.stream_start(spec))
    }

    /// Hands messages of stream `queue` to each consumer from its own cursor while it has
    /// credit (prefetch room and outbox room). Each consumer reads independently: nothing
    /// is taken from the stream, so every consumer can see every message.
    pub(super) fn dispatch_stream(&mut self, queue: &str) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        let mut out = std::mem::take(&mut self.delivery_scratch);
        let mut delivered = 0u64;
        for i in 0..q.consumers.len() {
            let c = &q.consumers[i];
            let key = (c.conn, c.channel);
            let Some(ch) = self.channels.get_mut(&key) else {
                continue;
            };
            let room = credit(c, ch);
            let (serial, tag) = (c.serial, c.tag.clone());
            let mut cursor = c.reader.expect("a stream consumer has a cursor");
            let log = q.store.level_log(0).expect("a stream has level 0");
            let mut given = 0u32;
            while given < room {
                let Some(rec) = log.read_next(&mut cursor) else {
                    break;
                };
                // A record that does not parse as a message (a disk is untrusted input),
                // or an AMQP 1.0 one without a 0-9-1 form, is passed over, not delivered
                // half-formed.
                let payload = match rec.kind() {
                    KIND_AMQP10 => amqp10_to_stored(&rec.payload, &q.name, rec.seq),
                    _ => with_offset(&rec.payload, rec.seq),
                };
                let Some(payload) = payload else {
                    continue;
                };
                let delivery_tag = ch.next_delivery(Some(Unacked {
                    queue: q.name.clone(),
                    queue_id: q.id,
                    seq: rec.seq,
                    consumer: Some(serial),
                }));
                out.push(Outgoing::Deliver {
                    channel: key.1,
                    consumer_tag: tag.clone(),
                    delivery_tag,
                    redelivered: false,
                    payload,
                });
                given += 1;
            }
            let c = &mut q.consumers[i];
            c.reader = Some(cursor);
            c.unacked += given;
            delivered += given as u64;
            if given > 0 {
                c.outbox.push_all(&mut out);
            }
        }
        self.delivery_scratch = out;
        q.counters.deliver += delivered;
        self.stats.delivered(delivered);
    }
}
