//! What keeps the broker's copy of one quorum queue in step with its group: the feed
//! applies what the group commits (and follows its leadership), and writes what is
//! published and settled on this node to the group in batches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::ServerState;

use crate::broker::confirms::ReplicaTickets;
use crate::broker::queue::replica::{self as broker_replica, GroupMessage, ReplicaWork};
use crate::broker::replica_takeover::Cluster;
use crate::broker::replicated::CommittedReturns;
use crate::broker::DeathReason;
use crate::cluster::checkout::group_number;
use crate::cluster::machine::Tapped;
use crate::cluster::queue_groups::OpenedQueue;
use crate::cluster::queue_machine::{Held, QueueState};
use crate::cluster::snapshot_bodies::{self, SnapshotBodies};
use crate::cluster::types::{message_id, DeadMark, OutMark, QueueCommand, WriteId};

use super::GroupTarget;

/// Most messages written to a group in one entry.
const WRITE_BATCH: usize = 4096;
/// Messages read from a queue group's log at a time as the broker's copy is rebuilt (a step
/// runs on to the end of its last entry).
const REBUILD_STEP: usize = 256;
/// Most bytes of messages in one entry (a larger message goes alone). Every entry must
/// reach a follower within one append's time (openraft's `heartbeat_interval`, 250 ms):
/// 80 MiB published at once went as one entry, and a member that had been away was sent
/// it again after every timeout, never catching up.
const WRITE_BATCH_BYTES: usize = 4 << 20;

/// `messages` cut into runs of at most `WRITE_BATCH` messages and `WRITE_BATCH_BYTES`
/// bytes (of `len` each), in order; a run holds one message at least.
pub(super) fn batches<T>(messages: &[T], len: impl Fn(&T) -> usize) -> impl Iterator<Item = &[T]> {
    let mut rest = messages;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let n = rest
            .iter()
            .take(WRITE_BATCH)
            .take_while(|m| {
                bytes += len(m);
                bytes <= WRITE_BATCH_BYTES
            })
            .count()
            .max(1);
        let (run, left) = rest.split_at(n);
        rest = left;
        Some(run)
    })
}

/// How long a writer waits before it writes again the returns and settles of a round
/// that failed.
const WRITE_AGAIN_PAUSE: Duration = Duration::from_millis(500);

/// This node's numbers for its writers' rounds (`WriteId`): one count for all its
/// queues, so that each number names one round and a queue's rounds are numbered upwards.
pub(super) struct RoundNumbers {
    node: u64,
    started_at: u64,
    last: AtomicU64,
}

impl RoundNumbers {
    /// Numbers for node `node`, started at `started_at` (its `NodeUp`'s).
    pub(super) fn new(node: u64, started_at: u64) -> Self {
        RoundNumbers {
            node,
            started_at,
            last: AtomicU64::new(0),
        }
    }

    /// Whether round `write` is this process's own.
    fn is_mine(&self, (node, id): (u64, WriteId)) -> bool {
        node == self.node && id.started_at == self.started_at
    }

    fn next(&self) -> (u64, WriteId) {
        let seq = self.last.fetch_add(1, Ordering::Relaxed) + 1;
        let started_at = self.started_at;
        (self.node, WriteId { started_at, seq })
    }
}

/// `messages`, enqueued at `enqueued_at`, as a round numbered from `rounds` with nothing
/// riding along.
pub(super) fn numbered_round(
    messages: Vec<Bytes>,
    enqueued_at: u64,
    rounds: &RoundNumbers,
) -> QueueCommand {
    round(messages, Riders::default(), enqueued_at, rounds.next())
}

/// One replicated queue on this node: its broker vhost and name.
#[derive(Clone)]
pub(super) struct QueueFeed {
    pub(super) vhost: crate::broker::VHostHandle,
    pub(super) name: String,
    /// The broker's id of the queue: a queue of that name declared again later is not
    /// this one.
    pub(super) queue_id: u64,
    pub(super) me: u64,
    /// This node: which of its peers are gone, as a leader takes over
    /// (`broker::replica_takeover`).
    pub(super) node: Arc<crate::cluster::node::ClusterNode>,
    /// The last log index applied to the broker's copy (checkout.rs: a member delivers
    /// what the leader grants once its copy is as far as the leader's was).
    pub(super) fed: Arc<AtomicU64>,
    /// Numbers for the writer's rounds.
    pub(super) rounds: Arc<RoundNumbers>,
}

