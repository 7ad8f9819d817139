//! Who notices that a quorum queue's leader is gone: one beacon per node pair, not a
//! heartbeat per group.
//!
//! openraft's own timers send every group's heartbeat to every follower, and each
//! follower elects when its group's heartbeats stop. With a thousand queues that is
//! thousands of requests a second on an idle cluster, and under load a group's heartbeat
//! can wait behind its appends long enough for a healthy leader to look dead. RabbitMQ's
//! Raft (Ra) watches nodes, not groups; so does this:
//!
//! - Queue groups run with openraft's heartbeats and election timer off
//!   (`queue_raft_config`). Appends and commit notices still flow as entries are written.
//! - Every `BEACON_EVERY` each node tells each peer which queue groups it leads and in
//!   which term (`RpcKind::Beacon`). The receiver records, per group and peer, when the
//!   peer last claimed it and in which term (`Claims`), on the connection's reading task.
//!   Beacons have a connection of their own to each peer, so they never queue behind the
//!   appends on the groups' link.
//! - Every `CHECK_EVERY` the watcher looks at each group this node follows as a voter.
//!   When no node has claimed it in this node's term or a later one for `LEADER_SILENCE`
//!   (counted from when this node entered that term, at the earliest)
//!   plus a pause of its own (random per group and attempt, so the followers of a dead
//!   node's groups do not all stand at once and split the votes), it stands for election
//!   (`trigger().elect()`), and again after another silence if that failed. A group just
//!   opened is given `NEW_GROUP_GRACE` first, unless its log shows it has had a leader
//!   before (a node restarting with its groups): there the grace only held back the
//!   member most likely to hold the longest log.
//! - A refused stand changes the next one (`vote_refusals.rs`): refused by a longer log,
//!   the node holds back so that the longer log stands first; refused only by a newer
//!   term that has no leader, or in its own term by a rival with no longer a log, it
//!   stands again in a term above it after its pause.
//! - A leader deposed by a newer term in which it knows of no leader (a follower stood
//!   while it was paused or slow, and has not won) stands again after its pause alone:
//!   its log is the most likely to be the longest, and a whole silence from its
//!   step-down let the others' stands fail against its log first.
//! - A node stands only while it hears beacons from enough of the group's voters to
//!   make a majority with itself (`Claims::majority_heard`), a pre-vote of sorts: cut
//!   off, it would only raise its term, and depose the new leader on its return.
//! - A follower refuses to vote while its leader's lease runs (`election_timeout_max`
//!   after the leader's last append), so a leader that is only slow keeps its group.
//! - A leader's commit notice to a follower that is unreachable is dropped, not retried,
//!   and without heartbeats an idle group sends nothing else. So when a peer's data
//!   connection is new (it came back, or the link was cut and redialled) this node sends
//!   one heartbeat in every group it leads.
//!
//! The metadata group keeps openraft's timers: it is one group.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::metrics::WaitError;
use openraft::{Raft, ServerState};
use tokio::time::Instant;

use super::checkout::group_number;
pub use super::claims::{Beacon, Claims};
use super::node::ClusterNode;
use super::types::QueueRaft;
use super::vote_refusals::{Refusal, LONGER_LOG_HOLD};
use super::wire::RpcKind;

