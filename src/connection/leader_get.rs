//! basic.get of a quorum queue on a member that does not lead it. Only the leader hands
//! messages out, so the broker asks it for one (`GetAnswer::AskLeader`) and the
//! connection waits for the answer before it handles the next frame: the client waits for
//! get-ok or get-empty anyway, and what it sent after the get (an ack of it, another get)
//! must find the get done. Reading stops meanwhile; nothing else on the connection is
//! held but its later frames, for the one round trip to the leader.

use super::Conn;
use crate::broker::replicated::{GetGrant, LeaderGetWait};
use crate::broker::Got;
use crate::protocol::error::{AmqpError, ReplyCode};
use crate::protocol::method::{ids, server};

/// A basic.get waiting for the queue's leader.
pub(super) struct PendingGet {
    pub channel: u16,
    pub queue: String,
    /// The broker's id of the queue when it was asked (a queue deleted and declared
    /// again meanwhile is another queue).
    pub queue_id: u64,
    pub no_ack: bool,
    pub wait: LeaderGetWait,
}

/// Resolves with the leader's answer to the pending get (never, while there is none).
pub(super) async fn leader_answer(pending: Option<&mut PendingGet>) -> Option<GetGrant> {
    match pending {
        Some(p) => p.wait.as_mut().await,
        None => std::future::pending().await,
    }
}

impl Conn {
    /// Answers the pending get with what the leader handed this node (`grant`).
    pub(super) fn finish_leader_get(&mut self, grant: Option<GetGrant>) {
        let Some(p) = self.pending_get.take() else {
            return;
        };
        let key = (self.id, p.channel);
        let queue = (p.queue.as_str(), p.queue_id);
        let answer = self
            .vhost()
            .try_with(|m| m.replica_get(key, queue, p.no_ack, grant))
            .map_err(AmqpError::from)
            .and_then(|got| self.write_get_answer(p.channel, got));
        if let Err(e) = answer {
            let e = e.with_method(ids::BASIC_GET);
            if let Err(e) = self.channel_or_connection_error(p.channel, e) {
                self.fail(e.into());
            }
        }
    }

    /// get-ok with the message, or get-empty.
    pub(super) fn write_get_answer(
        &mut self,
        channel: u16,
        got: Option<Got>,
    ) -> Result<(), AmqpError> {
        let Some(g) = got else {
            server::get_empty(&mut self.wbuf, channel);
            return Ok(());
        };
        let Some(msg) = crate::broker::message::decode(&g.payload) else {
            return Err(AmqpError::new(
                ReplyCode::InternalError,
                "stored message is malformed",
            ));
        };
        server::get_ok(
            &mut self.wbuf,
            channel,
            g.delivery_tag,
            g.redelivered,
            msg.exchange_str(),
            msg.routing_key_str(),
            g.message_count,
        );
        self.write_content(channel, &msg.header, &msg.body);
        Ok(())
    }
}
