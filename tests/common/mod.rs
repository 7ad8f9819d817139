//! Shared helpers for integration tests: an in-process broker on an ephemeral port with a
//! temporary data dir, and a raw AMQP client for protocol-violation tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren::config::Config;
use warren::server::Server;
use warren_storage::FsyncPolicy;

pub struct TestBroker {
    pub addr: SocketAddr,
    /// The AMQPS listener, if the config had TLS.
    pub tls_addr: Option<SocketAddr>,
    /// The management API (an ephemeral port).
    pub http_addr: Option<SocketAddr>,
    /// Prometheus metrics (an ephemeral port).
    pub prometheus_addr: Option<SocketAddr>,
    /// The RabbitMQ Stream protocol (an ephemeral port).
    pub stream_addr: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    pub ctx: std::sync::Arc<warren::connection::ServerContext>,
}

impl TestBroker {
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }
}

/// Starts a broker in this process (on the current tokio runtime).
pub async fn start() -> TestBroker {
    start_with(|_| {}).await
}

pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        http: Some("127.0.0.1:0".parse().unwrap()),
        prometheus: Some("127.0.0.1:0".parse().unwrap()),
        listen_stream: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: dir.path().to_path_buf(),
        fsync: FsyncPolicy::Never,
        ..Config::default()
    };
    tweak(&mut config);
    let server = Server::bind(&config).await.unwrap();
    let addr = server.local_addr;
    let tls_addr = server.tls_addr;
    let http_addr = server.http_addr;
    let prometheus_addr = server.prometheus_addr;
    let stream_addr = server.stream_addr;
    let ctx = server.ctx.clone();
    tokio::spawn(server.run());
    TestBroker {
        addr,
        tls_addr,
        http_addr,
        prometheus_addr,
        stream_addr,
        dir,
        ctx,
    }
}

/// The reply code of a lapin protocol error, if it is one.
pub fn lapin_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

pub async fn lapin_connect(b: &TestBroker) -> lapin::Connection {
    lapin::Connection::connect(&b.url(), lapin::ConnectionProperties::default())
        .await
        .unwrap()
}

/// A minimal hand-rolled AMQP client for sending malformed input.
pub struct RawClient {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

pub fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(0xCE);
    f
}

pub fn method(class: u16, method: u16, args: &[u8]) -> Vec<u8> {
    let mut p = class.to_be_bytes().to_vec();
    p.extend_from_slice(&method.to_be_bytes());
    p.extend_from_slice(args);
    p
}

pub fn shortstr(s: &str) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

/// A parsed frame from the server.
#[derive(Debug)]
pub struct RawFrame {
    pub kind: u8,
    pub channel: u16,
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn ids(&self) -> (u16, u16) {
        (
            u16::from_be_bytes([self.payload[0], self.payload[1]]),
            u16::from_be_bytes([self.payload[2], self.payload[3]]),
        )
    }

