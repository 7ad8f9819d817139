//! The server: the only place that wires the broker model, connections, the management
//! HTTP API and the Prometheus metrics together. It recovers the model from the data dir, accepts AMQP connections,
//! serves the API, runs periodic upkeep (ack batches, compaction, alarms) and shuts down
//! cleanly.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::alarms::Alarms;
use crate::broker::{definitions_import, BrokerConfig, BrokerHandle};
use crate::config::{Config, Limits};
use crate::connection::{self, ServerContext, Transport};
use crate::tls::TlsAcceptor;
use warren_storage::{GroupCommit, LogConfig};

/// How often pending acks are written and sparse segments compacted.
const MAINTENANCE_EVERY: Duration = Duration::from_millis(200);
/// How often the timer task looks whether timed work (message expiry, x-expires, dead
/// letters awaiting a sync) is due: the precision of TTLs.
const TIMER_TICK: Duration = Duration::from_millis(5);
/// How long shutdown waits for clients to answer connection.close before going on.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running broker.
pub struct Server {
    pub local_addr: SocketAddr,
    /// The AMQPS listener's address, when TLS is configured.
    pub tls_addr: Option<SocketAddr>,
    /// The management API's address, unless `--http off`.
    pub http_addr: Option<SocketAddr>,
    /// The management API's HTTPS address, with `--https`.
    pub https_addr: Option<SocketAddr>,
    /// The Prometheus metrics' address, unless `--prometheus off`.
    pub prometheus_addr: Option<SocketAddr>,
    /// The RabbitMQ Stream protocol's address, with `--listen-stream`.
    pub stream_addr: Option<SocketAddr>,
    pub ctx: Arc<ServerContext>,
    listener: TcpListener,
    http: Option<TcpListener>,
    https: Option<crate::http::https::HttpsListener>,
    tls: Option<(TcpListener, Arc<TlsAcceptor>)>,
    prometheus: Option<TcpListener>,
    stream: Option<TcpListener>,
    /// How long recovery took (a metric).
    recovery: Duration,
    /// This node in its cluster, with `--node-id`.
    pub cluster: Option<Arc<crate::cluster::node::ClusterNode>>,
    shutdown: watch::Sender<bool>,
}

