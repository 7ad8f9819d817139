//! Opening a log after a clean shutdown or a crash.
//!
//! Steps: remove leftovers of interrupted operations (`*.tmp` from segment creation,
//! `*.compact` from compaction; the original is intact in both cases), then open every
//! segment in order. The last segment is the write head: its first bad record ends the
//! valid data and the tail is zeroed. A bad record in a sealed segment is reported and
//! skipped. Records not flagged persistent are dropped. Each segment's ack file is applied.
//! Every drop is reported with file, offset and byte count.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::acks;
use crate::file::rename_noreplace;
use crate::log::LogConfig;
use crate::segment::{self, Corruption, Segment};
use crate::spares::Spares;

/// What recovery found and did.
#[derive(Debug, Default)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    pub live: u64,
    /// Corrupt or torn stretches, each with its file, offset and bytes dropped.
    pub corruptions: Vec<Corruption>,
    /// Leftover files of interrupted operations that were removed.
    pub removed_leftovers: Vec<PathBuf>,
    /// Segment files that could not be opened at all (bad header); renamed to `.corrupt`.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Segment files whose header never reached the disk (a power cut before their first
    /// sync): they held nothing confirmed, and were removed. Not a problem; a debug line.
    pub discarded_unwritten: Vec<PathBuf>,
}

impl RecoveryReport {
    pub fn is_clean(&self) -> bool {
        self.corruptions.is_empty() && self.unreadable.is_empty()
    }
}

pub(crate) struct Recovered {
    pub segments: Vec<Segment>,
    pub next_seq: u64,
    pub delivered_hwm: Option<u64>,
    pub spares: Spares,
    pub report: RecoveryReport,
}

const DELIVERED_FILE: &str = "delivered";

/// Lists `(base, path)` of the segment files in `dir`, sorted by base.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(base) = name.to_str().and_then(segment::parse_segment_file_name) {
            found.push((base, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

pub(crate) fn recover(dir: &Path, config: &LogConfig) -> io::Result<Recovered> {
    std::fs::create_dir_all(dir)?;
    let mut report = RecoveryReport::default();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".tmp") || name.ends_with(".compact") {
            std::fs::remove_file(&path)?;
            report.removed_leftovers.push(path);
        }
    }
    let mut files = list_segments(dir)?;
    // A segment file whose header never reached the disk holds nothing confirmed: a power
    // cut before its first sync leaves it 0 bytes long, all zeros, or with a zero header and
    // some later pages written back (a confirmed record's file was synced, header and all).
    // Remove it quietly; its sequence numbers are not reused.
    let mut unwritten_floor = 0u64;
    files.retain(|(base, path)| match never_written(path) {
        Ok(true) => {
            unwritten_floor = unwritten_floor.max(*base);
            report.discarded_unwritten.push(path.clone());
            false
        }
        _ => true,
    });
    for path in &report.discarded_unwritten {
        std::fs::remove_file(path)?;
    }
    // Ack files whose segment is gone (deleted after the batch was taken) are orphans.
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(stem) = name.strip_suffix(".ack") {
            let has_segment = segment::parse_segment_file_name(&format!("{stem}.seg"))
                .is_some_and(|base| files.binary_search_by_key(&base, |(b, _)| *b).is_ok());
            if !has_segment {
                std::fs::remove_file(&path)?;
                report.removed_leftovers.push(path);
            }
        }
    }
    let mut segments: Vec<Segment> = Vec::with_capacity(files.len());
    let mut next_seq = unwritten_floor;
    for (i, (base, path)) in files.iter().enumerate() {
        let head = i + 1 == files.len();
        let ack_path = dir.join(segment::ack_file_name(*base));
        let ack_scan = acks::read_file(&ack_path)?;
        // Acks of records lost with a torn tail still count as used sequence numbers;
        // entries outside the segment's possible range are ignored (the file is untrusted).
        let in_range = |s: &&u64| **s >= *base && **s - *base < segment::MAX_SEQ_SPAN;
        if let Some(max_acked) = ack_scan.seqs.iter().filter(in_range).max() {
            next_seq = next_seq.max(max_acked.saturating_add(1));
        }
        match Segment::open(path, head, &ack_scan.seqs, true) {
            Ok((seg, corruptions)) => {
                if seg.base != *base {
                    report.unreadable.push((
                        path.clone(),
                        format!("header names base {} but file name says {base}", seg.base),
                    ));
                    drop(seg);
                    set_aside(path)?;
                    continue;
                }
                report.corruptions.extend(corruptions);
                report.records += seg.records() as u64;
                report.live += seg.live() as u64;
                next_seq = next_seq.max(seg.last_seq().map_or(seg.base, |l| l.saturating_add(1)));
                segments.push(seg);
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                // The reason alone: the report names the file.
                let text = e.to_string();
                let prefix = format!("{}: ", path.display());
                let reason = text.strip_prefix(&prefix).unwrap_or(&text).to_owned();
                report.unreadable.push((path.clone(), reason));
                set_aside(path)?;
                next_seq = next_seq.max(*base);
            }
            Err(e) => return Err(e),
        }
    }
    // A sealed segment whose successor is unreadable is still sealed; only the last
    // segment is the head. If the last one read was opened sealed, give the log a new head.
    let mut segments = segments;
    if segments.last().is_some_and(|s| s.is_sealed()) {
        segments.push(Segment::create(
            dir,
            next_seq,
            config.segment_size,
            None,
            true,
        )?);
    }
    report.segments = segments.len();
    Ok(Recovered {
        segments,
        next_seq,
        delivered_hwm: read_delivered_hwm(dir),
        spares: Spares::recover(dir)?,
        report,
    })
}

