//! The driver of the fuzz target `queue_machine` (issue 17): the input decodes (with
//! `arbitrary`) into a delivery limit and up to 256 operations on a replicated queue —
//! enqueue (one message or a batch), settle and return (one or several; of held messages
//! and of unknown ids), a writer's round of all three in one entry (numbered by one of
//! three nodes, or not), a numbered round committed again (its node's last, or one before
//! it), dead-lettering under at-least-once (a round's `discarded`), a member catching up
//! from a snapshot (what a new leader's follower does), and a replay of the whole history
//! into a fresh machine. Each operation is applied as a Raft entry through
//! `RaftStateMachine::apply`, and every answer and the state after it are checked against a
//! model: a list of (id, message, returns, dead mark, enqueue time) in enqueue order, and
//! each node's highest round number. (The state: every message after every 16th entry and
//! after the last; after each other entry, the count and the messages it names or adds.)

use std::cell::RefCell;

use arbitrary::{Arbitrary, Unstructured};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};

use super::queue_machine::QueueMachine;
use super::types::{message_id, DeadMark, QueueCommand, QueueRaft, QueueResponse, WriteId};

/// Most operations decoded from one input.
const MAX_OPS: usize = 256;
/// Most catch-ups and replays per input (each costs the whole state or history).
const MAX_REBUILDS: usize = 4;
/// Every message is compared with the model after every this many entries, and after the
/// last; after each of the others, the messages the entry names and those it added. (A
/// full comparison after every entry made a run quadratic in its length: two thirds of
/// the target's time went to it.)
const FULL_CHECK_EVERY: u64 = 16;

#[derive(Debug, Arbitrary)]
enum Op {
    Enqueue {
        len: u8,
    },
    Settle {
        pick: u8,
    },
    Return {
        pick: u8,
    },
    /// An id the queue never held, or held and settled.
    SettleUnknown,
    ReturnUnknown,
    /// A new member installs the current snapshot and carries on in its place.
    CatchUp,
    /// A fresh machine applies every entry so far in one batch: it must reach the same state.
    Replay,
    /// Messages published together (one entry).
    EnqueueBatch {
        count: u8,
    },
    /// Several deliveries settled in one entry (picks may repeat or be unknown).
    SettleBatch {
        picks: [u8; 3],
    },
    /// Several deliveries returned in one entry (picks may repeat or be unknown).
    ReturnBatch {
        picks: [u8; 3],
    },
    /// A writer's round: messages, returns and settles in one entry (the picks may name
    /// the same message for a return and a settle), numbered by node `writer % 4` (0: not
    /// numbered, as earlier builds wrote it); with `writer & 4` each return names the
    /// returns its delivery went out with (a stale one is ignored); with `writer & 8` it
    /// says how far its node handed messages out (the id `count` picks: the group's
    /// `OutMark` moves only forwards, and only for a numbered round).
    Round {
        count: u8,
        returns: [u8; 2],
        settles: [u8; 2],
        writer: u8,
    },
    /// A numbered round of node `writer % 3 + 1` committed again: its last (a retry through
    /// a new leader, changing nothing), or with `late` the one before (given up on by its
    /// writer and committed late, applied).
    Again {
        writer: u8,
        late: bool,
    },
    /// A round of dead letters under at-least-once (picks may repeat, be marked already or
    /// be unknown) and returns: marked before the returns, kept past the delivery limit
    /// until settled.
    Discard {
        picks: [u8; 2],
        reason: u8,
        returns: [u8; 1],
    },
}

/// A message the model holds: id, body, returns, dead-letter mark, enqueue time.
type ModelHeld = (u64, Vec<u8>, u32, Option<DeadMark>, u64);

/// The model: what the queue holds, in enqueue order, the highest numbered round taken
/// from each node (start, number), and how far a leader said it handed messages out
/// (node, start, id).
#[derive(Default)]
struct Model {
    held: Vec<ModelHeld>,
    limit: Option<u32>,
    rounds: std::collections::HashMap<u64, (u64, u64)>,
    out: Option<(u64, u64, u64)>,
}

