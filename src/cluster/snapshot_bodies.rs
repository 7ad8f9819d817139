//! A quorum queue's snapshot without its messages: the state machine of a group opened on
//! its log (`QueueMachine::open_on_log`) holds each message's id and returns, not its
//! body, and so do the snapshots it keeps on disk. The bodies stay where they already
//! are, in the log entries that enqueued them: the log store keeps the entries a purge
//! passes while the current snapshot holds messages of theirs (`LogStore::retain`), so a
//! snapshot copies no message into a new file and a deep queue costs no memory for its
//! bodies.
//!
//! Only a snapshot sent to a member that fell behind the leader's purged log carries the
//! bodies (read here from the log when it is sent); the member writes them into its own
//! log as records of their own (`KIND_BODIES`, one per enqueuing entry, durable before the
//! snapshot is), and keeps them as the leader keeps its entries. The broker's copy of the
//! queue, rebuilt from the group when it opens, is given the bodies read here.

use std::collections::BTreeSet;
use std::io;

use bytes::Bytes;
use openraft::{Entry, EntryPayload};
use serde::{Deserialize, Serialize};

use super::codec;
use super::log_store::{LogStore, KIND_BODIES};
use super::types::{entry_of, message_id, QueueCommand, QueueRaft, MAX_BATCH};

/// Where a queue machine's bodies live: its group's log.
#[derive(Clone)]
pub struct SnapshotBodies {
    store: LogStore<QueueRaft>,
}

/// A `KIND_BODIES` record: the bodies of the messages one entry enqueued that a snapshot
/// held (some of the entry's may be gone).
#[derive(Default, Serialize, Deserialize)]
struct KeptBodies {
    ids: Vec<u64>,
    #[serde(with = "super::types::base64_list")]
    bodies: Vec<Bytes>,
}

impl SnapshotBodies {
    pub fn new(store: LogStore<QueueRaft>) -> SnapshotBodies {
        SnapshotBodies { store }
    }

    /// The bodies of messages `ids` (in increasing order), read from the log. An id whose
    /// body the log does not have is left out: the caller says what that means.
    pub async fn read(&self, ids: &[u64]) -> io::Result<Vec<(u64, Bytes)>> {
        debug_assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order");
        let mut indexes: Vec<u64> = ids.iter().map(|&id| entry_of(id).0).collect();
        indexes.dedup();
        let mut found = Vec::with_capacity(ids.len());
        let mut wanted = ids.iter().copied().peekable();
        // A step of entries at a time, so what is read and decoded at once stays bounded
        // by the step, not the queue.
        for step in indexes.chunks(1024) {
            for (index, kind, payload) in self.store.read_for_bodies(step).await? {
                let bodies = decode_bodies(index, kind, &payload)?;
                for (id, body) in bodies {
                    while wanted.next_if(|&w| w < id).is_some() {}
                    if wanted.next_if_eq(&id).is_some() {
                        found.push((id, body));
                    }
                }
            }
        }
        Ok(found)
    }

    /// Writes bodies a snapshot brought (`bodies`: id and body) into the log, one record
    /// per enqueuing entry, and waits until they are durable. Each entry of the messages
    /// `held` gets a record, empty if the snapshot brought none of its bodies: a body
    /// the leader could not send is then missing here, never read from an entry this
    /// log holds at that index (one the leader may not have committed).
    pub async fn keep(&self, mut bodies: Vec<(u64, Bytes)>, held: &[u64]) -> io::Result<()> {
        bodies.sort_unstable_by_key(|b| b.0);
        let mut by_entry: std::collections::BTreeMap<u64, KeptBodies> = entries_of(held)
            .into_iter()
            .map(|index| (index, KeptBodies::default()))
            .collect();
        for (id, body) in bodies {
            let record = by_entry.entry(entry_of(id).0).or_default();
            record.ids.push(id);
            record.bodies.push(body);
        }
        let records = by_entry
            .into_iter()
            .map(|(index, record)| Ok((index, codec::encode(&record)?)))
            .collect::<io::Result<Vec<_>>>()?;
        self.store.keep_bodies(records).await
    }

