//! The bridge's part in consumers on a node that does not lead a quorum queue
//! (`broker/replica_checkout.rs`, `cluster/checkout.rs`): each node's task asks the
//! leader for messages while this node's consumers have room, and at least every second
//! while they hold deliveries (the lease); on the leader it releases what nodes that
//! stopped asking held. A member delivers what it is granted from its own copy; a node
//! that is not a member asks the group's members in turn until the leader answers, and
//! is lent the messages themselves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::queue::replica::GroupMessage;
use crate::broker::replica_checkout::Ask;
use crate::broker::replica_claims::CLAIM_WAIT_MS;
use crate::broker::replicated::{GetGrant, LeaderGetWait};
use crate::broker::{VHost, VHostHandle};
use crate::cluster::checkout::{CheckoutHandler, CheckoutReply, CheckoutRequest, LentMessage};
use crate::cluster::node::ClusterNode;

use super::Replication;

/// How often a member looks at its consumers' room while they want messages or hold
/// some.
const TICK: Duration = Duration::from_millis(50);
/// The most time between two requests that only keep the lease, and between two lease
/// checks on the leader.
const LEASE: Duration = Duration::from_secs(1);
/// How long a member waits before it sends again a claim the leader could not take (it
/// does not lead in its broker yet, or it is unreachable).
const CLAIM_RETRY: Duration = Duration::from_millis(100);

pub(super) use crate::cluster::types::now_ms;

/// Where a node's consumers of a replicated queue get their messages from.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// A member: its own copy, fed by the group; the last log index fed to it
    /// (`QueueFeed::fed`).
    Copy(Arc<AtomicU64>),
    /// Not a member: the leader lends the messages; it is one of these members.
    Lent(Vec<u64>),
}

impl Source {
    /// The node to ask: the leader this node's member of `group` knows (never `me`), or,
    /// with no copy here, the `turn`th member (moved on when it does not lead).
    fn leader(&self, node: &ClusterNode, group: u64, turn: usize) -> Option<u64> {
        match self {
            Source::Copy(_) => node
                .queue_group_leader(group)
                .filter(|l| *l != node.node_id()),
            Source::Lent(members) if members.is_empty() => None,
            Source::Lent(members) => Some(members[turn % members.len()]),
        }
    }

    fn lend(&self) -> bool {
        matches!(self, Source::Lent(_))
    }
}

/// The lent messages as the broker takes them (held for a moment by this node's
/// consumers; never expired here, so no enqueue time).
fn as_lent(lent: &[LentMessage]) -> Vec<GroupMessage<'_>> {
    lent.iter()
        .map(|m| GroupMessage {
            id: m.id,
            stored: m.message.as_slice(),
            returns: m.returns,
            enqueued_at: 0,
        })
        .collect()
}

