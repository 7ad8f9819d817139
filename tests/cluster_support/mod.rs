//! A cluster of `warren` processes on loopback for the cluster tests: every node reaches
//! every other through its own fault-injecting TCP proxy (one per ordered pair), so a test
//! can cut, black-hole, slow down and heal single links or isolate a node; nodes can be
//! killed with SIGKILL, paused with SIGSTOP and restarted on their data dir.
#![allow(dead_code)]

pub mod jepsen;
pub mod quorum;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// What a proxy does with traffic.
const PASS: u8 = 0;
/// Connections are refused (accepted and closed at once; open ones are cut).
const CUT: u8 = 1;
/// Connections are accepted and then nothing goes through (open ones are cut): the
/// other side sees timeouts, not errors.
const BLACKHOLE: u8 = 2;

/// A TCP proxy from a local port to `target`.
pub struct FaultProxy {
    pub port: u16,
    mode: Arc<AtomicU8>,
    /// Milliseconds each chunk is held before it is passed on, both ways (0: none).
    delay: Arc<AtomicU64>,
    /// Bytes forwarded, both ways, since the proxy started.
    bytes: Arc<AtomicU64>,
    open: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl FaultProxy {
    pub fn start(rt: &tokio::runtime::Runtime, target: u16) -> FaultProxy {
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(PASS));
        let open: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let bytes: Arc<AtomicU64> = Arc::default();
        let delay: Arc<AtomicU64> = Arc::default();
        let (m, o, b, d) = (mode.clone(), open.clone(), bytes.clone(), delay.clone());
        let accept = rt
            .spawn(async move {
                loop {
                    let Ok((inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    match m.load(Ordering::SeqCst) {
                        CUT => drop(inbound),
                        BLACKHOLE => {
                            let held = tokio::spawn(async move {
                                let _held = inbound;
                                std::future::pending::<()>().await;
                            });
                            o.lock().unwrap().push(held.abort_handle());
                        }
                        _ => {
                            let (bytes, delay) = (b.clone(), d.clone());
                            let task = tokio::spawn(async move {
                                let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await
                                else {
                                    return;
                                };
                                forward(inbound, outbound, target, bytes, delay).await;
                            });
                            o.lock().unwrap().push(task.abort_handle());
                        }
                    }
                }
            })
            .abort_handle();
        FaultProxy {
            port,
            mode,
            delay,
            bytes,
            open,
            accept,
        }
    }

    /// Bytes it has forwarded, both ways.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
        if mode != PASS {
            for conn in self.open.lock().unwrap().drain(..) {
                conn.abort();
            }
        }
    }

    pub fn cut(&self) {
        self.set(CUT)
    }

    pub fn blackhole(&self) {
        self.set(BLACKHOLE)
    }

    /// Every chunk, both ways, held for `by` before it is passed on (open connections
    /// too; in order): a slow link, not a broken one.
    pub fn slow(&self, by: Duration) {
        self.delay.store(by.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.delay.store(0, Ordering::SeqCst);
        self.set(PASS)
    }
}

/// Copies both ways until either side closes, each chunk held for the proxy's delay (read
/// as the chunk arrives) before it is written on. With `WARREN_CLUSTER_CAPTURE=DIR` each
/// direction is also written to a file in DIR (`*-requests.bin`: what the dialling node
/// sent; `*-responses.bin`: the answers), the real traffic `fuzz/raft_rpc_corpus.py`
/// turns into the `raft_rpc` fuzz target's seeds.
async fn forward(
    inbound: TcpStream,
    outbound: TcpStream,
    target: u16,
    bytes: Arc<AtomicU64>,
    delay: Arc<AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
    let capture = std::env::var_os("WARREN_CLUSTER_CAPTURE").map(PathBuf::from);
    let n = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let pipe = |mut from: tokio::net::tcp::OwnedReadHalf,
                mut to: tokio::net::tcp::OwnedWriteHalf,
                file: Option<PathBuf>,
                bytes: Arc<AtomicU64>,
                delay: Arc<AtomicU64>| async move {
        let mut file = file.map(|f| std::fs::File::create(f).unwrap());
        // Chunks in flight, each with the time it may go on: a bounded queue, so a slow
        // link holds back its sender as a real one would.
        let (held, mut due) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(256);
        let reader = async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                bytes.fetch_add(n as u64, Ordering::Relaxed);
                if let Some(f) = file.as_mut() {
                    std::io::Write::write_all(f, &buf[..n]).unwrap();
                }
                let wait = Duration::from_millis(delay.load(Ordering::Relaxed));
                let at = tokio::time::Instant::now() + wait;
                if held.send((at, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        };
        let writer = async move {
            while let Some((at, chunk)) = due.recv().await {
                tokio::time::sleep_until(at).await;
                if to.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            let _ = to.shutdown().await;
        };
        tokio::join!(reader, writer);
    };
    let name = |what: &str| {
        capture
            .as_ref()
            .map(|d| d.join(format!("{target}-{n}-{what}.bin")))
    };
    let up = pipe(
        in_read,
        out_write,
        name("requests"),
        bytes.clone(),
        delay.clone(),
    );
    let down = pipe(out_read, in_write, name("responses"), bytes, delay);
    tokio::join!(up, down);
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.set(CUT);
    }
}

/// xorshift64*: a test's random choices, reproducible from a printed seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }

    /// A seed from `var`, or from the clock (never 0, which xorshift keeps at 0).
    pub fn seed(var: &str) -> u64 {
        let clock = std::time::SystemTime::UNIX_EPOCH
            .elapsed()
            .unwrap()
            .as_nanos() as u64;
        env_or(var, clock).max(1)
    }
}

/// Environment variable `name` as a number, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One node: its ports, data dir and process.
pub struct Node {
    pub id: u64,
    pub amqp: u16,
    pub cluster: u16,
    /// The management API.
    pub http: u16,
    pub data: PathBuf,
    pub peers: String,
    pub child: Option<Child>,
    pub log: PathBuf,
    /// More flags for every start.
    pub args: Vec<String>,
    /// More environment for every start.
    pub env: Vec<(String, String)>,
}

impl Node {
    pub fn start(&mut self) {
        self.spawn(true);
    }

    /// From its next start on, its wall clock runs `secs` seconds behind the machine's
    /// (libfaketime, from Debian's `libfaketime`, preloaded into the process; its
    /// monotonic clock, which timers and Raft's timeouts use, is left as it is).
    pub fn set_clock_behind(&mut self, secs: u32) {
        let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
        assert!(
            std::path::Path::new(lib).exists(),
            "{lib} missing: apt-get install libfaketime (.ci/run does)"
        );
        self.env = vec![
            ("LD_PRELOAD".into(), lib.into()),
            ("FAKETIME".into(), format!("-{secs}")),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ];
    }

    /// Starts it on its own, not in a cluster (no `--node-id`): a single broker with the
    /// same ports and data dir.
    pub fn start_alone(&mut self) {
        self.spawn(false);
    }

    fn spawn(&mut self, clustered: bool) {
        assert!(self.child.is_none(), "node {} runs already", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_warren"));
        command
            .args(["--listen", &format!("127.0.0.1:{}", self.amqp)])
            .args(["--fsync", "always", "--prometheus", "off"])
            .args(["--http", &format!("127.0.0.1:{}", self.http)]);
        if clustered {
            command
                .args(["--node-id", &self.id.to_string()])
                .args(["--cluster-listen", &format!("127.0.0.1:{}", self.cluster)])
                .args(["--cluster-peers", &self.peers]);
        }
        command.args(&self.args).envs(self.env.iter().cloned());
        let child = command
            .arg("--data-dir")
            .arg(&self.data)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    /// SIGSTOP: the process stays, its sockets stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP")
    }

    pub fn resume(&self) {
        self.signal("-CONT")
    }

    /// `warren cluster ARGS` against this node (the command's own flags: its id and
    /// cluster port); its stdout on success.
    pub fn cluster_command(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["--node-id", &self.id.to_string()])
            .args(["--cluster-listen", &format!("127.0.0.1:{}", self.cluster)])
            .arg("cluster")
            .args(args)
            .output()
            .unwrap();
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    }

    /// `warren cluster status --json`, parsed; `None` if the node does not answer.
    pub fn status(&self) -> Option<Value> {
        let out = self.cluster_command(&["status", "--json"]).ok()?;
        serde_json::from_str(&out).ok()
    }

    /// GET `path` of its management API as guest: the JSON body of a 200, `None` if the
    /// node does not answer or answers anything else.
    pub fn api_get(&self, path: &str) -> Option<Value> {
        match self.api_status(path)? {
            (200, body) => Some(body),
            _ => None,
        }
    }

    /// GET `path` of its management API as guest: the status code and the JSON body,
    /// `None` if the node does not answer.
    pub fn api_status(&self, path: &str) -> Option<(u16, Value)> {
        match self.api_call("GET", path, None, "guest:guest")? {
            (status, Some(body)) => Some((status, body)),
            _ => None,
        }
    }

    /// `method` on `path` of its management API as `credentials` ("user:password"), with
    /// a JSON body: the status code and the JSON body if there is one; `None` if the node
    /// does not answer within 20 s.
    pub fn api_call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        credentials: &str,
    ) -> Option<(u16, Option<Value>)> {
        http_call(self.http, method, path, body, credentials)
    }

    /// The metadata group's entry of `status`.
    pub fn meta(&self) -> Option<Value> {
        let s = self.status()?;
        s["groups"]
            .as_array()?
            .iter()
            .find(|g| g["group"] == "meta")
            .cloned()
    }
}

/// `method` on `path` of the management API on `port` as `credentials`
/// ("user:password"), with a JSON body: the status code and the JSON body if there is
/// one; `None` if nothing answers within 20 s.
pub fn http_call(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
    credentials: &str,
) -> Option<(u16, Option<Value>)> {
    use base64::Engine;
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let auth = base64::engine::general_purpose::STANDARD.encode(credentials);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    Some((status, serde_json::from_str(body).ok()))
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A paused process must be resumed to die of SIGKILL promptly everywhere.
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
        }
        self.kill();
    }
}

