//! One RabbitMQ Stream protocol connection, as RabbitMQ 3.10.8's `rabbit_stream_reader`
//! runs it (answers recorded in `tests/stream_reference/README.md`): peer properties,
//! SASL (PLAIN, AMQPLAIN), tune, open; then streams (create, delete, metadata), publishers
//! (declare, publish → confirm or error, query sequence, delete), subscriptions
//! (subscribe with an offset and credit, deliver one chunk per credit, credit,
//! unsubscribe), server-side offsets (store, query), heartbeat and close.
//!
//! The session pulls: each subscription keeps its own cursor and reads records from the
//! model under the vhost lock (views of the segment mappings, no copy), then builds the
//! osiris chunk outside it. A `Notify` registered with each subscribed stream wakes the
//! session when something is appended. Publishes are appended in one batch per read (per
//! frame for a named publisher, see `frame_in_order`) and confirmed when the storage sync
//! covering them completes (`--fsync`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use warren_storage::{Cursor, Ticket};

use super::command::{Broker, Command, OffsetSpec, SimpleResponseKey, StreamMetadata};
use super::decode::{undecodable_reaction, Origin, UndecodableReaction};
use super::frame::{read_frame, FrameError};
use super::*;
use crate::broker::access::User;
use crate::broker::admin::ConnectionInfo;
use crate::broker::grants::Perm;
use crate::broker::outbox::Outbox;
use crate::broker::queue::stream_args;
use crate::broker::stream_access::StreamRefusal;
use crate::broker::VHostHandle;
use crate::connection::ServerContext;

mod data;
mod fuzz;

pub use fuzz::fuzz_session;

/// How long a client may stay silent before the handshake is done.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

struct Subscription {
    stream: Arc<str>,
    cursor: Cursor,
    /// Chunks the client may still receive (RabbitMQ reads Credit as a signed int16).
    credit: i32,
}

struct Publisher {
    stream: Arc<str>,
    reference: Option<String>,
}

#[derive(PartialEq, Eq)]
enum Phase {
    Handshake,
    Open,
    /// We sent Close (unknown frame): only the client's close response matters now.
    Closing,
}

struct Session {
    id: u64,
    peer: SocketAddr,
    local: SocketAddr,
    advertised_port: u16,
    ctx: Arc<ServerContext>,
    phase: Phase,
    user: Option<User>,
    vhost: Option<VHostHandle>,
    attached: bool,
    frame_max: u32,
    heartbeat: u32,
    wbuf: BytesMut,
    publishers: HashMap<u8, Publisher>,
    subscriptions: HashMap<u8, Subscription>,
    /// Publishes waiting for their sync: (ticket, publisher, publishing ids).
    confirms: VecDeque<(Ticket, u8, Vec<u64>)>,
    /// Publish frames of this read not yet appended (`frame_in_order`).
    pending_publishes: Vec<Bytes>,
    /// `deliver` stopped at the output bound with credit and records left.
    delivery_pending: bool,
    wake: Arc<Notify>,
    /// The connection ends after the write buffer is flushed.
    done: bool,
}

/// Serves one stream-protocol connection until it closes.
pub async fn serve(
    mut socket: TcpStream,
    (peer, local): (SocketAddr, SocketAddr),
    ctx: Arc<ServerContext>,
) {
    let mut s = Session::new(ctx, (peer, local));
    let id = s.id;
    tracing::info!(conn = id, %peer, "stream connection accepted");
    if let Err(e) = s.run(&mut socket).await {
        tracing::info!(conn = id, %peer, "stream connection ended: {e}");
    }
    s.detach();
}