impl QueueFeed {
    /// Runs `f` with what a leader taking over needs to know of the cluster: this node's
    /// process, as the group's `OutMark` names the leader's, which peers are gone, and
    /// the `members` whose claims a leader taking over waits for (the group's voters and
    /// the nodes lent its messages; none where a committed entry, not a change of leader,
    /// moves the mark).
    fn with_cluster<T>(&self, members: &[u64], f: impl FnOnce(&Cluster<'_>) -> T) -> T {
        let gone = |peer| self.node.peer_gone(peer);
        f(&Cluster {
            me: (self.rounds.node, self.rounds.started_at),
            gone: &gone,
            members,
        })
    }
}

/// The group's voters as its Raft's metrics show them (read only at a change of
/// leadership, not at every applied entry).
fn voters<N: openraft::Node>(
    metrics: &tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, N>>,
) -> Vec<u64> {
    metrics
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect()
}

/// Returns of an entry no writer numbered (`Return`, `ReturnBatch`: earlier builds).
fn unnumbered(ids: &[u64]) -> CommittedReturns<'_> {
    CommittedReturns {
        ids,
        seen: &[],
        from: None,
        mine: false,
        stale: &[],
    }
}

/// The messages of the entry at `index`, enqueued at `enqueued_at`, with their group ids.
fn ids_of(index: u64, messages: &[Bytes], enqueued_at: u64) -> Vec<GroupMessage<'_>> {
    messages
        .iter()
        .enumerate()
        .map(|(k, msg)| GroupMessage {
            id: message_id(index, k),
            stored: msg.as_ref(),
            returns: 0,
            enqueued_at,
        })
        .collect()
}

/// A dead letter of the group as the broker takes it (the broker's reason codes are the
/// group's: `group_and_broker_codes_agree`).
fn broker_mark(m: &DeadMark) -> broker_replica::DeadMark {
    (m.id, DeathReason::from_code(m.reason), m.died_at)
}

/// A dead letter of the broker as the group records it.
fn group_mark(&(id, reason, died_at): &broker_replica::DeadMark) -> DeadMark {
    DeadMark {
        id,
        reason: reason.code(),
        died_at,
    }
}

/// The dead letters among `ids` of a queue state, as the broker takes them.
fn marks_of<'a>(
    state: &QueueState,
    ids: impl IntoIterator<Item = &'a u64>,
) -> Vec<broker_replica::DeadMark> {
    ids.into_iter()
        .filter_map(|id| state.messages.get(id)?.dead.as_ref().map(broker_mark))
        .collect()
}

/// Whether `vote`, one this node saved, names an established leader other than `me`: a
/// follower takes its leader's committed vote with the first entries it is sent, so a node
/// restarted alone knows the group had another leader before it stands.
fn led_by_another(vote: &openraft::Vote<u64>, me: u64) -> bool {
    vote.is_committed() && vote.leader_id().voted_for().is_some_and(|l| l != me)
}

/// Message `id` of a queue state, held as `held`, with its body `stored`, as the broker
/// takes it.
fn group_message<'a>(id: u64, stored: &'a [u8], held: &Held) -> GroupMessage<'a> {
    GroupMessage {
        id,
        stored,
        returns: held.returns,
        enqueued_at: held.enqueued_at,
    }
}

/// A queue state's messages as the broker takes them. The machine gives its tap a state
/// with the bodies read from the log; one it could not find there (logged by the machine)
/// is left out of the copy.
fn messages_of(state: &QueueState) -> Vec<GroupMessage<'_>> {
    state
        .messages
        .iter()
        .filter_map(|(id, held)| Some(group_message(*id, held.message.as_deref()?, held)))
        .collect()
}

