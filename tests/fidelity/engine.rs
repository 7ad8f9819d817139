//! The replay engine: runs one scenario's steps against a broker, exactly as
//! `tools/fidelity/engine.py` did when RabbitMQ's answers were recorded, except that each
//! await reads until it has as many frames as RabbitMQ sent there (then briefly listens for
//! extra ones) instead of waiting for a long quiet window.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use super::normalise;

/// How long an await waits for the frames RabbitMQ sent before giving up.
const AWAIT_LIMIT: Duration = Duration::from_secs(3);
/// After the expected frames: how long to listen for frames RabbitMQ did not send.
const EXTRA_QUIET: Duration = Duration::from_millis(60);
/// How long to wait for the server to close the socket when RabbitMQ did.
const EOF_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, Deserialize)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub doc: String,
    #[serde(default = "yes")]
    pub auto_close_ok: bool,
    pub steps: Vec<Step>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Send(String),
    Await(#[allow(dead_code)] u32),
}

/// What a broker answered, raw: each entry one frame's bytes (or `raw:` bytes that are no
/// frame, such as a protocol header sent back).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Outcome {
    pub awaits: Vec<Vec<String>>,
    pub closed: bool,
    pub probe: Option<Vec<String>>,
    pub healthy: bool,
}

struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
    opened: bool,
    auto_close_ok: bool,
    /// connection.close already answered (a client answers one).
    connection_close_answered: bool,
    /// Channels whose channel.close was answered, until their next channel.open-ok.
    channel_close_answered: HashSet<u16>,
}

/// Hex of bytes, lower case (as the golden files store them).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("golden files hold hex"))
        .collect()
}

impl Reader {
    /// Splits one whole frame (or a returned protocol header) off the buffer.
    fn take_frame(&mut self) -> Option<String> {
        if self.buf.starts_with(b"AMQP") && self.buf.len() >= 8 {
            let raw: Vec<u8> = self.buf.drain(..8).collect();
            return Some(format!("raw:{}", hex(&raw)));
        }
        if self.buf.len() < 7 {
            return None;
        }
        let size = u32::from_be_bytes([self.buf[3], self.buf[4], self.buf[5], self.buf[6]]);
        let total = 8 + size as usize;
        if self.buf.len() < total {
            return None;
        }
        let frame: Vec<u8> = self.buf.drain(..total).collect();
        Some(hex(&frame))
    }

    /// The engine's automatic replies: close-ok for the server's connection.close or
    /// channel.close (unless the scenario turns them off), and noting connection.open-ok.
    async fn react(&mut self, frame: &str) {
        if frame.starts_with("raw:") {
            return;
        }
        let bytes = unhex(frame);
        if bytes.len() < 12 || bytes[0] != 1 {
            return;
        }
        let channel = [bytes[1], bytes[2]];
        let number = u16::from_be_bytes(channel);
        let ids = [bytes[7], bytes[8], bytes[9], bytes[10]];
        // Like a real client (and tools/fidelity/engine.py): one close-ok per close.
        let reply: Option<[u8; 4]> = match ids {
            [0, 10, 0, 41] => {
                self.opened = true;
                None
            }
            [0, 20, 0, 11] => {
                self.channel_close_answered.remove(&number);
                None
            }
            [0, 10, 0, 50] if !std::mem::replace(&mut self.connection_close_answered, true) => {
                Some([0, 10, 0, 51])
            }
            [0, 20, 0, 40] if self.channel_close_answered.insert(number) => Some([0, 20, 0, 41]),
            _ => None,
        };
        if let Some(m) = reply.filter(|_| self.auto_close_ok) {
            let mut f = vec![1, channel[0], channel[1], 0, 0, 0, 4];
            f.extend_from_slice(&m);
            f.push(0xce);
            let _ = self.stream.write_all(&f).await;
        }
    }

