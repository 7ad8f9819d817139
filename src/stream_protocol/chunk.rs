//! Osiris chunks (the content of a Deliver frame) and osiris entries (also the messages of
//! a Publish frame), as osiris 1.3.1 (RabbitMQ 3.10.8) writes them.
//!
//! Chunk header, 48 bytes, big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | magic (high 4 bits, 5) and version (low 4 bits, 0): `0x50` |
//! | 1 | chunk type: 0 user, 1 tracking delta, 2 tracking snapshot |
//! | 2 | number of entries |
//! | 4 | number of records (a sub-batch entry counts its records) |
//! | 8 | timestamp, ms since the epoch (signed) |
//! | 8 | epoch |
//! | 8 | chunk id = offset of the first record |
//! | 4 | CRC-32 (zlib's, `erlang:crc32`) of the entry data only |
//! | 4 | data length |
//! | 4 | trailer length |
//! | 4 | reserved (0) |
//!
//! then the entries, then the trailer (writer-sequence tracking). There is no Bloom filter
//! field: that came with osiris 1.7's filtering, after 3.10. A Deliver carries the header
//! and the entry data only: osiris' `send_file` for an offset reader with the default
//! `user_data` chunk selector sends `48 + data length` bytes, so the trailer is left out
//! even when the header's trailer length is not 0.
//!
//! Entries: a simple entry is a 0 bit and a 31-bit length, then the data. A sub-batch entry
//! is a 1 bit, 3 bits of compression type (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd),
//! 4 reserved bits, uint16 record count, uint32 uncompressed length, uint32 length, then
//! the data; uncompressed, the data is a sequence of simple entries.

use super::wire::{Reader, WireError};
use bytes::{BufMut, Bytes, BytesMut};

pub const CHUNK_HEADER_SIZE: usize = 48;
/// Magic 5 in the high nibble, chunk format version 0 in the low one.
pub const CHUNK_MAGIC_VERSION: u8 = 0x50;
pub const CHUNK_TYPE_USER: u8 = 0;
pub const CHUNK_TYPE_TRACKING_DELTA: u8 = 1;
pub const CHUNK_TYPE_TRACKING_SNAPSHOT: u8 = 2;
pub const COMPRESSION_NONE: u8 = 0;

/// One osiris entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// One record (an AMQP 1.0 encoded message, for the stream plugin).
    Simple(Bytes),
    /// Several records published as one entry; the broker stores it as it is, without
    /// decompressing.
    SubBatch {
        compression: u8,
        record_count: u16,
        uncompressed_len: u32,
        data: Bytes,
    },
}

impl Entry {
    /// An uncompressed sub-batch of the given records.
    pub fn sub_batch(records: &[Bytes]) -> Entry {
        let mut data = BytesMut::new();
        for r in records {
            Entry::Simple(r.clone()).encode(&mut data);
        }
        Entry::SubBatch {
            compression: COMPRESSION_NONE,
            record_count: records.len().min(u16::MAX as usize) as u16,
            uncompressed_len: data.len() as u32,
            data: data.freeze(),
        }
    }

    /// The number of records (offsets) the entry takes.
    pub fn record_count(&self) -> u32 {
        match self {
            Entry::Simple(_) => 1,
            Entry::SubBatch { record_count, .. } => *record_count as u32,
        }
    }

    pub fn encoded_len(&self) -> usize {
        match self {
            Entry::Simple(d) => 4 + d.len(),
            Entry::SubBatch { data, .. } => 11 + data.len(),
        }
    }

    /// Writes the entry. Simple entries are limited to 2^31-1 bytes by the format; a frame
    /// max far below that keeps them from getting near.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Entry::Simple(d) => {
                out.put_u32(d.len() as u32 & 0x7fff_ffff);
                out.put_slice(d);
            }
            Entry::SubBatch {
                compression,
                record_count,
                uncompressed_len,
                data,
            } => {
                out.put_u8(0x80 | ((compression & 0x07) << 4));
                out.put_u16(*record_count);
                out.put_u32(*uncompressed_len);
                out.put_u32(data.len() as u32);
                out.put_slice(data);
            }
        }
    }

    pub fn read(r: &mut Reader) -> Result<Entry, WireError> {
        let first = r.u32()?;
        if first & 0x8000_0000 == 0 {
            return Ok(Entry::Simple(r.take(first as usize)?));
        }
        let compression = ((first >> 28) & 0x07) as u8;
        let record_count = ((first >> 8) & 0xffff) as u16;
        // The low byte of `first` is the top byte of the uncompressed length.
        let low = r.take(3)?;
        let uncompressed_len =
            ((first & 0xff) << 24) | u32::from_be_bytes([0, low[0], low[1], low[2]]);
        let len = r.u32()?;
        let data = r.take(len as usize)?;
        Ok(Entry::SubBatch {
            compression,
            record_count,
            uncompressed_len,
            data,
        })
    }

    /// The records of an entry: itself for a simple entry, the inner simple entries of an
    /// uncompressed sub-batch. `None` for a compressed sub-batch or inner data that is
    /// not a sequence of simple entries.
    pub fn records(&self) -> Option<Vec<Bytes>> {
        match self {
            Entry::Simple(d) => Some(vec![d.clone()]),
            Entry::SubBatch {
                compression: COMPRESSION_NONE,
                data,
                ..
            } => {
                let mut r = Reader::new(data.clone());
                let mut out = Vec::new();
                while !r.is_empty() {
                    match Entry::read(&mut r) {
                        Ok(Entry::Simple(d)) => out.push(d),
                        _ => return None,
                    }
                }
                Some(out)
            }
            Entry::SubBatch { .. } => None,
        }
    }
}

