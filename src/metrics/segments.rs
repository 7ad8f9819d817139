//! Segment files on disk, counted by walking the data dir at scrape time: every vhost's
//! queues, delayed-message logs and the like live under it (FORMAT.md), and a segment is a
//! file named `<base>.seg` (spares `.seg.free` and compaction leftovers `.seg.compact`
//! are not counted). A walk needs no model lock and sees exactly what is on disk; it costs
//! a `readdir` per directory and a `stat` per segment (measured in BENCHMARKS.md).

use std::path::Path;

/// How deep below the data dir segment files can be (`vhosts/<v>/queues/<q>/<p>/x.seg`
/// is 5); a bound, so a stray deep tree cannot make a scrape slow.
const MAX_DEPTH: usize = 6;

/// Segment files and their sizes (the bytes reserved on disk for them: segments are
/// preallocated, so this is their capacity, not the bytes written).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SegmentTally {
    pub files: u64,
    pub bytes: u64,
}

/// Counts the segment files under `data_dir`. Unreadable directories are skipped (a queue
/// being deleted meanwhile).
pub fn tally(data_dir: &Path) -> SegmentTally {
    let mut t = SegmentTally::default();
    walk(data_dir, 0, &mut t);
    t
}

fn walk(dir: &Path, depth: usize, t: &mut SegmentTally) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if depth < MAX_DEPTH {
                walk(&entry.path(), depth + 1, t);
            }
        } else if kind.is_file() && entry.file_name().as_encoded_bytes().ends_with(b".seg") {
            if let Ok(meta) = entry.metadata() {
                t.files += 1;
                t.bytes += meta.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_segment_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("queues/1");
        std::fs::create_dir_all(&q).unwrap();
        std::fs::write(q.join("00000000000000000000.seg"), [0u8; 100]).unwrap();
        std::fs::write(q.join("00000000000000000007.seg"), [0u8; 50]).unwrap();
        std::fs::write(q.join("00000000000000000000.ack"), [0u8; 9]).unwrap();
        std::fs::write(q.join("spare.seg.free"), [0u8; 9]).unwrap();
        std::fs::write(dir.path().join("access.json"), b"{}").unwrap();
        assert_eq!(
            tally(dir.path()),
            SegmentTally {
                files: 2,
                bytes: 150
            }
        );
        assert_eq!(tally(&dir.path().join("missing")), SegmentTally::default());
    }
}
