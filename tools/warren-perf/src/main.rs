//! warren-perf: an AMQP 0-9-1 load generator that runs unchanged against RabbitMQ and
//! Warren. See `warren-perf --help` and tools/warren-perf/README.md.

mod client;
mod features;
mod gate;
mod shapes;
mod sink;
mod stats;
mod stream_client;
mod streams;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use clap::{Parser, ValueEnum};
use client::{method, Client, Target};
use stats::{Counters, Report};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Publish and consume at once: rates and end-to-end latency.
    Throughput,
    /// Producers only.
    PublishOnly,
    /// Drain a queue pre-filled with --messages.
    ConsumeOnly,
    /// Persistent messages to a durable queue with publisher confirms.
    Confirms,
    /// One producer, --queues queues bound to a fanout exchange, a consumer on each.
    Fanout,
    /// Fill one queue with --messages, report broker RSS, drain, verify nothing lost.
    Backlog,
    /// Fixed --rate, latency percentiles.
    Latency,
    /// Open --connections idle connections, report broker RSS.
    Connections,
    /// Declare --queues queues with a consumer each, report broker RSS.
    Queues,
    /// A topic exchange with --bindings bindings over --queues queues, a consumer on each,
    /// one producer cycling through the bindings' keys (shapes.rs).
    Topic,
    /// --connections connections publishing one message at a time, --rate in total, to
    /// one consumed queue: broker RSS and CPU per message (shapes.rs).
    LowRateConnections,
    /// Publish --messages into a queue with x-message-ttl (--message-ttl, default 1 ms) or
    /// per-message --expiration, no consumer: publish rate, time until the queue is empty,
    /// broker RSS during and after (features.rs).
    TtlExpiry,
    /// Publish to a queue whose messages are dead-lettered (x-message-ttl 0, or --reject:
    /// a consumer that nacks with requeue=false) through a fanout exchange to a consumed
    /// queue: dead-lettered messages/s (features.rs).
    DeadLetter,
    /// `throughput` on a queue with x-max-priority (--max-priority, default 10), message
    /// priority = sequence % max-priority.
    Priority,
    /// RabbitMQ Stream protocol (--stream-port): --producers publishers with confirms on a
    /// fresh stream for --seconds (streams.rs).
    StreamPublish,
    /// RabbitMQ Stream protocol: fill a fresh stream with --messages, then --consumers
    /// readers each read all of it from `first` (streams.rs).
    StreamConsume,
    /// Not a scenario: a server that accepts the handshake and discards everything (to
    /// measure what one warren-perf can drive).
    Sink,
}

