//! The connection's read/write loop: one `select!` over reading (unless backpressure or
//! an alarm stops it), writing what is buffered, taking deliveries from the outbox,
//! sending confirms as syncs complete, heartbeats and handshake deadlines, and shutdown.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::frames::Stop;
use super::leader_get;
use super::output;
use super::Conn;
use crate::broker::flow::{self, FlowGate, FlowPause};
use crate::protocol::error::{AmqpError, ReplyCode};
use crate::protocol::frame::{self, PROTOCOL_HEADER};
use crate::protocol::method::server;

/// Stop reading while this much output waits to be written.
const WRITE_HIGH_WATER: usize = 1 << 20;
/// Take deliveries from the outbox only while less than this waits to be written: a deep
/// write buffer is latency for every message in it (at 1.5 M msg/s, 1 MiB of 16-byte
/// deliveries is 10 ms).
pub(super) const DELIVERY_HIGH_WATER: usize = 128 * 1024;
const READ_CHUNK: usize = 64 * 1024;

/// A byte stream a connection is served over, and how it splits into a read half and a
/// write half that the loop's `select!` can use at once. Plain TCP borrows its two
/// halves for free (`TcpStream::split`); a stream that cannot (TLS: one state machine for
/// both directions) shares itself between the halves with `tokio::io::split`.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {
    type Read<'a>: AsyncRead + Unpin + Send
    where
        Self: 'a;
    type Write<'a>: AsyncWrite + Unpin + Send
    where
        Self: 'a;
    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>);
}

impl Stream for TcpStream {
    type Read<'a> = tokio::net::tcp::ReadHalf<'a>;
    type Write<'a> = tokio::net::tcp::WriteHalf<'a>;
    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        self.split()
    }
}

