//! Publishing: assembling a basic.publish with its content header and body frames (as
//! `Bytes` slices of the read buffer, no copy), then handing every complete publish of
//! one read to the model in one batch; returns and confirms follow in publish order.

use std::sync::Arc;

use bytes::Bytes;

use super::channel::ChannelPhase;
use super::frames::Stop;
use super::Conn;
use crate::broker::reply_to::REPLY_TO;
use crate::broker::PublishRequest;
use crate::protocol::error::{AmqpError, ReplyCode};
use crate::protocol::frame::FRAME_HEADER;
use crate::protocol::method::{class, ids, server};
use crate::protocol::properties;

/// Most publishes handed to the model in one batch.
const PUBLISH_BATCH: usize = 256;

/// A basic.publish waiting for (or holding) its content. Also used for a server-only
/// method that carries content (basic.deliver sent by a client): its content is taken,
/// then it is refused, as RabbitMQ does.
pub(super) struct PendingPublish {
    method: Bytes,
    method_id: (u16, u16),
    exchange: (usize, usize),
    routing_key: (usize, usize),
    mandatory: bool,
    /// Refused once its content is complete.
    pub(super) refusal: Option<AmqpError>,
    header: Option<Bytes>,
    persistent: bool,
    headers_table: Option<(usize, usize)>,
    body_size: u64,
    received: u64,
    /// More body than the header announced arrived: RabbitMQ never completes such a
    /// message (it waits for a size it has passed), and neither do we.
    overflowed: bool,
    /// The first body frame, and any further ones (most messages fit one frame, so the
    /// common case allocates nothing).
    body_first: Option<Bytes>,
    body_rest: Vec<Bytes>,
}

fn offset_in(whole: &Bytes, part: &str) -> (usize, usize) {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    (start, start + part.len())
}

/// The property checks RabbitMQ's channel makes at basic.publish (406 each).
/// `user` is None for a user who may claim any user_id (tag `impersonator`).
fn check_properties(
    h: &properties::ContentHeader<'_>,
    user: Option<&str>,
) -> Result<(), AmqpError> {
    let refuse = |text: String| Err(AmqpError::new(ReplyCode::PreconditionFailed, text));
    if let Some((claimed, user)) = user.and_then(|u| Some((h.user_id.filter(|c| *c != u)?, u))) {
        return refuse(format!(
            "user_id property set to '{claimed}' but authenticated user was '{user}'"
        ));
    }
    if let Some(e) = h.expiration {
        if let Err(why) = properties::parse_expiration(e) {
            return refuse(format!("invalid expiration '{e}': {why}"));
        }
    }
    if let Some(mode) = h.delivery_mode.filter(|m| !matches!(m, 1 | 2)) {
        return refuse(format!("invalid message: delivery_mode_unknown {mode}"));
    }
    Ok(())
}

/// Content frames out of order: 505, as RabbitMQ's command assembler answers.
fn unexpected_frame(text: &str) -> AmqpError {
    AmqpError::new(ReplyCode::UnexpectedFrame, text)
}

impl PendingPublish {
    /// `exchange` and `routing_key` borrow from `method` (the method frame's payload).
    pub fn new(method: &Bytes, exchange: &str, routing_key: &str, mandatory: bool) -> Self {
        PendingPublish {
            exchange: offset_in(method, exchange),
            routing_key: offset_in(method, routing_key),
            mandatory,
            ..Self::refused(method, None)
        }
    }

    /// A content-carrying method refused with `refusal` once its content is in.
    pub fn refused(method: &Bytes, refusal: impl Into<Option<AmqpError>>) -> Self {
        let id = |at: usize| u16::from_be_bytes([method[at], method[at + 1]]);
        PendingPublish {
            method: method.clone(),
            method_id: (id(0), id(2)),
            exchange: (0, 0),
            routing_key: (0, 0),
            mandatory: false,
            refusal: refusal.into(),
            header: None,
            persistent: false,
            headers_table: None,
            body_size: 0,
            received: 0,
            overflowed: false,
            body_first: None,
            body_rest: Vec::new(),
        }
    }

    /// The method whose content this is (named in errors about it).
    pub fn method_id(&self) -> (u16, u16) {
        self.method_id
    }

    pub fn exchange(&self) -> &str {
        std::str::from_utf8(&self.method[self.exchange.0..self.exchange.1]).unwrap_or("")
    }

    pub fn routing_key(&self) -> &str {
        std::str::from_utf8(&self.method[self.routing_key.0..self.routing_key.1]).unwrap_or("")
    }

