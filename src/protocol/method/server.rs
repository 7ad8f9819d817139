//! Encoders for every method the server sends (built on `method::write`).

use bytes::BytesMut;

use super::ids::*;
use super::{write, write_empty};

pub fn connection_close(out: &mut BytesMut, code: u16, text: &str, failing: (u16, u16)) {
    write(out, 0, CONNECTION_CLOSE, |w| {
        w.u16(code).shortstr(text).u16(failing.0).u16(failing.1);
    });
}

pub fn channel_close(out: &mut BytesMut, channel: u16, code: u16, text: &str, failing: (u16, u16)) {
    write(out, channel, CHANNEL_CLOSE, |w| {
        w.u16(code).shortstr(text).u16(failing.0).u16(failing.1);
    });
}

pub fn channel_open_ok(out: &mut BytesMut, channel: u16) {
    write(out, channel, CHANNEL_OPEN_OK, |w| {
        w.longstr(b"");
    });
}

/// channel.flow-ok (the answer to a client's channel.flow).
pub fn channel_flow_ok(out: &mut BytesMut, channel: u16, active: bool) {
    write(out, channel, CHANNEL_FLOW_OK, |w| {
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
    write(out, channel, QUEUE_DECLARE_OK, |w| {
        w.shortstr(queue).u32(messages).u32(consumers);
    });
}

/// queue.purge-ok or queue.delete-ok: both carry a message count.
pub fn message_count_ok(out: &mut BytesMut, channel: u16, id: MethodId, messages: u32) {
    debug_assert!(id == QUEUE_PURGE_OK || id == QUEUE_DELETE_OK);
    write(out, channel, id, |w| {
        w.u32(messages);
    });
}

pub fn consume_ok(out: &mut BytesMut, channel: u16, tag: &str) {
    write(out, channel, BASIC_CONSUME_OK, |w| {
        w.shortstr(tag);
    });
}

pub fn cancel_ok(out: &mut BytesMut, channel: u16, tag: &str) {
    write(out, channel, BASIC_CANCEL_OK, |w| {
        w.shortstr(tag);
    });
}

/// Server-initiated basic.cancel (consumer_cancel_notify).
pub fn cancel(out: &mut BytesMut, channel: u16, tag: &str) {
    write(out, channel, BASIC_CANCEL, |w| {
        w.shortstr(tag).bit(true); // nowait: RabbitMQ expects no cancel-ok
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
    write(out, channel, BASIC_RETURN, |w| {
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
    write(out, channel, BASIC_DELIVER, |w| {
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
    write(out, channel, BASIC_GET_OK, |w| {
        w.u64(delivery_tag)
            .bit(redelivered)
            .shortstr(exchange)
            .shortstr(routing_key)
            .u32(message_count);
    });
}

pub fn get_empty(out: &mut BytesMut, channel: u16) {
    write(out, channel, BASIC_GET_EMPTY, |w| {
        w.shortstr("");
    });
}

/// basic.ack (confirm) or basic.nack (negative confirm) from the server.
pub fn confirm(out: &mut BytesMut, channel: u16, delivery_tag: u64, multiple: bool, ack: bool) {
    if ack {
        write(out, channel, BASIC_ACK, |w| {
            w.u64(delivery_tag).bit(multiple);
        });
    } else {
        // RabbitMQ's basic.nack record leaves `requeue` at its default, true.
        write(out, channel, BASIC_NACK, |w| {
            w.u64(delivery_tag).bit(multiple).bit(true);
        });
    }
}

pub fn connection_blocked(out: &mut BytesMut, reason: &str) {
    write(out, 0, CONNECTION_BLOCKED, |w| {
        w.shortstr(reason);
    });
}

pub fn connection_unblocked(out: &mut BytesMut) {
    write_empty(out, 0, CONNECTION_UNBLOCKED);
}
