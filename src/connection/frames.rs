//! Frames out of the read buffer, in order: heartbeats, channel-0 methods to the
//! handshake, channel methods to the channel state machine, content to publishing.

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

impl Conn {
    /// Handles every complete frame in `rbuf`.
    pub(super) fn process(&mut self, rbuf: &mut BytesMut) -> Result<(), AmqpError> {
        loop {
            if self.close_after_flush {
                rbuf.clear();
                return Ok(());
            }
            // Until tune-ok the frame limit is our own maximum.
            let limit = if self.phase.is_open() {
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
        if self.phase.is_closing() {
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
        if !self.phase.is_open() {
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
                    Err(e) => self.channel_or_connection_error(f.channel, e.with_method(ids)),
                }
            }
            FRAME_HEADER | FRAME_BODY => match self.content_frame(f.channel, f.kind, f.payload) {
                Ok(()) => Ok(()),
                Err(e) => {
                    self.channel_or_connection_error(f.channel, e.with_method(ids::BASIC_PUBLISH))
                }
            },
            _ => Err(AmqpError::connection(
                ReplyCode::FrameError,
                "unknown frame type",
            )),
        }
    }
}
