//! TCP between nodes: the cluster port's server, and one multiplexed connection to each
//! peer (`Peer`) that every group's Raft traffic to that peer shares. Frames are
//! `wire.rs`'s.
//!
//! A peer connection is opened on first use and again after it fails; calls in flight
//! when it fails get an error at once (openraft retries with its backoff), so a partition
//! or a dead peer never leaves a caller waiting longer than its timeout.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::wire::{self, RpcKind, HELLO};

/// How long dialling a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Frames waiting to be sent are written together up to this many bytes: under load (a
/// thousand groups' heartbeats and appends on one connection) one write carries many.
const WRITE_BATCH: usize = 64 * 1024;
/// Bytes read from a connection at once; a frame's length and body come out of them.
const READ_BUFFER: usize = 64 * 1024;

/// The future a handler returns.
pub type Reply = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>>;

/// What serves requests arriving on the cluster port (the node). `conn` numbers the
/// connection a request came on (each connection a peer dials here has its own number).
pub trait RpcHandler: Send + Sync + 'static {
    fn handle(self: Arc<Self>, conn: u64, kind: RpcKind, group: String, body: Vec<u8>) -> Reply;

    /// Connection `conn` ended: the peer closed it (its process stopped or died), or the
    /// network broke it.
    fn closed(&self, conn: u64);
}

/// The number of the next connection accepted on the cluster port.
static NEXT_INBOUND: AtomicU64 = AtomicU64::new(1);

/// Reads one frame (without its length prefix). The buffer grows as bytes arrive, so a
/// length prefix alone allocates nothing.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    let len = wire::check_len(r.read_u32().await?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let mut frame = Vec::new();
    let got = r.take(len as u64).read_to_end(&mut frame).await?;
    if got != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(frame)
}

/// Writes the frames `frames` yields until it ends or a write fails. A frame is copied into
/// a batch with the others waiting at that moment; one as large as a batch goes alone.
async fn write_frames(
    frames: &mut mpsc::UnboundedReceiver<Vec<u8>>,
    writer: &mut OwnedWriteHalf,
) -> io::Result<()> {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while let Some(first) = frames.recv().await {
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            if frame.len() >= WRITE_BATCH {
                if !batch.is_empty() {
                    writer.write_all(&batch).await?;
                    batch.clear();
                }
                writer.write_all(&frame).await?;
            } else {
                batch.extend_from_slice(&frame);
            }
            if batch.len() < WRITE_BATCH {
                next = frames.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            writer.write_all(&batch).await?;
            batch.clear();
        }
    }
    Ok(())
}

async fn hello(stream: &mut TcpStream) -> io::Result<()> {
    stream.write_all(HELLO).await?;
    let mut theirs = [0u8; 8];
    stream.read_exact(&mut theirs).await?;
    if &theirs != HELLO {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a Warren cluster port (or another version)",
        ));
    }
    Ok(())
}

