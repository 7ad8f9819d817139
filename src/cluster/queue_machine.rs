//! The state machine of a replicated queue group: the messages a quorum queue holds, in
//! enqueue order, each with the returns it has taken, and its delivery limit. Applying the
//! same entries in the same order gives every member the same queue; a snapshot is that
//! state serialised (MessagePack, `codec.rs`), installed whole on a member that fell
//! behind the leader's purged log.
//!
//! A machine opened on its group's log (`open_on_log`) holds no message bodies: they stay
//! in the entries that enqueued them, and its snapshots name messages by id
//! (`snapshot_bodies.rs`); a machine in memory (tests, fuzzing) holds them.
//!
//! Which consumer holds which message is not replicated here yet (RabbitMQ's `rabbit_fifo`
//! replicates checkouts too): it comes with the broker's use of the groups.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::machine::{Machine, Replicated};
use super::types::{
    message_id, DeadMark, OutMark, QueueCommand, QueueRaft, QueueResponse, WriteId, MAX_BATCH,
};

/// A message held by the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// Shared with the entry that enqueued it: applying an entry copies no body. `None`
    /// in a machine whose bodies stay in its log, and in the snapshots it keeps; a snapshot
    /// sent to another member carries them.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::types::base64_option"
    )]
    pub message: Option<Bytes>,
    /// Returns so far (RabbitMQ's `x-delivery-count`).
    pub returns: u32,
    /// Dead-lettered under at-least-once (a `Round`'s `discarded`): never delivered
    /// again; settled once its dead-letter copies are durable. Absent in what earlier
    /// builds wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead: Option<DeadMark>,
    /// When it was enqueued (the entry's `enqueued_at`; 0 if that entry has none): a copy
    /// rebuilt from the group times the message's TTL from here, not from the rebuild.
    #[serde(default, skip_serializing_if = "super::types::is_zero", rename = "at")]
    pub enqueued_at: u64,
}

/// The replicated state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    /// Message id (the index of the entry that enqueued it) -> message, in enqueue order.
    pub messages: BTreeMap<u64, Held>,
    /// `x-delivery-limit`: a message returned more often is dropped.
    pub delivery_limit: Option<u32>,
    /// Bodies stay in the group's log, not here (`snapshot_bodies.rs`).
    #[serde(skip)]
    pub bodies_elsewhere: bool,
    /// The last numbered round applied from each node. Absent in what earlier builds
    /// wrote.
    #[serde(default, skip_serializing_if = "LastRounds::is_empty")]
    pub last_rounds: LastRounds,
    /// The furthest a leader has said it handed messages out (`Round`'s `out_through`),
    /// and whose node that was. Absent in what earlier builds wrote.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "om")]
    pub out_mark: Option<OutMark>,
}

/// The last numbered round (`WriteId`) applied from each node: a round equal to its
/// node's last is the same write committed again, and changes nothing.
///
/// Only equality counts. A node's writer waits for each round's answer before it sends
/// the next, so the second entry of a round sent twice follows the first with no other
/// round of that node's between them. A round numbered below its node's last (one the
/// writer gave up on at its deadline, committed late) is applied as any unnumbered one
/// (its publishes were nacked; taking it is what earlier builds did), and the later
/// number stays the one kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRounds(BTreeMap<u64, WriteId>);

