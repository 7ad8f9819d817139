//! Transactions on the wire (tx.select, tx.commit, tx.rollback), as RabbitMQ 3.10 answers
//! them (`rabbit_channel.erl`):
//!
//! - tx.select makes the channel transactional for good (again: select-ok); not on a
//!   channel in confirm mode, nor confirm.select after it (406 both ways);
//! - a transactional channel's publishes are checked and routed when they complete (404,
//!   403 as usual) and held here; its acks, nacks and rejects are checked at once and held
//!   by the model (`broker/tx.rs`);
//! - tx.commit stores the held publishes in one batch, sends their mandatory returns, has
//!   the model apply the held settlements, and answers commit-ok once every persistent
//!   message of the batch is durable (one group-commit round, waited for as confirms are);
//!   until then any other method on the channel but channel.close is 504, as RabbitMQ's
//!   "unexpected command while processing 'tx.commit'". A message that failed to store
//!   or sync makes the answer 406 "partial tx completion", as RabbitMQ's;
//! - tx.rollback drops the held publishes and makes the held settlements undone.
//!
//! A held publish keeps its body as received when a body frame is large (a `Bytes` slice
//! of the read buffer it came in, which it mostly fills); small pieces are copied into the
//! transaction's own buffer, so a transaction of small messages that arrived over many
//! reads does not keep every read buffer alive. A transaction holds at most
//! `Limits::tx_max_bytes` (`config::defaults::TX_MAX_BYTES`): the publish that would pass
//! it is refused with 406 and the channel closes, dropping the transaction. RabbitMQ has no
//! such limit (its memory alarm stops publishers instead); ours is a bound on what one
//! client can make the broker hold.

use std::ops::Range;

use bytes::Bytes;

use super::frames::Stop;
use super::publish::{requests, PendingPublish};
use super::Conn;
use crate::broker::confirms::ConfirmTicket;
use crate::broker::{ChannelMode, PublishRequest, TxRoute};
use crate::protocol::error::{AmqpError, ReplyCode};
use crate::protocol::method::{self, ids, server, Method};

/// Body frames at least this long are held as received; shorter ones are copied.
const SHARE_MIN: usize = 32 * 1024;
/// Bytes counted for each held publish besides its content (bookkeeping).
const HELD_OVERHEAD: u64 = 96;
/// Bytes counted for each queue a held publish was routed to.
const ROUTE_OVERHEAD: u64 = 16;

/// A transactional channel's state.
#[derive(Default)]
pub(super) struct Transaction {
    buffer: TxBuffer,
    /// tx.commit is stored and waits for these syncs before it is answered; `failed`: a
    /// message could not be stored.
    committing: Option<(Vec<(ConfirmTicket, u64)>, bool)>,
}

impl Transaction {
    /// A tx.commit waits for its syncs: the channel takes no other method.
    pub fn committing(&self) -> bool {
        self.committing.is_some()
    }
}

/// The publishes of the open transaction, in order.
#[derive(Default)]
struct TxBuffer {
    held: Vec<Held>,
    /// Copied bytes: exchange names, routing keys, content headers, short body frames.
    arena: Vec<u8>,
    /// The body pieces of every held publish, in order.
    pieces: Vec<Piece>,
    /// Bytes held, counted against `Limits::tx_max_bytes`.
    size: u64,
}

/// One held publish; ranges are into the buffer's `arena` and `pieces`.
struct Held {
    exchange: Range<usize>,
    routing_key: Range<usize>,
    header: Range<usize>,
    pieces: Range<usize>,
    persistent: bool,
    mandatory: bool,
    route: TxRoute,
}

enum Piece {
    Copied(Range<usize>),
    Shared(Bytes),
}

fn not_transactional() -> AmqpError {
    AmqpError::new(
        ReplyCode::PreconditionFailed,
        "channel is not transactional",
    )
}

impl TxBuffer {
    fn copy(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        start..self.arena.len()
    }

