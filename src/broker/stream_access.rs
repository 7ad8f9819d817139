//! What a RabbitMQ Stream protocol session (`stream_protocol/session.rs`) asks of the
//! model: creating and deleting streams, publishing AMQP 1.0 records into one, reading a
//! stream from the session's own cursor, and the stream's tracking (stored consumer
//! offsets, named publishers' sequences). Streams are the same queues AMQP 0-9-1 declares
//! with `x-queue-type: stream`, so either protocol reads what the other wrote.

use std::sync::Arc;

use amq_protocol_types::{AMQPValue, FieldTable, LongString};
use tokio::sync::Notify;
use warren_storage::{BatchRecord, Cursor, StoredRecord, Ticket};

use super::dead_letter::encode_table;
use super::declare::QueueSpec;
use super::error::BrokerError;
use super::grants::{Perm, Resource};
use super::queue::stream_args::{parse_max_age, MaxAge, OffsetSpec};
use super::queue::Queue;
use super::stream_convert::KIND_AMQP10;
use super::vhost::{now_millis, VHost};

/// Why the model refused a stream-protocol request (the session turns it into a code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRefusal {
    DoesNotExist,
    AlreadyExists,
    AccessRefused,
    PreconditionFailed,
    Internal,
}

impl From<BrokerError> for StreamRefusal {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::NotFound(_) => StreamRefusal::DoesNotExist,
            BrokerError::AccessRefused(_) => StreamRefusal::AccessRefused,
            BrokerError::PreconditionFailed(_) => StreamRefusal::PreconditionFailed,
            _ => StreamRefusal::Internal,
        }
    }
}

/// What a publish did: the sync that makes it durable, and the publishing ids to confirm
/// at once because a named publisher had already stored them (deduplication).
pub struct StreamPublished {
    pub ticket: Ticket,
    pub duplicates: Vec<u64>,
}

impl VHost {
    fn stream_queue(&self, name: &str) -> Result<&Queue, StreamRefusal> {
        self.queues
            .get(name)
            .filter(|q| q.is_stream())
            .map(|q| &**q)
            .ok_or(StreamRefusal::DoesNotExist)
    }

    fn stream_queue_mut(&mut self, name: &str) -> Result<&mut Queue, StreamRefusal> {
        self.queues
            .get_mut(name)
            .filter(|q| q.is_stream())
            .map(|q| &mut **q)
            .ok_or(StreamRefusal::DoesNotExist)
    }

    pub fn stream_exists(&self, name: &str) -> bool {
        self.stream_queue(name).is_ok()
    }

    /// May connection `conn` do `perm` on stream `name`?
    pub fn stream_may(&self, conn: u64, name: &str, perm: Perm) -> Result<(), StreamRefusal> {
        self.stream_queue(name)?;
        self.authorize(conn, perm, Resource::Queue, name)
            .map_err(|_| StreamRefusal::AccessRefused)
    }