impl LastRounds {
    /// Whether round `write` was applied already; notes it if not.
    fn repeated(&mut self, write: Option<(u64, WriteId)>) -> bool {
        let Some((node, id)) = write else {
            return false;
        };
        match self.0.get(&node) {
            Some(last) if *last == id => true,
            // Late: applied, the later number kept.
            Some(last) if *last > id => false,
            _ => {
                self.0.insert(node, id);
                false
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl QueueState {
    /// Applies one command at log index `index`.
    pub fn apply_command(&mut self, index: u64, cmd: &QueueCommand) -> QueueResponse {
        match cmd {
            QueueCommand::Enqueue { message } => {
                self.enqueue(message_id(index, 0), message.clone(), 0);
                QueueResponse::Enqueued {
                    id: message_id(index, 0),
                }
            }
            QueueCommand::EnqueueBatch {
                messages,
                enqueued_at,
            } => {
                self.enqueue_batch(index, messages, *enqueued_at);
                QueueResponse::Enqueued {
                    id: message_id(index, 0),
                }
            }
            QueueCommand::Settle { id } => QueueResponse::Settled {
                found: self.messages.remove(id).is_some(),
            },
            QueueCommand::SettleBatch { ids } => QueueResponse::SettledMany {
                found: self.settle_batch(ids),
            },
            QueueCommand::Return { id } => {
                let (returns, kept) = self.return_one(*id);
                QueueResponse::Returned { returns, kept }
            }
            QueueCommand::ReturnBatch { ids } => {
                let (found, dropped) = self.return_batch(ids);
                QueueResponse::ReturnedMany { found, dropped }
            }
            QueueCommand::Round {
                messages,
                returned,
                settled,
                discarded,
                enqueued_at,
                write,
                seen,
                stale: _,
                out_through,
            } => {
                if self.last_rounds.repeated(*write) {
                    return QueueResponse::Repeated;
                }
                self.mark_out(*write, *out_through);
                self.enqueue_batch(index, messages, *enqueued_at);
                self.discard(discarded);
                let mut stale = Vec::new();
                let (mut found, mut dropped) = (0, 0);
                for (i, id) in returned.iter().enumerate() {
                    // Seen for each return, or for none (what earlier builds wrote).
                    let seen = (seen.len() == returned.len()).then(|| seen[i]);
                    if self.taken_back(*id, seen) {
                        stale.push(i as u32);
                        continue;
                    }
                    let (returns, kept) = self.return_one(*id);
                    found += (returns > 0) as u64;
                    dropped += (returns > 0 && !kept) as u64;
                }
                QueueResponse::RoundDone {
                    id: message_id(index, 0),
                    returned: found,
                    dropped,
                    settled: self.settle_batch(settled),
                    stale,
                }
            }
        }
    }
}

impl QueueState {
    /// The messages of one entry, the `k`-th with id `message_id(index, k)`. A longer
    /// batch than ids leave room for is refused whole, on every member alike (the bridge
    /// never writes one).
    fn enqueue_batch(&mut self, index: u64, messages: &[Bytes], enqueued_at: u64) {
        if messages.len() <= MAX_BATCH {
            for (k, message) in messages.iter().enumerate() {
                self.enqueue(message_id(index, k), message.clone(), enqueued_at);
            }
        }
    }

    /// Settles `ids`; how many the queue held.
    fn settle_batch(&mut self, ids: &[u64]) -> u64 {
        ids.iter()
            .filter(|id| self.messages.remove(id).is_some())
            .count() as u64
    }

    /// Returns `ids`: how many the queue held, and how many of those it dropped.
    fn return_batch(&mut self, ids: &[u64]) -> (u64, u64) {
        let (mut found, mut dropped) = (0, 0);
        for id in ids {
            let (returns, kept) = self.return_one(*id);
            found += (returns > 0) as u64;
            dropped += (returns > 0 && !kept) as u64;
        }
        (found, dropped)
    }

    /// Whether a return of message `id`, of a delivery that went out when the message
    /// had been returned `seen` times, is of a delivery taken back since: the message has
    /// been returned more often than that (the leader gave back what a gone node held,
    /// and that node's consumer gives it back too when it hears). A `seen` above the
    /// count is not stale: the leader grants a message with the returns it has counted
    /// itself, which reach the group in its next round.
    fn taken_back(&self, id: u64, seen: Option<u32>) -> bool {
        let (Some(seen), Some(held)) = (seen, self.messages.get(&id)) else {
            return false;
        };
        seen < held.returns
    }

    /// A leader's round says it handed out messages up to `through`: the mark moves on
    /// only forwards, to the writer's node (a deposed leader's late round, below the mark,
    /// changes nothing). A round no writer numbered names no node, and marks nothing.
    fn mark_out(&mut self, write: Option<(u64, WriteId)>, through: u64) {
        let Some((node, id)) = write.filter(|_| through > 0) else {
            return;
        };
        let mark = OutMark {
            node,
            incarnation: id.started_at,
            through,
        };
        OutMark::advance(&mut self.out_mark, mark);
    }

    /// Marks the messages of `dead` the queue holds as dead-lettered (the first mark of
    /// each stands).
    fn discard(&mut self, dead: &[DeadMark]) {
        for mark in dead {
            if let Some(held) = self.messages.get_mut(&mark.id).filter(|h| h.dead.is_none()) {
                held.dead = Some(*mark);
            }
        }
    }

    /// One more return of message `id`: its returns so far and whether it stays (0 and
    /// false for a message the queue does not hold). A dead-lettered one is never
    /// dropped: it is given back only when its copies failed, and dropping it for its
    /// delivery limit would lose the dead letter.
    fn return_one(&mut self, id: u64) -> (u32, bool) {
        let Some(held) = self.messages.get_mut(&id) else {
            return (0, false);
        };
        held.returns = held.returns.saturating_add(1);
        let returns = held.returns;
        let kept = held.dead.is_some() || self.delivery_limit.is_none_or(|limit| returns <= limit);
        if !kept {
            self.messages.remove(&id);
        }
        (returns, kept)
    }

    fn enqueue(&mut self, id: u64, message: Bytes, enqueued_at: u64) {
        let held = Held {
            message: (!self.bodies_elsewhere).then_some(message),
            returns: 0,
            dead: None,
            enqueued_at,
        };
        self.messages.insert(id, held);
    }
}

impl Replicated<QueueRaft> for QueueState {
    fn apply(&mut self, index: u64, cmd: &QueueCommand) -> QueueResponse {
        self.apply_command(index, cmd)
    }

    fn nothing() -> QueueResponse {
        QueueResponse::Nothing
    }

    /// A round applied already is told as a settle of nothing: the broker's copy must not
    /// take its messages twice, and still learns the entry was applied (`fed`).
    ///
    /// A round's returns the group ignored (`taken_back`) are named in its `stale`: the
    /// copy of the node that wrote them may have counted them when they happened, and the
    /// leader still releases a holding by such a return when its `seen` says it is of the
    /// delivery the node holds (`replica_checkout::remote_returned`).
    fn for_tap(mut cmd: QueueCommand, answer: &QueueResponse) -> QueueCommand {
        match (answer, &mut cmd) {
            (QueueResponse::Repeated, _) => QueueCommand::SettleBatch { ids: Vec::new() },
            (
                QueueResponse::RoundDone { stale: ignored, .. },
                QueueCommand::Round { stale, .. },
            ) => {
                stale.clone_from(ignored);
                cmd
            }
            _ => cmd,
        }
    }

    fn keep_bodies_elsewhere(&mut self) {
        self.bodies_elsewhere = true;
    }

    fn body_ids(&self) -> Vec<u64> {
        self.messages.keys().copied().collect()
    }

    fn take_bodies(&mut self) -> Vec<(u64, Bytes)> {
        self.messages
            .iter_mut()
            .filter_map(|(id, held)| Some((*id, held.message.take()?)))
            .collect()
    }

    fn put_bodies(&mut self, bodies: Vec<(u64, Bytes)>) {
        for (id, body) in bodies {
            if let Some(held) = self.messages.get_mut(&id) {
                held.message = Some(body);
            }
        }
    }
}

/// A queue group's state machine.
pub type QueueMachine = Machine<QueueState>;

impl QueueMachine {
    pub fn new(delivery_limit: Option<u32>) -> QueueMachine {
        Machine::with_state(QueueState {
            delivery_limit,
            ..QueueState::default()
        })
    }

    /// A queue machine that keeps its snapshots in `dir` and starts from the one there
    /// (bodies held in memory and in the snapshots; tests).
    pub fn open(dir: &std::path::Path, delivery_limit: Option<u32>) -> std::io::Result<Self> {
        Machine::on_disk(
            dir,
            QueueState {
                delivery_limit,
                ..QueueState::default()
            },
        )
    }

    /// A queue machine that keeps its snapshots in `dir`, starts from the one there, and
    /// leaves message bodies in the group's log (`snapshot_bodies.rs`).
    pub async fn open_on_log(
        dir: &std::path::Path,
        bodies: super::snapshot_bodies::SnapshotBodies,
    ) -> std::io::Result<Self> {
        Machine::on_disk_with_bodies::<QueueRaft>(dir, QueueState::default(), bodies).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec;
    use super::super::machine::Applied;
    use super::*;

    #[test]
    fn returns_count_and_the_limit_drops() {
        let mut s = QueueState {
            delivery_limit: Some(1),
            ..QueueState::default()
        };
        let enq = |m: &[u8]| QueueCommand::Enqueue {
            message: m.to_vec().into(),
        };
        let (a, b) = (message_id(3, 0), message_id(4, 0));
        assert_eq!(
            s.apply_command(3, &enq(b"a")),
            QueueResponse::Enqueued { id: a }
        );
        assert_eq!(
            s.apply_command(4, &enq(b"b")),
            QueueResponse::Enqueued { id: b }
        );
        let ret = QueueCommand::Return { id: a };
        assert_eq!(
            s.apply_command(5, &ret),
            QueueResponse::Returned {
                returns: 1,
                kept: true
            }
        );
        assert_eq!(
            s.apply_command(6, &ret),
            QueueResponse::Returned {
                returns: 2,
                kept: false
            }
        );
        assert_eq!(
            s.apply_command(7, &QueueCommand::Settle { id: a }),
            QueueResponse::Settled { found: false }
        );
        assert_eq!(
            s.apply_command(8, &QueueCommand::Settle { id: b }),
            QueueResponse::Settled { found: true }
        );
        assert!(s.messages.is_empty());
        let batch = QueueCommand::EnqueueBatch {
            messages: vec![Bytes::from_static(b"c"), Bytes::from_static(b"d")],
            enqueued_at: 0,
        };
        s.apply_command(9, &batch);
        let ids: Vec<u64> = s.messages.keys().copied().collect();
        assert_eq!(ids, [message_id(9, 0), message_id(9, 1)]);
        let settle = QueueCommand::SettleBatch {
            ids: vec![message_id(9, 1), a, message_id(9, 0)],
        };
        assert_eq!(
            s.apply_command(10, &settle),
            QueueResponse::SettledMany { found: 2 }
        );
        assert!(s.messages.is_empty());
    }

    /// A queue with a delivery limit of 0 holding two messages (entry 1), and their ids.
    fn two_messages_limit_0() -> (QueueState, u64, u64) {
        let mut s = QueueState {
            delivery_limit: Some(0),
            ..QueueState::default()
        };
        let batch = QueueCommand::EnqueueBatch {
            messages: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
            enqueued_at: 0,
        };
        s.apply_command(1, &batch);
        (s, message_id(1, 0), message_id(1, 1))
    }

    #[test]
    fn a_discarded_message_stays_marked_past_its_delivery_limit_until_settled() {
        let (mut s, a, b) = two_messages_limit_0();
        let mark = |id, reason| DeadMark {
            id,
            reason,
            died_at: 1_700_000_000_000,
        };
        let round = |discarded, returned| QueueCommand::Round {
            messages: Vec::new(),
            returned,
            settled: Vec::new(),
            discarded,
            enqueued_at: 0,
            write: None,
            seen: Vec::new(),
            stale: Vec::new(),
            out_through: 0,
        };
        // Marked before the returns of the same round: `a` stays past its limit of 0.
        let first = round(
            vec![
                mark(a, DeadMark::REJECTED),
                mark(u64::MAX, DeadMark::EXPIRED),
            ],
            vec![a, b],
        );
        assert_eq!(
            s.apply_command(2, &first),
            QueueResponse::RoundDone {
                id: message_id(2, 0),
                returned: 2,
                dropped: 1,
                settled: 0,
                stale: Vec::new(),
            }
        );
        assert_eq!(s.messages.keys().copied().collect::<Vec<_>>(), [a]);
        assert_eq!(s.messages[&a].returns, 1);
        // Marked once: a later mark (another node's) does not replace the first.
        s.apply_command(3, &round(vec![mark(a, DeadMark::EXPIRED)], Vec::new()));
        assert_eq!(s.messages[&a].dead, Some(mark(a, DeadMark::REJECTED)));
        assert_eq!(
            s.apply_command(4, &QueueCommand::Settle { id: a }),
            QueueResponse::Settled { found: true }
        );
        assert!(s.messages.is_empty());
    }

    #[test]
    fn a_round_enqueues_then_returns_then_settles_in_one_entry() {
        let (mut s, a, b) = two_messages_limit_0();
        // `a` returned past its limit (dropped), `b` returned and settled in the same
        // round: counted first, then gone; two new messages stay.
        let round = QueueCommand::Round {
            messages: vec![Bytes::from_static(b"c"), Bytes::from_static(b"d")],
            returned: vec![a, b],
            settled: vec![b, a],
            discarded: Vec::new(),
            enqueued_at: 1_700_000_000_000,
            write: None,
            seen: Vec::new(),
            stale: Vec::new(),
            out_through: 0,
        };
        assert_eq!(
            s.apply_command(2, &round),
            QueueResponse::RoundDone {
                id: message_id(2, 0),
                returned: 2,
                dropped: 2,
                settled: 0,
                stale: Vec::new(),
            }
        );
        let ids: Vec<u64> = s.messages.keys().copied().collect();
        assert_eq!(ids, [message_id(2, 0), message_id(2, 1)]);
        assert!(s
            .messages
            .values()
            .all(|h| h.enqueued_at == 1_700_000_000_000));
        let settle_only = QueueCommand::Round {
            messages: Vec::new(),
            returned: Vec::new(),
            settled: vec![message_id(2, 1)],
            discarded: Vec::new(),
            enqueued_at: 0,
            write: None,
            seen: Vec::new(),
            stale: Vec::new(),
            out_through: 0,
        };
        assert_eq!(
            s.apply_command(3, &settle_only),
            QueueResponse::RoundDone {
                id: message_id(3, 0),
                returned: 0,
                dropped: 0,
                settled: 1,
                stale: Vec::new(),
            }
        );
        assert_eq!(s.messages.len(), 1);
    }

    #[test]
    fn an_enqueued_body_is_shared_with_its_entry_not_copied() {
        let body = Bytes::from(vec![7u8; 1024]);
        let mut s = QueueState::default();
        s.apply_command(
            3,
            &QueueCommand::EnqueueBatch {
                messages: vec![body.clone()],
                enqueued_at: 0,
            },
        );
        let held = s.messages[&message_id(3, 0)].message.as_ref().unwrap();
        assert_eq!(
            held.as_ptr(),
            body.as_ptr(),
            "the state holds the entry's bytes"
        );
    }

    /// Command `cmd` as the entry at `index`.
    fn entry(index: u64, cmd: QueueCommand) -> openraft::Entry<QueueRaft> {
        use openraft::{CommittedLeaderId, EntryPayload, LogId};
        openraft::Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(cmd),
        }
    }

    /// A snapshot of `machine` as it stands.
    async fn snapshot_of(machine: &mut QueueMachine) -> openraft::Snapshot<QueueRaft> {
        use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
        let mut builder = machine.get_snapshot_builder().await;
        builder.build_snapshot().await.unwrap()
    }

    #[tokio::test]
    async fn a_snapshot_is_messagepack_with_raw_bodies_and_a_json_one_still_reads() {
        use openraft::storage::RaftStateMachine;

        let mut machine = QueueMachine::new(Some(5));
        let messages = (0..10u8).map(|k| Bytes::from(vec![k; 1024])).collect();
        machine
            .apply([
                entry(
                    1,
                    QueueCommand::EnqueueBatch {
                        messages,
                        enqueued_at: 1_700_000_000_000,
                    },
                ),
                entry(
                    2,
                    QueueCommand::Return {
                        id: message_id(1, 4),
                    },
                ),
            ])
            .await
            .unwrap();
        let snapshot = snapshot_of(&mut machine).await;
        let data = snapshot.snapshot.into_inner();
        // Ten bodies of 1 KiB: base64 in JSON alone makes them 13.7 KB (by arithmetic).
        // Here: under 64 bytes a message besides its body (ids, returns, enqueue time).
        assert!(data.len() < 10 * (1024 + 64), "{} bytes", data.len());
        let state: Applied<QueueState> = codec::decode(&data).unwrap();
        assert_eq!(state.messages.len(), 10);
        assert_eq!(state.messages[&message_id(1, 4)].returns, 1);
        // Their enqueue time too: a copy rebuilt from the snapshot times TTLs from it.
        assert!(state
            .messages
            .values()
            .all(|h| h.enqueued_at == 1_700_000_000_000));
        assert_eq!(state.delivery_limit, Some(5));
        assert_eq!(state.last_applied.map(|l| l.index), Some(2));
        // An earlier build's snapshot (JSON) installs as before.
        let json = serde_json::to_vec(&state).unwrap();
        let meta = snapshot.meta.clone();
        let mut other = QueueMachine::new(None);
        other
            .install_snapshot(&meta, Box::new(std::io::Cursor::new(json)))
            .await
            .unwrap();
        assert_eq!(other.state().await, state);
    }

    /// A writer's round numbered `seq` by node `node` (started at 7), enqueuing `body`.
    fn numbered(node: u64, seq: u64, body: &'static [u8]) -> QueueCommand {
        QueueCommand::Round {
            messages: vec![Bytes::from_static(body)],
            returned: Vec::new(),
            settled: Vec::new(),
            discarded: Vec::new(),
            enqueued_at: 0,
            write: Some((node, WriteId { started_at: 7, seq })),
            seen: Vec::new(),
            stale: Vec::new(),
            out_through: 0,
        }
    }

    /// Node `node`'s round `seq` giving back `returned`, each of a delivery that went
    /// out with the returns in `seen`.
    fn giving_back(node: u64, seq: u64, returned: &[u64], seen: &[u32]) -> QueueCommand {
        QueueCommand::Round {
            messages: Vec::new(),
            returned: returned.to_vec(),
            settled: Vec::new(),
            discarded: Vec::new(),
            enqueued_at: 0,
            write: Some((node, WriteId { started_at: 7, seq })),
            seen: seen.to_vec(),
            stale: Vec::new(),
            out_through: 0,
        }
    }

    /// The leader took back what node 2 held (its connection closed): one return,
    /// written by the leader (node 1) with the count the delivery went out with. Node 2's
    /// consumer gives the same delivery back later: that return is of a delivery taken
    /// back already, ignored (not counted again, named to the tap as stale, by its
    /// position), as RabbitMQ ignores a return of a message its consumer no longer has
    /// checked out. The next delivery's return (its count seen as 1) counts, in the same
    /// round as a stale one too; a return with no counts (an earlier build's) counts
    /// whatever it gives back.
    #[tokio::test]
    async fn a_return_of_a_delivery_taken_back_already_is_ignored_and_told_as_stale() {
        use super::super::machine::Tapped;
        use openraft::storage::RaftStateMachine;

        let mut machine = QueueMachine::new(None);
        let (_, _, mut tap) = machine.tap::<QueueRaft>().await;
        let (a, b) = (message_id(1, 0), message_id(1, 1));
        let two = QueueCommand::EnqueueBatch {
            messages: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
            enqueued_at: 0,
        };
        let no_counts = giving_back(3, 1, &[a, b], &[]);
        let answers = machine
            .apply([
                entry(1, two),
                entry(2, giving_back(1, 1, &[a, b], &[0, 0])),
                entry(3, giving_back(2, 1, &[a, b], &[0, 1])),
                // The same message twice in one round: the stale return, then the one of
                // its next delivery.
                entry(4, giving_back(2, 2, &[a, a], &[0, 1])),
                entry(5, giving_back(2, 3, &[a], &[7])),
                entry(6, no_counts),
            ])
            .await
            .unwrap();
        let done = |returned, stale: Vec<u32>| QueueResponse::RoundDone {
            id: 0,
            returned,
            dropped: 0,
            settled: 0,
            stale,
        };
        let answered: Vec<QueueResponse> = answers[1..]
            .iter()
            .map(|r| match r {
                QueueResponse::RoundDone {
                    returned, stale, ..
                } => done(*returned, stale.clone()),
                other => other.clone(),
            })
            .collect();
        assert_eq!(
            answered,
            [
                done(2, vec![]),
                // `a` went out before the leader's return; `b` after it, with its count.
                done(1, vec![0]),
                done(1, vec![0]),
                // A count above the group's: the leader's own return not committed yet.
                done(1, vec![]),
                done(2, vec![]),
            ]
        );
        let returns: Vec<u32> = machine
            .state()
            .await
            .messages
            .values()
            .map(|h| h.returns)
            .collect();
        assert_eq!(returns, [4, 3]);
        let mut stale_told = Vec::new();
        while let Ok(Tapped::Applied(_, cmd)) = tap.try_recv() {
            if let QueueCommand::Round { stale, .. } = cmd {
                stale_told.push(stale);
            }
        }
        assert_eq!(stale_told, [vec![], vec![0], vec![0], vec![], vec![]]);
    }

    #[tokio::test]
    async fn a_round_committed_twice_is_applied_once_and_told_to_the_tap_as_nothing() {
        use super::super::machine::Tapped;
        use openraft::storage::RaftStateMachine;

        let mut machine = QueueMachine::new(None);
        let (_, _, mut tap) = machine.tap::<QueueRaft>().await;
        // Node 1's round 2; the same round again (its retry through a new leader); node
        // 2's round 2 (another node's, the same number); node 1's round 1 committed late;
        // node 1's round 2 once more.
        let answers = machine
            .apply([
                entry(1, numbered(1, 2, b"a")),
                entry(2, numbered(1, 2, b"a")),
                entry(3, numbered(2, 2, b"b")),
                entry(4, numbered(1, 1, b"c")),
                entry(5, numbered(1, 2, b"a")),
            ])
            .await
            .unwrap();
        let repeated: Vec<bool> = answers
            .iter()
            .map(|a| *a == QueueResponse::Repeated)
            .collect();
        assert_eq!(repeated, [false, true, false, false, true]);
        let held: Vec<u64> = machine.state().await.messages.keys().copied().collect();
        assert_eq!(held, [message_id(1, 0), message_id(3, 0), message_id(4, 0)]);
        // The broker's copy learns of every entry, the repeats as settles of nothing.
        for index in 1..=5 {
            let Some(Tapped::Applied(at, told)) = tap.recv().await else {
                panic!("entry {index} not told");
            };
            assert_eq!(at, index);
            let nothing = told == QueueCommand::SettleBatch { ids: Vec::new() };
            assert_eq!(
                nothing,
                repeated[index as usize - 1],
                "entry {index}: {told:?}"
            );
        }
        // A member that catches up from a snapshot knows node 1's last round too.
        let snapshot = snapshot_of(&mut machine).await;
        let mut member = QueueMachine::new(None);
        member
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        let again = member.apply([entry(6, numbered(1, 2, b"a"))]).await;
        assert_eq!(again.unwrap(), [QueueResponse::Repeated]);
        assert_eq!(member.state().await.messages.len(), 3);
    }
}
