//! The bridge's part in consumers on a member that does not lead a quorum queue
//! (`broker/replica_checkout.rs`, `cluster/checkout.rs`): each member's task asks the
//! leader for messages while this node's consumers have room, and at least every second
//! while they hold deliveries (the lease); on the leader it releases what nodes that
//! stopped asking held.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::broker::VHostHandle;
use crate::cluster::checkout::{CheckoutHandler, CheckoutReply, CheckoutRequest};
use crate::cluster::node::ClusterNode;

use super::Replication;

/// How often a member looks at its consumers' room.
const TICK: Duration = Duration::from_millis(50);
/// The most time between two requests that only keep the lease, and between two lease
/// checks on the leader.
const LEASE: Duration = Duration::from_secs(1);

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One replicated queue this node is a member of.
pub(super) struct Member {
    pub vhost: VHostHandle,
    pub name: String,
    pub queue_id: u64,
    pub group: u64,
    pub node: Arc<ClusterNode>,
    /// This process's start time: a restarted node holds nothing of what it held.
    pub incarnation: u64,
}

impl Member {
    /// Runs until the queue is gone here.
    pub(super) async fn serve_consumers(self) {
        let me = self.node.node_id();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_lease = Instant::now();
        let queue = (self.name.as_str(), self.queue_id);
        let Some(room) = self.vhost.with(|m| m.replica_room(queue)) else {
            return;
        };
        // The leader had nothing ready at the last request: wait for the tick rather
        // than ask again at every wake (each message this copy applies wakes it).
        let mut dry = false;
        loop {
            tokio::select! {
                _ = tick.tick() => dry = false,
                // Consumers here ran out of granted messages and have room: ask now.
                _ = room.notified(), if !dry => {}
            }
            let Some(demand) = self.vhost.with(|m| m.replica_demand(queue)) else {
                return; // Deleted, or declared again as another queue.
            };
            let lease_due = last_lease.elapsed() >= LEASE;
            if demand.leading {
                if lease_due {
                    last_lease = Instant::now();
                    self.vhost
                        .with(|m| m.replica_expire_remote(queue, now_ms()));
                }
                continue;
            }
            if demand.want == 0 && !(demand.holding && lease_due) {
                continue;
            }
            let Some(leader) = self
                .node
                .queue_group_leader(self.group)
                .filter(|l| *l != me)
            else {
                continue;
            };
            last_lease = Instant::now();
            let request = CheckoutRequest {
                node: me,
                incarnation: self.incarnation,
                want: demand.want,
            };
            match self.node.checkout(self.group, leader, &request).await {
                Ok(CheckoutReply::Granted(ids)) => {
                    dry = ids.is_empty();
                    if !dry {
                        self.vhost.with(|m| m.replica_granted(queue, &ids));
                    }
                    if !dry && ids.len() as u32 == demand.want {
                        // There may be more: ask again without waiting for the tick.
                        tick.reset_immediately();
                    }
                }
                Ok(CheckoutReply::NotLeader) => {}
                Err(e) => tracing::debug!(queue = %self.name, "cluster: checkout: {e}"),
            }
        }
    }
}

impl CheckoutHandler for Replication {
    fn checkout(&self, group: u64, request: &CheckoutRequest) -> CheckoutReply {
        let found = self
            .open
            .lock()
            .expect("open")
            .iter()
            .find(|(_, o)| o.group == group)
            .map(|((vhost, name), o)| (vhost.clone(), name.clone(), o.queue_id));
        let Some((vhost, name, queue_id)) = found else {
            return CheckoutReply::NotLeader;
        };
        let Some(vh) = self.broker.vhost(&vhost) else {
            return CheckoutReply::NotLeader;
        };
        let granted = vh.with(|m| {
            m.replica_grant(
                (&name, queue_id),
                request.node,
                request.incarnation,
                request.want,
                now_ms(),
            )
        });
        match granted {
            Some(ids) => CheckoutReply::Granted(ids),
            None => CheckoutReply::NotLeader,
        }
    }
}
