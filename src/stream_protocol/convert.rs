//! RabbitMQ 3.10's conversion between AMQP 0-9-1 messages and the AMQP 1.0 records of a
//! stream (`rabbit_msg_record` and `rabbit_stream_queue` at v3.10.8), as pure functions.
//!
//! 0-9-1 → 1.0 (a message published on AMQP 0-9-1 into a stream):
//! - message-annotations, always present, in this order: `x-routing-key` (utf8),
//!   `x-exchange` (utf8), then if set `x-basic-priority` (ubyte), `x-basic-delivery-mode`
//!   (ubyte), `x-basic-expiration` (utf8). Keys are symbols.
//! - properties, only if one of these is set: message-id (utf8), user-id (binary),
//!   reply-to (utf8), correlation-id (utf8), content-type and content-encoding (symbols),
//!   creation-time = timestamp × 1000. All 13 fields written, unset ones null.
//! - application-properties, only if non-empty: `x-basic-type` (utf8), `x-basic-app-id`
//!   (utf8), then the headers in order, keys utf8; array and table headers are dropped;
//!   a decimal header has no mapping (RabbitMQ's channel crashes on it).
//! - one data section with the body.
//!
//! 1.0 → 0-9-1 (a stream record delivered to an AMQP 0-9-1 consumer): the reverse, plus
//! exchange and routing key from the `x-exchange` / `x-routing-key` annotations (default:
//! the default exchange "" and the stream's name). RabbitMQ 3.10 only understands
//! message-annotations, properties, application-properties and data sections: a record with
//! a header, delivery-annotations, footer, amqp-value or amqp-sequence makes its decoder
//! crash, as do application-property values without a 0-9-1 counterpart (symbol, ulong,
//! char, uuid, list, map, array, described). Those are errors here.

use super::amqp10::Value;
use super::message::{Body, Message, Properties};
use base64::Engine;
use bytes::Bytes;
use std::fmt;

/// An AMQP 0-9-1 field-table value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Bool(bool),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    F32(f32),
    F64(f64),
    Decimal {
        scale: u8,
        value: u32,
    },
    /// Seconds since the epoch.
    Timestamp(u64),
    LongString(Bytes),
    /// The `x` byte-array type.
    Binary(Bytes),
    Void,
    Array(Vec<FieldValue>),
    Table(Vec<(Bytes, FieldValue)>),
}

/// The AMQP 0-9-1 basic properties this conversion involves (all but cluster-id).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BasicProperties {
    pub content_type: Option<Bytes>,
    pub content_encoding: Option<Bytes>,
    pub headers: Option<Vec<(Bytes, FieldValue)>>,
    pub delivery_mode: Option<u8>,
    pub priority: Option<u8>,
    pub correlation_id: Option<Bytes>,
    pub reply_to: Option<Bytes>,
    pub expiration: Option<Bytes>,
    pub message_id: Option<Bytes>,
    /// Seconds since the epoch.
    pub timestamp: Option<u64>,
    /// The `type` property.
    pub kind: Option<Bytes>,
    pub user_id: Option<Bytes>,
    pub app_id: Option<Bytes>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConvertError {
    /// A 0-9-1 header RabbitMQ has no 1.0 mapping for (decimal).
    UnsupportedHeader(Bytes),
    /// A section RabbitMQ 3.10 cannot turn into 0-9-1 (header, delivery-annotations,
    /// footer, amqp-value, amqp-sequence, or no data section).
    UnsupportedSection(&'static str),
    /// An application property or special annotation whose type has no 0-9-1 mapping.
    UnsupportedValue(Bytes),
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::UnsupportedHeader(k) => {
                write!(f, "header {:?} has no AMQP 1.0 mapping", k)
            }
            ConvertError::UnsupportedSection(s) => {
                write!(f, "AMQP 1.0 {s} section has no AMQP 0-9-1 mapping")
            }
            ConvertError::UnsupportedValue(k) => {
                write!(f, "value of {:?} has no AMQP 0-9-1 mapping", k)
            }
        }
    }
}

impl std::error::Error for ConvertError {}