impl Conn {
    pub(super) async fn run<S: Stream>(&mut self, mut stream: S) -> std::io::Result<()> {
        let started = Instant::now();
        let deadline = self.ctx.limits.handshake_timeout;
        // Protocol header.
        let mut header = [0u8; 8];
        match tokio::time::timeout(deadline, stream.read_exact(&mut header)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        // 0-9's header ("AMQP" 1 1 0 9) is served as 0-9-1, as RabbitMQ does.
        if &header != PROTOCOL_HEADER && &header != b"AMQP\x01\x01\x00\x09" {
            // Spec: answer with the header we speak, then close.
            stream.write_all(PROTOCOL_HEADER).await?;
            return Ok(());
        }
        self.send_start();
        let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
        let mut sync_rx = self.ctx.confirms.subscribe();
        let mut replicated_rx = self.ctx.confirms.subscribe_replicated();
        let mut last_read = Instant::now();
        let mut last_write = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut alarm_rx = self.ctx.alarms.subscribe();
        let mut shutdown_rx = self.ctx.shutdown.clone();
        let (mut rd, mut wr) = stream.halves();
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
            let can_read = self.pending_output() < WRITE_HIGH_WATER
                && !self.close_after_flush
                && !blocked
                && self.flow.is_none()
                && self.pending_get.is_none();
            let flow = self
                .flow
                .as_ref()
                .map(|(p, since)| (p.gate.clone(), p.epoch, *since + flow::MAX_PAUSE));
            tokio::select! {
                r = rd.read_buf(&mut rbuf), if can_read => {
                    match r {
                        Ok(0) => return Ok(()),
                        Ok(n) => {
                            if let Some(info) = &self.info {
                                info.received(n);
                            }
                        }
                        // A TLS client that hangs up without close_notify (pika, after
                        // close-ok): a hang-up like any other; the AMQP close said enough.
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                        Err(e) => return Err(e),
                    }
                    last_read = Instant::now();
                    self.process_all(&mut rbuf);
                    // Grown after parsing, so a regrowth copies only the partial frame
                    // left at the end (the frames split off may still hold the old
                    // allocation), not the whole buffer.
                    if rbuf.capacity() - rbuf.len() < 4096 {
                        rbuf.reserve(READ_CHUNK);
                    }
                    self.pump_deliveries();
                    self.flush_confirms();
                }
                w = output::write_some(&mut wr, &self.out_chunks, &self.wbuf, || self.outbox.note_socket_full()), if self.pending_output() > 0 => {
                    let n = w?;
                    if let Some(info) = &self.info {
                        info.sent(n);
                    }
                    self.out_chunks.advance(&mut self.wbuf, n);
                    last_write = Instant::now();
                    self.pump_deliveries();
                }
                _ = self.outbox.notify.notified(), if self.pending_output() < DELIVERY_HIGH_WATER => {
                    self.drain_outbox();
                }
                grant = leader_get::leader_answer(self.pending_get.as_mut()), if self.pending_get.is_some() => {
                    self.finish_leader_get(grant);
                    self.process_all(&mut rbuf);
                    self.pump_deliveries();
                    self.flush_confirms();
                }
                _ = flow_lifted(flow.as_ref()), if flow.is_some() => {
                    self.leave_flow();
                }
                _ = alarm_rx.changed() => {}
                r = shutdown_rx.changed(), if !self.phase.is_closing() => {
                    if r.is_err() || *shutdown_rx.borrow() {
                        self.shut_down();
                    }
                }
                r = sync_rx.changed(), if self.pending_confirms > 0 => {
                    if r.is_ok() {
                        self.flush_confirms();
                    }
                }
                r = replicated_rx.changed(), if self.pending_confirms > 0 => {
                    if r.is_ok() {
                        self.flush_confirms();
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if !self.phase.is_open() && !self.phase.is_closing() && !self.deaf && now - started > deadline {
                        return Ok(()); // Handshake never finished.
                    }
                    if self.hang_up_at.is_some_and(|t| now >= t) && self.pending_output() == 0 {
                        return Ok(());
                    }
                    if self.heartbeat > 0 {
                        let hb = Duration::from_secs(self.heartbeat as u64);
                        if now - last_read > hb * 2 && !blocked {
                            // Two missed heartbeats: the peer is gone. (Not judged while we
                            // are the ones not reading.)
                            tracing::info!(conn = self.id, peer = %self.peer, "missed heartbeats: closing");
                            return Ok(());
                        }
                        if now - last_write >= hb / 2 && self.pending_output() == 0 {
                            frame::write_heartbeat(&mut self.wbuf);
                        }
                    }
                }
            }
            if self.close_after_flush && self.pending_output() == 0 {
                let _ = wr.shutdown().await;
                return Ok(());
            }
        }
    }

    /// A queue this connection published to is in flow: stop reading until it drains.
    pub(super) fn enter_flow(&mut self, pause: FlowPause) {
        if let Some(info) = &self.info {
            info.in_flow();
        }
        if !std::mem::replace(&mut self.flow_logged, true) {
            tracing::info!(conn = self.id, peer = %self.peer, queue = %pause.queue,
                "publisher flow control: the queue's consumers are behind, pausing reads until it drains");
        }
        self.flow = Some((pause, Instant::now()));
    }

    fn leave_flow(&mut self) {
        if self.flow.take().is_some() {
            if let Some(info) = &self.info {
                info.in_flow();
            }
        }
    }

    /// The broker is stopping: connection.close 320 to an open connection (then wait for
    /// close-ok as usual); a connection still in its handshake is just closed.
    fn shut_down(&mut self) {
        if self.phase.is_open() {
            self.fail(Stop::Error(AmqpError::new(
                ReplyCode::ConnectionForced,
                "broker shutdown",
            )));
        } else {
            self.close_after_flush = true;
        }
    }
}

/// Resolves when a paused connection may read again: its queue's gate opened, or the
/// pause's deadline passed.
async fn flow_lifted(flow: Option<&(std::sync::Arc<FlowGate>, u64, Instant)>) {
    match flow {
        Some((gate, epoch, deadline)) => {
            let deadline = tokio::time::Instant::from_std(*deadline);
            let _ = tokio::time::timeout_at(deadline, gate.released(*epoch)).await;
        }
        None => std::future::pending().await,
    }
}