    /// Holds a complete publish routed to `route`, unless the buffer would pass `max`.
    fn hold(&mut self, p: &PendingPublish, route: TxRoute, max: u64) -> Result<(), AmqpError> {
        let content: usize = p.exchange().len()
            + p.routing_key().len()
            + p.header_payload().len()
            + p.body_frames().map(Bytes::len).sum::<usize>();
        let size = content as u64 + HELD_OVERHEAD + ROUTE_OVERHEAD * route.len() as u64;
        if self.size + size > max {
            return Err(AmqpError::new(
                ReplyCode::PreconditionFailed,
                format!(
                    "transaction too large: its uncommitted messages would take more than \
                     {max} bytes"
                ),
            ));
        }
        self.size += size;
        let exchange = self.copy(p.exchange().as_bytes());
        let routing_key = self.copy(p.routing_key().as_bytes());
        let header = self.copy(p.header_payload());
        let first = self.pieces.len();
        for frame in p.body_frames() {
            if frame.len() >= SHARE_MIN {
                self.pieces.push(Piece::Shared(frame.clone()));
                continue;
            }
            let r = self.copy(frame);
            let ours = self.pieces.len() > first;
            match self.pieces.last_mut() {
                // Consecutive short frames of one message make one piece.
                Some(Piece::Copied(prev)) if ours && prev.end == r.start => prev.end = r.end,
                _ => self.pieces.push(Piece::Copied(r)),
            }
        }
        self.held.push(Held {
            exchange,
            routing_key,
            header,
            pieces: first..self.pieces.len(),
            persistent: p.persistent(),
            mandatory: p.mandatory(),
            route,
        });
        Ok(())
    }

    fn str_at(&self, r: &Range<usize>) -> &str {
        std::str::from_utf8(&self.arena[r.clone()]).expect("copied from a str")
    }

    /// The held publishes as the model takes them; `slices` receives their body pieces.
    fn requests<'a>(&'a self, slices: &'a mut Vec<&'a [u8]>) -> Vec<PublishRequest<'a>> {
        slices.extend(self.pieces.iter().map(|piece| match piece {
            Piece::Copied(r) => &self.arena[r.clone()],
            Piece::Shared(b) => &b[..],
        }));
        let slices: &'a [&'a [u8]] = slices;
        self.held
            .iter()
            .map(|h| PublishRequest {
                exchange: self.str_at(&h.exchange),
                routing_key: self.str_at(&h.routing_key),
                header: &self.arena[h.header.clone()],
                persistent: h.persistent,
                headers_table: None, // routed already
                body: &slices[h.pieces.clone()],
            })
            .collect()
    }
}

impl Conn {
    pub(super) fn is_transactional(&self, channel: u16) -> bool {
        self.channels
            .get(&channel)
            .is_some_and(|ch| ch.tx.is_some())
    }

    pub(super) fn tx_class(&mut self, channel: u16, m: Method<'_>) -> Result<(), AmqpError> {
        let ch = self.channels.get_mut(&channel).expect("open");
        match m {
            Method::TxSelect => {
                if ch.confirm {
                    return Err(AmqpError::new(
                        ReplyCode::PreconditionFailed,
                        "cannot switch from confirm to tx mode",
                    ));
                }
                if ch.tx.is_none() {
                    ch.tx = Some(Box::default());
                    let key = (self.id, channel);
                    self.vhost()
                        .with(|m| m.set_channel_mode(key, ChannelMode::Tx));
                }
                method::write_empty(&mut self.wbuf, channel, ids::TX_SELECT_OK);
            }
            Method::TxCommit => self.tx_commit(channel)?,
            Method::TxRollback => {
                let tx = ch.tx.as_mut().ok_or_else(not_transactional)?;
                tx.buffer = TxBuffer::default();
                let key = (self.id, channel);
                self.vhost().with(|m| m.tx_rollback(key));
                method::write_empty(&mut self.wbuf, channel, ids::TX_ROLLBACK_OK);
            }
            _ => unreachable!("dispatched by class"),
        }
        Ok(())
    }

    /// tx.commit: the held publishes stored in one batch, their returns sent, the held
    /// settlements applied; commit-ok now if nothing needs a sync, else when it completes
    /// (`complete_commits`).
    fn tx_commit(&mut self, channel: u16) -> Result<(), AmqpError> {
        let key = (self.id, channel);
        let ch = self.channels.get_mut(&channel).expect("open");
        let tx = ch.tx.as_mut().ok_or_else(not_transactional)?;
        let mut buffer = std::mem::take(&mut tx.buffer);
        let routes: Vec<TxRoute> = buffer
            .held
            .iter_mut()
            .map(|h| std::mem::take(&mut h.route))
            .collect();
        let mut slices = Vec::with_capacity(buffer.pieces.len());
        let requests = buffer.requests(&mut slices);
        let published = self
            .vhost()
            .try_with(|m| m.tx_commit(key, &requests, &routes))?;
        // (storage ticket, replication ticket): commit-ok waits for both, as a confirm
        // does: a message for a replicated quorum queue is committed once its group has it.
        let mut tickets: Vec<(ConfirmTicket, u64)> = Vec::new();
        let mut failed = false;
        for ((h, req), p) in buffer.held.iter().zip(&requests).zip(&published) {
            if h.mandatory && !p.routed {
                let code = ReplyCode::NoRoute;
                let (x, rk) = (req.exchange, req.routing_key);
                server::basic_return(&mut self.wbuf, channel, code.code(), code.name(), x, rk);
                self.write_content(channel, req.header, &req.body.concat());
            }
            if !tickets.contains(&(p.ticket, p.replicated)) {
                tickets.push((p.ticket, p.replicated));
            }
            failed |= p.failed;
        }
        let tx = self.channel_tx(channel);
        tx.committing = Some((tickets, failed));
        self.pending_confirms += 1;
        self.complete_commits();
        Ok(())
    }

