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
    /// The `priority` property (any octet; priority queues cap it at their maximum).
    pub priority: Option<u8>,
    /// The `reply-to` property.
    pub reply_to: Option<&'a str>,
}

impl ContentHeader<'_> {
    pub fn persistent(&self) -> bool {
        self.delivery_mode == Some(2)
    }
}

// The basic class's property flags, bit 15 first (AMQP 0-9-1 spec order).
pub(crate) const FLAG_CONTENT_TYPE: u16 = 1 << 15;
pub(crate) const FLAG_CONTENT_ENCODING: u16 = 1 << 14;
pub(crate) const FLAG_HEADERS: u16 = 1 << 13;
pub(crate) const FLAG_DELIVERY_MODE: u16 = 1 << 12;
pub(crate) const FLAG_PRIORITY: u16 = 1 << 11;
pub(crate) const FLAG_CORRELATION_ID: u16 = 1 << 10;
pub(crate) const FLAG_REPLY_TO: u16 = 1 << 9;
pub(crate) const FLAG_EXPIRATION: u16 = 1 << 8;
pub(crate) const FLAG_MESSAGE_ID: u16 = 1 << 7;
pub(crate) const FLAG_TIMESTAMP: u16 = 1 << 6;
pub(crate) const FLAG_TYPE: u16 = 1 << 5;
pub(crate) const FLAG_USER_ID: u16 = 1 << 4;
pub(crate) const FLAG_APP_ID: u16 = 1 << 3;

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
            FLAG_PRIORITY => h.priority = Some(r.u8()?),
            FLAG_REPLY_TO => h.reply_to = Some(r.shortstr()?),
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

/// RabbitMQ's longest TTL: ten years, in milliseconds.
const MAX_EXPIRY_MS: u64 = 315_360_000_000;

/// A per-message TTL as RabbitMQ reads it (`rabbit_basic:parse_expiration`, Erlang's
/// `string:to_integer`): an optional sign and digits, nothing after them, not negative,
/// at most ten years. The error is worded as RabbitMQ prints it.
pub fn parse_expiration(e: &str) -> Result<u64, String> {
    let (negative, digits) = match e.as_bytes().first() {
        Some(b'-') => (true, &e[1..]),
        Some(b'+') => (false, &e[1..]),
        _ => (false, e),
    };
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    if end == 0 {
        return Err("no_integer".into());
    }
    let (number, rest) = digits.split_at(end);
    if !rest.is_empty() {
        return Err(format!("{{leftover_string,{rest:?}}}"));
    }
    let trimmed = number.trim_start_matches('0');
    let shown = if trimmed.is_empty() { "0" } else { trimmed };
    if negative && shown != "0" {
        return Err(format!("{{value_negative,-{shown}}}"));
    }
    match number.parse::<u64>() {
        Ok(ms) if ms <= MAX_EXPIRY_MS => Ok(ms),
        _ => Err(format!("{{value_too_large,{shown}}}")),
    }
}

/// The property flags of a content header payload, if it is long enough to have them.
pub fn flags(payload: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(payload.get(12..14)?.try_into().ok()?))
}

/// True if the header carries an `expiration` property (a cheap test before decoding).
pub fn has_expiration(payload: &[u8]) -> bool {
    flags(payload).is_some_and(|f| f & FLAG_EXPIRATION != 0)
}

/// Property changes for a header the server re-sends under its own name (dead letters,
/// direct replies).
#[derive(Debug, Clone, Copy, Default)]
pub struct Rewrite<'a> {
    /// Replaces (or adds) the `headers` table: its encoding with the u32 length prefix.
    pub headers: Option<&'a [u8]>,
    /// Removes `expiration`.
    pub drop_expiration: bool,
    /// Replaces (or adds) `reply-to`.
    pub reply_to: Option<&'a str>,
}

/// Re-encodes a content header (already validated at publish) with `change` applied; every
/// other property is copied byte for byte. `None` if the header is malformed.
pub fn rewrite(payload: &[u8], change: &Rewrite<'_>) -> Option<Vec<u8>> {
    let mut r = Reader::new(payload);
    r.u16().ok()?;
    r.u16().ok()?;
    r.u64().ok()?;
    let flags = r.u16().ok()?;
    let mut spans: [Option<&[u8]>; 16] = [None; 16];
    for bit in (2..16).rev() {
        let flag = 1u16 << bit;
        if flags & flag == 0 {
            continue;
        }
        let start = r.position();
        match flag {
            FLAG_HEADERS => {
                r.table_raw().ok()?;
            }
            FLAG_DELIVERY_MODE | FLAG_PRIORITY => {
                r.u8().ok()?;
            }
            FLAG_TIMESTAMP => {
                r.u64().ok()?;
            }
            _ => {
                let len = r.u8().ok()? as usize;
                r.take(len).ok()?;
            }
        }
        spans[bit] = Some(&payload[start..r.position()]);
    }
    let mut reply_to = Vec::new();
    if let Some(rt) = change.reply_to {
        reply_to.push(rt.len().min(255) as u8);
        reply_to.extend_from_slice(&rt.as_bytes()[..rt.len().min(255)]);
        spans[9] = Some(&reply_to);
    }
    if change.headers.is_some() {
        spans[13] = change.headers;
    }
    if change.drop_expiration {
        spans[8] = None;
    }
    let mut out = Vec::with_capacity(payload.len() + change.headers.map_or(0, <[u8]>::len));
    out.extend_from_slice(&payload[..12]);
    let new_flags = (2..16)
        .filter(|&b| spans[b].is_some())
        .fold(0u16, |f, b| f | 1 << b);
    out.extend_from_slice(&new_flags.to_be_bytes());
    for bit in (2..16).rev() {
        if let Some(span) = spans[bit] {
            out.extend_from_slice(span);
        }
    }
    Some(out)
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

    #[test]
    fn rewrite_replaces_headers_and_drops_expiration() {
        let mut p = vec![0, 60, 0, 0];
        p.extend_from_slice(&5u64.to_be_bytes());
        p.extend_from_slice(
            &(FLAG_CONTENT_TYPE | FLAG_DELIVERY_MODE | FLAG_EXPIRATION).to_be_bytes(),
        );
        p.extend_from_slice(&[10]);
        p.extend_from_slice(b"text/plain");
        p.push(2);
        p.extend_from_slice(&[3, b'1', b'0', b'0']);
        assert!(has_expiration(&p));
        let table = [0, 0, 0, 7, 1, b'k', b'S', 0, 0, 0, 0];
        let change = Rewrite {
            headers: Some(&table),
            drop_expiration: true,
            reply_to: Some("amq.rabbitmq.reply-to.x"),
        };
        let out = rewrite(&p, &change).unwrap();
        let h = decode(&out).unwrap();
        assert_eq!(h.expiration, None);
        assert_eq!(h.headers, Some(&table[..]));
        assert_eq!(h.reply_to, Some("amq.rabbitmq.reply-to.x"));
        assert!(h.persistent());
        assert_eq!(h.body_size, 5);
        assert!(!has_expiration(&out));
    }
}
