//! Field tables. Incoming tables are first validated here by a small non-recursive-in-spirit
//! walker with an explicit depth limit (so a table nested ten thousand deep is refused, not
//! a stack overflow), then decoded with amq-protocol-types.
//!
//! A table that does not parse is `AmqpError::unanswerable`: RabbitMQ's parser crashes on
//! it, so a method carrying one loses the connection without a frame (a content header
//! carrying one is answered with 541 by the caller, as RabbitMQ's channel does).

use amq_protocol_types::{AMQPValue, FieldTable};
use bytes::{BufMut, BytesMut};

use super::error::AmqpError;

/// Deepest nesting of tables and arrays accepted. RabbitMQ has no limit; ours keeps the
/// recursive decoder far from the stack's end (tests/fidelity/allow.toml).
pub const MAX_DEPTH: usize = 128;

fn too_short() -> AmqpError {
    AmqpError::unanswerable("field table value runs past the end of its table")
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], AmqpError> {
    if buf.len() < n {
        return Err(too_short());
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

fn len32(buf: &mut &[u8]) -> Result<usize, AmqpError> {
    Ok(u32::from_be_bytes(take(buf, 4)?.try_into().expect("4")) as usize)
}

/// Validates the body of a field table (without its length prefix).
pub fn validate(mut body: &[u8], depth: usize) -> Result<(), AmqpError> {
    if depth >= MAX_DEPTH {
        return Err(AmqpError::unanswerable(format!(
            "field tables nested deeper than {MAX_DEPTH}"
        )));
    }
    while !body.is_empty() {
        let key_len = take(&mut body, 1)?[0] as usize;
        let key = take(&mut body, key_len)?;
        if std::str::from_utf8(key).is_err() {
            return Err(AmqpError::unanswerable(
                "field table key is not valid UTF-8",
            ));
        }
        validate_value(&mut body, depth)?;
    }
    Ok(())
}

fn validate_value(buf: &mut &[u8], depth: usize) -> Result<(), AmqpError> {
    let tag = take(buf, 1)?[0];
    let fixed = match tag {
        b't' | b'b' | b'B' => 1,
        b's' | b'u' | b'U' => 2,
        b'I' | b'i' => 4,
        b'l' | b'L' | b'T' => 8,
        // Erlang has no NaN or infinity: RabbitMQ cannot parse them.
        b'f' => {
            let v = f32::from_be_bytes(take(buf, 4)?.try_into().expect("4"));
            return finite(v.is_finite());
        }
        b'd' => {
            let v = f64::from_be_bytes(take(buf, 8)?.try_into().expect("8"));
            return finite(v.is_finite());
        }
        b'D' => 5,
        b'V' => 0,
        b'S' | b'x' => {
            let n = len32(buf)?;
            take(buf, n)?;
            return Ok(());
        }
        b'F' => {
            let n = len32(buf)?;
            let inner = take(buf, n)?;
            return validate(inner, depth + 1);
        }
        b'A' => {
            let n = len32(buf)?;
            let mut inner = take(buf, n)?;
            if depth + 1 >= MAX_DEPTH {
                return Err(AmqpError::unanswerable(format!(
                    "field arrays nested deeper than {MAX_DEPTH}"
                )));
            }
            while !inner.is_empty() {
                validate_value(&mut inner, depth + 1)?;
            }
            return Ok(());
        }
        other => {
            return Err(AmqpError::unanswerable(format!(
                "unknown field table type tag {:?}",
                other as char
            )))
        }
    };
    take(buf, fixed)?;
    Ok(())
}

fn finite(ok: bool) -> Result<(), AmqpError> {
    if ok {
        Ok(())
    } else {
        Err(AmqpError::unanswerable(
            "field table holds a NaN or infinite float",
        ))
    }
}

/// Skips one value (tag and contents) of an already-validated table.
fn skip_value(buf: &mut &[u8]) -> Option<()> {
    let tag = *buf.first()?;
    *buf = &buf[1..];
    let n = match tag {
        b't' | b'b' | b'B' => 1,
        b's' | b'u' | b'U' => 2,
        b'I' | b'i' | b'f' => 4,
        b'l' | b'L' | b'T' | b'd' => 8,
        b'D' => 5,
        b'V' => 0,
        b'S' | b'x' | b'F' | b'A' => {
            4 + u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize
        }
        _ => return None,
    };
    *buf = buf.get(n..)?;
    Some(())
}

/// The encoded value (type tag included) of the top-level entry `key` of a validated
/// table (its bytes with the u32 length prefix); no allocation.
pub fn raw_value<'a>(raw: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let mut body = raw.get(4..)?;
    while let Some(&len) = body.first() {
        let k = body.get(1..1 + len as usize)?;
        body = &body[1 + len as usize..];
        let value = body;
        skip_value(&mut body)?;
        if k == key.as_bytes() {
            return Some(&value[..value.len() - body.len()]);
        }
    }
    None
}

/// The long strings of the top-level array `key` of a validated table (its bytes with the
/// u32 length prefix): what RabbitMQ reads from the `CC` and `BCC` headers. Walks the
/// top level only; no allocation.
pub fn string_array<'a>(raw: &'a [u8], key: &str) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut body = raw.get(4..).unwrap_or_default();
    let mut found: &[u8] = &[];
    while let Some(&len) = body.first() {
        let Some(k) = body.get(1..1 + len as usize) else {
            break;
        };
        body = &body[1 + len as usize..];
        let value = body;
        if skip_value(&mut body).is_none() {
            break;
        }
        if k == key.as_bytes() && value.first() == Some(&b'A') {
            found = &value[5..value.len() - body.len()];
            break;
        }
    }
    std::iter::from_fn(move || loop {
        let tag = *found.first()?;
        let mut rest = found;
        skip_value(&mut rest)?;
        let value = &found[1..found.len() - rest.len()];
        found = rest;
        if tag == b'S' {
            return Some(&value[4..]);
        }
    })
}