/// How often a node tells its peers which groups it leads.
pub const BEACON_EVERY: Duration = Duration::from_millis(250);
/// How often the watcher looks at the groups this node follows.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// How long a group may go without a claim before its followers may stand.
pub const LEADER_SILENCE: Duration = Duration::from_millis(2000);
/// The random pause after the silence, per group and attempt, is below this.
const MAX_PAUSE_MS: u64 = 1000;
/// How long a beacon waits for the peer's answer.
const BEACON_TIMEOUT: Duration = Duration::from_secs(2);
/// Beacons to one peer that may wait for their answers at once.
const BEACONS_IN_FLIGHT: usize = 8;
/// A group just opened here is not stood for until this has passed as well as the
/// silence: while many queues are declared at once, the first member's first election
/// can take that long to reach the others.
const NEW_GROUP_GRACE: Duration = Duration::from_secs(5);
/// Entries a queue group's log keeps below its snapshot (`queue_raft_config`).
const KEPT_AFTER_SNAPSHOT: u64 = 128;
/// How long the first member of a new group waits for a leader before standing again: at
/// first briefly (the other members open the group a millisecond or so after it, and a
/// lost first stand held every publish of a new queue for a whole wait: 204 ms at the
/// start of each `cluster_compare.py` run, its p99.9 at 1 KiB), then twice as long each
/// time up to the longest.
const FIRST_ELECTION_RETRY: Duration = Duration::from_millis(5);
const FIRST_ELECTION_RETRY_LONGEST: Duration = Duration::from_millis(200);

/// Raft timing for the quorum queues' groups: no heartbeats and no election timer (the
/// watcher elects); a follower's lease on its leader, `election_timeout_max`, is the
/// time after the leader's last append before it grants another node its vote (shorter
/// than the silence, so the first attempt after a real failure wins). After a snapshot
/// the log keeps `KEPT_AFTER_SNAPSHOT` entries for a follower a little behind (openraft's
/// 1,000 kept over half a gigabyte of a busy group's log on each node: its entries are
/// batches of messages); one further behind installs the snapshot.
pub(super) fn queue_raft_config() -> Arc<openraft::Config> {
    let config = openraft::Config {
        cluster_name: "warren".into(),
        heartbeat_interval: 250,
        election_timeout_min: 750,
        election_timeout_max: 1500,
        enable_heartbeat: false,
        enable_elect: false,
        max_payload_entries: super::wire::MAX_PAYLOAD_ENTRIES,
        max_in_snapshot_log_to_keep: KEPT_AFTER_SNAPSHOT,
        ..Default::default()
    };
    Arc::new(config.validate().expect("a valid raft config"))
}

/// Run by the first member of a new queue group once it has initialised it (which
/// stands for election): stands again after `FIRST_ELECTION_RETRY`, doubling up to
/// `FIRST_ELECTION_RETRY_LONGEST`, while the group has no
/// leader, until the other members' grace (`NEW_GROUP_GRACE`) is over and their watchers
/// take over. The first member opens the group as soon as it has applied the
/// declaration, and a vote request that reaches a member before that member has opened
/// it is refused (no such group). Queue groups have no election timer, so a first
/// election lost that way left the queue without a leader for the grace and a silence,
/// about 8 s: every quorum queue declared through its first member, in most runs of
/// `tools/cluster_compare.py`.
pub(super) async fn lead_new_group(raft: Raft<QueueRaft>) {
    let deadline = Instant::now() + NEW_GROUP_GRACE;
    let mut retry = FIRST_ELECTION_RETRY;
    while Instant::now() < deadline {
        let led = raft
            .wait(Some(retry))
            .metrics(|m| m.current_leader.is_some(), "a first leader")
            .await;
        match led {
            Ok(_) => return,
            Err(WaitError::Timeout(..)) => {}
            Err(WaitError::ShuttingDown) => return,
        }
        if raft.trigger().elect().await.is_err() {
            return;
        }
        retry = (retry * 2).min(FIRST_ELECTION_RETRY_LONGEST);
    }
}

/// Whether a follower stands for election in a group: no claim that counts (`last_claim`,
/// see `Claims::last`) since `max(last_claim, since)` (`since`: when the watcher began
/// watching the group, plus its grace, or its last attempt) for the silence and this
/// group's `pause`.
pub fn should_stand(
    now: Instant,
    last_claim: Option<Instant>,
    since: Instant,
    pause: Duration,
) -> bool {
    let heard = last_claim.map_or(since, |c| c.max(since));
    now.saturating_duration_since(heard) >= LEADER_SILENCE + pause
}

