//! The channel state machine and method dispatch, one function per method class.

use std::collections::VecDeque;

use bytes::Bytes;

use super::publish::PendingPublish;
use super::Conn;
use crate::broker::confirms::ConfirmTicket;
use crate::broker::{message, BindSpec, ConsumeSpec, ExchangeSpec, QueueSpec};
use crate::protocol::error::{AmqpError, ReplyCode};
use crate::protocol::method::{self, ids, server, Method};

/// Where a channel is between methods.
pub(super) enum ChannelPhase {
    /// Ready for any method.
    Open,
    /// A basic.publish arrived: its content header and body frames come next.
    Content(Box<PendingPublish>),
    /// We sent channel.close: everything but close / close-ok is discarded.
    Closing,
}

pub(super) struct Channel {
    pub phase: ChannelPhase,
    /// confirm.select was sent on this channel.
    pub confirm: bool,
    pub next_publish_tag: u64,
    /// (publish tag, covering sync, failed) in tag order.
    pub confirms: VecDeque<(u64, ConfirmTicket, bool)>,
}

impl Channel {
    fn new() -> Self {
        Channel {
            phase: ChannelPhase::Open,
            confirm: false,
            next_publish_tag: 1,
            confirms: VecDeque::new(),
        }
    }

    pub fn is_closing(&self) -> bool {
        matches!(self.phase, ChannelPhase::Closing)
    }

    /// Enters `Closing`: a partial publish and pending confirms are dropped. Returns how
    /// many confirms were dropped.
    pub fn start_closing(&mut self) -> usize {
        self.phase = ChannelPhase::Closing;
        let dropped = self.confirms.len();
        self.confirms.clear();
        dropped
    }
}

fn command_invalid(text: &str) -> AmqpError {
    AmqpError::connection(ReplyCode::CommandInvalid, text)
}

impl Conn {
    pub(super) fn channel_method(
        &mut self,
        channel: u16,
        payload: &Bytes,
        m: Method<'_>,
    ) -> Result<(), AmqpError> {
        if let Method::ChannelOpen = m {
            return self.channel_open(channel);
        }
        let Some(ch) = self.channels.get_mut(&channel) else {
            return Err(AmqpError::connection(
                ReplyCode::ChannelError,
                format!("expected 'channel.open' on channel {channel}"),
            ));
        };
        match ch.phase {
            ChannelPhase::Closing => {
                if let Method::ChannelCloseOk | Method::ChannelClose { .. } = m {
                    self.channels.remove(&channel);
                    if let Method::ChannelClose { .. } = m {
                        method::write_empty(&mut self.wbuf, channel, ids::CHANNEL_CLOSE_OK);
                    }
                }
                // Anything else is discarded until the client acknowledges the close.
                return Ok(());
            }
            ChannelPhase::Content(_) => {
                return Err(AmqpError::connection(
                    ReplyCode::UnexpectedFrame,
                    "method frame while content was expected",
                ));
            }
            ChannelPhase::Open => {}
        }
        match m {
            Method::ChannelClose { .. }
            | Method::ChannelCloseOk
            | Method::ChannelFlow { .. }
            | Method::ChannelFlowOk { .. } => self.channel_class(channel, m),
            Method::ExchangeDeclare { .. }
            | Method::ExchangeDelete { .. }
            | Method::ExchangeBind { .. }
            | Method::ExchangeUnbind { .. } => self.exchange_class(channel, m),
            Method::QueueDeclare { .. }
            | Method::QueueBind { .. }
            | Method::QueueUnbind { .. }
            | Method::QueuePurge { .. }
            | Method::QueueDelete { .. } => self.queue_class(channel, m),
            Method::ConfirmSelect { nowait } => {
                self.channels.get_mut(&channel).expect("open").confirm = true;
                if !nowait {
                    method::write_empty(&mut self.wbuf, channel, ids::CONFIRM_SELECT_OK);
                }
                Ok(())
            }
            Method::TxSelect | Method::TxCommit | Method::TxRollback => Err(AmqpError::channel(
                ReplyCode::NotImplemented,
                "transactions are not supported",
            )),
            m if m.is_basic() => self.basic_class(channel, payload, m),
            _ => Err(command_invalid(
                "connection-class method on a non-zero channel",
            )),
        }
    }

    fn channel_open(&mut self, channel: u16) -> Result<(), AmqpError> {
        if self.channels.contains_key(&channel) {
            return Err(AmqpError::connection(
                ReplyCode::ChannelError,
                format!("second 'channel.open' seen on channel {channel}"),
            ));
        }
        self.channels.insert(channel, Channel::new());
        let (key, outbox) = ((self.id, channel), self.outbox.clone());
        self.vhost().with(|m| m.open_channel(key, outbox));
        server::channel_open_ok(&mut self.wbuf, channel);
        Ok(())
    }

