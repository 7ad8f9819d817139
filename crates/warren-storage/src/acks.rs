//! The ack index: one bit per sequence number of a segment, in memory, and an append-only
//! ack file per segment that persists acks in checksummed batches.
//!
//! Ack file layout (`<base>.ack`, next to `<base>.seg`), a sequence of batches:
//!
//! ```text
//! offset size field
//!  0      4   count of sequence numbers in the batch (u32 LE), 1..=MAX_BATCH
//!  4      4   CRC32 over the count bytes and the sequence numbers
//!  8    8*n   sequence numbers (u64 LE)
//! ```
//!
//! A batch that is cut short or fails its CRC ends the file (a torn append after a crash):
//! the acks in it are lost, so those messages come back as redeliveries, never as losses.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

/// Most sequence numbers in one ack batch; bounds the allocation when reading a batch back.
pub const MAX_BATCH: usize = 1 << 16;

/// One bit per sequence number in `[base, base + len)`: set = acked or absent.
///
/// Invariant: `live` equals the number of present, unacked records; a segment whose `live`
/// reaches zero holds nothing a consumer can still receive.
#[derive(Debug, Default, Clone)]
pub struct AckBitmap {
    words: Vec<u64>,
    len: u64,
}

impl AckBitmap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Extends the covered range to `len` bits; new bits are clear (unacked).
    pub fn grow_to(&mut self, len: u64) {
        if len > self.len {
            self.len = len;
            let words = len.div_ceil(64) as usize;
            self.words.resize(words, 0);
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets bit `i`; returns true if it was clear. Out-of-range bits are ignored.
    pub fn set(&mut self, i: u64) -> bool {
        if i >= self.len {
            return false;
        }
        let word = &mut self.words[(i / 64) as usize];
        let mask = 1u64 << (i % 64);
        let was_clear = *word & mask == 0;
        *word |= mask;
        was_clear
    }

    /// True if bit `i` is set, or `i` is outside the covered range.
    pub fn get(&self, i: u64) -> bool {
        if i >= self.len {
            return true;
        }
        self.words[(i / 64) as usize] & (1u64 << (i % 64)) != 0
    }

    /// Heap bytes used, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.words.capacity() * 8
    }
}

/// Appends ack batches to a segment's ack file.
pub fn append_batch(path: &Path, seqs: &[u64]) -> io::Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut buf = Vec::with_capacity(8 + 8 * seqs.len().min(MAX_BATCH));
    for chunk in seqs.chunks(MAX_BATCH) {
        buf.clear();
        buf.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        buf.extend_from_slice(&[0u8; 4]);
        for seq in chunk {
            buf.extend_from_slice(&seq.to_le_bytes());
        }
        let crc = batch_crc(&buf[0..4], &buf[8..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        file.write_all(&buf)?;
    }
    Ok(())
}

fn batch_crc(count: &[u8], seqs: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(count);
    h.update(seqs);
    h.finalize()
}

/// What reading an ack file found.
#[derive(Debug, Default)]
pub struct AckFileScan {
    /// Every sequence number in a valid batch.
    pub seqs: Vec<u64>,
    /// Offset where the first bad or torn batch starts, if any.
    pub torn_at: Option<u64>,
    pub file_len: u64,
}

/// Parses ack-file bytes. Never panics; stops at the first bad batch.
pub fn parse(bytes: &[u8]) -> AckFileScan {
    let mut scan = AckFileScan {
        file_len: bytes.len() as u64,
        ..Default::default()
    };
    let mut pos = 0usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < 8 {
            scan.torn_at = Some(pos as u64);
            break;
        }
        let count = u32::from_le_bytes(rest[0..4].try_into().expect("4")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4"));
        if count == 0 || count > MAX_BATCH || rest.len() < 8 + 8 * count {
            scan.torn_at = Some(pos as u64);
            break;
        }
        let body = &rest[8..8 + 8 * count];
        if batch_crc(&rest[0..4], body) != crc {
            scan.torn_at = Some(pos as u64);
            break;
        }
        scan.seqs.extend(
            body.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8"))),
        );
        pos += 8 + 8 * count;
    }
    scan
}

/// Reads a segment's ack file; a missing file means no acks.
pub fn read_file(path: &Path) -> io::Result<AckFileScan> {
    match File::open(path) {
        Ok(mut f) => {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)?;
            Ok(parse(&bytes))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AckFileScan::default()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_counts_transitions() {
        let mut b = AckBitmap::new();
        b.grow_to(130);
        assert!(b.set(129));
        assert!(!b.set(129));
        assert!(b.get(129));
        assert!(!b.get(0));
        assert!(b.get(500), "outside the range counts as absent");
        assert!(!b.set(500));
    }

    #[test]
    fn torn_batches_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ack");
        append_batch(&path, &[1, 2, 3]).unwrap();
        append_batch(&path, &[9]).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(parse(&bytes).seqs, vec![1, 2, 3, 9]);
        bytes.truncate(bytes.len() - 1);
        let scan = parse(&bytes);
        assert_eq!(scan.seqs, vec![1, 2, 3]);
        assert_eq!(scan.torn_at, Some(32));
    }
}
