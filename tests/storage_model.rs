//! Model-based property test of the storage engine: random sequences of append, ack,
//! compact, close/reopen and simulated crash, checked against an in-memory model of the
//! live set after every step.

use proptest::prelude::*;
use std::collections::BTreeMap;
use warren::storage::{Cursor, FsyncPolicy, GroupCommit, Log, LogConfig};

#[derive(Debug, Clone)]
enum Op {
    Append {
        len: usize,
        persistent: bool,
    },
    Ack {
        pick: usize,
    },
    Flush,
    Compact,
    Reopen,
    /// Drop the log without flushing pending acks, as a kill -9 would.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..300, prop::bool::weighted(0.8)).prop_map(|(len, persistent)| Op::Append { len, persistent }),
        5 => any::<usize>().prop_map(|pick| Op::Ack { pick }),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
}

fn config() -> LogConfig {
    LogConfig {
        segment_size: 2048,
        compact_below: 0.5,
        ack_batch: 8,
    }
}

/// The model: seq -> (payload length, persistent, acked-and-flushed?).
#[derive(Default)]
struct Model {
    live: BTreeMap<u64, (usize, bool)>,
    /// Acked, but the ack may not be on disk yet: after a crash it may come back.
    acked_unflushed: BTreeMap<u64, (usize, bool)>,
}

fn check(log: &Log, model: &Model) -> Result<(), TestCaseError> {
    let mut cursor = Cursor::at(0);
    let mut seen = Vec::new();
    while let Some(rec) = log.read_next(&mut cursor) {
        let (len, _) = model
            .live
            .get(&rec.seq)
            .ok_or_else(|| TestCaseError::fail(format!("seq {} read but not live", rec.seq)))?;
        prop_assert_eq!(&rec.payload[..], &payload(rec.seq, *len)[..]);
        let direct = log.read(rec.seq).expect("read by seq");
        prop_assert_eq!(direct.payload, rec.payload);
        seen.push(rec.seq);
    }
    let expected: Vec<u64> = model.live.keys().copied().collect();
    prop_assert_eq!(seen, expected);
    prop_assert_eq!(log.live(), model.live.len() as u64);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn live_set_matches_model(ops in prop::collection::vec(op(), 1..200)) {
        let dir = tempfile::tempdir().unwrap();
        let commit = GroupCommit::start(FsyncPolicy::Never);
        let (mut log, _) = Log::open(dir.path(), config(), commit.clone()).unwrap();
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Append { len, persistent } => {
                    let a = log.append(7, persistent, &payload(log.next_seq(), len)).unwrap();
                    model.live.insert(a.seq, (len, persistent));
                }
                Op::Ack { pick } => {
                    if !model.live.is_empty() {
                        let seq = *model.live.keys().nth(pick % model.live.len()).unwrap();
                        prop_assert!(log.ack(seq).unwrap());
                        let v = model.live.remove(&seq).unwrap();
                        model.acked_unflushed.insert(seq, v);
                    }
                }
                Op::Flush => {
                    log.flush_acks().unwrap();
                    model.acked_unflushed.clear();
                }
                Op::Compact => {
                    log.compact().unwrap();
                    // Compaction drops acked records for good, flushed or not... but only in
                    // sealed segments it rewrote; the rest may still come back after a crash.
                }
                Op::Reopen => {
                    log.close().unwrap();
                    model.acked_unflushed.clear();
                    let (l, report) = Log::open(dir.path(), config(), commit.clone()).unwrap();
                    prop_assert!(report.is_clean(), "{:?}", report);
                    log = l;
                    model.live.retain(|_, (_, persistent)| *persistent);
                }
                Op::Crash => {
                    drop(log);
                    let (l, report) = Log::open(dir.path(), config(), commit.clone()).unwrap();
                    prop_assert!(report.is_clean(), "{:?}", report);
                    log = l;
                    // Unflushed acks may come back (at-least-once) unless the record was
                    // removed with its segment or by compaction: accept what the log says,
                    // but only for those.
                    for (seq, v) in std::mem::take(&mut model.acked_unflushed) {
                        if log.is_live(seq) {
                            model.live.insert(seq, v);
                        }
                    }
                    model.live.retain(|_, (_, persistent)| *persistent);
                }
            }
            check(&log, &model)?;
        }
    }
}

