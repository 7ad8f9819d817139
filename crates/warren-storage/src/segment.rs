//! One segment file: a 32-byte file header, then records back to back, in a preallocated,
//! memory-mapped file.
//!
//! File header:
//!
//! ```text
//! offset size field
//!  0      8   magic "WARRENSG"
//!  8      4   format version (u32 LE) = 1
//! 12      4   header length (u32 LE) = 32
//! 16      8   base sequence number (u64 LE): no record in the file has a smaller one
//! 24      8   reserved, zero
//! ```
//!
//! The file is named `<base:020>.seg`, so `ls` lists a queue's segments in order.
//!
//! Invariant: bytes below `write_pos` are never written again while the mapping lives, so a
//! reader may hold a `Bytes` over them without a lock; appends only touch bytes past it.

use std::fs::OpenOptions;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::acks::AckBitmap;
use crate::batch_write;
use crate::compact::CompactionJob;
use crate::file::{check_same_file, rename_noreplace, reserve, whole_view, write_zeros};
pub use crate::file::{sync_dir, SegmentFile};
use crate::record::{self, RecordError, RecordHeader, HEADER_LEN};

pub const MAGIC: &[u8; 8] = b"WARRENSG";
pub const VERSION: u32 = 1;
pub const FILE_HEADER_LEN: usize = 32;

/// Every this many records the segment remembers (seq, offset), so a read by sequence
/// number scans at most this many records. 12 bytes per 64 records.
const INDEX_EVERY: u32 = 64;

/// No record in a segment is this far past its base: the most 32-byte records a 1 GiB
/// segment can hold. A record claiming otherwise is corrupt; the bound keeps a hostile file
/// from sizing the ack bitmap.
pub const MAX_SEQ_SPAN: u64 = 1 << 25;

pub fn segment_file_name(base: u64) -> String {
    format!("{base:020}.seg")
}

pub fn ack_file_name(base: u64) -> String {
    format!("{base:020}.ack")
}

/// Parses a segment file name back into its base sequence number.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Encodes a segment file header.
pub fn encode_file_header(base: u64) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(FILE_HEADER_LEN as u32).to_le_bytes());
    h[16..24].copy_from_slice(&base.to_le_bytes());
    h
}

/// True if these first bytes of a segment file (up to its header length) show that the
/// header never reached the disk: the file is empty, or its header is all zeros. The
/// header is written when the file is made, before any record, and every fdatasync since
/// would have carried it to disk: so such a file never had a successful sync, and holds no
/// record that was confirmed under `always` or `interval`. (After a power cut, a
/// never-synced segment may still show later pages that the kernel wrote back.)
pub fn header_never_written(first_bytes: &[u8]) -> bool {
    first_bytes.iter().all(|&b| b == 0)
}

/// Checks a segment file header; returns its base sequence number.
pub fn decode_file_header(bytes: &[u8]) -> Result<u64, String> {
    if bytes.len() < FILE_HEADER_LEN {
        return Err(format!(
            "file is {} bytes, shorter than its header",
            bytes.len()
        ));
    }
    if &bytes[0..8] != MAGIC {
        return Err("bad magic".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4"));
    if version != VERSION {
        return Err(format!("unsupported format version {version}"));
    }
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4"));
    if header_len as usize != FILE_HEADER_LEN {
        return Err(format!("unsupported header length {header_len}"));
    }
    Ok(u64::from_le_bytes(bytes[16..24].try_into().expect("8")))
}

/// A corrupt stretch found while scanning a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    pub file: PathBuf,
    pub offset: u64,
    pub bytes_dropped: u64,
    pub reason: String,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} at offset {}, {} bytes dropped",
            self.file.display(),
            self.reason,
            self.offset,
            self.bytes_dropped
        )
    }
}

/// A record as visited by a scan.
#[derive(Debug, Clone, Copy)]
pub struct ScannedRecord {
    pub offset: usize,
    pub header: RecordHeader,
}

/// The outcome of scanning the records of a mapped segment.
#[derive(Debug, Default)]
pub struct Scan {
    pub corruptions: Vec<Corruption>,
    /// End of the valid data (where the next append goes, for a head segment).
    pub valid_end: usize,
}