/// Decodes an already-validated table (its bytes including the u32 length prefix).
pub fn decode(raw: &[u8]) -> Result<FieldTable, AmqpError> {
    if raw.len() <= 4 {
        return Ok(FieldTable::default());
    }
    amq_protocol_types::parsing::parse_field_table(raw)
        .map(|(_, t)| t)
        .map_err(|_| AmqpError::unanswerable("malformed field table"))
}

/// A string value from a table, if present and string-typed.
pub fn get_str<'a>(t: &'a FieldTable, key: &str) -> Option<&'a str> {
    match t.inner().get(key)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

/// An integer value from a table, if present and integer-typed.
pub fn get_int(t: &FieldTable, key: &str) -> Option<i64> {
    int_value(t.inner().get(key)?)
}

/// The value of an integer of any width (RabbitMQ's integer argument types: not decimal,
/// timestamp or floats).
pub fn int_value(v: &AMQPValue) -> Option<i64> {
    Some(match v {
        AMQPValue::ShortShortInt(v) => *v as i64,
        AMQPValue::ShortShortUInt(v) => *v as i64,
        AMQPValue::ShortInt(v) => *v as i64,
        AMQPValue::ShortUInt(v) => *v as i64,
        AMQPValue::LongInt(v) => *v as i64,
        AMQPValue::LongUInt(v) => *v as i64,
        AMQPValue::LongLongInt(v) => *v,
        _ => return None,
    })
}

