//! Output to the client besides replies: deliveries and cancels taken from the
//! connection's outbox, content frames, and publisher confirms (and tx.commit-oks) as syncs
//! complete.

use super::frames::Stop;
use super::io::DELIVERY_HIGH_WATER;
use super::output::SPLICE_MIN;
use super::Conn;
use crate::broker::message;
use crate::broker::outbox::Outgoing;
use crate::protocol::error::{AmqpError, ReplyCode};
use crate::protocol::frame::{self, FRAME_BODY, FRAME_HEADER};
use crate::protocol::method::server;
use bytes::Bytes;

impl Conn {
    /// Writes a content header and the body split into frames of at most frame_max.
    pub(super) fn write_content(&mut self, channel: u16, header: &[u8], body: &[u8]) {
        frame::write(&mut self.wbuf, FRAME_HEADER, channel, header);
        let chunk = self.body_frame_max();
        for part in body.chunks(chunk) {
            frame::write(&mut self.wbuf, FRAME_BODY, channel, part);
        }
    }

    /// `write_content` for a stored body: a large one is queued as it is, not copied.
    fn write_stored_content(&mut self, channel: u16, header: &[u8], body: &Bytes) {
        if body.len() < SPLICE_MIN {
            return self.write_content(channel, header, body);
        }
        frame::write(&mut self.wbuf, FRAME_HEADER, channel, header);
        let chunk = self.body_frame_max();
        self.out_chunks
            .body_frames(&mut self.wbuf, channel, body, chunk);
    }

    /// Most body bytes in one frame.
    fn body_frame_max(&self) -> usize {
        (self.frame_max as usize)
            .saturating_sub(frame::FRAME_OVERHEAD)
            .max(1)
    }

    /// Output waiting for the socket: queued bodies and the write buffer.
    pub(super) fn pending_output(&self) -> usize {
        self.out_chunks.len() + self.wbuf.len()
    }

    /// Moves deliveries into the write buffer if it is not already deep.
    pub(super) fn pump_deliveries(&mut self) {
        if self.pending_output() < DELIVERY_HIGH_WATER {
            self.drain_outbox();
        }
    }

    fn channel_live(&self, channel: u16) -> bool {
        self.channels.get(&channel).is_some_and(|c| !c.is_closing())
    }

    /// Moves deliveries from the outbox into the write buffer.
    pub(super) fn drain_outbox(&mut self) {
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
                    if !self.channel_live(channel) {
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
                    self.write_stored_content(channel, &msg.header, &msg.body);
                }
                Outgoing::Cancel {
                    channel,
                    consumer_tag,
                } => {
                    // Only clients that asked for consumer_cancel_notify hear of it.
                    if self.cancel_notify && self.channel_live(channel) {
                        server::cancel(&mut self.wbuf, channel, &consumer_tag);
                    }
                }
                Outgoing::Close { text } => {
                    if self.phase.is_open() {
                        let e = AmqpError::new(ReplyCode::ConnectionForced, text.to_string());
                        self.fail(Stop::Error(e));
                    }
                }
            }
        }
        self.drained = items;
        if was_full {
            if let Some(vh) = &self.vhost {
                let id = self.id;
                vh.with(|m| m.resume_connection(id));
            }
        }
    }

    /// Sends publisher confirms for every publish whose sync has completed, in tag order,
    /// coalescing runs as RabbitMQ does: a run of acks is one `multiple` ack (a lone ack
    /// is not `multiple`); nacks always go as `multiple`, everything below them being
    /// settled already (RabbitMQ's coalesce_and_send).
    pub(super) fn flush_confirms(&mut self) {
        if self.pending_confirms == 0 {
            return;
        }
        let tracker = self.ctx.confirms.clone();
        for (&channel, ch) in self.channels.iter_mut() {
            let mut run: Option<(u64, u64, bool)> = None; // (first, last, ack)
            let mut acked = 0;
            while let Some(&(tag, ticket, failed, replicated)) = ch.confirms.front() {
                let ok = match tracker.status_with(ticket, replicated) {
                    None => break,
                    Some(durable) => durable && !failed,
                };
                ch.confirms.pop_front();
                self.pending_confirms -= 1;
                acked += ok as u64;
                run = match run {
                    Some((first, _, a)) if a == ok => Some((first, tag, a)),
                    Some((first, last, a)) => {
                        server::confirm(&mut self.wbuf, channel, last, last > first || !a, a);
                        Some((tag, tag, ok))
                    }
                    None => Some((tag, tag, ok)),
                };
            }
            if let Some((first, last, a)) = run {
                server::confirm(&mut self.wbuf, channel, last, last > first || !a, a);
            }
            if let Some(counters) = &ch.counters {
                counters.confirmed(acked);
            }
        }
        // A tx.commit waiting for its syncs counts as a pending confirm.
        self.complete_commits();
    }
}
