//! One client connection: the handshake, then frames in, methods dispatched to the model,
//! replies and deliveries out.
//!
//! The task owns the socket's two halves and two buffers. Reading stops while the write
//! buffer is above its high-water mark, so a client that publishes but never reads cannot
//! make the broker buffer without bound; writes are batched (everything produced by one
//! read, plus drained deliveries, goes out in as few writes as the socket allows).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod auth;
use crate::alarms::Alarms;
use crate::broker::confirms::{ConfirmTicket, ConfirmTracker};
use crate::broker::outbox::{Outbox, Outgoing};
use crate::broker::{message, Broker, PublishRequest};
use crate::protocol::error::{AmqpError, ReplyCode};
use crate::protocol::frame::{
    self, Frame, FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, PROTOCOL_HEADER,
};
use crate::protocol::method::{self, class, ids, server, Method};
use crate::protocol::properties;
use crate::protocol::table::{self, Value};

/// Limits and settings every connection shares.
#[derive(Debug, Clone)]
pub struct Limits {
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    pub max_message_size: u64,
    pub handshake_timeout: Duration,
    pub outbox_limit: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 16 << 20,
            handshake_timeout: Duration::from_secs(10),
            outbox_limit: 1024,
        }
    }
}

/// What every connection task shares.
pub struct ServerContext {
    pub broker: Mutex<Broker>,
    pub confirms: ConfirmTracker,
    pub limits: Limits,
    pub alarms: Arc<Alarms>,
}

/// Body sizes beyond this are refused as malformed before any size check against the
/// configured maximum (no sane message is an exabyte).
const BODY_SIZE_SANITY: u64 = 1 << 40;
/// Stop reading while this much output waits to be written.
const WRITE_HIGH_WATER: usize = 1 << 20;
/// Take deliveries from the outbox only while less than this waits to be written: a deep
/// write buffer is latency for every message in it (at 1.5 M msg/s, 1 MiB of 16-byte
/// deliveries is 10 ms).
const DELIVERY_HIGH_WATER: usize = 128 * 1024;
const READ_CHUNK: usize = 64 * 1024;
/// Most publishes handed to the model in one batch.
const PUBLISH_BATCH: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitStartOk,
    AwaitTuneOk,
    AwaitOpen,
    Open,
    /// We sent connection.close and wait for close-ok.
    Closing,
}

/// A basic.publish waiting for its content.
struct PendingPublish {
    method: Bytes,
    exchange: (usize, usize),
    routing_key: (usize, usize),
    mandatory: bool,
    header: Option<Bytes>,
    persistent: bool,
    headers_table: Option<(usize, usize)>,
    body_size: u64,
    received: u64,
    /// The first body frame, and any further ones (most messages fit one frame, so the
    /// common case allocates nothing).
    body_first: Option<Bytes>,
    body_rest: Vec<Bytes>,
}

impl PendingPublish {
    fn exchange(&self) -> &str {
        std::str::from_utf8(&self.method[self.exchange.0..self.exchange.1]).unwrap_or("")
    }
    fn routing_key(&self) -> &str {
        std::str::from_utf8(&self.method[self.routing_key.0..self.routing_key.1]).unwrap_or("")
    }
}

#[derive(Default)]
struct Channel {
    /// We sent channel.close and ignore everything but close/close-ok.
    closing: bool,
    publish: Option<PendingPublish>,
    confirm: bool,
    next_publish_tag: u64,
    /// (publish tag, covering sync, failed) in tag order.
    confirms: VecDeque<(u64, ConfirmTicket, bool)>,
}

struct Conn {
    id: u64,
    peer: SocketAddr,
    ctx: Arc<ServerContext>,
    outbox: Arc<Outbox>,
    phase: Phase,
    frame_max: u32,
    channel_max: u16,
    heartbeat: u16,
    channels: HashMap<u16, Channel>,
    wbuf: BytesMut,
    drained: VecDeque<Outgoing>,
    pending_confirms: usize,
    /// Close the socket once the write buffer is flushed.
    close_after_flush: bool,
    /// Complete publishes not yet handed to the model (see `flush_publishes`).
    ready: Vec<(u16, PendingPublish)>,
    /// This connection has published: a resource alarm blocks it.
    published: bool,
    /// The client announced the `connection.blocked` capability.
    blocked_capable: bool,
    /// We sent connection.blocked and owe an unblocked.
    blocked_sent: bool,
}

fn offset_in(whole: &Bytes, part: &str) -> (usize, usize) {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    (start, start + part.len())
}

/// True if the client's start-ok properties carry `capabilities.connection.blocked = true`.
fn client_supports_blocked(client_properties: &[u8]) -> bool {
    use amq_protocol_types::AMQPValue;
    let Ok(props) = table::decode(client_properties) else {
        return false;
    };
    match props.inner().get("capabilities") {
        Some(AMQPValue::FieldTable(caps)) => {
            matches!(
                caps.inner().get("connection.blocked"),
                Some(AMQPValue::Boolean(true))
            )
        }
        _ => false,
    }
}

