//! Storage engine benchmarks: append under every fsync policy, group commit with many
//! appenders, read, ack, compaction, recovery, and memcpy as the machine's yardstick.
//!
//! Run: `cargo bench --bench storage` (add `--features io-uring` to compare sync backends).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use warren_storage::sync::SyncBackend;
use warren_storage::{Cursor, FsyncPolicy, GroupCommit, Log, LogConfig};

fn config() -> LogConfig {
    LogConfig::default()
}

/// Data dirs live under target/ (a real disk), not /tmp (which may be tmpfs).
fn bench_dir() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

fn append_never(c: &mut Criterion) {
    let mut g = c.benchmark_group("append/never");
    for size in [16usize, 1024, 64 * 1024] {
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            let dir = bench_dir();
            let commit = GroupCommit::start(FsyncPolicy::Never);
            let (mut log, _) = Log::open(dir.path(), config(), commit).unwrap();
            let payload = vec![7u8; size];
            let mut n = 0u64;
            b.iter(|| {
                let a = log.append(n, true, black_box(&payload)).unwrap();
                // Keep the disk footprint bounded: ack what we wrote, so full segments
                // are deleted as we go (as a consumer would).
                log.ack(a.seq).unwrap();
                n += 1;
            });
        });
    }
    g.finish();
}

/// Logs that persist across a benchmark's samples, so segment creation is not timed.
struct Appenders {
    _dir: tempfile::TempDir,
    commit: Arc<GroupCommit>,
    logs: Vec<Arc<std::sync::Mutex<Log>>>,
    appenders: usize,
}

impl Appenders {
    /// `appenders` threads writing to `logs` logs (thread i uses log i % logs).
    fn new(policy: FsyncPolicy, backend: SyncBackend, appenders: usize, logs: usize) -> Self {
        let dir = bench_dir();
        let commit = GroupCommit::start_with(policy, backend);
        let logs = (0..logs)
            .map(|i| {
                let log = Log::open(&dir.path().join(format!("q{i}")), config(), commit.clone())
                    .unwrap()
                    .0;
                Arc::new(std::sync::Mutex::new(log))
            })
            .collect();
        Appenders {
            _dir: dir,
            commit,
            logs,
            appenders,
        }
    }