fn str_key(k: &str) -> Value {
    Value::str(k)
}

/// A message published on AMQP 0-9-1 as RabbitMQ 3.10 stores it in a stream.
pub fn from_amqp091(
    props: &BasicProperties,
    payload: Bytes,
    exchange: &str,
    routing_key: &str,
) -> Result<Message, ConvertError> {
    let p = Properties {
        message_id: props.message_id.clone().map(Value::Str),
        user_id: props.user_id.clone(),
        reply_to: props.reply_to.clone(),
        correlation_id: props.correlation_id.clone().map(Value::Str),
        content_type: props.content_type.clone(),
        content_encoding: props.content_encoding.clone(),
        // Erlang integers do not overflow; the 64-bit field then keeps the low bits.
        creation_time: props.timestamp.map(|t| (t as i64).wrapping_mul(1000)),
        ..Default::default()
    };

    let mut ap = Vec::new();
    if let Some(t) = &props.kind {
        ap.push((str_key("x-basic-type"), Value::Str(t.clone())));
    }
    if let Some(a) = &props.app_id {
        ap.push((str_key("x-basic-app-id"), Value::Str(a.clone())));
    }
    for (k, v) in props.headers.iter().flatten() {
        let v = match v {
            FieldValue::Array(_) | FieldValue::Table(_) => continue,
            FieldValue::Decimal { .. } => return Err(ConvertError::UnsupportedHeader(k.clone())),
            other => header_to_10(other),
        };
        ap.push((Value::Str(k.clone()), v));
    }

    let mut ma = vec![
        (Value::symbol("x-routing-key"), Value::str(routing_key)),
        (Value::symbol("x-exchange"), Value::str(exchange)),
    ];
    if let Some(x) = props.priority {
        ma.push((Value::symbol("x-basic-priority"), Value::Ubyte(x)));
    }
    if let Some(x) = props.delivery_mode {
        ma.push((Value::symbol("x-basic-delivery-mode"), Value::Ubyte(x)));
    }
    if let Some(x) = &props.expiration {
        ma.push((Value::symbol("x-basic-expiration"), Value::Str(x.clone())));
    }

    Ok(Message {
        message_annotations: Some(ma),
        properties: if p.is_empty() { None } else { Some(p) },
        application_properties: if ap.is_empty() { None } else { Some(ap) },
        body: Body::Data(vec![payload]),
        ..Default::default()
    })
}

fn header_to_10(v: &FieldValue) -> Value {
    match v {
        FieldValue::Bool(b) => Value::Bool(*b),
        FieldValue::I8(x) => Value::Byte(*x),
        FieldValue::U8(x) => Value::Ubyte(*x),
        FieldValue::I16(x) => Value::Short(*x),
        FieldValue::U16(x) => Value::Ushort(*x),
        FieldValue::I32(x) => Value::Int(*x),
        FieldValue::U32(x) => Value::Uint(*x),
        FieldValue::I64(x) => Value::Long(*x),
        FieldValue::F32(x) => Value::Float(*x),
        FieldValue::F64(x) => Value::Double(*x),
        FieldValue::Timestamp(t) => Value::Timestamp((*t as i64).wrapping_mul(1000)),
        FieldValue::LongString(s) => Value::Str(s.clone()),
        FieldValue::Binary(b) => Value::Binary(b.clone()),
        // Callers filter decimal, array and table out first.
        FieldValue::Void
        | FieldValue::Decimal { .. }
        | FieldValue::Array(_)
        | FieldValue::Table(_) => Value::Null,
    }
}

/// A stream record as RabbitMQ 3.10 delivers it to an AMQP 0-9-1 consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted091 {
    pub exchange: Bytes,
    pub routing_key: Bytes,
    pub properties: BasicProperties,
    pub payload: Bytes,
}

fn key_bytes(k: &Value) -> Option<Bytes> {
    match k {
        Value::Str(b) | Value::Symbol(b) | Value::Binary(b) => Some(b.clone()),
        _ => None,
    }
}