/// True if a method frame's payload is basic.publish (class 60, method 40).
fn is_publish(payload: &[u8]) -> bool {
    payload.len() >= 4 && payload[..4] == [0, 60, 0, 40]
}

/// Serves one client until it disconnects or is disconnected.
pub async fn serve(stream: TcpStream, peer: SocketAddr, ctx: Arc<ServerContext>) {
    let _ = stream.set_nodelay(true);
    let id = ctx.broker.lock().expect("broker").register_connection();
    let outbox = Outbox::new(ctx.limits.outbox_limit);
    let mut conn = Conn {
        id,
        peer,
        frame_max: ctx.limits.frame_max,
        channel_max: ctx.limits.channel_max,
        heartbeat: 0,
        ctx: ctx.clone(),
        outbox,
        phase: Phase::AwaitStartOk,
        channels: HashMap::new(),
        wbuf: BytesMut::with_capacity(64 * 1024),
        drained: VecDeque::new(),
        pending_confirms: 0,
        close_after_flush: false,
        ready: Vec::new(),
        published: false,
        blocked_capable: false,
        blocked_sent: false,
    };
    let _ = conn.run(stream).await;
    ctx.broker.lock().expect("broker").close_connection(id);
}

impl Conn {
    async fn run(&mut self, mut stream: TcpStream) -> std::io::Result<()> {
        let started = Instant::now();
        let deadline = self.ctx.limits.handshake_timeout;
        // Protocol header.
        let mut header = [0u8; 8];
        match tokio::time::timeout(deadline, stream.read_exact(&mut header)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        if &header != PROTOCOL_HEADER {
            // Spec: answer with the header we speak, then close.
            stream.write_all(PROTOCOL_HEADER).await?;
            return Ok(());
        }
        self.send_start();
        let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
        let mut sync_rx = self.ctx.confirms.subscribe();
        let mut last_read = Instant::now();
        let mut last_write = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut alarm_rx = self.ctx.alarms.subscribe();
        let (mut rd, mut wr) = stream.split();
        loop {
            // A resource alarm blocks connections that publish: they are not read until it
            // clears (consumers keep flowing), and hear about it if they support it.
            let alarm = *alarm_rx.borrow_and_update();
            let blocked = self.published && alarm.any();
            if blocked && self.blocked_capable && !self.blocked_sent {
                server::connection_blocked(&mut self.wbuf, alarm.reason());
                self.blocked_sent = true;
            } else if !blocked && self.blocked_sent {
                server::connection_unblocked(&mut self.wbuf);
                self.blocked_sent = false;
            }
            let can_read =
                self.wbuf.len() < WRITE_HIGH_WATER && !self.close_after_flush && !blocked;
            tokio::select! {
                r = rd.read_buf(&mut rbuf), if can_read => {
                    if r? == 0 {
                        return Ok(());
                    }
                    last_read = Instant::now();
                    if rbuf.capacity() - rbuf.len() < 4096 {
                        rbuf.reserve(READ_CHUNK);
                    }
                    if let Err(e) = self.process(&mut rbuf) {
                        self.fail(e);
                    }
                    self.pump_deliveries();
                    self.flush_confirms();
                }
                w = wr.write(&self.wbuf), if !self.wbuf.is_empty() => {
                    let n = w?;
                    self.wbuf.advance(n);
                    last_write = Instant::now();
                    self.pump_deliveries();
                    if self.wbuf.is_empty() && self.close_after_flush {
                        let _ = wr.shutdown().await;
                        return Ok(());
                    }
                }
                _ = self.outbox.notify.notified(), if self.wbuf.len() < DELIVERY_HIGH_WATER => {
                    self.drain_outbox();
                }
                _ = alarm_rx.changed() => {}
                r = sync_rx.changed(), if self.pending_confirms > 0 => {
                    if r.is_ok() {
                        self.flush_confirms();
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if self.phase != Phase::Open && self.phase != Phase::Closing && now - started > deadline {
                        return Ok(()); // Handshake never finished.
                    }
                    if self.phase == Phase::Closing && now - last_read > Duration::from_secs(2) && self.wbuf.is_empty() {
                        return Ok(());
                    }
                    if self.heartbeat > 0 {
                        let hb = Duration::from_secs(self.heartbeat as u64);
                        if now - last_read > hb * 2 && !blocked {
                            // Two missed heartbeats: the peer is gone. (Not judged while we
                            // are the ones not reading.)
                            return Ok(());
                        }
                        if now - last_write >= hb / 2 && self.wbuf.is_empty() {
                            frame::write_heartbeat(&mut self.wbuf);
                        }
                    }
                }
            }
            if self.close_after_flush && self.wbuf.is_empty() {
                let _ = wr.shutdown().await;
                return Ok(());
            }
        }
    }

    fn broker(&self) -> std::sync::MutexGuard<'_, Broker> {
        self.ctx.broker.lock().expect("broker")
    }

    fn send_start(&mut self) {
        let caps = [
            ("publisher_confirms", Value::Bool(true)),
            ("exchange_exchange_bindings", Value::Bool(true)),
            ("basic.nack", Value::Bool(true)),
            ("consumer_cancel_notify", Value::Bool(true)),
            ("connection.blocked", Value::Bool(true)),
            ("authentication_failure_close", Value::Bool(true)),
            ("per_consumer_qos", Value::Bool(true)),
        ];
        let props = [
            ("product", Value::Str("Warren")),
            ("version", Value::Str(env!("CARGO_PKG_VERSION"))),
            ("platform", Value::Str("Rust")),
            (
                "information",
                Value::Str("An AMQP 0-9-1 broker on an append-only segment log"),
            ),
            ("capabilities", Value::Table(&caps)),
        ];
        method::write(&mut self.wbuf, 0, ids::CONNECTION_START, |w| {
            w.u8(0).u8(9);
            table::encode(w.buf, &props);
            w.longstr(b"PLAIN AMQPLAIN").longstr(b"en_US");
        });
    }

    /// Handles every complete frame in `rbuf`.
    fn process(&mut self, rbuf: &mut BytesMut) -> Result<(), AmqpError> {
        loop {
            if self.close_after_flush {
                rbuf.clear();
                return Ok(());
            }
            // Until tune-ok the frame limit is the spec minimum's worth of our maximum.
            let limit = if self.phase == Phase::Open {
                self.frame_max
            } else {
                self.ctx.limits.frame_max
            };
            let Some(frame) = frame::parse(rbuf, limit)? else {
                self.flush_publishes();
                return Ok(());
            };
            if frame.kind == FRAME_METHOD && !is_publish(&frame.payload) {
                // Everything else is ordered after the publishes before it.
                self.flush_publishes();
            }
            self.handle_frame(frame)?;
        }
    }

    fn handle_frame(&mut self, f: Frame) -> Result<(), AmqpError> {
        if f.kind == FRAME_HEARTBEAT {
            if f.channel != 0 {
                return Err(AmqpError::connection(
                    ReplyCode::FrameError,
                    "heartbeat frame on a non-zero channel",
                ));
            }
            return Ok(());
        }
        if self.phase == Phase::Closing {
            // After connection.close only close-ok (or a crossing close) matters.
            if f.kind == FRAME_METHOD && f.channel == 0 {
                if let Ok((_, Method::CloseOk | Method::Close { .. })) = method::decode(&f.payload)
                {
                    self.close_after_flush = true;
                }
            }
            return Ok(());
        }
        if f.channel == 0 {
            if f.kind != FRAME_METHOD {
                return Err(AmqpError::connection(
                    ReplyCode::UnexpectedFrame,
                    "content frame on channel 0",
                ));
            }
            let payload = f.payload.clone();
            let (ids, m) = method::decode(&payload)?;
            return self
                .connection_method(ids, m)
                .map_err(|e| e.with_method(ids));
        }
        if self.phase != Phase::Open {
            return Err(AmqpError::connection(
                ReplyCode::ChannelError,
                "channel frame before connection.open",
            ));
        }
        if f.channel > self.channel_max {
            return Err(AmqpError::connection(
                ReplyCode::ChannelError,
                format!(
                    "channel {} is above channel_max {}",
                    f.channel, self.channel_max
                ),
            ));
        }
        match f.kind {
            FRAME_METHOD => {
                self.drain_outbox();
                let payload = f.payload.clone();
                let (ids, m) = method::decode(&payload)?;
                match self.channel_method(f.channel, &payload, m) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let e = e.with_method(ids);
                        if e.connection {
                            Err(e)
                        } else {
                            self.channel_error(f.channel, e);
                            Ok(())
                        }
                    }
                }
            }
            FRAME_HEADER | FRAME_BODY => match self.content_frame(f.channel, f.kind, f.payload) {
                Ok(()) => Ok(()),
                Err(e) if e.connection => Err(e),
                Err(e) => {
                    self.channel_error(f.channel, e.with_method(ids::BASIC_PUBLISH));
                    Ok(())
                }
            },
            _ => Err(AmqpError::connection(
                ReplyCode::FrameError,
                "unknown frame type",
            )),
        }
    }

    /// Sends connection.close for a connection error and stops reading.
    fn fail(&mut self, e: AmqpError) {
        // Publishes completed before the bad frame are kept, as they would have been had
        // they arrived in an earlier read.
        self.flush_publishes();
        if self.phase == Phase::AwaitStartOk && e.code != ReplyCode::AccessRefused {
            // Before start-ok the client may not understand connection.close (spec 4.10.2).
            self.close_after_flush = true;
            return;
        }
        server::connection_close(&mut self.wbuf, e.code.code(), &e.reply_text(), e.method);
        self.phase = Phase::Closing;
        // Free model state now: the peer's channels are dead.
        let keys: Vec<u16> = self.channels.keys().copied().collect();
        let mut broker = self.broker();
        for ch in keys {
            broker.close_channel((self.id, ch));
        }
        drop(broker);
        self.channels.clear();
        if e.code == ReplyCode::AccessRefused && self.phase != Phase::Open {
            self.close_after_flush = true;
        }
    }

    fn channel_error(&mut self, channel: u16, e: AmqpError) {
        server::channel_close(
            &mut self.wbuf,
            channel,
            e.code.code(),
            &e.reply_text(),
            e.method,
        );
        if let Some(ch) = self.channels.get_mut(&channel) {
            ch.closing = true;
            ch.publish = None;
            self.pending_confirms -= ch.confirms.len();
            ch.confirms.clear();
        }
        self.broker().close_channel((self.id, channel));
    }

    fn connection_method(&mut self, ids: (u16, u16), m: Method<'_>) -> Result<(), AmqpError> {
        match (self.phase, m) {
            (
                Phase::AwaitStartOk,
                Method::StartOk {
                    mechanism,
                    response,
                    client_properties,
                    ..
                },
            ) => {
                auth::authenticate(mechanism, response, self.peer.ip())?;
                self.blocked_capable = client_supports_blocked(client_properties);
                let limits = &self.ctx.limits;
                let (cm, fm, hb) = (limits.channel_max, limits.frame_max, limits.heartbeat);
                method::write(&mut self.wbuf, 0, ids::CONNECTION_TUNE, |w| {
                    w.u16(cm).u32(fm).u16(hb);
                });
                self.phase = Phase::AwaitTuneOk;
                Ok(())
            }
            (
                Phase::AwaitTuneOk,
                Method::TuneOk {
                    channel_max,
                    frame_max,
                    heartbeat,
                },
            ) => {
                let limits = &self.ctx.limits;
                if frame_max != 0 && frame_max < frame::FRAME_MIN_SIZE {
                    return Err(AmqpError::connection(
                        ReplyCode::NotAllowed,
                        format!(
                            "frame_max {frame_max} is below the minimum {}",
                            frame::FRAME_MIN_SIZE
                        ),
                    ));
                }
                if frame_max > limits.frame_max {
                    return Err(AmqpError::connection(
                        ReplyCode::NotAllowed,
                        format!(
                            "frame_max {frame_max} is above the maximum {}",
                            limits.frame_max
                        ),
                    ));
                }
                if channel_max > limits.channel_max {
                    return Err(AmqpError::connection(
                        ReplyCode::NotAllowed,
                        format!(
                            "channel_max {channel_max} is above the maximum {}",
                            limits.channel_max
                        ),
                    ));
                }
                self.frame_max = if frame_max == 0 {
                    limits.frame_max
                } else {
                    frame_max
                };
                self.channel_max = if channel_max == 0 {
                    limits.channel_max
                } else {
                    channel_max
                };
                self.heartbeat = heartbeat;
                self.phase = Phase::AwaitOpen;
                Ok(())
            }
            (Phase::AwaitOpen, Method::Open { vhost }) => {
                if vhost != "/" {
                    return Err(AmqpError::connection(
                        ReplyCode::NotAllowed,
                        format!("vhost '{vhost}' not found"),
                    ));
                }
                method::write(&mut self.wbuf, 0, ids::CONNECTION_OPEN_OK, |w| {
                    w.shortstr("");
                });
                self.phase = Phase::Open;
                Ok(())
            }
            (_, Method::Close { .. }) => {
                method::write_empty(&mut self.wbuf, 0, ids::CONNECTION_CLOSE_OK);
                self.close_after_flush = true;
                Ok(())
            }
            (Phase::Open, Method::CloseOk) => Ok(()),
            (Phase::Open, Method::UpdateSecret) => Err(AmqpError::connection(
                ReplyCode::NotImplemented,
                "connection.update-secret is not supported",
            )),
            _ => Err(AmqpError::connection(
                ReplyCode::CommandInvalid,
                format!("unexpected method {}/{} on channel 0", ids.0, ids.1),
            )),
        }
    }

    fn channel_method(
        &mut self,
        channel: u16,
        payload: &Bytes,
        m: Method<'_>,
    ) -> Result<(), AmqpError> {
        let key = (self.id, channel);
        if let Method::ChannelOpen = m {
            if self.channels.contains_key(&channel) {
                return Err(AmqpError::connection(
                    ReplyCode::ChannelError,
                    format!("second 'channel.open' seen on channel {channel}"),
                ));
            }
            self.channels.insert(
                channel,
                Channel {
                    next_publish_tag: 1,
                    ..Default::default()
                },
            );
            self.broker().open_channel(key, self.outbox.clone());
            server::channel_open_ok(&mut self.wbuf, channel);
            return Ok(());
        }
        let Some(ch) = self.channels.get_mut(&channel) else {
            return Err(AmqpError::connection(
                ReplyCode::ChannelError,
                format!("expected 'channel.open' on channel {channel}"),
            ));
        };
        if ch.closing {
            match m {
                Method::ChannelCloseOk | Method::ChannelClose { .. } => {
                    self.channels.remove(&channel);
                    if let Method::ChannelClose { .. } = m {
                        method::write_empty(&mut self.wbuf, channel, ids::CHANNEL_CLOSE_OK);
                    }
                }
                _ => {} // Discarded until the client acknowledges the close.
            }
            return Ok(());
        }
        if ch.publish.is_some() {
            return Err(AmqpError::connection(
                ReplyCode::UnexpectedFrame,
                "method frame while content was expected",
            ));
        }
        match m {
            Method::ChannelClose { .. } => {
                self.broker().close_channel(key);
                // Deliveries queued before the close go out before close-ok.
                self.drain_outbox();
                if let Some(ch) = self.channels.remove(&channel) {
                    self.pending_confirms -= ch.confirms.len();
                }
                method::write_empty(&mut self.wbuf, channel, ids::CHANNEL_CLOSE_OK);
            }
            Method::ChannelCloseOk => {}
            Method::ChannelFlow { active } => {
                self.broker().channel_flow(key, active);
                server::channel_flow_ok(&mut self.wbuf, channel, active);
            }
            Method::ChannelFlowOk { .. } => {}
            Method::ExchangeDeclare {
                exchange,
                kind,
                passive,
                durable,
                auto_delete,
                internal,
                nowait,
                arguments,
            } => {
                self.broker().exchange_declare(
                    exchange,
                    kind,
                    passive,
                    durable,
                    auto_delete,
                    internal,
                    arguments,
                )?;
                if !nowait {
                    method::write_empty(&mut self.wbuf, channel, ids::EXCHANGE_DECLARE_OK);
                }
            }
            Method::ExchangeDelete {
                exchange,
                if_unused,
                nowait,
            } => {
                self.broker().exchange_delete(exchange, if_unused)?;
                if !nowait {
                    method::write_empty(&mut self.wbuf, channel, ids::EXCHANGE_DELETE_OK);
                }
            }
            Method::ExchangeBind {
                destination,
                source,
                routing_key,
                nowait,
                arguments,
            } => {
                self.broker().exchange_bind(
                    self.id,
                    destination,
                    source,
                    routing_key,
                    arguments,
                    true,
                )?;
                if !nowait {
                    method::write_empty(&mut self.wbuf, channel, ids::EXCHANGE_BIND_OK);
                }
            }
            Method::ExchangeUnbind {
                destination,
                source,
                routing_key,
                nowait,
                arguments,
            } => {
                self.broker().exchange_bind(
                    self.id,
                    destination,
                    source,
                    routing_key,
                    arguments,
                    false,
                )?;
                if !nowait {
                    method::write_empty(&mut self.wbuf, channel, ids::EXCHANGE_UNBIND_OK);
                }
            }
            Method::QueueDeclare {
                queue,
                passive,
                durable,
                exclusive,
                auto_delete,
                nowait,
                arguments,
            } => {
                let info = self.broker().queue_declare(
                    self.id,
                    queue,
                    passive,
                    durable,
                    exclusive,
                    auto_delete,
                    arguments,
                )?;
                if !nowait {
                    server::queue_declare_ok(
                        &mut self.wbuf,
                        channel,
                        &info.name,
                        info.messages,
                        info.consumers,
                    );
                }
            }
            Method::QueueBind {
                queue,
                exchange,
                routing_key,
                nowait,
                arguments,
            } => {
                self.broker()
                    .queue_bind(self.id, queue, exchange, routing_key, arguments, true)?;
                if !nowait {
                    method::write_empty(&mut self.wbuf, channel, ids::QUEUE_BIND_OK);
                }
            }
            Method::QueueUnbind {
                queue,
                exchange,
                routing_key,
                arguments,
            } => {
                self.broker().queue_bind(
                    self.id,
                    queue,
                    exchange,
                    routing_key,
                    arguments,
                    false,
                )?;
                method::write_empty(&mut self.wbuf, channel, ids::QUEUE_UNBIND_OK);
            }
            Method::QueuePurge { queue, nowait } => {
                let n = self.broker().queue_purge(self.id, queue)?;
                if !nowait {
                    server::message_count_ok(&mut self.wbuf, channel, ids::QUEUE_PURGE_OK, n);
                }
            }
            Method::QueueDelete {
                queue,
                if_unused,
                if_empty,
                nowait,
            } => {
                let n = self
                    .broker()
                    .queue_delete(self.id, queue, if_unused, if_empty)?;
                self.drain_outbox();
                if !nowait {
                    server::message_count_ok(&mut self.wbuf, channel, ids::QUEUE_DELETE_OK, n);
                }
            }
            Method::BasicQos {
                prefetch_size,
                prefetch_count,
                global,
            } => {
                if prefetch_size != 0 {
                    return Err(AmqpError::channel(
                        ReplyCode::NotImplemented,
                        "prefetch_size!=0 is not supported",
                    ));
                }
                self.broker().qos(key, prefetch_count, global);
                method::write_empty(&mut self.wbuf, channel, ids::BASIC_QOS_OK);
            }
            Method::BasicConsume {
                queue,
                consumer_tag,
                no_ack,
                exclusive,
                nowait,
                arguments,
                ..
            } => {
                let mut broker = self.ctx.broker.lock().expect("broker");
                let tag = broker.consume(key, queue, consumer_tag, no_ack, exclusive, arguments)?;
                if !nowait {
                    server::consume_ok(&mut self.wbuf, channel, &tag);
                }
                if let Some(q) = broker.consumer_queue(key, &tag) {
                    broker.dispatch(&q);
                }
            }
            Method::BasicCancel {
                consumer_tag,
                nowait,
            } => {
                self.broker().cancel(key, consumer_tag);
                self.drain_outbox();
                if !nowait {
                    server::cancel_ok(&mut self.wbuf, channel, consumer_tag);
                }
            }
            Method::BasicPublish {
                exchange,
                routing_key,
                mandatory,
                immediate,
            } => {
                if immediate {
                    return Err(AmqpError::connection(
                        ReplyCode::NotImplemented,
                        "immediate=true",
                    ));
                }
                self.published = true;
                let ch = self.channels.get_mut(&channel).expect("open channel");
                ch.publish = Some(PendingPublish {
                    method: payload.clone(),
                    exchange: offset_in(payload, exchange),
                    routing_key: offset_in(payload, routing_key),
                    mandatory,
                    header: None,
                    persistent: false,
                    headers_table: None,
                    body_size: 0,
                    received: 0,
                    body_first: None,
                    body_rest: Vec::new(),
                });
            }
            Method::BasicGet { queue, no_ack } => {
                let got = self.broker().get(key, queue, no_ack)?;
                match got {
                    None => server::get_empty(&mut self.wbuf, channel),
                    Some(g) => {
                        let Some(msg) = message::decode(&g.payload) else {
                            return Err(AmqpError::channel(
                                ReplyCode::InternalError,
                                "stored message is malformed",
                            ));
                        };
                        server::get_ok(
                            &mut self.wbuf,
                            channel,
                            g.delivery_tag,
                            g.redelivered,
                            msg.exchange_str(),
                            msg.routing_key_str(),
                            g.message_count,
                        );
                        self.write_content(channel, &msg.header, &msg.body);
                    }
                }
            }
            Method::BasicAck {
                delivery_tag,
                multiple,
            } => {
                self.broker()
                    .settle(key, delivery_tag, multiple, true, false)?;
            }
            Method::BasicNack {
                delivery_tag,
                multiple,
                requeue,
            } => {
                self.broker()
                    .settle(key, delivery_tag, multiple, false, requeue)?;
            }
            Method::BasicReject {
                delivery_tag,
                requeue,
            } => {
                self.broker()
                    .settle(key, delivery_tag, false, false, requeue)?;
            }
            Method::BasicRecover { .. } => {
                self.broker().recover(key)?;
                method::write_empty(&mut self.wbuf, channel, ids::BASIC_RECOVER_OK);
            }
            Method::BasicRecoverAsync { .. } => {
                self.broker().recover(key)?;
            }
            Method::ConfirmSelect { nowait } => {
                self.channels
                    .get_mut(&channel)
                    .expect("open channel")
                    .confirm = true;
                if !nowait {
                    method::write_empty(&mut self.wbuf, channel, ids::CONFIRM_SELECT_OK);
                }
            }
            Method::TxSelect | Method::TxCommit | Method::TxRollback => {
                return Err(AmqpError::channel(
                    ReplyCode::NotImplemented,
                    "transactions are not supported",
                ));
            }
            _ => {
                return Err(AmqpError::connection(
                    ReplyCode::CommandInvalid,
                    "connection-class method on a non-zero channel",
                ))
            }
        }
        Ok(())
    }

    fn content_frame(&mut self, channel: u16, kind: u8, payload: Bytes) -> Result<(), AmqpError> {
        let max = self.ctx.limits.max_message_size;
        let Some(ch) = self.channels.get_mut(&channel) else {
            return Err(AmqpError::connection(
                ReplyCode::ChannelError,
                format!("content frame on closed channel {channel}"),
            ));
        };
        if ch.closing {
            return Ok(());
        }
        let Some(p) = ch.publish.as_mut() else {
            return Err(AmqpError::connection(
                ReplyCode::UnexpectedFrame,
                "content frame without a preceding basic.publish",
            ));
        };
        if kind == FRAME_HEADER {
            if p.header.is_some() {
                return Err(AmqpError::connection(
                    ReplyCode::UnexpectedFrame,
                    "second content header",
                ));
            }
            let h = properties::decode(&payload)?;
            if h.class_id != class::BASIC {
                return Err(AmqpError::connection(
                    ReplyCode::FrameError,
                    "content header class is not basic",
                ));
            }
            if h.body_size > BODY_SIZE_SANITY {
                return Err(AmqpError::connection(
                    ReplyCode::FrameError,
                    format!("body size {} is beyond any sane bound", h.body_size),
                ));
            }
            if h.body_size > max {
                return Err(AmqpError::channel(
                    ReplyCode::PreconditionFailed,
                    format!(
                        "message size {} is larger than configured max size {max}",
                        h.body_size
                    ),
                ));
            }
            p.persistent = h.persistent();
            p.body_size = h.body_size;
            p.headers_table = h.headers.map(|t| {
                let start = t.as_ptr() as usize - payload.as_ptr() as usize;
                (start, start + t.len())
            });
            p.header = Some(payload);
        } else {
            if p.header.is_none() {
                return Err(AmqpError::connection(
                    ReplyCode::UnexpectedFrame,
                    "body frame before content header",
                ));
            }
            p.received += payload.len() as u64;
            if p.received > p.body_size {
                return Err(AmqpError::connection(
                    ReplyCode::FrameError,
                    "body frames are longer than the content header declared",
                ));
            }
            if !payload.is_empty() {
                if p.body_first.is_none() {
                    p.body_first = Some(payload);
                } else {
                    p.body_rest.push(payload);
                }
            }
        }
        if p.received == p.body_size {
            let p = ch.publish.take().expect("checked");
            self.complete_publish(channel, p)?;
        }
        Ok(())
    }

    fn complete_publish(&mut self, channel: u16, p: PendingPublish) -> Result<(), AmqpError> {
        self.ready.push((channel, p));
        if self.ready.len() >= PUBLISH_BATCH {
            self.flush_publishes();
        }
        Ok(())
    }

    /// Hands every complete publish to the model in one batch (one lock, one write system
    /// call per queue), then sends returns and queues confirms in publish order.
    fn flush_publishes(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let ready = std::mem::take(&mut self.ready);
        let mut body_parts: Vec<&[u8]> = Vec::with_capacity(ready.len());
        let mut body_ranges: Vec<(usize, usize)> = Vec::with_capacity(ready.len());
        for (_, p) in &ready {
            let start = body_parts.len();
            body_parts.extend(
                p.body_first
                    .iter()
                    .chain(p.body_rest.iter())
                    .map(|b| &b[..]),
            );
            body_ranges.push((start, body_parts.len()));
        }
        let requests: Vec<PublishRequest<'_>> = ready
            .iter()
            .zip(&body_ranges)
            .map(|((_, p), &(a, b))| {
                let header = p.header.as_deref().unwrap_or_default();
                PublishRequest {
                    exchange: p.exchange(),
                    routing_key: p.routing_key(),
                    header,
                    persistent: p.persistent,
                    headers_table: p.headers_table.map(|(x, y)| &header[x..y]),
                    body: &body_parts[a..b],
                }
            })
            .collect();
        let results = self.broker().publish_batch(&requests);
        for (((channel, p), result), req) in ready.iter().zip(results).zip(&requests) {
            if self.channels.get(channel).is_none_or(|c| c.closing) {
                continue; // closed by an earlier error in this batch
            }
            match result {
                Err(e) if e.connection => {
                    self.fail(e.with_method(ids::BASIC_PUBLISH));
                    return;
                }
                Err(e) => self.channel_error(*channel, e.with_method(ids::BASIC_PUBLISH)),
                Ok(result) => {
                    if p.mandatory && !result.routed {
                        server::basic_return(
                            &mut self.wbuf,
                            *channel,
                            ReplyCode::NoRoute.code(),
                            ReplyCode::NoRoute.name(),
                            p.exchange(),
                            p.routing_key(),
                        );
                        let body_all = req.body.concat();
                        self.write_content(*channel, req.header, &body_all);
                    }
                    let ch = self.channels.get_mut(channel).expect("open channel");
                    if ch.confirm {
                        let tag = ch.next_publish_tag;
                        ch.next_publish_tag += 1;
                        ch.confirms.push_back((tag, result.ticket, result.failed));
                        self.pending_confirms += 1;
                    }
                }
            }
        }
    }

    /// Sends publisher confirms for every publish whose sync has completed, coalescing
    /// runs into `multiple` acks.
    fn flush_confirms(&mut self) {
        if self.pending_confirms == 0 {
            return;
        }
        let tracker = self.ctx.confirms.clone();
        for (&channel, ch) in self.channels.iter_mut() {
            let mut run: Option<(u64, u64, bool)> = None; // (first, last, ack)
            while let Some(&(tag, ticket, failed)) = ch.confirms.front() {
                let ok = match tracker.status(ticket) {
                    None => break,
                    Some(durable) => durable && !failed,
                };
                ch.confirms.pop_front();
                self.pending_confirms -= 1;
                run = match run {
                    Some((first, _, a)) if a == ok => Some((first, tag, a)),
                    Some((first, last, a)) => {
                        server::confirm(&mut self.wbuf, channel, last, last > first, a);
                        Some((tag, tag, ok))
                    }
                    None => Some((tag, tag, ok)),
                };
            }
            if let Some((first, last, a)) = run {
                server::confirm(&mut self.wbuf, channel, last, last > first, a);
            }
        }
    }

    /// Writes a content header and the body split into frames of at most frame_max.
    fn write_content(&mut self, channel: u16, header: &[u8], body: &[u8]) {
        frame::write(&mut self.wbuf, FRAME_HEADER, channel, header);
        let chunk = (self.frame_max as usize)
            .saturating_sub(frame::FRAME_OVERHEAD)
            .max(1);
        for part in body.chunks(chunk) {
            frame::write(&mut self.wbuf, FRAME_BODY, channel, part);
        }
    }

    /// Moves deliveries into the write buffer if it is not already deep.
    fn pump_deliveries(&mut self) {
        if self.wbuf.len() < DELIVERY_HIGH_WATER {
            self.drain_outbox();
        }
    }

    /// Moves deliveries from the outbox into the write buffer.
    fn drain_outbox(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let mut items = std::mem::take(&mut self.drained);
        let was_full = self.outbox.drain(&mut items);
        for item in items.drain(..) {
            match item {
                Outgoing::Deliver {
                    channel,
                    consumer_tag,
                    delivery_tag,
                    redelivered,
                    payload,
                } => {
                    if self.channels.get(&channel).is_none_or(|c| c.closing) {
                        continue;
                    }
                    let Some(msg) = message::decode(&payload) else {
                        continue;
                    };
                    server::deliver(
                        &mut self.wbuf,
                        channel,
                        &consumer_tag,
                        delivery_tag,
                        redelivered,
                        msg.exchange_str(),
                        msg.routing_key_str(),
                    );
                    self.write_content(channel, &msg.header, &msg.body);
                }
                Outgoing::Cancel {
                    channel,
                    consumer_tag,
                } => {
                    if self.channels.get(&channel).is_some_and(|c| !c.closing) {
                        server::cancel(&mut self.wbuf, channel, &consumer_tag);
                    }
                }
            }
        }
        self.drained = items;
        if was_full {
            self.broker().resume_connection(self.id);
        }
    }
}

