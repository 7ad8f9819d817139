//! Basic properties between the API's JSON and AMQP content headers, for
//! `/api/exchanges/{vhost}/{name}/publish` (JSON in) and `/api/queues/.../get` (JSON
//! out), with the names rabbit_mgmt_format uses (`content_type`, `delivery_mode`,
//! `headers`, ...).

use bytes::BytesMut;
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::broker::json_args;
use crate::protocol::table;
use crate::protocol::wire::{Reader, Writer};

/// The fourteen basic properties in flag order (bit 15 down to bit 2).
const PROPERTIES: [(&str, Kind); 14] = [
    ("content_type", Kind::Short),
    ("content_encoding", Kind::Short),
    ("headers", Kind::Table),
    ("delivery_mode", Kind::Octet),
    ("priority", Kind::Octet),
    ("correlation_id", Kind::Short),
    ("reply_to", Kind::Short),
    ("expiration", Kind::Short),
    ("message_id", Kind::Short),
    ("timestamp", Kind::Timestamp),
    ("type", Kind::Short),
    ("user_id", Kind::Short),
    ("app_id", Kind::Short),
    ("cluster_id", Kind::Short),
];

#[derive(Clone, Copy)]
enum Kind {
    Short,
    Table,
    Octet,
    Timestamp,
}

const BASIC_CLASS: u16 = 60;

/// A content header (class 60) for a body of `body_size` bytes with the properties of
/// the JSON object `props`; unknown keys are refused as RabbitMQ refuses them.
pub fn encode(props: &Map<String, Value>, body_size: u64) -> Result<Vec<u8>, ApiError> {
    if let Some(unknown) = props
        .keys()
        .find(|k| !PROPERTIES.iter().any(|(name, _)| name == k))
    {
        return Err(ApiError::bad_request(format!("Unknown property {unknown}")));
    }
    let mut flags = 0u16;
    let mut fields = BytesMut::new();
    let mut w = Writer::new(&mut fields);
    for (i, (name, kind)) in PROPERTIES.iter().enumerate() {
        let Some(v) = props.get(*name) else { continue };
        let bad = || ApiError::bad_request(format!("Invalid value for property {name}"));
        match kind {
            Kind::Short => {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(bad()),
                };
                if s.len() > 255 {
                    return Err(bad());
                }
                w.shortstr(&s);
            }
            Kind::Octet => {
                let n = v.as_u64().filter(|&n| n <= 255).ok_or_else(bad)?;
                w.u8(n as u8);
            }
            Kind::Timestamp => {
                w.u64(v.as_u64().ok_or_else(bad)?);
            }
            Kind::Table => {
                let obj = v.as_object().ok_or_else(bad)?;
                let t = json_args::to_field_table(obj).map_err(ApiError::bad_request)?;
                w.raw(&crate::broker::encode_table(&t));
            }
        }
        flags |= 1 << (15 - i);
    }
    let mut out = BytesMut::with_capacity(14 + fields.len());
    Writer::new(&mut out)
        .u16(BASIC_CLASS)
        .u16(0)
        .u64(body_size)
        .u16(flags)
        .raw(&fields);
    Ok(out.to_vec())
}

/// The properties of a content header as JSON (a malformed one shows as `{}`: the
/// header came from the log, whose records are checked, so this does not happen).
pub fn decode(header: &[u8]) -> Map<String, Value> {
    decode_checked(header).unwrap_or_default()
}

fn decode_checked(header: &[u8]) -> Option<Map<String, Value>> {
    let mut r = Reader::new(header);
    r.u16().ok()?;
    r.u16().ok()?;
    r.u64().ok()?;
    let flags = r.u16().ok()?;
    let mut out = Map::new();
    for (i, (name, kind)) in PROPERTIES.iter().enumerate() {
        if flags & (1 << (15 - i)) == 0 {
            continue;
        }
        let v = match kind {
            Kind::Short => Value::String(r.shortstr().ok()?.to_owned()),
            Kind::Octet => r.u8().ok()?.into(),
            Kind::Timestamp => r.u64().ok()?.into(),
            Kind::Table => {
                let t = table::decode(r.table_raw().ok()?).ok()?;
                Value::Object(json_args::to_json(&t))
            }
        };
        out.insert((*name).to_owned(), v);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::properties;
    use serde_json::json;

    #[test]
    fn round_trip_through_the_wire_decoder() {
        let props = json!({"content_type": "text/plain", "delivery_mode": 2,
                           "headers": {"a": 1, "b": "x"}, "priority": 3, "timestamp": 17,
                           "expiration": "60000"});
        let header = encode(props.as_object().unwrap(), 5).unwrap();
        let h = properties::decode(&header).unwrap();
        assert_eq!((h.class_id, h.body_size), (60, 5));
        assert!(h.persistent());
        assert_eq!(h.expiration, Some("60000"));
        assert_eq!(Value::Object(decode(&header)), props);
    }

    #[test]
    fn unknown_and_bad_values_are_refused() {
        assert!(encode(json!({"colour": "red"}).as_object().unwrap(), 0).is_err());
        assert!(encode(json!({"delivery_mode": 300}).as_object().unwrap(), 0).is_err());
        assert!(encode(json!({"headers": 1}).as_object().unwrap(), 0).is_err());
    }
}
