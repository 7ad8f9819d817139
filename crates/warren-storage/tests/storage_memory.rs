//! Memory under a deep backlog: a log of many small records opens and serves reads with
//! little resident memory, because per-record state is a bit in a bitmap and the data stays
//! in the page cache, not in our resident set.
//!
//! The full-size run (100 million 16-byte records, ~4.8 GB on disk) is `#[ignore]`d; run it
//! with `cargo test --release --test storage_memory -- --ignored --nocapture`.
//! `WARREN_MEMORY_RECORDS` overrides the count.

use warren_storage::{Cursor, FsyncPolicy, GroupCommit, Log, LogConfig};

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

fn run(records: u64, limit_bytes: u64) {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(base).unwrap();
    {
        let commit = GroupCommit::start(FsyncPolicy::Never);
        let (mut log, _) = Log::open(dir.path(), LogConfig::default(), commit).unwrap();
        for i in 0..records {
            log.append(i, true, &i.to_le_bytes().repeat(2)).unwrap();
        }
        log.close().unwrap();
    }
    let before = rss_bytes();
    let commit = GroupCommit::start(FsyncPolicy::Never);
    let (log, report) = Log::open(dir.path(), LogConfig::default(), commit).unwrap();
    assert!(report.is_clean());
    assert_eq!(log.live(), records);
    let after_open = rss_bytes();
    let mut cursor = Cursor::at(0);
    let mut n = 0u64;
    while let Some(r) = log.read_next(&mut cursor) {
        assert_eq!(&r.payload[..8], &n.to_le_bytes());
        n += 1;
    }
    assert_eq!(n, records);
    let after_read = rss_bytes();
    println!(
        "{records} records: RSS {} MB before open, {} MB after open, {} MB after reading all; heap state {} MB",
        before >> 20,
        after_open >> 20,
        after_read >> 20,
        log.heap_bytes() >> 20
    );
    assert!(
        after_open < limit_bytes,
        "RSS after open {after_open} >= {limit_bytes}"
    );
    assert!(
        after_read < limit_bytes,
        "RSS after reads {after_read} >= {limit_bytes}"
    );
}

#[test]
fn two_million_records_open_and_read_in_little_memory() {
    run(2_000_000, 50 << 20);
}

#[test]
#[ignore = "writes ~4.8 GB; run by hand (see the module docs)"]
fn hundred_million_records_under_50_mb() {
    let records = std::env::var("WARREN_MEMORY_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000_000);
    run(records, 50 << 20);
}
