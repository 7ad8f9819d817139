//! Segment recycling: a fully acked segment that no reader holds becomes the spare file,
//! and the next new segment reuses it (its blocks are allocated and written already, so
//! the engine neither zero-fills a fresh file nor makes the disk write those zeros). A
//! segment some reader still holds a `Bytes` of becomes a spare too, but is not rewritten
//! until the reader lets go: the reader's bytes stay intact.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use warren_storage::{Cursor, FsyncPolicy, GroupCommit, Log, LogConfig};

const SEGMENT: usize = 64 << 10;
const PAYLOAD: usize = 1000;
const SPARE_SUFFIX: &str = ".seg.free";

fn config() -> LogConfig {
    LogConfig {
        segment_size: SEGMENT,
        ..LogConfig::default()
    }
}

fn payload(i: u64) -> Vec<u8> {
    let mut p = vec![(i % 251) as u8; PAYLOAD];
    p[..8].copy_from_slice(&i.to_le_bytes());
    p
}

/// Segment files of the log, by name (the spare excluded).
fn segments(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

/// Spare files of the log.
fn spares(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(SPARE_SUFFIX))
        .collect()
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// Appends until the log has `n` segments; returns the records appended.
fn fill_segments(log: &mut Log, n: usize, from: u64) -> u64 {
    let mut i = from;
    while log.segment_count() < n {
        log.append(i, true, &payload(i)).unwrap();
        i += 1;
    }
    i
}

#[test]
fn an_acked_segment_nobody_holds_is_reused_for_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let commit = GroupCommit::start(FsyncPolicy::Always);
    let (mut log, _) = Log::open(dir.path(), config(), commit.clone()).unwrap();
    let appended = fill_segments(&mut log, 3, 0);
    // Synced: the sync thread holds none of the files any more.
    commit.flush().unwrap();
    let first = dir.path().join(&segments(dir.path())[0]);
    let first_inode = inode(&first);

    // Ack every record of the first segment (records up to the second segment's base).
    let second_base: u64 = segments(dir.path())[1]
        .trim_end_matches(".seg")
        .parse()
        .unwrap();
    for seq in 0..second_base {
        assert!(log.ack(seq).unwrap());
    }
    let found = spares(dir.path());
    assert_eq!(found.len(), 1, "the acked front segment became a spare");
    let spare = &found[0];
    assert_eq!(inode(spare), first_inode, "the spare is that very file");
    assert!(!first.exists());

    // The next segment takes the spare's file.
    let appended = fill_segments(&mut log, 3, appended);
    assert!(!spare.exists(), "the spare was used");
    let newest = dir.path().join(segments(dir.path()).last().unwrap());
    assert_eq!(
        inode(&newest),
        first_inode,
        "the new head is the recycled file"
    );
    let appended = fill_segments(&mut log, 4, appended);

    // Every live record reads back whole, before and after a reopen: the recycled file's
    // stale records (lower sequence numbers) are never taken for data.
    let check = |log: &Log| {
        let mut cursor = Cursor::at(0);
        let mut expected = second_base;
        while let Some(r) = log.read_next(&mut cursor) {
            assert_eq!(r.seq, expected);
            assert_eq!(&r.payload[..], &payload(expected)[..]);
            expected += 1;
        }
        assert_eq!(expected, appended);
    };
    check(&log);
    log.close().unwrap();
    let commit = GroupCommit::start(FsyncPolicy::Always);
    let (log, report) = Log::open(dir.path(), config(), commit).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(log.live(), appended - second_base);
    check(&log);
}

#[test]
fn a_segment_is_not_rewritten_while_a_reader_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let commit = GroupCommit::start(FsyncPolicy::Always);
    let (mut log, _) = Log::open(dir.path(), config(), commit.clone()).unwrap();
    let appended = fill_segments(&mut log, 3, 0);
    // Synced: the sync thread holds none of the files any more.
    commit.flush().unwrap();
    let first_inode = inode(&dir.path().join(&segments(dir.path())[0]));
    let second_base: u64 = segments(dir.path())[1]
        .trim_end_matches(".seg")
        .parse()
        .unwrap();
    let held = log.read(5).unwrap().payload;
    for seq in 0..second_base {
        assert!(log.ack(seq).unwrap());
    }
    // Retired at once (a fully acked file must not come back as a segment after a crash)...
    let found = spares(dir.path());
    assert_eq!(found.len(), 1);
    assert_eq!(inode(&found[0]), first_inode);
    assert_eq!(segments(dir.path()).len(), 2);
    // ...but not rewritten: new segments are fresh files, and the held bytes stay as
    // they were.
    let appended = fill_segments(&mut log, 5, appended);
    assert_eq!(spares(dir.path()), found, "the held spare is still unused");
    for name in segments(dir.path()) {
        assert_ne!(inode(&dir.path().join(name)), first_inode);
    }
    assert_eq!(&held[..], &payload(5)[..]);
    // Once the reader lets go, the next segment is made from it.
    drop(held);
    fill_segments(&mut log, 6, appended);
    assert!(spares(dir.path()).is_empty());
    let newest = dir.path().join(segments(dir.path()).last().unwrap());
    assert_eq!(inode(&newest), first_inode);
}
