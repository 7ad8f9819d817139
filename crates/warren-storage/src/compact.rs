//! Reclaiming space: deleting fully-acked segments and compacting sparse sealed ones.
//!
//! Compaction rewrites a sealed segment with only its live records, keeping their
//! sequence numbers, under a temporary name; the new file is synced and renamed over the
//! old one, and the directory synced. A crash before the rename leaves the old file (and a
//! `.compact` leftover that recovery removes); after it, the new one. Either way no live
//! record is lost and no acked one comes back.
//!
//! It runs in three steps so that its I/O happens without the owner's lock: `plan`
//! (under the lock: `Log::plan_compaction` copies what to keep), `run` (no lock: write and
//! fsync the new file), `install` (under the lock: `Log::install_compaction` renames it
//! over the segment's file and remaps), then a directory fsync (no lock).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::acks::AckBitmap;
use crate::file::{check_same_file, rename_noreplace, SegmentFile};
use crate::record::HEADER_LEN;
use crate::segment::{
    self, encode_file_header, for_each_record_in, segment_file_name, Segment, FILE_HEADER_LEN,
};

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

/// A planned compaction of one sealed segment (see the module doc).
pub struct CompactionJob {
    pub(crate) base: u64,
    pub(crate) generation: u32,
    pub(crate) file: Arc<SegmentFile>,
    pub(crate) write_pos: usize,
    pub(crate) skips: Vec<(usize, usize)>,
    pub(crate) acks: AckBitmap,
}

/// A compacted file written and synced under its temporary name, ready to install.
pub struct Compacted {
    pub(crate) base: u64,
    pub(crate) generation: u32,
    pub(crate) tmp: PathBuf,
    /// Bytes the new file saves.
    pub reclaimed: u64,
}

impl Compacted {
    /// Removes the compacted file without installing it (its segment has gone).
    pub fn discard(self) -> io::Result<()> {
        remove_if_present(&self.tmp)
    }
}

impl CompactionJob {
    /// Writes the segment's live records (as of planning) to `<base>.seg.compact` and
    /// fsyncs it. Touches nothing the log owns.
    pub fn run(&self) -> io::Result<Compacted> {
        let dir = self.file.path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!("{}.compact", segment_file_name(self.base)));
        let mut out = Vec::with_capacity(FILE_HEADER_LEN + self.write_pos / 2);
        out.extend_from_slice(&encode_file_header(self.base));
        let bytes = self.file.bytes();
        for_each_record_in(bytes, self.write_pos, &self.skips, |seq, offset, h| {
            if !self.acks.get(seq - self.base) {
                out.extend_from_slice(&bytes[offset..offset + h.total_len()]);
            }
        });
        // The end marker: a zeroed header after the last record.
        out.extend_from_slice(&[0u8; HEADER_LEN]);
        let reclaimed = (self.write_pos + HEADER_LEN).saturating_sub(out.len()) as u64;
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(&out)?;
        f.sync_data()?;
        Ok(Compacted {
            base: self.base,
            generation: self.generation,
            tmp,
            reclaimed,
        })
    }
}
