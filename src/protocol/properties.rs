//! Content headers: class, body size and the basic properties. The server forwards a
//! header's bytes unchanged to consumers; it only reads the few properties it acts on.

use super::error::{AmqpError, ReplyCode};
use super::wire::Reader;

/// What the broker needs to know from a content header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContentHeader<'a> {
    pub class_id: u16,
    pub body_size: u64,
    /// delivery-mode 2 = persistent, 1 = transient; anything else is refused at publish.
    pub delivery_mode: Option<u8>,
    /// The raw `headers` table (with length prefix), if present.
    pub headers: Option<&'a [u8]>,
    /// The `expiration` property (a per-message TTL in milliseconds, as a string).
    pub expiration: Option<&'a str>,
    /// The `user-id` property (must name the publishing user).
    pub user_id: Option<&'a str>,
}

impl ContentHeader<'_> {
    pub fn persistent(&self) -> bool {
        self.delivery_mode == Some(2)
    }
}

const FLAG_HEADERS: u16 = 1 << 13;
const FLAG_DELIVERY_MODE: u16 = 1 << 12;
const FLAG_PRIORITY: u16 = 1 << 11;
const FLAG_EXPIRATION: u16 = 1 << 8;
const FLAG_TIMESTAMP: u16 = 1 << 6;
const FLAG_USER_ID: u16 = 1 << 4;

/// Decodes a content header frame's payload, validating every property present.
pub fn decode(payload: &[u8]) -> Result<ContentHeader<'_>, AmqpError> {
    let mut r = Reader::new(payload);
    let class_id = r.u16()?;
    let _weight = r.u16()?;
    let body_size = r.u64()?;
    let flags = r.u16()?;
    if flags & 1 != 0 {
        return Err(AmqpError::new(
            ReplyCode::FrameError,
            "property flag continuation is not used by the basic class",
        ));
    }
    let mut h = ContentHeader {
        class_id,
        body_size,
        ..Default::default()
    };
    // Bits 15..2 are the fourteen basic properties; bit 1 is unused (RabbitMQ ignores it).
    for bit in (2..16).rev() {
        let flag = 1u16 << bit;
        if flags & flag == 0 {
            continue;
        }
        match flag {
            FLAG_HEADERS => h.headers = Some(r.table_raw()?),
            FLAG_DELIVERY_MODE => h.delivery_mode = Some(r.u8()?),
            FLAG_PRIORITY => {
                r.u8()?;
            }
            FLAG_TIMESTAMP => {
                r.u64()?;
            }
            FLAG_EXPIRATION => h.expiration = Some(r.shortstr()?),
            FLAG_USER_ID => h.user_id = Some(r.shortstr()?),
            // content-type, content-encoding, correlation-id, reply-to, message-id, type,
            // app-id, cluster-id: short strings.
            _ => {
                r.shortstr()?;
            }
        }
    }
    r.check_table()?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAG_CONTENT_TYPE: u16 = 1 << 15;

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
