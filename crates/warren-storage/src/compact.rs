//! Reclaiming space: deleting fully-acked segments and compacting sparse sealed ones.
//!
//! Compaction rewrites a sealed segment with only its live records, keeping their
//! sequence numbers, under a temporary name; the new file is synced and renamed over the
//! old one, and the directory synced. A crash before the rename leaves the old file (and a
//! `.compact` leftover that recovery removes); after it, the new one. Either way no live
//! record is lost and no acked one comes back.

use std::io;
use std::path::Path;

use crate::file::{check_same_file, rename_noreplace};
use crate::segment::{self, Segment};

/// True if `seg` is sealed and its live fraction has fallen below `threshold`.
pub fn wants_compaction(seg: &Segment, threshold: f64) -> bool {
    seg.is_sealed() && seg.records() > 0 && (seg.live() as f64) < threshold * seg.records() as f64
}

/// Removes a segment's data and ack files. Readers holding `Bytes` from it keep the
/// mapping (and so the data) alive until they drop them. The data file is removed by
/// identity: only if its path still names the file this segment has open.
pub fn delete_segment_files(dir: &Path, seg: &Segment) -> io::Result<()> {
    match check_same_file(seg.path(), &seg.file().file) {
        Ok(()) => remove_if_present(seg.path())?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    remove_if_present(&dir.join(segment::ack_file_name(seg.base)))
}

/// Keeps a fully-acked segment's file as the log's spare (renamed to `spare`, which must
/// not exist) and removes its ack file. The caller has checked that no reader holds its
/// mapping.
pub fn retire_segment_files(dir: &Path, seg: &Segment, spare: &Path) -> io::Result<()> {
    check_same_file(seg.path(), &seg.file().file)?;
    rename_noreplace(seg.path(), spare)?;
    remove_if_present(&dir.join(segment::ack_file_name(seg.base)))
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