impl QueueFeed {
    /// Feeds what the group applies into the broker's copy and follows its leadership,
    /// until the group stops.
    pub(super) async fn follow(self, opened: OpenedQueue) {
        let OpenedQueue {
            group,
            state,
            applied,
            mut tap,
            bodies,
            pinned,
            saved_vote,
        } = opened;
        self.rebuild(applied, &state, &bodies).await;
        drop(state);
        if let Err(e) = bodies.unpin(pinned).await {
            tracing::warn!(queue = %self.name, "cluster: letting go of the bodies read: {e}");
        }
        let name = (self.name.as_str(), self.queue_id);
        let mut metrics = group.raft.metrics();
        let mut leading = false;
        // Whether another member has led the group: the one this node's vote named before
        // a restart, or one it has followed since the group opened here. The first is
        // read from the store at open: the metrics name that leader too, but only from
        // the loop's first look at them, which a long rebuild puts after this node may
        // have stood.
        let mut others_led = saved_vote.is_some_and(|v| led_by_another(&v, self.me));
        // Leading, but not yet in the broker: the log index the copy must have applied
        // first. A new leader's log holds every entry the last leader committed, and it
        // takes over only once its copy has them (the last leader's settles, and how far
        // it had handed messages out: `replica_takeover.rs`), or it would hand out again
        // what the last leader's consumers had as first deliveries.
        let mut lead_after: Option<u64> = None;
        // The leader and term at the last look at the metrics.
        let mut leader: (Option<u64>, u64) = (None, 0);
        loop {
            tokio::select! {
                event = tap.recv() => match event {
                    None => return,
                    Some(event) => self.take(event),
                },
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let (now, applied, last_log, new_leader) = {
                        let m = metrics.borrow_and_update();
                        others_led |= m.current_leader.is_some_and(|l| l != self.me);
                        let now = m.state == ServerState::Leader && m.current_leader == Some(self.me);
                        // A leader elected again (a restart, a term change) counts as new:
                        // it may have taken over from its earlier process.
                        let seen = (m.current_leader, m.current_term);
                        let new_leader = seen != leader;
                        leader = seen;
                        (now, m.last_applied.map_or(0, |l| l.index), m.last_log_index.unwrap_or(0), new_leader)
                    };
                    if new_leader && leader.0.is_some_and(|l| l != self.me) {
                        // This node's checkout task tells the new leader at once what its
                        // consumers hold (`broker/replica_claims.rs`), idle or not.
                        self.vhost.with(|m| m.replica_new_leader(name));
                    }
                    if now != leading {
                        leading = now;
                        tracing::info!(queue = %self.name, leading, "cluster: queue leadership changed");
                        lead_after = now.then_some(last_log);
                        if !now {
                            let members = voters(&metrics);
                            self.with_cluster(&members, |cluster| {
                                self.vhost
                                    .with(|m| m.replica_leading(name, false, others_led, cluster))
                            });
                        }
                    }
                    if lead_after.is_some_and(|index| applied >= index) {
                        lead_after = None;
                        // The machine taps an entry before its metrics say it is applied:
                        // what the tap holds of those is taken first.
                        while let Ok(event) = tap.try_recv() {
                            self.take(event);
                        }
                        // The voters, and the nodes lent messages of the group: each
                        // may hold some of what the last leader handed out.
                        let mut members = voters(&metrics);
                        if let Some(number) = group_number(&group.name) {
                            members.extend(self.node.lent_holders(number));
                            members.sort_unstable();
                            members.dedup();
                        }
                        self.with_cluster(&members, |cluster| {
                            self.vhost
                                .with(|m| m.replica_leading(name, true, others_led, cluster))
                        });
                    }
                }
            }
        }
    }

    /// Takes one tapped event into the broker's copy.
    fn take(&self, event: Tapped<QueueCommand, QueueState>) {
        match event {
            Tapped::Applied(index, cmd) => self.apply(index, cmd),
            Tapped::Reset(index, state) => self.reset(index, &state),
        }
    }

    /// Rebuilds the broker's copy from the group's state after log index `index` as the
    /// group opens, the bodies read from its log (pinned there until this is done) about
    /// `REBUILD_STEP` messages at a time, whole entries: a deep queue is never in memory
    /// whole, and no entry is decoded twice.
    async fn rebuild(&self, index: u64, state: &QueueState, bodies: &SnapshotBodies) {
        let name = (self.name.as_str(), self.queue_id);
        self.vhost.with(|m| m.replica_reset(name, &[], &[]));
        let ids: Vec<u64> = state.messages.keys().copied().collect();
        let mut missing = 0;
        for step in snapshot_bodies::steps(&ids, REBUILD_STEP) {
            let found = bodies.read(step).await.unwrap_or_else(|e| {
                tracing::error!(queue = %self.name, "cluster: reading bodies from the log: {e}");
                Vec::new()
            });
            missing += step.len() - found.len();
            let messages: Vec<GroupMessage<'_>> = found
                .iter()
                .map(|(id, body)| group_message(*id, body, &state.messages[id]))
                .collect();
            let dead = marks_of(state, step);
            self.vhost.with(|m| m.replica_add(name, &messages, &dead));
        }
        if let Some(mark) = state.out_mark {
            self.with_cluster(&[], |cluster| {
                self.vhost.with(|m| m.replica_out_mark(name, mark, cluster))
            });
        }
        if missing > 0 {
            tracing::error!(queue = %self.name, missing, "cluster: messages whose bodies are not in the group's log");
        }
        self.vhost
            .with(|_| self.fed.store(index, Ordering::Release));
    }

    /// Replaces the broker's copy with the group's state after log index `index` (a
    /// snapshot installed from the leader, with its bodies).
    fn reset(&self, index: u64, state: &QueueState) {
        let name = (self.name.as_str(), self.queue_id);
        let all = messages_of(state);
        let dead = marks_of(state, state.messages.keys());
        self.with_cluster(&[], |cluster| {
            self.vhost.with(|m| {
                m.replica_reset(name, &all, &dead);
                if let Some(mark) = state.out_mark {
                    m.replica_out_mark(name, mark, cluster);
                }
                self.fed.store(index, Ordering::Release);
            })
        });
    }

    /// Applies one committed command to the broker's copy and records its index, both
    /// under the vhost's lock: a grant chosen under that lock never sees a state newer
    /// than `fed` says (checkout.rs).
    fn apply(&self, index: u64, cmd: QueueCommand) {
        let name = (self.name.as_str(), self.queue_id);
        self.vhost.with(|m| {
            match &cmd {
                QueueCommand::Enqueue { message } => {
                    m.replica_enqueued(name, &ids_of(index, std::slice::from_ref(message), 0))
                }
                QueueCommand::EnqueueBatch {
                    messages,
                    enqueued_at,
                } => m.replica_enqueued(name, &ids_of(index, messages, *enqueued_at)),
                QueueCommand::Settle { id } => m.replica_settled(name, &[*id]),
                QueueCommand::SettleBatch { ids } => m.replica_settled(name, ids),
                QueueCommand::Return { id } => {
                    m.replica_returned(name, unnumbered(std::slice::from_ref(id)))
                }
                QueueCommand::ReturnBatch { ids } => m.replica_returned(name, unnumbered(ids)),
                QueueCommand::Round {
                    messages,
                    returned,
                    settled,
                    discarded,
                    enqueued_at,
                    write,
                    seen,
                    stale,
                    out_through,
                } => {
                    // In the order the group applied them.
                    if !messages.is_empty() {
                        m.replica_enqueued(name, &ids_of(index, messages, *enqueued_at));
                    }
                    if !discarded.is_empty() {
                        let dead: Vec<_> = discarded.iter().map(broker_mark).collect();
                        m.replica_discarded(name, &dead);
                    }
                    if !returned.is_empty() {
                        let returns = CommittedReturns {
                            ids: returned,
                            seen,
                            from: write.map(|(node, _)| node),
                            mine: write.is_some_and(|w| self.rounds.is_mine(w)),
                            stale,
                        };
                        m.replica_returned(name, returns);
                    }
                    if !settled.is_empty() {
                        m.replica_settled(name, settled);
                    }
                    if let Some((node, w)) = write.filter(|_| *out_through > 0) {
                        let mark = OutMark {
                            node,
                            incarnation: w.started_at,
                            through: *out_through,
                        };
                        self.with_cluster(&[], |cluster| m.replica_out_mark(name, mark, cluster));
                    }
                }
            }
            self.fed.store(index, Ordering::Release);
        });
    }

    /// Returns and settles the writer could not write: handed back to the replica, to be
    /// written again (`Replica::write_again`).
    fn write_again(&self, riders: Riders) {
        let Riders {
            returned,
            returned_seen,
            settled,
            out_through,
            ..
        } = riders;
        let queue = (self.name.as_str(), self.queue_id);
        self.vhost
            .with(|m| m.replica_write_again(queue, returned, returned_seen, settled, out_through));
    }

    /// Writes what is published and settled on this node to the group, one batch at a
    /// time (what arrives meanwhile makes the next batch), until the queue is gone.
    pub(super) async fn write(
        self,
        group: Arc<GroupTarget>,
        wake: Arc<tokio::sync::Notify>,
        tickets: Arc<ReplicaTickets>,
    ) {
        let deadline = Duration::from_secs(10);
        loop {
            wake.notified().await;
            loop {
                let Some(ReplicaWork {
                    published,
                    settled,
                    returned,
                    returned_seen,
                    discarded,
                    out_through,
                }) = self
                    .vhost
                    .with(|m| m.replica_work((&self.name, self.queue_id)))
                else {
                    return; // The queue is gone.
                };
                if published.is_empty()
                    && settled.is_empty()
                    && returned.is_empty()
                    && discarded.is_empty()
                    && out_through == 0
                {
                    break;
                }
                // A dead letter settled in the same round (its copies were quick) needs
                // no mark; more marks than an entry's count go in rounds of their own
                // first.
                let gone: std::collections::HashSet<u64> = match discarded.is_empty() {
                    true => Default::default(),
                    false => settled.iter().copied().collect(),
                };
                let mut dead: Vec<DeadMark> = discarded
                    .iter()
                    .filter(|d| !gone.contains(&d.0))
                    .map(group_mark)
                    .collect();
                while dead.len() > WRITE_BATCH {
                    let rest = dead.split_off(WRITE_BATCH);
                    let marks = Riders {
                        discarded: std::mem::replace(&mut dead, rest),
                        ..Riders::default()
                    };
                    let cmd = round(Vec::new(), marks, 0, self.rounds.next());
                    if let Err(e) = group.write(cmd, deadline).await {
                        // Dead-lettered all the same, from here; should this node die
                        // first, the messages are delivered again (at least once).
                        tracing::warn!(queue = %self.name, "cluster: dead letters not recorded in the group: {e}");
                    }
                }
                // The returns, settles and dead letters ride with the last run of
                // publishes (or go alone): one entry and one commit round for the lot.
                let runs: Vec<&[(Bytes, u64)]> = batches(&published, |(b, _)| b.len()).collect();
                let mut riders = Some(Riders {
                    returned,
                    returned_seen,
                    settled,
                    discarded: dead,
                    out_through,
                });
                // The enqueue time a copy rebuilt later times their TTLs from (the
                // leader sets its own as it takes the entry: `LeaderStamp`).
                let enqueued_at = super::checkout::now_ms();
                for (i, chunk) in runs.iter().enumerate() {
                    let messages: Vec<Bytes> = chunk.iter().map(|(b, _)| b.clone()).collect();
                    let riders = riders.take_if(|_| i + 1 == runs.len()).unwrap_or_default();
                    let again = riders.to_write_again();
                    let cmd = round(messages, riders, enqueued_at, self.rounds.next());
                    let written = group.write(cmd, deadline).await;
                    if let Err(e) = &written {
                        tracing::warn!(queue = %self.name, "cluster: publishes not committed: {e}");
                        // The returns and settles riding along are written again.
                        if !again.is_empty() {
                            self.write_again(again);
                            tokio::time::sleep(WRITE_AGAIN_PAUSE).await;
                        }
                    }
                    for (_, t) in *chunk {
                        tickets.complete(*t, written.is_ok());
                    }
                }
                if let Some(riders) = riders.filter(|r| !r.is_empty()) {
                    let again = riders.to_write_again();
                    let cmd = round(Vec::new(), riders, 0, self.rounds.next());
                    if let Err(e) = group.write(cmd, deadline).await {
                        tracing::warn!(queue = %self.name, "cluster: settles and returns not committed (written again): {e}");
                        self.write_again(again);
                        // Not at once: a write that fails fast (no group any more, a
                        // fatal error) would spin.
                        tokio::time::sleep(WRITE_AGAIN_PAUSE).await;
                    }
                }
            }
        }
    }
}