impl Model {
    fn expect(&mut self, index: u64, cmd: &QueueCommand) -> QueueResponse {
        let at = |held: &Vec<ModelHeld>, id: u64| held.iter().position(|h| h.0 == id);
        match cmd {
            QueueCommand::Enqueue { message } => {
                self.held
                    .push((message_id(index, 0), message.to_vec(), 0, None, 0));
                QueueResponse::Enqueued {
                    id: message_id(index, 0),
                }
            }
            QueueCommand::EnqueueBatch {
                messages,
                enqueued_at,
            } => {
                for (k, m) in messages.iter().enumerate() {
                    self.held
                        .push((message_id(index, k), m.to_vec(), 0, None, *enqueued_at));
                }
                QueueResponse::Enqueued {
                    id: message_id(index, 0),
                }
            }
            QueueCommand::Settle { id } => {
                let found = at(&self.held, *id).map(|i| self.held.remove(i)).is_some();
                QueueResponse::Settled { found }
            }
            QueueCommand::SettleBatch { ids } => {
                let mut found = 0;
                for id in ids {
                    if let Some(i) = at(&self.held, *id) {
                        self.held.remove(i);
                        found += 1;
                    }
                }
                QueueResponse::SettledMany { found }
            }
            QueueCommand::ReturnBatch { ids } => {
                let (mut found, mut dropped) = (0, 0);
                for id in ids {
                    let one = self.expect(index, &QueueCommand::Return { id: *id });
                    if let QueueResponse::Returned { returns, kept } = one {
                        found += (returns > 0) as u64;
                        dropped += (returns > 0 && !kept) as u64;
                    }
                }
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
                if let Some((node, id)) = write {
                    // Repeated only as the node's highest number taken; a lower one is
                    // applied and leaves the highest as it was.
                    let number = (id.started_at, id.seq);
                    match self.rounds.get(node) {
                        Some(highest) if *highest == number => return QueueResponse::Repeated,
                        Some(highest) if *highest > number => {}
                        _ => {
                            self.rounds.insert(*node, number);
                        }
                    }
                    // A mark further than the group's moves it to this writer; one at or
                    // below it (a deposed leader's late round) changes nothing.
                    let further = self
                        .out
                        .is_none_or(|(_, _, through)| *out_through > through);
                    if *out_through > 0 && further {
                        self.out = Some((*node, id.started_at, *out_through));
                    }
                }
                let batch = QueueCommand::EnqueueBatch {
                    messages: messages.clone(),
                    enqueued_at: *enqueued_at,
                };
                let QueueResponse::Enqueued { id } = self.expect(index, &batch) else {
                    unreachable!("an enqueue answers Enqueued")
                };
                for mark in discarded {
                    if let Some(i) = at(&self.held, mark.id).filter(|&i| self.held[i].3.is_none()) {
                        self.held[i].3 = Some(*mark);
                    }
                }
                // A return whose delivery went out with fewer returns than the message
                // has now is ignored (named stale); one with no counts, or a count at or
                // above the message's, is a return as `Return`.
                let (mut found, mut dropped, mut stale) = (0, 0, Vec::new());
                for (i, id) in returned.iter().enumerate() {
                    let held = at(&self.held, *id).map(|k| self.held[k].2);
                    if seen.len() == returned.len() && held.is_some_and(|n| seen[i] < n) {
                        stale.push(i as u32);
                        continue;
                    }
                    let one = self.expect(index, &QueueCommand::Return { id: *id });
                    if let QueueResponse::Returned { returns, kept } = one {
                        found += (returns > 0) as u64;
                        dropped += (returns > 0 && !kept) as u64;
                    }
                }
                let settles = QueueCommand::SettleBatch {
                    ids: settled.clone(),
                };
                let QueueResponse::SettledMany { found: settled } = self.expect(index, &settles)
                else {
                    unreachable!("a settle batch answers SettledMany")
                };
                QueueResponse::RoundDone {
                    id,
                    returned: found,
                    dropped,
                    settled,
                    stale,
                }
            }
            QueueCommand::Return { id } => match at(&self.held, *id) {
                None => QueueResponse::Returned {
                    returns: 0,
                    kept: false,
                },
                Some(i) => {
                    self.held[i].2 += 1;
                    let returns = self.held[i].2;
                    let kept = self.held[i].3.is_some() || self.limit.is_none_or(|l| returns <= l);
                    if !kept {
                        self.held.remove(i);
                    }
                    QueueResponse::Returned { returns, kept }
                }
            },
        }
    }
}

