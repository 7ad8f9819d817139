//! Torn writes and corruption: truncate the last record at every byte offset, flip every
//! byte of one record in turn; recovery never panics, never returns a corrupt payload and
//! keeps every earlier record.

use std::path::{Path, PathBuf};

use warren_storage::recovery::list_segments;
use warren_storage::segment::FILE_HEADER_LEN;
use warren_storage::{Cursor, FsyncPolicy, GroupCommit, Log, LogConfig};

fn payload(seq: u64) -> Vec<u8> {
    format!("message number {seq} with some padding").into_bytes()
}

fn config() -> LogConfig {
    LogConfig {
        segment_size: 4096,
        ..LogConfig::default()
    }
}

/// Writes `n` records to a fresh log and returns the path of its (single) segment and the
/// offset where the last record starts.
fn build(dir: &Path, n: u64) -> (PathBuf, usize) {
    let commit = GroupCommit::start(FsyncPolicy::Never);
    let (mut log, _) = Log::open(dir, config(), commit).unwrap();
    for i in 0..n {
        log.append(1000 + i, true, &payload(i)).unwrap();
    }
    log.close().unwrap();
    let segs = list_segments(dir).unwrap();
    assert_eq!(segs.len(), 1);
    let bytes = std::fs::read(&segs[0].1).unwrap();
    let mut offset = FILE_HEADER_LEN;
    let mut last = offset;
    for i in 0..n {
        last = offset;
        offset += 32 + payload(i).len();
    }
    assert_ne!(bytes[last], 0);
    (segs[0].1.clone(), last)
}

fn read_all(dir: &Path) -> (Vec<(u64, Vec<u8>)>, warren_storage::RecoveryReport) {
    let commit = GroupCommit::start(FsyncPolicy::Never);
    let (log, report) = Log::open(dir, config(), commit).unwrap();
    let mut out = Vec::new();
    let mut c = Cursor::at(0);
    while let Some(r) = log.read_next(&mut c) {
        out.push((r.seq, r.payload.to_vec()));
    }
    (out, report)
}

#[test]
fn torn_last_record_at_every_offset() {
    let n = 5;
    let template = tempfile::tempdir().unwrap();
    let (seg, last) = build(template.path(), n);
    let original = std::fs::read(&seg).unwrap();
    let end = last + 32 + payload(n - 1).len();
    for cut in last..end {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = original.clone();
        // A torn write: the tail of the record never reached the disk (zeros).
        bytes[cut..end].iter_mut().for_each(|b| *b = 0);
        std::fs::write(dir.path().join(seg.file_name().unwrap()), &bytes).unwrap();
        let (records, report) = read_all(dir.path());
        let expected: Vec<_> = (0..n - 1).map(|i| (i, payload(i))).collect();
        assert_eq!(records, expected, "cut at {cut}");
        if cut > last {
            let c = &report.corruptions[0];
            assert_eq!(c.offset as usize, last, "cut at {cut}");
            assert!(c.bytes_dropped > 0);
        }
        // The log is writable again and the next record lands where the torn one was.
        let commit = GroupCommit::start(FsyncPolicy::Never);
        let (mut log, report) = Log::open(dir.path(), config(), commit).unwrap();
        assert!(report.is_clean(), "truncation is permanent: {report:?}");
        let a = log.append(1, true, b"after").unwrap();
        assert_eq!(a.seq, n - 1);
        assert_eq!(&log.read(a.seq).unwrap().payload[..], b"after");
    }
}

#[test]
fn flipped_byte_in_every_position_of_the_last_record() {
    let n = 5;
    let template = tempfile::tempdir().unwrap();
    let (seg, last) = build(template.path(), n);
    let original = std::fs::read(&seg).unwrap();
    let end = last + 32 + payload(n - 1).len();
    for pos in last..end {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = original.clone();
        bytes[pos] ^= 0xA5;
        std::fs::write(dir.path().join(seg.file_name().unwrap()), &bytes).unwrap();
        let (records, report) = read_all(dir.path());
        let expected: Vec<_> = (0..n - 1).map(|i| (i, payload(i))).collect();
        assert_eq!(records, expected, "flip at {pos}");
        assert_eq!(report.corruptions.len(), 1, "flip at {pos}");
        assert_eq!(report.corruptions[0].offset as usize, last);
    }
}