    /// Reads until `want` frames other than heartbeats have arrived (or EOF, or the limit),
    /// then listens `EXTRA_QUIET` longer for more.
    async fn await_frames(&mut self, want: usize) -> Vec<String> {
        let mut got = Vec::new();
        let start = Instant::now();
        let mut counted = 0;
        loop {
            while let Some(f) = self.take_frame() {
                if !normalise::is_heartbeat(&f) {
                    counted += 1;
                }
                self.react(&f).await;
                got.push(f);
            }
            if self.eof {
                return got;
            }
            let wait = if counted >= want {
                EXTRA_QUIET
            } else {
                AWAIT_LIMIT.saturating_sub(start.elapsed())
            };
            if !self.read_some(wait).await {
                return got;
            }
        }
    }

    /// One read with a deadline; false if nothing came in time.
    async fn read_some(&mut self, wait: Duration) -> bool {
        let mut chunk = [0u8; 65536];
        match timeout(wait, self.stream.read(&mut chunk)).await {
            Err(_) => false,
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.eof = true;
                true
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Waits up to `wait` for EOF, keeping (and reacting to) anything that arrives.
    async fn await_eof(&mut self, wait: Duration, into: &mut Vec<String>) {
        let start = Instant::now();
        while !self.eof && start.elapsed() < wait {
            if !self.read_some(wait.saturating_sub(start.elapsed())).await {
                break;
            }
            while let Some(f) = self.take_frame() {
                self.react(&f).await;
                into.push(f);
            }
        }
    }
}

/// Runs `scenario` against `addr`, reading as much as `golden` says RabbitMQ sent.
pub async fn replay(addr: SocketAddr, scenario: &Scenario, golden: &Outcome) -> Outcome {
    let mut r = Reader {
        stream: TcpStream::connect(addr).await.expect("broker listening"),
        buf: Vec::new(),
        eof: false,
        opened: false,
        auto_close_ok: scenario.auto_close_ok,
        connection_close_answered: false,
        channel_close_answered: HashSet::new(),
    };
    let mut awaits: Vec<Vec<String>> = Vec::new();
    for step in &scenario.steps {
        match step {
            Step::Send(h) => {
                if !r.eof {
                    // A failed write means the server hung up; the next await sees EOF.
                    let _ = r.stream.write_all(&unhex(h)).await;
                }
            }
            Step::Await(_) => {
                let want = golden
                    .awaits
                    .get(awaits.len())
                    .map_or(0, |frames| normalise::count_frames(frames));
                awaits.push(r.await_frames(want).await);
            }
        }
    }
    // The socket's fate: wait for EOF if RabbitMQ closed it, or if the connection never
    // opened (RabbitMQ may hang up on a failed handshake after a delay).
    if !r.eof && (golden.closed || !r.opened) {
        let last = awaits.len().saturating_sub(1);
        let mut late = Vec::new();
        r.await_eof(EOF_WAIT, &mut late).await;
        if let Some(a) = awaits.get_mut(last) {
            a.extend(late);
        }
    }
    let closed = r.eof;
    let probe = if r.opened && !closed {
        let open_1000 = [1u8, 0x03, 0xe8, 0, 0, 0, 5, 0, 20, 0, 10, 0, 0xce];
        let _ = r.stream.write_all(&open_1000).await;
        let want = golden
            .probe
            .as_ref()
            .map_or(1, |p| normalise::count_frames(p));
        Some(r.await_frames(want).await)
    } else {
        None
    };
    drop(r);
    Outcome {
        awaits,
        closed,
        probe,
        healthy: healthy(addr).await,
    }
}

/// A fresh, well-behaved connection is still served: handshake, channel, an exclusive
/// server-named queue, close.
async fn healthy(addr: SocketAddr) -> bool {
    let check = tokio::spawn(async move {
        let mut c = crate::common::RawClient::handshake(addr).await;
        c.open_channel(1).await;
        // queue.declare "" exclusive (bits: passive 1, durable 2, exclusive 4).
        let mut args = vec![0, 0, 0];
        args.push(0b100);
        args.extend_from_slice(&0u32.to_be_bytes());
        let declare = crate::common::method(50, 10, &args);
        c.send(&crate::common::frame(1, 1, &declare)).await;
        c.expect_method((50, 11)).await;
        let close = crate::common::method(10, 50, &[0, 200, 0, 0, 0, 0, 0]);
        c.send(&crate::common::frame(1, 0, &close)).await;
        c.expect_method((10, 51)).await;
    });
    matches!(timeout(Duration::from_secs(10), check).await, Ok(Ok(())))
}