/// Scans records from `FILE_HEADER_LEN`. `resync` chooses what follows a bad record: for a
/// sealed segment, search forward for the next valid record (the bad one is skipped); for
/// the head, the bad record ends the valid data.
///
/// `visit` sees each good record (the scan itself keeps none, so it allocates nothing per
/// record).
pub fn scan_records(
    bytes: &[u8],
    path: &Path,
    base: u64,
    resync: bool,
    mut visit: impl FnMut(ScannedRecord),
) -> Scan {
    let mut scan = Scan {
        valid_end: FILE_HEADER_LEN.min(bytes.len()),
        ..Default::default()
    };
    let mut pos = FILE_HEADER_LEN;
    let mut last_seq: Option<u64> = None;
    while pos < bytes.len() {
        let bad = match record::decode(&bytes[pos..]) {
            // A valid record older than the segment is left over from the file's previous
            // life (segment files are recycled): the end of this segment's data.
            Ok((header, _)) if header.seq < base => break,
            Ok((header, _)) if header.seq - base >= MAX_SEQ_SPAN => {
                "sequence number out of the segment's range"
            }
            Ok((header, _)) if last_seq.is_none_or(|l| header.seq > l) => {
                visit(ScannedRecord {
                    offset: pos,
                    header,
                });
                last_seq = Some(header.seq);
                pos += header.total_len();
                scan.valid_end = pos;
                continue;
            }
            Ok(_) => "sequence number out of order",
            Err(RecordError::End) => break,
            Err(RecordError::Truncated) => "record runs past the end of the file",
            Err(RecordError::BadLength) => "bad record length",
            Err(RecordError::BadCrc) => "CRC mismatch",
        };
        let next = if resync {
            find_next_record(bytes, pos + 1, base, last_seq)
        } else {
            None
        };
        let stop = next.unwrap_or_else(|| last_nonzero(bytes, pos));
        scan.corruptions.push(Corruption {
            file: path.to_path_buf(),
            offset: pos as u64,
            bytes_dropped: (stop - pos) as u64,
            reason: bad.into(),
        });
        match next {
            Some(n) => pos = n,
            None => break,
        }
    }
    scan
}

/// End (exclusive) of the nonzero bytes from `from` on: how much a truncation drops.
fn last_nonzero(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(from, |i| from + i + 1)
}

/// Finds the first offset at or after `from` holding a valid record newer than `after`.
fn find_next_record(bytes: &[u8], from: usize, base: u64, after: Option<u64>) -> Option<usize> {
    (from..bytes.len().saturating_sub(HEADER_LEN - 1)).find(|&p| {
        matches!(record::decode(&bytes[p..]), Ok((h, _)) if h.seq >= base && h.seq - base < MAX_SEQ_SPAN && after.is_none_or(|l| h.seq > l))
    })
}

/// One record of a batch append: its payload is the concatenation of `parts`.
#[derive(Debug, Clone, Copy)]
pub struct BatchRecord<'a> {
    pub timestamp: u64,
    pub persistent: bool,
    /// What the payload is, for the engine's user (stored in flag bits 8..16, opaque here).
    pub kind: u8,
    pub parts: &'a [&'a [u8]],
}

/// How an append puts its bytes into the segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// memcpy into the shared mapping.
    Map,
    /// One pwritev system call.
    Syscall,
}

/// A message read back from a segment.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub seq: u64,
    pub timestamp: u64,
    pub flags: u32,
    pub payload: Bytes,
}

impl StoredRecord {
    /// The kind its writer gave it (`BatchRecord::kind`).
    pub fn kind(&self) -> u8 {
        (self.flags >> record::KIND_SHIFT) as u8
    }
}

/// A live segment: its mapped file plus the in-memory ack bitmap and sparse offset index.
pub struct Segment {
    pub base: u64,
    file: Arc<SegmentFile>,
    /// The whole mapping as one `Bytes`: a read hands out `view.slice(..)`, which costs a
    /// reference-count increment, not an allocation.
    view: Bytes,
    write_pos: usize,
    sealed: bool,
    acks: AckBitmap,
    /// (seq - base, offset) of every `INDEX_EVERY`th record: 8 bytes per 64 records.
    pub(crate) index: Vec<(u32, u32)>,
    records: u32,
    live: u32,
    last_seq: Option<u64>,
    /// Corrupt stretches `(start, end)` found at open in a sealed segment; reads jump over
    /// them. Empty for a healthy segment.
    skips: Vec<(usize, usize)>,
    /// Bumped whenever records move (compaction), so cursors know their offsets are stale.
    pub generation: u32,
}

