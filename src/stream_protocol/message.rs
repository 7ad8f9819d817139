//! AMQP 1.0 messages: the records a stream client publishes and a stream stores.
//!
//! A message is a sequence of described sections, in this order: header (0x70),
//! delivery-annotations (0x71), message-annotations (0x72), properties (0x73),
//! application-properties (0x74), a body of data (0x75, one or more), amqp-sequence (0x76,
//! one or more) or amqp-value (0x77), and footer (0x78). Descriptors may be the ulong code
//! or the symbolic name (`amqp:data:binary`, ...).

use super::amqp10::{decode, encode, Amqp10Error, Value};
use bytes::{Bytes, BytesMut};

pub const DESC_HEADER: u64 = 0x70;
pub const DESC_DELIVERY_ANNOTATIONS: u64 = 0x71;
pub const DESC_MESSAGE_ANNOTATIONS: u64 = 0x72;
pub const DESC_PROPERTIES: u64 = 0x73;
pub const DESC_APPLICATION_PROPERTIES: u64 = 0x74;
pub const DESC_DATA: u64 = 0x75;
pub const DESC_AMQP_SEQUENCE: u64 = 0x76;
pub const DESC_AMQP_VALUE: u64 = 0x77;
pub const DESC_FOOTER: u64 = 0x78;

const SYMBOLIC: [(&str, u64); 9] = [
    ("amqp:header:list", DESC_HEADER),
    ("amqp:delivery-annotations:map", DESC_DELIVERY_ANNOTATIONS),
    ("amqp:message-annotations:map", DESC_MESSAGE_ANNOTATIONS),
    ("amqp:properties:list", DESC_PROPERTIES),
    (
        "amqp:application-properties:map",
        DESC_APPLICATION_PROPERTIES,
    ),
    ("amqp:data:binary", DESC_DATA),
    ("amqp:amqp-sequence:list", DESC_AMQP_SEQUENCE),
    ("amqp:amqp-value:*", DESC_AMQP_VALUE),
    ("amqp:footer:map", DESC_FOOTER),
];

/// The header section's fields, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    pub durable: Option<bool>,
    pub priority: Option<u8>,
    pub ttl: Option<u32>,
    pub first_acquirer: Option<bool>,
    pub delivery_count: Option<u32>,
}

/// The properties section's 13 fields, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties {
    /// ulong, uuid, binary or string.
    pub message_id: Option<Value>,
    pub user_id: Option<Bytes>,
    pub to: Option<Bytes>,
    pub subject: Option<Bytes>,
    pub reply_to: Option<Bytes>,
    pub correlation_id: Option<Value>,
    /// Symbols.
    pub content_type: Option<Bytes>,
    pub content_encoding: Option<Bytes>,
    /// Milliseconds since the epoch.
    pub absolute_expiry_time: Option<i64>,
    pub creation_time: Option<i64>,
    pub group_id: Option<Bytes>,
    pub group_sequence: Option<u32>,
    pub reply_to_group_id: Option<Bytes>,
}

impl Properties {
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Data(Vec<Bytes>),
    Sequence(Vec<Vec<Value>>),
    Value(Value),
    /// No body section (not valid AMQP 1.0, but seen in the wild).
    None,
}

/// An AMQP 1.0 message split into its sections. Maps keep their order and key types.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub header: Option<Header>,
    pub delivery_annotations: Option<Vec<(Value, Value)>>,
    pub message_annotations: Option<Vec<(Value, Value)>>,
    pub properties: Option<Properties>,
    pub application_properties: Option<Vec<(Value, Value)>>,
    pub body: Body,
    pub footer: Option<Vec<(Value, Value)>>,
}

impl Default for Message {
    fn default() -> Self {
        Message {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: None,
            application_properties: None,
            body: Body::None,
            footer: None,
        }
    }
}