/// Accepts connections on the cluster port until the listener fails.
pub async fn serve(listener: TcpListener, handler: Arc<dyn RpcHandler>) {
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                let handler = handler.clone();
                let conn = NEXT_INBOUND.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(stream, conn, handler.clone()).await {
                        tracing::debug!(%from, "cluster connection closed: {e}");
                    }
                    handler.closed(conn);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!("cluster port accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    conn: u64,
    handler: Arc<dyn RpcHandler>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    hello(&mut stream).await?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writing = tokio::spawn(async move { write_frames(&mut rx, &mut writer).await });
    let result = loop {
        let frame = match read_frame(&mut reader).await {
            Ok(f) => f,
            Err(e) => break Err(e),
        };
        let request = match wire::decode_request(&frame) {
            Ok(r) => r,
            Err(e) => break Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        };
        let id = request.id;
        let reply = handler.clone().handle(
            conn,
            request.kind,
            request.group.to_owned(),
            request.body.to_vec(),
        );
        let tx = tx.clone();
        // Each request on its own task: a slow snapshot install does not hold up votes.
        tokio::spawn(async move {
            let frame = match reply.await {
                Ok(body) => wire::encode_response(id, Ok(&body)),
                Err(why) => wire::encode_response(id, Err(why.as_bytes())),
            };
            let _ = tx.send(frame);
        });
    };
    writing.abort();
    result
}

/// Why a call got no answer from the peer's handler.
#[derive(Debug)]
pub enum CallError {
    /// Could not connect, or the connection failed before the answer.
    Unreachable(io::Error),
    /// No answer within the timeout.
    Timeout,
    /// The peer answered with a failure (unknown group, a bad body, ...).
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "unreachable: {e}"),
            CallError::Timeout => write!(f, "no answer in time"),
            CallError::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

impl std::error::Error for CallError {}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Vec<u8>, CallError>>>>>;

struct Connection {
    frames: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    /// Set by the reader when the connection fails.
    failed: Arc<AtomicBool>,
}

/// The connection to one peer, shared by every group's traffic to it.
pub struct Peer {
    addr: String,
    /// Whether the last attempt to reach it worked: a change is logged once, not every
    /// retry.
    reachable: AtomicBool,
    next_id: AtomicU64,
    /// How many connections have been opened to it: a change means the link was cut.
    generation: AtomicU64,
    conn: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl Peer {
    pub fn new(addr: String) -> Peer {
        Peer {
            addr,
            reachable: AtomicBool::new(true),
            next_id: AtomicU64::new(1),
            generation: AtomicU64::new(0),
            conn: tokio::sync::Mutex::new(None),
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// How many connections have been opened to the peer so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The open connection, or a new one; logs when the peer stops or starts answering.
    async fn connection(&self) -> Result<Arc<Connection>, CallError> {
        let result = self.connect().await;
        let ok = result.is_ok();
        if self.reachable.swap(ok, Ordering::Relaxed) != ok {
            match &result {
                Ok(_) => tracing::info!(peer = %self.addr, "cluster: peer reachable again"),
                Err(e) => tracing::warn!(peer = %self.addr, "cluster: peer {e}"),
            }
        }
        result
    }

    async fn connect(&self) -> Result<Arc<Connection>, CallError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            if !c.failed.load(Ordering::Acquire) && !c.frames.is_closed() {
                return Ok(c.clone());
            }
        }
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| CallError::Timeout)?
            .map_err(CallError::Unreachable)?;
        stream.set_nodelay(true).map_err(CallError::Unreachable)?;
        tokio::time::timeout(CONNECT_TIMEOUT, hello(&mut stream))
            .await
            .map_err(|_| CallError::Timeout)?
            .map_err(CallError::Unreachable)?;
        let (reader, mut writer) = stream.into_split();
        let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
        let (frames, mut outgoing) = mpsc::unbounded_channel::<Vec<u8>>();
        let pending: Pending = Arc::default();
        let failed = Arc::new(AtomicBool::new(false));
        let conn = Arc::new(Connection {
            frames,
            pending,
            failed: failed.clone(),
        });
        let waiting = conn.pending.clone();
        tokio::spawn(async move {
            // Writes until the connection fails or is dropped; then the reader's end goes
            // too (its half of the socket sees the close).
            let _ = write_frames(&mut outgoing, &mut writer).await;
            let _ = writer.shutdown().await;
        });
        tokio::spawn(async move {
            let failure = loop {
                let frame = match read_frame(&mut reader).await {
                    Ok(f) => f,
                    Err(e) => break e,
                };
                let response = match wire::decode_response(&frame) {
                    Ok(r) => r,
                    Err(e) => break io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                };
                let waiter = waiting.lock().expect("pending map").remove(&response.id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(match response.result {
                        Ok(body) => Ok(body.to_vec()),
                        Err(why) => Err(CallError::Failed(String::from_utf8_lossy(why).into())),
                    });
                }
            };
            // The next call dials again; every call still waiting here fails now.
            failed.store(true, Ordering::Release);
            let waiters: Vec<_> = waiting.lock().expect("pending map").drain().collect();
            for (_, waiter) in waiters {
                let _ = waiter.send(Err(CallError::Unreachable(io::Error::new(
                    failure.kind(),
                    failure.to_string(),
                ))));
            }
        });
        *slot = Some(conn.clone());
        self.generation.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }

    /// Sends a request and waits (at most `timeout`) for its answer.
    pub async fn call(
        &self,
        kind: RpcKind,
        group: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, CallError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = tokio::time::timeout_at(deadline, self.connection())
            .await
            .map_err(|_| CallError::Timeout)??;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().expect("pending map").insert(id, tx);
        // The reader marks a failure before it fails the waiters: a call registered after
        // that sees the mark here.
        if conn.failed.load(Ordering::Acquire) {
            conn.pending.lock().expect("pending map").remove(&id);
            self.forget(&conn).await;
            return Err(CallError::Unreachable(io::ErrorKind::BrokenPipe.into()));
        }
        if conn
            .frames
            .send(wire::encode_request(id, kind, group, body))
            .is_err()
        {
            conn.pending.lock().expect("pending map").remove(&id);
            self.forget(&conn).await;
            return Err(CallError::Unreachable(io::ErrorKind::BrokenPipe.into()));
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(answer)) => {
                if matches!(answer, Err(CallError::Unreachable(_))) {
                    self.forget(&conn).await;
                }
                answer
            }
            Ok(Err(_)) => Err(CallError::Unreachable(io::ErrorKind::BrokenPipe.into())),
            Err(_) => {
                conn.pending.lock().expect("pending map").remove(&id);
                Err(CallError::Timeout)
            }
        }
    }

    /// Drops a failed connection so the next call dials again.
    async fn forget(&self, failed: &Arc<Connection>) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, failed)) {
            *slot = None;
        }
    }
}

/// Binds the cluster port.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames queued together, small and large (over a batch), come out of the socket
    /// whole and in order, and the writer ends when the sender goes.
    #[tokio::test]
    async fn batched_writes_keep_every_frame_whole_and_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_, mut writer) = client.into_split();
        let sizes = [
            1usize,
            10,
            WRITE_BATCH - 4,
            3,
            WRITE_BATCH * 3,
            7,
            0,
            WRITE_BATCH,
            5,
        ];
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        // Everything is queued before the writer starts, so it batches what it can.
        for (i, n) in sizes.iter().enumerate() {
            let mut frame = (*n as u32).to_be_bytes().to_vec();
            frame.extend(std::iter::repeat_n(i as u8, *n));
            tx.send(frame).unwrap();
        }
        drop(tx);
        let writing = tokio::spawn(async move { write_frames(&mut rx, &mut writer).await });
        let mut reader = BufReader::with_capacity(READ_BUFFER, server);
        for (i, n) in sizes.iter().enumerate() {
            let len = reader.read_u32().await.unwrap() as usize;
            assert_eq!(len, *n, "frame {i}'s length");
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body).await.unwrap();
            assert!(body.iter().all(|b| *b == i as u8), "frame {i}'s bytes");
        }
        writing.await.unwrap().unwrap();
    }
}