/// Feeds `input` to a fresh connection state machine, as if it arrived after a valid
/// protocol header, with a real broker on a temporary data dir; the server's output is
/// discarded. Used by the `connection` fuzz target and its regression tests: it must not
/// panic on any input.
#[doc(hidden)]
pub fn fuzz_session(input: &[u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static RUN: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "warren-fuzz-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    let commit = warren_storage::GroupCommit::start(warren_storage::FsyncPolicy::Never);
    let config = crate::broker::BrokerConfig {
        data_dir: dir.clone(),
        log: warren_storage::LogConfig {
            segment_size: 64 * 1024,
            ..Default::default()
        },
        outbox_limit: 64,
    };
    let Ok((broker, _)) = Broker::open(config, commit.clone()) else {
        return;
    };
    let ctx = Arc::new(ServerContext {
        broker: Mutex::new(broker),
        confirms: ConfirmTracker::new(commit),
        limits: Limits {
            max_message_size: 1 << 20,
            ..Limits::default()
        },
        alarms: Arc::new(Alarms::new(&dir, u64::MAX, 0)),
    });
    let id = ctx.broker.lock().expect("broker").register_connection();
    let mut conn = Conn {
        id,
        peer: "127.0.0.1:1".parse().expect("literal"),
        frame_max: ctx.limits.frame_max,
        channel_max: ctx.limits.channel_max,
        heartbeat: 0,
        ctx: ctx.clone(),
        outbox: Outbox::new(64),
        phase: Phase::AwaitStartOk,
        channels: HashMap::new(),
        wbuf: BytesMut::new(),
        drained: VecDeque::new(),
        pending_confirms: 0,
        close_after_flush: false,
        ready: Vec::new(),
        published: false,
        blocked_capable: false,
        blocked_sent: false,
    };
    conn.send_start();
    // Arbitrary read boundaries: the first byte picks the chunk size.
    let (seed, rest) = input.split_first().map_or((1, input), |(s, r)| (*s, r));
    let mut rbuf = BytesMut::new();
    for piece in rest.chunks(1 + seed as usize * 4) {
        rbuf.extend_from_slice(piece);
        if let Err(e) = conn.process(&mut rbuf) {
            conn.fail(e);
        }
        conn.drain_outbox();
        conn.flush_confirms();
        conn.wbuf.clear();
        if conn.close_after_flush {
            break;
        }
    }
    ctx.broker.lock().expect("broker").close_connection(id);
    drop(conn);
    drop(ctx);
    let _ = std::fs::remove_dir_all(&dir);
}
