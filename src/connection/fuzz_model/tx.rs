//! Transactions in the model, as RabbitMQ 3.10 keeps them (rabbit_channel): tx.select is
//! refused on a channel in confirm mode (and confirm.select in tx mode); a publish is
//! routed when it arrives (bindings made later do not count) and delivered at commit to
//! the queues it was routed to that still exist, returned then if none does and it is
//! mandatory; an ack, nack or reject is checked when it arrives and takes its tags off
//! the channel's unacked, but the messages stay with their consumer until commit settles
//! them; rollback drops the publishes and puts the tags back; a channel closed with an
//! open transaction requeues what it had settled.

use super::*;

/// What a transaction holds until commit.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// (id, the queues it was routed to, mandatory), in publish order.
    pub(super) publishes: Vec<(u64, Vec<QueueName>, bool)>,
    /// (tag, the message, requeue).
    settled: Vec<(u64, Unacked, bool)>,
}

impl Model {
    pub(super) fn tx_select(&mut self, c: Chan) -> Expected {
        let ch = self.chan(c);
        if ch.confirm {
            return Expected::Error(PRECONDITION_FAILED);
        }
        ch.tx.get_or_insert_with(Pending::default);
        Expected::Done(ids::TX_SELECT_OK)
    }

    /// Takes `tags` off the channel's unacked until the transaction ends.
    pub(super) fn tx_settle(&mut self, c: Chan, tags: &[u64], requeue: bool) {
        let ch = self.chan(c);
        let pending = ch.tx.as_mut().expect("in tx mode");
        for t in tags {
            if let Some(u) = ch.unacked.remove(t) {
                pending.settled.push((*t, u, requeue));
            }
        }
    }

    pub(super) fn tx_commit(&mut self, c: Chan) -> Expected {
        let Some(pending) = self.chan(c).tx.replace(Pending::default()) else {
            return Expected::Error(PRECONDITION_FAILED);
        };
        for (id, routed, mandatory) in pending.publishes {
            self.deliver_to(id, &routed, mandatory);
        }
        for (_, u, requeue) in pending.settled {
            self.release(c, &u);
            if requeue {
                self.requeue_one(u);
            }
        }
        Expected::Done(ids::TX_COMMIT_OK)
    }

    pub(super) fn tx_rollback(&mut self, c: Chan) -> Expected {
        let ch = self.chan(c);
        if ch.tx.is_none() {
            return Expected::Error(PRECONDITION_FAILED);
        }
        self.tx_forget(c);
        self.chan(c).tx = Some(Pending::default());
        Expected::Done(ids::TX_ROLLBACK_OK)
    }

    /// Ends a transaction without committing: its tags are unacked again.
    pub(super) fn tx_forget(&mut self, c: Chan) {
        let ch = self.chan(c);
        if let Some(pending) = ch.tx.take() {
            for (t, u, _) in pending.settled {
                ch.unacked.insert(t, u);
            }
        }
    }
}
