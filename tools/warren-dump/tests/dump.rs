//! warren-dump against real segment files: clean exit, corruption exit, usage exit.

use std::process::Command;

use warren_storage::{FsyncPolicy, GroupCommit, Log, LogConfig};

fn dump(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warren-dump"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn make_log(dir: &std::path::Path) {
    let commit = GroupCommit::start(FsyncPolicy::Never);
    let (mut log, _) = Log::open(dir, LogConfig::default(), commit).unwrap();
    for i in 0..10u64 {
        log.append(1_700_000_000_000 + i, true, format!("hello {i}").as_bytes())
            .unwrap();
    }
    log.ack(3).unwrap();
    log.close().unwrap();
}

#[test]
fn clean_log_exits_zero_and_counts_acks() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q");
    make_log(&q);
    let (code, out) = dump(&[dir.path().to_str().unwrap(), "--records"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("10 records, 9 live, 1 acked"), "{out}");
    assert!(out.contains("\"hello 7\""), "{out}");
    let (code, out) = dump(&[q.to_str().unwrap(), "--json", "--records"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 12, "segment + 10 records + summary: {out}");
    assert!(lines[4].contains("\"state\":\"acked\""), "{out}");
}

#[test]
fn corrupt_record_exits_one_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path());
    let seg = dir.path().join("00000000000000000000.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    // Third record: header 32 + (32 + 7) * 2.
    let third = 32 + 2 * (32 + 7);
    bytes[third + 35] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let (code, out) = dump(&[seg.to_str().unwrap(), "--verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("CORRUPT @{third}: CRC mismatch")),
        "{out}"
    );
    let (code, out) = dump(&[seg.to_str().unwrap(), "--verify", "--json"]);
    assert_eq!(code, 1);
    assert!(out.contains(&format!("\"offset\":{third}")), "{out}");
}

#[test]
fn usage_and_io_errors_exit_two() {
    assert_eq!(dump(&[]).0, 2);
    assert_eq!(dump(&["--bogus", "x"]).0, 2);
    assert_eq!(dump(&["/nonexistent/warren/path"]).0, 2);
}

/// A segment file whose header never reached the disk (a power cut before its first sync)
/// is reported as such, not as corruption: `--verify` exits 0.
#[test]
fn never_written_segment_is_not_corruption() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("00000000000000000000.seg"), vec![0u8; 4096]).unwrap();
    std::fs::write(dir.path().join("00000000000000000010.seg"), b"").unwrap();
    let (code, out) = dump(&[dir.path().to_str().unwrap(), "--verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("never written"), "{out}");
}

/// Writes `count` records ("hello 0", …) to a log in `dir` with segments of `segment_size`
/// bytes, and returns the log's segment files, oldest first.
fn make_segments(
    dir: &std::path::Path,
    count: u64,
    segment_size: usize,
) -> Vec<std::path::PathBuf> {
    let commit = GroupCommit::start(FsyncPolicy::Never);
    let config = LogConfig {
        segment_size,
        ..LogConfig::default()
    };
    let (mut log, _) = Log::open(dir, config, commit).unwrap();
    for i in 0..count {
        log.append(1_700_000_000_000 + i, true, format!("hello {i}").as_bytes())
            .unwrap();
    }
    log.close().unwrap();
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs
}

/// Flips a byte in the body of the last record of `seg` (records "hello N" of 7 bytes,
/// 32-byte headers), as a write cut short would leave it.
fn tear_last_record(seg: &std::path::Path, records: usize) {
    let mut bytes = std::fs::read(seg).unwrap();
    let last = 32 + (records - 1) * (32 + 7);
    bytes[last + 32 + 3] ^= 0xff;
    std::fs::write(seg, &bytes).unwrap();
}

/// A bad last record of a queue's newest segment is a torn tail (a crash mid-write; never
/// confirmed): reported, and `--verify` exits 0. Given the segment file alone, its
/// directory still decides that it is the head.
#[test]
fn torn_tail_of_the_head_is_not_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let segs = make_segments(dir.path(), 10, 8 << 20);
    assert_eq!(segs.len(), 1);
    tear_last_record(&segs[0], 10);
    for target in [dir.path(), segs[0].as_path()] {
        let (code, out) = dump(&[target.to_str().unwrap(), "--verify"]);
        assert_eq!(code, 0, "{out}");
        let torn = 32 + 9 * (32 + 7);
        assert!(
            out.contains(&format!("torn tail @{torn}: CRC mismatch")),
            "{out}"
        );
        assert!(out.contains("0 corrupt, 1 torn tail(s)"), "{out}");
    }
    let (code, out) = dump(&[dir.path().to_str().unwrap(), "--verify", "--json"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"type\":\"torn_tail\""), "{out}");
    assert!(out.contains("\"torn_tails\":1"), "{out}");
}

/// The same damage in a segment with a newer one after it cannot come from a crash (each
/// write finishes before the next begins): corruption, exit 1.
#[test]
fn bad_last_record_of_an_older_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let segs = make_segments(dir.path(), 12, 256);
    assert!(segs.len() >= 2, "{segs:?}");
    let first = std::fs::read(&segs[0]).unwrap();
    let records = (0..)
        .take_while(|k| {
            let at = 32 + k * (32 + 7);
            at + 32 + 7 <= first.len() && first[at..at + 32].iter().any(|&b| b != 0)
        })
        .count();
    assert!(records >= 2, "{records}");
    tear_last_record(&segs[0], records);
    let (code, out) = dump(&[dir.path().to_str().unwrap(), "--verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 corrupt, 0 torn tail(s)"), "{out}");
}