/// A pause below `MAX_PAUSE_MS`, different per node, group and attempt (a mix of them
/// and a seed drawn at start, so two nodes or two restarts do not pick alike).
fn pause(seed: u64, group: u64, attempt: u64) -> Duration {
    let mut x = seed ^ group.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ attempt.rotate_left(32);
    // splitmix64's finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    Duration::from_millis(x % MAX_PAUSE_MS)
}

/// The watcher's record of one group.
struct Watch {
    since: Instant,
    attempt: u64,
    pause: Duration,
    /// This node's term in the group when last looked at.
    term: u64,
    /// Its last stand was refused by a stale term only (`vote_refusals.rs`): the
    /// refuser's term, and when. Once this node is in that term it stands again after
    /// its pause alone, unless it has learnt of a leader or a silence has passed.
    stand_again: Option<(u64, Instant)>,
    /// When it last stood again that way: at most once a silence, so two nodes that keep
    /// raising each other's term still meet the ordinary silence.
    stood_again: Option<Instant>,
    /// This node led the group when last looked at.
    leading: bool,
}

impl Watch {
    fn new(since: Instant, pause: Duration) -> Watch {
        Watch {
            since,
            attempt: 0,
            pause,
            term: 0,
            stand_again: None,
            stood_again: None,
            leading: false,
        }
    }

    /// Takes in what the watcher found: this node's term, whether it leads, whether it
    /// knows the term's leader (`enter_term`). A leader that finds itself deposed into a
    /// term with no leader known stands again as after a stale-term refusal (module doc):
    /// in the 1,000-fault run of stop 41 a leader paused for two seconds came back to a
    /// follower's failed stand, and the group waited 5.5 s, until a whole silence after
    /// its step-down, for the one node whose log could win.
    fn look(&mut self, term: u64, leading: bool, leader_known: bool, now: Instant) {
        let was_leading = std::mem::replace(&mut self.leading, leading);
        if was_leading && !leading && !leader_known {
            self.stand_again = Some((term, now));
        }
        self.enter_term(term, leader_known, now);
    }

    /// Takes in this node's term as the watcher found it, and whether it knows the
    /// term's leader. A term just entered (it voted in an election, or heard of a newer
    /// leader) restarts the silence: no one can have claimed the group in it yet, and
    /// without this a follower that has just voted for a winner would stand against it
    /// before the winner's first beacon arrives. The exception is the term of a
    /// stale-term refusal: no one was voted leader in it by this node, and waiting the
    /// silence there is what let a shorter log keep raising the term.
    fn enter_term(&mut self, term: u64, leader_known: bool, now: Instant) {
        if term != self.term {
            self.term = term;
            self.since = self.since.max(now);
        }
        let Some((refused_in, at)) = self.stand_again else {
            return;
        };
        let expired = now.saturating_duration_since(at) >= LEADER_SILENCE;
        if leader_known || expired {
            self.stand_again = None;
            return;
        }
        if term < refused_in {
            return; // not in the refuser's term yet
        }
        self.stand_again = None;
        let once_a_silence = self
            .stood_again
            .is_none_or(|t| now.saturating_duration_since(t) >= LEADER_SILENCE);
        // `since` after `now` is a grace or a longer log's hold: those win.
        if let Some(silence_ago) = now.checked_sub(LEADER_SILENCE) {
            if once_a_silence && self.since <= now {
                self.stood_again = Some(now);
                self.since = silence_ago;
            }
        }
    }

    /// A peer refused this node's last stand (`vote_refusals.rs`): a longer log holds it
    /// back; a stale term makes it stand again when it is in that term.
    fn refused(&mut self, refusal: Refusal, at: Instant) {
        match refusal {
            Refusal::LongerLog => {
                self.stand_again = None;
                self.since = self.since.max(at + LONGER_LOG_HOLD);
            }
            Refusal::StaleTerm { term } => self.stand_again = Some((term, at)),
        }
    }

    /// This node stands now.
    fn stand(&mut self, seed: u64, group: u64, now: Instant) {
        self.since = now;
        self.attempt += 1;
        self.pause = pause(seed, group, self.attempt);
        self.stand_again = None;
    }
}

