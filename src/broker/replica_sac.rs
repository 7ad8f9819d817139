//! A single-active-consumer quorum queue across the cluster. RabbitMQ's quorum queue gives
//! its messages to one consumer at a time, the earliest subscribed of all the cluster's,
//! and to the next when that one goes. Here the leader decides, as it decides what every
//! consumer gets (`replica_checkout.rs`): each node that asks it for messages names its own
//! earliest consumer and how long ago that one subscribed (`FirstConsumer`); the leader
//! places it on its own clock (durations only, so the nodes' clocks need not agree) and
//! grants only to the node whose consumer is the earliest of all, its own included. While
//! another node's consumer is the active one, the leader's own consumers get nothing
//! (`dispatch::choose_consumer`).
//!
//! A node whose consumers of the queue all went tells the leader at once (a request that
//! names none); a node that stops asking (it died, or was cut off) stops counting after
//! `CANDIDATE_FRESH_MS`, and the next earliest consumer is served. A new leader learns the
//! other nodes' consumers from their next request; a leader that took the queue over from
//! another serves no consumer for `SETTLE_MS`, so that every node with a consumer has asked
//! it before it chooses (the queue's first leader has no consumers to wait for). Taking
//! over counts what the node saw before a restart too: a node restarted alone that leads
//! before it has followed anyone since knows the last leader from the vote it saved
//! (`queue_feed::led_by_another`), so it waits as well; after a whole cluster was down,
//! so does every first leader but the one that led last. The window ends with a dispatch
//! (`expiry::run_queue_timers` keeps it among the queue's timed work).

use serde::{Deserialize, Serialize};

use super::queue::replica::RemoteHolder;
use super::queue::Queue;

/// How long a node's earliest consumer counts after the node last asked. A node with
/// consumers asks at least every second (the bridge's lease), more often while they have
/// room.
pub const CANDIDATE_FRESH_MS: u64 = 3_000;

/// How long a leader that took a single-active-consumer queue over from another serves no
/// consumer: a node whose consumers have room asks the new leader as soon as it knows it
/// (its next tick, 50 ms), one whose consumers have none within a second (the bridge's
/// lease); half a second more for the node to learn who leads.
pub const SETTLE_MS: u64 = 1_500;

/// A node's earliest consumer of a single-active-consumer queue, as it tells the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstConsumer {
    /// The consumer's serial on that node: another serial is another consumer.
    pub serial: u64,
    /// How long ago it subscribed (milliseconds).
    pub age_ms: u64,
}

/// A node's earliest consumer as the leader places it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub serial: u64,
    /// When it subscribed, on the leader's clock (milliseconds since the epoch).
    pub since: u64,
}

/// Whose consumer a single-active-consumer queue this node leads serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    /// One of this node's consumers (or no consumer anywhere yet).
    Here,
    /// Node `n`'s earliest consumer.
    Node(u64),
    /// None yet: a new leader waits for the other nodes' consumers (`SETTLE_MS`).
    Settling,
}

/// This node's earliest consumer of `q`, if `q` has a single active consumer.
pub fn first_consumer(q: &Queue) -> Option<FirstConsumer> {
    if !q.features.single_active_consumer {
        return None;
    }
    let c = q.consumers.first()?;
    Some(FirstConsumer {
        serial: c.serial,
        age_ms: c.subscribed.elapsed().as_millis() as u64,
    })
}

/// On the leader: records what a node said of its earliest consumer at `now`.
pub fn register(holder: &mut RemoteHolder, first: Option<FirstConsumer>, now: u64) {
    holder.candidate = first.map(|f| match holder.candidate {
        // The same consumer: its place stays as first placed (a later estimate differs
        // by the request's travel time only).
        Some(c) if c.serial == f.serial => c,
        _ => Candidate {
            serial: f.serial,
            since: now.saturating_sub(f.age_ms),
        },
    });
}

/// Who is served on `q` if this node leads it and it has a single active consumer
/// (`None` otherwise): the earliest subscribed of this node's first consumer and the
/// candidates of the nodes that asked within `CANDIDATE_FRESH_MS`.
pub fn active(q: &Queue, now: u64) -> Option<Active> {
    if !q.features.single_active_consumer {
        return None;
    }
    let r = q.quorum.as_ref()?.replica.as_ref()?;
    if !r.leading {
        return None;
    }
    if now < r.sac_settling_until {
        return Some(Active::Settling);
    }
    let here = first_consumer(q).map(|f| (now.saturating_sub(f.age_ms), 0, Active::Here));
    let remote = r
        .remote
        .iter()
        .filter(|(_, h)| now.saturating_sub(h.last_seen) <= CANDIDATE_FRESH_MS)
        .filter_map(|(&node, h)| Some((h.candidate?.since, node, Active::Node(node))));
    // Equal times: this node first, then the lower node id (any fixed order would do).
    let earliest = here.into_iter().chain(remote).min_by_key(|c| (c.0, c.1));
    Some(earliest.map_or(Active::Here, |c| c.2))
}

/// Whether this node's own consumers of `q` may be served now (false while another
/// node's consumer is the active one).
pub fn serves_here(q: &Queue) -> bool {
    active(q, super::vhost::now_millis()).is_none_or(|a| a == Active::Here)
}

/// On the leader: forgets the candidates of nodes that stopped asking; whether any went.
pub fn forget_stale(q: &mut Queue, now: u64) -> bool {
    let Some(r) = q.quorum.as_mut().and_then(|q| q.replica.as_mut()) else {
        return false;
    };
    let mut gone = false;
    for h in r.remote.values_mut() {
        if h.candidate.is_some() && now.saturating_sub(h.last_seen) > CANDIDATE_FRESH_MS {
            h.candidate = None;
            gone = true;
        }
    }
    gone
}