fn descriptor_code(d: &Value) -> Option<u64> {
    match d {
        Value::Ulong(c) => Some(*c),
        Value::Symbol(s) => SYMBOLIC
            .iter()
            .find(|(n, _)| n.as_bytes() == &s[..])
            .map(|(_, c)| *c),
        _ => None,
    }
}

fn bad(what: &'static str) -> Amqp10Error {
    Amqp10Error::BadSection(what)
}

fn map_of(v: Value) -> Result<Vec<(Value, Value)>, Amqp10Error> {
    match v {
        Value::Map(m) => Ok(m),
        Value::Null => Ok(Vec::new()),
        _ => Err(bad("annotation or property section is not a map")),
    }
}

fn list_of(v: Value) -> Result<Vec<Value>, Amqp10Error> {
    match v {
        Value::List(l) => Ok(l),
        _ => Err(bad("header, properties or sequence section is not a list")),
    }
}

fn opt_bytes(v: Option<Value>) -> Result<Option<Bytes>, Amqp10Error> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(b) | Value::Symbol(b) | Value::Binary(b)) => Ok(Some(b)),
        Some(_) => Err(bad("properties field of the wrong type")),
    }
}

fn opt_time(v: Option<Value>) -> Result<Option<i64>, Amqp10Error> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Timestamp(t)) => Ok(Some(t)),
        Some(_) => Err(bad("timestamp field of the wrong type")),
    }
}

fn opt_value(v: Option<Value>) -> Option<Value> {
    match v {
        None | Some(Value::Null) => None,
        other => other,
    }
}

fn opt_bool(v: Option<Value>) -> Result<Option<bool>, Amqp10Error> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(bad("header boolean of the wrong type")),
    }
}

fn opt_uint(v: Option<Value>) -> Result<Option<u32>, Amqp10Error> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Uint(x)) => Ok(Some(x)),
        Some(_) => Err(bad("uint field of the wrong type")),
    }
}

impl Message {
    /// Decodes a whole message. Sections must come in the order of the format.
    pub fn decode(bytes: Bytes) -> Result<Message, Amqp10Error> {
        let mut buf = bytes;
        let mut m = Message::default();
        let mut last = 0u64;
        while !buf.is_empty() {
            let (code, value) = match decode(&mut buf)? {
                Value::Described(d, v) => (
                    descriptor_code(&d).ok_or(bad("unknown section descriptor"))?,
                    *v,
                ),
                _ => return Err(bad("section is not a described value")),
            };
            // Data and sequence sections repeat; nothing goes backwards.
            let repeatable = (code == DESC_DATA || code == DESC_AMQP_SEQUENCE) && code == last;
            if code < last || (code == last && !repeatable) {
                return Err(bad("sections out of order"));
            }
            if (DESC_DATA..=DESC_AMQP_VALUE).contains(&code)
                && (DESC_DATA..=DESC_AMQP_VALUE).contains(&last)
                && code != last
            {
                return Err(bad("two kinds of body"));
            }
            last = code;
            match code {
                DESC_HEADER => {
                    let mut f = list_of(value)?.into_iter();
                    m.header = Some(Header {
                        durable: opt_bool(f.next())?,
                        priority: match f.next() {
                            None | Some(Value::Null) => None,
                            Some(Value::Ubyte(p)) => Some(p),
                            Some(_) => return Err(bad("priority not a ubyte")),
                        },
                        ttl: opt_uint(f.next())?,
                        first_acquirer: opt_bool(f.next())?,
                        delivery_count: opt_uint(f.next())?,
                    });
                }
                DESC_DELIVERY_ANNOTATIONS => m.delivery_annotations = Some(map_of(value)?),
                DESC_MESSAGE_ANNOTATIONS => m.message_annotations = Some(map_of(value)?),
                DESC_PROPERTIES => {
                    let mut f = list_of(value)?.into_iter();
                    m.properties = Some(Properties {
                        message_id: opt_value(f.next()),
                        user_id: opt_bytes(f.next())?,
                        to: opt_bytes(f.next())?,
                        subject: opt_bytes(f.next())?,
                        reply_to: opt_bytes(f.next())?,
                        correlation_id: opt_value(f.next()),
                        content_type: opt_bytes(f.next())?,
                        content_encoding: opt_bytes(f.next())?,
                        absolute_expiry_time: opt_time(f.next())?,
                        creation_time: opt_time(f.next())?,
                        group_id: opt_bytes(f.next())?,
                        group_sequence: opt_uint(f.next())?,
                        reply_to_group_id: opt_bytes(f.next())?,
                    });
                }
                DESC_APPLICATION_PROPERTIES => m.application_properties = Some(map_of(value)?),
                DESC_DATA => {
                    let Value::Binary(b) = value else {
                        return Err(bad("data section is not binary"));
                    };
                    match &mut m.body {
                        Body::Data(v) => v.push(b),
                        _ => m.body = Body::Data(vec![b]),
                    }
                }
                DESC_AMQP_SEQUENCE => {
                    let l = list_of(value)?;
                    match &mut m.body {
                        Body::Sequence(v) => v.push(l),
                        _ => m.body = Body::Sequence(vec![l]),
                    }
                }
                DESC_AMQP_VALUE => m.body = Body::Value(value),
                DESC_FOOTER => m.footer = Some(map_of(value)?),
                _ => return Err(bad("unknown section descriptor")),
            }
        }
        Ok(m)
    }

