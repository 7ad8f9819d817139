//! The dead letters a quorum queue on a single node holds under at-least-once (routed
//! nowhere, or refused by some of the queues they route to), kept across a restart as
//! RabbitMQ 3.10 keeps them (its `discard` is in the queue's Raft log; recorded in
//! `tests/cluster_reference/rabbitmq_at_least_once_restart.md`). In a cluster the queue's
//! group records them (`parked.rs`); here a log of the queue's own does.
//!
//! Each such dead letter gets a mark in `dead-letters/`, a warren-storage log in the
//! queue's directory: the message's id, why and when it died. The mark is appended when
//! the queue first keeps the dead letter (a copy into the log's map; its sync rides the
//! next group commit, so a power cut before it leaves the message ready again, as before:
//! at least once) and acked when the message leaves the queue (`Store::ack`). At recovery
//! the marks of messages still live take them out of the ready ones and into
//! `dead_lettering` as kept dead letters, with the reason and time of their death, to be
//! published again by `retry_unroutable` once the broker runs; nobody is handed them.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

use warren_storage::{BatchRecord, Cursor, GroupCommit, Log, LogConfig, RecoveryReport, Ticket};

use super::{Dying, Queue};
use crate::broker::dead_letter::DeathReason;

/// The marks' directory inside the queue's.
const DIR: &str = "dead-letters";

/// A mark: message id (u64 LE), reason code (u8), time of death (u64 LE, ms).
const MARK_LEN: usize = 17;

/// A kept dead letter as its mark names it: (message id, reason, when it died).
pub type HeldMark = (u64, DeathReason, u64);

/// A queue's marks of the dead letters it keeps.
pub struct HeldDeadLog {
    log: Log,
    /// Message id -> the seq of its mark in `log`.
    marks: HashMap<u64, u64>,
}

impl HeldDeadLog {
    /// Opens the marks of the queue in `queue_dir`, if it ever kept a dead letter: the
    /// log, the marks read back (unreadable ones are reported and let go), and its
    /// recovery report.
    pub fn open_existing(
        queue_dir: &Path,
        config: LogConfig,
        commit: Arc<GroupCommit>,
    ) -> io::Result<Option<(HeldDeadLog, Vec<HeldMark>, RecoveryReport)>> {
        let dir = queue_dir.join(DIR);
        if !dir.exists() {
            return Ok(None);
        }
        let (mut log, mut report) = Log::open(&dir, config, commit)?;
        let mut cursor = Cursor::at(0);
        let (mut found, mut unreadable) = (Vec::new(), Vec::new());
        while let Some(rec) = log.read_next(&mut cursor) {
            match decode(&rec.payload) {
                Some(mark) => found.push((rec.seq, mark)),
                None => unreadable.push((rec.seq, rec.payload.len())),
            }
        }
        for &(seq, len) in &unreadable {
            report.unreadable.push((
                dir.clone(),
                format!("dead-letter mark {seq} of {len} bytes, not {MARK_LEN}: let go"),
            ));
            log.ack(seq)?;
        }
        // One mark per message (`mark` writes one); should there be more, the last stands.
        let mut latest: HashMap<u64, (u64, HeldMark)> = HashMap::with_capacity(found.len());
        let mut superseded = Vec::new();
        for (seq, mark) in found {
            if let Some((earlier, _)) = latest.insert(mark.0, (seq, mark)) {
                superseded.push(earlier);
            }
        }
        for &seq in &superseded {
            log.ack(seq)?;
        }
        if !unreadable.is_empty() || !superseded.is_empty() {
            log.flush_acks()?;
        }
        let mut ordered: Vec<(u64, HeldMark)> = latest.values().copied().collect();
        ordered.sort_unstable_by_key(|(seq, _)| *seq);
        let held = HeldDeadLog {
            log,
            marks: latest.iter().map(|(id, (seq, _))| (*id, *seq)).collect(),
        };
        Ok(Some((
            held,
            ordered.into_iter().map(|(_, m)| m).collect(),
            report,
        )))
    }

