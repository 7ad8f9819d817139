//! Method frames: decoding what clients send, encoding what the server sends.
//!
//! Decoded methods borrow from the frame payload, so decoding allocates nothing.

use bytes::BytesMut;

use super::error::{AmqpError, ReplyCode};
use super::frame::{self, FRAME_METHOD};
use super::wire::{Reader, Writer};

/// Class ids.
pub mod class {
    pub const CONNECTION: u16 = 10;
    pub const CHANNEL: u16 = 20;
    pub const EXCHANGE: u16 = 40;
    pub const QUEUE: u16 = 50;
    pub const BASIC: u16 = 60;
    pub const CONFIRM: u16 = 85;
    pub const TX: u16 = 90;
}

/// A method sent by a client.
#[derive(Debug, Clone, PartialEq)]
pub enum Method<'a> {
    StartOk {
        client_properties: &'a [u8],
        mechanism: &'a str,
        response: &'a [u8],
        locale: &'a str,
    },
    SecureOk {
        response: &'a [u8],
    },
    TuneOk {
        channel_max: u16,
        frame_max: u32,
        heartbeat: u16,
    },
    Open {
        vhost: &'a str,
    },
    Close {
        code: u16,
        text: &'a str,
        class_id: u16,
        method_id: u16,
    },
    CloseOk,
    UpdateSecret,
    ChannelOpen,
    ChannelFlow {
        active: bool,
    },
    ChannelFlowOk {
        active: bool,
    },
    ChannelClose {
        code: u16,
        text: &'a str,
    },
    ChannelCloseOk,
    ExchangeDeclare {
        exchange: &'a str,
        kind: &'a str,
        passive: bool,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        nowait: bool,
        arguments: &'a [u8],
    },
    ExchangeDelete {
        exchange: &'a str,
        if_unused: bool,
        nowait: bool,
    },
    ExchangeBind {
        destination: &'a str,
        source: &'a str,
        routing_key: &'a str,
        nowait: bool,
        arguments: &'a [u8],
    },
    ExchangeUnbind {
        destination: &'a str,
        source: &'a str,
        routing_key: &'a str,
        nowait: bool,
        arguments: &'a [u8],
    },
    QueueDeclare {
        queue: &'a str,
        passive: bool,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        nowait: bool,
        arguments: &'a [u8],
    },
    QueueBind {
        queue: &'a str,
        exchange: &'a str,
        routing_key: &'a str,
        nowait: bool,
        arguments: &'a [u8],
    },
    QueuePurge {
        queue: &'a str,
        nowait: bool,
    },
    QueueDelete {
        queue: &'a str,
        if_unused: bool,
        if_empty: bool,
        nowait: bool,
    },
    QueueUnbind {
        queue: &'a str,
        exchange: &'a str,
        routing_key: &'a str,
        arguments: &'a [u8],
    },
    BasicQos {
        prefetch_size: u32,
        prefetch_count: u16,
        global: bool,
    },
    BasicConsume {
        queue: &'a str,
        consumer_tag: &'a str,
        no_local: bool,
        no_ack: bool,
        exclusive: bool,
        nowait: bool,
        arguments: &'a [u8],
    },
    BasicCancel {
        consumer_tag: &'a str,
        nowait: bool,
    },
    BasicPublish {
        exchange: &'a str,
        routing_key: &'a str,
        mandatory: bool,
        immediate: bool,
    },
    BasicGet {
        queue: &'a str,
        no_ack: bool,
    },
    BasicAck {
        delivery_tag: u64,
        multiple: bool,
    },
    BasicReject {
        delivery_tag: u64,
        requeue: bool,
    },
    BasicRecoverAsync {
        requeue: bool,
    },
    BasicRecover {
        requeue: bool,
    },
    BasicNack {
        delivery_tag: u64,
        multiple: bool,
        requeue: bool,
    },
    ConfirmSelect {
        nowait: bool,
    },
    TxSelect,
    TxCommit,
    TxRollback,
}

impl Method<'_> {
    /// True for methods that are followed by a content header and body.
    pub fn has_content(&self) -> bool {
        matches!(self, Method::BasicPublish { .. })
    }
}