impl Segment {
    /// Creates a new, preallocated segment file. It is written under a temporary name and
    /// renamed into place, so a crash never leaves a half-made segment behind.
    ///
    /// With `recycle`, an old segment file of exactly `capacity` bytes is reused instead:
    /// its blocks are already allocated and written (no fallocate, no zero-fill) and often
    /// still in the page cache. Its stale records all have sequence numbers below `base`,
    /// which a scan treats as the end of data.
    ///
    /// `synced` (any fsync policy but `never`) also fsyncs the directory after the rename,
    /// so the new name survives a power loss before any record in it is confirmed.
    pub fn create(
        dir: &Path,
        base: u64,
        capacity: usize,
        recycle: Option<&Path>,
        synced: bool,
    ) -> io::Result<Segment> {
        let path = dir.join(segment_file_name(base));
        let tmp = dir.join(format!("{}.tmp", segment_file_name(base)));
        let recycled = recycle.filter(|spare| {
            std::fs::metadata(spare).is_ok_and(|m| m.len() == capacity as u64)
                && std::fs::rename(spare, &tmp).is_ok()
        });
        let mut file = if recycled.is_some() {
            OpenOptions::new().read(true).write(true).open(&tmp)?
        } else {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?
        };
        let result = (|| {
            if recycled.is_none() {
                reserve(&file, capacity)?;
                write_zeros(&mut file, capacity)?;
            }
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&encode_file_header(base))?;
            // Also zero the first record header, so the new segment reads as empty even
            // before anything is appended.
            file.write_all(&[0u8; HEADER_LEN])?;
            // Never over an existing file: a live segment's name is its own (docs/FORMAT.md).
            rename_noreplace(&tmp, &path)?;
            if synced {
                sync_dir(dir)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let file = SegmentFile::map(path, file)?;
        Ok(Segment::empty(base, file, false))
    }

    /// A segment over `file` with no record noted yet.
    fn empty(base: u64, file: Arc<SegmentFile>, sealed: bool) -> Segment {
        Segment {
            base,
            view: whole_view(&file),
            file,
            write_pos: FILE_HEADER_LEN,
            sealed,
            acks: AckBitmap::new(),
            index: Vec::new(),
            records: 0,
            live: 0,
            last_seq: None,
            skips: Vec::new(),
            generation: 0,
        }
    }

    /// Grows an empty write head in place to `capacity` bytes (reserved and zero-filled
    /// like a new segment), for a record that does not fit in it. A new segment for that
    /// record would have the head's base, and so its file name; growing keeps one file per
    /// name. Nothing is published in the head, so no reader holds its old mapping.
    pub fn grow_empty(&mut self, capacity: usize) -> io::Result<()> {
        assert!(
            !self.sealed && self.records == 0 && self.write_pos == FILE_HEADER_LEN,
            "only an empty write head grows"
        );
        let old_len = self.file.len();
        if capacity <= old_len {
            return Ok(());
        }
        let mut file = self.file.file.try_clone()?;
        reserve(&file, capacity)?;
        file.seek(SeekFrom::Start(old_len as u64))?;
        write_zeros(&mut file, capacity - old_len)?;
        let grown = SegmentFile::map(self.file.path.clone(), file)?;
        self.view = whole_view(&grown);
        self.file = grown;
        Ok(())
    }

    /// For a segment being retired: lets go of its own view of the mapping and returns
    /// the file if anything else still holds it (a reader's `Bytes`, a pending sync) —
    /// it must not be rewritten until that is dropped — or `None` if nothing does.
    ///
    /// `Bytes::is_unique` cannot answer this: it is always false for a `Bytes` made by
    /// `from_owner`, as the view is (that check once kept recycling from ever happening).
    /// Every slice of the view shares one owner holding one `Arc` of the file, so once the
    /// view is dropped the file's count is 1 exactly when no slice is out.
    pub fn into_retired(mut self) -> Option<Arc<SegmentFile>> {
        self.view = Bytes::new();
        (Arc::strong_count(&self.file) > 1).then(|| self.file.clone())
    }

    /// Opens an existing segment, scanning its records. `head` selects tail truncation
    /// (for the write head) over skip-and-resync (for sealed segments). Acked sequence
    /// numbers are applied from `acked`; records not flagged persistent are dropped (marked
    /// acked) when `drop_transient` is set.
    pub fn open(
        path: &Path,
        head: bool,
        acked: &[u64],
        drop_transient: bool,
    ) -> io::Result<(Segment, Vec<Corruption>)> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let file = SegmentFile::map(path.to_path_buf(), file)?;
        let base = decode_file_header(file.bytes()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        let mut seg = Segment::empty(base, file.clone(), !head);
        let mut transient = Vec::new();
        let scan = scan_records(file.bytes(), path, base, !head, |r| {
            if r.header.seq < base {
                return;
            }
            seg.note_record(r.header.seq, r.offset);
            if drop_transient && !r.header.is_persistent() {
                transient.push(r.header.seq);
            }
        });
        seg.write_pos = scan.valid_end;
        // A corrupt stretch after the last valid record is a torn tail: zero it, so the
        // head's next append starts on clean ground, and so a sealed segment is reported
        // once, not at every restart (its torn record was never confirmed: a confirmed one
        // was synced whole). Stretches between valid records stay, and reads skip them.
        let torn_tail = scan
            .corruptions
            .last()
            .filter(|c| c.offset as usize >= scan.valid_end);
        if let Some(c) = torn_tail {
            let start = c.offset as usize;
            let end = start + c.bytes_dropped as usize;
            let zeros = vec![0u8; end - start];
            // SAFETY: the segment is not shared with any reader yet.
            unsafe { file.write_at(start, &zeros) };
            file.sync_data()?;
        }
        if !head {
            seg.skips = scan
                .corruptions
                .iter()
                .filter(|c| (c.offset as usize) < scan.valid_end)
                .map(|c| (c.offset as usize, (c.offset + c.bytes_dropped) as usize))
                .collect();
        }
        for &seq in acked.iter().chain(transient.iter()) {
            seg.ack(seq);
        }
        file.release_pages();
        Ok((seg, scan.corruptions))
    }

    fn note_record(&mut self, seq: u64, offset: usize) {
        // Sequence numbers skipped inside the segment (removed by compaction) read as acked.
        let gap_start = self.last_seq.map_or(self.base, |l| l + 1);
        self.acks.grow_to(seq - self.base + 1);
        for absent in gap_start..seq {
            self.acks.set(absent - self.base);
        }
        if self.records.is_multiple_of(INDEX_EVERY) {
            self.index.push(((seq - self.base) as u32, offset as u32));
        }
        self.records += 1;
        self.live += 1;
        self.last_seq = Some(seq);
    }

    /// Appends a record (payload gathered from `parts`) if it fits; returns `Ok(false)`
    /// (and writes nothing) if it does not.
    ///
    /// `WriteMode::Map` copies into the mapping (fastest when nothing is synced);
    /// `WriteMode::Syscall` uses one `pwritev`. Both land in the same page cache, so
    /// readers of the map see either. Under fsync policies the syscall path is much
    /// faster: a store through a shared mapping after each writeback takes a write fault
    /// that dirties file-system metadata (ext4 journals it), turning every fdatasync into a
    /// journal commit that serialises across files and defeats group commit.
    pub fn try_append(
        &mut self,
        seq: u64,
        timestamp: u64,
        flags: u32,
        parts: &[&[u8]],
        mode: WriteMode,
    ) -> io::Result<bool> {
        assert!(!self.sealed, "append to a sealed segment");
        assert!(seq >= self.base && self.last_seq.is_none_or(|l| seq > l));
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let len = record::encoded_len(total);
        if self.write_pos + len > self.file.len() {
            return Ok(false);
        }
        // An end marker (a zeroed header) goes right after the record when it fits: a
        // recycled file holds stale bytes there, and a scan must stop at our data's end.
        let marker = if self.write_pos + len + HEADER_LEN <= self.file.len() {
            HEADER_LEN
        } else {
            0
        };
        match mode {
            WriteMode::Map => {
                // SAFETY: bytes past write_pos are unpublished.
                let dst = unsafe { self.file.unpublished_mut(self.write_pos, len + marker) };
                record::encode_parts(&mut dst[..len], seq, timestamp, flags, parts);
                dst[len..].fill(0);
            }
            WriteMode::Syscall => {
                let header = record::encode_header(seq, timestamp, flags, parts);
                let zeros = [0u8; HEADER_LEN];
                let mut all: [&[u8]; 8] = [&[]; 8];
                if parts.len() < all.len() {
                    all[..parts.len()].copy_from_slice(parts);
                    all[parts.len()] = &zeros[..marker];
                    self.file
                        .pwritev_all(self.write_pos, &header, &all[..parts.len() + 1])?;
                } else {
                    self.file.pwritev_all(self.write_pos, &header, parts)?;
                    self.file
                        .pwritev_all(self.write_pos + len, &zeros[..marker], &[])?;
                }
            }
        }
        self.note_record(seq, self.write_pos);
        self.write_pos += len;
        Ok(true)
    }

    /// Appends as many of `recs` as fit (sequence numbers from `first_seq`), all with one
    /// pwritev, followed by an end marker; returns how many were written.
    ///
    /// Headers and small payloads are gathered into one buffer first (`batch_write`).
    pub fn append_many(&mut self, first_seq: u64, recs: &[BatchRecord<'_>]) -> io::Result<usize> {
        assert!(!self.sealed, "append to a sealed segment");
        assert!(first_seq >= self.base && self.last_seq.is_none_or(|l| first_seq > l));
        let payload_len = |r: &BatchRecord<'_>| r.parts.iter().map(|p| p.len()).sum::<usize>();
        let mut pos = self.write_pos;
        let mut n = 0;
        for r in recs {
            let len = record::encoded_len(payload_len(r));
            if pos + len > self.file.len() {
                break;
            }
            pos += len;
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        let marker = if pos + HEADER_LEN <= self.file.len() {
            HEADER_LEN
        } else {
            0
        };
        batch_write::write_batch(&self.file, self.write_pos, first_seq, &recs[..n], marker)?;
        let mut offset = self.write_pos;
        for (k, r) in recs[..n].iter().enumerate() {
            self.note_record(first_seq + k as u64, offset);
            offset += record::encoded_len(payload_len(r));
        }
        self.write_pos = pos;
        Ok(n)
    }

    /// Marks `seq` acked; returns true if it was a live record of this segment.
    pub fn ack(&mut self, seq: u64) -> bool {
        if seq < self.base {
            return false;
        }
        if self.acks.set(seq - self.base) {
            self.live -= 1;
            true
        } else {
            false
        }
    }

    pub fn is_acked(&self, seq: u64) -> bool {
        seq < self.base || self.acks.get(seq - self.base)
    }

    pub fn seal(&mut self) {
        self.sealed = true;
        self.file.release_pages();
    }

    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    pub fn live(&self) -> u32 {
        self.live
    }

    pub fn records(&self) -> u32 {
        self.records
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    pub fn write_pos(&self) -> usize {
        self.write_pos
    }

    pub fn file(&self) -> &Arc<SegmentFile> {
        &self.file
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Heap bytes of per-segment state (bitmap and sparse index).
    pub fn heap_bytes(&self) -> usize {
        self.acks.heap_bytes() + self.index.capacity() * 8
    }

    /// Moves `offset` past a corrupt stretch that starts there, if any.
    #[inline]
    fn skip_corrupt(&self, offset: usize) -> usize {
        match self.skips.iter().find(|&&(start, _)| start == offset) {
            Some(&(_, end)) => end,
            None => offset,
        }
    }

    /// The record at `offset` (which must be a record boundary below `write_pos`).
    // Inlined into `Log::read_next`'s loop, the hottest read path (stream reads lost
    // ~15 % when a layout change stopped the compiler from inlining it on its own).
    #[inline]
    pub fn read_at(&self, offset: usize) -> Option<(StoredRecord, usize)> {
        let offset = self.skip_corrupt(offset);
        if offset >= self.write_pos {
            return None;
        }
        let bytes = &self.file.bytes()[..self.write_pos];
        // Records below write_pos were verified when written or scanned; decode again
        // anyway only the header (cheap) and trust the CRC check done at scan time.
        let header = record::peek_header(&bytes[offset..]).ok()?;
        let start = offset + HEADER_LEN;
        let end = offset + header.total_len();
        let payload = self.view.slice(start..end);
        Some((
            StoredRecord {
                seq: header.seq,
                timestamp: header.timestamp,
                flags: header.flags,
                payload,
            },
            end,
        ))
    }

    /// Offset of the first record with sequence number >= `seq`, or `write_pos`.
    pub fn offset_of(&self, seq: u64) -> usize {
        let rel = seq.saturating_sub(self.base).min(u32::MAX as u64) as u32;
        let i = self.index.partition_point(|&(s, _)| s <= rel);
        let mut offset = if i == 0 {
            FILE_HEADER_LEN
        } else {
            self.index[i - 1].1 as usize
        };
        let bytes = &self.file.bytes()[..self.write_pos];
        while offset < self.write_pos {
            offset = self.skip_corrupt(offset);
            if offset >= self.write_pos {
                break;
            }
            match record::peek_header(&bytes[offset..]) {
                Ok(h) if h.seq >= seq => return offset,
                Ok(h) => offset += h.total_len(),
                Err(_) => break,
            }
        }
        self.write_pos
    }

    /// Reads the live record with sequence number `seq`, if present and unacked.
    pub fn read_seq(&self, seq: u64) -> Option<StoredRecord> {
        if self.is_acked(seq) {
            return None;
        }
        let (rec, _) = self.read_at(self.offset_of(seq))?;
        (rec.seq == seq).then_some(rec)
    }

    /// Visits every present record (acked or not) as (seq, offset, header).
    pub fn for_each_record(&self, f: impl FnMut(u64, usize, &RecordHeader)) {
        for_each_record_in(self.file.bytes(), self.write_pos, &self.skips, f);
    }

    /// A compaction job for this sealed segment: what to keep, as of now. It holds the
    /// mapping and a copy of the ack bitmap, so it runs without the log (see `compact`).
    pub fn compaction_job(&self) -> CompactionJob {
        assert!(self.sealed, "only sealed segments are compacted");
        CompactionJob {
            base: self.base,
            generation: self.generation,
            file: self.file.clone(),
            write_pos: self.write_pos,
            skips: self.skips.clone(),
            acks: self.acks.clone(),
        }
    }

    /// Swaps in a compacted file written by `CompactionJob::run` (at `tmp`): it is renamed
    /// over this segment's own file, which is then remapped. Records acked since the job
    /// was planned are in the new file but stay acked (the bitmap is kept, and their acks
    /// still reach the ack file). Readers holding `Bytes` keep the old mapping alive.
    pub fn install_compacted(&mut self, tmp: &Path) -> io::Result<()> {
        assert!(self.sealed, "only sealed segments are compacted");
        check_same_file(&self.file.path, &self.file.file)?;
        std::fs::rename(tmp, &self.file.path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.file.path)?;
        let new_file = SegmentFile::map(self.file.path.clone(), file)?;
        self.view = whole_view(&new_file);
        self.file = new_file;
        self.index.clear();
        self.records = 0;
        self.live = 0;
        let mut offset = FILE_HEADER_LEN;
        let new_bytes = self.file.bytes();
        while let Ok(h) = record::peek_header(&new_bytes[offset..]) {
            if self.records.is_multiple_of(INDEX_EVERY) {
                self.index.push(((h.seq - self.base) as u32, offset as u32));
            }
            self.records += 1;
            if !self.acks.get(h.seq - self.base) {
                self.live += 1;
            }
            offset += h.total_len();
        }
        self.write_pos = offset;
        self.skips.clear();
        self.generation = self.generation.wrapping_add(1);
        self.file.release_pages();
        Ok(())
    }
}

/// Visits the records of a segment's bytes below `write_pos`, jumping over the corrupt
/// stretches `skips`, as (seq, offset, header).
pub(crate) fn for_each_record_in(
    bytes: &[u8],
    write_pos: usize,
    skips: &[(usize, usize)],
    mut f: impl FnMut(u64, usize, &RecordHeader),
) {
    let bytes = &bytes[..write_pos];
    let mut offset = FILE_HEADER_LEN;
    while offset < write_pos {
        if let Some(&(_, end)) = skips.iter().find(|&&(start, _)| start == offset) {
            offset = end;
            continue;
        }
        match record::peek_header(&bytes[offset..]) {
            Ok(h) => {
                f(h.seq, offset, &h);
                offset += h.total_len();
            }
            Err(_) => break,
        }
    }
}