impl Server {
    /// Recovers state from `config.data_dir`, imports `--load-definitions` if given, and
    /// binds the AMQP listener. Connections are accepted once `run` is called, i.e. after
    /// recovery has finished.
    pub async fn bind(config: &Config) -> io::Result<Server> {
        let tls = match &config.tls {
            Some(t) => Some((
                t.listen,
                Arc::new(TlsAcceptor::load(t).map_err(io::Error::other)?),
            )),
            None => None,
        };
        let started = std::time::Instant::now();
        let (broker, report) = open_broker(config)?;
        let recovery = started.elapsed();
        for p in &report.problems {
            tracing::warn!("recovery: {p}");
        }
        if report.discarded_unwritten > 0 {
            tracing::debug!(
                files = report.discarded_unwritten,
                "recovery: removed segment files that never held a synced record"
            );
        }
        tracing::info!(
            queues = report.queues,
            messages = report.messages,
            data_dir = %config.data_dir.display(),
            millis = recovery.as_millis() as u64,
            "recovered {} durable queues, {} messages",
            report.queues,
            report.messages,
        );
        if let Some(file) = &config.load_definitions {
            let bytes = std::fs::read(file)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", file.display())))?;
            let summary = definitions_import::import_json(&broker, &bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("--load-definitions {}: {e}", file.display()),
                )
            })?;
            tracing::info!(file = %file.display(), "imported definitions: {summary}");
        }
        let alarms = Arc::new(Alarms::new(
            &config.data_dir,
            config.memory_limit_bytes(),
            config.disk_free_limit,
        ));
        alarms.check();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ctx = Arc::new(ServerContext {
            confirms: broker.confirm_tracker(),
            broker,
            limits: Limits::from(config),
            alarms,
            shutdown: shutdown_rx,
        });
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let tls = match tls {
            Some((addr, acceptor)) => {
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|e| io::Error::new(e.kind(), format!("--listen-tls {addr}: {e}")))?;
                Some((l, acceptor))
            }
            None => None,
        };
        let http = match config.http {
            Some(addr) => Some(crate::http::bind(addr).await?),
            None => None,
        };
        let https = match (config.https, &tls) {
            (Some(addr), Some((_, acceptor))) => {
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|e| io::Error::new(e.kind(), format!("--https {addr}: {e}")))?;
                Some(crate::http::https::HttpsListener::new(
                    l,
                    acceptor.rustls(),
                )?)
            }
            _ => None,
        };
        let prometheus = match config.prometheus {
            Some(addr) => Some(crate::metrics::bind(addr).await?),
            None => None,
        };
        let stream =
            match config.listen_stream {
                Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                    io::Error::new(e.kind(), format!("--listen-stream {addr}: {e}"))
                })?),
                None => None,
            };
        let cluster = match &config.cluster {
            Some(c) => {
                let info = crate::cluster::meta_machine::NodeInfo {
                    id: c.node_id,
                    name: crate::http::node_name(Some(c.node_id)),
                    cluster: String::new(),
                    amqp: local_addr.to_string(),
                    http: http
                        .as_ref()
                        .and_then(|l| l.local_addr().ok())
                        .map(|a| a.to_string()),
                    version: env!("CARGO_PKG_VERSION").into(),
                    started_at: 0,
                };
                let log = LogConfig {
                    segment_size: config.segment_size,
                    ..LogConfig::default()
                };
                let commit = ctx.broker.commit().clone();
                let node = crate::cluster::node::ClusterNode::start(
                    c.clone(),
                    &config.data_dir,
                    log,
                    commit,
                    info,
                )
                .await?;
                // Before clients connect: quorum queues are the cluster's from the start.
                crate::replication::start(node.clone(), ctx.broker.clone()).await;
                Some(node)
            }
            None => None,
        };
        Ok(Server {
            cluster,
            local_addr,
            tls_addr: tls.as_ref().and_then(|(l, _)| l.local_addr().ok()),
            http_addr: http.as_ref().and_then(|l| l.local_addr().ok()),
            https_addr: https
                .as_ref()
                .and_then(|l| axum::serve::Listener::local_addr(l).ok()),
            prometheus_addr: prometheus.as_ref().and_then(|l| l.local_addr().ok()),
            stream_addr: stream.as_ref().and_then(|l| l.local_addr().ok()),
            ctx,
            listener,
            http,
            https,
            tls,
            prometheus,
            stream,
            recovery,
            shutdown,
        })
    }

    /// Accepts connections until `stop` resolves, then shuts down: stops accepting, sends
    /// connection.close 320 to every client, waits (a few seconds at most) for them to
    /// go, writes pending acks and finishes in-flight syncs.
    pub async fn run_until(mut self, stop: impl std::future::Future<Output = ()>) {
        let upkeep = tokio::spawn(upkeep(self.ctx.clone()));
        let timers = tokio::spawn(timers(self.ctx.clone()));
        tracing::info!("accepting AMQP connections on {}", self.local_addr);
        if let Some(addr) = self.tls_addr {
            tracing::info!("accepting AMQPS connections on {addr}");
        }
        if let Some(addr) = self.stream_addr {
            tracing::info!("accepting RabbitMQ Stream protocol connections on {addr}");
        }
        let mut listeners = vec![("amqp", self.local_addr)];
        listeners.extend(self.tls_addr.map(|a| ("amqp/ssl", a)));
        listeners.extend(self.stream_addr.map(|a| ("stream", a)));
        listeners.extend(self.http_addr.map(|a| ("http", a)));
        listeners.extend(self.https_addr.map(|a| ("https", a)));
        listeners.extend(self.prometheus_addr.map(|a| ("http/prometheus", a)));
        let state = crate::http::ApiState {
            broker: self.ctx.broker.clone(),
            node: Arc::new(crate::http::NodeInfo {
                name: crate::http::node_name(self.cluster.as_ref().map(|c| c.node_id())),
                listeners,
            }),
            cluster: self.cluster.clone(),
            rates: Arc::default(),
            alarms: self.ctx.alarms.clone(),
            started: std::time::Instant::now(),
        };
        let stopped = |server: &Self| {
            let mut stopping = server.shutdown.subscribe();
            async move {
                let _ = stopping.wait_for(|s| *s).await;
            }
        };
        let mut api = Vec::new();
        if self.http.is_some() || self.https.is_some() {
            api.push(tokio::spawn(crate::http::rates::run(
                state.rates.clone(),
                state.broker.clone(),
            )));
        }
        if let Some(listener) = self.http.take() {
            let addr = self.http_addr.expect("bound");
            tracing::info!("serving the management API on http://{addr}");
            let stop = stopped(&self);
            api.push(tokio::spawn(crate::http::serve(
                listener,
                state.clone(),
                stop,
            )));
        }
        if let Some(listener) = self.prometheus.take() {
            let addr = self.prometheus_addr.expect("bound");
            tracing::info!("serving Prometheus metrics on http://{addr}/metrics");
            let metrics = crate::metrics::MetricsState {
                broker: self.ctx.broker.clone(),
                alarms: self.ctx.alarms.clone(),
                node: state.node.name.as_str().into(),
                recovery: self.recovery,
            };
            let stop = stopped(&self);
            api.push(tokio::spawn(crate::metrics::serve(listener, metrics, stop)));
        }
        if let Some(listener) = self.https.take() {
            let addr = self.https_addr.expect("bound");
            tracing::info!("serving the management API on https://{addr}");
            let stop = stopped(&self);
            api.push(tokio::spawn(crate::http::serve(listener, state, stop)));
        }
        let mut connections = JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let ctx = self.ctx.clone();
                        let local = stream.local_addr().unwrap_or(self.local_addr);
                        connections.spawn(connection::serve(stream, (peer, local), Transport::Plain, ctx));
                    }
                    Err(e) => accept_failed(e).await,
                },
                accepted = accept_tls(&self.tls), if self.tls.is_some() => match accepted {
                    Ok((stream, peer, acceptor)) => {
                        // The TLS handshake runs in the connection's task.
                        connections.spawn(crate::tls::serve(acceptor, stream, peer, self.ctx.clone()));
                    }
                    Err(e) => accept_failed(e).await,
                },
                accepted = accept_stream(&self.stream), if self.stream.is_some() => match accepted {
                    Ok((socket, peer)) => {
                        let _ = socket.set_nodelay(true);
                        let local = socket.local_addr().unwrap_or(peer);
                        let ctx = self.ctx.clone();
                        connections.spawn(crate::stream_protocol::session::serve(socket, (peer, local), ctx));
                    }
                    Err(e) => accept_failed(e).await,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = &mut stop => break,
            }
        }
        drop(self.listener);
        drop(self.tls);
        drop(self.stream);
        tracing::info!(connections = connections.len(), "shutting down");
        let _ = self.shutdown.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                connections = connections.len(),
                "clients did not close in time"
            );
            connections.shutdown().await;
        }
        if let Some(node) = &self.cluster {
            node.shutdown().await;
        }
        upkeep.abort();
        timers.abort();
        for task in api {
            task.abort();
        }
        let broker = self.ctx.broker.clone();
        let finished = tokio::task::spawn_blocking(move || {
            let mut problems = broker.flush_all_acks();
            problems.extend(broker.write_dedup_caches());
            problems.extend(broker.stream_upkeep());
            (problems, broker.commit().flush())
        })
        .await;
        match finished {
            Ok((problems, synced)) => {
                for p in problems {
                    tracing::error!("shutdown: writing acks: {p}");
                }
                if let Err(e) = synced {
                    tracing::error!("shutdown: final sync: {e}");
                }
            }
            Err(e) => tracing::error!("shutdown: {e}"),
        }
        self.ctx.broker.commit().shutdown();
        let totals = self.ctx.broker.stats();
        tracing::info!(
            connections = totals.connections_opened,
            published = totals.published,
            delivered = totals.delivered,
            acked = totals.acked,
            "stopped"
        );
    }

    /// Accepts connections forever.
    pub async fn run(self) {
        self.run_until(std::future::pending()).await
    }
}