/// A small encoder for the tables the server sends (server-properties).
pub enum Value<'a> {
    Str(&'a str),
    Bool(bool),
    Table(&'a [(&'a str, Value<'a>)]),
}

/// Encodes a table, with its u32 length prefix.
pub fn encode(out: &mut BytesMut, entries: &[(&str, Value<'_>)]) {
    let at = out.len();
    out.put_u32(0);
    for (key, value) in entries {
        out.put_u8(key.len() as u8);
        out.put_slice(key.as_bytes());
        match value {
            Value::Str(s) => {
                out.put_u8(b'S');
                out.put_u32(s.len() as u32);
                out.put_slice(s.as_bytes());
            }
            Value::Bool(b) => {
                out.put_u8(b't');
                out.put_u8(*b as u8);
            }
            Value::Table(t) => {
                out.put_u8(b'F');
                encode(out, t);
            }
        }
    }
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_refused_without_recursion_blowup() {
        // 10,000 nested tables: each level is key "a", tag 'F', u32 length, contents.
        let depth = 10_000;
        let mut inner: Vec<u8> = Vec::new();
        for _ in 0..depth {
            let mut outer = vec![1, b'a', b'F'];
            outer.extend_from_slice(&(inner.len() as u32).to_be_bytes());
            outer.extend_from_slice(&inner);
            inner = outer;
        }
        let err = validate(&inner, 0).unwrap_err();
        assert!(err.unanswerable);
    }

    #[test]
    fn the_deepest_accepted_table_decodes_on_a_small_stack() {
        // MAX_DEPTH - 1 levels validate; decoding them (amq-protocol-types recurses) must
        // fit well inside a tokio worker's 2 MiB stack: try it on a quarter of that.
        let mut inner: Vec<u8> = Vec::new();
        for _ in 0..MAX_DEPTH - 1 {
            let mut outer = vec![1, b'a', b'F'];
            outer.extend_from_slice(&(inner.len() as u32).to_be_bytes());
            outer.extend_from_slice(&inner);
            inner = outer;
        }
        validate(&inner, 0).unwrap();
        let mut raw = (inner.len() as u32).to_be_bytes().to_vec();
        raw.extend_from_slice(&inner);
        std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || decode(&raw).unwrap())
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn non_utf8_keys_are_refused() {
        // Found by the `field_table` fuzz target: such a key passed validation, then failed
        // to decode.
        let err = validate(&[2, 0xc3, 0x28, b'V'], 0).unwrap_err();
        assert!(err.unanswerable);
    }

    #[test]
    fn unknown_tag_short_length_and_nan_are_unparseable() {
        for bad in [
            &[1, b'k', b'Z'][..],
            &[1, b'k', b'S', 0, 0, 0, 9, b'x'],
            &[1, b'k', b'd', 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],
            &[1, b'k', b'f', 0x7f, 0x80, 0, 0],
        ] {
            assert!(validate(bad, 0).unwrap_err().unanswerable, "{bad:?}");
        }
        assert!(validate(&[1, b'k', b'd', 0x3f, 0xf0, 0, 0, 0, 0, 0, 0], 0).is_ok());
    }

    #[test]
    fn string_arrays_are_read_from_the_top_level() {
        // {"a": 1 (long), "CC": ["k1", 5 (short), "k2"], "BCC": "notarray"}
        let mut body = vec![1, b'a', b'l'];
        body.extend_from_slice(&1u64.to_be_bytes());
        let mut arr = vec![b'S', 0, 0, 0, 2, b'k', b'1', b's', 0, 5];
        arr.extend_from_slice(&[b'S', 0, 0, 0, 2, b'k', b'2']);
        body.extend_from_slice(&[2, b'C', b'C', b'A']);
        body.extend_from_slice(&(arr.len() as u32).to_be_bytes());
        body.extend_from_slice(&arr);
        body.extend_from_slice(&[3, b'B', b'C', b'C', b'S', 0, 0, 0, 1, b'x']);
        validate(&body, 0).unwrap();
        let mut raw = (body.len() as u32).to_be_bytes().to_vec();
        raw.extend_from_slice(&body);
        let cc: Vec<&[u8]> = string_array(&raw, "CC").collect();
        assert_eq!(cc, [&b"k1"[..], b"k2"]);
        assert_eq!(string_array(&raw, "BCC").count(), 0);
        assert_eq!(string_array(&raw, "X").count(), 0);
        assert_eq!(string_array(&[0, 0], "CC").count(), 0);
        assert_eq!(raw_value(&raw, "BCC"), Some(&[b'S', 0, 0, 0, 1, b'x'][..]));
        assert_eq!(raw_value(&raw, "a").map(<[u8]>::len), Some(9));
        assert_eq!(raw_value(&raw, "nope"), None);
    }

    #[test]
    fn round_trip_through_amq_protocol_types() {
        let mut out = BytesMut::new();
        encode(
            &mut out,
            &[
                ("product", Value::Str("Warren")),
                (
                    "capabilities",
                    Value::Table(&[("basic.nack", Value::Bool(true))]),
                ),
            ],
        );
        let body = &out[4..];
        validate(body, 0).unwrap();
        let t = decode(&out).unwrap();
        assert_eq!(get_str(&t, "product"), Some("Warren"));
    }
}