#[derive(Debug, Parser)]
#[command(
    name = "warren-perf",
    about = "AMQP 0-9-1 load generator for Warren and RabbitMQ"
)]
struct Args {
    scenario: Scenario,
    /// amqp://, or amqps:// for TLS (default port 5671).
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    url: String,
    /// Connect with TLS (as an amqps:// URL does).
    #[arg(long)]
    tls: bool,
    /// CA certificates (PEM) to verify the broker's TLS certificate with.
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 1)]
    producers: usize,
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    #[arg(long, default_value_t = 1)]
    queues: usize,
    /// Message body size in bytes (16 or more carries a timestamp and sequence number).
    #[arg(long, default_value_t = 16)]
    size: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Use publisher confirms.
    #[arg(long)]
    confirm: bool,
    /// Most unconfirmed publishes per producer.
    #[arg(long, default_value_t = 1000)]
    confirm_window: u64,
    /// delivery_mode=2 and durable queues.
    #[arg(long)]
    persistent: bool,
    /// Consumer prefetch (manual acks); 0 = unlimited.
    #[arg(long, default_value_t = 1000)]
    prefetch: u16,
    /// Consume with no-ack.
    #[arg(long)]
    autoack: bool,
    /// Total publish rate limit, messages/s (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Messages for consume-only and backlog.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Connections for the connections and low-rate-connections scenarios.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Bindings for the topic scenario.
    #[arg(long, default_value_t = 10_000)]
    bindings: usize,
    /// The broker's pid, to report its RSS.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
    /// x-message-ttl (ms) for the queues this run declares.
    #[arg(long)]
    message_ttl: Option<u32>,
    /// Per-message expiration property (ms).
    #[arg(long)]
    expiration: Option<u32>,
    /// x-max-priority for the queues this run declares; producers cycle through priorities.
    #[arg(long)]
    max_priority: Option<u8>,
    /// x-queue-type for the queues this run declares (`quorum` declares them durable).
    #[arg(long, default_value = "classic")]
    queue_type: String,
    /// x-quorum-initial-group-size for the quorum queues this run declares (a cluster
    /// puts each on that many nodes).
    #[arg(long)]
    group_size: Option<u32>,
    /// dead-letter: dead-letter by consumer nacks (requeue=false), not by x-message-ttl 0.
    #[arg(long)]
    reject: bool,
    /// Port of the broker's RabbitMQ Stream protocol listener (same host as --url).
    #[arg(long, default_value_t = 5552)]
    stream_port: u16,
    /// Messages per stream Publish frame.
    #[arg(long, default_value_t = 100)]
    stream_batch: u32,
    /// Most unconfirmed messages per stream publisher.
    #[arg(long, default_value_t = 10_000)]
    stream_window: u64,
    /// Initial credit (chunks) of a stream subscription; one more is granted per chunk.
    #[arg(long, default_value_t = 10)]
    stream_credit: u16,
    /// stream-consume: readers stop after this many seconds if not done (0 = no limit).
    #[arg(long, default_value_t = 0)]
    stream_read_seconds: u64,
    /// stream-consume: read the existing stream rather than filling a fresh one.
    #[arg(long)]
    stream_reuse: bool,
    /// max-length-bytes of the stream the stream scenarios create.
    #[arg(long)]
    max_length_bytes: Option<u64>,
    /// stream-max-segment-size-bytes of the stream the stream scenarios create.
    #[arg(long)]
    segment_bytes: Option<u64>,
    /// A directory whose disk use the stream scenarios sample (the broker's data dir).
    #[arg(long)]
    watch_dir: Option<std::path::PathBuf>,
    /// The names of the queues this run declares are this and a number (several runs
    /// against one broker or cluster at once use different prefixes).
    #[arg(long, default_value = "warren-perf-")]
    queue_prefix: String,
    /// Leave the run's queues and what is in them (they are deleted at the end otherwise).
    #[arg(long)]
    keep_queues: bool,
    /// Print to stderr the wall-clock time (Unix seconds) of deliveries slower than this
    /// many microseconds, at most one line per 10 ms: to line a latency spike up with a
    /// broker's log.
    #[arg(long)]
    slow_us: Option<u64>,
    /// Listen address for the sink.
    #[arg(long, default_value = "127.0.0.1:5700")]
    listen: String,
}

/// The body's timestamps are nanoseconds since this process's epoch.
fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

fn rss_of(pid: Option<u32>) -> Option<u64> {
    streams::status_bytes(pid?, "VmRSS:")
}

/// Resident bytes of the broker's own executable mapping (its code and read-only data):
/// a constant of the build, not memory the broker uses for queues or connections, so the
/// memory rows also report RSS without it.
fn code_rss_of(pid: Option<u32>) -> Option<u64> {
    let pid = pid?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let exe = exe.to_str()?;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let (mut ours, mut total) = (false, 0u64);
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            ours = line.ends_with(exe);
        } else if ours && first == "Rss:" {
            total += words.next()?.parse::<u64>().ok()? * 1024;
        }
    }
    Some(total)
}

/// Reports the broker's RSS, and its RSS without its executable's resident pages.
fn report_rss(report: &mut Report, pid: Option<u32>) {
    if let Some(rss) = rss_of(pid) {
        report.bytes("broker_rss", rss);
        if let Some(code) = code_rss_of(pid) {
            report.bytes("broker_rss_without_code", rss.saturating_sub(code));
        }
    }
}

struct Ctx {
    args: Args,
    target: Target,
    epoch: Instant,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    gate: gate::StartGate,
}

/// The names of the queues a run declares: `--queue-prefix` and a number.
static QUEUE_PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn queue_name(i: usize) -> String {
    let prefix = QUEUE_PREFIX.get().map_or("warren-perf-", String::as_str);
    format!("{prefix}{i}")
}

