//! Errors on the wire: the model's errors mapped to AMQP reply codes and scopes, and the
//! two ways an error ends something — channel.close or connection.close.

use std::time::{Duration, Instant};

use super::frames::Stop;
use super::handshake::Phase;
use super::Conn;
use crate::broker::BrokerError;
use crate::protocol::error::{AmqpError, ReplyCode};
use crate::protocol::method::server;

/// The reply RabbitMQ gives for each kind of model error.
impl From<BrokerError> for AmqpError {
    fn from(e: BrokerError) -> Self {
        let text = e.text().to_owned();
        match e {
            BrokerError::NotFound(_) => AmqpError::new(ReplyCode::NotFound, text),
            BrokerError::AccessRefused(_) => AmqpError::new(ReplyCode::AccessRefused, text),
            BrokerError::ResourceLocked(_) => AmqpError::new(ReplyCode::ResourceLocked, text),
            BrokerError::PreconditionFailed(_) => {
                AmqpError::new(ReplyCode::PreconditionFailed, text)
            }
            BrokerError::Storage(_) => AmqpError::new(ReplyCode::InternalError, text),
            BrokerError::NotAllowed(_) => AmqpError::new(ReplyCode::NotAllowed, text),
            BrokerError::CommandInvalid(_) => AmqpError::new(ReplyCode::CommandInvalid, text),
            BrokerError::ChannelNotOpen => AmqpError::new(ReplyCode::ChannelError, text),
            BrokerError::Syntax(_) => AmqpError::new(ReplyCode::SyntaxError, text),
            BrokerError::NotImplemented(_) => AmqpError::new(ReplyCode::NotImplemented, text),
            BrokerError::Internal => AmqpError::new(ReplyCode::InternalError, text),
        }
    }
}

/// After a failed handshake: how long before we hang up (RabbitMQ waits 3 s; so that a
/// client cannot retry logins at full speed).
const SILENT_CLOSE_DELAY: Duration = Duration::from_secs(1);
/// After a frame we could not delimit: time for our connection.close to reach the client.
const LOST_SYNC_GRACE: Duration = Duration::from_secs(1);
/// Longest wait for the client to finish a close (RabbitMQ's CLOSING_TIMEOUT).
const CLOSING_LINGER: Duration = Duration::from_secs(30);

impl Conn {
    /// A channel error closes the channel and the connection goes on; a connection error
    /// is returned to end the connection.
    pub(super) fn channel_or_connection_error(
        &mut self,
        channel: u16,
        e: AmqpError,
    ) -> Result<(), AmqpError> {
        if e.code.is_hard() {
            Err(e)
        } else {
            self.channel_error(channel, e);
            Ok(())
        }
    }

    /// Answers a connection error the way RabbitMQ's reader does in each phase:
    /// - open, or awaiting connection.open: connection.close naming the method, then only
    ///   close-ok is awaited;
    /// - earlier in the handshake: no frame at all (the client may not understand one); the
    ///   socket closes after a pause, so failed logins cannot be retried at full speed;
    /// - already closing: nothing more is said.
    ///
    /// When the stream lost sync, or the method id was unknown, nothing more is read.
    pub(super) fn fail(&mut self, stop: Stop) {
        // Publishes completed before the bad frame are kept, as they would have been had
        // they arrived in an earlier read.
        self.flush_publishes();
        let (e, lost_sync) = match stop {
            Stop::Error(e) => (e, false),
            Stop::LostSync(e) => (e, true),
            Stop::Drop => {
                tracing::warn!(conn = self.id, peer = %self.peer, "unknown method id: dropping the connection");
                self.enter_closing();
                self.close_after_flush = true;
                return;
            }
        };
        match self.phase {
            Phase::Closing => {
                tracing::debug!(conn = self.id, "error while closing: {e}");
            }
            Phase::Open | Phase::AwaitOpen => {
                if e.code == ReplyCode::ConnectionForced {
                    tracing::info!(conn = self.id, peer = %self.peer, "closing: {}", e.reply_text());
                } else {
                    self.warn_error("connection", 0, &e);
                }
                server::connection_close(
                    &mut self.wbuf,
                    e.code.code(),
                    &e.reply_text(),
                    e.culprit(),
                );
                self.enter_closing();
            }
            Phase::AwaitStartOk | Phase::AwaitTuneOk => {
                tracing::warn!(conn = self.id, peer = %self.peer, "handshake failed: {e}");
                self.go_deaf(SILENT_CLOSE_DELAY);
            }
        }
        if lost_sync {
            self.go_deaf(LOST_SYNC_GRACE);
        }
    }

    /// Enters `Closing`: channels closed in the model (unacked messages requeued),
    /// exclusive queues deleted, and a deadline for the client to finish the close.
    pub(super) fn enter_closing(&mut self) {
        self.phase = Phase::Closing;
        self.channels.clear();
        self.pending_confirms = 0;
        self.detach_model();
        // RabbitMQ waits the heartbeat interval, at most 30 s, for the client's part.
        let linger = match self.heartbeat {
            hb @ 1..=29 => Duration::from_secs(hb as u64),
            _ => CLOSING_LINGER,
        };
        self.hang_up_within(linger);
    }

    /// Stops reading (input is discarded, so the peer does not see a reset before it has
    /// read our last frame) and hangs up after `delay`.
    fn go_deaf(&mut self, delay: Duration) {
        self.deaf = true;
        self.hang_up_within(delay);
    }

    fn hang_up_within(&mut self, delay: Duration) {
        let at = Instant::now() + delay;
        self.hang_up_at = Some(self.hang_up_at.map_or(at, |t| t.min(at)));
    }

    /// Logs an error we answer, with its reply code and the method it blames.
    fn warn_error(&self, scope: &str, channel: u16, e: &AmqpError) {
        let (class_id, method_id) = e.culprit();
        tracing::warn!(
            conn = self.id,
            peer = %self.peer,
            channel,
            code = e.code.code(),
            class_id,
            method_id,
            "{scope} error: {}",
            e.reply_text()
        );
    }

    pub(super) fn channel_error(&mut self, channel: u16, e: AmqpError) {
        self.warn_error("channel", channel, &e);
        server::channel_close(
            &mut self.wbuf,
            channel,
            e.code.code(),
            &e.reply_text(),
            e.culprit(),
        );
        if let Some(ch) = self.channels.get_mut(&channel) {
            self.pending_confirms -= ch.start_closing();
        }
        let key = (self.id, channel);
        self.vhost().with(|m| m.close_channel(key));
    }
}
