//! This node's metadata writes on their way to the group and not yet applied back here,
//! by what they are about (`subject`: an exchange, a binding, a quorum queue's deletion).
//!
//! While a change of this node's own to something is on its way, entries about the same
//! thing are left out here (`OwnChanges::applies`): the node already has its own later
//! change. While a deletion of a quorum queue of its own is, no group of that name opens
//! here (`Replication::ensure`): a client that deletes a queue and declares it again at
//! once has a new queue here before the first declaration's entry is applied, and attached
//! to that declaration's group the new queue would go, with what it was sent meanwhile,
//! when the deletion takes the group away.
//!
//! A write is known by the writer's number for it (`WriteId`, given as the writer takes
//! it), so that it ends exactly once: when its entry is applied, when a snapshot that
//! contains it is installed (no entry comes then), or when the writer gives it up. A write
//! of an earlier start of this node, applied after a restart, ends none.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::cluster::meta_machine::{LastWrites, WriteId};

/// (vhost, subject).
type Key = (String, String);

#[derive(Default)]
pub(super) struct OwnWrites {
    /// Per subject, its writes in the order made; `None` until the writer numbers one.
    pending: Mutex<HashMap<Key, Vec<Option<WriteId>>>>,
}

impl OwnWrites {
    /// A change of this node about `subject` goes to the writer.
    pub(super) fn written(&self, vhost: &str, subject: String) {
        let mut pending = self.pending.lock().expect("own writes");
        pending
            .entry((vhost.to_string(), subject))
            .or_default()
            .push(None);
    }

    /// The writer took the write about `subject` and numbered it `id`. It takes writes in
    /// the order they were made, so it is the first about `subject` without a number.
    pub(super) fn numbered(&self, vhost: &str, subject: String, id: WriteId) {
        let mut pending = self.pending.lock().expect("own writes");
        let first = pending
            .get_mut(&(vhost.to_string(), subject))
            .and_then(|ids| ids.iter_mut().find(|i| i.is_none()));
        if let Some(first) = first {
            *first = Some(id);
        }
    }

    /// Write `id` about `subject`, of this start, was applied, or given up.
    pub(super) fn done(&self, vhost: &str, subject: String, id: WriteId) {
        let mut pending = self.pending.lock().expect("own writes");
        let key = (vhost.to_string(), subject);
        if let Some(ids) = pending.get_mut(&key) {
            ids.retain(|i| *i != Some(id));
            if ids.is_empty() {
                pending.remove(&key);
            }
        }
    }

    /// A snapshot was installed: the writes the group had taken in by then (its last
    /// write of this node, `me`) are done.
    pub(super) fn taken_in(&self, me: u64, last: &LastWrites) {
        let mut pending = self.pending.lock().expect("own writes");
        pending.retain(|_, ids| {
            ids.retain(|i| !i.is_some_and(|id| last.covers(me, id)));
            !ids.is_empty()
        });
    }

    /// Whether a write of this node about `subject` is on its way.
    pub(super) fn pending(&self, vhost: &str, subject: String) -> bool {
        let pending = self.pending.lock().expect("own writes");
        pending.contains_key(&(vhost.to_string(), subject))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(started_at: u64, seq: u64) -> WriteId {
        WriteId { started_at, seq }
    }

    #[test]
    fn a_write_ends_once_by_its_number_or_a_snapshot() {
        let w = OwnWrites::default();
        let q = || "queue q".to_string();
        w.written("/", q());
        w.written("/", q());
        w.written("/", "queue r".into());
        w.numbered("/", q(), id(100, 1));
        w.numbered("/", q(), id(100, 2));
        assert!(w.pending("/", q()) && w.pending("/", "queue r".into()));
        assert!(!w.pending("/", "queue s".into()) && !w.pending("other", q()));
        // A write of an earlier start ends none of this start's (read without its start,
        // it would end the second), and a write ends once.
        w.done("/", q(), id(50, 2));
        w.done("/", q(), id(100, 1));
        w.done("/", q(), id(100, 1));
        assert!(w.pending("/", q()), "the second is still on its way");
        w.numbered("/", "queue r".into(), id(100, 3));
        let mut last = LastWrites::default();
        assert!(last.first_time(1, Some(id(100, 2))));
        w.taken_in(2, &last);
        assert!(w.pending("/", q()), "another node's writes");
        w.taken_in(1, &last);
        assert!(!w.pending("/", q()));
        assert!(
            w.pending("/", "queue r".into()),
            "numbered after the snapshot's last write"
        );
    }
}