/// Publishes until `stop` (or `limit` messages), honouring the rate and confirm window.
/// Reads a producer's connection: counts confirms (acks and nacks) into `confirmed` and
/// the counters, wakes the producer, and stops if the broker closes the channel.
fn spawn_confirm_reader(
    mut rd: client::Reader,
    mut rbuf: BytesMut,
    confirmed: Arc<AtomicU64>,
    wake: Arc<tokio::sync::Notify>,
    counters: Arc<Counters>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        loop {
            while let Ok(Some(f)) = client::parse_frame(&mut rbuf) {
                if f.kind == 1 {
                    match f.ids() {
                        (60, 80) | (60, 120) => {
                            let tag = u64::from_be_bytes(f.payload[4..12].try_into().unwrap());
                            let multiple = f.payload[12] & 1 != 0;
                            let before = confirmed.load(Ordering::Relaxed);
                            let now = if multiple { tag } else { before.max(tag) };
                            if now > before {
                                confirmed.store(now, Ordering::Relaxed);
                                counters
                                    .confirmed
                                    .fetch_add(now - before, Ordering::Relaxed);
                            }
                            if f.ids() == (60, 120) {
                                counters.nacked.fetch_add(1, Ordering::Relaxed);
                            }
                            wake.notify_one();
                        }
                        (10, 50) | (20, 40) => {
                            eprintln!(
                                "warren-perf: producer: broker closed the channel/connection"
                            );
                            return;
                        }
                        _ => {}
                    }
                }
            }
            match rd.read_buf(&mut rbuf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
}

async fn producer(
    ctx: Arc<Ctx>,
    id: usize,
    exchange: String,
    routing_key: String,
    limit: u64,
    confirm: bool,
) -> std::io::Result<()> {
    let mut c = ctx.gate.connect(&ctx.target).await?;
    if confirm {
        c.confirm_select().await?;
    }
    // One template per priority level (priority = sequence % levels), else one.
    let templates = features::templates(&ctx.args, &exchange, &routing_key, c.frame_max);
    let Client {
        rd, mut wr, rbuf, ..
    } = c;
    let confirmed = Arc::new(AtomicU64::new(0));
    let wake = Arc::new(tokio::sync::Notify::new());
    // Reader: confirms (and anything else the broker says).
    let reader = spawn_confirm_reader(
        rd,
        rbuf,
        confirmed.clone(),
        wake.clone(),
        ctx.counters.clone(),
    );
    ctx.gate.arrive().await;
    use tokio::io::AsyncWriteExt;
    let batch = 256u64;
    let per_producer_rate = if ctx.args.rate > 0 {
        (ctx.args.rate / ctx.args.producers as u64).max(1)
    } else {
        0
    };
    let started = Instant::now();
    let mut sent = 0u64;
    let mut out = BytesMut::with_capacity(templates[0].len() * batch as usize);
    let levels = templates.len() as u64;
    let window = ctx.args.confirm_window.max(1);
    while !ctx.stop.load(Ordering::Relaxed) && sent < limit {
        let mut n = batch.min(limit - sent);
        if per_producer_rate > 0 {
            let due = (started.elapsed().as_secs_f64() * per_producer_rate as f64) as u64;
            if due <= sent {
                tokio::time::sleep(Duration::from_micros(200)).await;
                continue;
            }
            n = n.min(due - sent);
        }
        if confirm {
            loop {
                let outstanding = sent - confirmed.load(Ordering::Relaxed);
                if outstanding < window {
                    n = n.min(window - outstanding);
                    break;
                }
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                if ctx.stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            if ctx.stop.load(Ordering::Relaxed) {
                break;
            }
        }
        out.clear();
        let stamp = now_ns(ctx.epoch);
        for k in 0..n {
            let seq = sent + k;
            let template = &templates[if levels == 1 {
                0
            } else {
                (seq % levels) as usize
            }];
            template.encode(&mut out, stamp, ((id as u64) << 48) | seq);
        }
        wr.write_all(&out).await?;
        sent += n;
        ctx.counters.published.fetch_add(n, Ordering::Relaxed);
    }
    if confirm {
        let deadline = Instant::now() + Duration::from_secs(30);
        while confirmed.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
    reader.abort();
    Ok(())
}

/// `--slow-us`: one delivery's latency with the wall-clock time it arrived.
fn report_slow(lat_us: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!("slow delivery at {:.3}: {lat_us} us", now.as_secs_f64());
}

/// Consumes until `stop` or `limit` deliveries; records latencies and (optionally) the
/// sequence numbers seen.
async fn consumer(
    ctx: Arc<Ctx>,
    queue: String,
    limit: u64,
    latencies: Latencies,
    seen: Option<Arc<Mutex<Vec<u64>>>>,
) -> std::io::Result<()> {
    let mut c = ctx.gate.connect(&ctx.target).await?;
    let no_ack = ctx.args.autoack;
    if !no_ack {
        c.qos(ctx.args.prefetch).await?;
    }
    c.consume(&queue, no_ack).await?;
    ctx.gate.arrive().await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut local_lat: Vec<u32> = Vec::with_capacity(1 << 16);
    let mut local_seen: Vec<u64> = Vec::new();
    let mut got = 0u64;
    let mut last_tag = 0u64;
    let mut unacked = 0u64;
    let ack_every = (ctx.args.prefetch as u64 / 2).max(1);
    let mut acks = BytesMut::new();
    let mut in_body = false;
    let mut last_delivery = Instant::now();
    let mut last_slow_report = 0u64;
    while got < limit && !ctx.stop.load(Ordering::Relaxed) {
        let read =
            tokio::time::timeout(Duration::from_millis(200), c.rd.read_buf(&mut c.rbuf)).await;
        match read {
            Err(_) if limit != u64::MAX && last_delivery.elapsed() > Duration::from_secs(10) => {
                return Err(std::io::Error::other(format!(
                    "no delivery for 10 s after {got} of {limit} messages"
                )));
            }
            Err(_) => continue,
            Ok(Ok(0)) => return Err(std::io::Error::other("broker closed the connection")),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(_)) => {}
        }
        let now = now_ns(ctx.epoch);
        let mut delivered = 0u64;
        while let Some(f) = client::parse_frame(&mut c.rbuf)? {
            match f.kind {
                1 if f.ids() == (60, 60) => {
                    // consumer-tag shortstr, then delivery tag.
                    let tl = f.payload[4] as usize;
                    last_tag = u64::from_be_bytes(f.payload[5 + tl..13 + tl].try_into().unwrap());
                    in_body = true;
                    if ctx.args.size == 0 {
                        delivered += 1;
                        in_body = false;
                    }
                }
                1 if matches!(f.ids(), (10, 50) | (20, 40) | (60, 30)) => {
                    return Err(std::io::Error::other(
                        "broker closed or cancelled the consumer",
                    ));
                }
                3 if in_body => {
                    // Only the first body frame carries the stamp.
                    in_body = false;
                    delivered += 1;
                    if f.payload.len() >= 16 {
                        let stamp = u64::from_le_bytes(f.payload[..8].try_into().unwrap());
                        let lat_us = now.saturating_sub(stamp) / 1000;
                        local_lat.push(lat_us.min(u32::MAX as u64) as u32);
                        if ctx.args.slow_us.is_some_and(|slow| lat_us > slow)
                            && now.saturating_sub(last_slow_report) > 10_000_000
                        {
                            last_slow_report = now;
                            report_slow(lat_us);
                        }
                        if seen.is_some() {
                            local_seen
                                .push(u64::from_le_bytes(f.payload[8..16].try_into().unwrap()));
                        }
                    }
                }
                _ => {}
            }
        }
        got += delivered;
        if delivered > 0 {
            last_delivery = Instant::now();
        }
        ctx.counters
            .consumed
            .fetch_add(delivered, Ordering::Relaxed);
        if !no_ack && delivered > 0 {
            unacked += delivered;
            if unacked >= ack_every || got >= limit {
                acks.clear();
                method(&mut acks, 1, 60, 80, |b| {
                    b.put_u64(last_tag);
                    b.put_u8(1);
                });
                c.wr.write_all(&acks).await?;
                unacked = 0;
            }
        }
        if local_lat.len() >= 1 << 16 {
            latencies.lock().unwrap().append(&mut local_lat);
        }
    }
    if unacked > 0 {
        acks.clear();
        method(&mut acks, 1, 60, 80, |b| {
            b.put_u64(last_tag);
            b.put_u8(1);
        });
        c.wr.write_all(&acks).await?;
    }
    latencies.lock().unwrap().append(&mut local_lat);
    if let Some(seen) = seen {
        seen.lock().unwrap().append(&mut local_seen);
    }
    Ok(())
}

fn spawn_progress(ctx: Arc<Ctx>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = ctx.counters.snapshot();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = ctx.counters.snapshot();
            eprintln!(
                "warren-perf: t={:>4.0}s  published {:>9}/s  confirmed {:>9}/s  consumed {:>9}/s",
                ctx.epoch.elapsed().as_secs_f64(),
                now.published - last.published,
                now.confirmed - last.confirmed,
                now.consumed - last.consumed
            );
            last = now;
        }
    })
}