impl ClusterNode {
    /// Records a peer's beacon, which came on connection `conn` (on the connection's
    /// reading task: no waiting here).
    pub(super) fn receive_beacon(&self, conn: u64, beacon: &Beacon) {
        let groups = self.queue_groups.read().expect("groups");
        self.claims
            .record(conn, beacon, |g| groups.contains_key(&g), Instant::now());
    }

    /// The queue groups this node leads now, with their terms.
    fn groups_led(&self) -> Vec<(u64, u64)> {
        let groups = self.queue_groups.read().expect("groups");
        groups
            .iter()
            .filter_map(|(id, g)| {
                let m = g.raft.metrics();
                let m = m.borrow();
                (m.state == ServerState::Leader).then_some((*id, m.current_term))
            })
            .collect()
    }

    /// Sends this node's beacon to every other node every `BEACON_EVERY`. A beacon does
    /// not wait for the one before it to be answered (under load an answer can take longer
    /// than the silence, and the next beacon must still go), but at most
    /// `BEACONS_IN_FLIGHT` wait per peer, so one that does not answer is not sent a pile.
    pub(super) async fn send_beacons(self: Arc<Self>) {
        let me = self.config.node_id;
        let mut sending: HashMap<u64, Vec<tokio::task::JoinHandle<()>>> = HashMap::new();
        let mut generations: HashMap<u64, u64> = HashMap::new();
        let mut tick = tokio::time::interval(BEACON_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut targets = self.cluster_addresses().await;
            for (id, addr) in &self.config.peers {
                targets.entry(*id).or_insert_with(|| addr.clone());
            }
            targets.remove(&me);
            let led = self.groups_led();
            let body = match serde_json::to_vec(&Beacon {
                from: me,
                leads: led.clone(),
                lent: self.lent_groups(),
            }) {
                Ok(b) => Arc::new(b),
                Err(_) => continue,
            };
            let mut redialled = false;
            for (id, addr) in targets {
                let peer = self.peers.peer(id, &addr);
                if generations.insert(id, peer.generation()) != Some(peer.generation()) {
                    redialled = true;
                }
                let waiting = sending.entry(id).or_default();
                waiting.retain(|t| !t.is_finished());
                if waiting.len() >= BEACONS_IN_FLIGHT {
                    continue;
                }
                let body = body.clone();
                let peer = self.peers.control_peer(id, &addr);
                waiting.push(tokio::spawn(async move {
                    let _ = peer.call(RpcKind::Beacon, "", &body, BEACON_TIMEOUT).await;
                }));
            }
            if redialled {
                self.nudge_followers(&led).await;
            }
        }
    }

    /// One heartbeat in each of `led`: it carries the commit index to a follower that
    /// missed the notice while it was cut off.
    async fn nudge_followers(&self, led: &[(u64, u64)]) {
        let groups: Vec<_> = {
            let open = self.queue_groups.read().expect("groups");
            led.iter()
                .filter_map(|(g, _)| open.get(g).cloned())
                .collect()
        };
        for g in groups {
            let _ = g.raft.trigger().heartbeat().await;
        }
    }