    /// The reply code of a connection.close or channel.close.
    pub fn close_code(&self) -> Option<u16> {
        let ids = self.ids();
        (ids == (10, 50) || ids == (20, 40))
            .then(|| u16::from_be_bytes([self.payload[4], self.payload[5]]))
    }
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        RawClient {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads one frame (None on EOF or after 5 s).
    pub async fn recv(&mut self) -> Option<RawFrame> {
        loop {
            if self.buf.len() >= 7 {
                let size = u32::from_be_bytes([self.buf[3], self.buf[4], self.buf[5], self.buf[6]])
                    as usize;
                if self.buf.len() >= 8 + size {
                    let f = RawFrame {
                        kind: self.buf[0],
                        channel: u16::from_be_bytes([self.buf[1], self.buf[2]]),
                        payload: self.buf[7..7 + size].to_vec(),
                    };
                    self.buf.drain(..8 + size);
                    return Some(f);
                }
            }
            let mut chunk = vec![0u8; 65536];
            let n = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads frames until a method with these ids arrives (skipping heartbeats etc.).
    pub async fn expect_method(&mut self, ids: (u16, u16)) -> RawFrame {
        loop {
            let f = self
                .recv()
                .await
                .unwrap_or_else(|| panic!("EOF waiting for {ids:?}"));
            if f.kind == 1 && f.ids() == ids {
                return f;
            }
        }
    }

    /// Waits for a connection.close or channel.close and returns its code.
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            let f = self.recv().await.expect("EOF before close");
            if f.kind == 1 {
                if let Some(code) = f.close_code() {
                    return code;
                }
            }
        }
    }

    /// True once the server has closed the socket (within 5 s).
    pub async fn closed(&mut self) -> bool {
        loop {
            match self.recv().await {
                None => return true,
                Some(_) => continue,
            }
        }
    }

    /// Protocol header, start-ok (PLAIN guest/guest), tune-ok, open; returns when open-ok
    /// arrives.
    pub async fn handshake(addr: SocketAddr) -> RawClient {
        Self::handshake_with_properties(addr, &[]).await
    }

    /// As `handshake`, with `properties` (a field table body) as client-properties.
    pub async fn handshake_with_properties(addr: SocketAddr, properties: &[u8]) -> RawClient {
        Self::handshake_full(addr, properties, 0).await
    }

    /// The handshake with client-properties and a heartbeat interval of our choosing.
    pub async fn handshake_full(addr: SocketAddr, properties: &[u8], heartbeat: u16) -> RawClient {
        let mut c = RawClient::connect(addr).await;
        c.send(b"AMQP\x00\x00\x09\x01").await;
        c.expect_method((10, 10)).await;
        let mut args = (properties.len() as u32).to_be_bytes().to_vec();
        args.extend_from_slice(properties);
        args.extend(shortstr("PLAIN"));
        let resp = b"\0guest\0guest";
        args.extend_from_slice(&(resp.len() as u32).to_be_bytes());
        args.extend_from_slice(resp);
        args.extend(shortstr("en_US"));
        c.send(&frame(1, 0, &method(10, 11, &args))).await;
        c.expect_method((10, 30)).await;
        let mut tune = Vec::new();
        tune.extend_from_slice(&2047u16.to_be_bytes());
        tune.extend_from_slice(&131072u32.to_be_bytes());
        tune.extend_from_slice(&heartbeat.to_be_bytes());
        c.send(&frame(1, 0, &method(10, 31, &tune))).await;
        let mut open = shortstr("/");
        open.extend(shortstr(""));
        open.push(0);
        c.send(&frame(1, 0, &method(10, 40, &open))).await;
        c.expect_method((10, 41)).await;
        c
    }

    pub async fn open_channel(&mut self, ch: u16) {
        self.send(&frame(1, ch, &method(20, 10, &shortstr(""))))
            .await;
        self.expect_method((20, 11)).await;
    }
}

/// Every file under `dir`, recursively (a missing dir has none).
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Waits (up to 10 s) until something listens on loopback `port`.
pub fn wait_port(port: u16) {
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("broker did not come up on {port}");
}

/// A broker child process (`spawn_warren`), killed with SIGKILL when dropped: also when
/// an assertion fails, so a failed test leaves no broker behind.
pub struct ChildBroker(pub std::process::Child);

impl ChildBroker {
    /// Starts one on `port` with `extra` flags and waits for its AMQP port.
    pub fn spawn(data: &std::path::Path, port: u16, extra: &[&str]) -> ChildBroker {
        let b = ChildBroker(spawn_warren(data, port, extra, std::process::Stdio::null()));
        wait_port(port);
        b
    }

    /// kill -9, and the exit collected.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free port on loopback (for brokers run as child processes).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connects with lapin to a broker that may still be starting (up to 5 s).
pub async fn lapin_connect_port(port: u16) -> lapin::Connection {
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    for _ in 0..100 {
        if let Ok(c) =
            lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("broker did not come up on port {port}");
}

/// Publishes one message on a confirm-mode channel and waits for its confirm.
pub async fn publish_confirmed(
    ch: &lapin::Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    persistent: bool,
) -> lapin::Confirmation {
    let props = if persistent {
        lapin::BasicProperties::default().with_delivery_mode(2)
    } else {
        lapin::BasicProperties::default()
    };
    ch.basic_publish(
        exchange.into(),
        routing_key.into(),
        lapin::options::BasicPublishOptions::default(),
        body,
        props,
    )
    .await
    .unwrap()
    .await
    .unwrap()
}

/// Starts the `warren` binary as a child on loopback `port` with `--fsync always`, the
/// data in `dir`, and `extra` flags; its stderr goes to `stderr`.
pub fn spawn_warren(
    dir: &std::path::Path,
    port: u16,
    extra: &[&str],
    stderr: std::process::Stdio,
) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--fsync",
            "always",
            "--http",
            "127.0.0.1:0",
            "--prometheus",
            "127.0.0.1:0",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// The broker's connection.close that ends `conn`, as (code, text): a listener on its
/// events, started before the close is provoked.
pub fn watch_close(conn: &lapin::Connection) -> tokio::task::JoinHandle<(u16, String)> {
    use futures_lite::StreamExt;
    let mut events = Box::pin(conn.events_listener());
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let lapin::Event::Error(e) = event {
                if let lapin::ErrorKind::ProtocolError(amqp) = e.kind() {
                    return (amqp.get_id(), amqp.get_message().to_string());
                }
            }
        }
        panic!("connection events ended without a close");
    })
}
