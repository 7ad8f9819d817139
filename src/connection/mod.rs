//! One client connection: the handshake, then frames in, methods dispatched to the model,
//! replies and deliveries out. It speaks `protocol` and calls `broker`; it never touches
//! storage.
//!
//! | file | job |
//! | --- | --- |
//! | `io.rs` | the read/write loop, backpressure, heartbeats, alarms |
//! | `frames.rs` | splitting frames out of the read buffer and routing them |
//! | `handshake.rs` | connection.start .. open, close; `sasl.rs` decodes credentials |
//! | `channel.rs` | the channel state machine (`ChannelPhase`), dispatch per method class |
//! | `publish.rs` | content assembly and batched publishes |
//! | `deliver.rs` | deliveries from the outbox, content encoding, publisher confirms |
//! | `tx.rs` | transactions: held publishes, tx.select / commit / rollback |
//! | `leader_get.rs` | basic.get of a quorum queue another cluster node leads |
//! | `errors.rs` | model errors to reply codes; channel and connection close |
//!
//! `serve` is generic over the byte stream (`io::Stream`: plain TCP, or TLS from
//! `crate::tls`), monomorphised per kind so the plain path has no indirection.
//!
//! The task owns the socket's two halves and two buffers. Reading stops while the write
//! buffer is above its high-water mark, so a client that publishes but never reads cannot
//! make the broker buffer without bound; writes are batched (everything produced by one
//! read, plus drained deliveries, goes out in as few writes as the socket allows).

mod channel;
mod deliver;
mod errors;
mod frames;
#[doc(hidden)]
pub mod fuzz_model;
mod handshake;
mod io;
mod leader_get;
mod output;
mod publish;
mod sasl;
/// SASL PLAIN/AMQPLAIN responses, for the stream protocol's SaslAuthenticate too.
pub(crate) use sasl::credentials as sasl_credentials;
mod tx;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;

use crate::alarms::Alarms;
use crate::broker::access::User;
use crate::broker::admin::ConnectionInfo;
use crate::broker::confirms::ConfirmTracker;
use crate::broker::fast_map::FastMap;
use crate::broker::flow::FlowPause;
use crate::broker::grants::Grants;
use crate::broker::outbox::{Outbox, Outgoing};
use crate::broker::{BrokerHandle, VHostHandle};
use crate::config::Limits;
use channel::Channel;
use handshake::Phase;
use publish::PendingPublish;

pub use io::Stream;
pub use sasl::{EXTERNAL_NO_CERT, EXTERNAL_NO_NAME};

/// What a connection knows of the transport under it.
#[derive(Debug, Clone, Default)]
pub enum Transport {
    #[default]
    Plain,
    /// TLS. `external` is the SASL EXTERNAL user name taken from the verified client
    /// certificate, or why there is none (RabbitMQ's refusal text).
    Tls {
        external: Result<String, &'static str>,
        /// The negotiated protocol version and cipher suite (for the management API).
        session: (String, String),
    },
}