/// True if the segment file at `path` never had its header synced (see
/// `segment::header_never_written`).
fn never_written(path: &Path) -> io::Result<bool> {
    use std::io::Read;
    let mut header = [0u8; segment::FILE_HEADER_LEN];
    let mut file = std::fs::File::open(path)?;
    let mut got = 0;
    while got < header.len() {
        match file.read(&mut header[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(segment::header_never_written(&header[..got]))
}

/// Renames an unreadable segment out of the way so its name is free and its bytes kept;
/// an earlier `.corrupt` file of the same name is never replaced (`.corrupt.1`, ...).
fn set_aside(path: &Path) -> io::Result<()> {
    for n in 0u32.. {
        let mut aside = path.as_os_str().to_owned();
        aside.push(".corrupt");
        if n > 0 {
            aside.push(format!(".{n}"));
        }
        match rename_noreplace(path, Path::new(&aside)) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            r => return r,
        }
    }
    unreachable!("u32 names run out first")
}

/// Persists the delivery watermark: 8 bytes of value and a CRC32 of them, written to a
/// temporary file and renamed into place.
pub(crate) fn write_delivered_hwm(dir: &Path, hwm: u64) -> io::Result<()> {
    let mut buf = [0u8; 12];
    buf[0..8].copy_from_slice(&hwm.to_le_bytes());
    let crc = crc32fast::hash(&buf[0..8]);
    buf[8..12].copy_from_slice(&crc.to_le_bytes());
    let tmp = dir.join(format!("{DELIVERED_FILE}.tmp"));
    std::fs::File::create(&tmp)?.write_all(&buf)?;
    std::fs::rename(tmp, dir.join(DELIVERED_FILE))
}

fn read_delivered_hwm(dir: &Path) -> Option<u64> {
    let buf = std::fs::read(dir.join(DELIVERED_FILE)).ok()?;
    if buf.len() != 12 {
        return None;
    }
    let value = u64::from_le_bytes(buf[0..8].try_into().ok()?);
    let crc = u32::from_le_bytes(buf[8..12].try_into().ok()?);
    (crc32fast::hash(&buf[0..8]) == crc).then_some(value)
}
