//! A connection's outbox: deliveries and notifications the model hands to the wire.
//!
//! The model pushes under the broker lock; the connection task drains it and writes the
//! frames. The number of items waiting is bounded (`limit`): the model stops dispatching to
//! a connection whose outbox is full, so a client that does not read cannot grow the
//! broker's memory; draining a full outbox tells the model to resume.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Something for a connection to write.
#[derive(Debug)]
pub enum Outgoing {
    Deliver {
        channel: u16,
        consumer_tag: Arc<str>,
        delivery_tag: u64,
        redelivered: bool,
        /// The stored message (see `broker::message`).
        payload: Bytes,
    },
    /// The consumer was cancelled by the server (its queue was deleted).
    Cancel {
        channel: u16,
        consumer_tag: Arc<str>,
    },
    /// The broker closes the connection (320, CONNECTION_FORCED): its vhost or user was
    /// deleted, or an operator closed it.
    Close { text: Arc<str> },
}

pub struct Outbox {
    items: Mutex<VecDeque<Outgoing>>,
    queued: AtomicUsize,
    limit: usize,
    pub notify: tokio::sync::Notify,
    /// When (the model's clock, ms) the connection last found its socket full: its client
    /// had not read what it was sent. 0: never. Publisher flow reads it.
    socket_full_at_ms: AtomicU64,
}

impl Outbox {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Outbox {
            items: Mutex::new(VecDeque::new()),
            queued: AtomicUsize::new(0),
            limit,
            notify: tokio::sync::Notify::new(),
            socket_full_at_ms: AtomicU64::new(0),
        })
    }

    #[inline]
    pub fn push(&self, item: Outgoing) {
        let was_empty = {
            let mut items = self.items.lock().expect("outbox");
            items.push_back(item);
            items.len() == 1
        };
        self.queued.fetch_add(1, Ordering::Relaxed);
        if was_empty {
            self.notify.notify_one();
        }
    }

    /// Queues everything in `items` (leaving it empty) under one lock, one counter update
    /// and at most one wake-up: dispatch hands a consumer its messages a burst at a time.
    #[inline]
    pub fn push_all(&self, items: &mut Vec<Outgoing>) {
        if items.is_empty() {
            return;
        }
        let n = items.len();
        let was_empty = {
            let mut queue = self.items.lock().expect("outbox");
            let was_empty = queue.is_empty();
            queue.extend(items.drain(..));
            was_empty
        };
        self.queued.fetch_add(n, Ordering::Relaxed);
        if was_empty {
            self.notify.notify_one();
        }
    }

    /// True while more deliveries may be queued.
    #[inline]
    pub fn has_room(&self) -> bool {
        self.queued.load(Ordering::Relaxed) < self.limit
    }

    /// How many more deliveries may be queued now.
    #[inline]
    pub fn room(&self) -> usize {
        self.limit
            .saturating_sub(self.queued.load(Ordering::Relaxed))
    }

    /// Moves everything queued into `into`; returns true if the outbox had been full (so
    /// the model should resume dispatching to this connection).
    pub fn drain(&self, into: &mut VecDeque<Outgoing>) -> bool {
        let mut items = self.items.lock().expect("outbox");
        let n = items.len();
        if n == 0 {
            return false;
        }
        if into.is_empty() {
            std::mem::swap(&mut *items, into);
        } else {
            into.extend(items.drain(..));
        }
        drop(items);
        let before = self.queued.fetch_sub(n, Ordering::Relaxed);
        before >= self.limit
    }

    pub fn is_empty(&self) -> bool {
        self.queued.load(Ordering::Relaxed) == 0
    }

    /// The connection's socket would not take more output.
    pub fn note_socket_full(&self) {
        self.socket_full_at_ms
            .store(super::vhost::now_millis(), Ordering::Relaxed);
    }

    /// True if the socket was found full less than `within_ms` before `now_ms`: the client
    /// reads slower than it is sent to.
    pub fn client_behind(&self, now_ms: u64, within_ms: u64) -> bool {
        let at = self.socket_full_at_ms.load(Ordering::Relaxed);
        at != 0 && now_ms.saturating_sub(at) < within_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_behind_for_a_while_after_its_socket_was_full() {
        let outbox = Outbox::new(8);
        let now = super::super::vhost::now_millis();
        assert!(!outbox.client_behind(now, 1000), "never full");
        outbox.note_socket_full();
        let now = super::super::vhost::now_millis();
        assert!(outbox.client_behind(now, 1000));
        assert!(
            !outbox.client_behind(now + 1000, 1000),
            "a second later, no longer"
        );
    }
}