#[test]
fn flipped_byte_in_a_sealed_segment_skips_only_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let commit = GroupCommit::start(FsyncPolicy::Never);
    let (mut log, _) = Log::open(dir.path(), config(), commit).unwrap();
    let mut i = 0;
    while log.segment_count() < 3 {
        log.append(1, true, &payload(i)).unwrap();
        i += 1;
    }
    log.close().unwrap();
    let segs = list_segments(dir.path()).unwrap();
    let first = &segs[0].1;
    let pristine = std::fs::read(first).unwrap();
    let victim_offset = FILE_HEADER_LEN + 32 + payload(0).len();
    let victim_len = 32 + payload(1).len();
    for pos in victim_offset..victim_offset + victim_len {
        let mut bytes = pristine.clone();
        bytes[pos] ^= 0xFF;
        std::fs::write(first, &bytes).unwrap();
        let (records, report) = read_all(dir.path());
        assert!(!report.corruptions.is_empty(), "flip at {pos}");
        assert_eq!(report.corruptions[0].file, *first);
        let seqs: Vec<u64> = records.iter().map(|r| r.0).collect();
        let expected: Vec<u64> = (0..i).filter(|&s| s != 1).collect();
        assert_eq!(seqs, expected, "flip at {pos}");
        for (seq, body) in &records {
            assert_eq!(body, &payload(*seq));
        }
    }
    std::fs::write(first, &pristine).unwrap();
}

#[test]
fn garbage_segment_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x1234_5678_9abc_def0u64;
    for round in 0..200 {
        let mut bytes = warren_storage::segment::encode_file_header(0).to_vec();
        let len = (seed % 4096) as usize;
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            bytes.push(if seed.is_multiple_of(3) {
                0
            } else {
                seed as u8
            });
        }
        let qdir = dir.path().join(format!("r{round}"));
        std::fs::create_dir_all(&qdir).unwrap();
        std::fs::write(qdir.join("00000000000000000000.seg"), &bytes).unwrap();
        let _ = read_all(&qdir);
    }
}

/// A power cut before a new segment's first sync leaves it 0 bytes long or all zeros. It
/// held nothing (a confirmed record's file was synced): recovery removes it quietly, not as
/// corruption, and the records before it are intact.
#[test]
fn never_written_segment_files_are_removed_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = build(dir.path(), 5);
    let zeros = dir.path().join("00000000000000000005.seg");
    std::fs::write(&zeros, vec![0u8; 65536]).unwrap();
    let empty = dir.path().join("00000000000000000009.seg");
    std::fs::write(&empty, b"").unwrap();
    // Header never synced, a later page written back by the kernel before the cut.
    let torn = dir.path().join("00000000000000000007.seg");
    let mut bytes = vec![0u8; 65536];
    bytes[8192..8300].fill(0xAB);
    std::fs::write(&torn, &bytes).unwrap();
    std::fs::write(dir.path().join("00000000000000000009.ack"), [1u8; 20]).unwrap();
    let commit = GroupCommit::start(FsyncPolicy::Never);
    let (log, report) = Log::open(dir.path(), config(), commit).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.discarded_unwritten.len(), 3);
    assert!(
        log.next_seq() >= 9,
        "sequence numbers of the discarded files are not reused"
    );
    drop(log);
    assert!(!zeros.exists() && !empty.exists() && !torn.exists());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.contains("corrupt") && !n.starts_with("00000000000000000009")),
        "nothing set aside, the discarded file's ack file removed: {names:?}"
    );
    let (records, report) = read_all(dir.path());
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(records.len(), 5);
}

/// A sealed segment whose last record is torn (it was never confirmed) is reported at the
/// first recovery and repaired: the next recovery is clean and reads the same records.
#[test]
fn torn_tail_of_a_sealed_segment_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let commit = GroupCommit::start(FsyncPolicy::Never);
    let (mut log, _) = Log::open(dir.path(), config(), commit).unwrap();
    let mut i = 0;
    while log.segment_count() < 3 {
        log.append(1, true, &payload(i)).unwrap();
        i += 1;
    }
    log.close().unwrap();
    let segs = list_segments(dir.path()).unwrap();
    let (base, first) = (segs[0].0, &segs[0].1);
    let mut bytes = std::fs::read(first).unwrap();
    let mut last = None;
    warren_storage::segment::scan_records(&bytes, first, base, true, |r| {
        last = Some((r.offset, r.header.seq))
    });
    let (offset, torn_seq) = last.unwrap();
    bytes[offset + 40] ^= 0xFF; // inside the payload: CRC mismatch
    std::fs::write(first, &bytes).unwrap();
    let (records, report) = read_all(dir.path());
    assert_eq!(report.corruptions.len(), 1, "{report:?}");
    assert_eq!(report.corruptions[0].offset as usize, offset);
    assert!(records.iter().all(|r| r.0 != torn_seq));
    let (again, report) = read_all(dir.path());
    assert!(report.is_clean(), "reported once: {report:?}");
    assert_eq!(again, records);
}
