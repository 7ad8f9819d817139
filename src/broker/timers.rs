//! When the model next has timed work to do (message expiry at a queue's head, idle
//! queues under `x-expires`, dead letters waiting for their copies' sync): one atomic
//! deadline for the whole broker, so the server's timer task can tell in one load whether
//! any vhost needs a sweep.

use std::sync::atomic::{AtomicU64, Ordering};

/// The earliest time (milliseconds since the epoch) any vhost has timed work due.
#[derive(Debug)]
pub struct Deadlines {
    next: AtomicU64,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            next: AtomicU64::new(u64::MAX),
        }
    }
}

impl Deadlines {
    /// Something is due at `at`: the next sweep happens no later than that.
    pub fn wake_at(&self, at: u64) {
        self.next.fetch_min(at, Ordering::AcqRel);
    }

    /// True if a sweep is due at `now`. Taking a sweep clears the deadline; each vhost's
    /// sweep then reports its own next one with `wake_at` (a `wake_at` racing with the
    /// sweep is kept: it lowers the value after the clear).
    pub fn take_due(&self, now: u64) -> bool {
        let mut current = self.next.load(Ordering::Acquire);
        loop {
            if current > now {
                return false;
            }
            match self.next.compare_exchange_weak(
                current,
                u64::MAX,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_wins_and_a_sweep_clears() {
        let d = Deadlines::default();
        assert!(!d.take_due(1_000));
        d.wake_at(500);
        d.wake_at(700);
        assert!(!d.take_due(499));
        assert!(d.take_due(500));
        assert!(!d.take_due(10_000));
    }
}
