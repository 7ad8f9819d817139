//! Queue-feature scenarios: message TTL (`ttl-expiry`), dead-lettering (`dead-letter`) and
//! the queue arguments and message properties that `priority` and the other scenarios take
//! from the command line (--message-ttl, --expiration, --max-priority).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    cleanup_queues, consumer, producer, queue_name, rss_of, setup_queues, Args, Ctx, Latencies,
    Scenario,
};
use crate::client::{self, method, put_shortstr, Arg, Client, Props, PublishTemplate};
use crate::stats::Report;

/// x-max-priority of the queues this run declares: --max-priority, or 10 for `priority`.
fn max_priority(a: &Args) -> Option<u8> {
    a.max_priority
        .or((a.scenario == Scenario::Priority).then_some(10))
        .filter(|&p| p > 0)
}

/// x-message-ttl of the queues this run declares: --message-ttl, or 1 ms for `ttl-expiry`
/// unless the messages carry their own --expiration.
fn message_ttl(a: &Args) -> Option<u32> {
    a.message_ttl
        .or((a.scenario == Scenario::TtlExpiry && a.expiration.is_none()).then_some(1))
}

/// Queue arguments for the queues `setup_queues` declares.
pub fn queue_args(a: &Args) -> Vec<(&'static str, Arg)> {
    let mut args = Vec::new();
    if let Some(p) = max_priority(a) {
        args.push(("x-max-priority", Arg::Int(p as i32)));
    }
    if let Some(ttl) = message_ttl(a) {
        args.push(("x-message-ttl", Arg::Int(ttl as i32)));
    }
    if a.queue_type != "classic" {
        args.push(("x-queue-type", Arg::Str(a.queue_type.clone())));
    }
    if let Some(n) = a.group_size {
        args.push(("x-quorum-initial-group-size", Arg::Int(n as i32)));
    }
    args
}

/// The publish templates a producer cycles through: one per priority level (message
/// `seq` gets priority `seq % levels`) on a priority queue, else one.
pub fn templates(
    a: &Args,
    exchange: &str,
    routing_key: &str,
    frame_max: u32,
) -> Vec<PublishTemplate> {
    let props = Props {
        priority: None,
        expiration: a.expiration.map(|ms| ms.to_string()),
    };
    if a.scenario == Scenario::Topic {
        return crate::shapes::topic_templates(a.bindings, a.size, frame_max);
    }
    let levels = max_priority(a).map_or(0, |p| p as usize);
    let make = |props: &Props| {
        PublishTemplate::new(
            exchange,
            routing_key,
            a.size,
            a.persistent,
            frame_max,
            props,
        )
    };
    if levels == 0 {
        return vec![make(&props)];
    }
    (0..levels)
        .map(|p| {
            make(&Props {
                priority: Some(p as u8),
                ..props.clone()
            })
        })
        .collect()
}

/// What the sampler saw.
#[derive(Default)]
struct Samples {
    max_depth: u32,
    max_rss: u64,
}

