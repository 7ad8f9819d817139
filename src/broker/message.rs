//! The payload Warren stores for one message in a queue's log:
//!
//! ```text
//! u8 exchange length | exchange | u8 routing-key length | routing key |
//! u32 (BE) content-header length | content header payload as received | body
//! ```
//!
//! The content header is kept byte for byte, so deliveries forward exactly what the
//! publisher sent.

use amq_protocol_types::{AMQPValue, FieldTable, ShortString};
use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::{properties, table};

/// Largest prefix before the content header: two short strings and a u32.
pub const MAX_PREFIX: usize = 1 + 255 + 1 + 255 + 4;

/// Writes the prefix into `buf` and returns its length.
pub fn encode_prefix(
    buf: &mut [u8; MAX_PREFIX],
    exchange: &str,
    routing_key: &str,
    header_len: usize,
) -> usize {
    encode_prefix_bytes(buf, exchange.as_bytes(), routing_key.as_bytes(), header_len)
}

/// `encode_prefix` for names as stored (bytes; each cut at 255).
fn encode_prefix_bytes(
    buf: &mut [u8; MAX_PREFIX],
    exchange: &[u8],
    routing_key: &[u8],
    header_len: usize,
) -> usize {
    let e = exchange.len().min(255);
    let r = routing_key.len().min(255);
    buf[0] = e as u8;
    buf[1..1 + e].copy_from_slice(&exchange[..e]);
    buf[1 + e] = r as u8;
    buf[2 + e..2 + e + r].copy_from_slice(&routing_key[..r]);
    buf[2 + e + r..6 + e + r].copy_from_slice(&(header_len as u32).to_be_bytes());
    6 + e + r
}

/// A copy of stored message `payload` with `key` set to `value` in its headers table (how
/// a stream's `x-stream-offset` and a quorum queue's `x-delivery-count` reach a consumer).
/// The table is written back ordered by name, as RabbitMQ's `set_table_value` leaves it (a
/// decoded `FieldTable` is ordered by key). `None` if the stored message cannot be read.
pub fn with_header(payload: &[u8], key: &str, value: AMQPValue) -> Option<Bytes> {
    let m = view(payload)?;
    let props = properties::decode(m.header).ok()?;
    let mut headers = match props.headers {
        Some(raw) => table::decode(raw).ok()?,
        None => FieldTable::default(),
    };
    headers.insert(ShortString::from(key), value);
    let headers_raw = super::dead_letter::encode_table(&headers);
    let header = properties::rewrite(
        m.header,
        &properties::Rewrite {
            headers: Some(&headers_raw),
            drop_expiration: false,
            reply_to: None,
        },
    )?;
    let mut prefix = [0u8; MAX_PREFIX];
    let n = encode_prefix_bytes(&mut prefix, m.exchange, m.routing_key, header.len());
    let mut out = BytesMut::with_capacity(n + header.len() + m.body.len());
    out.put_slice(&prefix[..n]);
    out.put_slice(&header);
    out.put_slice(m.body);
    Some(out.freeze())
}

/// A stored message, split into its parts (all views of the stored bytes).
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub exchange: Bytes,
    pub routing_key: Bytes,
    pub header: Bytes,
    pub body: Bytes,
}

impl StoredMessage {
    pub fn exchange_str(&self) -> &str {
        std::str::from_utf8(&self.exchange).unwrap_or("")
    }

    pub fn routing_key_str(&self) -> &str {
        std::str::from_utf8(&self.routing_key).unwrap_or("")
    }
}

/// A stored message's parts, borrowed (no reference counting: for checks on hot paths).
#[derive(Debug, Clone, Copy)]
pub struct MessageView<'a> {
    pub exchange: &'a [u8],
    pub routing_key: &'a [u8],
    pub header: &'a [u8],
    pub body: &'a [u8],
}

/// Splits a stored payload into borrowed parts; `None` if it is malformed.
pub fn view(p: &[u8]) -> Option<MessageView<'_>> {
    let e = *p.first()? as usize;
    let r = *p.get(1 + e)? as usize;
    let h_at = 2 + e + r;
    let h = u32::from_be_bytes(p.get(h_at..h_at + 4)?.try_into().ok()?) as usize;
    let body_at = (h_at + 4).checked_add(h)?;
    if body_at > p.len() {
        return None;
    }
    Some(MessageView {
        exchange: &p[1..1 + e],
        routing_key: &p[2 + e..h_at],
        header: &p[h_at + 4..body_at],
        body: &p[body_at..],
    })
}

/// Splits a stored payload; `None` if it is malformed (never for what Warren wrote, since
/// records are CRC-checked, but a disk is untrusted input all the same).
pub fn decode(payload: &Bytes) -> Option<StoredMessage> {
    let v = view(payload)?;
    // Offsets from the view (plain `slice`: `slice_ref`'s subset checks cost on the
    // delivery path).
    let at = |part: &[u8]| part.as_ptr() as usize - payload.as_ptr() as usize;
    let range = |part: &[u8]| at(part)..at(part) + part.len();
    Some(StoredMessage {
        exchange: payload.slice(range(v.exchange)),
        routing_key: payload.slice(range(v.routing_key)),
        header: payload.slice(range(v.header)),
        body: payload.slice(range(v.body)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut prefix = [0u8; MAX_PREFIX];
        let n = encode_prefix(&mut prefix, "amq.direct", "key", 3);
        let mut all = prefix[..n].to_vec();
        all.extend_from_slice(b"HDRbody");
        let m = decode(&Bytes::from(all)).unwrap();
        assert_eq!(m.exchange_str(), "amq.direct");
        assert_eq!(m.routing_key_str(), "key");
        assert_eq!(&m.header[..], b"HDR");
        assert_eq!(&m.body[..], b"body");
        assert!(decode(&Bytes::from_static(&[5, 1])).is_none());
    }
}