    fn channel_tx(&mut self, channel: u16) -> &mut Transaction {
        self.channels
            .get_mut(&channel)
            .and_then(|ch| ch.tx.as_deref_mut())
            .expect("a transactional channel")
    }

    /// Answers every tx.commit whose syncs have completed: commit-ok, or 406 "partial tx
    /// completion" if a message of it failed to store or sync.
    pub(super) fn complete_commits(&mut self) {
        let tracker = &self.ctx.confirms;
        let mut done: Vec<(u16, bool)> = Vec::new();
        for (&channel, ch) in self.channels.iter_mut() {
            let Some(tx) = ch.tx.as_mut() else { continue };
            let Some((tickets, failed)) = &tx.committing else {
                continue;
            };
            let (mut ok, mut pending) = (!failed, false);
            for &(t, replicated) in tickets {
                match tracker.status_with(t, replicated) {
                    None => pending = true,
                    Some(durable) => ok &= durable,
                }
            }
            if !pending {
                tx.committing = None;
                done.push((channel, ok));
            }
        }
        for (channel, ok) in done {
            self.pending_confirms -= 1;
            if ok {
                method::write_empty(&mut self.wbuf, channel, ids::TX_COMMIT_OK);
            } else {
                let e = AmqpError::new(ReplyCode::PreconditionFailed, "partial tx completion");
                self.channel_error(channel, e.with_method(ids::TX_COMMIT));
            }
        }
    }

    /// A method other than channel.close while tx.commit waits for its syncs: 504, as
    /// RabbitMQ answers. A method with content is refused once its content is in.
    pub(super) fn while_committing(
        &mut self,
        channel: u16,
        payload: &Bytes,
        m: Method<'_>,
    ) -> Result<(), AmqpError> {
        let e = AmqpError::new(
            ReplyCode::ChannelError,
            "unexpected command while processing 'tx.commit'",
        );
        if matches!(
            m,
            Method::BasicPublish { .. } | Method::ServerOnly { content: true }
        ) {
            let p = PendingPublish::refused(payload, e);
            self.channels.get_mut(&channel).expect("open").phase =
                super::channel::ChannelPhase::Content(Box::new(p));
            return Ok(());
        }
        Err(e)
    }

    /// basic.ack / nack / reject: settled now, or held by the open transaction.
    pub(super) fn settle(
        &mut self,
        channel: u16,
        tag: u64,
        multiple: bool,
        ack: bool,
        requeue: bool,
    ) -> Result<(), AmqpError> {
        let key = (self.id, channel);
        if self.is_transactional(channel) {
            self.vhost()
                .with(|m| m.tx_settle(key, tag, multiple, ack, requeue))?;
        } else {
            self.vhost()
                .try_with(|m| m.settle(key, tag, multiple, ack, requeue))?;
        }
        Ok(())
    }

    /// Takes the publishes of transactional channels out of `ready`: routed in one batch
    /// and held by their transactions (or refused). Returns the others.
    pub(super) fn hold_publishes(
        &mut self,
        ready: Vec<(u16, PendingPublish)>,
    ) -> Vec<(u16, PendingPublish)> {
        let (held, rest): (Vec<_>, Vec<_>) = ready
            .into_iter()
            .partition(|(c, _)| self.is_transactional(*c));
        let mut slices = Vec::new();
        let routes = {
            let requests = requests(&held, &mut slices);
            self.vhost().with(|m| m.tx_route(&requests))
        };
        let max = self.ctx.limits.tx_max_bytes;
        for ((channel, p), route) in held.iter().zip(routes) {
            let Some(ch) = self.channels.get_mut(channel).filter(|c| !c.is_closing()) else {
                continue; // closed by an earlier error in this batch
            };
            let tx = ch.tx.as_mut().expect("transactional");
            let outcome = route
                .map_err(AmqpError::from)
                .and_then(|route| tx.buffer.hold(p, route, max));
            if let Err(e) = outcome {
                let e = e.with_method(ids::BASIC_PUBLISH);
                if e.code.is_hard() {
                    self.fail(Stop::Error(e));
                    return Vec::new();
                }
                self.channel_error(*channel, e);
            }
        }
        rest
    }
}
