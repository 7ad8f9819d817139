//! Shared fixture for the model tests (tests/model_*.rs): a broker on a temporary
//! directory driven without sockets, and helpers to build content headers and read
//! deliveries from an outbox.
#![allow(dead_code)]

pub use std::collections::VecDeque;
pub use std::path::Path;
pub use std::sync::Arc;

pub use bytes::Bytes;
pub use tempfile::TempDir;
use warren::broker::admin::ConnectionInfo;
pub use warren::broker::outbox::{Outbox, Outgoing};
pub use warren::broker::{
    BindSpec, BrokerConfig, BrokerError, BrokerHandle, ChannelKey, ConsumeSpec, ExchangeSpec,
    PublishRequest, Published, QueueSpec, VHost, VHostHandle,
};
pub use warren_storage::{FsyncPolicy, GroupCommit, LogConfig};

// ----- wire-ish helpers --------------------------------------------------------------

/// A value in a field table built by `table`.
pub enum V<'a> {
    /// Long string ('S').
    S(&'a str),
    /// Long-long int ('l').
    I(i64),
}

/// Encodes a field table with its u32 length prefix, as it arrives in a frame.
pub fn table(entries: &[(&str, V<'_>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in entries {
        body.push(k.len() as u8);
        body.extend_from_slice(k.as_bytes());
        match v {
            V::S(s) => {
                body.push(b'S');
                body.extend_from_slice(&(s.len() as u32).to_be_bytes());
                body.extend_from_slice(s.as_bytes());
            }
            V::I(i) => {
                body.push(b'l');
                body.extend_from_slice(&i.to_be_bytes());
            }
        }
    }
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// A basic-class content header payload: class 60, weight 0, body size, property flags,
/// then the headers table (flag 0x2000) and delivery-mode (flag 0x1000) if present.
pub fn content_header(body_len: usize, persistent: bool, headers: Option<&[u8]>) -> Vec<u8> {
    let mut flags = 0u16;
    if headers.is_some() {
        flags |= 0x2000;
    }
    if persistent {
        flags |= 0x1000;
    }
    let mut h = Vec::with_capacity(14);
    h.extend_from_slice(&60u16.to_be_bytes());
    h.extend_from_slice(&0u16.to_be_bytes());
    h.extend_from_slice(&(body_len as u64).to_be_bytes());
    h.extend_from_slice(&flags.to_be_bytes());
    if let Some(t) = headers {
        h.extend_from_slice(t);
    }
    if persistent {
        h.push(2);
    }
    h
}

/// The body of a stored message as text.
pub fn body_of(payload: &Bytes) -> String {
    let m = warren::broker::message::decode(payload).expect("stored message decodes");
    String::from_utf8(m.body.to_vec()).expect("utf-8 body")
}

/// One basic.deliver taken from an outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub channel: u16,
    pub consumer_tag: String,
    pub delivery_tag: u64,
    pub redelivered: bool,
    pub body: String,
}

/// Everything queued in an outbox.
pub fn drain(outbox: &Outbox) -> Vec<Outgoing> {
    let mut q = VecDeque::new();
    outbox.drain(&mut q);
    q.into_iter().collect()
}

/// The deliveries queued in an outbox (panics on anything else).
pub fn deliveries(outbox: &Outbox) -> Vec<Delivery> {
    drain(outbox)
        .into_iter()
        .map(|o| match o {
            Outgoing::Deliver {
                channel,
                consumer_tag,
                delivery_tag,
                redelivered,
                payload,
            } => Delivery {
                channel,
                consumer_tag: consumer_tag.to_string(),
                delivery_tag,
                redelivered,
                body: body_of(&payload),
            },
            other => panic!("expected a delivery, got {other:?}"),
        })
        .collect()
}

pub fn bodies(ds: &[Delivery]) -> Vec<&str> {
    ds.iter().map(|d| d.body.as_str()).collect()
}

pub fn queue(name: &str) -> QueueSpec<'_> {
    QueueSpec {
        name,
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: false,
        args_raw: &[],
    }
}

pub fn exchange<'a>(name: &'a str, kind: &'a str) -> ExchangeSpec<'a> {
    ExchangeSpec {
        name,
        kind,
        passive: false,
        durable: false,
        auto_delete: false,
        internal: false,
        args_raw: &[],
    }
}

pub fn consumer<'a>(queue: &'a str, tag: &'a str) -> ConsumeSpec<'a> {
    ConsumeSpec {
        queue,
        tag,
        no_ack: false,
        exclusive: false,
        args_raw: &[],
    }
}

pub fn is_not_found<T>(r: &Result<T, BrokerError>) -> bool {
    matches!(r, Err(BrokerError::NotFound(_)))
}
pub fn is_access_refused<T>(r: &Result<T, BrokerError>) -> bool {
    matches!(r, Err(BrokerError::AccessRefused(_)))
}
pub fn is_resource_locked<T>(r: &Result<T, BrokerError>) -> bool {
    matches!(r, Err(BrokerError::ResourceLocked(_)))
}
pub fn is_precondition_failed<T>(r: &Result<T, BrokerError>) -> bool {
    matches!(r, Err(BrokerError::PreconditionFailed(_)))
}