/// Takes the first entry whose key is exactly `key` (same type, same bytes).
fn take(map: &mut Vec<(Value, Value)>, key: &Value) -> Option<Value> {
    let i = map.iter().position(|(k, _)| k == key)?;
    Some(map.remove(i).1)
}

fn as_str(v: Option<Value>, what: &str) -> Result<Option<Bytes>, ConvertError> {
    match v {
        None => Ok(None),
        Some(Value::Str(b)) => Ok(Some(b)),
        Some(_) => Err(ConvertError::UnsupportedValue(Bytes::copy_from_slice(
            what.as_bytes(),
        ))),
    }
}

fn as_u8(v: Option<Value>, what: &str) -> Result<Option<u8>, ConvertError> {
    match v {
        None => Ok(None),
        Some(Value::Ubyte(x)) => Ok(Some(x)),
        Some(_) => Err(ConvertError::UnsupportedValue(Bytes::copy_from_slice(
            what.as_bytes(),
        ))),
    }
}

/// A stream record for an AMQP 0-9-1 consumer. `stream` is the queue name, the default
/// routing key. The consumer also gets an `x-stream-offset` header: see
/// [`add_stream_offset`].
pub fn to_amqp091(msg: &Message, stream: &str) -> Result<Converted091, ConvertError> {
    if msg.header.is_some() {
        return Err(ConvertError::UnsupportedSection("header"));
    }
    if msg.delivery_annotations.is_some() {
        return Err(ConvertError::UnsupportedSection("delivery-annotations"));
    }
    if msg.footer.is_some() {
        return Err(ConvertError::UnsupportedSection("footer"));
    }
    // RabbitMQ keeps the last data section when there are several.
    let payload = match &msg.body {
        Body::Data(parts) => parts.last().cloned().unwrap_or_default(),
        Body::Value(_) => return Err(ConvertError::UnsupportedSection("amqp-value")),
        Body::Sequence(_) => return Err(ConvertError::UnsupportedSection("amqp-sequence")),
        Body::None => return Err(ConvertError::UnsupportedSection("data")),
    };

    let annotation = |k: &str| match msg.message_annotation(k) {
        None => Ok(None),
        Some(Value::Str(b)) => Ok(Some(b.clone())),
        Some(_) => Err(ConvertError::UnsupportedValue(Bytes::copy_from_slice(
            k.as_bytes(),
        ))),
    };
    let exchange = annotation("x-exchange")?.unwrap_or_default();
    let routing_key =
        annotation("x-routing-key")?.unwrap_or_else(|| Bytes::copy_from_slice(stream.as_bytes()));

    let mut ap = msg.application_properties.clone().unwrap_or_default();
    let kind = as_str(take(&mut ap, &Value::str("x-basic-type")), "x-basic-type")?;
    let app_id = as_str(
        take(&mut ap, &Value::str("x-basic-app-id")),
        "x-basic-app-id",
    )?;
    let mut ma = msg.message_annotations.clone().unwrap_or_default();
    let priority = as_u8(
        take(&mut ma, &Value::symbol("x-basic-priority")),
        "x-basic-priority",
    )?;
    let delivery_mode = as_u8(
        take(&mut ma, &Value::symbol("x-basic-delivery-mode")),
        "x-basic-delivery-mode",
    )?;
    let expiration = as_str(
        take(&mut ma, &Value::symbol("x-basic-expiration")),
        "x-basic-expiration",
    )?;

    let mut headers = Vec::with_capacity(ap.len() + 2);
    for (k, v) in &ap {
        let name = key_bytes(k)
            .ok_or_else(|| ConvertError::UnsupportedValue(Bytes::from_static(b"(key)")))?;
        let fv = value_to_091(v).ok_or_else(|| ConvertError::UnsupportedValue(name.clone()))?;
        headers.push((name, fv));
    }

    let p = msg.properties.clone().unwrap_or_default();
    let message_id = id_to_091(p.message_id.as_ref(), "x-message-id", &mut headers)?;
    let correlation_id = id_to_091(p.correlation_id.as_ref(), "x-correlation-id", &mut headers)?;

    Ok(Converted091 {
        exchange,
        routing_key,
        properties: BasicProperties {
            content_type: p.content_type,
            content_encoding: p.content_encoding,
            headers: if headers.is_empty() {
                None
            } else {
                Some(headers)
            },
            delivery_mode,
            priority,
            correlation_id,
            reply_to: p.reply_to,
            expiration,
            message_id,
            // Erlang's div truncates toward zero, as Rust's `/` does.
            timestamp: p.creation_time.map(|t| (t / 1000) as u64),
            kind,
            user_id: p.user_id,
            app_id,
        },
        payload,
    })
}