    /// Each appender thread appends and waits for its append to be durable before the
    /// next: the group commit is what lets them share syncs. Returns the time for `iters`
    /// appends in total.
    fn run(&self, size: usize, iters: u64) -> Duration {
        let appenders = self.appenders;
        let per_thread = iters.div_ceil(appenders as u64);
        let barrier = Arc::new(std::sync::Barrier::new(appenders + 1));
        let handles: Vec<_> = (0..appenders)
            .map(|i| {
                let log = self.logs[i % self.logs.len()].clone();
                let commit = self.commit.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let payload = vec![1u8; size];
                    barrier.wait();
                    for i in 0..per_thread {
                        let a = log.lock().unwrap().append(i, true, &payload).unwrap();
                        commit.wait(a.ticket).unwrap();
                        log.lock().unwrap().ack(a.seq).unwrap();
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            h.join().unwrap();
        }
        start
            .elapsed()
            .mul_f64(iters as f64 / (per_thread * appenders as u64) as f64)
    }
}

impl Drop for Appenders {
    fn drop(&mut self) {
        self.commit.shutdown();
    }
}

fn backends() -> Vec<(&'static str, SyncBackend)> {
    #[allow(unused_mut)]
    let mut v = vec![("threads", SyncBackend::Threads)];
    #[cfg(feature = "io-uring")]
    v.push(("io-uring", SyncBackend::IoUring));
    v
}

fn append_always(c: &mut Criterion) {
    let mut g = c.benchmark_group("append/always-1KiB");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    for (name, backend) in backends() {
        for (appenders, logs) in [(1usize, 1usize), (8, 1), (64, 1), (8, 8), (64, 64)] {
            g.throughput(Throughput::Elements(1));
            let set = Appenders::new(FsyncPolicy::Always, backend, appenders, logs);
            g.bench_function(
                BenchmarkId::new(name, format!("{appenders}-appenders-{logs}-logs")),
                |b| {
                    b.iter_custom(|iters| set.run(1024, iters.max(appenders as u64)));
                },
            );
        }
    }
    g.finish();
    let mut g = c.benchmark_group("append/always");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    for size in [16usize, 64 * 1024] {
        g.throughput(Throughput::Bytes(size as u64));
        let set = Appenders::new(FsyncPolicy::Always, SyncBackend::Threads, 1, 1);
        g.bench_function(BenchmarkId::new("1-appender", size), |b| {
            b.iter_custom(|iters| set.run(size, iters));
        });
    }
    g.finish();
}

fn append_interval(c: &mut Criterion) {
    let mut g = c.benchmark_group("append/interval-5ms");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    for (appenders, size) in [(64usize, 16usize), (64, 1024), (64, 64 * 1024)] {
        g.throughput(Throughput::Elements(1));
        let set = Appenders::new(
            FsyncPolicy::Interval(Duration::from_millis(5)),
            SyncBackend::Threads,
            appenders,
            appenders,
        );
        g.bench_function(
            BenchmarkId::new(format!("{appenders}-appenders"), size),
            |b| {
                b.iter_custom(|iters| set.run(size, iters.max(appenders as u64)));
            },
        );
    }
    g.finish();
}

fn filled_log(dir: &Path, n: u64, size: usize) -> Log {
    let commit = GroupCommit::start(FsyncPolicy::Never);
    let (mut log, _) = Log::open(dir, config(), commit).unwrap();
    let payload = vec![3u8; size];
    for i in 0..n {
        log.append(i, true, &payload).unwrap();
    }
    log
}

fn read_and_ack(c: &mut Criterion) {
    let n = 1_000_000u64;
    let dir = bench_dir();
    let mut log = filled_log(dir.path(), n, 16);
    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.bench_function("sequential-16B-x1M", |b| {
        b.iter(|| {
            let mut cursor = Cursor::at(0);
            let mut bytes = 0usize;
            while let Some(r) = log.read_next(&mut cursor) {
                bytes += r.payload.len();
            }
            assert_eq!(bytes as u64, 16 * n);
        });
    });
    g.finish();
    let mut g = c.benchmark_group("ack");
    g.throughput(Throughput::Elements(1));
    let mut next = 0u64;
    g.bench_function("16B", |b| {
        b.iter(|| {
            if next > 0 && next.is_multiple_of(n) {
                // Refill once the log is fully acked.
                for i in 0..n {
                    log.append(i, true, &[3u8; 16]).unwrap();
                }
            }
            let seq = log.next_seq() - n + (next % n);
            log.ack(black_box(seq)).unwrap();
            next += 1;
        });
    });
    g.finish();
}

fn compaction(c: &mut Criterion) {
    let mut g = c.benchmark_group("compact");
    g.sample_size(10);
    let size = 1024usize;
    let per_segment = (8 << 20) / (size + 32);
    let n = (per_segment * 8) as u64; // ~8 segments, 64 MiB
    g.throughput(Throughput::Bytes(n * (size as u64 + 32)));
    g.bench_function("64MiB-25pct-live", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = bench_dir();
                let mut log = filled_log(dir.path(), n, size);
                let first = log.next_seq() - n;
                for s in first..first + n {
                    if s % 4 != 0 {
                        log.ack(s).unwrap();
                    }
                }
                let start = Instant::now();
                log.compact().unwrap();
                total += start.elapsed();
            }
            total
        });
    });
    g.finish();
}

fn recovery(c: &mut Criterion) {
    let mut g = c.benchmark_group("recovery");
    g.sample_size(10);
    let size = 1024usize;
    let bytes = 256u64 << 20;
    let n = bytes / (size as u64 + 32);
    let dir = bench_dir();
    filled_log(dir.path(), n, size).close().unwrap();
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("open-256MiB-1KiB-records", |b| {
        b.iter(|| {
            let commit = GroupCommit::start(FsyncPolicy::Never);
            let (log, report) = Log::open(dir.path(), config(), commit).unwrap();
            assert!(report.is_clean());
            black_box(log.live());
        });
    });
    g.finish();
}

fn memcpy(c: &mut Criterion) {
    let mut g = c.benchmark_group("machine");
    let size = 64 * 1024;
    let src = vec![5u8; size];
    let mut dst = vec![0u8; 64 << 20];
    g.throughput(Throughput::Bytes(size as u64));
    let mut at = 0;
    g.bench_function("memcpy-64KiB", |b| {
        b.iter(|| {
            dst[at..at + size].copy_from_slice(black_box(&src));
            at = (at + size) % (dst.len() - size);
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = append_never, append_always, append_interval, read_and_ack, compaction, recovery, memcpy
}
criterion_main!(benches);