/// One replicated queue this node serves consumers of.
pub(super) struct Member {
    pub vhost: VHostHandle,
    pub name: String,
    pub queue_id: u64,
    pub group: u64,
    pub node: Arc<ClusterNode>,
    /// This process's start time: a restarted node holds nothing of what it held.
    pub incarnation: u64,
    pub source: Source,
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
        // Which member a node with no copy asks (it keeps asking the one that answers).
        let mut turn = 0;
        // Whether the leader was last told of a consumer here (single active consumer:
        // it must hear at once when the last one goes, `replica_sac.rs`).
        let mut told_of_consumer = false;
        // The leader this node last told what its consumers hold (`replica_claims.rs`):
        // the changes of leader its copy had seen (`Demand::leaders_seen`), and the
        // connection the leader's beacons came on (a leader restarted, which may lead on
        // in the same term, is a new process: it took over from its last one). The first
        // ask to a new leader names what is held (on a node lent messages, the first ask
        // to a member other than the one that last answered as the leader). A claim the
        // leader could not take yet (it is not leading in its broker yet, or it is
        // unreachable) is sent again after `CLAIM_RETRY`.
        let mut claimed_at: Option<(u64, Option<u64>)> = None;
        // On a node lent messages: whether its beacons say it holds some of this group.
        let mut lent_holding = false;
        let mut claim_after = Instant::now();
        let mut idle_for = LEASE;
        loop {
            tokio::select! {
                _ = tick.tick(), if !idle => dry = false,
                _ = tokio::time::sleep(idle_for), if idle => dry = false,
                // Consumers here ran out of granted messages and have room: ask now.
                _ = room.notified(), if !dry => {}
            }
            let Some(demand) = self.vhost.with(|m| m.replica_demand(queue)) else {
                // Deleted, or declared again as another queue.
                if lent_holding {
                    self.node.note_lent_holding(self.group, false);
                }
                return;
            };
            let was_idle = idle;
            let consumers_gone = told_of_consumer && demand.first.is_none();
            // A single-active consumer here keeps its place with the leader even while it
            // has no room (it asks at least every `LEASE`, as a node holding deliveries does);
            // consumers of an `x-expires` queue keep it in use the same way (the leader
            // judges its use by the asks).
            let keeps_place = demand.first.is_some() || demand.in_use;
            let leader = self.source.leader(&self.node, self.group, turn);
            // Nothing but the claim to send.
            let claim_only = demand.want == 0 && !demand.holding && !consumers_gone && !keeps_place;
            if self.source.lend() && lent_holding != demand.holding {
                // Its beacons tell the members, so that a new leader waits for its claim.
                lent_holding = demand.holding;
                self.node.note_lent_holding(self.group, lent_holding);
            }
            // A member tells each new leader once, even with nothing held. A node lent
            // messages has no Raft to see a new leader by: it claims in its first ask to
            // a member other than the one that last answered it as the leader (or to that
            // one restarted), and only while it has consumers or holds something.
            let leader_is = (
                demand.leaders_seen,
                leader.and_then(|l| self.node.peer_link(l)),
            );
            let lent_idle = self.source.lend() && claim_only;
            let claim_pending =
                !demand.leading && !lent_idle && leader.is_some() && claimed_at != Some(leader_is);
            let claim_due = claim_pending && Instant::now() >= claim_after;
            idle = demand.leading || (claim_only && !claim_due);
            idle_for = match claim_pending {
                true => CLAIM_RETRY,
                false => LEASE,
            };
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
            if demand.want == 0
                && !((demand.holding || keeps_place) && lease_due)
                && !consumers_gone
                && !claim_due
            {
                continue;
            }
            let Some(leader) = leader else {
                continue;
            };
            last_lease = Instant::now();
            let held = claim_due.then(|| self.vhost.with(|m| m.replica_holding(queue)));
            let request = CheckoutRequest {
                node: self.node.node_id(),
                incarnation: self.incarnation,
                want: demand.want,
                lend: self.source.lend(),
                first_consumer: demand.first,
                get: false,
                held,
                claim_only: claim_only && claim_due,
            };
            // Set as it is sent: the leader may hear it though the answer is lost.
            told_of_consumer = request.first_consumer.is_some() || told_of_consumer;
            match self.node.checkout(self.group, leader, &request).await {
                Ok(CheckoutReply::Granted {
                    ids,
                    through,
                    lent,
                    returns,
                    ..
                }) => {
                    told_of_consumer = request.first_consumer.is_some();
                    if claim_due {
                        claimed_at = Some(leader_is);
                    }
                    dry = ids.is_empty();
                    match &self.source {
                        _ if dry => {}
                        Source::Copy(fed) => {
                            // What is not here by then is delivered when it comes
                            // (`awaited`).
                            fed_through(fed, through, Instant::now() + LEASE).await;
                            self.vhost
                                .with(|m| m.replica_granted(queue, &ids, &returns));
                        }
                        Source::Lent(_) => {
                            let lent = as_lent(&lent);
                            self.vhost.with(|m| m.replica_lent(queue, &lent, true));
                        }
                    }
                    if !dry && ids.len() as u32 == demand.want {
                        // There may be more: ask again without waiting for the tick.
                        tick.reset_immediately();
                    }
                }
                Ok(CheckoutReply::NotLeader) => {
                    turn += 1;
                    if claim_due {
                        claim_after = Instant::now() + CLAIM_RETRY;
                    }
                }
                Err(e) => {
                    turn += 1;
                    if claim_due {
                        claim_after = Instant::now() + CLAIM_RETRY;
                    }
                    tracing::debug!(queue = %self.name, "cluster: checkout: {e}");
                }
            }
        }
    }
}

/// How long a basic.get on a member that does not lead waits for the leader's answer
/// (through an election) before it answers get-empty; longer while the leader says it
/// holds back (`CLAIM_WAIT_MS` more).
const GET_WAIT: Duration = Duration::from_secs(2);

