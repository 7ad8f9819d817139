//! A lean AMQP 0-9-1 client for load generation: pre-encoded publish frames copied in
//! batches (one write for many messages), deliveries parsed in bulk from a large read
//! buffer. Just enough protocol to drive a broker: handshake, one channel, declare, bind,
//! qos, consume, publish, confirms, acks.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connection's halves: plain TCP, or TLS (one stream shared by both halves). Boxed so
/// every scenario takes either; the call through the box is per read/write, not per
/// message.
pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

pub const FRAME_END: u8 = 0xCE;

/// What a parsed URL gives us.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: String,
    pub user: String,
    pub pass: String,
    pub vhost: String,
    /// TLS (`amqps://` or `--tls`): the client configuration, and the server name to check.
    pub tls: Option<(Arc<rustls::ClientConfig>, String)>,
}

impl Target {
    /// Parses `amqp://user:pass@host:port/vhost` (vhost `%2f` = `/`); `amqps://` (or
    /// `tls`) connects with TLS, trusting the CA certificates in `tls_ca` (PEM).
    pub fn parse(url: &str, tls: bool, tls_ca: Option<&std::path::Path>) -> Result<Target, String> {
        let (rest, tls) = match (url.strip_prefix("amqps://"), url.strip_prefix("amqp://")) {
            (Some(rest), _) => (rest, true),
            (None, Some(rest)) => (rest, tls),
            _ => return Err("URL must start with amqp:// or amqps://".into()),
        };
        let (auth, rest) = match rest.split_once('@') {
            Some((a, r)) => (a, r),
            None => ("guest:guest", rest),
        };
        let (user, pass) = auth.split_once(':').unwrap_or((auth, ""));
        let (hostport, vhost) = rest.split_once('/').unwrap_or((rest, ""));
        let vhost = match vhost {
            "" | "%2f" | "%2F" => "/".to_string(),
            v => v.to_string(),
        };
        let addr = if hostport.contains(':') {
            hostport.to_string()
        } else if tls {
            format!("{hostport}:5671")
        } else {
            format!("{hostport}:5672")
        };
        let tls = if tls {
            let host = addr.rsplit_once(':').map_or(&addr[..], |(h, _)| h);
            Some((Arc::new(tls_config(tls_ca)?), host.to_string()))
        } else {
            None
        };
        Ok(Target {
            addr,
            user: user.into(),
            pass: pass.into(),
            vhost,
            tls,
        })
    }
}

