//! Transactions (tx.select, tx.commit, tx.rollback) in the model, as RabbitMQ 3.10's
//! channel does them (`rabbit_channel.erl`, its `tx` state):
//!
//! - a transactional channel's publishes are checked and routed when they arrive (the
//!   queues are chosen then), held by the connection (which owns their bytes), and stored
//!   at commit in one batch, in those of their queues that still exist;
//! - its acks, nacks and rejects are checked when they arrive (an unknown tag is 406) and
//!   held: their tags leave the set that can be settled, but the messages stay unacked
//!   (prefetch credit is not given back, and a channel closed with an open transaction
//!   requeues them). Commit applies them in order after the publishes; rollback makes the
//!   tags settleable again.

use std::collections::HashSet;
use std::sync::Arc;

use super::channel::ChannelState;
use super::error::BrokerError;
use super::publish::{PublishRequest, Published};
use super::reply_to::REPLY_PREFIX;
use super::vhost::VHost;
use super::ChannelKey;

/// The queues a transactional publish was routed to when it arrived.
#[derive(Debug, Clone, Default)]
pub struct TxRoute(Vec<Arc<str>>);

impl TxRoute {
    /// How many queues: the connection counts the route in the transaction's size.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a held settlement does at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settlement {
    Ack,
    Requeue,
    Discard,
}

/// A channel's acks, nacks and rejects in its open transaction.
#[derive(Debug, Default)]
pub(super) struct TxSettles {
    /// Every tag in `ops`: unacked still, but not to be settled again.
    held: HashSet<u64, foldhash::fast::RandomState>,
    /// In arrival order; consecutive settlements of one kind share an entry.
    ops: Vec<(Settlement, Vec<u64>)>,
}

impl TxSettles {
    /// The tag was settled in the open transaction.
    pub fn holds(&self, tag: u64) -> bool {
        !self.held.is_empty() && self.held.contains(&tag)
    }

    fn hold(&mut self, kind: Settlement, tags: Vec<u64>) {
        self.held.extend(tags.iter().copied());
        match self.ops.last_mut() {
            Some((k, held)) if *k == kind => held.extend(tags),
            _ => self.ops.push((kind, tags)),
        }
    }
}

impl ChannelState {
    /// The tags an ack/nack/reject of `tag` (`multiple`: every one up to it; 0: all)
    /// settles, checked as `VHost::settle` checks them: a tag not outstanding is 406.
    fn settleable(&self, tag: u64, multiple: bool) -> Result<Vec<u64>, BrokerError> {
        if (!multiple || tag != 0) && !self.is_unacked(tag) {
            return Err(BrokerError::PreconditionFailed(format!(
                "unknown delivery tag {tag}"
            )));
        }
        Ok(if multiple {
            self.tags_through(if tag == 0 { u64::MAX } else { tag })
        } else {
            vec![tag]
        })
    }
}

impl VHost {
    /// Checks and routes the publishes of transactional channels as they arrive: one
    /// result per message, the errors those of `publish_batch` (no exchange, internal
    /// exchange). Nothing is stored.
    pub fn tx_route(&mut self, msgs: &[PublishRequest<'_>]) -> Vec<Result<TxRoute, BrokerError>> {
        let mut targets = std::mem::take(&mut self.route_scratch);
        let routes = msgs
            .iter()
            .map(|m| {
                self.route(m, &mut targets)?;
                Ok(TxRoute(targets.clone()))
            })
            .collect();
        self.route_scratch = targets;
        routes
    }

    /// basic.ack (`ack`), basic.nack or basic.reject on a transactional channel: checked
    /// now, applied at commit. A channel already closed is ignored, as `settle` does.
    pub fn tx_settle(
        &mut self,
        key: ChannelKey,
        tag: u64,
        multiple: bool,
        ack: bool,
        requeue: bool,
    ) -> Result<(), BrokerError> {
        let Some(ch) = self.channels.get_mut(&key) else {
            return Ok(());
        };
        let tags = ch.settleable(tag, multiple)?;
        let kind = match (ack, requeue) {
            (true, _) => Settlement::Ack,
            (false, true) => Settlement::Requeue,
            (false, false) => Settlement::Discard,
        };
        ch.tx.hold(kind, tags);
        Ok(())
    }

    /// tx.commit: stores the transaction's publishes in one batch (`routes[i]` is where
    /// `msgs[i]` was routed when it arrived; queues deleted since are skipped, as RabbitMQ
    /// looks them up by name at commit), then applies its acks, nacks and rejects in
    /// order. One result per message: `routed` is false if none of its queues is left.
    pub fn tx_commit(
        &mut self,
        key: ChannelKey,
        msgs: &[PublishRequest<'_>],
        routes: &[TxRoute],
    ) -> Result<Vec<Published>, BrokerError> {
        assert_eq!(msgs.len(), routes.len(), "one route per held publish");
        let mut results: Vec<Result<Published, BrokerError>> = Vec::with_capacity(msgs.len());
        let mut deliveries: Vec<(Arc<str>, usize)> = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let m = &msgs[i];
            if m.exchange.is_empty() && m.routing_key.starts_with(REPLY_PREFIX) {
                // A direct reply goes out at commit, like any publish of the transaction.
                self.deliver_reply(m);
            }
            let before = deliveries.len();
            deliveries.extend(
                route
                    .0
                    .iter()
                    .filter(|q| self.queues.contains_key(*q))
                    .map(|q| (q.clone(), i)),
            );
            results.push(Ok(Published {
                routed: deliveries.len() > before,
                ticket: warren_storage::Ticket::DONE,
                failed: false,
                replicated: 0,
            }));
        }
        self.stats.published(msgs.len() as u64);
        self.store_batch(msgs, &mut deliveries, &mut results);
        let ops = match self.channels.get_mut(&key) {
            Some(ch) => std::mem::take(&mut ch.tx).ops,
            None => Vec::new(),
        };
        for (kind, tags) in ops {
            let (ack, requeue) = match kind {
                Settlement::Ack => (true, false),
                Settlement::Requeue => (false, true),
                Settlement::Discard => (false, false),
            };
            for tag in tags {
                // A held tag is still unacked: only commit or rollback settles it, and
                // closing the channel drops this state with the ring.
                let held = self.channels.get(&key).is_some_and(|c| c.is_unacked(tag));
                debug_assert!(held, "held tag {tag} no longer unacked");
                if held {
                    self.settle(key, tag, false, ack, requeue)?;
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("store_batch reports failures in `failed`"))
            .collect())
    }

    /// tx.rollback: the transaction's acks, nacks and rejects are forgotten, their
    /// deliveries unacked and settleable again. (Its publishes are the connection's.)
    pub fn tx_rollback(&mut self, key: ChannelKey) {
        if let Some(ch) = self.channels.get_mut(&key) {
            ch.tx = TxSettles::default();
        }
    }
}