impl Session {
    fn new(ctx: Arc<ServerContext>, (peer, local): (SocketAddr, SocketAddr)) -> Session {
        Session {
            id: ctx.broker.register_connection(),
            peer,
            local,
            advertised_port: local.port(),
            ctx,
            phase: Phase::Handshake,
            user: None,
            vhost: None,
            attached: false,
            frame_max: DEFAULT_FRAME_MAX,
            heartbeat: DEFAULT_HEARTBEAT,
            wbuf: BytesMut::new(),
            publishers: HashMap::new(),
            subscriptions: HashMap::new(),
            confirms: VecDeque::new(),
            pending_publishes: Vec::new(),
            delivery_pending: false,
            wake: Arc::new(Notify::new()),
            done: false,
        }
    }

    async fn run(&mut self, socket: &mut TcpStream) -> std::io::Result<()> {
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        let mut synced = self.ctx.confirms.subscribe();
        let mut shutdown = self.ctx.shutdown.clone();
        let started = tokio::time::Instant::now();
        let mut last_read = tokio::time::Instant::now();
        let mut last_beat = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            self.confirm_synced();
            self.deliver();
            if !self.wbuf.is_empty() {
                socket.write_all(&self.wbuf).await?;
                self.wbuf.clear();
                if self.wbuf.capacity() > 4 * data::OUTPUT_HIGH {
                    // A large answer once (metadata of many streams) is not kept.
                    self.wbuf = BytesMut::new();
                }
            }
            if self.done {
                return Ok(());
            }
            tokio::select! {
                // More to deliver: round again at once, reads still taken in turn.
                _ = std::future::ready(()), if self.delivery_pending => {}
                n = socket.read_buf(&mut rbuf) => {
                    if n? == 0 {
                        return Ok(());
                    }
                    last_read = tokio::time::Instant::now();
                    self.process(&mut rbuf)
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                }
                _ = self.wake.notified() => {}
                _ = synced.changed() => {}
                _ = shutdown.changed() => {
                    self.send(&Command::Close {
                        correlation_id: 1,
                        code: RESPONSE_CODE_OK,
                        reason: "broker shutting down".into(),
                    });
                    self.done = true;
                }
                _ = tick.tick() => {
                    let idle = last_read.elapsed();
                    if self.phase == Phase::Handshake && started.elapsed() > HANDSHAKE_TIMEOUT {
                        return Err(std::io::Error::other("handshake timeout"));
                    }
                    if self.heartbeat > 0 {
                        if idle > Duration::from_secs(2 * self.heartbeat as u64) {
                            return Err(std::io::Error::other("missed heartbeats"));
                        }
                        let half = Duration::from_secs(self.heartbeat as u64 / 2);
                        if idle > half && last_beat.elapsed() > half {
                            self.send(&Command::Heartbeat);
                            last_beat = tokio::time::Instant::now();
                        }
                    }
                }
            }
        }
    }

    /// Every whole frame in `rbuf` through the state machine, until the connection is done.
    fn process(&mut self, rbuf: &mut BytesMut) -> Result<(), FrameError> {
        let result = loop {
            match read_frame(rbuf, self.frame_max) {
                Ok(Some(body)) => self.frame_in_order(body),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
            if self.done {
                break Ok(());
            }
        };
        self.flush_publishes();
        result
    }

    fn send(&mut self, c: &Command) {
        c.encode(&mut self.wbuf);
    }

    fn respond(&mut self, key: SimpleResponseKey, correlation_id: u32, code: u16) {
        self.send(&Command::Response {
            key,
            correlation_id,
            code,
        });
    }

    fn vhost(&self) -> &VHostHandle {
        self.vhost.as_ref().expect("commands after open")
    }

    /// One client frame.
    fn frame(&mut self, body: Bytes) {
        if body.len() >= 8 && body[..2] == KEY_EXCHANGE_COMMAND_VERSIONS.to_be_bytes() {
            return self.exchange_command_versions(&body);
        }
        let command = match Command::decode(body.clone(), Origin::Client) {
            Ok(c) => c,
            // The Rust client answers Tune with the request key (0x0014), and RabbitMQ
            // takes it as the answer.
            Err(e) => match Command::decode(body, Origin::Server) {
                Ok(Command::Tune {
                    frame_max,
                    heartbeat,
                }) => Command::TuneResponse {
                    frame_max,
                    heartbeat,
                },
                _ => return self.undecodable(&e.to_string()),
            },
        };
        if self.phase == Phase::Closing {
            if matches!(
                command,
                Command::Response {
                    key: SimpleResponseKey::Close,
                    ..
                }
            ) {
                self.done = true;
            }
            return;
        }
        let open = self.phase == Phase::Open;
        match command {
            Command::PeerProperties { correlation_id, .. } if !open => {
                let properties = vec![
                    ("cluster_name".into(), "warren".into()),
                    ("copyright".into(), "Warren".into()),
                    (
                        "information".into(),
                        "An AMQP 0-9-1 and stream broker on a segment log".into(),
                    ),
                    ("platform".into(), "Rust".into()),
                    ("product".into(), "Warren".into()),
                    ("version".into(), env!("CARGO_PKG_VERSION").into()),
                ];
                self.send(&Command::PeerPropertiesResponse {
                    correlation_id,
                    code: RESPONSE_CODE_OK,
                    properties,
                });
            }
            Command::SaslHandshake { correlation_id } if !open => {
                self.send(&Command::SaslHandshakeResponse {
                    correlation_id,
                    code: RESPONSE_CODE_OK,
                    mechanisms: vec!["PLAIN".into(), "AMQPLAIN".into()],
                });
            }
            Command::SaslAuthenticate {
                correlation_id,
                mechanism,
                data,
            } if !open && self.user.is_none() => {
                self.authenticate(correlation_id, &mechanism, data)
            }
            Command::TuneResponse {
                frame_max,
                heartbeat,
            } if !open => {
                if frame_max != 0 {
                    self.frame_max = frame_max.min(DEFAULT_FRAME_MAX);
                }
                self.heartbeat = heartbeat;
            }
            Command::Open {
                correlation_id,
                virtual_host,
            } if !open && self.user.is_some() => self.open(correlation_id, &virtual_host),
            Command::Heartbeat => {}
            Command::Close { correlation_id, .. } => {
                self.respond(SimpleResponseKey::Close, correlation_id, RESPONSE_CODE_OK);
                self.done = true;
            }
            c if open => self.command(c),
            other => self.undecodable(&format!("{other:?} before the connection is open")),
        }
    }

    /// ExchangeCommandVersions (0x1b, RabbitMQ 3.11+): 3.10.8 does not know it, but
    /// today's clients (the Rust, Java and Go stream clients) send it right after open
    /// and give up without an answer. Warren answers that it speaks version 1 of every
    /// command, which is what 3.10 speaks.
    fn exchange_command_versions(&mut self, body: &[u8]) {
        let correlation_id = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
        let keys: Vec<u16> = (KEY_DECLARE_PUBLISHER..=KEY_PARTITIONS).collect();
        self.wbuf.put_u32((4 + 4 + 2 + 4 + keys.len() * 6) as u32);
        self.wbuf
            .put_u16(KEY_EXCHANGE_COMMAND_VERSIONS | RESPONSE_BIT);
        self.wbuf.put_u16(VERSION_1);
        self.wbuf.put_u32(correlation_id);
        self.wbuf.put_u16(RESPONSE_CODE_OK);
        self.wbuf.put_u32(keys.len() as u32);
        for k in keys {
            self.wbuf.put_u16(k);
            self.wbuf.put_u16(VERSION_1);
            self.wbuf.put_u16(VERSION_1);
        }
    }

    /// A frame RabbitMQ does not answer in this state: before open the socket closes;
    /// once open, Close with code 13 "unknown frame".
    fn undecodable(&mut self, why: &str) {
        tracing::warn!(conn = self.id, peer = %self.peer, "stream frame refused: {why}");
        match undecodable_reaction(self.phase == Phase::Open) {
            UndecodableReaction::CloseSocket => self.done = true,
            UndecodableReaction::SendClose {
                correlation_id,
                code,
                reason,
            } => {
                self.send(&Command::Close {
                    correlation_id,
                    code,
                    reason: reason.into(),
                });
                self.phase = Phase::Closing;
            }
        }
    }

    fn authenticate(&mut self, correlation_id: u32, mechanism: &str, data: Option<Bytes>) {
        let reply = |code| Command::SaslAuthenticateResponse {
            correlation_id,
            code,
            challenge: None,
        };
        if mechanism != "PLAIN" && mechanism != "AMQPLAIN" {
            self.send(&reply(RESPONSE_CODE_SASL_MECHANISM_NOT_SUPPORTED));
            self.done = true;
            return;
        }
        let data = data.unwrap_or_default();
        let login = crate::connection::sasl_credentials(mechanism, &data).ok().and_then(
            |(user, password)| {
                self.ctx
                    .broker
                    .authenticate(mechanism, &user, &password, self.peer.ip())
                    .map_err(|e| tracing::warn!(conn = self.id, peer = %self.peer, %user, "stream login refused: {e}"))
                    .ok()
            },
        );
        match login {
            Some(user) => {
                self.user = Some(user);
                self.send(&reply(RESPONSE_CODE_OK));
                self.send(&Command::Tune {
                    frame_max: DEFAULT_FRAME_MAX,
                    heartbeat: DEFAULT_HEARTBEAT,
                });
            }
            None => {
                self.send(&reply(RESPONSE_CODE_AUTHENTICATION_FAILURE));
                self.done = true;
            }
        }
    }

    fn open(&mut self, correlation_id: u32, name: &str) {
        let user = self.user.as_ref().expect("authenticated");
        let mut info = ConnectionInfo::new(self.id, (self.peer, self.local), &user.name, name);
        info.auth_mechanism = "PLAIN";
        info.frame_max = self.frame_max;
        info.heartbeat = self.heartbeat.min(u16::MAX as u32) as u16;
        // Stream sessions get no AMQP deliveries: the outbox stays empty.
        let outbox = Outbox::new(1);
        match self
            .ctx
            .broker
            .open_vhost(user, name, outbox, Arc::new(info))
        {
            Ok((vh, _grants, _epoch)) => {
                self.vhost = Some(vh);
                self.attached = true;
                self.phase = Phase::Open;
                let host = self.local.ip().to_string();
                self.send(&Command::OpenResponse {
                    correlation_id,
                    code: RESPONSE_CODE_OK,
                    properties: Some(vec![
                        ("advertised_port".into(), self.advertised_port.to_string()),
                        ("advertised_host".into(), host),
                    ]),
                });
            }
            Err(e) => {
                tracing::warn!(conn = self.id, vhost = name, "stream open refused: {e}");
                self.send(&Command::OpenResponse {
                    correlation_id,
                    code: RESPONSE_CODE_VIRTUAL_HOST_ACCESS_FAILURE,
                    properties: None,
                });
                self.done = true;
            }
        }
    }

    /// A command of an open connection.
    fn command(&mut self, c: Command) {
        let conn = self.id;
        match c {
            Command::Create {
                correlation_id,
                stream,
                arguments,
            } => {
                let r = self
                    .vhost()
                    .try_with(|m| Ok(m.stream_create(conn, &stream, &arguments)))
                    .unwrap_or(Err(StreamRefusal::Internal));
                self.respond(SimpleResponseKey::Create, correlation_id, code(r));
            }
            Command::Delete {
                correlation_id,
                stream,
            } => {
                let r = self
                    .vhost()
                    .try_with(|m| Ok(m.stream_delete(conn, &stream)))
                    .unwrap_or(Err(StreamRefusal::Internal));
                if r.is_ok() {
                    self.stream_gone(&stream);
                }
                self.respond(SimpleResponseKey::Delete, correlation_id, code(r));
            }
            Command::Metadata {
                correlation_id,
                streams,
            } => {
                let exists: Vec<bool> = self
                    .vhost()
                    .with(|m| streams.iter().map(|s| m.stream_exists(s)).collect());
                let streams = streams
                    .into_iter()
                    .zip(exists)
                    .map(|(stream, ok)| StreamMetadata {
                        stream,
                        code: if ok {
                            RESPONSE_CODE_OK
                        } else {
                            RESPONSE_CODE_STREAM_DOES_NOT_EXIST
                        },
                        leader: if ok { 0 } else { 0xffff },
                        replicas: Vec::new(),
                    })
                    .collect();
                let brokers = vec![Broker {
                    reference: 0,
                    host: self.local.ip().to_string(),
                    port: self.advertised_port as u32,
                }];
                self.send(&Command::MetadataResponse {
                    correlation_id,
                    brokers,
                    streams,
                });
            }
            Command::DeclarePublisher {
                correlation_id,
                publisher_id,
                reference,
                stream,
            } => {
                let r = if self.publishers.contains_key(&publisher_id) {
                    Err(StreamRefusal::PreconditionFailed)
                } else {
                    self.vhost()
                        .with(|m| m.stream_may(conn, &stream, Perm::Write))
                };
                if r.is_ok() {
                    self.publishers.insert(
                        publisher_id,
                        Publisher {
                            stream: stream.as_str().into(),
                            reference: (!reference.is_empty()).then_some(reference),
                        },
                    );
                }
                self.respond(SimpleResponseKey::DeclarePublisher, correlation_id, code(r));
            }
            Command::DeletePublisher {
                correlation_id,
                publisher_id,
            } => {
                let c = match self.publishers.remove(&publisher_id) {
                    Some(_) => RESPONSE_CODE_OK,
                    None => RESPONSE_CODE_PUBLISHER_DOES_NOT_EXIST,
                };
                self.respond(SimpleResponseKey::DeletePublisher, correlation_id, c);
            }
            Command::Publish {
                publisher_id,
                messages,
            } => self.publish(publisher_id, messages),
            Command::QueryPublisherSequence {
                correlation_id,
                reference,
                stream,
            } => {
                let r = self
                    .vhost()
                    .with(|m| m.stream_writer_sequence(&stream, &reference));
                self.send(&Command::QueryPublisherSequenceResponse {
                    correlation_id,
                    code: code(r.as_ref().map(drop).map_err(Clone::clone)),
                    sequence: r.unwrap_or(0),
                });
            }
            Command::Subscribe {
                correlation_id,
                subscription_id,
                stream,
                offset,
                credit,
                ..
            } => {
                let r = if self.subscriptions.contains_key(&subscription_id) {
                    Err(RESPONSE_CODE_SUBSCRIPTION_ID_ALREADY_EXISTS)
                } else {
                    let wake = self.wake.clone();
                    self.vhost()
                        .with(|m| {
                            m.stream_may(conn, &stream, Perm::Read)?;
                            m.stream_subscribe(&stream, offset_spec(offset), &wake)
                        })
                        .map_err(|e| code(Err(e)))
                };
                match r {
                    Ok(cursor) => {
                        self.subscriptions.insert(
                            subscription_id,
                            Subscription {
                                stream: stream.as_str().into(),
                                cursor,
                                credit: credit as i16 as i32,
                            },
                        );
                        self.respond(
                            SimpleResponseKey::Subscribe,
                            correlation_id,
                            RESPONSE_CODE_OK,
                        );
                    }
                    Err(c) => self.respond(SimpleResponseKey::Subscribe, correlation_id, c),
                }
            }
            Command::Credit {
                subscription_id,
                credit,
            } => match self.subscriptions.get_mut(&subscription_id) {
                Some(s) => s.credit = s.credit.saturating_add(credit as i16 as i32),
                None => self.send(&Command::CreditResponse {
                    code: RESPONSE_CODE_SUBSCRIPTION_ID_DOES_NOT_EXIST,
                    subscription_id,
                }),
            },
            Command::Unsubscribe {
                correlation_id,
                subscription_id,
            } => {
                let c = match self.subscriptions.remove(&subscription_id) {
                    Some(_) => RESPONSE_CODE_OK,
                    None => RESPONSE_CODE_SUBSCRIPTION_ID_DOES_NOT_EXIST,
                };
                self.respond(SimpleResponseKey::Unsubscribe, correlation_id, c);
            }
            Command::StoreOffset {
                reference,
                stream,
                offset,
            } => {
                self.vhost().with(|m| {
                    if m.stream_may(conn, &stream, Perm::Read).is_ok() {
                        m.stream_store_offset(&stream, &reference, offset);
                    }
                });
            }
            Command::QueryOffset {
                correlation_id,
                reference,
                stream,
            } => {
                let r = self.vhost().with(|m| {
                    m.stream_may(conn, &stream, Perm::Read)?;
                    m.stream_query_offset(&stream, &reference)
                });
                let (c, offset) = match r {
                    Ok(Some(o)) => (RESPONSE_CODE_OK, o),
                    Ok(None) => (RESPONSE_CODE_NO_OFFSET, 0),
                    Err(e) => (code(Err(e)), 0),
                };
                self.send(&Command::QueryOffsetResponse {
                    correlation_id,
                    code: c,
                    offset,
                });
            }
            // No super streams: RabbitMQ's answer for a missing one.
            Command::Route { correlation_id, .. } => self.send(&Command::RouteResponse {
                correlation_id,
                code: RESPONSE_CODE_STREAM_DOES_NOT_EXIST,
                streams: Vec::new(),
            }),
            Command::Partitions { correlation_id, .. } => self.send(&Command::PartitionsResponse {
                correlation_id,
                code: RESPONSE_CODE_STREAM_DOES_NOT_EXIST,
                streams: Vec::new(),
            }),
            other => self.undecodable(&format!("{other:?} is not a client command here")),
        }
    }

    /// The connection is gone: detached from its vhost and counted as closed.
    fn detach(&mut self) {
        if std::mem::take(&mut self.attached) {
            let id = self.id;
            self.vhost().with(|m| m.close_connection(id));
            if let Some(user) = &self.user {
                user.usage.connection_closed();
            }
        }
        self.ctx.broker.connection_closed();
    }
}