    /// Encodes the message: each present section with a ulong descriptor. The properties
    /// list is written with all 13 fields (nulls included) and the header with all 5, as
    /// RabbitMQ's `amqp10_framing` does.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), Amqp10Error> {
        let section = |code: u64, v: Value, out: &mut BytesMut| {
            encode(
                &Value::Described(Box::new(Value::Ulong(code)), Box::new(v)),
                out,
            )
        };
        let or_null = |v: &Option<Value>| v.clone().unwrap_or(Value::Null);
        if let Some(h) = &self.header {
            let b = |x: Option<bool>| x.map(Value::Bool).unwrap_or(Value::Null);
            let u = |x: Option<u32>| x.map(Value::Uint).unwrap_or(Value::Null);
            let list = vec![
                b(h.durable),
                h.priority.map(Value::Ubyte).unwrap_or(Value::Null),
                u(h.ttl),
                b(h.first_acquirer),
                u(h.delivery_count),
            ];
            section(DESC_HEADER, Value::List(list), out)?;
        }
        if let Some(m) = &self.delivery_annotations {
            section(DESC_DELIVERY_ANNOTATIONS, Value::Map(m.clone()), out)?;
        }
        if let Some(m) = &self.message_annotations {
            section(DESC_MESSAGE_ANNOTATIONS, Value::Map(m.clone()), out)?;
        }
        if let Some(p) = &self.properties {
            let s = |x: &Option<Bytes>| x.clone().map(Value::Str).unwrap_or(Value::Null);
            let sym = |x: &Option<Bytes>| x.clone().map(Value::Symbol).unwrap_or(Value::Null);
            let t = |x: Option<i64>| x.map(Value::Timestamp).unwrap_or(Value::Null);
            let list = vec![
                or_null(&p.message_id),
                p.user_id.clone().map(Value::Binary).unwrap_or(Value::Null),
                s(&p.to),
                s(&p.subject),
                s(&p.reply_to),
                or_null(&p.correlation_id),
                sym(&p.content_type),
                sym(&p.content_encoding),
                t(p.absolute_expiry_time),
                t(p.creation_time),
                s(&p.group_id),
                p.group_sequence.map(Value::Uint).unwrap_or(Value::Null),
                s(&p.reply_to_group_id),
            ];
            section(DESC_PROPERTIES, Value::List(list), out)?;
        }
        if let Some(m) = &self.application_properties {
            section(DESC_APPLICATION_PROPERTIES, Value::Map(m.clone()), out)?;
        }
        match &self.body {
            Body::Data(parts) => {
                for p in parts {
                    section(DESC_DATA, Value::Binary(p.clone()), out)?;
                }
            }
            Body::Sequence(seqs) => {
                for s in seqs {
                    section(DESC_AMQP_SEQUENCE, Value::List(s.clone()), out)?;
                }
            }
            Body::Value(v) => section(DESC_AMQP_VALUE, v.clone(), out)?,
            Body::None => {}
        }
        if let Some(m) = &self.footer {
            section(DESC_FOOTER, Value::Map(m.clone()), out)?;
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Result<Bytes, Amqp10Error> {
        let mut out = BytesMut::new();
        self.encode(&mut out)?;
        Ok(out.freeze())
    }

    /// The value of a message annotation with a symbol key.
    pub fn message_annotation(&self, key: &str) -> Option<&Value> {
        self.message_annotations
            .as_ref()?
            .iter()
            .find(|(k, _)| matches!(k, Value::Symbol(s) if &s[..] == key.as_bytes()))
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Message {
        Message {
            header: Some(Header {
                durable: Some(true),
                priority: Some(4),
                ttl: None,
                first_acquirer: None,
                delivery_count: Some(0),
            }),
            delivery_annotations: Some(vec![(Value::symbol("x-da"), Value::Int(1))]),
            message_annotations: Some(vec![(Value::symbol("x-opt"), Value::str("v"))]),
            properties: Some(Properties {
                message_id: Some(Value::Ulong(12)),
                content_type: Some(Bytes::from_static(b"text/plain")),
                creation_time: Some(1_700_000_000_000),
                group_sequence: Some(3),
                ..Default::default()
            }),
            application_properties: Some(vec![(Value::str("k"), Value::Long(5))]),
            body: Body::Data(vec![
                Bytes::from_static(b"hello"),
                Bytes::from_static(b"world"),
            ]),
            footer: Some(vec![(Value::symbol("f"), Value::Null)]),
        }
    }

    #[test]
    fn round_trips() {
        for body in [
            Body::Data(vec![Bytes::from_static(b"x")]),
            Body::Sequence(vec![vec![Value::Int(1)], vec![]]),
            Body::Value(Value::str("v")),
            Body::None,
        ] {
            let m = Message { body, ..full() };
            let b = m.to_bytes().unwrap();
            assert_eq!(Message::decode(b).unwrap(), m);
        }
    }

    #[test]
    fn symbolic_descriptors_and_short_properties() {
        // amqp:data:binary with a symbolic descriptor; a properties list cut after 1 field.
        let mut out = BytesMut::new();
        let props = Value::Described(
            Box::new(Value::Ulong(0x73)),
            Box::new(Value::List(vec![Value::str("id")])),
        );
        encode(&props, &mut out).unwrap();
        let data = Value::Described(
            Box::new(Value::symbol("amqp:data:binary")),
            Box::new(Value::Binary(Bytes::from_static(b"b"))),
        );
        encode(&data, &mut out).unwrap();
        let m = Message::decode(out.freeze()).unwrap();
        assert_eq!(m.properties.unwrap().message_id, Some(Value::str("id")));
        assert_eq!(m.body, Body::Data(vec![Bytes::from_static(b"b")]));
    }

    #[test]
    fn order_enforced_and_truncation_errors() {
        let mut out = BytesMut::new();
        Message {
            body: Body::Data(vec![Bytes::from_static(b"x")]),
            ..Default::default()
        }
        .encode(&mut out)
        .unwrap();
        Message {
            properties: Some(Properties::default()),
            ..Default::default()
        }
        .encode(&mut out)
        .unwrap();
        assert!(Message::decode(out.freeze()).is_err());
        let b = full().to_bytes().unwrap();
        for cut in 1..b.len() {
            let _ = Message::decode(b.slice(..cut)); // must not panic
        }
    }
}
