//! AMQP 0-9-1 primitive types: a bounds-checked reader over a frame payload and a writer
//! that appends to a `BytesMut`. Every length read from the wire is checked against the
//! bytes actually present before it is used, so no input can cause a large allocation.

use bytes::{BufMut, BytesMut};

use super::error::{AmqpError, ReplyCode};
use super::table;

/// Reads AMQP primitives from a method or header payload.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Pending bit flags: consecutive `bit` fields share an octet.
    bits: Option<(u8, u8)>,
    /// The body of the last table read, not yet validated (`check_table`).
    table: Option<&'a [u8]>,
}

fn truncated() -> AmqpError {
    AmqpError::new(
        ReplyCode::FrameError,
        "method arguments run past the end of the frame",
    )
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            bits: None,
            table: None,
        }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], AmqpError> {
        self.bits = None;
        if self.remaining() < n {
            return Err(truncated());
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8, AmqpError> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, AmqpError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }

    pub fn u32(&mut self) -> Result<u32, AmqpError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }

    pub fn u64(&mut self) -> Result<u64, AmqpError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }

    /// A `bit` field. Consecutive bits are packed into one octet, least significant first.
    pub fn bit(&mut self) -> Result<bool, AmqpError> {
        let (octet, index) = match self.bits {
            Some((octet, index)) if index < 8 => (octet, index),
            _ => (self.take(1)?[0], 0),
        };
        self.bits = Some((octet, index + 1));
        Ok(octet & (1 << index) != 0)
    }

    /// A short string (octet length, at most 255 bytes), as UTF-8.
    pub fn shortstr(&mut self) -> Result<&'a str, AmqpError> {
        let len = self.u8()? as usize;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map_err(|_| AmqpError::new(ReplyCode::SyntaxError, "short string is not valid UTF-8"))
    }

    /// A long string (u32 length), as raw bytes.
    pub fn longstr(&mut self) -> Result<&'a [u8], AmqpError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// A field table, returned as its raw encoded bytes including the length prefix. Its
    /// contents are validated (type tags, lengths, nesting depth) by `check_table`, once
    /// the caller has read every field: as in RabbitMQ, a method whose fields do not
    /// line up is a frame error even if its table is also bad.
    pub fn table_raw(&mut self) -> Result<&'a [u8], AmqpError> {
        let start = self.pos;
        let len = self.u32()? as usize;
        let body = self.take(len)?;
        if let Some(earlier) = self.table.replace(body) {
            table::validate(earlier, 0)?;
        }
        Ok(&self.buf[start..self.pos])
    }

    /// Validates the table read by `table_raw`, if any.
    pub fn check_table(&mut self) -> Result<(), AmqpError> {
        match self.table.take() {
            Some(body) => table::validate(body, 0),
            None => Ok(()),
        }
    }

    /// Skips the rest of the payload (reserved trailing fields).
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

/// Appends AMQP primitives to a buffer.
pub struct Writer<'a> {
    pub buf: &'a mut BytesMut,
    bits: Option<(usize, u8)>,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut BytesMut) -> Self {
        Writer { buf, bits: None }
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bits = None;
        self.buf.put_u8(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bits = None;
        self.buf.put_u16(v);
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bits = None;
        self.buf.put_u32(v);
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bits = None;
        self.buf.put_u64(v);
        self
    }

    pub fn bit(&mut self, v: bool) -> &mut Self {
        let (at, index) = match self.bits {
            Some((at, index)) if index < 8 => (at, index),
            _ => {
                self.buf.put_u8(0);
                (self.buf.len() - 1, 0)
            }
        };
        if v {
            self.buf[at] |= 1 << index;
        }
        self.bits = Some((at, index + 1));
        self
    }

    /// A short string; longer input is cut at 255 bytes (on a char boundary).
    pub fn shortstr(&mut self, s: &str) -> &mut Self {
        let mut end = s.len().min(255);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.u8(end as u8);
        self.buf.put_slice(&s.as_bytes()[..end]);
        self
    }

    pub fn longstr(&mut self, s: &[u8]) -> &mut Self {
        self.u32(s.len() as u32);
        self.buf.put_slice(s);
        self
    }

    pub fn raw(&mut self, s: &[u8]) -> &mut Self {
        self.bits = None;
        self.buf.put_slice(s);
        self
    }
}