    /// Creates the queue's marks (its first kept dead letter).
    pub fn create(
        queue_dir: &Path,
        config: LogConfig,
        commit: Arc<GroupCommit>,
    ) -> io::Result<HeldDeadLog> {
        let (log, _) = Log::open(&queue_dir.join(DIR), config, commit)?;
        Ok(HeldDeadLog {
            log,
            marks: HashMap::new(),
        })
    }

    /// Marks message `id` kept as a dead letter (once: a dead letter tried again is
    /// marked already).
    pub fn mark(&mut self, (id, reason, died_at): HeldMark, now: u64) -> io::Result<Ticket> {
        if self.marks.contains_key(&id) {
            return Ok(Ticket::DONE);
        }
        let mut bytes = [0u8; MARK_LEN];
        bytes[..8].copy_from_slice(&id.to_le_bytes());
        bytes[8] = reason.code();
        bytes[9..].copy_from_slice(&died_at.to_le_bytes());
        let parts: [&[u8]; 1] = [&bytes];
        let record = BatchRecord {
            timestamp: now,
            persistent: true,
            kind: 0,
            parts: &parts,
        };
        let (seq, ticket) = self.log.append_batch(std::slice::from_ref(&record))?;
        self.marks.insert(id, seq);
        Ok(ticket)
    }

    /// Message `id` left the queue: its mark, if it has one, goes.
    #[inline]
    pub fn forget(&mut self, id: u64) -> io::Result<()> {
        if self.marks.is_empty() {
            return Ok(());
        }
        match self.marks.remove(&id) {
            Some(seq) => self.log.ack(seq).map(|_| ()),
            None => Ok(()),
        }
    }

    pub fn dir(&self) -> &Path {
        self.log.dir()
    }

    pub fn log_mut(&mut self) -> &mut Log {
        &mut self.log
    }

    pub fn into_log(self) -> Log {
        self.log
    }
}

fn decode(payload: &[u8]) -> Option<HeldMark> {
    let bytes: &[u8; MARK_LEN] = payload.try_into().ok()?;
    let id = u64::from_le_bytes(bytes[..8].try_into().ok()?);
    let died_at = u64::from_le_bytes(bytes[9..].try_into().ok()?);
    Some((id, DeathReason::from_code(bytes[8]), died_at))
}

impl Queue {
    /// The queue keeps dead letter `seq` (at-least-once: it routed nowhere, or some of its
    /// queues refused it): on a single node its mark is written, so that a restart keeps
    /// it too; a replicated queue's group records it instead (`parked.rs`). A mark that
    /// cannot be written leaves the message ready again after a restart (logged).
    pub(in crate::broker) fn mark_kept_dead(
        &mut self,
        seq: u64,
        reason: DeathReason,
        died_at: u64,
    ) {
        if !self.durable || self.quorum.as_ref().is_none_or(|qs| qs.replica.is_some()) {
            return;
        }
        let now = crate::broker::vhost::now_millis();
        if let Err(e) = self.store.mark_held_dead((seq, reason, died_at), now) {
            tracing::error!(queue = %self.name,
                "marking a kept dead letter: {e} (after a restart it is ready again)");
        }
    }

    /// Before a queue that kept dead letters on its own becomes a replica of its group (its
    /// node's first start in a cluster): they are made ready again, so that they go to the
    /// group with the rest of its messages (`replica_preexisting`), as every message it
    /// held does; the group then has them, and they are dead-lettered again if rejected
    /// again. Returns how many.
    pub(in crate::broker) fn release_held_dead(&mut self) -> usize {
        let kept: Vec<u64> = self
            .dead_lettering
            .iter()
            .filter(|d| d.unroutable.is_some())
            .map(|d| d.seq)
            .collect();
        for &seq in &kept {
            if let Some(i) = self.dead_lettering.iter().position(|d| d.seq == seq) {
                self.forget_dying(i);
            }
            if let Err(e) = self.store.forget_held_dead(seq) {
                tracing::error!(queue = %self.name, "letting go of a dead-letter mark: {e}");
            }
            self.restore(seq);
        }
        if self.dead_lettering.iter().all(|d| d.unroutable.is_none()) {
            self.unroutable_retry_at = 0;
        }
        kept.len()
    }

