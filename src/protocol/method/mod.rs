//! Method frames: decoding what clients send (here), encoding what the server sends
//! (`server.rs`); the ids of every method are in `ids.rs`.
//!
//! Decoded methods borrow from the frame payload, so decoding allocates nothing.

use bytes::BytesMut;

use super::error::{AmqpError, ReplyCode};
use super::frame::{self, FRAME_METHOD};
use super::wire::{Reader, Writer};

pub mod ids;
pub mod server;

/// Class ids.
pub mod class {
    pub const CONNECTION: u16 = 10;
    pub const CHANNEL: u16 = 20;
    /// Deprecated in 0-9-1; RabbitMQ still answers access.request.
    pub const ACCESS: u16 = 30;
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
    AccessRequest,
    /// A method only servers send (`ids::SERVER_ONLY`); `content` if it carries content.
    ServerOnly {
        content: bool,
    },
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

    /// True for the basic class's methods.
    pub fn is_basic(&self) -> bool {
        matches!(
            self,
            Method::BasicQos { .. }
                | Method::BasicConsume { .. }
                | Method::BasicCancel { .. }
                | Method::BasicPublish { .. }
                | Method::BasicGet { .. }
                | Method::BasicAck { .. }
                | Method::BasicReject { .. }
                | Method::BasicRecoverAsync { .. }
                | Method::BasicRecover { .. }
                | Method::BasicNack { .. }
        )
    }
}

/// Decodes a method frame's payload. Returns the (class, method) ids with the method so
/// errors can name it.
pub fn decode(payload: &[u8]) -> Result<((u16, u16), Method<'_>), AmqpError> {
    let mut r = Reader::new(payload);
    let class_id = r.u16()?;
    let method_id = r.u16()?;
    let ids = (class_id, method_id);
    let m = decode_args(&mut r, class_id, method_id).map_err(|e| e.with_method(ids))?;
    if r.remaining() > 0 && !matches!(m, Method::ServerOnly { .. }) {
        // RabbitMQ decodes by exact pattern: extra bytes are a frame error.
        return Err(AmqpError::new(
            ReplyCode::FrameError,
            format!(
                "{} bytes after the arguments of method {class_id}/{method_id}",
                r.remaining()
            ),
        )
        .with_method(ids));
    }
    r.check_table().map_err(|e| e.with_method(ids))?;
    Ok((ids, m))
}

fn decode_args<'a>(
    r: &mut Reader<'a>,
    class_id: u16,
    method_id: u16,
) -> Result<Method<'a>, AmqpError> {
    let id = (class_id, method_id);
    let decoded = match class_id {
        class::CONNECTION | class::CHANNEL => decode_connection_or_channel(r, id)?,
        class::EXCHANGE | class::QUEUE => decode_exchange_or_queue(r, id)?,
        class::BASIC | class::CONFIRM | class::TX => decode_basic_confirm_tx(r, id)?,
        class::ACCESS if id == ids::ACCESS_REQUEST => {
            let _realm = r.shortstr()?;
            for _ in 0..5 {
                r.bit()?; // exclusive, passive, active, write, read
            }
            Some(Method::AccessRequest)
        }
        _ => None,
    };
    if let Some(m) = decoded {
        return Ok(m);
    }
    if ids::SERVER_ONLY.contains(&id) {
        return Ok(Method::ServerOnly {
            content: ids::SERVER_CONTENT.contains(&id),
        });
    }
    Err(AmqpError::unanswerable(format!(
        "unknown method {class_id}/{method_id}"
    )))
}

/// Decodes the arguments of a connection or channel method; None if the id is unknown.
fn decode_connection_or_channel<'a>(
    r: &mut Reader<'a>,
    id: ids::MethodId,
) -> Result<Option<Method<'a>>, AmqpError> {
    use ids::*;
    Ok(Some(match id {
        CONNECTION_START_OK => Method::StartOk {
            client_properties: r.table_raw()?,
            mechanism: r.shortstr()?,
            response: r.longstr()?,
            locale: r.shortstr()?,
        },
        CONNECTION_SECURE_OK => Method::SecureOk {
            response: r.longstr()?,
        },
        CONNECTION_TUNE_OK => Method::TuneOk {
            channel_max: r.u16()?,
            frame_max: r.u32()?,
            heartbeat: r.u16()?,
        },
        CONNECTION_OPEN => {
            let vhost = r.shortstr()?;
            let _capabilities = r.shortstr()?;
            let _insist = r.bit()?;
            Method::Open { vhost }
        }
        CONNECTION_CLOSE => Method::Close {
            code: r.u16()?,
            text: r.shortstr()?,
            class_id: r.u16()?,
            method_id: r.u16()?,
        },
        CONNECTION_CLOSE_OK => Method::CloseOk,
        CONNECTION_UPDATE_SECRET => {
            let _new_secret = r.longstr()?;
            let _reason = r.shortstr()?;
            Method::UpdateSecret
        }
        CHANNEL_OPEN => {
            let _out_of_band = r.shortstr()?;
            Method::ChannelOpen
        }
        CHANNEL_FLOW => Method::ChannelFlow { active: r.bit()? },
        CHANNEL_FLOW_OK => Method::ChannelFlowOk { active: r.bit()? },
        CHANNEL_CLOSE => {
            let code = r.u16()?;
            let text = r.shortstr()?;
            let _class = r.u16()?;
            let _method = r.u16()?;
            Method::ChannelClose { code, text }
        }
        CHANNEL_CLOSE_OK => Method::ChannelCloseOk,
        _ => return Ok(None),
    }))
}