    fn channel_class(&mut self, channel: u16, m: Method<'_>) -> Result<(), AmqpError> {
        let key = (self.id, channel);
        match m {
            Method::ChannelClose { .. } => {
                self.vhost().with(|m| m.close_channel(key));
                // Deliveries queued before the close go out before close-ok.
                self.drain_outbox();
                if let Some(ch) = self.channels.remove(&channel) {
                    self.pending_confirms -= ch.confirms.len();
                }
                method::write_empty(&mut self.wbuf, channel, ids::CHANNEL_CLOSE_OK);
            }
            Method::ChannelFlow { active } => {
                self.vhost().with(|m| m.channel_flow(key, active));
                server::channel_flow_ok(&mut self.wbuf, channel, active);
            }
            // close-ok with nothing to acknowledge, and flow-ok: nothing to do.
            _ => {}
        }
        Ok(())
    }

    fn exchange_class(&mut self, channel: u16, m: Method<'_>) -> Result<(), AmqpError> {
        let conn = self.id;
        let (nowait, ok) = match m {
            Method::ExchangeDeclare {
                exchange,
                kind,
                passive,
                durable,
                auto_delete,
                internal,
                nowait,
                arguments,
            } => {
                let spec = ExchangeSpec {
                    name: exchange,
                    kind,
                    passive,
                    durable,
                    auto_delete,
                    internal,
                    args_raw: arguments,
                };
                self.vhost().try_with(|m| m.exchange_declare(&spec))?;
                (nowait, ids::EXCHANGE_DECLARE_OK)
            }
            Method::ExchangeDelete {
                exchange,
                if_unused,
                nowait,
            } => {
                self.vhost()
                    .try_with(|m| m.exchange_delete(exchange, if_unused))?;
                (nowait, ids::EXCHANGE_DELETE_OK)
            }
            Method::ExchangeBind {
                destination,
                source,
                routing_key,
                nowait,
                arguments,
            }
            | Method::ExchangeUnbind {
                destination,
                source,
                routing_key,
                nowait,
                arguments,
            } => {
                let bind = matches!(m, Method::ExchangeBind { .. });
                let spec = BindSpec {
                    source,
                    routing_key,
                    args_raw: arguments,
                    bind,
                };
                self.vhost()
                    .try_with(|m| m.exchange_bind(conn, destination, &spec))?;
                let ok = if bind {
                    ids::EXCHANGE_BIND_OK
                } else {
                    ids::EXCHANGE_UNBIND_OK
                };
                (nowait, ok)
            }
            _ => unreachable!("dispatched by class"),
        };
        if !nowait {
            method::write_empty(&mut self.wbuf, channel, ok);
        }
        Ok(())
    }

    fn queue_class(&mut self, channel: u16, m: Method<'_>) -> Result<(), AmqpError> {
        let conn = self.id;
        match m {
            Method::QueueDeclare {
                queue,
                passive,
                durable,
                exclusive,
                auto_delete,
                nowait,
                arguments,
            } => {
                let spec = QueueSpec {
                    name: queue,
                    passive,
                    durable,
                    exclusive,
                    auto_delete,
                    args_raw: arguments,
                };
                let info = self.vhost().try_with(|m| m.queue_declare(conn, &spec))?;
                if !nowait {
                    let (name, n, c) = (&info.name, info.messages, info.consumers);
                    server::queue_declare_ok(&mut self.wbuf, channel, name, n, c);
                }
            }
            Method::QueueBind {
                queue,
                exchange,
                routing_key,
                nowait,
                arguments,
            } => {
                let spec = BindSpec {
                    source: exchange,
                    routing_key,
                    args_raw: arguments,
                    bind: true,
                };
                self.vhost()
                    .try_with(|m| m.queue_bind(conn, queue, &spec))?;
                if !nowait {
                    method::write_empty(&mut self.wbuf, channel, ids::QUEUE_BIND_OK);
                }
            }
            Method::QueueUnbind {
                queue,
                exchange,
                routing_key,
                arguments,
            } => {
                let spec = BindSpec {
                    source: exchange,
                    routing_key,
                    args_raw: arguments,
                    bind: false,
                };
                self.vhost()
                    .try_with(|m| m.queue_bind(conn, queue, &spec))?;
                method::write_empty(&mut self.wbuf, channel, ids::QUEUE_UNBIND_OK);
            }
            Method::QueuePurge { queue, nowait } => {
                let n = self.vhost().try_with(|m| m.queue_purge(conn, queue))?;
                if !nowait {
                    server::message_count_ok(&mut self.wbuf, channel, ids::QUEUE_PURGE_OK, n);
                }
            }
            Method::QueueDelete {
                queue,
                if_unused,
                if_empty,
                nowait,
            } => {
                let n = self
                    .vhost()
                    .try_with(|m| m.queue_delete(conn, queue, if_unused, if_empty))?;
                self.drain_outbox();
                if !nowait {
                    server::message_count_ok(&mut self.wbuf, channel, ids::QUEUE_DELETE_OK, n);
                }
            }
            _ => unreachable!("dispatched by class"),
        }
        Ok(())
    }

