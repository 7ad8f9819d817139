//! The write of a batch of records with one pwritev (`Segment::append_many`).
//!
//! Headers and small payloads are copied into one contiguous buffer first: the kernel's
//! cost per iovec dwarfs a copy of a few hundred bytes (a batch of 16-byte stream messages
//! written as two iovecs each spent more time walking iovecs than in the rest of the
//! publish path). Payloads above `INLINE_PAYLOAD_MAX` are written from where they are, so
//! large messages are not copied once more.

use std::cell::RefCell;
use std::io;
use std::ops::Range;

use crate::file::SegmentFile;
use crate::record::{self, HEADER_LEN};
use crate::segment::BatchRecord;

/// Payloads up to this size are copied next to their headers.
const INLINE_PAYLOAD_MAX: usize = 512;

/// The buffer is kept between calls (no allocation per batch) unless a batch grew it
/// beyond this.
const BUFFER_KEEP: usize = 4 << 20;

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A piece of the write: a range of the buffer, or a caller's large payload.
enum Piece<'a> {
    Buffered(Range<usize>),
    Borrowed(&'a [u8]),
}

/// Writes `recs` (sequence numbers from `first_seq`) back to back at `at` in `file`,
/// followed by `marker` zero bytes (an end marker, or nothing when it does not fit).
/// The caller has checked that everything fits.
pub(crate) fn write_batch(
    file: &SegmentFile,
    at: usize,
    first_seq: u64,
    recs: &[BatchRecord<'_>],
    marker: usize,
) -> io::Result<()> {
    debug_assert!(marker <= HEADER_LEN);
    BUFFER.with(|cell| {
        let mut buf = cell.borrow_mut();
        buf.clear();
        let mut pieces: Vec<Piece<'_>> = Vec::new();
        let mut run_start = 0;
        for (k, r) in recs.iter().enumerate() {
            let flags = if r.persistent {
                record::FLAG_PERSISTENT
            } else {
                0
            } | (r.kind as u32) << record::KIND_SHIFT;
            let header = record::encode_header(first_seq + k as u64, r.timestamp, flags, r.parts);
            buf.extend_from_slice(&header);
            if r.parts.iter().map(|p| p.len()).sum::<usize>() <= INLINE_PAYLOAD_MAX {
                for p in r.parts {
                    buf.extend_from_slice(p);
                }
            } else {
                pieces.push(Piece::Buffered(run_start..buf.len()));
                pieces.extend(r.parts.iter().map(|p| Piece::Borrowed(p)));
                run_start = buf.len();
            }
        }
        let end = buf.len() + marker;
        buf.resize(end, 0);
        pieces.push(Piece::Buffered(run_start..buf.len()));
        let slices: Vec<&[u8]> = pieces
            .iter()
            .map(|p| match p {
                Piece::Buffered(range) => &buf[range.clone()],
                Piece::Borrowed(b) => *b,
            })
            .collect();
        let written = file.pwritev_slices(at, &slices);
        drop(slices);
        if buf.capacity() > BUFFER_KEEP {
            *buf = Vec::new();
        }
        written
    })
}

#[cfg(test)]
mod tests {
    use crate::log::{Log, LogConfig};
    use crate::segment::BatchRecord;
    use crate::sync::{FsyncPolicy, GroupCommit};

    /// Small payloads (gathered into the buffer), large ones (their own iovecs), records of
    /// several parts and empty ones, in one batch on the pwritev path: every record reads
    /// back whole, in order, with its CRC checked, also after reopening the log.
    #[test]
    fn mixed_sizes_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let commit = GroupCommit::start(FsyncPolicy::Always);
            let config = LogConfig {
                segment_size: 1 << 20,
                ..LogConfig::default()
            };
            Log::open(dir.path(), config, commit).unwrap().0
        };
        let bodies: Vec<Vec<u8>> = [16usize, 512, 513, 0, 70_000, 3, 100_000, 1]
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|b| (b * 7 + i) as u8).collect())
            .collect();
        let parts: Vec<Vec<&[u8]>> = bodies
            .iter()
            .map(|b| {
                let (x, y) = b.split_at(b.len() / 3);
                vec![x, y]
            })
            .collect();
        let recs: Vec<BatchRecord<'_>> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| BatchRecord {
                timestamp: i as u64,
                persistent: true,
                kind: (i % 3) as u8,
                parts: p,
            })
            .collect();
        {
            let mut log = open();
            // Twice: the second batch starts where the first one's end marker is.
            assert_eq!(log.append_batch(&recs).unwrap().0, 0);
            assert_eq!(log.append_batch(&recs).unwrap().0, bodies.len() as u64);
        }
        let log = open();
        for round in 0..2 {
            for (i, body) in bodies.iter().enumerate() {
                let seq = (round * bodies.len() + i) as u64;
                let rec = log.read(seq).expect("record present");
                assert_eq!(&rec.payload[..], &body[..], "record {seq}");
                assert_eq!(rec.kind(), (i % 3) as u8);
            }
        }
        assert!(log.read(2 * bodies.len() as u64).is_none());
    }
}