/// Decodes a method frame's payload. Returns the (class, method) ids with the method so
/// errors can name it.
pub fn decode(payload: &[u8]) -> Result<((u16, u16), Method<'_>), AmqpError> {
    let mut r = Reader::new(payload);
    let class_id = r.u16()?;
    let method_id = r.u16()?;
    let ids = (class_id, method_id);
    decode_args(&mut r, class_id, method_id)
        .map(|m| (ids, m))
        .map_err(|e| e.with_method(class_id, method_id))
}

fn decode_args<'a>(
    r: &mut Reader<'a>,
    class_id: u16,
    method_id: u16,
) -> Result<Method<'a>, AmqpError> {
    use class::*;
    Ok(match (class_id, method_id) {
        (CONNECTION, 11) => Method::StartOk {
            client_properties: r.table_raw()?,
            mechanism: r.shortstr()?,
            response: r.longstr()?,
            locale: r.shortstr()?,
        },
        (CONNECTION, 21) => Method::SecureOk {
            response: r.longstr()?,
        },
        (CONNECTION, 31) => Method::TuneOk {
            channel_max: r.u16()?,
            frame_max: r.u32()?,
            heartbeat: r.u16()?,
        },
        (CONNECTION, 40) => {
            let vhost = r.shortstr()?;
            let _capabilities = r.shortstr()?;
            let _insist = r.bit()?;
            Method::Open { vhost }
        }
        (CONNECTION, 50) => Method::Close {
            code: r.u16()?,
            text: r.shortstr()?,
            class_id: r.u16()?,
            method_id: r.u16()?,
        },
        (CONNECTION, 51) => Method::CloseOk,
        (CONNECTION, 70) => Method::UpdateSecret,
        (CHANNEL, 10) => {
            let _out_of_band = r.shortstr()?;
            Method::ChannelOpen
        }
        (CHANNEL, 20) => Method::ChannelFlow { active: r.bit()? },
        (CHANNEL, 21) => Method::ChannelFlowOk { active: r.bit()? },
        (CHANNEL, 40) => {
            let code = r.u16()?;
            let text = r.shortstr()?;
            let _class = r.u16()?;
            let _method = r.u16()?;
            Method::ChannelClose { code, text }
        }
        (CHANNEL, 41) => Method::ChannelCloseOk,
        (EXCHANGE, 10) => {
            let _ticket = r.u16()?;
            Method::ExchangeDeclare {
                exchange: r.shortstr()?,
                kind: r.shortstr()?,
                passive: r.bit()?,
                durable: r.bit()?,
                auto_delete: r.bit()?,
                internal: r.bit()?,
                nowait: r.bit()?,
                arguments: r.table_raw()?,
            }
        }
        (EXCHANGE, 20) => {
            let _ticket = r.u16()?;
            Method::ExchangeDelete {
                exchange: r.shortstr()?,
                if_unused: r.bit()?,
                nowait: r.bit()?,
            }
        }
        (EXCHANGE, 30) | (EXCHANGE, 40) => {
            let _ticket = r.u16()?;
            let destination = r.shortstr()?;
            let source = r.shortstr()?;
            let routing_key = r.shortstr()?;
            let nowait = r.bit()?;
            let arguments = r.table_raw()?;
            if method_id == 30 {
                Method::ExchangeBind {
                    destination,
                    source,
                    routing_key,
                    nowait,
                    arguments,
                }
            } else {
                Method::ExchangeUnbind {
                    destination,
                    source,
                    routing_key,
                    nowait,
                    arguments,
                }
            }
        }
        (QUEUE, 10) => {
            let _ticket = r.u16()?;
            Method::QueueDeclare {
                queue: r.shortstr()?,
                passive: r.bit()?,
                durable: r.bit()?,
                exclusive: r.bit()?,
                auto_delete: r.bit()?,
                nowait: r.bit()?,
                arguments: r.table_raw()?,
            }
        }
        (QUEUE, 20) => {
            let _ticket = r.u16()?;
            Method::QueueBind {
                queue: r.shortstr()?,
                exchange: r.shortstr()?,
                routing_key: r.shortstr()?,
                nowait: r.bit()?,
                arguments: r.table_raw()?,
            }
        }
        (QUEUE, 30) => {
            let _ticket = r.u16()?;
            Method::QueuePurge {
                queue: r.shortstr()?,
                nowait: r.bit()?,
            }
        }
        (QUEUE, 40) => {
            let _ticket = r.u16()?;
            Method::QueueDelete {
                queue: r.shortstr()?,
                if_unused: r.bit()?,
                if_empty: r.bit()?,
                nowait: r.bit()?,
            }
        }
        (QUEUE, 50) => {
            let _ticket = r.u16()?;
            Method::QueueUnbind {
                queue: r.shortstr()?,
                exchange: r.shortstr()?,
                routing_key: r.shortstr()?,
                arguments: r.table_raw()?,
            }
        }
        (BASIC, 10) => Method::BasicQos {
            prefetch_size: r.u32()?,
            prefetch_count: r.u16()?,
            global: r.bit()?,
        },
        (BASIC, 20) => {
            let _ticket = r.u16()?;
            Method::BasicConsume {
                queue: r.shortstr()?,
                consumer_tag: r.shortstr()?,
                no_local: r.bit()?,
                no_ack: r.bit()?,
                exclusive: r.bit()?,
                nowait: r.bit()?,
                arguments: r.table_raw()?,
            }
        }
        (BASIC, 30) => Method::BasicCancel {
            consumer_tag: r.shortstr()?,
            nowait: r.bit()?,
        },
        (BASIC, 40) => {
            let _ticket = r.u16()?;
            Method::BasicPublish {
                exchange: r.shortstr()?,
                routing_key: r.shortstr()?,
                mandatory: r.bit()?,
                immediate: r.bit()?,
            }
        }
        (BASIC, 70) => {
            let _ticket = r.u16()?;
            Method::BasicGet {
                queue: r.shortstr()?,
                no_ack: r.bit()?,
            }
        }
        (BASIC, 80) => Method::BasicAck {
            delivery_tag: r.u64()?,
            multiple: r.bit()?,
        },
        (BASIC, 90) => Method::BasicReject {
            delivery_tag: r.u64()?,
            requeue: r.bit()?,
        },
        (BASIC, 100) => Method::BasicRecoverAsync { requeue: r.bit()? },
        (BASIC, 110) => Method::BasicRecover { requeue: r.bit()? },
        (BASIC, 120) => Method::BasicNack {
            delivery_tag: r.u64()?,
            multiple: r.bit()?,
            requeue: r.bit()?,
        },
        (CONFIRM, 10) => Method::ConfirmSelect { nowait: r.bit()? },
        (TX, 10) => Method::TxSelect,
        (TX, 20) => Method::TxCommit,
        (TX, 30) => Method::TxRollback,
        _ => {
            return Err(AmqpError::connection(
                ReplyCode::NotImplemented,
                format!("unknown method {class_id}/{method_id}"),
            ))
        }
    })
}

