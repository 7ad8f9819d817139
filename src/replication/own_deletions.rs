//! This node's quorum-queue deletions on their way to the metadata group.
//!
//! While one is, no group of that name is opened here (`Replication::ensure`): a client
//! that deletes a queue and declares it again at once has a new queue here before the
//! first declaration's entry is applied, and attached to that declaration's group the new
//! queue would go, with what it was sent meanwhile, when the deletion takes the group away.
//!
//! A deletion is known by the writer's number for it (`WriteId`, given as the writer
//! takes it), so that it ends exactly once: when its entry is applied, when a snapshot
//! that contains it is installed (no entry comes then), or when the writer gives it up.
//! A deletion of an earlier start of this node, applied after a restart, ends none.

use std::sync::Mutex;

use crate::cluster::meta_machine::{LastWrites, WriteId};

/// One deletion on its way.
struct Pending {
    vhost: String,
    name: String,
    /// Set by the writer when it takes the deletion.
    id: Option<WriteId>,
}

#[derive(Default)]
pub(super) struct OwnDeletions {
    pending: Mutex<Vec<Pending>>,
}

impl OwnDeletions {
    /// A client of this node deleted quorum queue `name`; its deletion goes to the writer.
    pub(super) fn written(&self, vhost: &str, name: &str) {
        self.pending.lock().expect("own deletions").push(Pending {
            vhost: vhost.to_string(),
            name: name.to_string(),
            id: None,
        });
    }

    /// The writer took the deletion of `name` and numbered it `id`. The writer takes
    /// deletions in the order they were written, so it is the first of that name without
    /// a number.
    pub(super) fn numbered(&self, vhost: &str, name: &str, id: WriteId) {
        let mut pending = self.pending.lock().expect("own deletions");
        let first = pending
            .iter_mut()
            .find(|p| p.id.is_none() && p.vhost == vhost && p.name == name);
        if let Some(p) = first {
            p.id = Some(id);
        }
    }

    /// Deletion `id` of this start was applied, or given up.
    pub(super) fn done(&self, id: WriteId) {
        let mut pending = self.pending.lock().expect("own deletions");
        pending.retain(|p| p.id != Some(id));
    }

    /// A snapshot was installed: the deletions the group had taken in by then (its last
    /// write of this node) are done. Returns their names, whose deferred queues may open.
    pub(super) fn taken_in(&self, me: u64, last: &LastWrites) -> Vec<(String, String)> {
        let mut pending = self.pending.lock().expect("own deletions");
        let mut done = Vec::new();
        pending.retain(|p| match p.id {
            Some(id) if last.covers(me, id) => {
                done.push((p.vhost.clone(), p.name.clone()));
                false
            }
            _ => true,
        });
        done
    }

    /// Whether a deletion of queue `name` by this node is on its way.
    pub(super) fn deleting(&self, vhost: &str, name: &str) -> bool {
        let pending = self.pending.lock().expect("own deletions");
        pending.iter().any(|p| p.vhost == vhost && p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(started_at: u64, seq: u64) -> WriteId {
        WriteId { started_at, seq }
    }

    #[test]
    fn a_deletion_ends_once_by_its_number_or_a_snapshot() {
        let d = OwnDeletions::default();
        d.written("/", "q");
        d.written("/", "q");
        d.written("/", "r");
        d.numbered("/", "q", id(100, 1));
        d.numbered("/", "q", id(100, 2));
        assert!(d.deleting("/", "q") && d.deleting("/", "r"));
        assert!(!d.deleting("/", "s") && !d.deleting("other", "q"));
        // A deletion of an earlier start ends none of this start's.
        d.done(id(50, 1));
        d.done(id(100, 1));
        d.done(id(100, 1));
        assert!(d.deleting("/", "q"), "the second is still on its way");
        d.numbered("/", "r", id(100, 3));
        let mut last = LastWrites::default();
        assert!(last.first_time(1, Some(id(100, 2))));
        assert_eq!(d.taken_in(1, &last), vec![("/".into(), "q".into())]);
        assert!(!d.deleting("/", "q"));
        assert!(
            d.deleting("/", "r"),
            "numbered after the snapshot's last write"
        );
        assert!(d.taken_in(2, &last).is_empty(), "another node's writes");
    }
}