/// queue.declare-ok figures.
#[derive(Debug)]
pub struct Declared {
    pub name: String,
    pub messages: u32,
    pub consumers: u32,
}

// ----- fixture -----------------------------------------------------------------------

pub fn open_broker(dir: &Path) -> (BrokerHandle, VHostHandle) {
    let commit = GroupCommit::start(FsyncPolicy::Never);
    let (broker, report) = BrokerHandle::open(
        BrokerConfig {
            data_dir: dir.into(),
            log: LogConfig::default(),
            access: warren::broker::access::AccessConfig::default(),
        },
        commit,
    )
    .expect("open broker");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let vh = broker.vhost("/").expect("default vhost");
    (broker, vh)
}

/// A broker in a temporary directory, with one "admin" connection whose channel 1 is open
/// (for declarations and basic.get).
pub struct Fx {
    pub dir: TempDir,
    pub broker: BrokerHandle,
    pub vh: VHostHandle,
    /// The admin connection.
    pub conn: u64,
    /// Its channel 1.
    pub key: ChannelKey,
    /// Its channel 1's outbox.
    pub out: Arc<Outbox>,
}

impl Fx {
    pub fn new() -> Self {
        Self::in_dir(tempfile::tempdir().expect("temp dir"))
    }

    pub fn in_dir(dir: TempDir) -> Self {
        let (broker, vh) = open_broker(dir.path());
        let mut fx = Fx {
            dir,
            broker,
            vh,
            conn: 0,
            key: (0, 0),
            out: Outbox::new(1),
        };
        fx.conn = fx.connect();
        fx.key = (fx.conn, 1);
        fx.out = fx.channel(fx.key);
        fx
    }

    /// Drops the broker and opens the same directory again (the admin connection is new).
    pub fn reopen(self) -> Self {
        let problems = self.broker.flush_all_acks();
        assert!(problems.is_empty(), "{problems:?}");
        let Fx {
            dir, broker, vh, ..
        } = self;
        drop(vh);
        drop(broker);
        Fx::in_dir(dir)
    }

    pub fn connect(&self) -> u64 {
        let conn = self.broker.register_connection();
        let grants = Arc::new(warren::broker::grants::Grants::everything("guest", "/"));
        self.vh
            .with(|m: &mut VHost| {
                let addrs = (
                    "127.0.0.1:1".parse().unwrap(),
                    "127.0.0.1:5672".parse().unwrap(),
                );
                let info = Arc::new(ConnectionInfo::new(conn, addrs, "guest", "/"));
                m.attach_connection(conn, grants, Outbox::new(1024), info, None)
            })
            .expect("the vhost exists");
        conn
    }

    pub fn channel(&self, key: ChannelKey) -> Arc<Outbox> {
        let outbox = Outbox::new(1024);
        self.vh.with(|m| m.open_channel(key, outbox.clone()));
        outbox
    }

    pub fn declare_on(&self, conn: u64, spec: &QueueSpec<'_>) -> Result<Declared, BrokerError> {
        let info = self.vh.try_with(|m| m.queue_declare(conn, spec))?;
        Ok(Declared {
            name: info.name.to_string(),
            messages: info.messages,
            consumers: info.consumers,
        })
    }

    pub fn declare(&self, name: &str) {
        self.declare_on(self.conn, &queue(name))
            .unwrap_or_else(|e| panic!("declare queue {name}: {e}"));
    }

    pub fn exchange(&self, spec: &ExchangeSpec<'_>) -> Result<(), BrokerError> {
        self.vh.try_with(|m| m.exchange_declare(self.conn, spec))
    }

    pub fn declare_exchange(&self, name: &str, kind: &str) {
        self.exchange(&exchange(name, kind))
            .unwrap_or_else(|e| panic!("declare exchange {name}: {e}"));
    }

    pub fn bind_args(&self, queue: &str, source: &str, routing_key: &str, args_raw: &[u8]) {
        let spec = BindSpec {
            source,
            routing_key,
            args_raw,
            bind: true,
        };
        self.vh
            .try_with(|m| m.queue_bind(self.conn, queue, &spec))
            .unwrap_or_else(|e| panic!("bind {queue} to {source}: {e}"));
    }

    pub fn bind(&self, queue: &str, source: &str, routing_key: &str) {
        self.bind_args(queue, source, routing_key, &[]);
    }

    pub fn bind_exchange(&self, dest: &str, source: &str, routing_key: &str) {
        let spec = BindSpec {
            source,
            routing_key,
            args_raw: &[],
            bind: true,
        };
        self.vh
            .try_with(|m| m.exchange_bind(self.conn, dest, &spec))
            .unwrap_or_else(|e| panic!("bind exchange {dest} to {source}: {e}"));
    }

