//! The two forms of a stream's records, and the conversion between them when a record is
//! read over the other protocol, as RabbitMQ 3.10 converts (`stream_protocol::convert`):
//! - an AMQP 0-9-1 message as Warren stores it (`message.rs`: exchange, routing key,
//!   content header, body), for what was published over AMQP 0-9-1;
//! - an AMQP 1.0 message (record kind `KIND_AMQP10`), for what was published over the
//!   stream protocol, kept byte for byte as the client sent it.
//!
//! Header tables are carried through `amq_protocol_types::FieldTable`, which orders them
//! by name (RabbitMQ keeps the published order going to AMQP 1.0, and sorts going back).

use amq_protocol_types::{AMQPValue, DecimalValue, FieldArray, FieldTable, LongString};
use bytes::{BufMut, Bytes, BytesMut};

use super::dead_letter::encode_table;
use super::message;
use crate::protocol::properties::{
    FLAG_APP_ID, FLAG_CONTENT_ENCODING, FLAG_CONTENT_TYPE, FLAG_CORRELATION_ID, FLAG_DELIVERY_MODE,
    FLAG_EXPIRATION, FLAG_HEADERS, FLAG_MESSAGE_ID, FLAG_PRIORITY, FLAG_REPLY_TO, FLAG_TIMESTAMP,
    FLAG_TYPE, FLAG_USER_ID,
};
use crate::protocol::table;
use crate::protocol::wire::Reader;
use crate::stream_protocol::convert::{self, BasicProperties, FieldValue};
use crate::stream_protocol::message::Message;

/// Record kind of an AMQP 1.0 message published over the stream protocol (kind 0, the
/// default, is a stored AMQP 0-9-1 message).
pub const KIND_AMQP10: u8 = 1;

/// A stored AMQP 0-9-1 message as the AMQP 1.0 record a stream-protocol consumer gets.
pub fn stored_to_amqp10(payload: &Bytes) -> Option<Bytes> {
    let m = message::view(payload)?;
    let props = read_properties(m.header)?;
    let exchange = std::str::from_utf8(m.exchange).ok()?;
    let routing_key = std::str::from_utf8(m.routing_key).ok()?;
    // The body is the payload's tail: a view of it, not a copy.
    let body = payload.slice(payload.len() - m.body.len()..);
    let msg = convert::from_amqp091(&props, body, exchange, routing_key).ok()?;
    msg.to_bytes().ok()
}

/// An AMQP 1.0 record of stream `stream` at `offset` as the stored AMQP 0-9-1 message an
/// AMQP 0-9-1 consumer gets, with its `x-stream-offset` header. `None` for a record
/// RabbitMQ 3.10 cannot convert either (sections or values without a 0-9-1 form).
pub fn amqp10_to_stored(record: &Bytes, stream: &str, offset: u64) -> Option<Bytes> {
    let msg = Message::decode(record.clone()).ok()?;
    let mut c = convert::to_amqp091(&msg, stream).ok()?;
    convert::add_stream_offset(&mut c.properties, offset);
    let header = write_header(&c.properties, c.payload.len() as u64);
    let exchange = std::str::from_utf8(&c.exchange).ok()?;
    let routing_key = std::str::from_utf8(&c.routing_key).ok()?;
    let mut prefix = [0u8; message::MAX_PREFIX];
    let n = message::encode_prefix(&mut prefix, exchange, routing_key, header.len());
    let mut out = BytesMut::with_capacity(n + header.len() + c.payload.len());
    out.put_slice(&prefix[..n]);
    out.put_slice(&header);
    out.put_slice(&c.payload);
    Some(out.freeze())
}

/// The basic properties of a stored content header.
fn read_properties(header: &[u8]) -> Option<BasicProperties> {
    let mut r = Reader::new(header);
    r.u16().ok()?;
    r.u16().ok()?;
    r.u64().ok()?;
    let flags = r.u16().ok()?;
    let mut p = BasicProperties::default();
    for bit in (2..16).rev() {
        let flag = 1u16 << bit;
        if flags & flag == 0 {
            continue;
        }
        let short = |r: &mut Reader<'_>| {
            r.shortstr()
                .ok()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        };
        match flag {
            FLAG_CONTENT_TYPE => p.content_type = Some(short(&mut r)?),
            FLAG_CONTENT_ENCODING => p.content_encoding = Some(short(&mut r)?),
            FLAG_HEADERS => {
                let t = table::decode(r.table_raw().ok()?).ok()?;
                p.headers = Some(fields_of(&t));
            }
            FLAG_DELIVERY_MODE => p.delivery_mode = Some(r.u8().ok()?),
            FLAG_PRIORITY => p.priority = Some(r.u8().ok()?),
            FLAG_CORRELATION_ID => p.correlation_id = Some(short(&mut r)?),
            FLAG_REPLY_TO => p.reply_to = Some(short(&mut r)?),
            FLAG_EXPIRATION => p.expiration = Some(short(&mut r)?),
            FLAG_MESSAGE_ID => p.message_id = Some(short(&mut r)?),
            FLAG_TIMESTAMP => p.timestamp = Some(r.u64().ok()?),
            FLAG_TYPE => p.kind = Some(short(&mut r)?),
            FLAG_USER_ID => p.user_id = Some(short(&mut r)?),
            FLAG_APP_ID => p.app_id = Some(short(&mut r)?),
            // cluster-id: not carried, as in RabbitMQ.
            _ => {
                short(&mut r)?;
            }
        }
    }
    Some(p)
}