fn value_to_091(v: &Value) -> Option<FieldValue> {
    Some(match v {
        Value::Str(s) => FieldValue::LongString(s.clone()),
        Value::Long(x) => FieldValue::I64(*x),
        Value::Byte(x) => FieldValue::I8(*x),
        Value::Ubyte(x) => FieldValue::U8(*x),
        Value::Short(x) => FieldValue::I16(*x),
        Value::Ushort(x) => FieldValue::U16(*x),
        Value::Uint(x) => FieldValue::U32(*x),
        Value::Int(x) => FieldValue::I32(*x),
        Value::Double(x) => FieldValue::F64(*x),
        Value::Float(x) => FieldValue::F32(*x),
        Value::Timestamp(t) => FieldValue::Timestamp((t / 1000) as u64),
        Value::Binary(b) => FieldValue::Binary(b.clone()),
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Null => FieldValue::Void,
        _ => return None,
    })
}

/// message-id / correlation-id to 0-9-1: uuid and ulong become strings with an
/// `x-…-type` header; binary is base64 unless that exceeds 256 characters, then (like a
/// string over 256 bytes) it moves to an `x-message-id` / `x-correlation-id` header and
/// the property stays unset. The headers go in front.
fn id_to_091(
    id: Option<&Value>,
    header: &str,
    headers: &mut Vec<(Bytes, FieldValue)>,
) -> Result<Option<Bytes>, ConvertError> {
    let type_header = Bytes::from(format!("{header}-type"));
    let tag = |t: &'static str| {
        (
            type_header.clone(),
            FieldValue::LongString(Bytes::from_static(t.as_bytes())),
        )
    };
    Ok(match id {
        None => None,
        Some(Value::Uuid(u)) => {
            headers.insert(0, tag("uuid"));
            Some(Bytes::from(uuid_string(u)))
        }
        Some(Value::Ulong(n)) => {
            headers.insert(0, tag("ulong"));
            Some(Bytes::from(n.to_string()))
        }
        Some(Value::Binary(b)) => {
            let e = base64::engine::general_purpose::STANDARD.encode(b);
            if e.len() > 256 {
                headers.insert(
                    0,
                    (
                        Bytes::copy_from_slice(header.as_bytes()),
                        FieldValue::LongString(b.clone()),
                    ),
                );
                None
            } else {
                headers.insert(0, tag("binary"));
                Some(Bytes::from(e))
            }
        }
        Some(Value::Str(s)) if s.len() > 256 => {
            headers.insert(
                0,
                (
                    Bytes::copy_from_slice(header.as_bytes()),
                    FieldValue::LongString(s.clone()),
                ),
            );
            None
        }
        Some(Value::Str(s) | Value::Symbol(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ConvertError::UnsupportedValue(Bytes::copy_from_slice(
                header.as_bytes(),
            )))
        }
    })
}

