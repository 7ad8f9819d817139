//! A group's current snapshot on disk, so that a restarted node starts from it: openraft
//! purges the log entries a snapshot covers, and without the snapshot a restart would
//! replay a log whose beginning is gone.
//!
//! One file, `snapshot`, in the group's directory, replaced whole: written to
//! `snapshot.tmp`, fsynced, renamed over the old one, and the directory fsynced, so a
//! crash leaves the old snapshot or the new one, never a mix. Layout:
//!
//! ```text
//! magic "WARRSNP1" | u32 meta length | meta (JSON) | u64 data length | data | u32 CRC-32
//! ```
//!
//! (little-endian; the CRC covers every byte before it). A file that does not check out is
//! an error naming the file and the offset where it stops making sense.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use openraft::{BasicNode, SnapshotMeta};

type Meta = SnapshotMeta<u64, BasicNode>;

const MAGIC: &[u8; 8] = b"WARRSNP1";
const NAME: &str = "snapshot";

/// Where a group keeps its snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    dir: PathBuf,
}

fn corrupt(path: &Path, offset: usize, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}: corrupt snapshot at offset {offset}: {what}",
            path.display()
        ),
    )
}

/// Reads `n` bytes at `*at`, or says the file ends too soon.
fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize, path: &Path) -> io::Result<&'a [u8]> {
    let end = at
        .checked_add(n)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| corrupt(path, *at, "the file ends inside a field"))?;
    let out = &bytes[*at..end];
    *at = end;
    Ok(out)
}

impl SnapshotFile {
    pub fn new(dir: &Path) -> SnapshotFile {
        SnapshotFile {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(NAME)
    }

    /// The snapshot's metadata and bytes, or `None` when the group has none yet.
    pub fn load(&self) -> io::Result<Option<(Meta, Vec<u8>)>> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        decode(&bytes, &path).map(Some)
    }

    /// Replaces the snapshot durably (see the module's comment).
    pub fn store(&self, meta: &Meta, data: &[u8]) -> io::Result<()> {
        let bytes = encode(meta, data)?;
        fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join("snapshot.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_data()?;
        drop(f);
        fs::rename(&tmp, self.path())?;
        File::open(&self.dir)?.sync_all()
    }
}

/// The file's bytes for a snapshot.
pub fn encode(meta: &Meta, data: &[u8]) -> io::Result<Vec<u8>> {
    let meta_json = serde_json::to_vec(meta).map_err(io::Error::other)?;
    let meta_len = u32::try_from(meta_json.len()).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(8 + 4 + meta_json.len() + 8 + data.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&meta_len.to_le_bytes());
    out.extend_from_slice(&meta_json);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// A snapshot file's metadata and data, checked (magic, lengths within the file, CRC).
pub fn decode(bytes: &[u8], path: &Path) -> io::Result<(Meta, Vec<u8>)> {
    let mut at = 0;
    if take(bytes, &mut at, 8, path)? != MAGIC {
        return Err(corrupt(path, 0, "not a Warren snapshot (bad magic)"));
    }
    let meta_len = u32::from_le_bytes(take(bytes, &mut at, 4, path)?.try_into().expect("4"));
    let meta_at = at;
    let meta_json = take(bytes, &mut at, meta_len as usize, path)?;
    let data_len = u64::from_le_bytes(take(bytes, &mut at, 8, path)?.try_into().expect("8"));
    let data_len =
        usize::try_from(data_len).map_err(|_| corrupt(path, at - 8, "data length out of range"))?;
    let data = take(bytes, &mut at, data_len, path)?;
    let crc_at = at;
    let crc = u32::from_le_bytes(take(bytes, &mut at, 4, path)?.try_into().expect("4"));
    if at != bytes.len() {
        return Err(corrupt(path, at, "bytes after the checksum"));
    }
    if crc32fast::hash(&bytes[..crc_at]) != crc {
        return Err(corrupt(path, crc_at, "checksum mismatch"));
    }
    let meta: Meta = serde_json::from_slice(meta_json)
        .map_err(|e| corrupt(path, meta_at, &format!("metadata: {e}")))?;
    Ok((meta, data.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId, StoredMembership};

    fn meta() -> Meta {
        SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 42)),
            last_membership: StoredMembership::default(),
            snapshot_id: "3-42-0".into(),
        }
    }

    #[test]
    fn round_trip_and_every_truncation_or_flip_is_refused() {
        let dir = std::env::temp_dir().join(format!("warren-snap-{}", std::process::id()));
        let file = SnapshotFile::new(&dir);
        assert!(file.load().unwrap().is_none());
        file.store(&meta(), b"{\"state\":1}").unwrap();
        let (m, data) = file.load().unwrap().unwrap();
        assert_eq!(m, meta());
        assert_eq!(data, b"{\"state\":1}");
        let bytes = fs::read(file.path()).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], &file.path()).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x10;
            let err = decode(&flipped, &file.path()).unwrap_err();
            assert!(err.to_string().contains("corrupt snapshot"), "{err}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