/// Whether the machine's message `id` (`h`) is the model's `m`.
fn same_message(id: u64, h: &super::queue_machine::Held, m: &ModelHeld) -> bool {
    (id, h.message.as_deref(), h.returns, h.dead, h.enqueued_at)
        == (m.0, Some(m.1.as_slice()), m.2, m.3, m.4)
}

/// Whether every message of the machine is the model's, in order.
fn matches_model(
    messages: &std::collections::BTreeMap<u64, super::queue_machine::Held>,
    held: &[ModelHeld],
) -> bool {
    messages.len() == held.len()
        && messages
            .iter()
            .zip(held)
            .all(|((id, h), m)| same_message(*id, h, m))
}

/// Whether the messages an entry names (`named`) and those it added (ids past
/// `last_before`, the model's last before it) are the model's, and the machine holds as
/// many as the model.
fn matches_model_where(
    messages: &std::collections::BTreeMap<u64, super::queue_machine::Held>,
    held: &[ModelHeld],
    named: &[u64],
    last_before: Option<u64>,
) -> bool {
    if messages.len() != held.len() {
        return false;
    }
    let named_same = named.iter().all(|id| {
        // The model is in enqueue order, which is id order.
        let at = held.binary_search_by_key(id, |m| m.0).ok();
        match (messages.get(id), at) {
            (Some(h), Some(i)) => same_message(*id, h, &held[i]),
            (None, None) => true,
            _ => false,
        }
    });
    let added = held
        .iter()
        .rev()
        .take_while(|m| Some(m.0) > last_before)
        .count();
    let tail = messages.iter().rev().zip(held.iter().rev()).take(added);
    named_same && tail.into_iter().all(|((id, h), m)| same_message(*id, h, m))
}

/// The ids an entry names (settled, returned, dead-lettered).
fn named_ids(payload: &EntryPayload<QueueRaft>) -> Vec<u64> {
    let EntryPayload::Normal(cmd) = payload else {
        return Vec::new();
    };
    match cmd {
        QueueCommand::Enqueue { .. } | QueueCommand::EnqueueBatch { .. } => Vec::new(),
        QueueCommand::Settle { id } | QueueCommand::Return { id } => vec![*id],
        QueueCommand::SettleBatch { ids } | QueueCommand::ReturnBatch { ids } => ids.clone(),
        QueueCommand::Round {
            returned,
            settled,
            discarded,
            ..
        } => returned
            .iter()
            .chain(settled)
            .copied()
            .chain(discarded.iter().map(|d| d.id))
            .collect(),
    }
}

thread_local! {
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

fn entry(index: u64, payload: EntryPayload<QueueRaft>) -> Entry<QueueRaft> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload,
    }
}

