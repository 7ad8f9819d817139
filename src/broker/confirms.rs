//! How the wire learns when a publish may be confirmed, without knowing about files: a
//! publish carries a `ConfirmTicket` (the storage sync that covers it), and the tracker
//! says whether that sync has completed, and wakes waiters when syncs complete.

use std::sync::Arc;

use warren_storage::{GroupCommit, Ticket};

/// Names the sync that must complete before a publish is confirmed.
pub type ConfirmTicket = Ticket;

#[derive(Clone)]
pub struct ConfirmTracker(Arc<GroupCommit>, Arc<ReplicaTickets>);

impl ConfirmTracker {
    pub fn new(commit: Arc<GroupCommit>, replicas: Arc<ReplicaTickets>) -> Self {
        ConfirmTracker(commit, replicas)
    }

    /// As `status`, for a publish that also waits for replication ticket `replicated`.
    #[inline]
    pub fn status_with(&self, ticket: ConfirmTicket, replicated: u64) -> Option<bool> {
        durable(&self.0, &self.1, ticket, replicated)
    }

    /// Changes whenever a replication ticket completes.
    pub fn subscribe_replicated(&self) -> tokio::sync::watch::Receiver<u64> {
        self.1.subscribe()
    }

    /// `Some(true)` once durable, `Some(false)` if the sync failed (confirm with a nack),
    /// `None` while pending.
    pub fn status(&self, ticket: ConfirmTicket) -> Option<bool> {
        self.0.status(ticket).map(|r| r.is_ok())
    }

    /// Changes whenever a sync round completes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// Whether what sync `ticket` and replication ticket `replicated` cover is durable:
/// `Some(true)` once both completed, `Some(false)` if either failed, `None` while either is
/// pending. The replication ticket is read only once the sync is known, because reading a
/// failed one reports it (once): a publish's confirm, a dead letter's copies and a delayed
/// message's firing all ask this way.
pub fn durable(
    commit: &GroupCommit,
    replicas: &ReplicaTickets,
    ticket: ConfirmTicket,
    replicated: u64,
) -> Option<bool> {
    let synced = commit.status(ticket)?.is_ok();
    Some(replicas.status(replicated)? && synced)
}

/// Confirms that wait for a Raft group to commit (replicated quorum queues,
/// `replicated.rs`): a publish to such a queue gets a ticket, completed by the cluster
/// once the group has committed the message, or failed (a nack) when it could not.
/// Tickets complete in any order. Ticket 0 is "nothing to wait for".
#[derive(Debug)]
pub struct ReplicaTickets {
    pending: std::sync::Mutex<PendingTickets>,
    changed: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct PendingTickets {
    next: u64,
    /// Open tickets: how many commits each still waits for, and whether one failed.
    open: std::collections::HashMap<u64, (u32, bool)>,
    /// A ticket joined into another (a message sent to two replicated queues): completing
    /// it counts for the other.
    joined: std::collections::HashMap<u64, u64>,
    /// Completed tickets that failed, until their confirm is sent.
    failed: std::collections::HashSet<u64>,
}

impl Default for ReplicaTickets {
    fn default() -> Self {
        ReplicaTickets {
            pending: Default::default(),
            changed: tokio::sync::watch::channel(0).0,
        }
    }
}

impl ReplicaTickets {
    /// A new open ticket waiting for one commit.
    pub fn issue(&self) -> u64 {
        let mut p = self.pending.lock().expect("tickets");
        p.next += 1;
        let t = p.next;
        p.open.insert(t, (1, false));
        t
    }

    /// Makes `into` wait for `other`'s commit as well (`other` stops being its own ticket).
    /// Returns the ticket to keep.
    pub fn join(&self, into: u64, other: u64) -> u64 {
        if into == 0 {
            return other;
        }
        let mut p = self.pending.lock().expect("tickets");
        if p.open.remove(&other).is_some() {
            if let Some(e) = p.open.get_mut(&into) {
                e.0 += 1;
            }
            p.joined.insert(other, into);
        }
        into
    }

    /// The commit ticket `t` waits for happened (`ok`) or will not (`!ok`).
    pub fn complete(&self, t: u64, ok: bool) {
        let mut p = self.pending.lock().expect("tickets");
        let t = p.joined.remove(&t).unwrap_or(t);
        let Some(e) = p.open.get_mut(&t) else {
            return;
        };
        e.0 -= 1;
        e.1 |= !ok;
        if e.0 == 0 {
            let failed = e.1;
            p.open.remove(&t);
            if failed {
                p.failed.insert(t);
            }
            drop(p);
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// `Some(true)` committed, `Some(false)` failed (reported once), `None` pending.
    pub fn status(&self, t: u64) -> Option<bool> {
        if t == 0 {
            return Some(true);
        }
        let mut p = self.pending.lock().expect("tickets");
        if p.open.contains_key(&t) {
            return None;
        }
        Some(!p.failed.remove(&t))
    }

    /// Changes whenever a ticket completes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
