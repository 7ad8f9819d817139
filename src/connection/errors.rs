//! Errors on the wire: the model's errors mapped to AMQP reply codes and scopes, and the
//! two ways an error ends something — channel.close or connection.close.

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
            BrokerError::NotFound(_) => AmqpError::channel(ReplyCode::NotFound, text),
            BrokerError::AccessRefused(_) => AmqpError::channel(ReplyCode::AccessRefused, text),
            BrokerError::ResourceLocked(_) => AmqpError::channel(ReplyCode::ResourceLocked, text),
            BrokerError::PreconditionFailed(_) => {
                AmqpError::channel(ReplyCode::PreconditionFailed, text)
            }
            BrokerError::Storage(_) => AmqpError::channel(ReplyCode::InternalError, text),
            BrokerError::NotAllowed(_) => AmqpError::connection(ReplyCode::NotAllowed, text),
            BrokerError::CommandInvalid(_) => {
                AmqpError::connection(ReplyCode::CommandInvalid, text)
            }
            BrokerError::ChannelNotOpen => AmqpError::connection(ReplyCode::ChannelError, text),
            BrokerError::Syntax(_) => AmqpError::connection(ReplyCode::SyntaxError, text),
        }
    }
}

impl Conn {
    /// A channel error closes the channel and the connection goes on; a connection error
    /// is returned to end the connection.
    pub(super) fn channel_or_connection_error(
        &mut self,
        channel: u16,
        e: AmqpError,
    ) -> Result<(), AmqpError> {
        if e.connection {
            Err(e)
        } else {
            self.channel_error(channel, e);
            Ok(())
        }
    }

    /// Sends connection.close for a connection error and stops reading.
    pub(super) fn fail(&mut self, e: AmqpError) {
        // Publishes completed before the bad frame are kept, as they would have been had
        // they arrived in an earlier read.
        self.flush_publishes();
        if self.phase == Phase::AwaitStartOk && e.code != ReplyCode::AccessRefused {
            // Before start-ok the client may not understand connection.close (spec 4.10.2).
            self.close_after_flush = true;
            return;
        }
        if e.code == ReplyCode::ConnectionForced {
            tracing::info!(conn = self.id, peer = %self.peer, "closing: {}", e.reply_text());
        } else {
            tracing::warn!(
                conn = self.id,
                peer = %self.peer,
                code = e.code.code(),
                class_id = e.method.0,
                method_id = e.method.1,
                "connection error: {}",
                e.reply_text()
            );
        }
        server::connection_close(&mut self.wbuf, e.code.code(), &e.reply_text(), e.method);
        let was_open = self.phase.is_open();
        self.phase = Phase::Closing;
        // Free model state now: the peer's channels are dead.
        let keys: Vec<u16> = self.channels.keys().copied().collect();
        if let Some(vh) = &self.vhost {
            let id = self.id;
            vh.with(|m| {
                for ch in keys {
                    m.close_channel((id, ch));
                }
            });
        }
        self.channels.clear();
        self.pending_confirms = 0;
        if e.code == ReplyCode::AccessRefused && !was_open {
            self.close_after_flush = true;
        }
    }

    pub(super) fn channel_error(&mut self, channel: u16, e: AmqpError) {
        tracing::warn!(
            conn = self.id,
            channel,
            code = e.code.code(),
            class_id = e.method.0,
            method_id = e.method.1,
            "channel error: {}",
            e.reply_text()
        );
        server::channel_close(
            &mut self.wbuf,
            channel,
            e.code.code(),
            &e.reply_text(),
            e.method,
        );
        if let Some(ch) = self.channels.get_mut(&channel) {
            self.pending_confirms -= ch.start_closing();
        }
        let key = (self.id, channel);
        self.vhost().with(|m| m.close_channel(key));
    }
}