/// What rides with a writer's last run of publishes.
#[derive(Default)]
struct Riders {
    returned: Vec<u64>,
    /// The returns each of `returned` had when its delivery went out.
    returned_seen: Vec<u32>,
    settled: Vec<u64>,
    discarded: Vec<DeadMark>,
    /// How far this node, leading, has handed messages out (0: nothing new to tell).
    out_through: u64,
}

impl Riders {
    /// The returns and settles, kept to be written again should the round's write fail
    /// (dead-letter marks are not: dead-lettered all the same, from here).
    fn to_write_again(&self) -> Riders {
        Riders {
            returned: self.returned.clone(),
            returned_seen: self.returned_seen.clone(),
            settled: self.settled.clone(),
            discarded: Vec::new(),
            out_through: self.out_through,
        }
    }

    fn is_empty(&self) -> bool {
        self.returned.is_empty()
            && self.settled.is_empty()
            && self.discarded.is_empty()
            && self.out_through == 0
    }
}

/// One writer round as a command, numbered `write`: messages enqueued at `enqueued_at`
/// (0 when there are none) and what rides with them. Always a `Round`, never an
/// `EnqueueBatch`: only a round carries its number.
fn round(
    messages: Vec<Bytes>,
    riders: Riders,
    enqueued_at: u64,
    write: (u64, WriteId),
) -> QueueCommand {
    QueueCommand::Round {
        messages,
        returned: riders.returned,
        settled: riders.settled,
        discarded: riders.discarded,
        enqueued_at,
        write: Some(write),
        seen: riders.returned_seen,
        stale: Vec::new(),
        out_through: riders.out_through,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_vote_names_another_leader_only_once_committed_and_not_for_this_node() {
        let mut candidate = openraft::Vote::new(3, 2);
        assert!(!led_by_another(&candidate, 1), "a vote for a candidate");
        candidate.commit();
        assert!(led_by_another(&candidate, 1), "node 2 led");
        assert!(
            !led_by_another(&openraft::Vote::new_committed(3, 1), 1),
            "this node led"
        );
        assert!(
            !led_by_another(&openraft::Vote::new(0, 0), 1),
            "a new group"
        );
    }

    #[test]
    fn batches_hold_to_count_and_bytes_and_keep_order() {
        let sizes = |runs: Vec<&[usize]>| runs.iter().map(|r| r.len()).collect::<Vec<_>>();
        // 1 MiB messages: four to an entry.
        let big = vec![1 << 20; 10];
        assert_eq!(sizes(batches(&big, |m| *m).collect()), [4, 4, 2]);
        // A message larger than an entry's bytes goes alone.
        let huge = [100, 80 << 20, 100];
        assert_eq!(sizes(batches(&huge, |m| *m).collect()), [1, 1, 1]);
        // Small ones: the count bounds it.
        let small: Vec<usize> = (0..5000).collect();
        let runs: Vec<&[usize]> = batches(&small, |_| 16).collect();
        assert_eq!(sizes(runs.clone()), [4096, 904]);
        assert!(runs.concat() == small, "in order, none lost");
        assert_eq!(batches(&[] as &[usize], |m| *m).count(), 0);
    }

    #[test]
    fn group_and_broker_codes_agree() {
        for (code, reason) in [
            (DeadMark::REJECTED, DeathReason::Rejected),
            (DeadMark::EXPIRED, DeathReason::Expired),
            (DeadMark::MAXLEN, DeathReason::MaxLen),
            (DeadMark::DELIVERY_LIMIT, DeathReason::DeliveryLimit),
        ] {
            assert_eq!(reason.code(), code);
            assert_eq!(DeathReason::from_code(code), reason);
        }
    }
}