/// The fixed header of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub magic_version: u8,
    pub chunk_type: u8,
    pub num_entries: u16,
    pub num_records: u32,
    pub timestamp: i64,
    pub epoch: u64,
    pub chunk_id: u64,
    pub crc: u32,
    pub data_len: u32,
    pub trailer_len: u32,
    pub reserved: u32,
}

impl ChunkHeader {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.magic_version);
        out.put_u8(self.chunk_type);
        out.put_u16(self.num_entries);
        out.put_u32(self.num_records);
        out.put_i64(self.timestamp);
        out.put_u64(self.epoch);
        out.put_u64(self.chunk_id);
        out.put_u32(self.crc);
        out.put_u32(self.data_len);
        out.put_u32(self.trailer_len);
        out.put_u32(self.reserved);
    }

    pub fn read(r: &mut Reader) -> Result<ChunkHeader, WireError> {
        Ok(ChunkHeader {
            magic_version: r.u8()?,
            chunk_type: r.u8()?,
            num_entries: r.u16()?,
            num_records: r.u32()?,
            timestamp: r.i64()?,
            epoch: r.u64()?,
            chunk_id: r.u64()?,
            crc: r.u32()?,
            data_len: r.u32()?,
            trailer_len: r.u32()?,
            reserved: r.u32()?,
        })
    }
}

/// A chunk as parsed from a Deliver frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub header: ChunkHeader,
    pub entries: Vec<Entry>,
    /// The trailer bytes when present (a Deliver leaves them out: empty).
    pub trailer: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    Wire(WireError),
    BadMagic(u8),
    CrcMismatch {
        header: u32,
        computed: u32,
    },
    /// The entries do not match the header's counts or length.
    Inconsistent(&'static str),
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkError::Wire(e) => write!(f, "chunk: {e}"),
            ChunkError::BadMagic(b) => write!(f, "chunk: bad magic/version byte {b:#04x}"),
            ChunkError::CrcMismatch { header, computed } => {
                write!(
                    f,
                    "chunk: CRC {header:#010x} in header, {computed:#010x} computed"
                )
            }
            ChunkError::Inconsistent(what) => write!(f, "chunk: {what}"),
        }
    }
}

impl std::error::Error for ChunkError {}

impl From<WireError> for ChunkError {
    fn from(e: WireError) -> Self {
        ChunkError::Wire(e)
    }
}

impl Chunk {
    /// Parses a chunk: the header, `data_len` bytes of entries (CRC checked), and the
    /// trailer if the bytes are there (Deliver frames have none).
    pub fn parse(bytes: Bytes) -> Result<Chunk, ChunkError> {
        let mut r = Reader::new(bytes);
        let header = ChunkHeader::read(&mut r)?;
        if header.magic_version != CHUNK_MAGIC_VERSION {
            return Err(ChunkError::BadMagic(header.magic_version));
        }
        let data = r.take(header.data_len as usize)?;
        let computed = crc32fast::hash(&data);
        if computed != header.crc {
            return Err(ChunkError::CrcMismatch {
                header: header.crc,
                computed,
            });
        }
        let trailer = if r.is_empty() {
            Bytes::new()
        } else {
            r.take(header.trailer_len as usize)?
        };
        r.finish()?;
        // Each entry takes at least 4 bytes; the count is bounded by the data in hand.
        let mut entries = Vec::with_capacity((header.num_entries as usize).min(data.len() / 4));
        let mut records = 0u64;
        let mut er = Reader::new(data);
        while !er.is_empty() {
            let e = Entry::read(&mut er)?;
            records += e.record_count() as u64;
            entries.push(e);
        }
        if entries.len() != header.num_entries as usize {
            return Err(ChunkError::Inconsistent(
                "entry count differs from the header",
            ));
        }
        if records != header.num_records as u64 {
            return Err(ChunkError::Inconsistent(
                "record count differs from the header",
            ));
        }
        Ok(Chunk {
            header,
            entries,
            trailer,
        })
    }