/// What every connection task shares.
pub struct ServerContext {
    pub broker: BrokerHandle,
    pub confirms: ConfirmTracker,
    pub limits: Limits,
    pub alarms: Arc<Alarms>,
    /// Fires once when the broker shuts down: every connection closes with 320.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

struct Conn {
    id: u64,
    peer: SocketAddr,
    /// The listener's address the client connected to.
    local: SocketAddr,
    transport: Transport,
    ctx: Arc<ServerContext>,
    outbox: Arc<Outbox>,
    phase: Phase,
    /// Set by connection.open.
    vhost: Option<VHostHandle>,
    /// Set once start-ok's credentials are accepted.
    user: Option<User>,
    /// The user's permissions in the vhost (set by connection.open), as of the access
    /// database's `grants_epoch`.
    grants: Option<Arc<Grants>>,
    grants_epoch: u64,
    /// The client's `connection_name` property, for logs.
    client_name: Option<String>,
    /// start-ok's mechanism and client properties (raw), for the management API.
    mechanism: &'static str,
    client_properties: Vec<u8>,
    /// What the management API shows (from connection.open).
    info: Option<Arc<ConnectionInfo>>,
    frame_max: u32,
    channel_max: u16,
    heartbeat: u16,
    /// Looked up per delivery: a fast hasher, not SipHash.
    channels: FastMap<u16, Channel>,
    wbuf: BytesMut,
    /// Large bodies queued ahead of `wbuf` (see `output`).
    out_chunks: output::OutChunks,
    drained: VecDeque<Outgoing>,
    pending_confirms: usize,
    /// Close the socket once the write buffer is flushed.
    close_after_flush: bool,
    /// Input is read but discarded (after a failed handshake or a lost frame sync).
    deaf: bool,
    /// Hang up at this time (once the write buffer is flushed) if the client has not.
    hang_up_at: Option<std::time::Instant>,
    /// The connection's state is in the model (from connection.open until closing).
    attached: bool,
    /// The connection counts against its user's connection limit (from connection.open).
    counted: bool,
    /// Channels counted against the user's channel limit and not yet given back.
    counted_channels: u64,
    /// Complete publishes not yet handed to the model (see `flush_publishes`).
    ready: Vec<(u16, PendingPublish)>,
    /// Some of `ready` are on transactional channels, to be held (tx.rs).
    ready_held: bool,
    /// This connection has published: a resource alarm blocks it.
    published: bool,
    /// The client announced the `connection.blocked` capability.
    blocked_capable: bool,
    /// The client announced `consumer_cancel_notify`: it is told when its consumers go.
    cancel_notify: bool,
    /// A channel was closed by the client during this read (`forget_closed_channels`).
    closed_by_client: bool,
    /// We sent connection.blocked and owe an unblocked.
    blocked_sent: bool,
    /// Held by publisher flow control (broker/flow.rs): not read until the gate opens or
    /// the pause's deadline passes.
    flow: Option<(FlowPause, std::time::Instant)>,
    /// Flow control has held this connection before (logged once).
    flow_logged: bool,
    /// A basic.get waiting for its quorum queue's leader (leader_get.rs): no frame after
    /// it is handled, and nothing more is read, until it is answered.
    pending_get: Option<leader_get::PendingGet>,
}

impl Conn {
    fn new(
        ctx: Arc<ServerContext>,
        (peer, local): (SocketAddr, SocketAddr),
        transport: Transport,
        outbox: Arc<Outbox>,
    ) -> Conn {
        Conn {
            id: ctx.broker.register_connection(),
            peer,
            local,
            transport,
            frame_max: ctx.limits.frame_max,
            channel_max: ctx.limits.channel_max,
            heartbeat: 0,
            ctx,
            outbox,
            phase: Phase::AwaitStartOk,
            vhost: None,
            user: None,
            grants: None,
            grants_epoch: 0,
            client_name: None,
            mechanism: "",
            client_properties: Vec::new(),
            info: None,
            channels: FastMap::default(),
            wbuf: BytesMut::with_capacity(64 * 1024),
            out_chunks: output::OutChunks::default(),
            drained: VecDeque::new(),
            pending_confirms: 0,
            close_after_flush: false,
            deaf: false,
            hang_up_at: None,
            attached: false,
            counted: false,
            counted_channels: 0,
            ready: Vec::new(),
            ready_held: false,
            published: false,
            blocked_capable: false,
            cancel_notify: false,
            closed_by_client: false,
            blocked_sent: false,
            flow: None,
            flow_logged: false,
            pending_get: None,
        }
    }

    /// The connection's vhost. Channel frames only reach the model after connection.open
    /// (checked in `frames.rs`), so it is set.
    fn vhost(&self) -> &VHostHandle {
        self.vhost
            .as_ref()
            .expect("channel work happens after connection.open")
    }

    /// Detaches the connection from the model: channels closed, unacked requeued,
    /// exclusive queues deleted. Idempotent.
    fn detach_model(&mut self) {
        if std::mem::take(&mut self.attached) {
            let id = self.id;
            self.vhost().with(|m| m.close_connection(id));
        }
    }