impl Replication {
    /// A basic.get on this node, which does not lead the queue: one checkout of one
    /// message from the leader (held for this node like a consumer's, under the same
    /// lease; lent, on a node that is not a member). Resolves to the grant; `None` if
    /// nothing was ready, no leader answered in time, or this node leads the queue now.
    /// A grant that comes after a change of leader is given back and the next leader
    /// asked (`broker/replica_late_grants.rs`).
    pub(super) fn ask_leader_for_one(&self, vhost: &str, name: &str) -> LeaderGetWait {
        let key = (vhost.to_string(), name.to_string());
        let open = self.open.lock().expect("open").get(&key).cloned();
        let node = self.node.clone();
        let broker_vhost = self.broker.vhost(vhost);
        let incarnation = self.incarnation;
        Box::pin(async move {
            let open = open?;
            let source = open.source;
            let request = CheckoutRequest {
                node: node.node_id(),
                incarnation,
                want: 1,
                lend: source.lend(),
                first_consumer: None,
                get: true,
                held: None,
                claim_only: false,
            };
            let asked = Instant::now();
            let mut until = asked + GET_WAIT;
            let mut turn = 0;
            let queue = (key.1.as_str(), open.queue_id);
            let vh = broker_vhost.as_ref()?;
            loop {
                if !source.lend() && node.queue_group_leader(open.group) == Some(request.node) {
                    return None; // This node leads it now: the broker's own get answers.
                }
                // `None`: this node's broker leads it now (or it is gone).
                let leaders_seen = vh.with(|m| m.replica_leaders_seen(queue))?;
                if let Some(leader) = source.leader(&node, open.group, turn) {
                    match node.checkout(open.group, leader, &request).await {
                        Ok(CheckoutReply::Granted {
                            ids,
                            held_back: true,
                            ..
                        }) if ids.is_empty() => {
                            // A new leader waiting for its members' claims: asked again
                            // until its wait is over, as a get on the leader waits.
                            let claims = Duration::from_millis(CLAIM_WAIT_MS);
                            until = until.max(asked + GET_WAIT + claims);
                        }
                        Ok(CheckoutReply::Granted {
                            ids,
                            through,
                            lent,
                            returns,
                            ..
                        }) => {
                            debug_assert!(ids.len() <= 1, "granted more than asked for");
                            let id = *ids.first()?;
                            let grant = GetGrant { id, leaders_seen };
                            match &source {
                                // This copy applies what the leader had applied when it
                                // hears of the commit (within a heartbeat).
                                Source::Copy(fed) => {
                                    vh.with(|m| m.replica_went_out(queue, &ids, &returns));
                                    _ = fed_through(fed, through, until).await;
                                    // A leader replaced meanwhile: given back; ask the next.
                                    let current =
                                        vh.with(|m| m.replica_get_grant_current(queue, grant));
                                    if current {
                                        return Some(grant);
                                    }
                                }
                                Source::Lent(_) => {
                                    let lent = as_lent(&lent);
                                    vh.with(|m| m.replica_lent(queue, &lent, false));
                                    return Some(grant);
                                }
                            }
                        }
                        Ok(CheckoutReply::NotLeader) => turn += 1,
                        Err(e) => {
                            turn += 1;
                            tracing::debug!(queue = %key.1, "cluster: get: {e}");
                        }
                    }
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
        let (queue, now) = ((name.as_str(), queue_id), now_ms());
        let ask = Ask {
            node: request.node,
            incarnation: request.incarnation,
            want: request.want,
            first: request.first_consumer,
            get: request.get,
            held: request.held.as_deref(),
            claim_only: request.claim_only,
        };
        // Asked under the same lock as the grant: an empty grant says why.
        let held_back = |m: &VHost, granted: bool| !granted && m.replica_holds_back(queue);
        let (ids, lent, held_back) = if request.lend {
            let lend = |m: &mut VHost| {
                let lent = m.replica_lend(queue, ask, now)?;
                let held_back = held_back(m, !lent.is_empty());
                Some((lent, held_back))
            };
            let Some((lent, held_back)) = vh.with(lend) else {
                return CheckoutReply::NotLeader;
            };
            let ids = lent.iter().map(|m| (m.0, m.2)).collect();
            let lent = lent
                .into_iter()
                .map(|(id, message, returns)| LentMessage {
                    id,
                    message: message.to_vec(),
                    returns,
                })
                .collect();
            (ids, lent, held_back)
        } else {
            let grant = |m: &mut VHost| {
                let ids = m.replica_grant(queue, ask, now)?;
                let held_back = held_back(m, !ids.is_empty());
                Some((ids, held_back))
            };
            match vh.with(grant) {
                Some((ids, held_back)) => (ids, Vec::new(), held_back),
                None => return CheckoutReply::NotLeader,
            }
        };
        let (ids, returns) = ids.into_iter().unzip();
        // Read after the grant: what the copy had applied when it chose is at most this.
        CheckoutReply::Granted {
            ids,
            through: fed.load(Ordering::Acquire),
            lent,
            returns,
            held_back,
        }
    }
    fn node_gone(&self, node: u64) {
        let queues: Vec<(String, String, u64)> = {
            let open = self.open.lock().expect("open");
            open.iter()
                .map(|((vhost, name), o)| (vhost.clone(), name.clone(), o.queue_id))
                .collect()
        };
        let now = now_ms();
        for (vhost, name, queue_id) in queues {
            if let Some(vh) = self.broker.vhost(&vhost) {
                vh.with(|m| m.replica_node_gone((name.as_str(), queue_id), node, now));
            }
        }
    }
}
