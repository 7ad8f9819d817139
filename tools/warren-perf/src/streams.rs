//! Stream scenarios over the RabbitMQ Stream protocol (`stream-publish`, `stream-consume`),
//! run unchanged against Warren's `--listen-stream` and RabbitMQ's stream plugin.
//!
//! As RabbitMQ's stream-perf-test does, a producer publishes batches (`--stream-batch`,
//! default 100 messages per Publish frame) with at most `--stream-window` unconfirmed
//! messages (default 10,000), and a consumer subscribes from `first` with
//! `--stream-credit` chunks of credit (default 10), granting one more per chunk received.
//! Bodies are raw bytes (the broker stores them as given); bodies of 16 bytes or more carry
//! the send time and publishing id like the AMQP scenarios' bodies.

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{now_ns, report_rss, Ctx, Latencies};
use crate::stats::Report;
use crate::stream_client::*;

/// The stream every stream scenario uses.
pub const STREAM: &str = "warren-perf-stream";

async fn open(ctx: &Ctx) -> io::Result<StreamConn> {
    let t = &ctx.target;
    let host = t.addr.rsplit_once(':').map_or(&t.addr[..], |(h, _)| h);
    let addr = format!("{host}:{}", ctx.args.stream_port);
    StreamConn::connect(&addr, &t.user, &t.pass, &t.vhost).await
}

/// Deletes the stream if it exists and creates it with the run's retention arguments.
async fn fresh_stream(ctx: &Ctx) -> io::Result<()> {
    let a = &ctx.args;
    let mut c = open(ctx).await?;
    c.delete(STREAM).await?;
    let mut args = Vec::new();
    if let Some(bytes) = a.max_length_bytes {
        args.push(("max-length-bytes", bytes.to_string()));
    }
    if let Some(bytes) = a.segment_bytes {
        args.push(("stream-max-segment-size-bytes", bytes.to_string()));
    }
    match c.create(STREAM, &args).await? {
        CODE_OK => Ok(()),
        code => Err(io::Error::other(format!("create stream: code {code:#06x}"))),
    }
}