/// Runs one fuzz input (see the module's doc). Panics on any difference from the model.
#[doc(hidden)]
pub fn fuzz_queue_machine(input: &[u8]) {
    let mut u = Unstructured::new(input);
    let limit: Option<u8> = u.arbitrary().unwrap_or(None);
    let mut ops = Vec::new();
    while ops.len() < MAX_OPS {
        match u.arbitrary::<Op>() {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    RUNTIME.with(|rt| {
        let mut rt = rt.borrow_mut();
        let rt = rt.get_or_insert_with(|| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime")
        });
        rt.block_on(run(limit.map(u32::from), ops));
    });
}

async fn run(limit: Option<u32>, ops: Vec<Op>) {
    let mut sm = QueueMachine::new(limit);
    let mut model = Model {
        limit,
        ..Model::default()
    };
    let mut history: Vec<Entry<QueueRaft>> = Vec::new();
    let mut index = 0u64;
    let mut rebuilds = 0;
    // Numbered rounds by node, in the order first sent, and the last number given.
    let mut sent_rounds: std::collections::HashMap<u64, Vec<QueueCommand>> = Default::default();
    let mut numbered = 0;
    for op in ops {
        if matches!(op, Op::CatchUp | Op::Replay) {
            rebuilds += 1;
            if rebuilds > MAX_REBUILDS {
                continue;
            }
        }
        let pick = |p: u8, held: &Vec<ModelHeld>| match held.len() {
            0 => u64::MAX,
            n => held[p as usize % n].0,
        };
        let again = matches!(op, Op::Again { .. });
        let cmd = match op {
            Op::Enqueue { len } => QueueCommand::Enqueue {
                message: vec![len; usize::from(len % 16)].into(),
            },
            Op::Settle { pick: p } => QueueCommand::Settle {
                id: pick(p, &model.held),
            },
            Op::Return { pick: p } => QueueCommand::Return {
                id: pick(p, &model.held),
            },
            Op::EnqueueBatch { count } => QueueCommand::EnqueueBatch {
                messages: (0..count % 8)
                    .map(|k| vec![k; usize::from(k)].into())
                    .collect(),
                enqueued_at: index * 1_000,
            },
            Op::SettleBatch { picks } => QueueCommand::SettleBatch {
                ids: picks
                    .iter()
                    .map(|&p| pick(p, &model.held))
                    .chain([message_id(index + 7, 0)])
                    .collect(),
            },
            Op::ReturnBatch { picks } => QueueCommand::ReturnBatch {
                ids: picks
                    .iter()
                    .map(|&p| pick(p, &model.held))
                    .chain([message_id(index + 7, 0)])
                    .collect(),
            },
            Op::Again { writer, late } => {
                let sent = sent_rounds.get(&u64::from(writer % 3 + 1));
                let back = usize::from(late) + 1;
                match sent.and_then(|s| s.len().checked_sub(back).map(|i| &s[i])) {
                    Some(round) => round.clone(),
                    None => continue,
                }
            }
            Op::Round {
                count,
                returns,
                settles,
                writer,
            } => QueueCommand::Round {
                messages: (0..count % 8)
                    .map(|k| vec![k ^ 0x5A; usize::from(k)].into())
                    .collect(),
                returned: returns.iter().map(|&p| pick(p, &model.held)).collect(),
                settled: settles.iter().map(|&p| pick(p, &model.held)).collect(),
                discarded: Vec::new(),
                // As an earlier build wrote it: no enqueue time.
                enqueued_at: 0,
                write: (writer % 4 != 0).then(|| {
                    numbered += 1;
                    let id = WriteId {
                        started_at: 1,
                        seq: numbered,
                    };
                    (u64::from(writer % 4), id)
                }),
                // With `writer & 4`, the returns the deliveries went out with: the top
                // two bits of each pick (no counts otherwise, as earlier builds wrote).
                seen: match writer & 4 {
                    0 => Vec::new(),
                    _ => returns.iter().map(|&p| u32::from(p >> 6)).collect(),
                },
                stale: Vec::new(),
                out_through: match writer & 8 {
                    0 => 0,
                    _ => pick(count, &model.held),
                },
            },
            Op::Discard {
                picks,
                reason,
                returns,
            } => QueueCommand::Round {
                messages: Vec::new(),
                returned: returns.iter().map(|&p| pick(p, &model.held)).collect(),
                settled: Vec::new(),
                discarded: picks
                    .iter()
                    .map(|&p| DeadMark {
                        id: pick(p, &model.held),
                        reason: reason % 4,
                        died_at: index,
                    })
                    .collect(),
                enqueued_at: index * 1_000,
                write: None,
                seen: Vec::new(),
                stale: Vec::new(),
                out_through: 0,
            },
            Op::SettleUnknown => QueueCommand::Settle {
                id: message_id(index + 7, 0),
            },
            Op::ReturnUnknown => QueueCommand::Return { id: u64::MAX - 1 },
            Op::CatchUp => {
                let snap = sm
                    .get_snapshot_builder()
                    .await
                    .build_snapshot()
                    .await
                    .expect("snapshot");
                let mut follower = QueueMachine::new(limit);
                follower
                    .install_snapshot(&snap.meta, snap.snapshot)
                    .await
                    .expect("install");
                assert_eq!(follower.state().await, sm.state().await, "after a catch-up");
                sm = follower;
                continue;
            }
            Op::Replay => {
                let mut fresh = QueueMachine::new(limit);
                fresh.apply(history.clone()).await.expect("replay");
                assert_eq!(fresh.state().await, sm.state().await, "after a replay");
                continue;
            }
        };
        if let (
            false,
            QueueCommand::Round {
                write: Some((node, _)),
                ..
            },
        ) = (again, &cmd)
        {
            sent_rounds.entry(*node).or_default().push(cmd.clone());
        }
        index += 1;
        let last_before = model.held.last().map(|m| m.0);
        let want = model.expect(index, &cmd);
        let e = entry(index, EntryPayload::Normal(cmd));
        history.push(e.clone());
        let got = sm.apply([e]).await.expect("apply");
        assert_eq!(got, [want], "entry {index}");
        let full = index.is_multiple_of(FULL_CHECK_EVERY);
        let named = match full {
            true => Vec::new(),
            false => named_ids(&history.last().expect("pushed above").payload),
        };
        sm.inspect(|state| {
            let same = match full {
                true => matches_model(&state.messages, &model.held),
                false => matches_model_where(&state.messages, &model.held, &named, last_before),
            };
            assert!(
                same,
                "after entry {index}: {:?} vs the model's {:?}",
                state.messages, model.held
            );
            assert_eq!(state.last_applied.map(|l| l.index), Some(index));
            let out = state.out_mark.map(|m| (m.node, m.incarnation, m.through));
            assert_eq!(out, model.out, "the out mark after entry {index}");
        })
        .await;
    }
    sm.inspect(|state| {
        let same = matches_model(&state.messages, &model.held);
        assert!(
            same,
            "at the end: {:?} vs the model's {:?}",
            state.messages, model.held
        );
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_return_limit_and_a_catch_up_are_checked() {
        // Limit 1: the first return keeps the message, the second drops it; a machine that
        // dropped it at the first return, or lost a count in the snapshot, fails here.
        let ops = vec![
            Op::Enqueue { len: 3 },
            Op::Enqueue { len: 1 },
            Op::Return { pick: 0 },
            Op::CatchUp,
            Op::Return { pick: 0 },
            Op::Return { pick: 0 },
            // The second message, dead-lettered, outlives its limit and a catch-up.
            Op::Discard {
                picks: [0, 0],
                reason: 1,
                returns: [0],
            },
            Op::Return { pick: 0 },
            Op::Return { pick: 0 },
            Op::CatchUp,
            // Node 1's rounds: the last sent again changes nothing, also after a
            // catch-up; the one before it, committed late, enqueues again.
            Op::Round {
                count: 2,
                returns: [0, 0],
                settles: [9, 9],
                writer: 1,
            },
            Op::Round {
                count: 1,
                returns: [0, 0],
                settles: [9, 9],
                writer: 1,
            },
            Op::Again {
                writer: 0,
                late: false,
            },
            Op::CatchUp,
            Op::Again {
                writer: 0,
                late: false,
            },
            Op::Again {
                writer: 0,
                late: true,
            },
            Op::Again {
                writer: 0,
                late: false,
            },
            Op::Settle { pick: 0 },
            Op::SettleUnknown,
            Op::Replay,
        ];
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(run(Some(1), ops));
    }

    #[test]
    fn inputs_of_every_shape_run() {
        for len in [0usize, 1, 7, 64, 1000] {
            let input: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            super::fuzz_queue_machine(&input);
        }
    }
}