fn uuid_string(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// What the stream queue adds to every message it delivers to an AMQP 0-9-1 consumer: an
/// `x-stream-offset` long header, replacing any of that name, after which RabbitMQ sorts
/// the header table by name (`rabbit_misc:set_table_value`).
pub fn add_stream_offset(props: &mut BasicProperties, offset: u64) {
    let headers = props.headers.get_or_insert_with(Vec::new);
    let key = Bytes::from_static(b"x-stream-offset");
    let value = FieldValue::I64(offset as i64);
    match headers.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => headers.push((key, value)),
    }
    headers.sort_by(|a, b| a.0.cmp(&b.0));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn props() -> BasicProperties {
        BasicProperties {
            content_type: Some(b("text/plain")),
            content_encoding: Some(b("utf-8")),
            headers: Some(vec![
                (b("s"), FieldValue::LongString(b("v"))),
                (b("i"), FieldValue::I32(-5)),
                (b("t"), FieldValue::Bool(true)),
                (b("arr"), FieldValue::Array(vec![FieldValue::I8(1)])),
            ]),
            delivery_mode: Some(2),
            priority: Some(3),
            correlation_id: Some(b("corr")),
            reply_to: Some(b("rt")),
            expiration: Some(b("60000")),
            message_id: Some(b("mid")),
            timestamp: Some(1_700_000_000),
            kind: Some(b("type")),
            user_id: Some(b("guest")),
            app_id: Some(b("app")),
        }
    }

    #[test]
    fn from_091_layout() {
        let m = from_amqp091(&props(), b("body"), "amq.direct", "rk").unwrap();
        let ma: Vec<_> = m
            .message_annotations
            .clone()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            ma,
            [
                "x-routing-key",
                "x-exchange",
                "x-basic-priority",
                "x-basic-delivery-mode",
                "x-basic-expiration"
            ]
            .map(Value::symbol)
        );
        let ap: Vec<_> = m
            .application_properties
            .clone()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            ap,
            ["x-basic-type", "x-basic-app-id", "s", "i", "t"].map(Value::str)
        );
        assert_eq!(
            m.properties.as_ref().unwrap().creation_time,
            Some(1_700_000_000_000)
        );
        let empty = from_amqp091(&BasicProperties::default(), b(""), "", "q").unwrap();
        assert!(empty.properties.is_none() && empty.application_properties.is_none());
    }

    #[test]
    fn there_and_back() {
        let m = from_amqp091(&props(), b("body"), "amq.direct", "rk").unwrap();
        let m = Message::decode(m.to_bytes().unwrap()).unwrap();
        let c = to_amqp091(&m, "s1").unwrap();
        assert_eq!(c.exchange, b("amq.direct"));
        assert_eq!(c.routing_key, b("rk"));
        assert_eq!(c.payload, b("body"));
        let mut expected = props();
        expected.headers.as_mut().unwrap().pop(); // the array header is dropped
        assert_eq!(c.properties, expected);
        let d = to_amqp091(
            &Message {
                body: Body::Data(vec![b("x")]),
                ..Default::default()
            },
            "s1",
        )
        .unwrap();
        assert_eq!((d.exchange, d.routing_key), (b(""), b("s1")));
    }

    #[test]
    fn ids_and_refusals() {
        let mut m = Message {
            body: Body::Data(vec![b("x")]),
            ..Default::default()
        };
        m.properties = Some(Properties {
            message_id: Some(Value::Ulong(42)),
            correlation_id: Some(Value::Uuid([0x11; 16])),
            ..Default::default()
        });
        let c = to_amqp091(&m, "s").unwrap();
        assert_eq!(c.properties.message_id, Some(b("42")));
        assert_eq!(
            c.properties.correlation_id,
            Some(b("11111111-1111-1111-1111-111111111111"))
        );
        let h = c.properties.headers.unwrap();
        assert_eq!(h[0].0, b("x-correlation-id-type"));
        assert_eq!(h[1].0, b("x-message-id-type"));
        m.body = Body::Value(Value::str("v"));
        assert!(to_amqp091(&m, "s").is_err());
        let p = BasicProperties {
            headers: Some(vec![(b("d"), FieldValue::Decimal { scale: 1, value: 1 })]),
            ..Default::default()
        };
        assert!(from_amqp091(&p, b(""), "", "").is_err());
    }

    #[test]
    fn stream_offset_header_sorted_in() {
        let mut p = BasicProperties {
            headers: Some(vec![(b("z"), FieldValue::Void), (b("a"), FieldValue::Void)]),
            ..Default::default()
        };
        add_stream_offset(&mut p, 7);
        let keys: Vec<_> = p.headers.unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![b("a"), b("x-stream-offset"), b("z")]);
    }
}
