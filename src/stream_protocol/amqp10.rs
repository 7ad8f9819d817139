//! AMQP 1.0 type system values: decode any encoding, encode the way RabbitMQ 3.10's
//! `amqp10_binary_generator` does (smallest form for uint/ulong/int/long, `str8` below
//! 255 bytes, `0x56` booleans, `list8`/`map8` when they fit), so that messages the broker
//! builds are the bytes RabbitMQ would build.
//!
//! Strings and symbols keep their raw bytes: RabbitMQ never validates UTF-8 in them, and a
//! broker passing messages through should not either.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Ubyte(u8),
    Ushort(u16),
    Uint(u32),
    Ulong(u64),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    Decimal32([u8; 4]),
    Decimal64([u8; 8]),
    Decimal128([u8; 16]),
    /// A UTF-32 code point.
    Char(u32),
    /// Milliseconds since the epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
    Binary(Bytes),
    /// UTF-8 (not checked).
    Str(Bytes),
    Symbol(Bytes),
    Described(Box<Value>, Box<Value>),
    List(Vec<Value>),
    Map(Vec<(Value, Value)>),
    /// Elements share one constructor; the encoder takes it from the first element.
    Array(Vec<Value>),
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Str(Bytes::copy_from_slice(s.as_bytes()))
    }
    pub fn symbol(s: &str) -> Value {
        Value::Symbol(Bytes::copy_from_slice(s.as_bytes()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Amqp10Error {
    Truncated,
    UnknownConstructor(u8),
    /// A compound whose count cannot fit in its size.
    BadCount,
    /// Compounds nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// An array whose elements do not share one type (only when encoding).
    MixedArray,
    /// A message section that is not where the format allows it.
    BadSection(&'static str),
}

impl fmt::Display for Amqp10Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amqp10Error::Truncated => f.write_str("AMQP 1.0 value truncated"),
            Amqp10Error::UnknownConstructor(c) => {
                write!(f, "unknown AMQP 1.0 constructor {c:#04x}")
            }
            Amqp10Error::BadCount => f.write_str("AMQP 1.0 compound count exceeds its size"),
            Amqp10Error::TooDeep => f.write_str("AMQP 1.0 value nested too deep"),
            Amqp10Error::MixedArray => f.write_str("AMQP 1.0 array elements of different types"),
            Amqp10Error::BadSection(s) => write!(f, "AMQP 1.0 message: {s}"),
        }
    }
}

impl std::error::Error for Amqp10Error {}

/// Nesting limit of lists, maps, arrays and descriptors: the decoder recurses, and a
/// hostile message must not exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// Decodes one value from the front of `buf`.
pub fn decode(buf: &mut Bytes) -> Result<Value, Amqp10Error> {
    decode_depth(buf, 0)
}

fn need(buf: &Bytes, n: usize) -> Result<(), Amqp10Error> {
    if buf.remaining() < n {
        Err(Amqp10Error::Truncated)
    } else {
        Ok(())
    }
}

fn take(buf: &mut Bytes, n: usize) -> Result<Bytes, Amqp10Error> {
    need(buf, n)?;
    Ok(buf.split_to(n))
}

fn fixed<const N: usize>(buf: &mut Bytes) -> Result<[u8; N], Amqp10Error> {
    need(buf, N)?;
    let mut a = [0u8; N];
    buf.copy_to_slice(&mut a);
    Ok(a)
}

fn decode_depth(buf: &mut Bytes, depth: usize) -> Result<Value, Amqp10Error> {
    if depth > MAX_DEPTH {
        return Err(Amqp10Error::TooDeep);
    }
    need(buf, 1)?;
    let code = buf.get_u8();
    if code == 0x00 {
        let descriptor = decode_depth(buf, depth + 1)?;
        let value = decode_depth(buf, depth + 1)?;
        return Ok(Value::Described(Box::new(descriptor), Box::new(value)));
    }
    decode_with(code, buf, depth)
}

/// Decodes the value of constructor `code` (also used for array elements).
fn decode_with(code: u8, buf: &mut Bytes, depth: usize) -> Result<Value, Amqp10Error> {
    Ok(match code {
        0x40 => Value::Null,
        0x41 => Value::Bool(true),
        0x42 => Value::Bool(false),
        0x56 => Value::Bool(fixed::<1>(buf)?[0] != 0),
        0x50 => Value::Ubyte(fixed::<1>(buf)?[0]),
        0x60 => Value::Ushort(u16::from_be_bytes(fixed(buf)?)),
        0x70 => Value::Uint(u32::from_be_bytes(fixed(buf)?)),
        0x52 => Value::Uint(fixed::<1>(buf)?[0] as u32),
        0x43 => Value::Uint(0),
        0x80 => Value::Ulong(u64::from_be_bytes(fixed(buf)?)),
        0x53 => Value::Ulong(fixed::<1>(buf)?[0] as u64),
        0x44 => Value::Ulong(0),
        0x51 => Value::Byte(fixed::<1>(buf)?[0] as i8),
        0x61 => Value::Short(i16::from_be_bytes(fixed(buf)?)),
        0x71 => Value::Int(i32::from_be_bytes(fixed(buf)?)),
        0x54 => Value::Int(fixed::<1>(buf)?[0] as i8 as i32),
        0x81 => Value::Long(i64::from_be_bytes(fixed(buf)?)),
        0x55 => Value::Long(fixed::<1>(buf)?[0] as i8 as i64),
        0x72 => Value::Float(f32::from_be_bytes(fixed(buf)?)),
        0x82 => Value::Double(f64::from_be_bytes(fixed(buf)?)),
        0x74 => Value::Decimal32(fixed(buf)?),
        0x84 => Value::Decimal64(fixed(buf)?),
        0x94 => Value::Decimal128(fixed(buf)?),
        0x73 => Value::Char(u32::from_be_bytes(fixed(buf)?)),
        0x83 => Value::Timestamp(i64::from_be_bytes(fixed(buf)?)),
        0x98 => Value::Uuid(fixed(buf)?),
        0xa0 | 0xa1 | 0xa3 => {
            let n = fixed::<1>(buf)?[0] as usize;
            variable(code, take(buf, n)?)
        }
        0xb0 | 0xb1 | 0xb3 => {
            let n = u32::from_be_bytes(fixed(buf)?) as usize;
            variable(code, take(buf, n)?)
        }
        0x45 => Value::List(Vec::new()),
        0xc0 | 0xd0 | 0xc1 | 0xd1 | 0xe0 | 0xf0 => {
            let wide = matches!(code, 0xd0 | 0xd1 | 0xf0);
            let size = if wide {
                u32::from_be_bytes(fixed(buf)?) as usize
            } else {
                fixed::<1>(buf)?[0] as usize
            };
            let mut body = take(buf, size)?;
            let count = if wide {
                u32::from_be_bytes(fixed(&mut body)?) as usize
            } else {
                fixed::<1>(&mut body)?[0] as usize
            };
            compound(code, count, &mut body, depth)?
        }
        other => return Err(Amqp10Error::UnknownConstructor(other)),
    })
}

fn variable(code: u8, b: Bytes) -> Value {
    match code {
        0xa0 | 0xb0 => Value::Binary(b),
        0xa1 | 0xb1 => Value::Str(b),
        _ => Value::Symbol(b),
    }
}

fn compound(code: u8, count: usize, body: &mut Bytes, depth: usize) -> Result<Value, Amqp10Error> {
    match code {
        0xc0 | 0xd0 | 0xc1 | 0xd1 => {
            // Every element takes at least one byte: a count beyond the body is a lie.
            if count > body.remaining() {
                return Err(Amqp10Error::BadCount);
            }
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(decode_depth(body, depth + 1)?);
            }
            if body.has_remaining() {
                return Err(Amqp10Error::BadCount);
            }
            if code == 0xc0 || code == 0xd0 {
                return Ok(Value::List(items));
            }
            if !count.is_multiple_of(2) {
                return Err(Amqp10Error::BadCount);
            }
            let mut pairs = Vec::with_capacity(count / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Ok(Value::Map(pairs))
        }
        _ => {
            // Array: one constructor (possibly described), then `count` bare elements.
            need(body, 1)?;
            let mut ctor = body.get_u8();
            let mut descriptor = None;
            if ctor == 0x00 {
                descriptor = Some(decode_depth(body, depth + 1)?);
                need(body, 1)?;
                ctor = body.get_u8();
            }
            // Zero-width element types (null, true, false, ...) could claim any count;
            // cap them by the bytes that carried the count instead.
            if count > body.remaining().max(1) * 8 {
                return Err(Amqp10Error::BadCount);
            }
            let mut items = Vec::with_capacity(count.min(body.remaining()));
            for _ in 0..count {
                let v = decode_with(ctor, body, depth + 1)?;
                items.push(match &descriptor {
                    Some(d) => Value::Described(Box::new(d.clone()), Box::new(v)),
                    None => v,
                });
            }
            Ok(Value::Array(items))
        }
    }
}

/// Encodes a value RabbitMQ-style.
pub fn encode(v: &Value, out: &mut BytesMut) -> Result<(), Amqp10Error> {
    match v {
        Value::Null => out.put_u8(0x40),
        Value::Bool(b) => out.put_slice(&[0x56, *b as u8]),
        Value::Ubyte(x) => out.put_slice(&[0x50, *x]),
        Value::Ushort(x) => {
            out.put_u8(0x60);
            out.put_u16(*x)
        }
        Value::Uint(0) => out.put_u8(0x43),
        Value::Uint(x) if *x < 256 => out.put_slice(&[0x52, *x as u8]),
        Value::Uint(x) => {
            out.put_u8(0x70);
            out.put_u32(*x)
        }
        Value::Ulong(0) => out.put_u8(0x44),
        Value::Ulong(x) if *x < 256 => out.put_slice(&[0x53, *x as u8]),
        Value::Ulong(x) => {
            out.put_u8(0x80);
            out.put_u64(*x)
        }
        Value::Byte(x) => out.put_slice(&[0x51, *x as u8]),
        Value::Short(x) => {
            out.put_u8(0x61);
            out.put_i16(*x)
        }
        Value::Int(x) if (-128..128).contains(x) => out.put_slice(&[0x54, *x as i8 as u8]),
        Value::Int(x) => {
            out.put_u8(0x71);
            out.put_i32(*x)
        }
        Value::Long(x) if (-128..128).contains(x) => out.put_slice(&[0x55, *x as i8 as u8]),
        Value::Long(x) => {
            out.put_u8(0x81);
            out.put_i64(*x)
        }
        Value::Float(x) => {
            out.put_u8(0x72);
            out.put_f32(*x)
        }
        Value::Double(x) => {
            out.put_u8(0x82);
            out.put_f64(*x)
        }
        Value::Decimal32(b) => {
            out.put_u8(0x74);
            out.put_slice(b)
        }
        Value::Decimal64(b) => {
            out.put_u8(0x84);
            out.put_slice(b)
        }
        Value::Decimal128(b) => {
            out.put_u8(0x94);
            out.put_slice(b)
        }
        Value::Char(c) => {
            out.put_u8(0x73);
            out.put_u32(*c)
        }
        Value::Timestamp(t) => {
            out.put_u8(0x83);
            out.put_i64(*t)
        }
        Value::Uuid(u) => {
            out.put_u8(0x98);
            out.put_slice(u)
        }
        Value::Binary(b) => put_variable(out, 0xa0, 0xb0, b),
        Value::Str(b) => put_variable(out, 0xa1, 0xb1, b),
        // RabbitMQ writes every symbol as sym8 (wrong past 255 bytes); sym8 while it fits.
        Value::Symbol(b) if b.len() <= 255 => {
            out.put_slice(&[0xa3, b.len() as u8]);
            out.put_slice(b)
        }
        Value::Symbol(b) => put_variable(out, 0xa3, 0xb3, b),
        Value::Described(d, v) => {
            out.put_u8(0x00);
            encode(d, out)?;
            encode(v, out)?;
        }
        Value::List(items) if items.is_empty() => out.put_u8(0x45),
        Value::List(items) => {
            let mut body = BytesMut::new();
            for i in items {
                encode(i, &mut body)?;
            }
            put_compound(out, 0xc0, 0xd0, items.len(), &body);
        }
        Value::Map(pairs) => {
            let mut body = BytesMut::new();
            for (k, v) in pairs {
                encode(k, &mut body)?;
                encode(v, &mut body)?;
            }
            put_compound(out, 0xc1, 0xd1, pairs.len() * 2, &body);
        }
        Value::Array(items) => {
            let mut body = BytesMut::new();
            if let Some(first) = items.first() {
                let ctor = wide_constructor(first);
                body.put_u8(ctor);
                for i in items {
                    if wide_constructor(i) != ctor {
                        return Err(Amqp10Error::MixedArray);
                    }
                    let mut one = BytesMut::new();
                    encode_wide(i, &mut one)?;
                    body.put_slice(&one[1..]);
                }
            } else {
                body.put_u8(0x40);
            }
            put_compound(out, 0xe0, 0xf0, items.len(), &body);
        }
    }
    Ok(())
}

/// Variable-width values: the one-byte-length form below 255 bytes, as RabbitMQ does.
fn put_variable(out: &mut BytesMut, short: u8, long: u8, b: &[u8]) {
    if b.len() < 255 {
        out.put_slice(&[short, b.len() as u8]);
    } else {
        out.put_u8(long);
        out.put_u32(b.len() as u32);
    }
    out.put_slice(b);
}

/// Compounds: the 8-bit form when fewer than 255 elements and size + 1 < 256.
fn put_compound(out: &mut BytesMut, short: u8, long: u8, count: usize, body: &[u8]) {
    if count >= 255 || body.len() + 1 >= 256 {
        out.put_u8(long);
        out.put_u32(body.len() as u32 + 4);
        out.put_u32(count as u32);
    } else {
        out.put_slice(&[short, body.len() as u8 + 1, count as u8]);
    }
    out.put_slice(body);
}

/// The fixed-form constructor of a value, for array elements (which cannot use the
/// value-dependent short forms).
fn wide_constructor(v: &Value) -> u8 {
    match v {
        Value::Null => 0x40,
        Value::Bool(_) => 0x56,
        Value::Ubyte(_) => 0x50,
        Value::Ushort(_) => 0x60,
        Value::Uint(_) => 0x70,
        Value::Ulong(_) => 0x80,
        Value::Byte(_) => 0x51,
        Value::Short(_) => 0x61,
        Value::Int(_) => 0x71,
        Value::Long(_) => 0x81,
        Value::Float(_) => 0x72,
        Value::Double(_) => 0x82,
        Value::Decimal32(_) => 0x74,
        Value::Decimal64(_) => 0x84,
        Value::Decimal128(_) => 0x94,
        Value::Char(_) => 0x73,
        Value::Timestamp(_) => 0x83,
        Value::Uuid(_) => 0x98,
        Value::Binary(_) => 0xb0,
        Value::Str(_) => 0xb1,
        Value::Symbol(_) => 0xb3,
        // Described elements are not supported by this encoder; lists and maps use
        // their 32-bit forms.
        Value::Described(..) => 0x00,
        Value::List(_) => 0xd0,
        Value::Map(_) => 0xd1,
        Value::Array(_) => 0xf0,
    }
}

/// Encodes with the fixed-form constructor of [`wide_constructor`].
fn encode_wide(v: &Value, out: &mut BytesMut) -> Result<(), Amqp10Error> {
    match v {
        Value::Uint(x) => {
            out.put_u8(0x70);
            out.put_u32(*x)
        }
        Value::Ulong(x) => {
            out.put_u8(0x80);
            out.put_u64(*x)
        }
        Value::Int(x) => {
            out.put_u8(0x71);
            out.put_i32(*x)
        }
        Value::Long(x) => {
            out.put_u8(0x81);
            out.put_i64(*x)
        }
        Value::Binary(b) | Value::Str(b) | Value::Symbol(b) => {
            out.put_u8(wide_constructor(v));
            out.put_u32(b.len() as u32);
            out.put_slice(b);
        }
        Value::List(_) | Value::Map(_) | Value::Array(_) => {
            let mut inner = BytesMut::new();
            encode(v, &mut inner)?;
            out.put_u8(wide_constructor(v));
            match inner.first() {
                // Re-frame a short or empty compound in its 32-bit form.
                Some(0xc0 | 0xc1 | 0xe0) => {
                    let count = inner[2] as u32;
                    let body = &inner[3..];
                    out.put_u32(body.len() as u32 + 4);
                    out.put_u32(count);
                    out.put_slice(body);
                }
                Some(0x45) => {
                    out.put_u32(4);
                    out.put_u32(0);
                }
                _ => out.put_slice(&inner[1..]),
            }
        }
        Value::Described(..) => return Err(Amqp10Error::MixedArray),
        other => encode(other, out)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(v: Value) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(&v, &mut out).unwrap();
        let mut b = out.clone().freeze();
        assert_eq!(decode(&mut b).unwrap(), v);
        assert!(b.is_empty());
        out.to_vec()
    }

    #[test]
    fn rabbitmq_encodings() {
        assert_eq!(round(Value::Uint(0)), [0x43]);
        assert_eq!(round(Value::Uint(7)), [0x52, 7]);
        assert_eq!(round(Value::Ulong(300)), [0x80, 0, 0, 0, 0, 0, 0, 1, 0x2c]);
        assert_eq!(round(Value::Long(-1)), [0x55, 0xff]);
        assert_eq!(round(Value::Bool(true)), [0x56, 1]);
        assert_eq!(round(Value::str("ab")), [0xa1, 2, b'a', b'b']);
        assert_eq!(round(Value::symbol("x")), [0xa3, 1, b'x']);
        assert_eq!(round(Value::List(vec![])), [0x45]);
        assert_eq!(
            round(Value::Map(vec![(Value::str("k"), Value::Null)])),
            [0xc1, 5, 2, 0xa1, 1, b'k', 0x40]
        );
        let long = Value::Str(Bytes::from(vec![b'z'; 300]));
        assert_eq!(round(long)[..5], [0xb1, 0, 0, 1, 0x2c]);
    }

    #[test]
    fn compounds_and_arrays() {
        round(Value::List((0..300).map(Value::Int).collect()));
        round(Value::Array(vec![Value::Int(1), Value::Int(100_000)]));
        round(Value::Array(vec![Value::symbol("a"), Value::symbol("b")]));
        round(Value::Array(vec![
            Value::List(vec![]),
            Value::List(vec![Value::Null]),
        ]));
        round(Value::Described(
            Box::new(Value::Ulong(0x75)),
            Box::new(Value::Binary(Bytes::from_static(b"x"))),
        ));
        let mut out = BytesMut::new();
        assert_eq!(
            encode(&Value::Array(vec![Value::Int(1), Value::Null]), &mut out),
            Err(Amqp10Error::MixedArray)
        );
    }

    #[test]
    fn hostile_input() {
        // list32 claiming 2^32-1 elements in 4 bytes.
        let mut b = Bytes::from_static(&[
            0xd0, 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0x40, 0x40, 0x40, 0x40,
        ]);
        assert_eq!(decode(&mut b), Err(Amqp10Error::BadCount));
        // array32 of nulls claiming a huge count.
        let mut b = Bytes::from_static(&[0xf0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x40]);
        assert_eq!(decode(&mut b), Err(Amqp10Error::BadCount));
        // Deep nesting.
        let mut deep = vec![0x00u8; 10_000];
        deep.push(0x40);
        assert_eq!(decode(&mut Bytes::from(deep)), Err(Amqp10Error::TooDeep));
        // Every truncation of a valid value is an error, not a panic.
        let mut out = BytesMut::new();
        encode(
            &Value::Map(vec![(
                Value::symbol("k"),
                Value::List(vec![Value::Long(1 << 40)]),
            )]),
            &mut out,
        )
        .unwrap();
        for cut in 0..out.len() {
            assert!(decode(&mut Bytes::copy_from_slice(&out[..cut])).is_err());
        }
    }
}
