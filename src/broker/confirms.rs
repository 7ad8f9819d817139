//! How the wire learns when a publish may be confirmed, without knowing about files: a
//! publish carries a `ConfirmTicket` (the storage sync that covers it), and the tracker
//! says whether that sync has completed, and wakes waiters when syncs complete.

use std::sync::Arc;

use warren_storage::{GroupCommit, Ticket};

/// Names the sync that must complete before a publish is confirmed.
pub type ConfirmTicket = Ticket;

#[derive(Clone)]
pub struct ConfirmTracker(Arc<GroupCommit>);

impl ConfirmTracker {
    pub fn new(commit: Arc<GroupCommit>) -> Self {
        ConfirmTracker(commit)
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