    /// Each record with its offset (sub-batches expanded when uncompressed; a compressed
    /// one yields its first offset and `None`).
    pub fn records(&self) -> Vec<(u64, Option<Bytes>)> {
        let mut out = Vec::new();
        let mut offset = self.header.chunk_id;
        for e in &self.entries {
            match e.records() {
                Some(rs) => {
                    for r in rs {
                        out.push((offset, Some(r)));
                        offset += 1;
                    }
                }
                None => {
                    out.push((offset, None));
                    offset += e.record_count() as u64;
                }
            }
        }
        out
    }
}

/// Builds a user chunk the way osiris writes one: header, entries in order, CRC over the
/// entry data. `trailer` is appended and counted in the header (pass empty for what a
/// Deliver carries; osiris' trailer holds writer sequences, which a Deliver never sends).
pub fn encode_chunk(
    chunk_type: u8,
    timestamp: i64,
    epoch: u64,
    chunk_id: u64,
    entries: &[Entry],
    trailer: &[u8],
) -> BytesMut {
    let data_len: usize = entries.iter().map(Entry::encoded_len).sum();
    let mut out = BytesMut::with_capacity(CHUNK_HEADER_SIZE + data_len + trailer.len());
    out.resize(CHUNK_HEADER_SIZE, 0);
    let mut records = 0u32;
    for e in entries {
        e.encode(&mut out);
        records = records.saturating_add(e.record_count());
    }
    let crc = crc32fast::hash(&out[CHUNK_HEADER_SIZE..]);
    let header = ChunkHeader {
        magic_version: CHUNK_MAGIC_VERSION,
        chunk_type,
        num_entries: entries.len().min(u16::MAX as usize) as u16,
        num_records: records,
        timestamp,
        epoch,
        chunk_id,
        crc,
        data_len: data_len as u32,
        trailer_len: trailer.len() as u32,
        reserved: 0,
    };
    let mut h = BytesMut::with_capacity(CHUNK_HEADER_SIZE);
    header.encode(&mut h);
    out[..CHUNK_HEADER_SIZE].copy_from_slice(&h);
    out.put_slice(trailer);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    #[test]
    fn chunk_round_trip_with_sub_batch() {
        let entries = vec![
            Entry::Simple(b(b"one")),
            Entry::sub_batch(&[b(b"two"), b(b"three")]),
            Entry::Simple(b(b"")),
        ];
        let c = encode_chunk(CHUNK_TYPE_USER, 1_700_000_000_000, 1, 10, &entries, &[]);
        assert_eq!(c[0], 0x50);
        let parsed = Chunk::parse(c.freeze()).unwrap();
        assert_eq!(parsed.header.num_entries, 3);
        assert_eq!(parsed.header.num_records, 4);
        assert_eq!(parsed.entries, entries);
        let recs = parsed.records();
        assert_eq!(
            recs,
            vec![
                (10, Some(b(b"one"))),
                (11, Some(b(b"two"))),
                (12, Some(b(b"three"))),
                (13, Some(b(b""))),
            ]
        );
    }

    #[test]
    fn sub_batch_header_bits() {
        let e = Entry::SubBatch {
            compression: 3,
            record_count: 0x0102,
            uncompressed_len: 0xA0B0C0D0,
            data: b(b"xy"),
        };
        let mut out = BytesMut::new();
        e.encode(&mut out);
        assert_eq!(
            &out[..11],
            &[0xb0, 0x01, 0x02, 0xA0, 0xB0, 0xC0, 0xD0, 0, 0, 0, 2]
        );
        let mut r = Reader::new(out.freeze());
        assert_eq!(Entry::read(&mut r).unwrap(), e);
    }

    #[test]
    fn crc_and_counts_checked() {
        let c = encode_chunk(0, 0, 0, 0, &[Entry::Simple(b(b"abc"))], &[]);
        let mut bad = c.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            Chunk::parse(bad.freeze()),
            Err(ChunkError::CrcMismatch { .. })
        ));
        let mut bad = c.clone();
        bad[3] = 2; // two entries claimed
        assert!(matches!(
            Chunk::parse(bad.freeze()),
            Err(ChunkError::Inconsistent(_))
        ));
    }

    #[test]
    fn trailer_counted_but_optional() {
        let c = encode_chunk(0, 5, 2, 7, &[Entry::Simple(b(b"m"))], b"trailer");
        let parsed = Chunk::parse(c.clone().freeze()).unwrap();
        assert_eq!(&parsed.trailer[..], b"trailer");
        // What a Deliver carries: the same header, no trailer bytes.
        let cut = c.len() - 7;
        let parsed = Chunk::parse(c.freeze().slice(..cut)).unwrap();
        assert!(parsed.trailer.is_empty());
        assert_eq!(parsed.header.trailer_len, 7);
    }

    #[test]
    fn truncated_chunks_are_errors() {
        let c = encode_chunk(0, 0, 0, 0, &[Entry::sub_batch(&[b(b"a")])], &[]).freeze();
        for cut in 0..c.len() {
            assert!(Chunk::parse(c.slice(..cut)).is_err(), "cut {cut}");
        }
    }
}