async fn setup_queues(ctx: &Ctx, n: usize, durable: bool) -> std::io::Result<()> {
    // Quorum queues are durable only.
    let durable = durable || ctx.args.queue_type == "quorum";
    let mut c = Client::connect(&ctx.target).await?;
    for i in 0..n {
        let args = features::queue_args(&ctx.args);
        c.declare_queue_args(&queue_name(i), durable, &args).await?;
        c.purge_queue(&queue_name(i)).await?;
    }
    Ok(())
}

/// Deletes the run's queues, over up to 16 connections at once: one connection deleting
/// 1,000 queues with deep backlogs one after another kept RabbitMQ busy for minutes.
async fn cleanup_queues(ctx: &Arc<Ctx>, n: usize) {
    if ctx.args.keep_queues {
        return;
    }
    let lanes = n.clamp(1, 16);
    let deleters: Vec<_> = (0..lanes)
        .map(|lane| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                if let Ok(mut c) = Client::connect(&ctx.target).await {
                    for i in (lane..n).step_by(lanes) {
                        let _ = c.delete_queue(&queue_name(i)).await;
                    }
                }
            })
        })
        .collect();
    for d in deleters {
        let _ = d.await;
    }
}

/// Latency samples shared by the consumers of a run.
type Latencies = Arc<Mutex<Vec<u32>>>;

