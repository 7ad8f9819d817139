//! A stream's tracking: the offsets consumers store on the server (StoreOffset, by
//! reference) and the last publishing id of each named publisher (deduplication), kept in
//! the stream's directory.
//!
//! Every change is appended at once to the journal `tracking.log` (one small write into
//! the page cache, no fsync), so a kill -9 loses none of them, as RabbitMQ keeps them in
//! the stream's own file. Upkeep (every 200 ms when something changed) and shutdown write
//! the whole state to `tracking.json` outside the model lock, atomically (a temporary
//! file, fsync, rename, directory fsync); the journal is set aside as `tracking.log.old`
//! when that snapshot is taken and removed once it is durable. Recovery reads the
//! snapshot, then replays `tracking.log.old` and `tracking.log`. After a power loss the
//! unsynced end of the journal may be missing: a consumer resumes a little earlier, a
//! named publisher's sequence is a little older (duplicates, never a loss).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const FILE: &str = "tracking.json";
/// Changes since the last snapshot, appended as they happen.
pub const JOURNAL: &str = "tracking.log";
/// The journal a snapshot in progress covers.
const JOURNAL_SET_ASIDE: &str = "tracking.log.old";

/// Journal entry kinds.
const ENTRY_OFFSET: u8 = 0;
const ENTRY_WRITER: u8 = 1;

/// Longest reference kept (the protocol's limit).
pub const MAX_REFERENCE: usize = 256;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Tracking {
    #[serde(default)]
    pub offsets: BTreeMap<String, u64>,
    #[serde(default)]
    pub writers: BTreeMap<String, u64>,
    #[serde(skip)]
    pub dirty: bool,
    /// The stream's directory (where the journal goes); none for a tracking not loaded
    /// from disk.
    #[serde(skip)]
    dir: Option<PathBuf>,
    #[serde(skip)]
    journal: Option<File>,
}

impl Tracking {
    /// Reads the stream's tracking file; a missing one is empty, an unreadable one is
    /// reported and empty (consumers then start where they ask to).
    pub fn load(dir: &Path) -> Tracking {
        let path = dir.join(FILE);
        let mut t = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::error!(file = %path.display(), "stream tracking unreadable: {e}");
                Tracking::default()
            }),
            Err(_) => Tracking::default(),
        };
        let mut replayed_any = false;
        for journal in [JOURNAL_SET_ASIDE, JOURNAL] {
            if let Ok(bytes) = std::fs::read(dir.join(journal)) {
                let replayed = t.replay(&bytes);
                if replayed < bytes.len() {
                    tracing::warn!(
                        file = %dir.join(journal).display(),
                        offset = replayed,
                        "stream tracking journal ends with an incomplete entry (ignored)"
                    );
                }
                replayed_any = true;
            }
        }
        if replayed_any {
            // Fold the journals into a snapshot now, so that at run time a set-aside
            // journal only ever exists while its snapshot is being written.
            let folded = serde_json::to_vec(&t)
                .map_err(io::Error::other)
                .and_then(|bytes| {
                    write(dir, &bytes)?;
                    std::fs::remove_file(dir.join(JOURNAL))
                });
            if let Err(e) = folded {
                tracing::error!(dir = %dir.display(), "stream tracking: {e}");
                t.dirty = true;
            }
        }
        t.dir = Some(dir.to_path_buf());
        t
    }

    pub fn store_offset(&mut self, reference: &str, offset: u64) {
        if reference.len() <= MAX_REFERENCE {
            self.offsets.insert(reference.to_owned(), offset);
            self.dirty = true;
            self.journal_entry(ENTRY_OFFSET, reference, offset);
        }
    }

    pub fn set_writer(&mut self, reference: &str, publishing_id: u64) {
        if reference.len() <= MAX_REFERENCE {
            let slot = self.writers.entry(reference.to_owned()).or_insert(0);
            *slot = (*slot).max(publishing_id);
            self.dirty = true;
            self.journal_entry(ENTRY_WRITER, reference, publishing_id);
        }
    }

    /// The file's new content, if anything changed since the last one was taken. The
    /// journal so far is set aside: the snapshot covers it.
    pub fn take_write(&mut self, dir: &Path) -> Option<(PathBuf, Vec<u8>)> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        self.journal = None;
        match std::fs::rename(dir.join(JOURNAL), dir.join(JOURNAL_SET_ASIDE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                tracing::error!(dir = %dir.display(), "stream tracking journal: {e}");
            }
            _ => {}
        }
        Some((dir.to_path_buf(), serde_json::to_vec(self).ok()?))
    }

    /// Appends a change to the journal (opened on first use). A failure is logged and the
    /// journal left off until the next snapshot; the snapshot still follows.
    fn journal_entry(&mut self, kind: u8, reference: &str, value: u64) {
        let Some(dir) = &self.dir else { return };
        if self.journal.is_none() {
            let path = dir.join(JOURNAL);
            match File::options().create(true).append(true).open(&path) {
                Ok(f) => self.journal = Some(f),
                Err(e) => {
                    tracing::error!(file = %path.display(), "stream tracking journal: {e}");
                    return;
                }
            }
        }
        let entry = encode_entry(kind, reference, value);
        if let Some(f) = self.journal.as_mut() {
            if let Err(e) = f.write_all(&entry) {
                tracing::error!(dir = %dir.display(), "stream tracking journal: {e}");
                self.journal = None;
            }
        }
    }

    /// Applies the journal entries in `bytes`; returns how many bytes were whole entries
    /// (replay stops at a torn or corrupt one).
    fn replay(&mut self, bytes: &[u8]) -> usize {
        let mut at = 0;
        while let Some((kind, reference, value, len)) = decode_entry(&bytes[at..]) {
            let reference = reference.to_owned();
            match kind {
                ENTRY_OFFSET => {
                    self.offsets.insert(reference, value);
                }
                _ => {
                    let slot = self.writers.entry(reference).or_insert(0);
                    *slot = (*slot).max(value);
                }
            }
            at += len;
        }
        at
    }
}