    /// The connection is gone: detached, and counted as closed (its user's connection
    /// and channels given back).
    fn detach(&mut self) {
        self.detach_model();
        if let Some(user) = &self.user {
            if std::mem::take(&mut self.counted) {
                user.usage.connection_closed();
            }
            user.usage
                .channels_closed(std::mem::take(&mut self.counted_channels));
        }
        self.ctx.broker.connection_closed();
    }

    /// Channels left the connection: give them back to the user's channel count.
    fn channels_gone(&mut self, n: usize) {
        if let Some(user) = &self.user {
            let n = (n as u64).min(self.counted_channels);
            self.counted_channels -= n;
            user.usage.channels_closed(n);
        }
    }
}

/// Serves one client until it disconnects or is disconnected. The caller has set up the
/// socket (`TCP_NODELAY`) and, for TLS, finished the TLS handshake.
pub async fn serve<S: Stream>(
    stream: S,
    (peer, local): (SocketAddr, SocketAddr),
    transport: Transport,
    ctx: Arc<ServerContext>,
) {
    let outbox = Outbox::new(ctx.limits.outbox_limit);
    let tls = matches!(transport, Transport::Tls { .. });
    let mut conn = Conn::new(ctx, (peer, local), transport, outbox);
    tracing::debug!(conn = conn.id, %peer, tls, "connection accepted");
    let result = conn.run(stream).await;
    if conn.phase.is_open() || conn.user.is_some() {
        tracing::info!(
            conn = conn.id,
            %peer,
            user = conn.user.as_ref().map_or("", |u| u.name.as_str()),
            vhost = conn.vhost.as_ref().map_or("", |v| v.name()),
            name = conn.client_name.as_deref().unwrap_or(""),
            error = result.as_ref().err().map(|e| e.to_string()).unwrap_or_default(),
            "connection closed"
        );
    }
    conn.detach();
}

/// Feeds `input` to a fresh connection state machine, as if it arrived after a valid
/// protocol header, with a real broker on a temporary data dir (reused across inputs and
/// reset between them: `broker::fuzz_broker`); the server's output is discarded. Used by the `connection` fuzz target and its regression tests: it must not
/// panic on any input.
#[doc(hidden)]
pub fn fuzz_session(input: &[u8]) {
    crate::broker::fuzz_broker::with_broker(
        "conn",
        crate::broker::fuzz_broker::fresh,
        |broker, dir| fuzz_session_on(broker, dir, input),
    );
}

/// A connection of `broker` without a socket, for the fuzz drivers: greeted
/// (connection.start is in its write buffer), with the shutdown sender that must outlive it.
fn fuzz_conn(
    broker: &BrokerHandle,
    dir: &std::path::Path,
    limits: Limits,
) -> (Conn, tokio::sync::watch::Sender<bool>) {
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let outbox = Outbox::new(limits.outbox_limit);
    let ctx = Arc::new(ServerContext {
        confirms: broker.confirm_tracker(),
        broker: broker.clone(),
        limits,
        alarms: Arc::new(Alarms::new(dir, u64::MAX, 0)),
        shutdown,
    });
    let mut conn = Conn::new(
        ctx,
        (
            "127.0.0.1:1".parse().expect("literal"),
            "127.0.0.1:5672".parse().expect("literal"),
        ),
        Transport::Plain,
        outbox,
    );
    conn.wbuf = BytesMut::new();
    conn.send_start();
    (conn, shutdown_tx)
}

fn fuzz_session_on(broker: &BrokerHandle, dir: &std::path::Path, input: &[u8]) {
    let limits = Limits {
        max_message_size: 1 << 20,
        outbox_limit: 64,
        ..Limits::default()
    };
    let (mut conn, _shutdown) = fuzz_conn(broker, dir, limits);
    // Arbitrary read boundaries: the first byte picks the chunk size.
    let (seed, rest) = input.split_first().map_or((1, input), |(s, r)| (*s, r));
    let mut rbuf = BytesMut::new();
    for piece in rest.chunks(1 + seed as usize * 4) {
        rbuf.extend_from_slice(piece);
        conn.process_all(&mut rbuf);
        conn.drain_outbox();
        conn.flush_confirms();
        conn.wbuf.clear();
        conn.out_chunks.clear();
        if conn.close_after_flush {
            break;
        }
    }
    conn.detach();
}