/// A content header (class 60) for `props` and a body of `body_size` bytes.
fn write_header(p: &BasicProperties, body_size: u64) -> Vec<u8> {
    let mut flags = 0u16;
    let mut rest = Vec::new();
    let short = |flag: u16, v: &Option<Bytes>, flags: &mut u16, out: &mut Vec<u8>| {
        if let Some(s) = v {
            let s = &s[..s.len().min(255)];
            *flags |= flag;
            out.push(s.len() as u8);
            out.extend_from_slice(s);
        }
    };
    short(FLAG_CONTENT_TYPE, &p.content_type, &mut flags, &mut rest);
    short(
        FLAG_CONTENT_ENCODING,
        &p.content_encoding,
        &mut flags,
        &mut rest,
    );
    if let Some(h) = &p.headers {
        flags |= FLAG_HEADERS;
        rest.extend_from_slice(&encode_table(&table_of(h)));
    }
    if let Some(d) = p.delivery_mode {
        flags |= FLAG_DELIVERY_MODE;
        rest.push(d);
    }
    if let Some(x) = p.priority {
        flags |= FLAG_PRIORITY;
        rest.push(x);
    }
    short(
        FLAG_CORRELATION_ID,
        &p.correlation_id,
        &mut flags,
        &mut rest,
    );
    short(FLAG_REPLY_TO, &p.reply_to, &mut flags, &mut rest);
    short(FLAG_EXPIRATION, &p.expiration, &mut flags, &mut rest);
    short(FLAG_MESSAGE_ID, &p.message_id, &mut flags, &mut rest);
    if let Some(t) = p.timestamp {
        flags |= FLAG_TIMESTAMP;
        rest.extend_from_slice(&t.to_be_bytes());
    }
    short(FLAG_TYPE, &p.kind, &mut flags, &mut rest);
    short(FLAG_USER_ID, &p.user_id, &mut flags, &mut rest);
    short(FLAG_APP_ID, &p.app_id, &mut flags, &mut rest);
    let mut out = Vec::with_capacity(14 + rest.len());
    out.extend_from_slice(&60u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&body_size.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&rest);
    out
}

fn fields_of(t: &FieldTable) -> Vec<(Bytes, FieldValue)> {
    t.inner()
        .iter()
        .map(|(k, v)| (Bytes::copy_from_slice(k.as_str().as_bytes()), field_of(v)))
        .collect()
}

fn field_of(v: &AMQPValue) -> FieldValue {
    match v {
        AMQPValue::Boolean(b) => FieldValue::Bool(*b),
        AMQPValue::ShortShortInt(x) => FieldValue::I8(*x),
        AMQPValue::ShortShortUInt(x) => FieldValue::U8(*x),
        AMQPValue::ShortInt(x) => FieldValue::I16(*x),
        AMQPValue::ShortUInt(x) => FieldValue::U16(*x),
        AMQPValue::LongInt(x) => FieldValue::I32(*x),
        AMQPValue::LongUInt(x) => FieldValue::U32(*x),
        AMQPValue::LongLongInt(x) => FieldValue::I64(*x),
        AMQPValue::Float(x) => FieldValue::F32(*x),
        AMQPValue::Double(x) => FieldValue::F64(*x),
        AMQPValue::DecimalValue(d) => FieldValue::Decimal {
            scale: d.scale,
            value: d.value,
        },
        AMQPValue::ShortString(s) => {
            FieldValue::LongString(Bytes::copy_from_slice(s.as_str().as_bytes()))
        }
        AMQPValue::LongString(s) => FieldValue::LongString(Bytes::copy_from_slice(s.as_bytes())),
        AMQPValue::FieldArray(a) => FieldValue::Array(a.as_slice().iter().map(field_of).collect()),
        AMQPValue::Timestamp(t) => FieldValue::Timestamp(*t),
        AMQPValue::FieldTable(t) => FieldValue::Table(fields_of(t)),
        AMQPValue::ByteArray(b) => FieldValue::Binary(Bytes::copy_from_slice(b.as_slice())),
        AMQPValue::Void => FieldValue::Void,
    }
}

fn table_of(fields: &[(Bytes, FieldValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in fields {
        // A key longer than a short string cannot be a 0-9-1 header: left out.
        if let Ok(k) = std::str::from_utf8(k) {
            if k.len() <= 255 {
                t.insert(k.into(), amqp_of(v));
            }
        }
    }
    t
}

fn amqp_of(v: &FieldValue) -> AMQPValue {
    match v {
        FieldValue::Bool(b) => AMQPValue::Boolean(*b),
        FieldValue::I8(x) => AMQPValue::ShortShortInt(*x),
        FieldValue::U8(x) => AMQPValue::ShortShortUInt(*x),
        FieldValue::I16(x) => AMQPValue::ShortInt(*x),
        FieldValue::U16(x) => AMQPValue::ShortUInt(*x),
        FieldValue::I32(x) => AMQPValue::LongInt(*x),
        FieldValue::U32(x) => AMQPValue::LongUInt(*x),
        FieldValue::I64(x) => AMQPValue::LongLongInt(*x),
        FieldValue::F32(x) => AMQPValue::Float(*x),
        FieldValue::F64(x) => AMQPValue::Double(*x),
        FieldValue::Decimal { scale, value } => AMQPValue::DecimalValue(DecimalValue {
            scale: *scale,
            value: *value,
        }),
        FieldValue::Timestamp(t) => AMQPValue::Timestamp(*t),
        FieldValue::LongString(s) => AMQPValue::LongString(LongString::from(s.to_vec())),
        FieldValue::Binary(b) => AMQPValue::ByteArray(b.to_vec().into()),
        FieldValue::Void => AMQPValue::Void,
        FieldValue::Array(a) => {
            AMQPValue::FieldArray(FieldArray::from(a.iter().map(amqp_of).collect::<Vec<_>>()))
        }
        FieldValue::Table(t) => AMQPValue::FieldTable(table_of(t)),
    }
}
