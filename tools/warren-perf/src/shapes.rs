//! Scenarios about the shape of the work rather than its speed on one queue (issue 15,
//! part 3): fanout to many queues, a topic exchange with many bindings under load, many
//! connections each publishing slowly (what an IoT or microservice fleet looks like to a
//! broker), and the memory of many idle connections or queues.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::{cleanup_queues, consumer, producer, queue_name, report_rss, Ctx, Latencies};
use crate::client::{Client, Props, PublishTemplate};
use crate::stats::Report;

/// `--connections` idle connections: the broker's RSS.
pub async fn run_connections(ctx: &Arc<Ctx>, report: &mut Report) -> std::io::Result<()> {
    let a = &ctx.args;
    let mut conns = Vec::new();
    for _ in 0..a.connections {
        match Client::connect(&ctx.target).await {
            Ok(c) => conns.push(c),
            Err(e) => {
                eprintln!("warren-perf: connection {} failed: {e}", conns.len() + 1);
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    report.count("connections", conns.len() as u64);
    report_rss(report, a.broker_pid);
    Ok(())
}

pub async fn run_queues(ctx: &Arc<Ctx>, report: &mut Report) -> std::io::Result<()> {
    let a = &ctx.args;
    let mut c = Client::connect(&ctx.target).await?;
    for i in 0..a.queues {
        c.declare_queue(&queue_name(i), false).await?;
        c.consume(&queue_name(i), true).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    report.count("queues", a.queues as u64);
    report_rss(report, a.broker_pid);
    drop(c);
    cleanup_queues(ctx, a.queues).await;
    Ok(())
}

pub async fn run_fanout(
    ctx: &Arc<Ctx>,
    report: &mut Report,
    latencies: &Latencies,
) -> std::io::Result<()> {
    let a = &ctx.args;
    let mut c = Client::connect(&ctx.target).await?;
    c.declare_exchange("warren-perf-fanout", "fanout").await?;
    for i in 0..a.queues {
        c.declare_queue(&queue_name(i), false).await?;
        c.purge_queue(&queue_name(i)).await?;
        c.bind_queue(&queue_name(i), "warren-perf-fanout", "")
            .await?;
    }
    one_producer_to_consumed_queues(ctx, report, latencies, a.queues, "warren-perf-fanout").await?;
    cleanup_queues(ctx, a.queues).await;
    Ok(())
}

/// A consumer on each of the first `queues` queues and one producer publishing to
/// `exchange` for `--seconds`: the publish and consume rates (fanout and topic).
pub async fn one_producer_to_consumed_queues(
    ctx: &Arc<Ctx>,
    report: &mut Report,
    latencies: &Latencies,
    queues: usize,
    exchange: &str,
) -> std::io::Result<()> {
    let mut tasks = Vec::new();
    for i in 0..queues {
        tasks.push(tokio::spawn(consumer(
            ctx.clone(),
            queue_name(i),
            u64::MAX,
            latencies.clone(),
            None,
        )));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    let before = ctx.counters.snapshot();
    let p = tokio::spawn(producer(
        ctx.clone(),
        0,
        exchange.into(),
        String::new(),
        u64::MAX,
        ctx.args.confirm,
    ));
    tokio::time::sleep(Duration::from_secs(ctx.args.seconds)).await;
    let after = ctx.counters.snapshot();
    let elapsed = start.elapsed().as_secs_f64();
    ctx.stop.store(true, Ordering::Relaxed);
    p.await.map_err(std::io::Error::other)??;
    for t in tasks {
        t.await.map_err(std::io::Error::other)??;
    }
    report.rate(
        "published_per_s",
        (after.published - before.published) as f64 / elapsed,
    );
    report.rate(
        "consumed_per_s",
        (after.consumed - before.consumed) as f64 / elapsed,
    );
    Ok(())
}

/// The exchange the topic scenario routes through.
pub const TOPIC_EXCHANGE: &str = "warren-perf-topic";

/// The routing key of binding `i`'s messages, and the binding's pattern: each message
/// matches exactly one binding, through a wildcard.
pub fn topic_key(i: usize) -> String {
    format!("device.{i}.reading")
}

fn topic_pattern(i: usize) -> String {
    format!("device.{i}.*")
}

/// One template per binding (the producer cycles through them), for `--bindings`.
pub fn topic_templates(bindings: usize, size: usize, frame_max: u32) -> Vec<PublishTemplate> {
    let props = Props {
        priority: None,
        expiration: None,
    };
    (0..bindings.max(1))
        .map(|i| {
            PublishTemplate::new(
                TOPIC_EXCHANGE,
                &topic_key(i),
                size,
                false,
                frame_max,
                &props,
            )
        })
        .collect()
}

/// A topic exchange with `--bindings` bindings spread over `--queues` queues, a consumer
/// on each queue and one producer cycling through the routing keys.
pub async fn run_topic(
    ctx: &Arc<Ctx>,
    report: &mut Report,
    latencies: &Latencies,
) -> std::io::Result<()> {
    let a = &ctx.args;
    let queues = a.queues.max(1);
    let mut c = Client::connect(&ctx.target).await?;
    c.declare_exchange(TOPIC_EXCHANGE, "topic").await?;
    for q in 0..queues {
        c.declare_queue(&queue_name(q), false).await?;
        c.purge_queue(&queue_name(q)).await?;
    }
    let declared = Instant::now();
    for i in 0..a.bindings {
        c.bind_queue(&queue_name(i % queues), TOPIC_EXCHANGE, &topic_pattern(i))
            .await?;
    }
    report.rate(
        "bindings_per_s",
        a.bindings as f64 / declared.elapsed().as_secs_f64(),
    );
    one_producer_to_consumed_queues(ctx, report, latencies, queues, TOPIC_EXCHANGE).await?;
    // Leave no bindings behind: deleting the exchange drops them all.
    let mut b = BytesMut::new();
    crate::client::method(&mut b, 1, 40, 20, |b| {
        use bytes::BufMut;
        b.put_u16(0);
        crate::client::put_shortstr(b, TOPIC_EXCHANGE);
        b.put_u8(0);
    });
    c.send(&b).await?;
    c.expect((40, 21)).await?;
    cleanup_queues(ctx, queues).await;
    Ok(())
}

/// CPU time (user + system) the process `pid` has used, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is field 3, so utime
    // (14) and stime (15) are the 12th and 13th after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
    Some((utime + stime) as f64 / 100.0)
}

/// `--connections` connections each publishing one message at a time, for a total of
/// `--rate` messages/s, to one queue with a consumer: the broker's RSS and CPU time per
/// message with that many connections at work.
pub async fn run_low_rate_connections(
    ctx: &Arc<Ctx>,
    report: &mut Report,
    latencies: &Latencies,
) -> std::io::Result<()> {
    let a = &ctx.args;
    let n = a.connections.max(1);
    let queue = queue_name(0);
    let mut c = Client::connect(&ctx.target).await?;
    c.declare_queue(&queue, false).await?;
    c.purge_queue(&queue).await?;
    drop(c);
    let consumer_task = tokio::spawn(consumer(
        ctx.clone(),
        queue.clone(),
        u64::MAX,
        latencies.clone(),
        None,
    ));
    // Connect in waves of 100 (a broker accepting one at a time makes this take minutes).
    let mut writers = Vec::with_capacity(n);
    let opened = Instant::now();
    while writers.len() < n {
        let wave: Vec<_> = (0..(n - writers.len()).min(100))
            .map(|_| {
                let target = ctx.target.clone();
                tokio::spawn(async move { Client::connect(&target).await })
            })
            .collect();
        for t in wave {
            match t.await.map_err(std::io::Error::other)? {
                Ok(c) => writers.push(c),
                Err(e) => {
                    eprintln!("warren-perf: connection {} failed: {e}", writers.len() + 1);
                    return Err(e);
                }
            }
        }
    }
    report.rate(
        "connections_per_s",
        n as f64 / opened.elapsed().as_secs_f64(),
    );
    report.count("connections", n as u64);
    // Each connection publishes every `period`, starting at a random-looking phase.
    let rate = a.rate.max(1);
    let period = Duration::from_secs_f64(n as f64 / rate as f64);
    let template = Arc::new(PublishTemplate::new(
        "",
        &queue,
        a.size,
        false,
        131_072,
        &Props {
            priority: None,
            expiration: None,
        },
    ));
    let start = Instant::now() + Duration::from_millis(500);
    let mut tasks = Vec::with_capacity(n);
    for (i, c) in writers.into_iter().enumerate() {
        let ctx = ctx.clone();
        let template = template.clone();
        let phase = period.mul_f64((i as f64 * 0.618_033_988_75).fract());
        tasks.push(tokio::spawn(async move {
            let Client { rd, mut wr, .. } = c;
            let mut out = BytesMut::with_capacity(template.len());
            let mut next = start + phase;
            let mut seq = 0u64;
            while !ctx.stop.load(Ordering::Relaxed) {
                tokio::time::sleep_until(next.into()).await;
                out.clear();
                template.encode(&mut out, super::now_ns(ctx.epoch), ((i as u64) << 32) | seq);
                wr.write_all(&out).await?;
                ctx.counters.published.fetch_add(1, Ordering::Relaxed);
                seq += 1;
                next += period;
            }
            drop(rd);
            Ok::<(), std::io::Error>(())
        }));
    }
    // Measure after a warm-up of two periods (every connection has published).
    tokio::time::sleep_until((start + period * 2).into()).await;
    let cpu_before = a.broker_pid.and_then(cpu_seconds);
    let before = ctx.counters.snapshot();
    let measured = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let after = ctx.counters.snapshot();
    let cpu_after = a.broker_pid.and_then(cpu_seconds);
    let elapsed = measured.elapsed().as_secs_f64();
    report_rss(report, a.broker_pid);
    ctx.stop.store(true, Ordering::Relaxed);
    let consumed = after.consumed - before.consumed;
    report.rate(
        "published_per_s",
        (after.published - before.published) as f64 / elapsed,
    );
    report.rate("consumed_per_s", consumed as f64 / elapsed);
    if let (Some(b), Some(e)) = (cpu_before, cpu_after) {
        if consumed > 0 {
            report.rate("broker_cpu_us_per_msg", (e - b) * 1e6 / consumed as f64);
        }
        report.rate("broker_cpu_percent", (e - b) * 100.0 / elapsed);
    }
    for t in tasks {
        t.abort();
    }
    consumer_task.abort();
    cleanup_queues(ctx, 1).await;
    Ok(())
}