    /// Where the machine reports its durable snapshots to the group's log store.
    pub fn snapshot_reports(&self) -> super::log_store::SnapshotReports {
        self.store.snapshot_reports()
    }

    /// The current snapshot holds messages `ids`: the log keeps the bodies of those, and
    /// lets go of the others it kept for earlier snapshots.
    pub async fn retain(&self, ids: &[u64]) -> io::Result<()> {
        self.store.retain(entries_of(ids)).await
    }

    /// Keeps the bodies of messages `ids` in the log until `unpin`, whatever snapshots are
    /// taken meanwhile: for reading them a step at a time from a state that later
    /// snapshots pass.
    pub async fn pin(&self, ids: &[u64]) -> Pinned {
        let entries = entries_of(ids);
        self.store.pin(&entries).await;
        Pinned { entries }
    }

    pub async fn unpin(&self, pinned: Pinned) -> io::Result<()> {
        self.store.unpin(&pinned.entries).await
    }
}

/// Bodies kept by `SnapshotBodies::pin` (given back with `unpin`).
#[derive(Debug)]
pub struct Pinned {
    entries: BTreeSet<u64>,
}

/// `ids` (in increasing order) in steps of at least `size` messages, each ending where an
/// entry's messages end: a step reads and decodes its entries, and no entry twice.
pub fn steps(ids: &[u64], size: usize) -> impl Iterator<Item = &[u64]> {
    let mut rest = ids;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = size.clamp(1, rest.len());
        let last = entry_of(rest[end - 1]).0;
        end += rest[end..].partition_point(|&id| entry_of(id).0 == last);
        let (step, tail) = rest.split_at(end);
        rest = tail;
        Some(step)
    })
}

/// The entries that enqueued messages `ids`.
fn entries_of(ids: &[u64]) -> BTreeSet<u64> {
    ids.iter().map(|&id| entry_of(id).0).collect()
}

/// The (id, body) pairs a record at `index` holds: a `KIND_BODIES` record's, or the
/// messages a log entry enqueued.
fn decode_bodies(index: u64, kind: u8, payload: &[u8]) -> io::Result<Vec<(u64, Bytes)>> {
    if kind == KIND_BODIES {
        let kept: KeptBodies = codec::decode(payload)?;
        if kept.ids.len() != kept.bodies.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bodies record at index {index}: ids and bodies differ in number"),
            ));
        }
        return Ok(kept.ids.into_iter().zip(kept.bodies).collect());
    }
    let entry: Entry<QueueRaft> = codec::decode(payload)?;
    let EntryPayload::Normal(cmd) = entry.payload else {
        return Ok(Vec::new());
    };
    let messages = match cmd {
        QueueCommand::Enqueue { message } => vec![message],
        QueueCommand::EnqueueBatch { messages, .. } | QueueCommand::Round { messages, .. } => {
            messages
        }
        _ => Vec::new(),
    };
    if messages.len() > MAX_BATCH {
        return Ok(Vec::new()); // Refused whole when applied: the queue holds none of them.
    }
    Ok(messages
        .into_iter()
        .enumerate()
        .map(|(k, body)| (message_id(index, k), body))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_end_where_an_entry_ends() {
        let ids: Vec<u64> = (1..=5u64)
            .flat_map(|i| (0..3).map(move |k| message_id(i, k)))
            .collect();
        let got: Vec<&[u64]> = steps(&ids, 4).collect();
        assert_eq!(got.concat(), ids);
        assert_eq!(got.iter().map(|s| s.len()).collect::<Vec<_>>(), [6, 6, 3]);
        for pair in got.windows(2) {
            let (end, next) = (*pair[0].last().unwrap(), pair[1][0]);
            assert_ne!(
                entry_of(end).0,
                entry_of(next).0,
                "an entry split over two steps"
            );
        }
        assert_eq!(steps(&[], 4).count(), 0);
    }
}