/// Samples the queue's depth (passive declare on its own connection) and the broker's RSS
/// every 50 ms until `stop`; prints both once a second.
fn spawn_sampler(
    ctx: Arc<Ctx>,
    queue: String,
    samples: Arc<Mutex<Samples>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<io::Result<()>> {
    tokio::spawn(async move {
        let mut c = Client::connect(&ctx.target).await?;
        let mut last_print = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let depth = c.queue_depth(&queue).await?;
            let rss = rss_of(ctx.args.broker_pid).unwrap_or(0);
            {
                let mut s = samples.lock().unwrap();
                s.max_depth = s.max_depth.max(depth);
                s.max_rss = s.max_rss.max(rss);
            }
            if last_print.elapsed() >= Duration::from_secs(1) {
                last_print = Instant::now();
                eprintln!(
                    "warren-perf: t={:>4.0}s  queue depth {depth:>9}  broker RSS {:.1} MB",
                    ctx.epoch.elapsed().as_secs_f64(),
                    rss as f64 / 1e6
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    })
}

/// `ttl-expiry`: --messages published with confirms (so every message has reached the
/// queue when the producer is done) to a queue whose messages expire, no consumer. Reports
/// the confirmed publish rate, the time from the last confirm until the queue is empty,
/// the expiry rate (messages / time from the first publish until the queue is empty), the
/// deepest the queue got, and the broker's RSS before, at most during, and after.
pub async fn run_ttl_expiry(ctx: &Arc<Ctx>, report: &mut Report) -> io::Result<()> {
    let a = &ctx.args;
    let queue = queue_name(0);
    setup_queues(ctx, 1, a.persistent).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_of(a.broker_pid);
    let samples = Arc::new(Mutex::new(Samples::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = spawn_sampler(ctx.clone(), queue.clone(), samples.clone(), stop.clone());
    let mut c = Client::connect(&ctx.target).await?;
    let start = Instant::now();
    producer(
        ctx.clone(),
        0,
        String::new(),
        queue.clone(),
        a.messages,
        true,
    )
    .await?;
    let published = start.elapsed();
    let confirmed = ctx.counters.confirmed.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut depth = c.queue_depth(&queue).await?;
    while depth > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        depth = c.queue_depth(&queue).await?;
    }
    let emptied = start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_of(a.broker_pid);
    stop.store(true, Ordering::Relaxed);
    sampler.await.map_err(io::Error::other)??;
    let s = std::mem::take(&mut *samples.lock().unwrap());

    report.count("messages", a.messages);
    report.count("unconfirmed", a.messages - confirmed.min(a.messages));
    report.rate(
        "published_per_s",
        a.messages as f64 / published.as_secs_f64(),
    );
    report.count("publish_ms", published.as_millis() as u64);
    if depth > 0 {
        report.count("depth_at_timeout", depth as u64);
    }
    report.count("emptied_after_ms", (emptied - published).as_millis() as u64);
    report.rate("expired_per_s", a.messages as f64 / emptied.as_secs_f64());
    report.count("max_depth", s.max_depth as u64);
    if let Some(rss) = rss_before {
        report.bytes("broker_rss_before", rss);
        report.bytes("broker_rss_max", s.max_rss.max(rss));
    }
    if let Some(rss) = rss_after {
        report.bytes("broker_rss_after", rss);
    }
    cleanup_queues(ctx, 1).await;
    Ok(())
}

const DL_SOURCE: &str = "warren-perf-dl-source";
const DL_TARGET: &str = "warren-perf-dl-target";
const DL_EXCHANGE: &str = "warren-perf-dlx";

/// Consumes `queue` and nacks every delivery with requeue=false (multiple, once per read),
/// so the broker dead-letters them; counts into `rejected`.
async fn rejecter(ctx: Arc<Ctx>, queue: &str, rejected: Arc<AtomicU64>) -> io::Result<()> {
    let mut c = Client::connect(&ctx.target).await?;
    c.qos(ctx.args.prefetch).await?;
    c.consume(queue, false).await?;
    let mut out = BytesMut::new();
    while !ctx.stop.load(Ordering::Relaxed) {
        let read =
            tokio::time::timeout(Duration::from_millis(200), c.rd.read_buf(&mut c.rbuf)).await;
        match read {
            Err(_) => continue,
            Ok(Ok(0)) => return Err(io::Error::other("broker closed the connection")),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(_)) => {}
        }
        let mut last_tag = 0;
        let mut n = 0;
        while let Some(f) = client::parse_frame(&mut c.rbuf)? {
            if f.kind == 1 && f.ids() == (60, 60) {
                let tl = f.payload[4] as usize;
                last_tag = u64::from_be_bytes(f.payload[5 + tl..13 + tl].try_into().unwrap());
                n += 1;
            } else if f.kind == 1 && matches!(f.ids(), (10, 50) | (20, 40) | (60, 30)) {
                return Err(io::Error::other("broker closed or cancelled the rejecter"));
            }
        }
        if n > 0 {
            out.clear();
            method(&mut out, 1, 60, 120, |b| {
                b.put_u64(last_tag);
                b.put_u8(0b01); // multiple, requeue=false
            });
            c.wr.write_all(&out).await?;
            rejected.fetch_add(n, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// `dead-letter`: producers publish to a source queue with x-dead-letter-exchange (a fanout
/// exchange bound to the target queue) whose messages are dead-lettered on arrival, by
/// x-message-ttl 0 (default; --message-ttl to change) or, with --reject, by a consumer
/// that nacks them with requeue=false; --consumers consume the target queue. Reports
/// published/s and dead-lettered messages/s arriving at the target (`consumed_per_s`).
pub async fn run_dead_letter(
    ctx: &Arc<Ctx>,
    report: &mut Report,
    latencies: &Latencies,
) -> io::Result<()> {
    let a = &ctx.args;
    let mut c = Client::connect(&ctx.target).await?;
    c.declare_exchange(DL_EXCHANGE, "fanout").await?;
    c.declare_queue(DL_TARGET, a.persistent).await?;
    c.purge_queue(DL_TARGET).await?;
    c.bind_queue(DL_TARGET, DL_EXCHANGE, "").await?;
    let mut args = vec![("x-dead-letter-exchange", Arg::Str(DL_EXCHANGE.into()))];
    if !a.reject {
        let ttl = a.message_ttl.unwrap_or(0);
        args.push(("x-message-ttl", Arg::Int(ttl as i32)));
    }
    c.declare_queue_args(DL_SOURCE, a.persistent, &args).await?;
    c.purge_queue(DL_SOURCE).await?;
    let mut tasks = Vec::new();
    for _ in 0..a.consumers {
        tasks.push(tokio::spawn(consumer(
            ctx.clone(),
            DL_TARGET.into(),
            u64::MAX,
            latencies.clone(),
            None,
        )));
    }
    let rejected = Arc::new(AtomicU64::new(0));
    let rejecter = a
        .reject
        .then(|| tokio::spawn(rejecter(ctx.clone(), DL_SOURCE, rejected.clone())));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    let before = ctx.counters.snapshot();
    let rejected_before = rejected.load(Ordering::Relaxed);
    let mut producers = Vec::new();
    for i in 0..a.producers {
        producers.push(tokio::spawn(producer(
            ctx.clone(),
            i,
            String::new(),
            DL_SOURCE.into(),
            u64::MAX,
            a.confirm,
        )));
    }
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let after = ctx.counters.snapshot();
    let rejected_after = rejected.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    ctx.stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.await.map_err(io::Error::other)??;
    }
    for t in tasks {
        t.await.map_err(io::Error::other)??;
    }
    if let Some(r) = rejecter {
        r.await.map_err(io::Error::other)??;
    }
    report.rate(
        "published_per_s",
        (after.published - before.published) as f64 / elapsed,
    );
    if a.confirm {
        report.rate(
            "confirmed_per_s",
            (after.confirmed - before.confirmed) as f64 / elapsed,
        );
    }
    if a.reject {
        report.rate(
            "rejected_per_s",
            (rejected_after - rejected_before) as f64 / elapsed,
        );
    }
    report.rate(
        "consumed_per_s",
        (after.consumed - before.consumed) as f64 / elapsed,
    );
    for q in [DL_SOURCE, DL_TARGET] {
        let _ = c.delete_queue(q).await;
    }
    let mut b = BytesMut::new();
    method(&mut b, 1, 40, 20, |b| {
        b.put_u16(0);
        put_shortstr(b, DL_EXCHANGE);
        b.put_u8(0);
    });
    c.send(&b).await?;
    c.expect((40, 21)).await?;
    Ok(())
}
