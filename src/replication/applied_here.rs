//! The last metadata entry this node's broker has taken in, kept in a file beside the
//! metadata group (`cluster/meta/applied-here`).
//!
//! The metadata group applies an entry, and may snapshot past it, before the bridge has
//! made it in the broker (`Replication::follow_meta` runs behind). After a kill -9 the
//! node restarts from that snapshot and replays only the entries after it, so without
//! this mark it could not tell an exchange the group deleted in an entry its broker
//! never saw from one it made itself and never got to the group. With it, the entries
//! replayed at the start that the broker had already taken in are known as such, and a
//! snapshot past the mark says that some entries were missed whole (topology.rs,
//! `Missed`). Written after the broker's own files (`VHostHandle::with` writes the
//! definitions before it returns), with no fsync: it is for kill -9, which keeps writes
//! already made, in order.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

/// The file's name in the metadata group's directory.
const FILE: &str = "applied-here";

pub(super) struct AppliedHere {
    file: Mutex<Option<File>>,
    written: std::sync::atomic::AtomicU64,
}

impl AppliedHere {
    /// The mark in `dir` and the index it held, `None` if it held none (a node new to
    /// the cluster, or one whose broker never took in an entry).
    pub(super) fn open(dir: &Path) -> (AppliedHere, Option<u64>) {
        let path = dir.join(FILE);
        let before = std::fs::read(&path)
            .ok()
            .and_then(|b| Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?)));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path);
        let file = match file {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!(
                    "cluster: {}: {e}; a restart will take the cluster's metadata whole",
                    path.display()
                );
                None
            }
        };
        let mark = AppliedHere {
            file: Mutex::new(file),
            written: std::sync::atomic::AtomicU64::new(before.unwrap_or(0)),
        };
        (mark, before)
    }

    /// The broker has taken in every entry up to `index`.
    pub(super) fn record(&self, index: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        if index <= self.written.load(Relaxed) {
            return;
        }
        let file = self.file.lock().expect("applied-here");
        let Some(file) = file.as_ref() else {
            return;
        };
        match file.write_all_at(&index.to_le_bytes(), 0) {
            Ok(()) => self.written.store(index, Relaxed),
            Err(e) => log_failure(e),
        }
    }
}

fn log_failure(e: io::Error) {
    tracing::warn!("cluster: recording the metadata this node has taken in: {e}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_is_read_back_and_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let (mark, before) = AppliedHere::open(dir.path());
        assert_eq!(before, None);
        mark.record(7);
        mark.record(5);
        drop(mark);
        let (mark, before) = AppliedHere::open(dir.path());
        assert_eq!(before, Some(7));
        mark.record(1_000_000);
        drop(mark);
        assert_eq!(AppliedHere::open(dir.path()).1, Some(1_000_000));
    }
}
