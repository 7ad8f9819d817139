//! The bridge's part in consumers on a member that does not lead a quorum queue
//! (`broker/replica_checkout.rs`, `cluster/checkout.rs`): each member's task asks the
//! leader for messages while this node's consumers have room, and at least every second
//! while they hold deliveries (the lease); on the leader it releases what nodes that
//! stopped asking held.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::broker::replicated::LeaderGetWait;
use crate::broker::VHostHandle;
use crate::cluster::checkout::{CheckoutHandler, CheckoutReply, CheckoutRequest};
use crate::cluster::node::ClusterNode;

use super::Replication;

/// How often a member looks at its consumers' room while they want messages or hold
/// some.
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
    /// The last log index fed to this node's copy (`QueueFeed::fed`).
    pub fed: Arc<AtomicU64>,
}

/// Waits until `fed` reaches `through` (the copy here has applied what the leader's had
/// when it granted), or `until`; whether it did.
async fn fed_through(fed: &AtomicU64, through: u64, until: Instant) -> bool {
    while fed.load(Ordering::Acquire) < through {
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}

impl Member {
    /// Runs until the queue is gone here.
    pub(super) async fn serve_consumers(self) {
        let me = self.node.node_id();
        // Looks every `TICK` while this node's consumers want messages or hold some;
        // every `LEASE` on the leader (its lease checks) and on a member with nothing to
        // ask for, which is woken when that changes (a consumer with room, leadership
        // lost: `Replica::room`). With a thousand idle queues, a look every 50 ms each
        // was half of an idle node's CPU (BENCHMARKS.md, stop 39).
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut idle = false;
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
                _ = tick.tick(), if !idle => dry = false,
                _ = tokio::time::sleep(LEASE), if idle => dry = false,
                // Consumers here ran out of granted messages and have room: ask now.
                _ = room.notified(), if !dry => {}
            }
            let Some(demand) = self.vhost.with(|m| m.replica_demand(queue)) else {
                return; // Deleted, or declared again as another queue.
            };
            let was_idle = idle;
            idle = demand.leading || (demand.want == 0 && !demand.holding);
            if idle {
                dry = false; // A consumer arriving must be heard at once.
            } else if was_idle {
                tick.reset();
            }
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
                Ok(CheckoutReply::Granted { ids, through }) => {
                    dry = ids.is_empty();
                    if !dry {
                        // What is not here by then is delivered when it comes (`awaited`).
                        fed_through(&self.fed, through, Instant::now() + LEASE).await;
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

/// How long a basic.get on a member that does not lead waits for the leader's answer
/// (through an election) before it answers get-empty.
const GET_WAIT: Duration = Duration::from_secs(2);

impl Replication {
    /// A basic.get on this member, which does not lead the queue: one checkout of one
    /// message from the leader (held for this node like a consumer's, under the same
    /// lease). Resolves to the message's group id; `None` if nothing was ready, no leader
    /// answered in time, or this node leads the queue now.
    pub(super) fn ask_leader_for_one(&self, vhost: &str, name: &str) -> LeaderGetWait {
        let key = (vhost.to_string(), name.to_string());
        let open = self.open.lock().expect("open").get(&key).cloned();
        let node = self.node.clone();
        let request = CheckoutRequest {
            node: node.node_id(),
            incarnation: self.incarnation,
            want: 1,
        };
        Box::pin(async move {
            let open = open?;
            if !node.holds_queue_group(open.group) {
                return None; // Not a member: no copy here to hand a message out from.
            }
            let until = Instant::now() + GET_WAIT;
            loop {
                match node.queue_group_leader(open.group) {
                    Some(leader) if leader == request.node => return None,
                    Some(leader) => match node.checkout(open.group, leader, &request).await {
                        Ok(CheckoutReply::Granted { ids, through }) => {
                            debug_assert!(ids.len() <= 1, "granted more than asked for");
                            let id = *ids.first()?;
                            // This copy applies what the leader had applied when it hears
                            // of the commit (within a heartbeat).
                            fed_through(&open.fed, through, until).await;
                            return Some(id);
                        }
                        Ok(CheckoutReply::NotLeader) => {}
                        Err(e) => tracing::debug!(queue = %key.1, "cluster: get: {e}"),
                    },
                    None => {}
                }
                if Instant::now() >= until {
                    return None;
                }
                tokio::time::sleep(TICK).await;
            }
        })
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
            .map(|((vhost, name), o)| (vhost.clone(), name.clone(), o.queue_id, o.fed.clone()));
        let Some((vhost, name, queue_id, fed)) = found else {
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
            // Read after the grant: what the copy had applied when it chose is at most this.
            Some(ids) => CheckoutReply::Granted {
                ids,
                through: fed.load(Ordering::Acquire),
            },
            None => CheckoutReply::NotLeader,
        }
    }
}
