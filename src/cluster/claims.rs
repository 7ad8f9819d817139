//! What a node has heard of its peers' beacons (detector.rs): which queue groups each
//! peer claims to lead, in which term and when, which connection carries each peer's
//! beacons, and so which peers are gone.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::detector::LEADER_SILENCE;

/// What a node tells a peer: it is `from` and leads these queue groups, each as
/// `(group, term)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beacon {
    pub from: u64,
    pub leads: Vec<(u64, u64)>,
    /// The queue groups this node holds no copy of and whose messages, lent by their
    /// leader, its consumers hold: a member that takes the lead of one waits for this
    /// node's claim as for a member's (`broker/replica_claims.rs`). Empty from earlier
    /// builds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lent: Vec<u64>,
}

/// When each peer last claimed to lead each queue group open on this node, and in which
/// term: per group, per node. Keyed by group so that the watcher's look at one group
/// reads only that group's few claims, not every claim of every group.
#[derive(Default)]
pub struct Claims {
    by_group: Mutex<HashMap<u64, ClaimsOnGroup>>,
    /// When each peer's last beacon arrived, whatever it claimed.
    heard: Mutex<HashMap<u64, Instant>>,
    /// The connection (`transport::RpcHandler`'s number) each peer's last beacon came on.
    links: Mutex<HashMap<u64, u64>>,
    /// The groups each peer's last beacon said it holds lent messages of (`Beacon::lent`).
    lent: Mutex<HashMap<u64, Vec<u64>>>,
}

/// One group's claims: node -> (when it last claimed the group, in which term).
type ClaimsOnGroup = HashMap<u64, (Instant, u64)>;

impl Claims {
    /// Records `beacon`'s claims on the groups in `open` (others are not held here), and
    /// that the peer's beacons come on connection `conn`.
    pub fn record(&self, conn: u64, beacon: &Beacon, open: impl Fn(u64) -> bool, now: Instant) {
        self.links
            .lock()
            .expect("beacon links")
            .insert(beacon.from, conn);
        self.heard
            .lock()
            .expect("beacons heard")
            .insert(beacon.from, now);
        {
            let mut lent = self.lent.lock().expect("lent holdings");
            match beacon.lent.is_empty() {
                true => lent.remove(&beacon.from),
                false => lent.insert(beacon.from, beacon.lent.clone()),
            };
        }
        let mut claims = self.by_group.lock().expect("claims");
        for (group, term) in beacon.leads.iter().copied().filter(|(g, _)| open(*g)) {
            claims
                .entry(group)
                .or_default()
                .insert(beacon.from, (now, term));
        }
    }

    /// The last claim on `group` in `term` or a later one, from any node. A node deposed
    /// while it was cut off claims its old group in its old term until it hears of the
    /// new one: that must not keep a follower that knows the new term waiting for a new
    /// leader that died. A leader of a newer term than the follower has heard of yet (its
    /// first append still on the way, under load) does count.
    pub(super) fn last(&self, group: u64, term: u64) -> Option<Instant> {
        let claims = self.by_group.lock().expect("claims");
        claims
            .get(&group)?
            .values()
            .filter(|(_, t)| *t >= term)
            .map(|(at, _)| *at)
            .max()
    }

    /// Whether `me` and the other `voters` whose beacons arrived within the silence are
    /// a majority of `voters`. A node cut off from the rest must not stand: it cannot
    /// win, and each stand raises its term, which then deposes the group's new leader
    /// when the node comes back (openraft has no pre-vote; this is the detector's).
    pub(super) fn majority_heard(
        &self,
        me: u64,
        voters: impl Iterator<Item = u64>,
        now: Instant,
    ) -> bool {
        let heard = self.heard.lock().expect("beacons heard");
        let (mut all, mut reached) = (0usize, 0usize);
        for v in voters {
            all += 1;
            let recent = heard
                .get(&v)
                .is_some_and(|at| now.saturating_duration_since(*at) < LEADER_SILENCE);
            if v == me || recent {
                reached += 1;
            }
        }
        reached * 2 > all
    }

    /// Whether `peer` is gone as far as this node knows: its beacons came, and the
    /// connection that carried them has ended with none since. A peer never heard from
    /// (this node has just started) is not known to be gone.
    pub fn gone(&self, peer: u64) -> bool {
        let linked = self.links.lock().expect("beacon links").contains_key(&peer);
        !linked
            && self
                .heard
                .lock()
                .expect("beacons heard")
                .contains_key(&peer)
    }

    /// The connection `peer`'s beacons come on (`None`: none since the last one closed).
    /// A restarted peer's come on a new one.
    pub fn link(&self, peer: u64) -> Option<u64> {
        self.links.lock().expect("beacon links").get(&peer).copied()
    }

    /// The peers whose last beacon said their consumers hold messages of `group` lent
    /// to them.
    pub fn lent_holders(&self, group: u64) -> Vec<u64> {
        let lent = self.lent.lock().expect("lent holdings");
        let mut peers: Vec<u64> = lent
            .iter()
            .filter(|(_, groups)| groups.contains(&group))
            .map(|(peer, _)| *peer)
            .collect();
        peers.sort_unstable();
        peers
    }

    /// Connection `conn` ended: the peer whose beacons came on it, unless a beacon of that
    /// peer has come on another connection since (it dialled again, or restarted).
    pub fn link_closed(&self, conn: u64) -> Option<u64> {
        let mut links = self.links.lock().expect("beacon links");
        let peer = links.iter().find(|(_, c)| **c == conn).map(|(p, _)| *p)?;
        links.remove(&peer);
        Some(peer)
    }

    /// Drops what is known of groups no longer open here.
    pub(super) fn keep(&self, open: &HashSet<u64>) {
        self.by_group
            .lock()
            .expect("claims")
            .retain(|g, _| open.contains(g));
    }
}