    /// Takes the content header; checks its class, weight, body size and properties.
    fn header(
        &mut self,
        mut payload: Bytes,
        max: u64,
        user: Option<&str>,
        reply_name: impl FnOnce() -> Option<Arc<str>>,
    ) -> Result<(), AmqpError> {
        if self.header.is_some() {
            return Err(unexpected_frame(
                "expected content body, got a content header",
            ));
        }
        let class_and_weight = payload.get(..4).map(|b| {
            (
                u16::from_be_bytes([b[0], b[1]]),
                u16::from_be_bytes([b[2], b[3]]),
            )
        });
        if class_and_weight != Some((class::BASIC, 0)) {
            return Err(unexpected_frame(
                "expected a content header for class 60 with weight 0",
            ));
        }
        // RabbitMQ parses properties lazily and its channel crashes on bad ones: 541.
        let h = properties::decode(&payload)
            .map_err(|e| AmqpError::new(ReplyCode::InternalError, e.text).naming_no_method())?;
        if h.body_size > max {
            // RabbitMQ takes the whole body first, then refuses it; we refuse as soon as
            // the size is announced rather than buffer it (tests/fidelity/allow.toml).
            return Err(AmqpError::new(
                ReplyCode::PreconditionFailed,
                format!(
                    "message size {} is larger than configured max size {max}",
                    h.body_size
                ),
            ));
        }
        check_properties(&h, user)?;
        let offsets = |t: &[u8], whole: &[u8]| {
            let start = t.as_ptr() as usize - whole.as_ptr() as usize;
            (start, start + t.len())
        };
        self.persistent = h.persistent();
        self.body_size = h.body_size;
        self.headers_table = h.headers.map(|t| offsets(t, &payload));
        if h.reply_to == Some(REPLY_TO) {
            // Direct reply-to: the request carries the channel's own reply name.
            let name = reply_name().ok_or_else(|| {
                AmqpError::new(
                    ReplyCode::PreconditionFailed,
                    "fast reply consumer does not exist",
                )
            })?;
            let change = properties::Rewrite {
                reply_to: Some(&name),
                ..Default::default()
            };
            let rewritten = properties::rewrite(&payload, &change).ok_or_else(|| {
                AmqpError::new(ReplyCode::InternalError, "unreadable content header")
            })?;
            payload = Bytes::from(rewritten);
            self.headers_table = properties::decode(&payload)
                .ok()
                .and_then(|h| h.headers)
                .map(|t| offsets(t, &payload));
        }
        self.header = Some(payload);
        Ok(())
    }

    /// Takes one body frame.
    fn body(&mut self, payload: Bytes) -> Result<(), AmqpError> {
        if self.header.is_none() {
            return Err(unexpected_frame(
                "expected content header, got a content body",
            ));
        }
        self.received += payload.len() as u64;
        if self.received > self.body_size || self.overflowed {
            self.overflowed = true;
            self.body_first = None;
            self.body_rest = Vec::new();
            return Ok(());
        }
        if !payload.is_empty() {
            if self.body_first.is_none() {
                self.body_first = Some(payload);
            } else {
                self.body_rest.push(payload);
            }
        }
        Ok(())
    }

    fn complete(&self) -> bool {
        self.header.is_some() && self.received == self.body_size && !self.overflowed
    }

    /// The body frames as received (slices of the read buffers).
    pub fn body_frames(&self) -> impl Iterator<Item = &Bytes> {
        self.body_first.iter().chain(self.body_rest.iter())
    }

    /// The content header frame's payload (empty until it arrived).
    pub fn header_payload(&self) -> &[u8] {
        self.header.as_deref().unwrap_or_default()
    }

    pub fn persistent(&self) -> bool {
        self.persistent
    }

    pub fn mandatory(&self) -> bool {
        self.mandatory
    }

    /// The model's view of this publish; `body` is its body frames as slices.
    fn request<'a>(&'a self, body: &'a [&'a [u8]]) -> PublishRequest<'a> {
        let header = self.header_payload();
        PublishRequest {
            exchange: self.exchange(),
            routing_key: self.routing_key(),
            header,
            persistent: self.persistent,
            headers_table: self.headers_table.map(|(x, y)| &header[x..y]),
            body,
        }
    }
}

