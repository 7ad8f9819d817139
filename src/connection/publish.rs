//! Publishing: assembling a basic.publish with its content header and body frames (as
//! `Bytes` slices of the read buffer, no copy), then handing every complete publish of
//! one read to the model in one batch; returns and confirms follow in publish order.

use bytes::Bytes;

use super::channel::ChannelPhase;
use super::Conn;
use crate::broker::PublishRequest;
use crate::protocol::error::{AmqpError, ReplyCode};
use crate::protocol::frame::FRAME_HEADER;
use crate::protocol::method::{class, ids, server};
use crate::protocol::properties;

/// Body sizes beyond this are refused as malformed before any size check against the
/// configured maximum (no sane message is an exabyte).
const BODY_SIZE_SANITY: u64 = 1 << 40;
/// Most publishes handed to the model in one batch.
const PUBLISH_BATCH: usize = 256;

/// A basic.publish waiting for (or holding) its content.
pub(super) struct PendingPublish {
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

fn offset_in(whole: &Bytes, part: &str) -> (usize, usize) {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    (start, start + part.len())
}

impl PendingPublish {
    /// `exchange` and `routing_key` borrow from `method` (the method frame's payload).
    pub fn new(method: &Bytes, exchange: &str, routing_key: &str, mandatory: bool) -> Self {
        PendingPublish {
            method: method.clone(),
            exchange: offset_in(method, exchange),
            routing_key: offset_in(method, routing_key),
            mandatory,
            header: None,
            persistent: false,
            headers_table: None,
            body_size: 0,
            received: 0,
            body_first: None,
            body_rest: Vec::new(),
        }
    }

    fn exchange(&self) -> &str {
        std::str::from_utf8(&self.method[self.exchange.0..self.exchange.1]).unwrap_or("")
    }

    fn routing_key(&self) -> &str {
        std::str::from_utf8(&self.method[self.routing_key.0..self.routing_key.1]).unwrap_or("")
    }

    /// Takes the content header; checks its class and body size.
    fn header(&mut self, payload: Bytes, max: u64) -> Result<(), AmqpError> {
        if self.header.is_some() {
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
        self.persistent = h.persistent();
        self.body_size = h.body_size;
        self.headers_table = h.headers.map(|t| {
            let start = t.as_ptr() as usize - payload.as_ptr() as usize;
            (start, start + t.len())
        });
        self.header = Some(payload);
        Ok(())
    }

    /// Takes one body frame.
    fn body(&mut self, payload: Bytes) -> Result<(), AmqpError> {
        if self.header.is_none() {
            return Err(AmqpError::connection(
                ReplyCode::UnexpectedFrame,
                "body frame before content header",
            ));
        }
        self.received += payload.len() as u64;
        if self.received > self.body_size {
            return Err(AmqpError::connection(
                ReplyCode::FrameError,
                "body frames are longer than the content header declared",
            ));
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
        self.header.is_some() && self.received == self.body_size
    }

    fn body_parts(&self) -> impl Iterator<Item = &[u8]> {
        self.body_first
            .iter()
            .chain(self.body_rest.iter())
            .map(|b| &b[..])
    }
}

impl Conn {
    pub(super) fn content_frame(
        &mut self,
        channel: u16,
        kind: u8,
        payload: Bytes,
    ) -> Result<(), AmqpError> {
        let max = self.ctx.limits.max_message_size;
        let Some(ch) = self.channels.get_mut(&channel) else {
            return Err(AmqpError::connection(
                ReplyCode::ChannelError,
                format!("content frame on closed channel {channel}"),
            ));
        };
        let p = match &mut ch.phase {
            ChannelPhase::Closing => return Ok(()),
            ChannelPhase::Open => {
                return Err(AmqpError::connection(
                    ReplyCode::UnexpectedFrame,
                    "content frame without a preceding basic.publish",
                ))
            }
            ChannelPhase::Content(p) => p,
        };
        if kind == FRAME_HEADER {
            p.header(payload, max)?;
        } else {
            p.body(payload)?;
        }
        if p.complete() {
            let ChannelPhase::Content(p) = std::mem::replace(&mut ch.phase, ChannelPhase::Open)
            else {
                unreachable!("matched above")
            };
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
        let ready = std::mem::take(&mut self.ready);
        let mut body_parts: Vec<&[u8]> = Vec::with_capacity(ready.len());
        let mut body_ranges: Vec<(usize, usize)> = Vec::with_capacity(ready.len());
        for (_, p) in &ready {
            let start = body_parts.len();
            body_parts.extend(p.body_parts());
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
        let results = self.vhost().with(|m| m.publish_batch(&requests));
        for (((channel, p), result), req) in ready.iter().zip(results).zip(&requests) {
            if self.channels.get(channel).is_none_or(|c| c.is_closing()) {
                continue; // closed by an earlier error in this batch
            }
            let published = match result.map_err(AmqpError::from) {
                Err(e) if e.connection => {
                    self.fail(e.with_method(ids::BASIC_PUBLISH));
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
                ch.confirms
                    .push_back((tag, published.ticket, published.failed));
                self.pending_confirms += 1;
            }
        }
    }
}
