//! Direct reply-to, as RabbitMQ 3.10 does it: a channel consumes (no-ack) from the
//! pseudo-queue `amq.rabbitmq.reply-to`; its publishes with `reply-to` set to that name
//! carry instead the channel's own reply name, `amq.rabbitmq.reply-to.<token>`; a message
//! published to the default exchange with that name as routing key goes straight to the
//! channel's reply consumer — no queue, nothing stored. Replies to a requester that is
//! gone are dropped.

use std::sync::Arc;

use super::error::BrokerError;
use super::message;
use super::outbox::Outgoing;
use super::publish::PublishRequest;
use super::vhost::VHost;
use super::ChannelKey;

/// The pseudo-queue a requester consumes from, and the `reply-to` value it publishes.
pub const REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// Prefix of the per-channel reply names.
pub const REPLY_PREFIX: &str = "amq.rabbitmq.reply-to.";

/// A channel's reply consumer.
#[derive(Debug, Clone)]
pub(super) struct ReplyConsumer {
    pub tag: Arc<str>,
    /// `amq.rabbitmq.reply-to.<token>`, the same for every request of the channel.
    pub name: Arc<str>,
}

fn precondition(text: &str) -> BrokerError {
    BrokerError::PreconditionFailed(text.into())
}

impl VHost {
    /// basic.consume on `amq.rabbitmq.reply-to`: the channel's reply consumer (no-ack
    /// only, one per channel). Returns its tag.
    pub(super) fn consume_reply(
        &mut self,
        key: ChannelKey,
        tag: &str,
        no_ack: bool,
    ) -> Result<Arc<str>, BrokerError> {
        if !no_ack {
            return Err(precondition("reply consumer cannot acknowledge"));
        }
        let tag: Arc<str> = if tag.is_empty() {
            self.generated_name("amq.ctag-").into()
        } else {
            tag.into()
        };
        let name: Arc<str> = format!("{REPLY_PREFIX}{}", self.generated_name("")).into();
        let ch = self
            .channels
            .get_mut(&key)
            .ok_or(BrokerError::ChannelNotOpen)?;
        if ch.reply.is_some() {
            return Err(precondition("reply consumer already set"));
        }
        ch.reply = Some(ReplyConsumer {
            tag: tag.clone(),
            name: name.clone(),
        });
        self.reply_names.insert(name, key);
        Ok(tag)
    }

    /// Cancels the channel's reply consumer if `tag` names it; true if it did.
    pub(super) fn cancel_reply(&mut self, key: ChannelKey, tag: &str) -> bool {
        let Some(ch) = self.channels.get_mut(&key) else {
            return false;
        };
        if ch.reply.as_ref().is_none_or(|r| &*r.tag != tag) {
            return false;
        }
        if let Some(r) = ch.reply.take() {
            self.reply_names.remove(&r.name);
        }
        true
    }

    /// The reply name a publish with `reply-to: amq.rabbitmq.reply-to` on this channel
    /// carries instead; `None` if the channel has no reply consumer (RabbitMQ: 406).
    pub fn reply_name(&self, key: ChannelKey) -> Option<Arc<str>> {
        Some(self.channels.get(&key)?.reply.as_ref()?.name.clone())
    }

    /// queue.declare of the pseudo-queue or of a live reply name: declare-ok with no
    /// messages and one consumer, as RabbitMQ answers. `None` if `name` is neither.
    pub(super) fn reply_queue_info(&self, name: &str) -> Option<Result<Arc<str>, BrokerError>> {
        if name == REPLY_TO {
            return Some(Ok(name.into()));
        }
        if !name.starts_with(REPLY_PREFIX) {
            return None;
        }
        Some(match self.reply_names.get_key_value(name) {
            Some((n, _)) => Ok(n.clone()),
            None => Err(self.not_found("queue", name)),
        })
    }

    /// A publish to the default exchange whose routing key is a reply name: delivered to
    /// that channel's reply consumer if it is still there (never stored). The publish
    /// counts as unrouted either way: RabbitMQ returns a mandatory reply even when it
    /// delivers it.
    pub(super) fn deliver_reply(&mut self, m: &PublishRequest<'_>) {
        let Some(&key) = self.reply_names.get(m.routing_key) else {
            return;
        };
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        let Some(reply) = ch.reply.as_ref() else {
            return;
        };
        let consumer_tag = reply.tag.clone();
        let mut prefix = [0u8; message::MAX_PREFIX];
        let n = message::encode_prefix(&mut prefix, "", m.routing_key, m.header.len());
        let body_len: usize = m.body.iter().map(|b| b.len()).sum();
        let mut payload = Vec::with_capacity(n + m.header.len() + body_len);
        payload.extend_from_slice(&prefix[..n]);
        payload.extend_from_slice(m.header);
        for part in m.body {
            payload.extend_from_slice(part);
        }
        let delivery_tag = ch.next_delivery(None);
        ch.outbox.push(Outgoing::Deliver {
            channel: key.1,
            consumer_tag,
            delivery_tag,
            redelivered: false,
            payload: payload.into(),
        });
        self.stats.delivered(1);
    }
}
