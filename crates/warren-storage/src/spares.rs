//! Retired segment files kept for reuse. A new segment made from a spare needs neither
//! fallocate nor zero-fill: its blocks are allocated and written already, so the disk
//! writes each record's bytes once. A fresh file's zeros are written by the first
//! fdatasync that covers them — for a busy persistent queue, every byte twice.
//!
//! Fully acked segments leave a consumed queue in runs (a consumer acks hundreds of
//! deliveries with one `multiple` ack; a backlog of many segments drains at once), and
//! new segments are made in runs as well: one spare recycled a quarter of the segments
//! with 64 KiB messages and a twentieth with 1 MiB ones (measured). So a log keeps up to
//! `MAX_SPARES`, and lets go of those that sat unused for `SPARE_IDLE` — a drained queue
//! gives its disk back within seconds, keeping one spare as before.
//!
//! A segment is retired as soon as its last record is acked, even while a reader still
//! holds `Bytes` of its mapping (a no-ack delivery on its way to the socket): it becomes a
//! spare at once — fully acked, it must not be read as a segment after a crash — but is
//! handed out for rewriting only once nothing else holds its mapping.
//!
//! Every spare gets a name never used before in its directory (`spare.<n>.seg.free`), so
//! one that is being deleted outside the owner's lock can never be confused with a newer
//! spare.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::file::SegmentFile;

/// Most spare files one log keeps (512 MiB of disk with the default 8 MiB segments).
pub const MAX_SPARES: usize = 64;

/// A spare unused for this long is deleted (all but the newest one).
pub const SPARE_IDLE: Duration = Duration::from_secs(10);

/// Suffix of every spare file; such files are never read for records.
pub const SPARE_SUFFIX: &str = ".seg.free";

/// The number in a spare's file name: `spare.<n>.seg.free`, or 0 for `spare.seg.free`
/// (the one name earlier versions used).
fn spare_number(name: &str) -> Option<u64> {
    let middle = name.strip_prefix("spare")?.strip_suffix(SPARE_SUFFIX)?;
    match middle {
        "" => Some(0),
        m => m.strip_prefix('.')?.parse().ok(),
    }
}

/// One spare file.
struct Spare {
    path: PathBuf,
    retired_at: Instant,
    /// The segment's mapping, while some reader may still hold part of it.
    held: Option<Arc<SegmentFile>>,
}

impl Spare {
    /// True once no reader holds the old mapping: the file may be rewritten.
    fn free(&self) -> bool {
        self.held.as_ref().is_none_or(|f| Arc::strong_count(f) == 1)
    }
}

/// The spare files of one log directory.
pub struct Spares {
    /// Spares on disk, oldest first.
    files: VecDeque<Spare>,
    /// The number the next spare's name takes.
    next_number: u64,
}

