//! Moving a group's Raft log from the layout of earlier builds into a shared log.
//!
//! Before the shared log (shared_log.rs), each group kept two engine logs of its own in
//! its directory: `entries/` (one record per Raft entry) and `meta/` (vote, committed id,
//! purge point). A node started on such a data directory moves each group's live records,
//! in their order, into the shared log when the group opens, waits until they are durable,
//! and only then removes the old logs. A crash in between moves them again at the next
//! open: the copies already moved are superseded by the second ones (an entry at an index
//! already held replaces it, a vote the previous vote), so nothing is lost or doubled.

use std::io;
use std::path::Path;

use openraft::{Entry, RaftLogId};
use warren_storage::{Cursor, Log, LogConfig};

use super::codec;
use super::log_store::{KIND_COMMITTED, KIND_ENTRY, KIND_PURGED, KIND_VOTE};
use super::shared_log::{Found, Item, SharedLog};
use super::types::GroupTypes;

/// Moves `dir/entries` and `dir/meta`, if there, into `shared` as group `group`'s records;
/// returns them as `SharedLog::claim` would.
pub fn import<C: GroupTypes>(
    shared: &SharedLog,
    group: u64,
    dir: &Path,
    config: LogConfig,
) -> io::Result<Vec<Found>> {
    let (entries_dir, meta_dir) = (dir.join("entries"), dir.join("meta"));
    if !entries_dir.exists() && !meta_dir.exists() {
        return Ok(Vec::new());
    }
    let commit = shared.commit().clone();
    let mut found = Vec::new();
    let mut ticket = warren_storage::Ticket::DONE;
    for (old_dir, entries) in [(&meta_dir, false), (&entries_dir, true)] {
        if !old_dir.exists() {
            continue;
        }
        let (log, _) = Log::open(old_dir, config.clone(), commit.clone())?;
        let mut cursor = Cursor::at(0);
        while let Some(rec) = log.read_next(&mut cursor) {
            let (kind, index) = if entries {
                let entry: Entry<C> = codec::decode(&rec.payload)?;
                (KIND_ENTRY, entry.get_log_id().index)
            } else {
                match rec.kind() {
                    k @ (KIND_VOTE | KIND_COMMITTED | KIND_PURGED) => (k, 0),
                    other => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "{}: record {} of unknown kind {other}",
                                old_dir.display(),
                                rec.seq
                            ),
                        ))
                    }
                }
            };
            let item = Item {
                kind,
                index,
                payload: &rec.payload,
            };
            let (seq, t) = shared.append(group, &[item])?;
            ticket = ticket.max(t);
            found.push(Found { seq, kind, index });
        }
    }
    commit.wait(ticket)?;
    for old_dir in [&entries_dir, &meta_dir] {
        if old_dir.exists() {
            std::fs::remove_dir_all(old_dir)?;
        }
    }
    warren_storage::segment::sync_dir(dir)?;
    tracing::info!(
        dir = %dir.display(),
        records = found.len(),
        "cluster: raft log moved into the shared log"
    );
    Ok(found)
}
