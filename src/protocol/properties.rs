//! Content headers: class, body size and the basic properties. The server forwards a
//! header's bytes unchanged to consumers; it only reads the few properties it acts on.

use super::error::{AmqpError, ReplyCode};
use super::wire::Reader;

/// What the broker needs to know from a content header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContentHeader<'a> {
    pub class_id: u16,
    pub body_size: u64,
    /// delivery-mode 2 = persistent.
    pub delivery_mode: u8,
    /// The raw `headers` table (with length prefix), if present.
    pub headers: Option<&'a [u8]>,
}

impl ContentHeader<'_> {
    pub fn persistent(&self) -> bool {
        self.delivery_mode == 2
    }
}

const FLAG_CONTENT_TYPE: u16 = 1 << 15;
const FLAG_CONTENT_ENCODING: u16 = 1 << 14;
const FLAG_HEADERS: u16 = 1 << 13;
const FLAG_DELIVERY_MODE: u16 = 1 << 12;

/// Decodes a content header frame's payload, validating every property present.
pub fn decode(payload: &[u8]) -> Result<ContentHeader<'_>, AmqpError> {
    let mut r = Reader::new(payload);
    let class_id = r.u16()?;
    let _weight = r.u16()?;
    let body_size = r.u64()?;
    let flags = r.u16()?;
    if flags & 1 != 0 {
        return Err(AmqpError::connection(
            ReplyCode::FrameError,
            "property flag continuation is not used by the basic class",
        ));
    }
    let mut h = ContentHeader {
        class_id,
        body_size,
        ..Default::default()
    };
    for bit in (1..16).rev() {
        let flag = 1u16 << bit;
        if flags & flag == 0 {
            continue;
        }
        match flag {
            FLAG_CONTENT_TYPE | FLAG_CONTENT_ENCODING => {
                r.shortstr()?;
            }
            FLAG_HEADERS => h.headers = Some(r.table_raw()?),
            FLAG_DELIVERY_MODE => h.delivery_mode = r.u8()?,
            // priority
            f if f == 1 << 11 => {
                r.u8()?;
            }
            // timestamp
            f if f == 1 << 6 => {
                r.u64()?;
            }
            // correlation-id, reply-to, expiration, message-id, type, user-id, app-id,
            // cluster-id: short strings.
            _ => {
                r.shortstr()?;
            }
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_delivery_mode_and_headers() {
        let mut p = vec![0, 60, 0, 0];
        p.extend_from_slice(&5u64.to_be_bytes());
        p.extend_from_slice(&(FLAG_CONTENT_TYPE | FLAG_HEADERS | FLAG_DELIVERY_MODE).to_be_bytes());
        p.extend_from_slice(&[10]);
        p.extend_from_slice(b"text/plain");
        p.extend_from_slice(&[0, 0, 0, 7, 1, b'k', b'S', 0, 0, 0, 0]);
        p.push(2);
        let h = decode(&p).unwrap();
        assert_eq!(h.body_size, 5);
        assert!(h.persistent());
        assert_eq!(h.headers.unwrap().len(), 11);
    }
}