/// A rustls client (ring) that trusts the CA certificates in `ca`.
fn tls_config(ca: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let ca = ca.ok_or("TLS needs --tls-ca FILE (the CA that signed the broker's certificate)")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

pub fn put_shortstr(b: &mut BytesMut, s: &str) {
    b.put_u8(s.len() as u8);
    b.put_slice(s.as_bytes());
}

/// A field-table value: just the kinds queue arguments need.
pub enum Arg {
    /// Signed 32-bit integer (`I`).
    Int(i32),
    /// Long string (`S`).
    Str(String),
}

/// Appends a field table.
pub fn put_table(b: &mut BytesMut, entries: &[(&str, Arg)]) {
    let at = b.len();
    b.put_u32(0);
    for (key, value) in entries {
        put_shortstr(b, key);
        match value {
            Arg::Int(v) => {
                b.put_u8(b'I');
                b.put_i32(*v);
            }
            Arg::Str(s) => {
                b.put_u8(b'S');
                b.put_u32(s.len() as u32);
                b.put_slice(s.as_bytes());
            }
        }
    }
    let size = (b.len() - at - 4) as u32;
    b[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

/// Appends a method frame on `channel` whose payload `f` writes after the class/method ids.
pub fn method(
    b: &mut BytesMut,
    channel: u16,
    class: u16,
    method: u16,
    f: impl FnOnce(&mut BytesMut),
) {
    b.put_u8(1);
    b.put_u16(channel);
    let at = b.len();
    b.put_u32(0);
    b.put_u16(class);
    b.put_u16(method);
    f(b);
    let size = (b.len() - at - 4) as u32;
    b[at..at + 4].copy_from_slice(&size.to_be_bytes());
    b.put_u8(FRAME_END);
}

/// A frame read from the broker.
pub struct Frame {
    pub kind: u8,
    pub channel: u16,
    pub payload: bytes::Bytes,
}

impl Frame {
    pub fn ids(&self) -> (u16, u16) {
        if self.payload.len() < 4 {
            return (0, 0);
        }
        (
            u16::from_be_bytes([self.payload[0], self.payload[1]]),
            u16::from_be_bytes([self.payload[2], self.payload[3]]),
        )
    }
}

/// Splits one frame off `buf`, if complete.
pub fn parse_frame(buf: &mut BytesMut) -> io::Result<Option<Frame>> {
    if buf.len() < 7 {
        return Ok(None);
    }
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
    if size > 64 << 20 {
        return Err(io::Error::other("frame too large"));
    }
    if buf.len() < size + 8 {
        return Ok(None);
    }
    let kind = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    if buf[7 + size] != FRAME_END {
        return Err(io::Error::other("bad frame end"));
    }
    buf.advance(7);
    let payload = buf.split_to(size).freeze();
    buf.advance(1);
    Ok(Some(Frame {
        kind,
        channel,
        payload,
    }))
}

/// A connection with channel 1 open.
pub struct Client {
    pub rd: Reader,
    pub wr: Writer,
    pub rbuf: BytesMut,
    pub frame_max: u32,
}

impl Client {
    pub async fn connect(t: &Target) -> io::Result<Client> {
        let stream = TcpStream::connect(&t.addr).await?;
        stream.set_nodelay(true)?;
        let (rd, wr): (Reader, Writer) = match &t.tls {
            None => {
                let (rd, wr) = stream.into_split();
                (Box::new(rd), Box::new(wr))
            }
            Some((config, host)) => {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, stream)
                    .await?;
                let (rd, wr) = tokio::io::split(tls);
                (Box::new(rd), Box::new(wr))
            }
        };
        let mut c = Client {
            rd,
            wr,
            rbuf: BytesMut::with_capacity(1 << 20),
            frame_max: 131072,
        };
        c.wr.write_all(b"AMQP\x00\x00\x09\x01").await?;
        c.expect((10, 10)).await?;
        let mut b = BytesMut::new();
        method(&mut b, 0, 10, 11, |b| {
            b.put_u32(0); // client-properties: empty table
            put_shortstr(b, "PLAIN");
            let resp = format!("\0{}\0{}", t.user, t.pass);
            b.put_u32(resp.len() as u32);
            b.put_slice(resp.as_bytes());
            put_shortstr(b, "en_US");
        });
        c.wr.write_all(&b).await?;
        let tune = c.expect((10, 30)).await?;
        let p = &tune.payload;
        let channel_max = u16::from_be_bytes([p[4], p[5]]);
        let frame_max = u32::from_be_bytes([p[6], p[7], p[8], p[9]]);
        c.frame_max = if frame_max == 0 { 131072 } else { frame_max };
        let mut b = BytesMut::new();
        method(&mut b, 0, 10, 31, |b| {
            b.put_u16(channel_max);
            b.put_u32(c.frame_max);
            b.put_u16(0); // no heartbeats: the generator is never idle
        });
        method(&mut b, 0, 10, 40, |b| {
            put_shortstr(b, &t.vhost);
            put_shortstr(b, "");
            b.put_u8(0);
        });
        method(&mut b, 1, 20, 10, |b| put_shortstr(b, ""));
        c.wr.write_all(&b).await?;
        c.expect((10, 41)).await?;
        c.expect((20, 11)).await?;
        Ok(c)
    }

    /// Reads the next frame (waiting for more bytes as needed).
    pub async fn next_frame(&mut self) -> io::Result<Frame> {
        loop {
            if let Some(f) = parse_frame(&mut self.rbuf)? {
                return Ok(f);
            }
            if self.rd.read_buf(&mut self.rbuf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "broker closed the connection",
                ));
            }
        }
    }

    /// Reads until a method with `ids` arrives; a close from the broker is an error.
    pub async fn expect(&mut self, ids: (u16, u16)) -> io::Result<Frame> {
        loop {
            let f = tokio::time::timeout(Duration::from_secs(30), self.next_frame())
                .await
                .map_err(|_| io::Error::other(format!("timed out waiting for {ids:?}")))??;
            if f.kind != 1 {
                continue;
            }
            let got = f.ids();
            if got == ids {
                return Ok(f);
            }
            if got == (10, 50) || got == (20, 40) {
                let code = u16::from_be_bytes([f.payload[4], f.payload[5]]);
                let len = f.payload[6] as usize;
                let text = String::from_utf8_lossy(&f.payload[7..7 + len]).into_owned();
                return Err(io::Error::other(format!("broker closed: {code} {text}")));
            }
        }
    }

    pub async fn send(&mut self, b: &[u8]) -> io::Result<()> {
        self.wr.write_all(b).await
    }

    pub async fn declare_queue(&mut self, name: &str, durable: bool) -> io::Result<()> {
        self.declare_queue_args(name, durable, &[]).await
    }

    /// queue.declare with arguments (x-message-ttl, x-max-priority, ...).
    pub async fn declare_queue_args(
        &mut self,
        name: &str,
        durable: bool,
        args: &[(&str, Arg)],
    ) -> io::Result<()> {
        let mut b = BytesMut::new();
        method(&mut b, 1, 50, 10, |b| {
            b.put_u16(0);
            put_shortstr(b, name);
            b.put_u8(if durable { 0b10 } else { 0 });
            put_table(b, args);
        });
        self.send(&b).await?;
        self.expect((50, 11)).await.map(|_| ())
    }

    /// The queue's ready-message count, from a passive queue.declare.
    pub async fn queue_depth(&mut self, name: &str) -> io::Result<u32> {
        let mut b = BytesMut::new();
        method(&mut b, 1, 50, 10, |b| {
            b.put_u16(0);
            put_shortstr(b, name);
            b.put_u8(0b1); // passive
            b.put_u32(0);
        });
        self.send(&b).await?;
        let ok = self.expect((50, 11)).await?;
        let n = ok.payload[4] as usize;
        let count = &ok.payload[5 + n..9 + n];
        Ok(u32::from_be_bytes(count.try_into().unwrap()))
    }

    pub async fn purge_queue(&mut self, name: &str) -> io::Result<()> {
        let mut b = BytesMut::new();
        method(&mut b, 1, 50, 30, |b| {
            b.put_u16(0);
            put_shortstr(b, name);
            b.put_u8(0);
        });
        self.send(&b).await?;
        self.expect((50, 31)).await.map(|_| ())
    }

    pub async fn delete_queue(&mut self, name: &str) -> io::Result<()> {
        let mut b = BytesMut::new();
        method(&mut b, 1, 50, 40, |b| {
            b.put_u16(0);
            put_shortstr(b, name);
            b.put_u8(0);
        });
        self.send(&b).await?;
        self.expect((50, 41)).await.map(|_| ())
    }

    pub async fn declare_exchange(&mut self, name: &str, kind: &str) -> io::Result<()> {
        let mut b = BytesMut::new();
        method(&mut b, 1, 40, 10, |b| {
            b.put_u16(0);
            put_shortstr(b, name);
            put_shortstr(b, kind);
            b.put_u8(0);
            b.put_u32(0);
        });
        self.send(&b).await?;
        self.expect((40, 11)).await.map(|_| ())
    }

    pub async fn bind_queue(&mut self, queue: &str, exchange: &str, key: &str) -> io::Result<()> {
        let mut b = BytesMut::new();
        method(&mut b, 1, 50, 20, |b| {
            b.put_u16(0);
            put_shortstr(b, queue);
            put_shortstr(b, exchange);
            put_shortstr(b, key);
            b.put_u8(0);
            b.put_u32(0);
        });
        self.send(&b).await?;
        self.expect((50, 21)).await.map(|_| ())
    }

    pub async fn qos(&mut self, prefetch: u16) -> io::Result<()> {
        let mut b = BytesMut::new();
        method(&mut b, 1, 60, 10, |b| {
            b.put_u32(0);
            b.put_u16(prefetch);
            b.put_u8(0);
        });
        self.send(&b).await?;
        self.expect((60, 11)).await.map(|_| ())
    }

    pub async fn consume(&mut self, queue: &str, no_ack: bool) -> io::Result<()> {
        let mut b = BytesMut::new();
        method(&mut b, 1, 60, 20, |b| {
            b.put_u16(0);
            put_shortstr(b, queue);
            put_shortstr(b, "");
            b.put_u8(if no_ack { 0b10 } else { 0 });
            b.put_u32(0);
        });
        self.send(&b).await?;
        self.expect((60, 21)).await.map(|_| ())
    }

    pub async fn confirm_select(&mut self) -> io::Result<()> {
        let mut b = BytesMut::new();
        method(&mut b, 1, 85, 10, |b| b.put_u8(0));
        self.send(&b).await?;
        self.expect((85, 11)).await.map(|_| ())
    }
}