    fn basic_class(
        &mut self,
        channel: u16,
        payload: &Bytes,
        m: Method<'_>,
    ) -> Result<(), AmqpError> {
        let key = (self.id, channel);
        match m {
            Method::BasicQos {
                prefetch_size,
                prefetch_count,
                global,
            } => {
                if prefetch_size != 0 {
                    return Err(AmqpError::channel(
                        ReplyCode::NotImplemented,
                        "prefetch_size!=0 is not supported",
                    ));
                }
                self.vhost().with(|m| m.qos(key, prefetch_count, global));
                method::write_empty(&mut self.wbuf, channel, ids::BASIC_QOS_OK);
            }
            Method::BasicConsume {
                queue,
                consumer_tag,
                no_ack,
                exclusive,
                nowait,
                arguments,
                ..
            } => {
                let spec = ConsumeSpec {
                    queue,
                    tag: consumer_tag,
                    no_ack,
                    exclusive,
                    args_raw: arguments,
                };
                self.basic_consume(channel, &spec, nowait)?;
            }
            Method::BasicCancel {
                consumer_tag,
                nowait,
            } => {
                self.vhost().with(|m| m.cancel(key, consumer_tag));
                self.drain_outbox();
                if !nowait {
                    server::cancel_ok(&mut self.wbuf, channel, consumer_tag);
                }
            }
            Method::BasicPublish {
                exchange,
                routing_key,
                mandatory,
                immediate,
            } => {
                if immediate {
                    return Err(AmqpError::connection(
                        ReplyCode::NotImplemented,
                        "immediate=true",
                    ));
                }
                self.published = true;
                let p = PendingPublish::new(payload, exchange, routing_key, mandatory);
                self.channels.get_mut(&channel).expect("open").phase =
                    ChannelPhase::Content(Box::new(p));
            }
            Method::BasicGet { queue, no_ack } => self.basic_get(channel, queue, no_ack)?,
            Method::BasicAck {
                delivery_tag,
                multiple,
            } => self
                .vhost()
                .try_with(|m| m.settle(key, delivery_tag, multiple, true, false))?,
            Method::BasicNack {
                delivery_tag,
                multiple,
                requeue,
            } => self
                .vhost()
                .try_with(|m| m.settle(key, delivery_tag, multiple, false, requeue))?,
            Method::BasicReject {
                delivery_tag,
                requeue,
            } => self
                .vhost()
                .try_with(|m| m.settle(key, delivery_tag, false, false, requeue))?,
            Method::BasicRecover { .. } => {
                self.vhost().try_with(|m| m.recover(key))?;
                method::write_empty(&mut self.wbuf, channel, ids::BASIC_RECOVER_OK);
            }
            Method::BasicRecoverAsync { .. } => self.vhost().try_with(|m| m.recover(key))?,
            _ => unreachable!("dispatched by class"),
        }
        Ok(())
    }

    /// basic.consume: consume-ok goes out before the first delivery, both from one lock.
    fn basic_consume(
        &mut self,
        channel: u16,
        spec: &ConsumeSpec<'_>,
        nowait: bool,
    ) -> Result<(), AmqpError> {
        let key = (self.id, channel);
        let wbuf = &mut self.wbuf;
        self.vhost.as_ref().expect("open").try_with(|m| {
            let tag = m.consume(key, spec)?;
            if !nowait {
                server::consume_ok(wbuf, channel, &tag);
            }
            if let Some(q) = m.consumer_queue(key, &tag) {
                m.dispatch(&q);
            }
            Ok(())
        })?;
        Ok(())
    }

    fn basic_get(&mut self, channel: u16, queue: &str, no_ack: bool) -> Result<(), AmqpError> {
        let key = (self.id, channel);
        let got = self.vhost().try_with(|m| m.get(key, queue, no_ack))?;
        let Some(g) = got else {
            server::get_empty(&mut self.wbuf, channel);
            return Ok(());
        };
        let Some(msg) = message::decode(&g.payload) else {
            return Err(AmqpError::channel(
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