    pub fn publish_full(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &str,
        persistent: bool,
        headers: Option<&[u8]>,
    ) -> Result<Published, BrokerError> {
        let header = content_header(body.len(), persistent, headers);
        let parts = [body.as_bytes()];
        let req = PublishRequest {
            exchange,
            routing_key,
            header: &header,
            persistent,
            headers_table: headers,
            body: &parts,
        };
        self.vh.try_with(|m| m.publish(&req))
    }

    /// Publishes (exchange, routing key, body) triples as one batch, as a connection hands
    /// over the publishes of one read; returns whether each was routed.
    pub fn publish_batch(&self, msgs: &[(&str, &str, &str)]) -> Vec<bool> {
        let headers: Vec<Vec<u8>> = msgs
            .iter()
            .map(|(_, _, body)| content_header(body.len(), false, None))
            .collect();
        let parts: Vec<[&[u8]; 1]> = msgs.iter().map(|(_, _, b)| [b.as_bytes()]).collect();
        let reqs: Vec<PublishRequest<'_>> = msgs
            .iter()
            .zip(&headers)
            .zip(&parts)
            .map(
                |((&(exchange, routing_key, _), header), body)| PublishRequest {
                    exchange,
                    routing_key,
                    header,
                    persistent: false,
                    headers_table: None,
                    body,
                },
            )
            .collect();
        self.vh
            .with(|m| m.publish_batch(&reqs))
            .into_iter()
            .map(|r| r.expect("publish").routed)
            .collect()
    }

    pub fn try_publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &str,
    ) -> Result<Published, BrokerError> {
        self.publish_full(exchange, routing_key, body, false, None)
    }

    /// Publishes and returns whether the message was routed to a queue.
    pub fn publish(&self, exchange: &str, routing_key: &str, body: &str) -> bool {
        let p = self
            .try_publish(exchange, routing_key, body)
            .unwrap_or_else(|e| panic!("publish to '{exchange}': {e}"));
        assert!(!p.failed);
        p.routed
    }

    pub fn publish_with_headers(&self, exchange: &str, body: &str, headers: &[u8]) -> bool {
        let p = self
            .publish_full(exchange, "", body, false, Some(headers))
            .unwrap_or_else(|e| panic!("publish to '{exchange}': {e}"));
        p.routed
    }

    /// (ready, unacked, consumers), or None if the queue does not exist.
    pub fn stats(&self, queue: &str) -> Option<(u64, u64, usize)> {
        self.vh.with(|m| m.queue_stats(queue))
    }

    /// basic.get on `key`: (delivery tag, redelivered, body).
    pub fn get_on(
        &self,
        key: ChannelKey,
        queue: &str,
        no_ack: bool,
    ) -> Result<Option<(u64, bool, String)>, BrokerError> {
        let got = self.vh.try_with(|m| m.get(key, queue, no_ack))?;
        Ok(got.map(|g| (g.delivery_tag, g.redelivered, body_of(&g.payload))))
    }

    pub fn get(&self, queue: &str, no_ack: bool) -> Option<(u64, bool, String)> {
        self.get_on(self.key, queue, no_ack)
            .unwrap_or_else(|e| panic!("get from {queue}: {e}"))
    }

    /// Takes every ready message of `queue` (no-ack) and returns their bodies in order.
    pub fn take_all(&self, queue: &str) -> Vec<String> {
        let mut v = Vec::new();
        while let Some((_, _, body)) = self.get(queue, true) {
            v.push(body);
        }
        v
    }

    /// basic.consume then the dispatch that follows consume-ok.
    pub fn try_consume(&self, key: ChannelKey, spec: &ConsumeSpec<'_>) -> Result<(), BrokerError> {
        self.vh.try_with(|m| {
            let tag = m.consume(key, spec)?;
            let q = m.consumer_queue(key, &tag).expect("consumer registered");
            m.dispatch(&q);
            Ok(())
        })
    }

    pub fn consume(&self, key: ChannelKey, queue: &str, tag: &str) {
        self.try_consume(key, &consumer(queue, tag))
            .unwrap_or_else(|e| panic!("consume {queue} as {tag}: {e}"));
    }

    pub fn qos(&self, key: ChannelKey, prefetch: u16, global: bool) {
        self.vh.with(|m| m.qos(key, prefetch, global));
    }

    pub fn settle(
        &self,
        key: ChannelKey,
        tag: u64,
        multiple: bool,
        ack: bool,
        requeue: bool,
    ) -> Result<(), BrokerError> {
        self.vh
            .try_with(|m| m.settle(key, tag, multiple, ack, requeue))
    }

    pub fn ack(&self, key: ChannelKey, tag: u64) {
        self.settle(key, tag, false, true, false)
            .unwrap_or_else(|e| panic!("ack {tag}: {e}"));
    }

    pub fn nack_requeue(&self, key: ChannelKey, tag: u64) {
        self.settle(key, tag, false, false, true)
            .unwrap_or_else(|e| panic!("nack {tag}: {e}"));
    }

    pub fn cancel(&self, key: ChannelKey, tag: &str) -> bool {
        self.vh.with(|m| m.cancel(key, tag))
    }
}

// ===== 1. routing ======================================================================