async fn run(ctx: Arc<Ctx>) -> std::io::Result<Report> {
    let a = &ctx.args;
    let name = a
        .scenario
        .to_possible_value()
        .map(|v| v.get_name().to_string());
    let mut report = Report::new(name.unwrap_or_default());
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let progress = spawn_progress(ctx.clone());
    match a.scenario {
        Scenario::Throughput
        | Scenario::PublishOnly
        | Scenario::Confirms
        | Scenario::Latency
        | Scenario::Priority => run_streaming(&ctx, &mut report, &latencies).await?,
        Scenario::ConsumeOnly | Scenario::Backlog => {
            run_drain(&ctx, &mut report, &latencies).await?
        }
        Scenario::Fanout => shapes::run_fanout(&ctx, &mut report, &latencies).await?,
        Scenario::Connections => shapes::run_connections(&ctx, &mut report).await?,
        Scenario::Queues => shapes::run_queues(&ctx, &mut report).await?,
        Scenario::Topic => shapes::run_topic(&ctx, &mut report, &latencies).await?,
        Scenario::LowRateConnections => {
            shapes::run_low_rate_connections(&ctx, &mut report, &latencies).await?
        }
        Scenario::TtlExpiry => features::run_ttl_expiry(&ctx, &mut report).await?,
        Scenario::DeadLetter => features::run_dead_letter(&ctx, &mut report, &latencies).await?,
        Scenario::StreamPublish => {
            streams::run_stream_publish(&ctx, &mut report, &latencies).await?
        }
        Scenario::StreamConsume => {
            streams::run_stream_consume(&ctx, &mut report, &latencies).await?
        }
        Scenario::Sink => unreachable!("handled in main"),
    }
    progress.abort();
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
    if !lat.is_empty() {
        lat.sort_unstable();
        let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize] as u64;
        report.micros("latency_p50_us", pct(0.50));
        report.micros("latency_p99_us", pct(0.99));
        report.micros("latency_p999_us", pct(0.999));
        report.micros("latency_max_us", *lat.last().unwrap() as u64);
    }
    Ok(report)
}