#[test]
fn deleted_segment_stays_readable_through_held_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let commit = GroupCommit::start(FsyncPolicy::Never);
    let (mut log, _) = Log::open(dir.path(), config(), commit).unwrap();
    let first = log.append(1, true, &[b'x'; 500]).unwrap().seq;
    let held = log.read(first).unwrap().payload;
    for _ in 0..10 {
        log.append(1, true, &[b'y'; 500]).unwrap();
    }
    assert!(log.segment_count() > 1);
    let before = log.segment_count();
    log.ack(first).unwrap();
    log.ack(first + 1).unwrap();
    log.ack(first + 2).unwrap();
    assert!(
        log.segment_count() < before,
        "fully acked sealed segment deleted at once"
    );
    assert!(
        held.iter().all(|&b| b == b'x'),
        "held bytes survive deletion"
    );
}

#[test]
fn compaction_reclaims_space_and_keeps_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let commit = GroupCommit::start(FsyncPolicy::Never);
    let cfg = LogConfig {
        segment_size: 64 * 1024,
        ..config()
    };
    let (mut log, _) = Log::open(dir.path(), cfg.clone(), commit.clone()).unwrap();
    let seqs: Vec<u64> = (0..600)
        .map(|i| log.append(1, true, &payload(i, 200)).unwrap().seq)
        .collect();
    for &s in seqs.iter().filter(|s| *s % 4 != 0) {
        log.ack(s).unwrap();
    }
    let before = log.disk_bytes();
    let reclaimed = log.compact().unwrap();
    assert!(reclaimed > 0);
    assert!(log.disk_bytes() < before);
    log.close().unwrap();
    let (log, report) = Log::open(dir.path(), cfg, commit).unwrap();
    assert!(report.is_clean());
    for &s in &seqs {
        assert_eq!(log.is_live(s), s % 4 == 0, "seq {s}");
        if s % 4 == 0 {
            assert_eq!(&log.read(s).unwrap().payload[..], &payload(s, 200)[..]);
        }
    }
}

#[test]
fn group_commit_shares_syncs_across_logs() {
    let dir = tempfile::tempdir().unwrap();
    let commit = GroupCommit::start(FsyncPolicy::Always);
    let mut logs: Vec<Log> = (0..4)
        .map(|i| {
            Log::open(&dir.path().join(format!("q{i}")), config(), commit.clone())
                .unwrap()
                .0
        })
        .collect();
    let mut tickets = Vec::new();
    for round in 0..50u64 {
        for log in logs.iter_mut() {
            tickets.push(log.append(round, true, b"durable").unwrap().ticket);
        }
    }
    for t in &tickets {
        commit.wait(*t).unwrap();
    }
    let stats = commit.stats();
    assert!(stats.rounds >= 1);
    assert!(
        stats.rounds < tickets.len() as u64,
        "{} rounds for {} appends: no sharing",
        stats.rounds,
        tickets.len()
    );
    // A transient record never dirties a file.
    let before = commit.stats().files_synced;
    let t = logs[0].append(0, false, b"transient").unwrap().ticket;
    assert_eq!(commit.status(t), Some(Ok(())));
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(commit.stats().files_synced, before);
}

/// Steady publish/ack load where consumers settle out of order (a sliding window of
/// unacked records, acked in a scrambled order): with upkeep compacting, disk use stays
/// within about twice the live data plus the head segment (and one spare file).
#[test]
fn disk_use_stays_proportional_to_live_data() {
    let dir = tempfile::tempdir().unwrap();
    let commit = GroupCommit::start(FsyncPolicy::Never);
    let segment_size = 64 * 1024;
    let cfg = LogConfig {
        segment_size,
        compact_below: 0.5,
        ack_batch: 256,
    };
    let (mut log, _) = Log::open(dir.path(), cfg, commit).unwrap();
    let record = 32 + 200;
    let window = 2_000u64; // live records at any time
    let mut pending: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut worst = 0.0f64;
    for i in 0..60_000u64 {
        pending.push_back(log.append(i, true, &[9u8; 200]).unwrap().seq);
        if pending.len() as u64 > window {
            // Ack a random one of the older half: out-of-order settlement.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let k = (rng % (window / 2)) as usize;
            let seq = pending.remove(k).unwrap();
            log.ack(seq).unwrap();
        }
        if i % 1_000 == 0 {
            log.maintain().unwrap();
            let live_bytes = log.live() * record;
            let allowed = 2 * live_bytes + 2 * segment_size as u64;
            let used = log.disk_bytes();
            worst = worst.max(used as f64 / allowed as f64);
            assert!(
                used <= allowed,
                "after {i} appends: {used} bytes on disk for {live_bytes} live"
            );
        }
    }
    println!("worst disk use: {:.0} % of the allowance", worst * 100.0);
}
