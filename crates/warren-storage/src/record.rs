//! Record encoding: a fixed 32-byte header followed by an opaque payload.
//!
//! ```text
//! offset size field
//!  0      4   payload length (u32 LE)
//!  4      4   CRC32 (crc32fast / IEEE) over bytes 8..32 of the header and the payload
//!  8      8   sequence number (u64 LE)
//! 16      8   timestamp, milliseconds since the Unix epoch (u64 LE)
//! 24      4   flags (u32 LE), bit 0 = persistent, bits 8..16 = the record's kind (what its
//!             payload is, for the engine's user; 0 unless given)
//! 28      4   reserved, zero
//! 32      n   payload
//! ```
//!
//! A header whose length and CRC are both zero marks the end of written data: segment files
//! are preallocated and zero-filled, so the first unwritten byte reads as that marker.

/// Size of the fixed record header in bytes.
pub const HEADER_LEN: usize = 32;

/// The record survives a broker restart. Records without it are dropped at recovery.
pub const FLAG_PERSISTENT: u32 = 1;

/// Where a record's kind sits in its flags (bits 8..16).
pub const KIND_SHIFT: u32 = 8;

/// The largest payload a record may carry. Bounds every allocation and scan driven by a
/// length read from disk.
pub const MAX_PAYLOAD: usize = 1 << 30;

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub len: u32,
    pub crc: u32,
    pub seq: u64,
    pub timestamp: u64,
    pub flags: u32,
}

impl RecordHeader {
    pub fn is_persistent(&self) -> bool {
        self.flags & FLAG_PERSISTENT != 0
    }

    /// Total bytes the record occupies on disk.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.len as usize
    }
}

/// Why a record could not be decoded at some position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// Zero length and zero CRC: the end of written data, not corruption.
    End,
    /// Fewer than `HEADER_LEN` bytes remain, or the declared length runs past the buffer.
    Truncated,
    /// The declared length exceeds `MAX_PAYLOAD`.
    BadLength,
    /// The stored CRC does not match the bytes.
    BadCrc,
}

/// Bytes needed to store a record with a payload of `payload_len` bytes.
pub fn encoded_len(payload_len: usize) -> usize {
    HEADER_LEN + payload_len
}

/// Writes a record into `dst`, which must be exactly `encoded_len(payload.len())` bytes.
pub fn encode(dst: &mut [u8], seq: u64, timestamp: u64, flags: u32, payload: &[u8]) {
    encode_parts(dst, seq, timestamp, flags, &[payload]);
}

/// Writes a record whose payload is the concatenation of `parts` (gathered straight into
/// `dst`, no intermediate buffer). `dst` must be exactly `encoded_len(total)` bytes.
pub fn encode_parts(dst: &mut [u8], seq: u64, timestamp: u64, flags: u32, parts: &[&[u8]]) {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    assert_eq!(dst.len(), encoded_len(total));
    assert!(total <= MAX_PAYLOAD);
    let (header, body) = dst.split_at_mut(HEADER_LEN);
    header[0..4].copy_from_slice(&(total as u32).to_le_bytes());
    header[8..16].copy_from_slice(&seq.to_le_bytes());
    header[16..24].copy_from_slice(&timestamp.to_le_bytes());
    header[24..28].copy_from_slice(&flags.to_le_bytes());
    header[28..32].copy_from_slice(&0u32.to_le_bytes());
    let mut at = 0;
    for part in parts {
        body[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    let crc = checksum(&header[8..HEADER_LEN], body);
    header[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Encodes just the 32-byte header for a payload made of `parts` (for writes that gather
/// the header and the parts with one `pwritev`).
pub fn encode_header(seq: u64, timestamp: u64, flags: u32, parts: &[&[u8]]) -> [u8; HEADER_LEN] {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    assert!(total <= MAX_PAYLOAD);
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&(total as u32).to_le_bytes());
    header[8..16].copy_from_slice(&seq.to_le_bytes());
    header[16..24].copy_from_slice(&timestamp.to_le_bytes());
    header[24..28].copy_from_slice(&flags.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[8..HEADER_LEN]);
    for p in parts {
        hasher.update(p);
    }
    header[4..8].copy_from_slice(&hasher.finalize().to_le_bytes());
    header
}

fn checksum(header_tail: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header_tail);
    hasher.update(payload);
    hasher.finalize()
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads the header at the start of `buf` without checking the CRC.
pub fn peek_header(buf: &[u8]) -> Result<RecordHeader, RecordError> {
    if buf.len() < HEADER_LEN {
        // No record starts where fewer than HEADER_LEN bytes remain (appends only start
        // where the whole record fits), so whatever is there — zeros, or stale bytes of a
        // recycled file — is past the end of the data.
        return Err(RecordError::End);
    }
    let header = RecordHeader {
        len: u32_at(buf, 0),
        crc: u32_at(buf, 4),
        seq: u64_at(buf, 8),
        timestamp: u64_at(buf, 16),
        flags: u32_at(buf, 24),
    };
    if header.len == 0 && header.crc == 0 {
        return Err(RecordError::End);
    }
    if header.len as usize > MAX_PAYLOAD {
        return Err(RecordError::BadLength);
    }
    if buf.len() < header.total_len() {
        return Err(RecordError::Truncated);
    }
    Ok(header)
}

/// Decodes and verifies the record at the start of `buf`. On success returns the header
/// and the payload's range within `buf`.
pub fn decode(buf: &[u8]) -> Result<(RecordHeader, std::ops::Range<usize>), RecordError> {
    let header = peek_header(buf)?;
    let payload = HEADER_LEN..header.total_len();
    if checksum(&buf[8..HEADER_LEN], &buf[payload.clone()]) != header.crc {
        return Err(RecordError::BadCrc);
    }
    Ok((header, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let payload = b"hello warren";
        let mut buf = vec![0u8; encoded_len(payload.len())];
        encode(&mut buf, 42, 1234, FLAG_PERSISTENT, payload);
        let (h, range) = decode(&buf).unwrap();
        assert_eq!(h.seq, 42);
        assert_eq!(h.timestamp, 1234);
        assert!(h.is_persistent());
        assert_eq!(&buf[range], payload);
    }

    #[test]
    fn zeroes_are_the_end_marker() {
        assert_eq!(decode(&[0u8; 64]), Err(RecordError::End));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let payload = b"0123456789";
        let mut buf = vec![0u8; encoded_len(payload.len())];
        encode(&mut buf, 7, 99, 0, payload);
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x5a;
            assert!(decode(&bad).is_err(), "flip at {i} went unnoticed");
        }
    }
}
