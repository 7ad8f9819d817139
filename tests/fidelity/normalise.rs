//! What of an answer must match RabbitMQ's: frames reduced to the fields that carry meaning
//! (reply codes, class and method ids, flags, counts), not texts, server properties or
//! generated names. Golden files keep raw bytes, so these rules can change without
//! re-recording.

use super::engine::unhex;

pub fn is_heartbeat(frame: &str) -> bool {
    frame.starts_with("08")
}

/// Frames that count for comparison (heartbeats do not: their timing is the peer's).
pub fn count_frames(frames: &[String]) -> usize {
    frames.iter().filter(|f| !is_heartbeat(f)).count()
}

/// Every frame of every await, normalised, heartbeats dropped.
pub fn frames(all: &[Vec<String>]) -> Vec<String> {
    all.iter().flatten().filter_map(|f| frame(f)).collect()
}

pub fn frame(f: &str) -> Option<String> {
    if let Some(raw) = f.strip_prefix("raw:") {
        let bytes = unhex(raw);
        return Some(format!(
            "raw {}",
            String::from_utf8_lossy(&bytes).escape_debug()
        ));
    }
    let b = unhex(f);
    if b.len() < 8 {
        return Some(format!("short frame {f}"));
    }
    let channel = u16::from_be_bytes([b[1], b[2]]);
    let payload = &b[7..b.len() - 1];
    Some(match b[0] {
        8 => return None,
        1 => format!("ch{channel} {}", method(payload)),
        2 => format!("ch{channel} {}", header(payload)),
        3 => format!("ch{channel} body {} bytes", payload.len()),
        t => format!("ch{channel} frame type {t}"),
    })
}

/// A reader that yields None past the end instead of panicking (the broker under test may
/// send anything).
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            self.0 = &[];
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    fn shortstr(&mut self) -> Option<String> {
        let n = self.u8()? as usize;
        self.take(n)
            .map(|s| generated_names(&String::from_utf8_lossy(s)))
    }
    fn skip_longstr(&mut self) -> Option<()> {
        let n = self.u32()? as usize;
        self.take(n).map(|_| ())
    }
}

/// Server-generated names differ run to run: keep only their prefix.
fn generated_names(s: &str) -> String {
    for prefix in ["amq.gen-", "amq.ctag-"] {
        if s.starts_with(prefix) {
            return format!("{prefix}*");
        }
    }
    s.to_owned()
}

/// A content header: its class and declared body size (properties are the client's),
/// and the one header the broker adds on its own to a message it hands out: a quorum
/// queue's `x-delivery-count`.
fn header(payload: &[u8]) -> String {
    let mut c = Cursor(payload);
    match (c.u16(), c.u16(), c.u64()) {
        (Some(class), Some(_weight), Some(size)) => match delivery_count(&mut c) {
            Some(n) => format!("header class={class} size={size} x-delivery-count={n}"),
            None => format!("header class={class} size={size}"),
        },
        _ => "header frame too short".into(),
    }
}

/// The `x-delivery-count` header of a content header's properties, if it has one.
fn delivery_count(c: &mut Cursor<'_>) -> Option<String> {
    let flags = c.u16()?;
    if flags & (1 << 13) == 0 {
        return None;
    }
    for bit in [15, 14] {
        if flags & (1 << bit) != 0 {
            c.shortstr()?;
        }
    }
    let n = c.u32()? as usize;
    let table = warren::protocol::table::decode(c.take(n)?).ok()?;
    let v = table.inner().get("x-delivery-count")?;
    Some(format!("{v:?}"))
}

fn method(payload: &[u8]) -> String {
    let mut c = Cursor(payload);
    let (Some(class), Some(id)) = (c.u16(), c.u16()) else {
        return "method frame too short".into();
    };
    let fields = fields(class, id, &mut c).unwrap_or_else(|| " (fields cut short)".into());
    format!("{class}.{id}{fields}")
}

/// The meaningful fields of the server methods whose arguments matter to clients.
fn fields(class: u16, id: u16, c: &mut Cursor) -> Option<String> {
    Some(match (class, id) {
        // connection.tune: the limits offered.
        (10, 30) => format!(
            " channel_max={} frame_max={} heartbeat={}",
            c.u16()?,
            c.u32()?,
            c.u16()?
        ),
        // connection.close, channel.close: code and culprit; the text is free.
        (10, 50) | (20, 40) => {
            let code = c.u16()?;
            c.shortstr()?;
            format!(" code={code} culprit={}.{}", c.u16()?, c.u16()?)
        }
        // channel.flow(-ok): the active flag.
        (20, 20) | (20, 21) => format!(" active={}", c.u8()? & 1),
        // queue.declare-ok: name (generated ones by prefix), counts.
        (50, 11) => format!(
            " queue={} messages={} consumers={}",
            c.shortstr()?,
            c.u32()?,
            c.u32()?
        ),
        // queue.purge-ok, queue.delete-ok: message count.
        (50, 31) | (50, 41) => format!(" messages={}", c.u32()?),
        // basic.consume-ok, basic.cancel-ok: the tag.
        (60, 21) | (60, 31) => format!(" tag={}", c.shortstr()?),
        // basic.cancel from the server: the tag and the nowait bit.
        (60, 30) => format!(" tag={} nowait={}", c.shortstr()?, c.u8()? & 1),
        // basic.return: code, exchange, routing key.
        (60, 50) => {
            let code = c.u16()?;
            c.shortstr()?;
            format!(
                " code={code} exchange={} key={}",
                c.shortstr()?,
                c.shortstr()?
            )
        }
        // basic.deliver: tag, redelivered, exchange, routing key.
        (60, 60) => {
            let tag = c.shortstr()?;
            format!(
                " consumer={tag} delivery_tag={} redelivered={} exchange={} key={}",
                c.u64()?,
                c.u8()? & 1,
                c.shortstr()?,
                c.shortstr()?
            )
        }
        // basic.get-ok: tag, redelivered, exchange, key, count.
        (60, 71) => format!(
            " delivery_tag={} redelivered={} exchange={} key={} messages={}",
            c.u64()?,
            c.u8()? & 1,
            c.shortstr()?,
            c.shortstr()?,
            c.u32()?
        ),
        // basic.ack / basic.nack from the server (confirms): tag and flags.
        (60, 80) | (60, 120) => format!(" delivery_tag={} flags={}", c.u64()?, c.u8()?),
        // connection.secure: a challenge (its text is the server's).
        (10, 20) => {
            c.skip_longstr()?;
            String::new()
        }
        _ => String::new(),
    })
}