/// The model's view of complete publishes. The body frames of all of them go into
/// `parts` (one list, so the requests can borrow slices of it).
pub(super) fn requests<'a>(
    ready: &'a [(u16, PendingPublish)],
    parts: &'a mut Vec<&'a [u8]>,
) -> Vec<PublishRequest<'a>> {
    let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(ready.len());
    for (_, p) in ready {
        let start = parts.len();
        parts.extend(p.body_frames().map(|b| &b[..]));
        ranges.push((start, parts.len()));
    }
    let parts: &'a [&'a [u8]] = parts;
    ready
        .iter()
        .zip(ranges)
        .map(|((_, p), (a, b))| p.request(&parts[a..b]))
        .collect()
}

impl Conn {
    pub(super) fn content_frame(
        &mut self,
        channel: u16,
        kind: u8,
        payload: Bytes,
    ) -> Result<(), AmqpError> {
        let max = self.ctx.limits.max_message_size;
        let user = match &self.user {
            Some(u) if u.impersonator => None,
            Some(u) => Some(u.name.as_str()),
            None => Some(""),
        };
        let (vhost, key) = (&self.vhost, (self.id, channel));
        let reply_name = || vhost.as_ref()?.with(|m| m.reply_name(key));
        let Some(ch) = self.channels.get_mut(&channel) else {
            // RabbitMQ: a new channel expects a method first; no method is to blame.
            return Err(
                unexpected_frame("expected method frame, got a content frame").naming_no_method(),
            );
        };
        let p = match &mut ch.phase {
            ChannelPhase::Closing | ChannelPhase::ClosedByClient { .. } => return Ok(()),
            ChannelPhase::Open => {
                return Err(
                    unexpected_frame("expected method frame, got a content frame")
                        .naming_no_method(),
                )
            }
            ChannelPhase::Content(p) => p,
        };
        let taken = if kind == FRAME_HEADER {
            p.header(payload, max, user, reply_name)
        } else {
            p.body(payload)
        };
        taken.map_err(|e| e.with_method(p.method_id()))?;
        if p.complete() {
            let ChannelPhase::Content(p) = std::mem::replace(&mut ch.phase, ChannelPhase::Open)
            else {
                unreachable!("matched above")
            };
            if let Some(refusal) = p.refusal {
                return Err(refusal.with_method(p.method_id));
            }
            self.ready_held |= ch.tx.is_some();
            self.ready.push((channel, *p));
            if self.ready.len() >= PUBLISH_BATCH {
                self.flush_publishes();
            }
        }
        Ok(())
    }

    /// Hands every complete publish to the model in one batch (one lock, one write system
    /// call per queue), then sends returns and queues confirms in publish order.
    pub(super) fn flush_publishes(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let mut ready = std::mem::take(&mut self.ready);
        // Publishes on transactional channels are held, not stored (tx.rs).
        if std::mem::take(&mut self.ready_held) {
            ready = self.hold_publishes(ready);
            if ready.is_empty() {
                return;
            }
        }
        let mut body_parts: Vec<&[u8]> = Vec::with_capacity(ready.len());
        let requests = requests(&ready, &mut body_parts);
        let id = self.id;
        let (results, pause) = self
            .vhost()
            .with(|m| (m.publish_batch(&requests), m.take_flow_pause(id)));
        if let Some(pause) = pause {
            self.enter_flow(pause);
        }
        for (((channel, p), result), req) in ready.iter().zip(results).zip(&requests) {
            if self.channels.get(channel).is_none_or(|c| c.is_closing()) {
                continue; // closed by an earlier error in this batch
            }
            let published = match result.map_err(AmqpError::from) {
                Err(e) if e.code.is_hard() => {
                    self.fail(Stop::Error(e.with_method(ids::BASIC_PUBLISH)));
                    return;
                }
                Err(e) => {
                    self.channel_error(*channel, e.with_method(ids::BASIC_PUBLISH));
                    continue;
                }
                Ok(published) => published,
            };
            if p.mandatory && !published.routed {
                let code = ReplyCode::NoRoute;
                let (x, rk) = (p.exchange(), p.routing_key());
                server::basic_return(&mut self.wbuf, *channel, code.code(), code.name(), x, rk);
                let body_all = req.body.concat();
                self.write_content(*channel, req.header, &body_all);
            }
            let ch = self.channels.get_mut(channel).expect("open channel");
            if ch.confirm {
                let tag = ch.next_publish_tag;
                ch.next_publish_tag += 1;
                ch.confirms.push_back((
                    tag,
                    published.ticket,
                    published.failed,
                    published.replicated,
                ));
                self.pending_confirms += 1;
            }
        }
    }
}
