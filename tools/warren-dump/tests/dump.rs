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
