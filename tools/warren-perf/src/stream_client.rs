//! A lean client of the RabbitMQ Stream protocol (3.10's version 1 commands), for the
//! `stream-publish` / `stream-consume` scenarios: just enough to connect, create and delete
//! a stream, declare a publisher, publish batches and subscribe with credit. Publish frames
//! are written straight into one buffer per batch and deliveries are counted from the chunk
//! header, so the generator does not decode messages it does not need to.

use std::io;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

pub const KEY_DECLARE_PUBLISHER: u16 = 0x01;
pub const KEY_PUBLISH: u16 = 0x02;
pub const KEY_PUBLISH_CONFIRM: u16 = 0x03;
pub const KEY_PUBLISH_ERROR: u16 = 0x04;
pub const KEY_SUBSCRIBE: u16 = 0x07;
pub const KEY_DELIVER: u16 = 0x08;
pub const KEY_CREDIT: u16 = 0x09;
pub const KEY_CREATE: u16 = 0x0d;
pub const KEY_DELETE: u16 = 0x0e;
pub const KEY_METADATA_UPDATE: u16 = 0x10;
pub const KEY_PEER_PROPERTIES: u16 = 0x11;
pub const KEY_SASL_HANDSHAKE: u16 = 0x12;
pub const KEY_SASL_AUTHENTICATE: u16 = 0x13;
pub const KEY_TUNE: u16 = 0x14;
pub const KEY_OPEN: u16 = 0x15;
pub const KEY_CLOSE: u16 = 0x16;
const RESPONSE: u16 = 0x8000;

pub const CODE_OK: u16 = 0x01;
pub const CODE_STREAM_ALREADY_EXISTS: u16 = 0x05;

pub const OFFSET_FIRST: u16 = 1;

/// Frames above this are refused (the client never asks for more than 1 MiB frames).
const MAX_FRAME: usize = 64 << 20;

/// Appends a frame: size, key, version 1, then what `body` writes.
pub fn frame(out: &mut BytesMut, key: u16, body: impl FnOnce(&mut BytesMut)) {
    let at = out.len();
    out.put_u32(0);
    out.put_u16(key);
    out.put_u16(1);
    body(out);
    let size = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

/// A protocol string: int16 length, then the bytes.
pub fn put_str(out: &mut BytesMut, s: &str) {
    out.put_i16(s.len() as i16);
    out.put_slice(s.as_bytes());
}

fn put_map(out: &mut BytesMut, entries: &[(&str, String)]) {
    out.put_i32(entries.len() as i32);
    for (k, v) in entries {
        put_str(out, k);
        put_str(out, v);
    }
}

/// Splits one frame (key, version and body, without the size) off `buf`, if complete.
pub fn split_frame(buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(4..=MAX_FRAME).contains(&size) {
        return Err(io::Error::other(format!("bad stream frame size {size}")));
    }
    if buf.len() < 4 + size {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size).freeze()))
}

/// The key of a frame split by `split_frame`.
pub fn key_of(f: &[u8]) -> u16 {
    u16::from_be_bytes([f[0], f[1]])
}

/// A stream-protocol connection, opened on a virtual host.
pub struct StreamConn {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    rbuf: BytesMut,
    correlation: u32,
    tune: Option<(u32, u32)>,
}

