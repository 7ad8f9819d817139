//! Primitive readers and writers of the stream protocol: big-endian integers, int16-length
//! strings, int32-length byte strings, int32-count arrays.
//!
//! The reader never panics and never allocates more than the bytes it has in hand justify:
//! every length is checked against what remains before anything is copied or reserved.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// Why a frame body could not be decoded. RabbitMQ 3.10 treats every one of these the
/// same way (the frame becomes `{unknown, Bin}`), see [`super::command::DecodeError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The body ended inside a field.
    Truncated { needed: usize, remaining: usize },
    /// A string whose length is -1 where RabbitMQ expects a string (it reads the length as
    /// unsigned, so a null never matches).
    NullString,
    /// A length below -1.
    NegativeLength(i32),
    /// A string that is not UTF-8.
    InvalidUtf8,
    /// An array count larger than the remaining bytes could hold.
    CountTooLarge { count: u32, remaining: usize },
    /// Bytes left over after the last field.
    TrailingBytes(usize),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated { needed, remaining } => {
                write!(f, "truncated: {needed} bytes needed, {remaining} left")
            }
            WireError::NullString => f.write_str("null string where a string is required"),
            WireError::NegativeLength(n) => write!(f, "negative length {n}"),
            WireError::InvalidUtf8 => f.write_str("string is not UTF-8"),
            WireError::CountTooLarge { count, remaining } => {
                write!(f, "array count {count} cannot fit in {remaining} bytes")
            }
            WireError::TrailingBytes(n) => write!(f, "{n} bytes after the last field"),
        }
    }
}

impl std::error::Error for WireError {}

/// A cursor over a frame body. Byte strings are returned as slices of the shared buffer
/// (no copy).
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    pub fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The error for a body with bytes left after its last field.
    pub fn finish(&self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes(self.buf.len()))
        }
    }

    /// Takes the rest of the body as it is.
    pub fn rest(&mut self) -> Bytes {
        self.buf.split_off(0)
    }

    pub fn take(&mut self, n: usize) -> Result<Bytes, WireError> {
        if n > self.buf.len() {
            return Err(WireError::Truncated {
                needed: n,
                remaining: self.buf.len(),
            });
        }
        Ok(self.buf.split_to(n))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let b = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&b);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub fn i16(&mut self) -> Result<i16, WireError> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub fn i32(&mut self) -> Result<i32, WireError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// An int16-length string; -1 is null.
    pub fn nullable_string(&mut self) -> Result<Option<String>, WireError> {
        let len = self.i16()?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 {
            return Err(WireError::NegativeLength(len.into()));
        }
        let raw = self.take(len as usize)?;
        String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|_| WireError::InvalidUtf8)
    }

    /// An int16-length string that must not be null (RabbitMQ reads string lengths as
    /// unsigned, so it never accepts a null where it expects a string).
    pub fn string(&mut self) -> Result<String, WireError> {
        self.nullable_string()?.ok_or(WireError::NullString)
    }

    /// An int32-length byte string; -1 is null.
    pub fn nullable_bytes(&mut self) -> Result<Option<Bytes>, WireError> {
        let len = self.i32()?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 {
            return Err(WireError::NegativeLength(len));
        }
        self.take(len as usize).map(Some)
    }

    /// An int32 array count, checked against the remaining bytes given the smallest
    /// encoded size of one element, so a hostile count cannot size an allocation.
    pub fn count(&mut self, min_element_size: usize) -> Result<usize, WireError> {
        let count = self.u32()?;
        let needed = (count as u64).saturating_mul(min_element_size.max(1) as u64);
        if needed > self.buf.len() as u64 {
            return Err(WireError::CountTooLarge {
                count,
                remaining: self.buf.len(),
            });
        }
        Ok(count as usize)
    }

    /// An array of (string, string) pairs.
    pub fn string_map(&mut self) -> Result<Vec<(String, String)>, WireError> {
        let n = self.count(4)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.string()?;
            let v = self.string()?;
            out.push((k, v));
        }
        Ok(out)
    }

    /// An array of strings.
    pub fn string_list(&mut self) -> Result<Vec<String>, WireError> {
        let n = self.count(2)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.string()?);
        }
        Ok(out)
    }
}

/// Writes an int16-length string. Strings longer than 32,767 bytes cannot be represented;
/// they are cut at that length rather than written with a wrong length (callers validate
/// names long before this, RabbitMQ caps them at 255 or 256 bytes).
pub fn put_string(out: &mut BytesMut, s: &str) {
    let b = s.as_bytes();
    let len = b.len().min(i16::MAX as usize);
    out.put_i16(len as i16);
    out.put_slice(&b[..len]);
}

pub fn put_nullable_string(out: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(out, s),
        None => out.put_i16(-1),
    }
}

/// Writes an int32-length byte string (null as -1).
pub fn put_nullable_bytes(out: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            out.put_i32(b.len().min(i32::MAX as usize) as i32);
            out.put_slice(&b[..b.len().min(i32::MAX as usize)]);
        }
        None => out.put_i32(-1),
    }
}

pub fn put_count(out: &mut BytesMut, n: usize) {
    out.put_u32(n.min(u32::MAX as usize) as u32);
}

pub fn put_string_map(out: &mut BytesMut, map: &[(String, String)]) {
    put_count(out, map.len());
    for (k, v) in map {
        put_string(out, k);
        put_string(out, v);
    }
}

pub fn put_string_list(out: &mut BytesMut, list: &[String]) {
    put_count(out, list.len());
    for s in list {
        put_string(out, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_nulls() {
        let mut b = BytesMut::new();
        put_string(&mut b, "héllo");
        put_nullable_string(&mut b, None);
        put_nullable_bytes(&mut b, Some(b"xy"));
        put_nullable_bytes(&mut b, None);
        let mut r = Reader::new(b.freeze());
        assert_eq!(r.string().unwrap(), "héllo");
        assert_eq!(r.nullable_string().unwrap(), None);
        assert_eq!(r.nullable_bytes().unwrap().as_deref(), Some(&b"xy"[..]));
        assert_eq!(r.nullable_bytes().unwrap(), None);
        r.finish().unwrap();
    }

    #[test]
    fn null_string_refused_where_required() {
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff]));
        assert_eq!(r.string(), Err(WireError::NullString));
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xfe]));
        assert_eq!(r.string(), Err(WireError::NegativeLength(-2)));
    }

    #[test]
    fn truncation_is_an_error() {
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x05, b'a']));
        assert!(matches!(r.string(), Err(WireError::Truncated { .. })));
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x00, 0x01]));
        assert!(matches!(r.u32(), Err(WireError::Truncated { .. })));
    }

    #[test]
    fn hostile_counts_refused_before_allocation() {
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0, 0]));
        assert!(matches!(
            r.string_map(),
            Err(WireError::CountTooLarge { .. })
        ));
        let mut r = Reader::new(Bytes::from_static(&[0x40, 0, 0, 0]));
        assert!(matches!(
            r.string_list(),
            Err(WireError::CountTooLarge { .. })
        ));
    }

    #[test]
    fn invalid_utf8_refused() {
        let mut r = Reader::new(Bytes::from_static(&[0, 1, 0xff]));
        assert_eq!(r.string(), Err(WireError::InvalidUtf8));
    }
}