impl Spares {
    /// The spares found in `dir` at open; beyond `MAX_SPARES`, and any other file with
    /// the spare suffix, they are removed.
    pub fn recover(dir: &Path) -> io::Result<Spares> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.ends_with(SPARE_SUFFIX) {
                continue;
            }
            match spare_number(name) {
                Some(n) => found.push((n, entry.path())),
                None => std::fs::remove_file(entry.path())?,
            }
        }
        found.sort();
        let next_number = found.last().map_or(1, |(n, _)| n + 1);
        while found.len() > MAX_SPARES {
            std::fs::remove_file(found.remove(0).1)?;
        }
        let now = Instant::now();
        Ok(Spares {
            files: found
                .into_iter()
                .map(|(_, path)| Spare {
                    path,
                    retired_at: now,
                    held: None,
                })
                .collect(),
            next_number,
        })
    }

    /// The path for a new spare in `dir`, or `None` when the log keeps as many as it may.
    pub fn next_path(&self, dir: &Path) -> Option<PathBuf> {
        (self.files.len() < MAX_SPARES)
            .then(|| dir.join(format!("spare.{}{SPARE_SUFFIX}", self.next_number)))
    }

    /// Notes a spare just renamed into `path` (from `next_path`); `held` is its mapping
    /// if readers may still hold part of it (`Segment::into_retired`).
    pub fn add(&mut self, path: PathBuf, now: Instant, held: Option<Arc<SegmentFile>>) {
        assert!(self.files.len() < MAX_SPARES, "more spares than allowed");
        self.unmap_released();
        self.next_number += 1;
        self.files.push_back(Spare {
            path,
            retired_at: now,
            held,
        });
    }

    /// Takes the newest spare no reader holds (the likeliest to be in the page cache) for
    /// a new segment.
    pub fn take(&mut self) -> Option<PathBuf> {
        self.unmap_released();
        let i = self.files.iter().rposition(Spare::free)?;
        self.files.remove(i).map(|s| s.path)
    }

    /// Gives back a spare that was taken but not used (a size other than the one needed).
    /// It goes to the front, among the oldest, so the next `take` tries another one: a
    /// spare of a size no new segment has (left by an earlier `--segment-size`) must not
    /// hide the usable ones, and is deleted once idle.
    pub fn give_back(&mut self, path: PathBuf, now: Instant) {
        self.files.push_front(Spare {
            path,
            retired_at: now,
            held: None,
        });
    }

    /// Takes out the spares unused for `SPARE_IDLE`, all but the newest, for deletion.
    pub fn take_idle(&mut self, now: Instant) -> Vec<PathBuf> {
        self.unmap_released();
        let mut idle = Vec::new();
        while self.files.len() > 1
            && self
                .files
                .front()
                .is_some_and(|s| now.saturating_duration_since(s.retired_at) >= SPARE_IDLE)
        {
            idle.extend(self.files.pop_front().map(|s| s.path));
        }
        idle
    }

    /// Drops the mappings no reader holds any more (so they do not stay mapped, and
    /// count, until their spare is reused or deleted).
    fn unmap_released(&mut self) {
        for spare in self.files.iter_mut() {
            if spare.held.is_some() && spare.free() {
                spare.held = None;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Bytes the spare files take on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.files
            .iter()
            .filter_map(|s| std::fs::metadata(&s.path).ok())
            .map(|m| m.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retire(spares: &mut Spares, dir: &Path, now: Instant) -> PathBuf {
        let path = spares.next_path(dir).expect("room for a spare");
        std::fs::write(&path, b"x").unwrap();
        spares.add(path.clone(), now, None);
        path
    }

    #[test]
    fn names_are_never_reused_and_the_pool_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut spares = Spares::recover(dir.path()).unwrap();
        let now = Instant::now();
        let first = retire(&mut spares, dir.path(), now);
        assert_eq!(spares.take(), Some(first.clone()));
        std::fs::remove_file(&first).unwrap();
        let second = retire(&mut spares, dir.path(), now);
        assert_ne!(first, second, "a new spare takes a new name");
        while spares.next_path(dir.path()).is_some() {
            retire(&mut spares, dir.path(), now);
        }
        assert_eq!(spares.len(), MAX_SPARES);
        assert_eq!(spares.disk_bytes(), MAX_SPARES as u64);
    }

    #[test]
    fn idle_spares_go_but_the_newest_stays() {
        let dir = tempfile::tempdir().unwrap();
        let mut spares = Spares::recover(dir.path()).unwrap();
        let start = Instant::now();
        let old: Vec<PathBuf> = (0..3)
            .map(|_| retire(&mut spares, dir.path(), start))
            .collect();
        let fresh = retire(&mut spares, dir.path(), start + SPARE_IDLE);
        assert!(spares.take_idle(start + SPARE_IDLE / 2).is_empty());
        assert_eq!(spares.take_idle(start + SPARE_IDLE), old);
        assert_eq!(
            spares.take_idle(start + SPARE_IDLE * 5),
            Vec::<PathBuf>::new()
        );
        assert_eq!(spares.take(), Some(fresh));
    }

    #[test]
    fn a_spare_is_not_handed_out_while_a_reader_holds_its_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let mut spares = Spares::recover(dir.path()).unwrap();
        let now = Instant::now();
        let free = retire(&mut spares, dir.path(), now);
        let held_path = spares.next_path(dir.path()).unwrap();
        std::fs::write(&held_path, [7u8; 4096]).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&held_path)
            .unwrap();
        let mapping = SegmentFile::map(held_path.clone(), file).unwrap();
        let reader = mapping.clone();
        spares.add(held_path.clone(), now, Some(mapping));
        assert_eq!(spares.take(), Some(free), "the older, unheld spare first");
        assert_eq!(spares.take(), None, "a reader still holds the other one");
        drop(reader);
        assert_eq!(spares.take(), Some(held_path));
    }

    #[test]
    fn a_spare_given_back_does_not_hide_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let mut spares = Spares::recover(dir.path()).unwrap();
        let now = Instant::now();
        let usable = retire(&mut spares, dir.path(), now);
        let odd = retire(&mut spares, dir.path(), now);
        assert_eq!(spares.take(), Some(odd.clone()));
        spares.give_back(odd.clone(), now);
        assert_eq!(
            spares.take(),
            Some(usable),
            "the given-back spare is tried last"
        );
        assert_eq!(spares.take(), Some(odd));
    }

    #[test]
    fn recovery_keeps_spares_numbers_on_and_removes_strays() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("spare.seg.free"), b"a").unwrap();
        std::fs::write(dir.path().join("spare.7.seg.free"), b"b").unwrap();
        let stray = dir.path().join("junk.seg.free");
        std::fs::write(&stray, b"c").unwrap();
        std::fs::write(dir.path().join("00000000000000000000.seg"), b"d").unwrap();
        let spares = Spares::recover(dir.path()).unwrap();
        assert_eq!(spares.len(), 2);
        assert!(!stray.exists());
        assert!(dir.path().join("00000000000000000000.seg").exists());
        assert_eq!(
            spares.next_path(dir.path()),
            Some(dir.path().join("spare.8.seg.free"))
        );
    }
}