    /// Stands for election in each group this node follows as a voter whose leader has
    /// not been heard of for the silence and the group's pause; see the module's doc.
    pub(super) async fn watch_leaders(self: Arc<Self>) {
        let me = self.config.node_id;
        let mut seed = [0u8; 8];
        // The pauses only spread elections out; without the OS's randomness the node id
        // still makes them differ between nodes.
        let _ = getrandom::fill(&mut seed);
        let seed = u64::from_le_bytes(seed) ^ me;
        let mut watches: HashMap<u64, Watch> = HashMap::new();
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let groups: Vec<_> = {
                let open = self.queue_groups.read().expect("groups");
                open.iter().map(|(id, g)| (*id, g.clone())).collect()
            };
            let open: HashSet<u64> = groups.iter().map(|(id, _)| *id).collect();
            watches.retain(|g, _| open.contains(g));
            self.claims.keep(&open);
            let now = Instant::now();
            for (name, at, refusal) in self.peers.refusals.take() {
                let watch = group_number(&name).and_then(|id| watches.get_mut(&id));
                if let Some(w) = watch {
                    tracing::debug!(group = %name, ?refusal, "cluster: vote refused");
                    w.refused(refusal, at);
                }
            }
            let mut standing = Vec::new();
            for (id, group) in groups {
                let (leading, voter, term, leader_known, led_before) = {
                    let m = group.raft.metrics();
                    let m = m.borrow();
                    let voter = m
                        .membership_config
                        .membership()
                        .voter_ids()
                        .any(|v| v == me);
                    (
                        m.state == ServerState::Leader,
                        voter,
                        m.current_term,
                        m.current_leader.is_some(),
                        // Entry 0 is the membership a new group starts with; any later
                        // one was written by a leader.
                        m.last_log_index.is_some_and(|i| i > 0),
                    )
                };
                let w = watches.entry(id).or_insert_with(|| {
                    let grace = if led_before {
                        Duration::ZERO
                    } else {
                        NEW_GROUP_GRACE
                    };
                    Watch::new(now + grace, pause(seed, id, 0))
                });
                w.look(term, leading, leader_known, now);
                if leading || !voter {
                    w.since = now;
                    w.stand_again = None;
                    continue;
                }
                let claimed = self.claims.last(id, term);
                if should_stand(now, claimed, w.since, w.pause) {
                    let reachable = {
                        let m = group.raft.metrics();
                        let m = m.borrow();
                        let voters = m.membership_config.membership().voter_ids();
                        self.claims.majority_heard(me, voters, now)
                    };
                    if reachable {
                        w.stand(seed, id, now);
                        standing.push((id, group));
                    }
                }
            }
            if standing.is_empty() {
                continue;
            }
            tracing::info!(
                groups = standing.len(),
                first = standing[0].0,
                "cluster: no word from the leader of {} quorum queue group(s) for {} ms; standing for election",
                standing.len(),
                LEADER_SILENCE.as_millis()
            );
            for (_, group) in standing {
                let _ = group.raft.trigger().elect().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_follower_stands_only_after_the_silence_and_its_pause() {
        let t0 = Instant::now();
        let pause = ms(300);
        // Claimed just now: no.
        assert!(!should_stand(t0 + ms(10), Some(t0), t0, pause));
        // Claimed 2.2 s ago, pause 0.3 s: not yet; at 2.3 s: yes.
        assert!(!should_stand(t0 + ms(2200), Some(t0), t0, pause));
        assert!(should_stand(t0 + ms(2300), Some(t0), t0, pause));
        // Never claimed: counted from when the watch began.
        assert!(!should_stand(t0 + ms(1000), None, t0, pause));
        assert!(should_stand(t0 + ms(2300), None, t0, pause));
        // A later claim restarts the count.
        assert!(!should_stand(t0 + ms(2300), Some(t0 + ms(1000)), t0, pause));
        // After an attempt (`since` moved on), an old claim does not make it stand again.
        assert!(!should_stand(t0 + ms(2500), Some(t0), t0 + ms(2300), pause));
        assert!(should_stand(t0 + ms(4600), Some(t0), t0 + ms(2300), pause));
        // A new group's watch begins in the future (its grace): no stand before it.
        assert!(!should_stand(t0 + ms(4000), None, t0 + ms(5000), pause));
    }

    #[test]
    fn a_new_term_restarts_the_silence() {
        let t0 = Instant::now();
        let mut w = Watch::new(t0, ms(300));
        w.term = 4;
        // Ten seconds on in term 4 with no claim: it would stand.
        let later = t0 + ms(10_000);
        assert!(should_stand(later, None, w.since, w.pause));
        // It voted for another node in term 5 just now: not before that node had the
        // silence to claim the group.
        w.enter_term(5, false, later);
        assert_eq!(w.since, later);
        assert!(!should_stand(later + ms(100), None, w.since, w.pause));
        assert!(should_stand(later + ms(2300), None, w.since, w.pause));
        // The same term again changes nothing; a grace still running is kept.
        w.enter_term(5, false, later + ms(1000));
        assert_eq!(w.since, later);
        let mut fresh = Watch::new(t0 + ms(5000), ms(0));
        fresh.enter_term(1, false, t0);
        assert_eq!(fresh.since, t0 + ms(5000));
    }

    #[test]
    fn a_stale_term_refusal_stands_again_after_the_pause_once_a_silence() {
        let t0 = Instant::now() + ms(10_000);
        let mut w = Watch::new(t0, ms(0));
        w.term = 4;
        // It stands in term 5 at t0; a peer in term 9 with no leader and no longer log
        // refuses; it moves to term 9.
        w.stand(1, 7, t0);
        w.enter_term(5, false, t0);
        w.refused(Refusal::StaleTerm { term: 9 }, t0 + ms(5));
        // Still in term 5 (openraft has not moved it yet): nothing changes.
        w.enter_term(5, false, t0 + ms(7));
        assert_eq!(w.since, t0);
        w.enter_term(9, false, t0 + ms(10));
        let pause = w.pause;
        assert!(should_stand(t0 + ms(10) + pause, None, w.since, pause));
        assert!(!should_stand(t0 + ms(9) + pause, None, w.since, pause));
        // Standing again (term 10) and refused the same way within the silence: this
        // time it waits the silence in term 12.
        w.stand(1, 7, t0 + ms(500));
        w.refused(Refusal::StaleTerm { term: 12 }, t0 + ms(505));
        w.enter_term(12, false, t0 + ms(510));
        assert_eq!(w.since, t0 + ms(510));
        // A term entered with no such refusal (it voted) restarts the silence as before.
        w.enter_term(13, false, t0 + ms(5000));
        assert_eq!(w.since, t0 + ms(5000));
    }

    #[test]
    fn a_rival_in_the_same_term_makes_it_stand_again_unless_a_leader_is_known() {
        let t0 = Instant::now() + ms(10_000);
        let mut w = Watch::new(t0, ms(0));
        w.term = 4;
        // It stands in term 5; the watcher sees term 5 before the refusal arrives.
        w.stand(1, 7, t0);
        w.enter_term(5, false, t0 + ms(1));
        // A rival standing in term 5 with a shorter log refuses it: it is in that term
        // already, so it stands again after its pause.
        w.refused(Refusal::StaleTerm { term: 5 }, t0 + ms(3));
        w.enter_term(5, false, t0 + ms(100));
        assert!(should_stand(t0 + ms(100) + w.pause, None, w.since, w.pause));
        // The same with a leader known by the time the watcher looks: the ordinary
        // silence from the stand.
        let mut led = Watch::new(t0, ms(0));
        led.term = 4;
        led.stand(1, 7, t0);
        led.enter_term(5, false, t0 + ms(1));
        led.refused(Refusal::StaleTerm { term: 5 }, t0 + ms(3));
        led.enter_term(5, true, t0 + ms(100));
        assert_eq!(led.since, t0 + ms(1));
        assert!(led.stand_again.is_none());
        // A refusal left unused for a silence (it never reached that term) is dropped.
        let mut old = Watch::new(t0, ms(0));
        old.term = 4;
        old.stand(1, 7, t0);
        old.refused(Refusal::StaleTerm { term: 9 }, t0 + ms(3));
        old.enter_term(5, false, t0 + ms(3) + LEADER_SILENCE);
        assert!(old.stand_again.is_none());
        old.enter_term(9, false, t0 + ms(2100));
        assert_eq!(old.since, t0 + ms(2100));
    }

    #[test]
    fn a_deposed_leader_that_knows_no_leader_stands_again_after_its_pause() {
        let t0 = Instant::now() + ms(10_000);
        let mut w = Watch::new(t0, ms(200));
        w.look(4, true, true, t0);
        // A leader's watch keeps moving on.
        w.since = t0 + ms(900);
        // Deposed into term 5 at t0 + 1 s by a stand that has not won: after its pause.
        let at = t0 + ms(1000);
        w.look(5, false, false, at);
        assert!(!should_stand(at + ms(199), None, w.since, w.pause));
        assert!(should_stand(at + ms(200), None, w.since, w.pause));
        // Deposed by a leader it knows (its append came): the ordinary silence.
        let mut known = Watch::new(t0, ms(200));
        known.look(4, true, true, t0);
        known.look(5, false, true, at);
        assert_eq!(known.since, at);
        assert!(known.stand_again.is_none());
        // A follower that never led entering a term with no leader known: the silence.
        let mut follower = Watch::new(t0, ms(200));
        follower.look(4, false, true, t0);
        follower.look(5, false, false, at);
        assert_eq!(follower.since, at);
        // Once a silence: a node that stood again just now waits the silence this time.
        let mut again = Watch::new(t0, ms(200));
        again.look(4, true, true, t0);
        again.stood_again = Some(at - ms(500));
        again.look(5, false, false, at);
        assert_eq!(again.since, at);
    }

    #[test]
    fn a_longer_log_refusal_holds_the_next_stand_back() {
        let t0 = Instant::now() + ms(10_000);
        let mut w = Watch::new(t0, ms(0));
        w.term = 4;
        w.stand(1, 7, t0);
        w.enter_term(5, false, t0);
        w.refused(Refusal::LongerLog, t0 + ms(5));
        // Another peer's stale-term refusal does not cut the hold short.
        w.refused(Refusal::StaleTerm { term: 9 }, t0 + ms(6));
        w.enter_term(9, false, t0 + ms(10));
        assert_eq!(w.since, t0 + ms(5) + LONGER_LOG_HOLD);
        let earliest = t0 + ms(5) + LONGER_LOG_HOLD + LEADER_SILENCE + w.pause;
        assert!(!should_stand(earliest - ms(1), None, w.since, w.pause));
        assert!(should_stand(earliest, None, w.since, w.pause));
    }

    #[test]
    fn claims_count_from_the_followers_term_on_and_for_open_groups_only() {
        let claims = Claims::default();
        let t0 = Instant::now();
        let t1 = t0 + ms(500);
        let beacon = Beacon {
            from: 2,
            leads: vec![(1, 4), (5, 4), (9, 7)],
            lent: Vec::new(),
        };
        claims.record(1, &beacon, |g| g != 5, t0);
        assert_eq!(claims.last(1, 4), Some(t0));
        assert_eq!(
            claims.last(1, 3),
            Some(t0),
            "a newer term than the follower's counts"
        );
        assert_eq!(
            claims.last(1, 5),
            None,
            "a deposed leader's old term does not"
        );
        assert_eq!(claims.last(5, 4), None, "group 5 is not open");
        // Node 3 leads group 1 in term 5 (node 2 has not heard): the follower in term 5
        // hears node 3; one still in term 4 hears the later of the two.
        let newer = Beacon {
            from: 3,
            leads: vec![(1, 5)],
            lent: Vec::new(),
        };
        claims.record(1, &newer, |_| true, t1);
        assert_eq!(claims.last(1, 5), Some(t1));
        assert_eq!(claims.last(1, 4), Some(t1));
        claims.keep(&HashSet::from([9]));
        assert_eq!(claims.last(1, 4), None);
        assert_eq!(claims.last(9, 7), Some(t0));
    }

    /// A leader taking over waits for the nodes whose last beacon says they hold
    /// messages of its group lent to them; a later beacon without the group takes that
    /// back. An earlier build's beacon (no `lent`) holds none.
    #[test]
    fn beacons_say_which_groups_a_node_holds_lent_messages_of() {
        let claims = Claims::default();
        let t0 = Instant::now();
        let holding = |from, lent| Beacon {
            from,
            leads: Vec::new(),
            lent,
        };
        claims.record(1, &holding(3, vec![7, 9]), |_| true, t0);
        claims.record(2, &holding(2, vec![9]), |_| true, t0);
        assert_eq!(claims.lent_holders(9), [2, 3]);
        assert_eq!(claims.lent_holders(7), [3]);
        claims.record(1, &holding(3, Vec::new()), |_| true, t0);
        assert_eq!(claims.lent_holders(9), [2]);
        assert!(claims.lent_holders(7).is_empty());
        let earlier: Beacon = serde_json::from_str(r#"{"from": 2, "leads": []}"#).unwrap();
        claims.record(2, &earlier, |_| true, t0);
        assert!(claims.lent_holders(9).is_empty());
        let sent = serde_json::to_string(&holding(4, Vec::new())).unwrap();
        assert!(!sent.contains("lent"), "{sent}: as earlier builds read it");
    }

    #[test]
    fn a_node_stands_only_while_it_hears_a_majority_of_the_voters() {
        let claims = Claims::default();
        let t0 = Instant::now();
        let beacon = |from| Beacon {
            from,
            leads: Vec::new(),
            lent: Vec::new(),
        };
        // Node 1 of {1, 2, 3} has heard no one: alone it is not a majority.
        assert!(!claims.majority_heard(1, [1, 2, 3].into_iter(), t0));
        // An empty beacon from node 3 counts: two of three.
        claims.record(1, &beacon(3), |_| true, t0);
        assert!(claims.majority_heard(1, [1, 2, 3].into_iter(), t0 + ms(100)));
        // Of five voters, two are not a majority; three are.
        assert!(!claims.majority_heard(1, [1, 2, 3, 4, 5].into_iter(), t0 + ms(100)));
        claims.record(1, &beacon(5), |_| true, t0 + ms(50));
        assert!(claims.majority_heard(1, [1, 2, 3, 4, 5].into_iter(), t0 + ms(100)));
        // A beacon older than the silence no longer counts (the node was cut off).
        let later = t0 + LEADER_SILENCE + ms(10);
        assert!(!claims.majority_heard(1, [1, 2, 3].into_iter(), later));
        // A peer outside the group's voters does not make a majority of it.
        claims.record(1, &beacon(4), |_| true, later);
        assert!(!claims.majority_heard(1, [1, 2, 3].into_iter(), later));
    }

    #[test]
    fn a_closed_link_names_its_peer_unless_a_newer_link_carries_its_beacons() {
        let claims = Claims::default();
        let t0 = Instant::now();
        let beacon = |from| Beacon {
            from,
            leads: Vec::new(),
            lent: Vec::new(),
        };
        claims.record(7, &beacon(2), |_| true, t0);
        claims.record(8, &beacon(3), |_| true, t0);
        assert_eq!(claims.link_closed(9), None, "no beacon came on it");
        assert_eq!(claims.link_closed(7), Some(2));
        assert_eq!(claims.link_closed(7), None, "said once");
        // Node 3 dialled again (or restarted) before its old connection's end was seen.
        claims.record(10, &beacon(3), |_| true, t0 + ms(10));
        assert_eq!(
            claims.link(3),
            Some(10),
            "a restarted peer's beacons: a new link"
        );
        assert_eq!(claims.link_closed(8), None);
        assert_eq!(claims.link_closed(10), Some(3));
        assert_eq!(claims.link(3), None);
    }

    #[test]
    fn pauses_differ_by_group_attempt_and_seed_and_stay_below_the_bound() {
        let mut seen = HashSet::new();
        for seed in [1u64, 2] {
            for group in 0..50 {
                for attempt in 0..4 {
                    let p = pause(seed, group, attempt);
                    assert!(p < ms(MAX_PAUSE_MS));
                    seen.insert(p);
                }
            }
        }
        // 400 draws from 1,000 values: nearly all distinct if they are spread.
        assert!(seen.len() > 250, "only {} distinct pauses", seen.len());
    }
}