impl StreamConn {
    /// Connects, authenticates with PLAIN, answers the server's tune and opens `vhost`.
    pub async fn connect(addr: &str, user: &str, pass: &str, vhost: &str) -> io::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (rd, wr) = tcp.into_split();
        let mut c = StreamConn {
            rd,
            wr,
            rbuf: BytesMut::with_capacity(4 << 20),
            correlation: 0,
            tune: None,
        };
        let props = [("product", "warren-perf".to_string())];
        c.expect_ok(KEY_PEER_PROPERTIES, |b| put_map(b, &props))
            .await?;
        c.expect_ok(KEY_SASL_HANDSHAKE, |_| {}).await?;
        let response = format!("\0{user}\0{pass}");
        c.expect_ok(KEY_SASL_AUTHENTICATE, |b| {
            put_str(b, "PLAIN");
            b.put_i32(response.len() as i32);
            b.put_slice(response.as_bytes());
        })
        .await?;
        // The server tunes after authentication; the client answers with the same values.
        while c.tune.is_none() {
            let f = c.read_frame().await?;
            c.note(&f)?;
        }
        let (frame_max, heartbeat) = c.tune.expect("tuned");
        let mut b = BytesMut::new();
        frame(&mut b, KEY_TUNE, |b| {
            b.put_u32(frame_max);
            b.put_u32(heartbeat);
        });
        c.wr.write_all(&b).await?;
        c.expect_ok(KEY_OPEN, |b| put_str(b, vhost)).await?;
        Ok(c)
    }

    /// Reads the next whole frame.
    pub async fn read_frame(&mut self) -> io::Result<Bytes> {
        loop {
            if let Some(f) = split_frame(&mut self.rbuf)? {
                return Ok(f);
            }
            let read =
                tokio::time::timeout(Duration::from_secs(30), self.rd.read_buf(&mut self.rbuf))
                    .await
                    .map_err(|_| io::Error::other("stream broker silent for 30 s"))??;
            if read == 0 {
                return Err(io::Error::other("broker closed the stream connection"));
            }
        }
    }

    /// Remembers a tune; a close from the server is an error.
    fn note(&mut self, f: &[u8]) -> io::Result<()> {
        match key_of(f) {
            KEY_TUNE if f.len() >= 12 => {
                let frame_max = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
                let heartbeat = u32::from_be_bytes([f[8], f[9], f[10], f[11]]);
                self.tune = Some((frame_max, heartbeat));
                Ok(())
            }
            KEY_CLOSE => Err(io::Error::other("the broker closed the stream connection")),
            _ => Ok(()),
        }
    }

    /// Sends a request (correlation id, then `body`) and returns the response code.
    pub async fn request(&mut self, key: u16, body: impl FnOnce(&mut BytesMut)) -> io::Result<u16> {
        self.correlation += 1;
        let correlation = self.correlation;
        let mut b = BytesMut::new();
        frame(&mut b, key, |b| {
            b.put_u32(correlation);
            body(b);
        });
        self.wr.write_all(&b).await?;
        loop {
            let f = self.read_frame().await?;
            if key_of(&f) == key | RESPONSE && f.len() >= 10 {
                let got = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
                if got == correlation {
                    return Ok(u16::from_be_bytes([f[8], f[9]]));
                }
            }
            self.note(&f)?;
        }
    }

    /// The connection's halves and what was read but not yet parsed.
    pub fn into_parts(self) -> (OwnedReadHalf, OwnedWriteHalf, BytesMut) {
        (self.rd, self.wr, self.rbuf)
    }

    async fn expect_ok(&mut self, key: u16, body: impl FnOnce(&mut BytesMut)) -> io::Result<()> {
        match self.request(key, body).await? {
            CODE_OK => Ok(()),
            code => Err(io::Error::other(format!(
                "stream command {key:#06x} answered code {code:#06x}"
            ))),
        }
    }

    /// Creates `stream` with `arguments` (e.g. max-length-bytes); returns the code.
    pub async fn create(&mut self, stream: &str, arguments: &[(&str, String)]) -> io::Result<u16> {
        self.request(KEY_CREATE, |b| {
            put_str(b, stream);
            put_map(b, arguments);
        })
        .await
    }

    pub async fn delete(&mut self, stream: &str) -> io::Result<u16> {
        self.request(KEY_DELETE, |b| put_str(b, stream)).await
    }

    /// Declares publisher `id` on `stream` without a reference (no deduplication).
    pub async fn declare_publisher(&mut self, id: u8, stream: &str) -> io::Result<()> {
        self.expect_ok(KEY_DECLARE_PUBLISHER, |b| {
            b.put_u8(id);
            put_str(b, "");
            put_str(b, stream);
        })
        .await
    }

    /// Subscribes `id` to `stream` from its first offset with `credit` chunks.
    pub async fn subscribe_first(&mut self, id: u8, stream: &str, credit: u16) -> io::Result<()> {
        self.expect_ok(KEY_SUBSCRIBE, |b| {
            b.put_u8(id);
            put_str(b, stream);
            b.put_u16(OFFSET_FIRST);
            b.put_u16(credit);
            b.put_i32(0); // no properties
        })
        .await
    }
}

/// The figures of a Deliver frame's chunk header: its first offset and record count.
pub struct DeliveredChunk {
    pub first_offset: u64,
    pub records: u32,
}

/// Reads the chunk header of a Deliver frame (key, version, subscription id, chunk).
pub fn delivered_chunk(f: &[u8]) -> Option<DeliveredChunk> {
    // 4 (key, version) + 1 (subscription) + magic, type, entries (2), records (4), timestamp
    // (8), epoch (8), chunk id (8).
    let chunk = f.get(5..)?;
    let records = u32::from_be_bytes(chunk.get(4..8)?.try_into().ok()?);
    let first_offset = u64::from_be_bytes(chunk.get(24..32)?.try_into().ok()?);
    Some(DeliveredChunk {
        first_offset,
        records,
    })
}

/// A publish frame's fixed part: size, key, version, publisher id, message count.
pub const PUBLISH_HEADER: usize = 4 + 2 + 2 + 1 + 4;

/// Appends one Publish frame of `count` messages of `size` bytes, ids from `first_id`; each
/// body starts with `stamp` and its id (little endian) when it has room for them.
pub fn put_publish(
    out: &mut BytesMut,
    publisher: u8,
    first_id: u64,
    count: u32,
    size: usize,
    stamp: u64,
) {
    frame(out, KEY_PUBLISH, |b| {
        b.put_u8(publisher);
        b.put_u32(count);
        for id in first_id..first_id + count as u64 {
            b.put_u64(id);
            b.put_u32(size as u32);
            let start = b.len();
            if size >= 16 {
                b.put_u64_le(stamp);
                b.put_u64_le(id);
            }
            b.put_bytes(0, size - (b.len() - start));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_frame_layout() {
        let mut b = BytesMut::new();
        put_publish(&mut b, 7, 10, 2, 16, 99);
        assert_eq!(b.len(), PUBLISH_HEADER + 2 * (8 + 4 + 16));
        let f = split_frame(&mut b).unwrap().unwrap();
        assert_eq!(key_of(&f), KEY_PUBLISH);
        assert_eq!(f[4], 7);
        assert_eq!(u32::from_be_bytes(f[5..9].try_into().unwrap()), 2);
        assert_eq!(u64::from_be_bytes(f[9..17].try_into().unwrap()), 10);
        assert_eq!(u32::from_be_bytes(f[17..21].try_into().unwrap()), 16);
        assert_eq!(u64::from_le_bytes(f[21..29].try_into().unwrap()), 99);
        assert!(b.is_empty());
    }

    #[test]
    fn chunk_header_fields() {
        let mut f = vec![0u8, 8, 0, 1, 3, 0x50, 0, 0, 1];
        f.extend_from_slice(&5u32.to_be_bytes());
        f.extend_from_slice(&[0; 16]); // timestamp, epoch
        f.extend_from_slice(&42u64.to_be_bytes());
        let c = delivered_chunk(&f).unwrap();
        assert_eq!((c.first_offset, c.records), (42, 5));
        assert!(delivered_chunk(&f[..20]).is_none());
    }
}
