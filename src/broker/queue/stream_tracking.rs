//! A stream's tracking: the offsets consumers store on the server (StoreOffset, by
//! reference) and the last publishing id of each named publisher (deduplication), kept in
//! `tracking.json` in the stream's directory.
//!
//! The file is written by upkeep (every 200 ms when something changed) and at shutdown,
//! outside the model lock, atomically (a temporary file, fsync, rename, directory fsync).
//! A kill -9 can lose what changed in the last upkeep interval: a consumer then resumes a
//! little earlier (it sees some messages again), a named publisher's sequence is a little
//! older (it may publish some again): duplicates, never a loss.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const FILE: &str = "tracking.json";

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
}

impl Tracking {
    /// Reads the stream's tracking file; a missing one is empty, an unreadable one is
    /// reported and empty (consumers then start where they ask to).
    pub fn load(dir: &Path) -> Tracking {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::error!(file = %path.display(), "stream tracking unreadable: {e}");
                Tracking::default()
            }),
            Err(_) => Tracking::default(),
        }
    }

    pub fn store_offset(&mut self, reference: &str, offset: u64) {
        if reference.len() <= MAX_REFERENCE {
            self.offsets.insert(reference.to_owned(), offset);
            self.dirty = true;
        }
    }

    pub fn set_writer(&mut self, reference: &str, publishing_id: u64) {
        if reference.len() <= MAX_REFERENCE {
            let slot = self.writers.entry(reference.to_owned()).or_insert(0);
            *slot = (*slot).max(publishing_id);
            self.dirty = true;
        }
    }

    /// The file's new content, if anything changed since the last one was taken.
    pub fn take_write(&mut self, dir: &Path) -> Option<(PathBuf, Vec<u8>)> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        Some((dir.to_path_buf(), serde_json::to_vec(self).ok()?))
    }
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
    std::fs::File::open(dir)?.sync_all()
}