/// Per-message properties a template can carry besides delivery-mode.
#[derive(Default, Clone)]
pub struct Props {
    pub priority: Option<u8>,
    /// The `expiration` property: milliseconds, as a decimal string.
    pub expiration: Option<String>,
}

/// Pre-encoded publish frames for one message shape; `encode` copies the template and
/// patches the body's timestamp and sequence number.
pub struct PublishTemplate {
    bytes: Vec<u8>,
    body_at: usize,
}

impl PublishTemplate {
    pub fn new(
        exchange: &str,
        routing_key: &str,
        size: usize,
        persistent: bool,
        frame_max: u32,
        props: &Props,
    ) -> Self {
        let mut b = BytesMut::new();
        method(&mut b, 1, 60, 40, |b| {
            b.put_u16(0);
            put_shortstr(b, exchange);
            put_shortstr(b, routing_key);
            b.put_u8(0);
        });
        // Content header: class 60, weight 0, body size, property flags, then the
        // properties in flag order: delivery-mode (bit 12), priority (11), expiration (8).
        b.put_u8(2);
        b.put_u16(1);
        let at = b.len();
        b.put_u32(0);
        b.put_u16(60);
        b.put_u16(0);
        b.put_u64(size as u64);
        let mut flags = 0u16;
        if persistent {
            flags |= 1 << 12;
        }
        if props.priority.is_some() {
            flags |= 1 << 11;
        }
        if props.expiration.is_some() {
            flags |= 1 << 8;
        }
        b.put_u16(flags);
        if persistent {
            b.put_u8(2);
        }
        if let Some(p) = props.priority {
            b.put_u8(p);
        }
        if let Some(e) = &props.expiration {
            put_shortstr(&mut b, e);
        }
        let header_size = (b.len() - at - 4) as u32;
        b[at..at + 4].copy_from_slice(&header_size.to_be_bytes());
        b.put_u8(FRAME_END);
        let chunk = (frame_max as usize).saturating_sub(8).max(1);
        let mut body_at = 0;
        let mut left = size;
        let mut first = true;
        while left > 0 {
            let n = left.min(chunk);
            b.put_u8(3);
            b.put_u16(1);
            b.put_u32(n as u32);
            if first {
                body_at = b.len();
                first = false;
            }
            b.put_bytes(b'.', n);
            b.put_u8(FRAME_END);
            left -= n;
        }
        PublishTemplate {
            bytes: b.to_vec(),
            body_at,
        }
    }

    /// Appends one message; the body's first 16 bytes carry `stamp` and `seq` (if the body
    /// is that large).
    pub fn encode(&self, out: &mut BytesMut, stamp: u64, seq: u64) {
        let at = out.len();
        out.extend_from_slice(&self.bytes);
        if self.body_at == 0 {
            return; // empty body
        }
        let body = &mut out[at + self.body_at..];
        if body.len() >= 16 {
            body[..8].copy_from_slice(&stamp.to_le_bytes());
            body[8..16].copy_from_slice(&seq.to_le_bytes());
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}
