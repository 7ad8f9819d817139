//! Reading a log as a stream: records are never acked, readers keep their own cursors,
//! and the log is shortened only from the front, a whole segment at a time (retention).
//!
//! The offset of a stream message is its record's sequence number: no second index.
//! Finding where a time falls is a binary search over segments (by their first record's
//! timestamp), then over the segment's sparse offset index, then a walk of at most
//! `INDEX_EVERY` record headers.

use std::io;

use crate::log::Log;
use crate::segment::{Segment, FILE_HEADER_LEN};

/// How much of a stream to keep (`x-max-length-bytes`, `x-max-age`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Bytes of records kept, counted over written data of every segment.
    pub max_bytes: Option<u64>,
    /// Milliseconds: a sealed segment whose newest record is older goes.
    pub max_age_ms: Option<u64>,
}

impl Retention {
    pub fn is_unlimited(&self) -> bool {
        self.max_bytes.is_none() && self.max_age_ms.is_none()
    }
}

/// Timestamp of a segment's first record (`None` if it holds none).
fn first_timestamp(seg: &Segment) -> Option<u64> {
    seg.read_at(FILE_HEADER_LEN).map(|(r, _)| r.timestamp)
}

/// Timestamp of a segment's newest record.
fn last_timestamp(seg: &Segment) -> Option<u64> {
    seg.read_seq(seg.last_seq()?).map(|r| r.timestamp)
}

impl Log {
    /// The first offset still in the log (the next one to be written if it is empty).
    pub fn first_seq(&self) -> u64 {
        self.segments
            .iter()
            .find(|s| s.records() > 0)
            .map_or(self.next_seq, |s| s.base)
    }

    /// Bytes of records written in all segments (what stream retention counts).
    pub fn written_bytes(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| (s.write_pos() - FILE_HEADER_LEN) as u64)
            .sum()
    }

    /// The offset of the first record stored at or after `timestamp` (milliseconds), or
    /// the next offset to be written if there is none.
    pub fn seq_at_time(&self, timestamp: u64) -> u64 {
        // The first segment whose first record is at or after the time; the one before
        // it may hold the answer too.
        let after = self
            .segments
            .partition_point(|s| first_timestamp(s).is_some_and(|t| t < timestamp));
        for seg in self.segments.iter().skip(after.saturating_sub(1)) {
            if let Some(seq) = seq_at_time_in(seg, timestamp) {
                return seq;
            }
        }
        self.next_seq
    }

    /// Drops sealed segments from the front while the log is over `retention`'s byte
    /// limit or their newest record is older than its age limit (`now` in milliseconds).
    /// The write head always stays. Returns the number of records dropped.
    pub fn apply_retention(&mut self, retention: &Retention, now: u64) -> io::Result<u64> {
        if retention.is_unlimited() {
            return Ok(0);
        }
        let mut total = self.written_bytes();
        let mut dropped = 0u64;
        while self.segments.len() > 1 {
            let front = &self.segments[0];
            let over = retention.max_bytes.is_some_and(|m| total > m);
            let old = retention.max_age_ms.is_some_and(|age| {
                last_timestamp(front).is_none_or(|t| t.saturating_add(age) < now)
            });
            if !(over || old) {
                break;
            }
            total -= (front.write_pos() - FILE_HEADER_LEN) as u64;
            let live = front.live() as u64;
            self.live -= live;
            dropped += live;
            self.remove_segment(0)?;
        }
        Ok(dropped)
    }
}