/// The response code for a model answer.
fn code(r: Result<(), StreamRefusal>) -> u16 {
    match r {
        Ok(()) => RESPONSE_CODE_OK,
        Err(StreamRefusal::DoesNotExist) => RESPONSE_CODE_STREAM_DOES_NOT_EXIST,
        Err(StreamRefusal::AlreadyExists) => RESPONSE_CODE_STREAM_ALREADY_EXISTS,
        Err(StreamRefusal::AccessRefused) => RESPONSE_CODE_ACCESS_REFUSED,
        Err(StreamRefusal::PreconditionFailed) => RESPONSE_CODE_PRECONDITION_FAILED,
        Err(StreamRefusal::Internal) => RESPONSE_CODE_INTERNAL_ERROR,
    }
}

fn offset_spec(o: OffsetSpec) -> stream_args::OffsetSpec {
    match o {
        OffsetSpec::First => stream_args::OffsetSpec::First,
        OffsetSpec::Last => stream_args::OffsetSpec::Last,
        OffsetSpec::Next => stream_args::OffsetSpec::Next,
        OffsetSpec::Offset(n) => stream_args::OffsetSpec::Offset(n.min(i64::MAX as u64) as i64),
        OffsetSpec::Timestamp(ms) => stream_args::OffsetSpec::Timestamp(ms.max(0) as u64),
    }
}