/// Nodes 1..=n with a proxy per ordered pair.
pub struct Cluster {
    pub nodes: BTreeMap<u64, Node>,
    /// (from, to) -> the proxy `from` dials to reach `to`.
    pub links: BTreeMap<(u64, u64), FaultProxy>,
    pub dir: tempfile::TempDir,
    /// Runs the proxies (the tests themselves are plain threads).
    rt: tokio::runtime::Runtime,
}

/// A free port for a node's listener, below the kernel's ephemeral range (32768 and up,
/// by default and on these machines): a port the kernel picked with `bind(0)` and that we
/// released could be handed out again, before the node binds it, to one of the proxies'
/// listeners or to an outgoing connection, and the node would fail to start. Ports are
/// taken in turn from 20000..32000, starting at a place set by the process id (tests in
/// other processes), each checked free by binding it.
fn free_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(97);
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = 20000 + (offset.wrapping_add(n) % 12000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Cluster {
    /// Nodes `1..=n`, and `extra` more nodes (`n+1..`) created but not started, whose
    /// peers are the first `n` (to join later).
    pub fn new(n: u64, extra: u64) -> Cluster {
        Cluster::with_args(n, extra, &[])
    }

    /// As `new`, every node started with `args` as well.
    pub fn with_args(n: u64, extra: u64, args: &[&str]) -> Cluster {
        let mut c = Cluster::created(n, extra);
        for node in c.nodes.values_mut() {
            node.args = args.iter().map(|a| a.to_string()).collect();
        }
        for id in 1..=n {
            c.node_mut(id).start();
        }
        c
    }

    /// As `new`, with no node started.
    pub fn created(n: u64, extra: u64) -> Cluster {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut dir = tempfile::tempdir().unwrap();
        // `WARREN_CLUSTER_KEEP=1` keeps the nodes' data dirs and logs for a look after.
        if std::env::var_os("WARREN_CLUSTER_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("cluster kept in {}", dir.path().display());
        }
        let total = n + extra;
        let ports: BTreeMap<u64, (u16, u16, u16)> = (1..=total)
            .map(|id| (id, (free_port(), free_port(), free_port())))
            .collect();
        let mut links = BTreeMap::new();
        for from in 1..=total {
            for to in 1..=total {
                if from != to {
                    links.insert((from, to), FaultProxy::start(&rt, ports[&to].1));
                }
            }
        }
        let mut nodes = BTreeMap::new();
        for id in 1..=total {
            let members: Vec<u64> = match id <= n {
                true => (1..=n).collect(),
                false => (1..=n).chain(std::iter::once(id)).collect(),
            };
            let peers: Vec<String> = members
                .iter()
                .filter(|&&p| p != id)
                .map(|p| format!("{p}=127.0.0.1:{}", links[&(id, *p)].port))
                .collect();
            nodes.insert(
                id,
                Node {
                    id,
                    amqp: ports[&id].0,
                    cluster: ports[&id].1,
                    http: ports[&id].2,
                    data: dir.path().join(format!("node{id}")),
                    peers: peers.join(","),
                    child: None,
                    log: dir.path().join(format!("node{id}.log")),
                    args: Vec::new(),
                    env: Vec::new(),
                },
            );
        }
        Cluster {
            nodes,
            links,
            dir,
            rt,
        }
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[&id]
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes.get_mut(&id).unwrap()
    }

    /// Cuts every link to and from `id`.
    pub fn isolate(&self, id: u64) {
        for ((from, to), proxy) in &self.links {
            if *from == id || *to == id {
                proxy.cut();
            }
        }
    }

    /// Bytes every link has carried so far, both ways.
    pub fn link_bytes(&self) -> u64 {
        self.links.values().map(FaultProxy::bytes).sum()
    }

    /// Slows every link to and from `id` by `by` each way.
    pub fn slow(&self, id: u64, by: Duration) {
        for ((from, to), proxy) in &self.links {
            if *from == id || *to == id {
                proxy.slow(by);
            }
        }
    }

    /// Black-holes every link to and from `id`: its peers see silence, not errors.
    pub fn blackhole(&self, id: u64) {
        for ((from, to), proxy) in &self.links {
            if *from == id || *to == id {
                proxy.blackhole();
            }
        }
    }

    pub fn heal_all(&self) {
        for proxy in self.links.values() {
            proxy.heal();
        }
    }

    /// Waits until every node of `ids` reports the same metadata leader (one of `ids`,
    /// not `not`) and the same term; returns (leader, term).
    pub fn agreed_leader(&self, ids: &[u64], not: Option<u64>, within: Duration) -> (u64, u64) {
        let until = Instant::now() + within;
        loop {
            let views: Vec<Option<(u64, u64)>> = ids
                .iter()
                .map(|id| {
                    let m = self.node(*id).meta()?;
                    Some((m["leader"].as_u64()?, m["term"].as_u64()?))
                })
                .collect();
            if let Some(Some(first)) = views.first() {
                if views.iter().all(|v| *v == Some(*first))
                    && ids.contains(&first.0)
                    && Some(first.0) != not
                {
                    return *first;
                }
            }
            assert!(
                Instant::now() < until,
                "nodes {ids:?} did not agree on a leader (not {not:?}) within {within:?}: {views:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every node's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in self.nodes.values() {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out += &format!("--- node {} ---\n", n.id);
            for l in tail.into_iter().rev() {
                out += l;
                out.push('\n');
            }
        }
        out
    }
}
