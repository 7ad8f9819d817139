//! Frames out of the read buffer, in order: heartbeats, channel-0 methods to the
//! handshake, channel methods to the channel state machine, content to publishing.
//!
//! Which frame is legal where follows RabbitMQ's reader (rabbit_reader.erl): a frame it
//! cannot delimit ends the connection (the stream has lost sync); a delimited frame of an
//! unknown type, or a heartbeat with a payload, is 501; a content frame or heartbeat where
//! only methods belong is 505; after connection.close only close and close-ok count.

use bytes::BytesMut;

use super::Conn;
use crate::protocol::error::{AmqpError, ReplyCode};
use crate::protocol::frame::{
    self, Frame, FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD,
};
use crate::protocol::method::{self, ids, Method};

/// True if a method frame's payload is basic.publish.
fn is_publish(payload: &[u8]) -> bool {
    payload.len() >= 4
        && u16::from_be_bytes([payload[0], payload[1]]) == ids::BASIC_PUBLISH.0
        && u16::from_be_bytes([payload[2], payload[3]]) == ids::BASIC_PUBLISH.1
}

/// Why `process` stopped early.
pub(super) enum Stop {
    /// A protocol error: answered by `Conn::fail`; later frames are still read.
    Error(AmqpError),
    /// The stream cannot be delimited any more: answered, then nothing more is read.
    LostSync(AmqpError),
    /// A method id no version of the protocol has: RabbitMQ's reader drops the connection
    /// without a word, and so do we.
    Drop,
}

impl From<AmqpError> for Stop {
    fn from(e: AmqpError) -> Self {
        Stop::Error(e)
    }
}

fn frame_error(text: impl Into<String>) -> AmqpError {
    AmqpError::new(ReplyCode::FrameError, text)
}

fn unexpected_frame(kind: u8, channel: u16) -> AmqpError {
    AmqpError::new(
        ReplyCode::UnexpectedFrame,
        format!("unexpected frame of type {kind} on channel {channel}"),
    )
}

impl Conn {
    /// Handles every complete frame in `rbuf`; errors are answered and reading goes on
    /// (in the phase the answer left the connection in), as RabbitMQ's reader does.
    pub(super) fn process_all(&mut self, rbuf: &mut BytesMut) {
        while let Err(stop) = self.process(rbuf) {
            // Terminates: every failure leaves the connection closing, deaf or hanging up,
            // where no frame can fail again except one that cannot be delimited (deaf).
            self.fail(stop);
        }
    }

    /// Handles complete frames in `rbuf` until one fails.
    fn process(&mut self, rbuf: &mut BytesMut) -> Result<(), Stop> {
        loop {
            if self.close_after_flush || self.deaf {
                rbuf.clear();
                return Ok(());
            }
            if self.pending_get.is_some() {
                // The frames after a get waiting for its leader wait for it (leader_get.rs).
                self.flush_publishes();
                return Ok(());
            }
            // Until tune-ok the frame limit is the spec's minimum, as in RabbitMQ.
            let limit = if self.phase.is_tuned() {
                self.frame_max
            } else {
                frame::FRAME_MIN_SIZE
            };
            let frame = match frame::parse(rbuf, limit) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    self.flush_publishes();
                    self.forget_closed_channels();
                    return Ok(());
                }
                Err(e) => {
                    rbuf.clear();
                    return Err(Stop::LostSync(e));
                }
            };
            if frame.kind == FRAME_METHOD && !is_publish(&frame.payload) {
                // Everything else is ordered after the publishes before it.
                self.flush_publishes();
            }
            self.handle_frame(frame)?;
        }
    }

    fn handle_frame(&mut self, f: Frame) -> Result<(), Stop> {
        if self.phase.is_closing() {
            self.closing_frame(&f);
            return Ok(());
        }
        if f.channel != 0 && !self.phase.is_open() {
            return Err(unexpected_frame(f.kind, f.channel).into());
        }
        match f.kind {
            FRAME_HEARTBEAT if !f.payload.is_empty() => {
                Err(frame_error("heartbeat frame with a payload").into())
            }
            FRAME_HEARTBEAT if f.channel == 0 => Ok(()),
            FRAME_HEARTBEAT => Err(unexpected_frame(f.kind, f.channel).into()),
            FRAME_METHOD if f.payload.len() < 4 => {
                Err(frame_error("method frame shorter than its ids").into())
            }
            FRAME_METHOD if f.channel == 0 => {
                let payload = f.payload.clone();
                let (ids, m) = decode(&payload)?;
                self.connection_method(ids, m)
                    .map_err(|e| Stop::Error(e.with_method(ids)))
            }
            FRAME_METHOD => {
                self.drain_outbox();
                let payload = f.payload.clone();
                let (ids, m) = decode(&payload)?;
                match self.channel_method(f.channel, &payload, m) {
                    Ok(()) => Ok(()),
                    Err(e) => Ok(self.channel_or_connection_error(f.channel, e.with_method(ids))?),
                }
            }
            // Shorter than class, weight and body size: not a content header at all.
            FRAME_HEADER if f.payload.len() < 12 => {
                Err(frame_error("content header frame too short").into())
            }
            FRAME_HEADER | FRAME_BODY if f.channel == 0 => Err(unexpected_frame(f.kind, 0).into()),
            FRAME_HEADER | FRAME_BODY => match self.content_frame(f.channel, f.kind, f.payload) {
                Ok(()) => Ok(()),
                Err(e) => Ok(self.channel_or_connection_error(f.channel, e)?),
            },
            kind => Err(frame_error(format!("unknown frame type {kind}")).into()),
        }
    }

    /// After connection.close (sent or received): close-ok ends the connection, a crossing
    /// close is acknowledged, everything else is ignored.
    fn closing_frame(&mut self, f: &Frame) {
        if f.kind != FRAME_METHOD || f.channel != 0 {
            return;
        }
        match method::decode(&f.payload) {
            Ok((_, Method::CloseOk)) => self.close_after_flush = true,
            Ok((_, Method::Close { .. })) => {
                method::write_empty(&mut self.wbuf, 0, ids::CONNECTION_CLOSE_OK)
            }
            _ => {}
        }
    }
}

/// Decodes a method frame; an id outside the protocol drops the connection.
fn decode(payload: &[u8]) -> Result<((u16, u16), Method<'_>), Stop> {
    match method::decode(payload) {
        Ok(m) => Ok(m),
        Err(e) if e.unanswerable => Err(Stop::Drop),
        Err(e) => Err(Stop::Error(e)),
    }
}