async fn run_streaming(
    ctx: &Arc<Ctx>,
    report: &mut Report,
    latencies: &Latencies,
) -> std::io::Result<()> {
    let a = &ctx.args;
    let durable = a.persistent;
    let confirm = a.confirm || a.scenario == Scenario::Confirms;
    let consumers = if a.scenario == Scenario::PublishOnly {
        0
    } else {
        a.consumers
    };
    setup_queues(ctx, a.queues, durable || a.scenario == Scenario::Confirms).await?;
    ctx.gate.close();
    let mut tasks = Vec::new();
    for i in 0..consumers {
        tasks.push(tokio::spawn(consumer(
            ctx.clone(),
            queue_name(i % a.queues),
            u64::MAX,
            latencies.clone(),
            None,
        )));
    }
    let mut producers = Vec::new();
    for i in 0..a.producers {
        producers.push(tokio::spawn(producer(
            ctx.clone(),
            i,
            String::new(),
            queue_name(i % a.queues),
            u64::MAX,
            confirm,
        )));
    }
    // Every consumer is consuming and every producer connected before the clock starts.
    let clients: Vec<_> = tasks.iter().chain(&producers).collect();
    let ready = ctx
        .gate
        .open_when_arrived(clients.len(), &clients, Duration::from_secs(120))
        .await;
    if let Err(e) = ready {
        ctx.stop.store(true, Ordering::Relaxed);
        for t in tasks.into_iter().chain(producers) {
            t.await.map_err(std::io::Error::other)??;
        }
        return Err(e);
    }
    let start = Instant::now();
    let before = ctx.counters.snapshot();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let after = ctx.counters.snapshot();
    let elapsed = start.elapsed().as_secs_f64();
    ctx.stop.store(true, Ordering::Relaxed);
    for p in producers {
        gate::join_or_abort(p, Duration::from_secs(10)).await?;
    }
    for t in tasks {
        t.await.map_err(std::io::Error::other)??;
    }
    report.rate(
        "published_per_s",
        (after.published - before.published) as f64 / elapsed,
    );
    if confirm {
        report.rate(
            "confirmed_per_s",
            (after.confirmed - before.confirmed) as f64 / elapsed,
        );
        report.count("nacked", after.nacked);
    }
    if consumers > 0 {
        report.rate(
            "consumed_per_s",
            (after.consumed - before.consumed) as f64 / elapsed,
        );
    }
    cleanup_queues(ctx, a.queues).await;
    Ok(())
}

async fn run_drain(
    ctx: &Arc<Ctx>,
    report: &mut Report,
    latencies: &Latencies,
) -> std::io::Result<()> {
    let a = &ctx.args;
    let durable = a.persistent;
    setup_queues(ctx, 1, durable).await?;
    let fill_start = Instant::now();
    producer(
        ctx.clone(),
        0,
        String::new(),
        queue_name(0),
        a.messages,
        true,
    )
    .await?;
    report.rate(
        "fill_per_s",
        a.messages as f64 / fill_start.elapsed().as_secs_f64(),
    );
    if let Some(rss) = rss_of(a.broker_pid) {
        report.bytes("broker_rss_full", rss);
    }
    let seen = (a.scenario == Scenario::Backlog).then(|| Arc::new(Mutex::new(Vec::new())));
    let start = Instant::now();
    let per = a.messages.div_ceil(a.consumers as u64);
    let mut tasks = Vec::new();
    for i in 0..a.consumers {
        let limit = per.min(a.messages - per * i as u64);
        tasks.push(tokio::spawn(consumer(
            ctx.clone(),
            queue_name(0),
            limit,
            latencies.clone(),
            seen.clone(),
        )));
    }
    for t in tasks {
        t.await.map_err(std::io::Error::other)??;
    }
    report.rate(
        "consumed_per_s",
        a.messages as f64 / start.elapsed().as_secs_f64(),
    );
    if let Some(rss) = rss_of(a.broker_pid) {
        report.bytes("broker_rss_drained", rss);
    }
    if let Some(seen) = seen {
        let mut seen = std::mem::take(&mut *seen.lock().unwrap());
        seen.sort_unstable();
        let total = seen.len() as u64;
        seen.dedup();
        report.count("duplicates", total - seen.len() as u64);
        report.count("missing", a.messages - seen.len() as u64);
    }
    latencies.lock().unwrap().clear(); // fill-then-drain latency is not meaningful
    cleanup_queues(ctx, 1).await;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let _ = QUEUE_PREFIX.set(args.queue_prefix.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if args.scenario == Scenario::Sink {
        runtime.block_on(sink::run(&args.listen));
        return std::process::ExitCode::SUCCESS;
    }
    let target = match Target::parse(&args.url, args.tls, args.tls_ca.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("warren-perf: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let json = args.json;
    let ctx = Arc::new(Ctx {
        args,
        target,
        epoch: Instant::now(),
        counters: Arc::new(Counters::default()),
        stop: Arc::new(AtomicBool::new(false)),
        gate: gate::StartGate::new(),
    });
    match runtime.block_on(run(ctx)) {
        Ok(report) => {
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.table());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warren-perf: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
