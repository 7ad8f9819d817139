//! Real crash test: a child process appends under `fsync always` and prints each sequence
//! number once its append is durable; the parent SIGKILLs it at random moments, reopens the
//! log and checks that every reported-durable record is present and intact, once.
//!
//! The child is this same test binary, re-run with `WARREN_CRASH_CHILD_DIR` set.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warren_storage::{Cursor, FsyncPolicy, GroupCommit, Log, LogConfig};

const CHILD_ENV: &str = "WARREN_CRASH_CHILD_DIR";

fn payload(seq: u64) -> Vec<u8> {
    let mut p = format!("durable record {seq} ").into_bytes();
    p.resize(64 + (seq % 200) as usize, b'.');
    p
}

fn config() -> LogConfig {
    LogConfig {
        segment_size: 64 * 1024,
        ..LogConfig::default()
    }
}

/// The child's body: append forever, reporting each durable sequence number.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // Run as a normal test: nothing to do.
    };
    let commit = GroupCommit::start(FsyncPolicy::Always);
    let (mut log, _) = Log::open(dir.as_ref(), config(), commit.clone()).unwrap();
    let stdout = std::io::stdout();
    loop {
        let seq = log.next_seq();
        let a = log.append(seq, true, &payload(seq)).unwrap();
        commit.wait(a.ticket).unwrap();
        let mut out = stdout.lock();
        writeln!(out, "{}", a.seq).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_never_loses_a_durable_record() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut durable: Vec<u64> = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ Instant::now().elapsed().as_nanos() as u64;
    let rounds = 50;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut seqs = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(seq) = line.trim().parse::<u64>() {
                    seqs.push(seq);
                }
            }
            seqs
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wait = Duration::from_millis(20 + rng % 180);
        std::thread::sleep(wait);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let reported = reader.join().unwrap();
        durable.extend(reported);

        let commit = GroupCommit::start(FsyncPolicy::Never);
        let (log, _report) = Log::open(dir.path(), config(), commit).unwrap();
        let mut found = Vec::new();
        let mut c = Cursor::at(0);
        while let Some(rec) = log.read_next(&mut c) {
            assert_eq!(&rec.payload[..], &payload(rec.seq)[..], "round {round}");
            found.push(rec.seq);
        }
        let mut dedup = found.clone();
        dedup.dedup();
        assert_eq!(
            dedup.len(),
            found.len(),
            "duplicate records in round {round}"
        );
        let found: std::collections::HashSet<u64> = found.into_iter().collect();
        for seq in &durable {
            assert!(
                found.contains(seq),
                "durable seq {seq} lost in round {round}"
            );
        }
    }
    assert!(
        !durable.is_empty(),
        "the child never reported a durable append"
    );
    let unique: std::collections::HashSet<_> = durable.iter().collect();
    assert_eq!(
        unique.len(),
        durable.len(),
        "a sequence number was reported twice"
    );
}