fn open_broker(config: &Config) -> io::Result<(BrokerHandle, crate::broker::OpenReport)> {
    let commit = GroupCommit::start(config.fsync);
    let broker_config = BrokerConfig {
        data_dir: config.data_dir.clone(),
        log: LogConfig {
            segment_size: config.segment_size,
            ..LogConfig::default()
        },
        access: config.access.clone(),
    };
    BrokerHandle::open(broker_config, commit)
}

/// The broker's model on the data dir without any listener, for offline commands
/// (`warren definitions`). Recovery problems are printed to stderr.
pub fn open_offline(config: &Config) -> io::Result<BrokerHandle> {
    let (broker, report) = open_broker(config)?;
    for p in &report.problems {
        eprintln!("warren: recovery: {p}");
    }
    Ok(broker)
}

/// Out of file descriptors (EMFILE/ENFILE) and the like: back off and keep serving the
/// connections we have.
async fn accept_failed(e: io::Error) {
    tracing::error!("accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Accepts on the AMQPS listener (only polled when there is one).
async fn accept_tls(
    tls: &Option<(TcpListener, Arc<TlsAcceptor>)>,
) -> io::Result<(TcpStream, SocketAddr, Arc<TlsAcceptor>)> {
    match tls {
        Some((listener, acceptor)) => {
            let (stream, peer) = listener.accept().await?;
            Ok((stream, peer, acceptor.clone()))
        }
        None => std::future::pending().await,
    }
}

/// The next stream-protocol connection (only polled when `--listen-stream` is set).
async fn accept_stream(listener: &Option<TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Every `TIMER_TICK`: the model's timed work, when any is due (one atomic load when
/// none is).
async fn timers(ctx: Arc<ServerContext>) {
    let mut tick = tokio::time::interval(TIMER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        ctx.broker.run_timers();
    }
}

/// Every `MAINTENANCE_EVERY`: resource alarms, ack files, compaction and, less often, the
/// allocator's free memory (`memory_trim.rs`). The file work runs on the blocking pool and
/// without any model lock.
async fn upkeep(ctx: Arc<ServerContext>) {
    let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
    loop {
        tick.tick().await;
        if let Some(state) = ctx.alarms.check() {
            if state.any() {
                tracing::warn!(
                    reason = state.reason(),
                    "resource alarm: blocking publishers"
                );
            } else {
                tracing::info!("resource alarm cleared: unblocking publishers");
            }
        }
        let broker = ctx.broker.clone();
        let problems = tokio::task::spawn_blocking(move || {
            let mut problems: Vec<String> = broker
                .take_ack_flushes()
                .into_iter()
                .filter_map(|f| f.write().err())
                .map(|e| format!("writing acks: {e}"))
                .collect();
            problems.extend(broker.write_dedup_caches());
            problems.extend(broker.compact());
            problems.extend(broker.stream_upkeep());
            if let Some(free) = crate::memory_trim::tick() {
                tracing::debug!(free, "memory held free by the allocator given back");
            }
            problems
        })
        .await
        .unwrap_or_default();
        for p in problems {
            tracing::error!("upkeep: {p}");
        }
    }
}