/// Publishes `limit` messages (or until stop) as publisher 0 of its own connection, and
/// waits for their confirms; one confirm latency sample per batch goes to `latencies`.
pub async fn stream_producer(ctx: Arc<Ctx>, limit: u64, latencies: Latencies) -> io::Result<u64> {
    let a = &ctx.args;
    let mut c = open(&ctx).await?;
    c.declare_publisher(0, STREAM).await?;
    let (mut rd, mut wr, mut rbuf) = c.into_parts();
    let confirmed = Arc::new(AtomicU64::new(0));
    let wake = Arc::new(tokio::sync::Notify::new());
    let done = Arc::new(AtomicBool::new(false));
    // (messages sent up to the end of a batch, its send time): the reader pops a batch
    // when the confirmed count passes its end.
    let batches: Arc<Mutex<VecDeque<(u64, u64)>>> = Arc::default();
    let reader = {
        let (ctx, confirmed, wake, done, batches, latencies) = (
            ctx.clone(),
            confirmed.clone(),
            wake.clone(),
            done.clone(),
            batches.clone(),
            latencies.clone(),
        );
        tokio::spawn(async move {
            let mut samples: Vec<u32> = Vec::new();
            while !done.load(Ordering::Relaxed) {
                while let Some(f) = split_frame(&mut rbuf)? {
                    let count = f.get(5..9).map_or(0, |c| {
                        u32::from_be_bytes(c.try_into().expect("4 bytes")) as u64
                    });
                    match key_of(&f) {
                        KEY_PUBLISH_CONFIRM => {}
                        KEY_PUBLISH_ERROR => {
                            ctx.counters.nacked.fetch_add(count, Ordering::Relaxed);
                        }
                        KEY_METADATA_UPDATE | KEY_CLOSE => {
                            return Err(io::Error::other("broker closed the stream publisher"));
                        }
                        _ => continue,
                    }
                    let now = confirmed.fetch_add(count, Ordering::Relaxed) + count;
                    ctx.counters.confirmed.fetch_add(count, Ordering::Relaxed);
                    let stamp = now_ns(ctx.epoch);
                    let mut b = batches.lock().expect("batches");
                    while b.front().is_some_and(|(end, _)| *end <= now) {
                        let (_, sent_at) = b.pop_front().expect("front");
                        samples.push(
                            ((stamp.saturating_sub(sent_at)) / 1000).min(u32::MAX as u64) as u32,
                        );
                    }
                    drop(b);
                    wake.notify_one();
                }
                let read = tokio::time::timeout(Duration::from_millis(100), rd.read_buf(&mut rbuf));
                match read.await {
                    Err(_) => {}
                    Ok(Ok(0)) => {
                        return Err(io::Error::other("broker closed the stream connection"))
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                }
            }
            latencies.lock().expect("latencies").append(&mut samples);
            Ok::<(), io::Error>(())
        })
    };
    let batch = a.stream_batch.max(1) as u64;
    let window = a.stream_window.max(1);
    let mut out = BytesMut::with_capacity(PUBLISH_HEADER + batch as usize * (12 + a.size));
    let mut sent = 0u64;
    while !ctx.stop.load(Ordering::Relaxed) && sent < limit {
        let outstanding = sent - confirmed.load(Ordering::Relaxed);
        if outstanding + batch > window {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            if reader.is_finished() {
                break;
            }
            continue;
        }
        let n = batch.min(limit - sent);
        let stamp = now_ns(ctx.epoch);
        out.clear();
        put_publish(&mut out, 0, sent, n as u32, a.size, stamp);
        batches
            .lock()
            .expect("batches")
            .push_back((sent + n, stamp));
        wr.write_all(&out).await?;
        sent += n;
        ctx.counters.published.fetch_add(n, Ordering::Relaxed);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while confirmed.load(Ordering::Relaxed) < sent
        && Instant::now() < deadline
        && !reader.is_finished()
    {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    done.store(true, Ordering::Relaxed);
    reader.await.map_err(io::Error::other)??;
    let unconfirmed = sent.saturating_sub(confirmed.load(Ordering::Relaxed));
    if unconfirmed > 0 {
        return Err(io::Error::other(format!(
            "{unconfirmed} of {sent} publishes never confirmed"
        )));
    }
    Ok(sent)
}

/// What one reader saw: records, and chunks that did not start where the last one ended.
struct ReadOutcome {
    records: u64,
    gaps: u64,
}

/// Reads `limit` records from the stream's first offset (or until stop), one credit back
/// per chunk.
async fn stream_reader(ctx: Arc<Ctx>, limit: u64) -> io::Result<ReadOutcome> {
    let mut c = open(&ctx).await?;
    c.subscribe_first(0, STREAM, ctx.args.stream_credit.max(1))
        .await?;
    let (mut rd, mut wr, mut rbuf) = c.into_parts();
    let mut credits = BytesMut::new();
    let mut expected: Option<u64> = None;
    let (mut records, mut gaps) = (0u64, 0u64);
    let mut last_delivery = Instant::now();
    while records < limit && !ctx.stop.load(Ordering::Relaxed) {
        credits.clear();
        let mut got = 0u64;
        while let Some(f) = split_frame(&mut rbuf)? {
            match key_of(&f) {
                KEY_DELIVER => {
                    let chunk = delivered_chunk(&f)
                        .ok_or_else(|| io::Error::other("short Deliver frame"))?;
                    if expected.is_some_and(|e| e != chunk.first_offset) {
                        gaps += 1;
                    }
                    expected = Some(chunk.first_offset + chunk.records as u64);
                    got += chunk.records as u64;
                    frame(&mut credits, KEY_CREDIT, |b| {
                        b.put_u8(0);
                        b.put_u16(1);
                    });
                }
                KEY_METADATA_UPDATE | KEY_CLOSE => {
                    return Err(io::Error::other("broker closed the stream subscription"));
                }
                _ => {}
            }
        }
        if got > 0 {
            records += got;
            ctx.counters.consumed.fetch_add(got, Ordering::Relaxed);
            last_delivery = Instant::now();
            wr.write_all(&credits).await?;
            continue;
        }
        // A broker serving many readers on 2 cores may leave one waiting for a while; a
        // minute without a chunk is a stalled subscription.
        if last_delivery.elapsed() > Duration::from_secs(60) {
            return Err(io::Error::other(format!(
                "no chunk for 60 s after {records} of {limit} records"
            )));
        }
        match tokio::time::timeout(Duration::from_millis(200), rd.read_buf(&mut rbuf)).await {
            Err(_) => {}
            Ok(Ok(0)) => return Err(io::Error::other("broker closed the stream connection")),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
    Ok(ReadOutcome { records, gaps })
}

/// Bytes the files under `dir` occupy on disk.
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// A field of /proc/PID/status in bytes (VmRSS, RssAnon, RssFile).
pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// The largest values seen by `watch`: broker RSS (total and anonymous) and disk use.
#[derive(Default)]
struct Peaks {
    rss: AtomicU64,
    rss_anon: AtomicU64,
    disk: AtomicU64,
}

/// Samples the broker's RSS (--broker-pid) and the disk use of --watch-dir every 100 ms
/// until `stop`.
fn watch(ctx: &Arc<Ctx>, stop: Arc<AtomicBool>) -> (Arc<Peaks>, tokio::task::JoinHandle<()>) {
    let peaks = Arc::new(Peaks::default());
    let (p, ctx) = (peaks.clone(), ctx.clone());
    let task = tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            if let Some(pid) = ctx.args.broker_pid {
                for (field, peak) in [("VmRSS:", &p.rss), ("RssAnon:", &p.rss_anon)] {
                    if let Some(v) = status_bytes(pid, field) {
                        peak.fetch_max(v, Ordering::Relaxed);
                    }
                }
            }
            if let Some(dir) = &ctx.args.watch_dir {
                p.disk.fetch_max(disk_usage(dir), Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (peaks, task)
}

fn report_peaks(ctx: &Ctx, report: &mut Report, peaks: &Peaks) {
    if ctx.args.broker_pid.is_some() {
        report.bytes("broker_rss_max", peaks.rss.load(Ordering::Relaxed));
        report.bytes(
            "broker_anon_rss_max",
            peaks.rss_anon.load(Ordering::Relaxed),
        );
    }
    if let Some(dir) = &ctx.args.watch_dir {
        report.bytes("disk_max", peaks.disk.load(Ordering::Relaxed));
        report.bytes("disk_end", disk_usage(dir));
    }
}

/// `stream-publish`: --producers publishers on a fresh stream for --seconds.
pub async fn run_stream_publish(
    ctx: &Arc<Ctx>,
    report: &mut Report,
    latencies: &Latencies,
) -> io::Result<()> {
    let a = &ctx.args;
    fresh_stream(ctx).await?;
    let watching = Arc::new(AtomicBool::new(false));
    let (peaks, watcher) = watch(ctx, watching.clone());
    let start = Instant::now();
    let before = ctx.counters.snapshot();
    let producers: Vec<_> = (0..a.producers)
        .map(|_| tokio::spawn(stream_producer(ctx.clone(), u64::MAX, latencies.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let after = ctx.counters.snapshot();
    let elapsed = start.elapsed().as_secs_f64();
    ctx.stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.await.map_err(io::Error::other)??;
    }
    watching.store(true, Ordering::Relaxed);
    watcher.await.map_err(io::Error::other)?;
    report.rate(
        "published_per_s",
        (after.published - before.published) as f64 / elapsed,
    );
    report.rate(
        "confirmed_per_s",
        (after.confirmed - before.confirmed) as f64 / elapsed,
    );
    report.count("errors", after.nacked);
    report_peaks(ctx, report, &peaks);
    report_rss(report, a.broker_pid);
    Ok(())
}

/// `stream-consume`: fills a fresh stream with --messages (unless --stream-reuse finds it
/// there), then --consumers readers each read all of it from `first` (or stop after
/// --stream-read-seconds).
pub async fn run_stream_consume(
    ctx: &Arc<Ctx>,
    report: &mut Report,
    latencies: &Latencies,
) -> io::Result<()> {
    let a = &ctx.args;
    let exists = open(ctx).await?.create(STREAM, &[]).await? == CODE_STREAM_ALREADY_EXISTS;
    if !(a.stream_reuse && exists) {
        fresh_stream(ctx).await?;
        let fill = Instant::now();
        stream_producer(ctx.clone(), a.messages, latencies.clone()).await?;
        report.rate(
            "fill_per_s",
            a.messages as f64 / fill.elapsed().as_secs_f64(),
        );
        // Fill-then-read: the fill's confirm latencies are not this scenario's figures.
        latencies.lock().expect("latencies").clear();
    }
    let watching = Arc::new(AtomicBool::new(false));
    let (peaks, watcher) = watch(ctx, watching.clone());
    let start = Instant::now();
    if a.stream_read_seconds > 0 {
        let (ctx, limit) = (ctx.clone(), Duration::from_secs(a.stream_read_seconds));
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            ctx.stop.store(true, Ordering::Relaxed);
        });
    }
    let readers: Vec<_> = (0..a.consumers)
        .map(|_| tokio::spawn(stream_reader(ctx.clone(), a.messages)))
        .collect();
    let (mut records, mut gaps) = (0u64, 0u64);
    for r in readers {
        let outcome = r.await.map_err(io::Error::other)??;
        records += outcome.records;
        gaps += outcome.gaps;
    }
    let elapsed = start.elapsed().as_secs_f64();
    watching.store(true, Ordering::Relaxed);
    watcher.await.map_err(io::Error::other)?;
    report.rate("consumed_per_s", records as f64 / elapsed);
    report.count("records_read", records);
    report.count("gaps", gaps);
    report_peaks(ctx, report, &peaks);
    Ok(())
}