    /// At recovery: the messages this queue kept as dead letters before its restart
    /// (`marks`) are kept again: taken out of the ready ones, held in `dead_lettering`
    /// as routed nowhere (with their reason and time of death), and tried again once the
    /// broker runs (`retry_unroutable`, armed by the caller). A mark of a message that is
    /// gone is let go. Returns how many are held.
    pub(super) fn hold_marked_dead(&mut self, marks: Vec<HeldMark>, now: u64) -> usize {
        let mut held = 0;
        for (id, reason, died_at) in marks {
            let payload = self.store.read(id).map(|rec| rec.payload);
            let Some(payload) = payload.filter(|_| self.store.take_ready(id)) else {
                if let Err(e) = self.store.forget_held_dead(id) {
                    tracing::warn!(queue = %self.name, "letting go of a dead-letter mark: {e}");
                }
                continue;
            };
            let _ = self.hold_dead_since(id, payload, reason, Some(died_at));
            let d = self.dead_lettering.back_mut().expect("held just now");
            *d = Dying {
                sync: Ticket::DONE,
                unroutable: Some((reason, died_at)),
                ..*d
            };
            held += 1;
        }
        if held > 0 {
            self.unroutable_retry_at = now;
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new marks' log in `dir`, and the commit service it was made with.
    fn new_marks(dir: &Path) -> (HeldDeadLog, Arc<GroupCommit>) {
        let commit = GroupCommit::start(warren_storage::FsyncPolicy::Never);
        let held = HeldDeadLog::create(dir, LogConfig::default(), commit.clone()).unwrap();
        (held, commit)
    }

    #[test]
    fn marks_are_read_back_and_forgotten_marks_stay_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (mut held, commit) = new_marks(dir.path());
        held.mark((7, DeathReason::Rejected, 1_000), 5).unwrap();
        held.mark((9, DeathReason::Expired, 2_000), 5).unwrap();
        held.mark((7, DeathReason::MaxLen, 3_000), 5).unwrap(); // Marked already.
        held.mark((11, DeathReason::DeliveryLimit, 4_000), 5)
            .unwrap();
        held.forget(9).unwrap();
        held.forget(12).unwrap(); // Never marked.
        held.log_mut().flush_acks().unwrap();
        drop(held);

        let (_, marks, report) =
            HeldDeadLog::open_existing(dir.path(), LogConfig::default(), commit)
                .unwrap()
                .expect("the marks' log exists");
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(
            marks,
            vec![
                (7, DeathReason::Rejected, 1_000),
                (11, DeathReason::DeliveryLimit, 4_000)
            ]
        );
    }

    #[test]
    fn a_queue_that_never_kept_a_dead_letter_has_no_marks() {
        let dir = tempfile::tempdir().unwrap();
        let commit = GroupCommit::start(warren_storage::FsyncPolicy::Never);
        let opened = HeldDeadLog::open_existing(dir.path(), LogConfig::default(), commit);
        assert!(opened.unwrap().is_none());
        assert!(!dir.path().join(DIR).exists());
    }

    #[test]
    fn a_mark_of_the_wrong_size_is_reported_and_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let (mut held, commit) = new_marks(dir.path());
        held.mark((1, DeathReason::Rejected, 10), 5).unwrap();
        let parts: [&[u8]; 1] = [b"not a mark"];
        let record = BatchRecord {
            timestamp: 5,
            persistent: true,
            kind: 0,
            parts: &parts,
        };
        held.log_mut()
            .append_batch(std::slice::from_ref(&record))
            .unwrap();
        drop(held);
        let (_, marks, report) =
            HeldDeadLog::open_existing(dir.path(), LogConfig::default(), commit.clone())
                .unwrap()
                .unwrap();
        assert_eq!(marks, vec![(1, DeathReason::Rejected, 10)]);
        assert_eq!(report.unreadable.len(), 1, "{report:?}");
        assert!(report.unreadable[0].1.contains("10 bytes"), "{report:?}");
        // Let go: not reported again.
        let (_, _, again) = HeldDeadLog::open_existing(dir.path(), LogConfig::default(), commit)
            .unwrap()
            .unwrap();
        assert!(again.unreadable.is_empty(), "{again:?}");
    }
}