    /// Create: a durable stream queue with the arguments the stream plugin passes on
    /// (`max-length-bytes`, `max-age`, `stream-max-segment-size-bytes`,
    /// `initial-cluster-size`, `queue-leader-locator`); other names are ignored, as
    /// RabbitMQ ignores them. An unreadable `max-age` is dropped (RabbitMQ stores it and
    /// then applies no age limit).
    pub fn stream_create(
        &mut self,
        conn: u64,
        name: &str,
        arguments: &[(String, String)],
    ) -> Result<(), StreamRefusal> {
        if self.queues.contains_key(name) {
            return Err(StreamRefusal::AlreadyExists);
        }
        let mut t = FieldTable::default();
        t.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("stream")),
        );
        for (k, v) in arguments {
            let key = format!("x-{k}");
            match k.as_str() {
                "max-length-bytes" | "stream-max-segment-size-bytes" | "initial-cluster-size" => {
                    let n: i64 = v.parse().map_err(|_| StreamRefusal::PreconditionFailed)?;
                    t.insert(key.as_str().into(), AMQPValue::LongLongInt(n));
                }
                "max-age" if !matches!(parse_max_age(v.as_bytes()), MaxAge::Millis(_)) => {}
                "max-age" | "queue-leader-locator" => {
                    t.insert(
                        key.as_str().into(),
                        AMQPValue::LongString(LongString::from(v.as_bytes())),
                    );
                }
                _ => {}
            }
        }
        let raw = encode_table(&t);
        let spec = QueueSpec {
            name,
            passive: false,
            durable: true,
            exclusive: false,
            auto_delete: false,
            args_raw: &raw,
        };
        self.queue_declare(conn, &spec)?;
        Ok(())
    }

    pub fn stream_delete(&mut self, conn: u64, name: &str) -> Result<(), StreamRefusal> {
        self.stream_queue(name)?;
        self.queue_delete(conn, name, false, false)?;
        Ok(())
    }

    /// Appends AMQP 1.0 records (one chunk) to stream `name`. With a publisher
    /// `reference`, ids at or below its stored sequence are not appended again but
    /// confirmed (RabbitMQ's deduplication), and the sequence moves to the highest id.
    pub fn stream_publish(
        &mut self,
        name: &str,
        messages: &[(u64, &[u8])],
        reference: Option<&str>,
    ) -> Result<StreamPublished, StreamRefusal> {
        let now = now_millis();
        let q = self.stream_queue_mut(name)?;
        let last = reference.and_then(|r| {
            let s = q.stream.as_ref()?;
            s.tracking.writers.get(r).copied()
        });
        let (mut fresh, mut duplicates) = (Vec::new(), Vec::new());
        for (id, body) in messages {
            match last {
                Some(l) if *id <= l => duplicates.push(*id),
                _ => fresh.push(*body),
            }
        }
        if fresh.is_empty() {
            return Ok(StreamPublished {
                ticket: Ticket::DONE,
                duplicates,
            });
        }
        let parts: Vec<[&[u8]; 1]> = fresh.iter().map(|b| [*b]).collect();
        let batch: Vec<BatchRecord<'_>> = parts
            .iter()
            .map(|p| BatchRecord {
                timestamp: now,
                persistent: true,
                kind: KIND_AMQP10,
                parts: p,
            })
            .collect();
        let before = q.stream_position().expect("a stream");
        let ticket = q.append(0, &batch).map_err(|_| StreamRefusal::Internal)?;
        q.counters.publish += batch.len() as u64;
        q.stream_appended(before);
        if let (Some(r), Some(max)) = (reference, messages.iter().map(|m| m.0).max()) {
            if let Some(s) = q.stream.as_mut() {
                s.tracking.set_writer(r, max);
            }
        }
        let due = q.stream.as_ref().is_some_and(|s| s.retention_due);
        self.stats.published(batch.len() as u64);
        if due {
            self.apply_retention(name, now);
        }
        // AMQP 0-9-1 consumers of the stream read it too.
        self.dispatch_stream(name);
        Ok(StreamPublished { ticket, duplicates })
    }

    /// The last publishing id stored for publisher `reference` (0 if none).
    pub fn stream_writer_sequence(
        &self,
        name: &str,
        reference: &str,
    ) -> Result<u64, StreamRefusal> {
        let q = self.stream_queue(name)?;
        Ok(q.stream
            .as_ref()
            .and_then(|s| s.tracking.writers.get(reference).copied())
            .unwrap_or(0))
    }

    /// A subscription: where it starts, and `wake` registered to be notified of appends.
    pub fn stream_subscribe(
        &mut self,
        name: &str,
        spec: OffsetSpec,
        wake: &Arc<Notify>,
    ) -> Result<Cursor, StreamRefusal> {
        let q = self.stream_queue_mut(name)?;
        let cursor = q.stream_start(spec);
        if let Some(s) = q.stream.as_mut() {
            if !s.listeners.iter().any(|l| l.ptr_eq(&Arc::downgrade(wake))) {
                s.listeners.push(Arc::downgrade(wake));
            }
        }
        Ok(cursor)
    }

    /// Up to `max_records` records (and about `max_bytes` of payload) from `cursor` on;
    /// `None` if the stream is gone. The payloads are views of the segment mappings.
    pub fn stream_read(
        &self,
        name: &str,
        cursor: &mut Cursor,
        max_records: usize,
        max_bytes: usize,
    ) -> Option<Vec<StoredRecord>> {
        let log = self.stream_queue(name).ok()?.stream_log();
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max_records && bytes < max_bytes {
            let before = *cursor;
            let Some(rec) = log.read_next(cursor) else {
                break;
            };
            if !out.is_empty() && bytes + rec.payload.len() > max_bytes {
                *cursor = before; // Next time: it would overflow this chunk.
                break;
            }
            bytes += rec.payload.len();
            out.push(rec);
        }
        Some(out)
    }

    pub fn stream_store_offset(&mut self, name: &str, reference: &str, offset: u64) {
        if let Ok(q) = self.stream_queue_mut(name) {
            if let Some(s) = q.stream.as_mut() {
                s.tracking.store_offset(reference, offset);
            }
        }
    }

    /// The offset stored for consumer `reference`, if any.
    pub fn stream_query_offset(
        &self,
        name: &str,
        reference: &str,
    ) -> Result<Option<u64>, StreamRefusal> {
        let q = self.stream_queue(name)?;
        Ok(q.stream
            .as_ref()
            .and_then(|s| s.tracking.offsets.get(reference).copied()))
    }
}