/// Decodes the arguments of a exchange or queue method; None if the id is unknown.
fn decode_exchange_or_queue<'a>(
    r: &mut Reader<'a>,
    id: ids::MethodId,
) -> Result<Option<Method<'a>>, AmqpError> {
    use ids::*;
    Ok(Some(match id {
        EXCHANGE_DECLARE => {
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
        EXCHANGE_DELETE => {
            let _ticket = r.u16()?;
            Method::ExchangeDelete {
                exchange: r.shortstr()?,
                if_unused: r.bit()?,
                nowait: r.bit()?,
            }
        }
        EXCHANGE_BIND | EXCHANGE_UNBIND => {
            let _ticket = r.u16()?;
            let destination = r.shortstr()?;
            let source = r.shortstr()?;
            let routing_key = r.shortstr()?;
            let nowait = r.bit()?;
            let arguments = r.table_raw()?;
            if id == EXCHANGE_BIND {
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
        QUEUE_DECLARE => {
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
        QUEUE_BIND => {
            let _ticket = r.u16()?;
            Method::QueueBind {
                queue: r.shortstr()?,
                exchange: r.shortstr()?,
                routing_key: r.shortstr()?,
                nowait: r.bit()?,
                arguments: r.table_raw()?,
            }
        }
        QUEUE_PURGE => {
            let _ticket = r.u16()?;
            Method::QueuePurge {
                queue: r.shortstr()?,
                nowait: r.bit()?,
            }
        }
        QUEUE_DELETE => {
            let _ticket = r.u16()?;
            Method::QueueDelete {
                queue: r.shortstr()?,
                if_unused: r.bit()?,
                if_empty: r.bit()?,
                nowait: r.bit()?,
            }
        }
        QUEUE_UNBIND => {
            let _ticket = r.u16()?;
            Method::QueueUnbind {
                queue: r.shortstr()?,
                exchange: r.shortstr()?,
                routing_key: r.shortstr()?,
                arguments: r.table_raw()?,
            }
        }
        _ => return Ok(None),
    }))
}

/// Decodes the arguments of a basic confirm tx method; None if the id is unknown.
fn decode_basic_confirm_tx<'a>(
    r: &mut Reader<'a>,
    id: ids::MethodId,
) -> Result<Option<Method<'a>>, AmqpError> {
    use ids::*;
    Ok(Some(match id {
        BASIC_QOS => Method::BasicQos {
            prefetch_size: r.u32()?,
            prefetch_count: r.u16()?,
            global: r.bit()?,
        },
        BASIC_CONSUME => {
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
        BASIC_CANCEL => Method::BasicCancel {
            consumer_tag: r.shortstr()?,
            nowait: r.bit()?,
        },
        BASIC_PUBLISH => {
            let _ticket = r.u16()?;
            Method::BasicPublish {
                exchange: r.shortstr()?,
                routing_key: r.shortstr()?,
                mandatory: r.bit()?,
                immediate: r.bit()?,
            }
        }
        BASIC_GET => {
            let _ticket = r.u16()?;
            Method::BasicGet {
                queue: r.shortstr()?,
                no_ack: r.bit()?,
            }
        }
        BASIC_ACK => Method::BasicAck {
            delivery_tag: r.u64()?,
            multiple: r.bit()?,
        },
        BASIC_REJECT => Method::BasicReject {
            delivery_tag: r.u64()?,
            requeue: r.bit()?,
        },
        BASIC_RECOVER_ASYNC => Method::BasicRecoverAsync { requeue: r.bit()? },
        BASIC_RECOVER => Method::BasicRecover { requeue: r.bit()? },
        BASIC_NACK => Method::BasicNack {
            delivery_tag: r.u64()?,
            multiple: r.bit()?,
            requeue: r.bit()?,
        },
        CONFIRM_SELECT => Method::ConfirmSelect { nowait: r.bit()? },
        TX_SELECT => Method::TxSelect,
        TX_COMMIT => Method::TxCommit,
        TX_ROLLBACK => Method::TxRollback,
        _ => return Ok(None),
    }))
}

/// Appends a method frame for `id` whose arguments `args` writes.
pub fn write(
    out: &mut BytesMut,
    channel: u16,
    id: ids::MethodId,
    args: impl FnOnce(&mut Writer<'_>),
) {
    frame::write_with(out, FRAME_METHOD, channel, |buf| {
        let mut w = Writer::new(buf);
        w.u16(id.0).u16(id.1);
        args(&mut w);
    });
}

/// Appends a method frame with no arguments.
pub fn write_empty(out: &mut BytesMut, channel: u16, id: ids::MethodId) {
    write(out, channel, id, |_| {});
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_round_trip() {
        let mut out = BytesMut::new();
        write(&mut out, 1, ids::BASIC_PUBLISH, |w| {
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
        // Unknown ids cannot be answered (RabbitMQ drops the connection); server-only ids
        // are known methods; trailing bytes are a frame error naming the method.
        assert!(decode(&[0, 99, 0, 1]).unwrap_err().unanswerable);
        assert_eq!(
            decode(&[0, 60, 0, 60]).unwrap().1,
            Method::ServerOnly { content: true }
        );
        let e = decode(&[0, 60, 0, 10, 0, 0, 0, 0, 0, 1, 0, 9]).unwrap_err();
        assert_eq!((e.code, e.culprit()), (ReplyCode::FrameError, (60, 10)));
    }
}