/// A journal entry: CRC-32 of the rest (4), kind (1), reference length (2), reference,
/// value (8); little endian.
fn encode_entry(kind: u8, reference: &str, value: u64) -> Vec<u8> {
    let mut e = Vec::with_capacity(15 + reference.len());
    e.extend_from_slice(&[0; 4]);
    e.push(kind);
    e.extend_from_slice(&(reference.len() as u16).to_le_bytes());
    e.extend_from_slice(reference.as_bytes());
    e.extend_from_slice(&value.to_le_bytes());
    let crc = crc32fast::hash(&e[4..]);
    e[..4].copy_from_slice(&crc.to_le_bytes());
    e
}

/// The first entry of `bytes`: (kind, reference, value, its length), or `None` if it is
/// incomplete or fails its check.
fn decode_entry(bytes: &[u8]) -> Option<(u8, &str, u64, usize)> {
    let crc = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    let kind = *bytes.get(4)?;
    let len = u16::from_le_bytes(bytes.get(5..7)?.try_into().ok()?) as usize;
    if len > MAX_REFERENCE || kind > ENTRY_WRITER {
        return None;
    }
    let end = 7 + len + 8;
    let body = bytes.get(4..end)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let reference = std::str::from_utf8(&bytes[7..7 + len]).ok()?;
    let value = u64::from_le_bytes(bytes[7 + len..end].try_into().ok()?);
    Some((kind, reference, value, end))
}

/// Replaces `dir/tracking.json` with `bytes`, durably. A stream deleted meanwhile (its
/// directory gone) is not an error.
pub fn write(dir: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = match std::fs::File::create(&tmp) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        r => r?,
    };
    f.write_all(bytes)?;
    f.sync_data()?;
    std::fs::rename(&tmp, dir.join(FILE))?;
    std::fs::File::open(dir)?.sync_all()?;
    // The snapshot is durable: the journal it covers can go.
    match std::fs::remove_file(dir.join(JOURNAL_SET_ASIDE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_without_a_snapshot_and_across_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tracking::load(dir.path());
        t.store_offset("reader", 6);
        t.set_writer("orders", 10);
        t.store_offset("reader", 7);
        // A kill -9 here: no snapshot was written, the journal has everything.
        let back = Tracking::load(dir.path());
        assert_eq!(back.offsets.get("reader"), Some(&7));
        assert_eq!(back.writers.get("orders"), Some(&10));
        // Loading folded the journal into a snapshot.
        assert!(dir.path().join(FILE).exists() && !dir.path().join(JOURNAL).exists());
    }

    #[test]
    fn a_kill_during_a_snapshot_or_after_it_loses_nothing() {
        for snapshot_written in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let mut t = Tracking::load(dir.path());
            t.store_offset("reader", 7);
            t.set_writer("orders", 10);
            // Upkeep takes the snapshot (the journal is set aside), a change follows.
            let (_, bytes) = t.take_write(dir.path()).unwrap();
            t.store_offset("reader", 9);
            if snapshot_written {
                write(dir.path(), &bytes).unwrap();
                assert!(!dir.path().join(JOURNAL_SET_ASIDE).exists());
            } else {
                assert!(dir.path().join(JOURNAL_SET_ASIDE).exists());
            }
            // kill -9
            let back = Tracking::load(dir.path());
            assert_eq!(back.offsets.get("reader"), Some(&9), "{snapshot_written}");
            assert_eq!(back.writers.get("orders"), Some(&10), "{snapshot_written}");
        }
    }

    #[test]
    fn a_torn_or_corrupt_journal_end_is_ignored() {
        let mut bytes = encode_entry(ENTRY_OFFSET, "a", 1);
        let second = encode_entry(ENTRY_WRITER, "w", 5);
        bytes.extend_from_slice(&second[..second.len() - 3]);
        let mut t = Tracking::default();
        assert_eq!(t.replay(&bytes), 4 + 1 + 2 + 1 + 8);
        assert_eq!(t.offsets.get("a"), Some(&1));
        assert!(t.writers.is_empty());
        let mut flipped = encode_entry(ENTRY_OFFSET, "a", 1);
        flipped[9] ^= 1;
        assert_eq!(Tracking::default().replay(&flipped), 0);
    }
}