/// The first record of `seg` stored at or after `timestamp`: binary search over the
/// sparse index by the timestamps of the indexed records, then a short walk.
fn seq_at_time_in(seg: &Segment, timestamp: u64) -> Option<u64> {
    let at = |offset: usize| seg.read_at(offset);
    let i = seg.index.partition_point(|&(_, offset)| {
        at(offset as usize).is_some_and(|(r, _)| r.timestamp < timestamp)
    });
    let mut offset = match i {
        0 => FILE_HEADER_LEN,
        i => seg.index[i - 1].1 as usize,
    };
    while let Some((rec, next)) = at(offset) {
        if rec.timestamp >= timestamp {
            return Some(rec.seq);
        }
        offset = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogConfig;
    use crate::segment::BatchRecord;
    use crate::sync::{FsyncPolicy, GroupCommit};

    fn stream_log(dir: &std::path::Path, segment_size: usize) -> Log {
        let commit = GroupCommit::start(FsyncPolicy::Never);
        let config = LogConfig {
            segment_size,
            ..LogConfig::default()
        };
        Log::open(dir, config, commit).unwrap().0
    }

    fn append_at(log: &mut Log, timestamp: u64, body: &[u8]) -> u64 {
        let parts: [&[u8]; 1] = [body];
        let rec = BatchRecord {
            timestamp,
            persistent: true,
            kind: 0,
            parts: &parts,
        };
        log.append_batch(&[rec]).unwrap().0
    }

    #[test]
    fn time_lookup_finds_the_first_record_at_or_after() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = stream_log(dir.path(), 64 * 1024);
        // 2,000 records of 100 bytes over several segments, ten per millisecond.
        for i in 0..2000u64 {
            assert_eq!(append_at(&mut log, 1_000 + i / 10, &[7; 100]), i);
        }
        assert!(log.segment_count() > 2, "the test needs several segments");
        assert_eq!(log.seq_at_time(0), 0);
        assert_eq!(log.seq_at_time(1_000), 0);
        assert_eq!(log.seq_at_time(1_001), 10);
        assert_eq!(log.seq_at_time(1_150), 1_500);
        assert_eq!(log.seq_at_time(1_199), 1_990);
        assert_eq!(
            log.seq_at_time(1_200),
            2_000,
            "after the end: the next offset"
        );
        for t in 1_000..1_200 {
            assert_eq!(log.seq_at_time(t), (t - 1_000) * 10);
        }
    }

    #[test]
    fn a_records_kind_is_kept_on_both_write_paths() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = stream_log(dir.path(), 64 * 1024);
        let small: [&[u8]; 1] = [b"small"];
        let big_body = vec![3u8; 8192];
        let big: [&[u8]; 1] = [&big_body];
        // Small transient records are copied into the map, large ones written with
        // pwritev: the kind must survive both.
        let recs = [
            BatchRecord {
                timestamp: 1,
                persistent: false,
                kind: 1,
                parts: &small,
            },
            BatchRecord {
                timestamp: 1,
                persistent: false,
                kind: 2,
                parts: &big,
            },
            BatchRecord {
                timestamp: 1,
                persistent: false,
                kind: 0,
                parts: &small,
            },
        ];
        log.append_batch(&recs).unwrap();
        let kinds: Vec<u8> = (0..3).map(|s| log.read(s).unwrap().kind()).collect();
        assert_eq!(kinds, [1, 2, 0]);
    }

    /// A reader in the middle of the log keeps its place while retention drops segments in
    /// front of it (the segment indices shift under its cursor's hint), and a second
    /// reader started later reads the same records.
    #[test]
    fn readers_keep_their_place_when_front_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = stream_log(dir.path(), 64 * 1024);
        let body = |i: u64| {
            let mut b = [0u8; 200];
            b[..8].copy_from_slice(&i.to_le_bytes());
            b
        };
        for i in 0..5000u64 {
            append_at(&mut log, i, &body(i));
        }
        assert!(log.segment_count() > 10, "the test needs many segments");
        let mut cursor = crate::log::Cursor::at(0);
        for want in 0..3000u64 {
            assert_eq!(log.read_next(&mut cursor).unwrap().seq, want);
        }
        let dropped = log
            .apply_retention(
                &Retention {
                    max_bytes: Some(600 * 1024),
                    max_age_ms: None,
                },
                0,
            )
            .unwrap();
        assert!(dropped > 1000 && dropped <= 3000, "dropped {dropped}");
        for want in 3000..5000u64 {
            let rec = log.read_next(&mut cursor).unwrap();
            assert_eq!((rec.seq, &rec.payload[..]), (want, &body(want)[..]));
        }
        assert!(log.read_next(&mut cursor).is_none());
        append_at(&mut log, 0, b"after");
        assert_eq!(log.read_next(&mut cursor).unwrap().seq, 5000);
    }

    #[test]
    fn retention_by_bytes_drops_whole_segments_from_the_front() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = stream_log(dir.path(), 64 * 1024);
        for i in 0..5000u64 {
            append_at(&mut log, i, &[1; 200]);
        }
        let before = log.segment_count();
        let limit = 300 * 1024;
        let dropped = log
            .apply_retention(
                &Retention {
                    max_bytes: Some(limit),
                    max_age_ms: None,
                },
                0,
            )
            .unwrap();
        assert!(dropped > 0 && log.segment_count() < before);
        assert!(log.written_bytes() <= limit);
        // Within one segment of the limit: the next older segment would have fitted no more.
        assert!(log.written_bytes() + 64 * 1024 > limit);
        assert_eq!(log.first_seq(), dropped, "offsets keep their numbers");
        assert_eq!(log.live(), 5000 - dropped);
        let mut cursor = crate::log::Cursor::at(0);
        assert_eq!(log.read_next(&mut cursor).unwrap().seq, dropped);
        // Reopened, the log starts where retention left it.
        drop(log);
        let log = stream_log(dir.path(), 64 * 1024);
        assert_eq!(log.first_seq(), dropped);
        assert_eq!(log.next_seq(), 5000);
    }

    #[test]
    fn retention_by_age_keeps_the_head_and_young_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = stream_log(dir.path(), 64 * 1024);
        for i in 0..3000u64 {
            append_at(&mut log, i, &[1; 200]);
        }
        let age = Retention {
            max_bytes: None,
            max_age_ms: Some(1_000),
        };
        // At 2,500 everything stored before 1,500 is too old, segment by segment.
        let dropped = log.apply_retention(&age, 2_500).unwrap();
        assert!(dropped > 0);
        let first = log.first_seq();
        assert!(first <= 1_500, "no record younger than the limit goes");
        // Far in the future only the head is left.
        log.apply_retention(&age, 1_000_000).unwrap();
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.next_seq(), 3000);
    }
}