/// Appends a method frame for `class_id`/`method_id` whose arguments `args` writes.
pub fn write(
    out: &mut BytesMut,
    channel: u16,
    class_id: u16,
    method_id: u16,
    args: impl FnOnce(&mut Writer<'_>),
) {
    frame::write_with(out, FRAME_METHOD, channel, |buf| {
        let mut w = Writer::new(buf);
        w.u16(class_id).u16(method_id);
        args(&mut w);
    });
}

/// Appends a method frame with no arguments.
pub fn write_empty(out: &mut BytesMut, channel: u16, class_id: u16, method_id: u16) {
    write(out, channel, class_id, method_id, |_| {});
}

/// Encoders for every method the server sends.
pub mod server {
    use super::class::*;
    use super::*;

    pub fn connection_close(out: &mut BytesMut, code: u16, text: &str, failing: (u16, u16)) {
        write(out, 0, CONNECTION, 50, |w| {
            w.u16(code).shortstr(text).u16(failing.0).u16(failing.1);
        });
    }

    pub fn channel_close(
        out: &mut BytesMut,
        channel: u16,
        code: u16,
        text: &str,
        failing: (u16, u16),
    ) {
        write(out, channel, CHANNEL, 40, |w| {
            w.u16(code).shortstr(text).u16(failing.0).u16(failing.1);
        });
    }

    pub fn channel_open_ok(out: &mut BytesMut, channel: u16) {
        write(out, channel, CHANNEL, 11, |w| {
            w.longstr(b"");
        });
    }

    pub fn channel_flow(out: &mut BytesMut, channel: u16, class_method: u16, active: bool) {
        write(out, channel, CHANNEL, class_method, |w| {
            w.bit(active);
        });
    }

    pub fn queue_declare_ok(
        out: &mut BytesMut,
        channel: u16,
        queue: &str,
        messages: u32,
        consumers: u32,
    ) {
        write(out, channel, QUEUE, 11, |w| {
            w.shortstr(queue).u32(messages).u32(consumers);
        });
    }

    pub fn message_count_ok(out: &mut BytesMut, channel: u16, method_id: u16, messages: u32) {
        write(out, channel, QUEUE, method_id, |w| {
            w.u32(messages);
        });
    }

    pub fn consume_ok(out: &mut BytesMut, channel: u16, tag: &str) {
        write(out, channel, BASIC, 21, |w| {
            w.shortstr(tag);
        });
    }

    pub fn cancel_ok(out: &mut BytesMut, channel: u16, tag: &str) {
        write(out, channel, BASIC, 31, |w| {
            w.shortstr(tag);
        });
    }

    /// Server-initiated basic.cancel (consumer_cancel_notify).
    pub fn cancel(out: &mut BytesMut, channel: u16, tag: &str) {
        write(out, channel, BASIC, 30, |w| {
            w.shortstr(tag).bit(false);
        });
    }

    pub fn basic_return(
        out: &mut BytesMut,
        channel: u16,
        code: u16,
        text: &str,
        exchange: &str,
        routing_key: &str,
    ) {
        write(out, channel, BASIC, 50, |w| {
            w.u16(code)
                .shortstr(text)
                .shortstr(exchange)
                .shortstr(routing_key);
        });
    }

    #[allow(clippy::too_many_arguments)]
    pub fn deliver(
        out: &mut BytesMut,
        channel: u16,
        consumer_tag: &str,
        delivery_tag: u64,
        redelivered: bool,
        exchange: &str,
        routing_key: &str,
    ) {
        write(out, channel, BASIC, 60, |w| {
            w.shortstr(consumer_tag)
                .u64(delivery_tag)
                .bit(redelivered)
                .shortstr(exchange)
                .shortstr(routing_key);
        });
    }

    pub fn get_ok(
        out: &mut BytesMut,
        channel: u16,
        delivery_tag: u64,
        redelivered: bool,
        exchange: &str,
        routing_key: &str,
        message_count: u32,
    ) {
        write(out, channel, BASIC, 71, |w| {
            w.u64(delivery_tag)
                .bit(redelivered)
                .shortstr(exchange)
                .shortstr(routing_key)
                .u32(message_count);
        });
    }

    pub fn get_empty(out: &mut BytesMut, channel: u16) {
        write(out, channel, BASIC, 72, |w| {
            w.shortstr("");
        });
    }

    /// basic.ack (confirm) or basic.nack (negative confirm) from the server.
    pub fn confirm(out: &mut BytesMut, channel: u16, delivery_tag: u64, multiple: bool, ack: bool) {
        if ack {
            write(out, channel, BASIC, 80, |w| {
                w.u64(delivery_tag).bit(multiple);
            });
        } else {
            write(out, channel, BASIC, 120, |w| {
                w.u64(delivery_tag).bit(multiple).bit(false);
            });
        }
    }

    pub fn connection_blocked(out: &mut BytesMut, reason: &str) {
        write(out, 0, CONNECTION, 60, |w| {
            w.shortstr(reason);
        });
    }

    pub fn connection_unblocked(out: &mut BytesMut) {
        write_empty(out, 0, CONNECTION, 61);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_round_trip() {
        let mut out = BytesMut::new();
        write(&mut out, 1, class::BASIC, 40, |w| {
            w.u16(0)
                .shortstr("amq.topic")
                .shortstr("a.b")
                .bit(true)
                .bit(false);
        });
        let payload = &out[7..out.len() - 1];
        let (ids, m) = decode(payload).unwrap();
        assert_eq!(ids, (60, 40));
        assert_eq!(
            m,
            Method::BasicPublish {
                exchange: "amq.topic",
                routing_key: "a.b",
                mandatory: true,
                immediate: false
            }
        );
    }

    #[test]
    fn truncated_and_unknown_methods() {
        assert_eq!(
            decode(&[0, 60, 0, 40, 0]).unwrap_err().code,
            ReplyCode::FrameError
        );
        assert_eq!(
            decode(&[0, 99, 0, 1]).unwrap_err().code,
            ReplyCode::NotImplemented
        );
    }
}
