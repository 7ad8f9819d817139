//! Where a queue's messages live: one log — or, for a priority queue (`x-max-priority`),
//! one log per priority level that has held a message, each with its own read cursor and
//! requeued set. Reading takes the highest level with a ready message, FIFO within it; no
//! per-message heap state is needed for a backlog of any size.
//!
//! Level 0 is the log in the queue's directory itself (so a plain queue's files are where
//! they always were); level N > 0 is in the subdirectory `pNNN/`, created on first use.
//!
//! A message is named by an id that carries its level in the top byte and its sequence
//! number (per level's log) in the rest, so a delivery tag still maps to one `u64`.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::held_dead::{HeldDeadLog, HeldMark};

use warren_storage::{
    AckFlush, BatchRecord, Compacted, CompactionJob, Cursor, GroupCommit, Log, LogConfig,
    RecoveryReport, StoredRecord, Ticket,
};

const LEVEL_SHIFT: u32 = 56;
const SEQ_MASK: u64 = (1 << LEVEL_SHIFT) - 1;

/// The id of message `seq` of level `level`.
#[inline]
pub fn message_id(level: usize, seq: u64) -> u64 {
    assert!(
        seq <= SEQ_MASK,
        "sequence number {seq} overflows a message id"
    );
    (level as u64) << LEVEL_SHIFT | seq
}

/// (level, sequence number) of a message id.
#[inline]
pub fn split_id(id: u64) -> (usize, u64) {
    ((id >> LEVEL_SHIFT) as usize, id & SEQ_MASK)
}

fn level_dir(dir: &Path, level: usize) -> PathBuf {
    match level {
        0 => dir.to_path_buf(),
        n => dir.join(format!("p{n:03}")),
    }
}

/// One priority level: its log and where reading has got to.
pub(super) struct Level {
    pub(super) log: Log,
    cursor: Cursor,
    /// Live sequence numbers below the cursor, to be delivered again first (lowest
    /// first: their original order).
    requeued: BTreeSet<u64>,
    /// Sequence numbers at or after the cursor taken out of order (`take_ahead`): the
    /// cursor passes over them; given back, they are ready where they are.
    ahead: BTreeSet<u64>,
}

impl Level {
    fn new(log: Log) -> Level {
        Level {
            log,
            cursor: Cursor::at(0),
            requeued: BTreeSet::new(),
            ahead: BTreeSet::new(),
        }
    }
}

/// Where `Store::peek` found the next message, for `Store::take`.
#[derive(Debug, Clone, Copy)]
pub struct Position {
    level: usize,
    /// The level's cursor after the message; `None` if it came from the requeued set.
    after: Option<Cursor>,
}

impl Position {
    /// The message came from the requeued set, not from the log in order.
    pub fn requeued(&self) -> bool {
        self.after.is_none()
    }
}

/// A queue's logs.
pub struct Store {
    config: LogConfig,
    commit: Arc<GroupCommit>,
    /// Indexed by priority; `None` for a level never used. Plain queues have one level.
    pub(super) levels: Vec<Option<Level>>,
    /// Marks of the dead letters the queue keeps (`held_dead.rs`); `None` until it first
    /// keeps one.
    held_dead: Option<HeldDeadLog>,
    /// The marks read back at recovery, until the queue takes them.
    recovered_marks: Vec<HeldMark>,
}

impl Store {
    /// Opens (recovering) a queue's logs in `dir`: level 0 always, higher levels where
    /// their directories exist. `max_priority` is 0 for a plain queue.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        commit: Arc<GroupCommit>,
        max_priority: u8,
    ) -> io::Result<(Store, Vec<RecoveryReport>)> {
        let mut levels: Vec<Option<Level>> = Vec::with_capacity(max_priority as usize + 1);
        let mut reports = Vec::new();
        for level in 0..=max_priority as usize {
            let path = level_dir(dir, level);
            if level > 0 && !path.exists() {
                levels.push(None);
                continue;
            }
            let (log, report) = Log::open(&path, config.clone(), commit.clone())?;
            reports.push(report);
            levels.push(Some(Level::new(log)));
        }
        let (held_dead, recovered_marks) =
            match HeldDeadLog::open_existing(dir, config.clone(), commit.clone())? {
                Some((held, marks, report)) => {
                    reports.push(report);
                    (Some(held), marks)
                }
                None => (None, Vec::new()),
            };
        let store = Store {
            config,
            commit,
            levels,
            held_dead,
            recovered_marks,
        };
        Ok((store, reports))
    }

    fn existing(&self) -> impl Iterator<Item = (usize, &Level)> {
        self.levels
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.as_ref().map(|l| (i, l)))
    }

    fn existing_mut(&mut self) -> impl Iterator<Item = (usize, &mut Level)> {
        self.levels
            .iter_mut()
            .enumerate()
            .filter_map(|(i, l)| l.as_mut().map(|l| (i, l)))
    }

    #[inline]
    fn level(&self, id: u64) -> Option<(&Level, u64)> {
        let (level, seq) = split_id(id);
        Some((self.levels.get(level)?.as_ref()?, seq))
    }

    #[inline]
    fn level_mut(&mut self, id: u64) -> Option<(&mut Level, u64)> {
        let (level, seq) = split_id(id);
        Some((self.levels.get_mut(level)?.as_mut()?, seq))
    }

    /// The log of one level, if that level exists.
    pub fn level_log(&self, level: usize) -> Option<&Log> {
        self.levels.get(level)?.as_ref().map(|l| &l.log)
    }

    pub fn level_log_mut(&mut self, level: usize) -> Option<&mut Log> {
        self.levels.get_mut(level)?.as_mut().map(|l| &mut l.log)
    }

    /// Highest priority level (0 for a plain queue).
    pub fn max_level(&self) -> usize {
        self.levels.len() - 1
    }

    /// Messages stored and not acked, over all levels.
    #[inline]
    pub fn live(&self) -> u64 {
        if let [Some(only)] = &self.levels[..] {
            return only.log.live(); // A plain queue: no iteration.
        }
        self.existing().map(|(_, l)| l.log.live()).sum()
    }

    /// Appends a batch to one level's log (creating it on first use).
    pub fn append_batch(&mut self, level: usize, recs: &[BatchRecord<'_>]) -> io::Result<Ticket> {
        let level = level.min(self.max_level());
        if self.levels[level].is_none() {
            // The queue's directory is level 0's, which is always open.
            let dir = self.levels[0].as_ref().expect("level 0 is open").log.dir();
            let (log, _) = Log::open(
                &level_dir(dir, level),
                self.config.clone(),
                self.commit.clone(),
            )?;
            self.levels[level] = Some(Level::new(log));
        }
        let l = self.levels[level].as_mut().expect("created above");
        let (_, ticket) = l.log.append_batch(recs)?;
        Ok(ticket)
    }

    /// Appends one record to level 0 (a queue without priorities); returns its id.
    pub fn append_one(&mut self, rec: BatchRecord<'_>) -> io::Result<u64> {
        let l = self.levels[0].as_mut().expect("level 0 exists");
        let (seq, _) = l.log.append_batch(std::slice::from_ref(&rec))?;
        Ok(seq)
    }

    /// The next message to deliver without taking it: the highest level with a ready
    /// message; within it, requeued ones first, then the log in order. The record's `seq`
    /// is its message id.
    pub fn peek(&mut self) -> Option<(StoredRecord, Position)> {
        if let [Some(l)] = &mut self.levels[..] {
            // A plain queue (level 0 only): its ids are its sequence numbers.
            if let Some(&seq) = l.requeued.first() {
                if let Some(rec) = l.log.read(seq) {
                    return Some((
                        rec,
                        Position {
                            level: 0,
                            after: None,
                        },
                    ));
                }
            } else {
                let mut cursor = l.cursor;
                let mut rec = l.log.read_next(&mut cursor)?;
                while l.ahead.contains(&rec.seq) {
                    rec = l.log.read_next(&mut cursor)?;
                }
                debug_assert!(rec.seq <= SEQ_MASK);
                return Some((
                    rec,
                    Position {
                        level: 0,
                        after: Some(cursor),
                    },
                ));
            }
        }
        for (level, slot) in self.levels.iter_mut().enumerate().rev() {
            let Some(l) = slot.as_mut() else {
                continue;
            };
            while let Some(&seq) = l.requeued.first() {
                if let Some(mut rec) = l.log.read(seq) {
                    rec.seq = message_id(level, seq);
                    return Some((rec, Position { level, after: None }));
                }
                l.requeued.pop_first();
            }
            let mut cursor = l.cursor;
            let mut next = l.log.read_next(&mut cursor);
            while next.as_ref().is_some_and(|r| l.ahead.contains(&r.seq)) {
                next = l.log.read_next(&mut cursor);
            }
            if let Some(mut rec) = next {
                rec.seq = message_id(level, rec.seq);
                let after = Some(cursor);
                return Some((rec, Position { level, after }));
            }
        }
        None
    }

    /// Takes the message `peek` returned (id `id`); returns whether it may have been
    /// delivered before.
    pub fn take(&mut self, id: u64, at: Position) -> bool {
        let l = self.levels[at.level].as_mut().expect("peeked level exists");
        let (_, seq) = split_id(id);
        match at.after {
            None => {
                let first = l.requeued.pop_first();
                debug_assert_eq!(first, Some(seq));
                true
            }
            Some(cursor) => {
                l.cursor = cursor;
                if !l.ahead.is_empty() {
                    // Those the cursor passed over are simply taken now.
                    l.ahead = l.ahead.split_off(&cursor.seq);
                }
                l.log.redelivered_through().is_some_and(|h| seq <= h)
            }
        }
    }

    /// A plain queue's (one level, ids = sequence numbers) next message, taken at once:
    /// the delivery path's fast step. `None` for a store with priority levels.
    #[inline]
    pub fn plain(&mut self) -> Option<(&mut Log, &mut Cursor, &mut BTreeSet<u64>)> {
        debug_assert!(
            self.nothing_ahead(),
            "the fast path knows nothing of `ahead`"
        );
        match &mut self.levels[..] {
            [Some(l)] => Some((&mut l.log, &mut l.cursor, &mut l.requeued)),
            _ => None,
        }
    }

    /// Makes a taken, live message ready again (ahead of everything not yet delivered on
    /// its level). Returns it, or `None` if it is no longer live.
    pub fn restore(&mut self, id: u64) -> Option<StoredRecord> {
        let (l, seq) = self.level_mut(id)?;
        let rec = l.log.read(seq)?;
        if !l.ahead.remove(&seq) {
            l.requeued.insert(seq);
        }
        Some(rec)
    }

    /// Takes live message `id`, which the cursor has not reached, out of order (a
    /// replica delivering what its group's leader handed it). False if it is not live,
    /// or not ahead of the cursor, or taken already.
    pub fn take_ahead(&mut self, id: u64) -> bool {
        let Some((l, seq)) = self.level_mut(id) else {
            return false;
        };
        seq >= l.cursor.seq && l.log.read(seq).is_some() && l.ahead.insert(seq)
    }

    /// Takes live message `id` out of the ready ones wherever it is: requeued, or not yet
    /// reached by the cursor. False if it is not live or not ready.
    pub fn take_ready(&mut self, id: u64) -> bool {
        let Some((l, seq)) = self.level_mut(id) else {
            return false;
        };
        if l.log.read(seq).is_none() {
            return false;
        }
        l.requeued.remove(&seq) || (seq >= l.cursor.seq && l.ahead.insert(seq))
    }

    /// No message is taken ahead of the cursor (the plain fast path may run).
    #[inline]
    pub fn nothing_ahead(&self) -> bool {
        self.levels.iter().flatten().all(|l| l.ahead.is_empty())
    }

    /// Whether message `id` is taken: live, and read past (not requeued) or taken ahead of
    /// the cursor (a delivery of it is out, or it is held for dead-lettering).
    pub fn is_taken(&self, id: u64) -> bool {
        let Some((l, seq)) = self.level(id) else {
            return false;
        };
        let taken = (seq < l.cursor.seq && !l.requeued.contains(&seq)) || l.ahead.contains(&seq);
        taken && l.log.read(seq).is_some()
    }

    #[inline]
    pub fn read(&self, id: u64) -> Option<StoredRecord> {
        let (l, seq) = self.level(id)?;
        l.log.read(seq)
    }

    #[inline]
    pub fn mark_delivered(&mut self, id: u64) {
        if let Some((l, seq)) = self.level_mut(id) {
            l.log.mark_delivered(seq);
        }
    }

    /// Acks a message; false if it was not live. A mark of it as a kept dead letter goes
    /// with it.
    #[inline]
    pub fn ack(&mut self, id: u64) -> io::Result<bool> {
        let acked = match self.level_mut(id) {
            Some((l, seq)) => l.log.ack(seq)?,
            None => false,
        };
        if let Some(held) = self.held_dead.as_mut() {
            // After the message's own ack: a mark left behind only holds a message that
            // is gone, which recovery lets go.
            if let Err(e) = held.forget(id) {
                tracing::error!(dir = %held.dir().display(), "acking a dead-letter mark: {e}");
            }
        }
        Ok(acked)
    }

    /// Acks every ready message (requeued or not yet read) of every level.
    pub fn purge_ready(&mut self) -> io::Result<u64> {
        let mut purged = 0;
        for (_, l) in self.existing_mut() {
            for seq in std::mem::take(&mut l.requeued) {
                if l.log.ack(seq)? {
                    purged += 1;
                }
            }
            while let Some(rec) = l.log.read_next(&mut l.cursor) {
                if !l.ahead.contains(&rec.seq) && l.log.ack(rec.seq)? {
                    purged += 1;
                }
            }
            // Those taken ahead are behind the cursor now: taken as any other.
            l.ahead.clear();
            l.log.flush_acks()?;
        }
        Ok(purged)
    }

    /// Every live record, in storage order (recovery-time bookkeeping).
    pub fn scan(&self, mut f: impl FnMut(&StoredRecord)) {
        for (_, l) in self.existing() {
            let mut cursor = Cursor::at(0);
            while let Some(rec) = l.log.read_next(&mut cursor) {
                f(&rec);
            }
        }
    }

    /// Every ready record: the requeued ones and those at or after the cursor.
    pub fn scan_ready(&self, mut f: impl FnMut(&StoredRecord)) {
        for (_, l) in self.existing() {
            for rec in l.requeued.iter().filter_map(|&seq| l.log.read(seq)) {
                f(&rec);
            }
            let mut cursor = l.cursor;
            while let Some(rec) = l.log.read_next(&mut cursor) {
                if !l.ahead.contains(&rec.seq) {
                    f(&rec);
                }
            }
        }
    }

    pub fn take_ack_flushes(&mut self, out: &mut Vec<AckFlush>) {
        for (_, l) in self.existing_mut() {
            let f = l.log.take_ack_flush();
            if !f.is_empty() {
                out.push(f);
            }
        }
        if let Some(held) = self.held_dead.as_mut() {
            let f = held.log_mut().take_ack_flush();
            if !f.is_empty() {
                out.push(f);
            }
        }
    }

    pub fn flush_acks(&mut self) -> io::Result<()> {
        for (_, l) in self.existing_mut() {
            l.log.flush_acks()?;
        }
        if let Some(held) = self.held_dead.as_mut() {
            held.log_mut().flush_acks()?;
        }
        Ok(())
    }

    /// Marks message `id` as a dead letter the queue keeps (`held_dead.rs`), creating
    /// the marks' log on first use.
    pub fn mark_held_dead(&mut self, mark: HeldMark, now: u64) -> io::Result<Ticket> {
        if self.held_dead.is_none() {
            let dir = self.levels[0].as_ref().expect("level 0 is open").log.dir();
            let held = HeldDeadLog::create(dir, self.config.clone(), self.commit.clone())?;
            self.held_dead = Some(held);
        }
        let held = self.held_dead.as_mut().expect("created above");
        held.mark(mark, now)
    }

    /// Message `id` is no longer a kept dead letter (it was given back to the queue).
    pub fn forget_held_dead(&mut self, id: u64) -> io::Result<()> {
        match self.held_dead.as_mut() {
            Some(held) => held.forget(id),
            None => Ok(()),
        }
    }

    /// The marks read back at recovery (once).
    pub fn take_recovered_marks(&mut self) -> Vec<HeldMark> {
        std::mem::take(&mut self.recovered_marks)
    }

    /// Compaction jobs of every level, tagged with their level.
    pub fn plan_compaction(&self) -> Vec<(usize, CompactionJob)> {
        self.existing()
            .flat_map(|(i, l)| l.log.plan_compaction().into_iter().map(move |j| (i, j)))
            .collect()
    }

    /// Installs a compacted segment into its level's log; returns the directory to fsync
    /// when it was installed.
    pub fn install_compaction(
        &mut self,
        level: usize,
        done: Compacted,
    ) -> io::Result<Option<PathBuf>> {
        match self.levels.get_mut(level).and_then(Option::as_mut) {
            Some(l) => Ok(l
                .log
                .install_compaction(done)?
                .then(|| l.log.dir().to_path_buf())),
            None => {
                done.discard()?;
                Ok(None)
            }
        }
    }

    /// The logs, highest level first (so a level's subdirectory goes before the queue
    /// directory that holds it), for removal.
    pub fn into_logs(self) -> Vec<Log> {
        let held = self.held_dead.map(HeldDeadLog::into_log);
        held.into_iter()
            .chain(self.levels.into_iter().rev().flatten().map(|l| l.log))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_storage::FsyncPolicy;

    fn rec(body: &[u8]) -> [&[u8]; 1] {
        [body]
    }

    #[test]
    fn highest_level_first_fifo_within_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let commit = GroupCommit::start(FsyncPolicy::Never);
        let (mut s, _) = Store::open(dir.path(), LogConfig::default(), commit.clone(), 9).unwrap();
        for (level, body) in [(0, b"a0"), (5, b"b5"), (9, b"c9"), (5, b"d5"), (0, b"e0")] {
            let parts = rec(body);
            let batch = [BatchRecord {
                timestamp: 1,
                persistent: true,
                kind: 0,
                parts: &parts,
            }];
            s.append_batch(level, &batch).unwrap();
        }
        assert!(dir.path().join("p005").is_dir() && !dir.path().join("p001").exists());
        let mut order = Vec::new();
        while let Some((r, at)) = s.peek() {
            s.take(r.seq, at);
            order.push(r.payload.to_vec());
            if order.len() == 2 {
                // b5 goes back: it is delivered again before d5.
                let (id, _) = (r.seq, ());
                assert_eq!(split_id(id).0, 5);
                s.restore(id);
            }
        }
        assert_eq!(
            order,
            [&b"c9"[..], b"b5", b"b5", b"d5", b"a0", b"e0"].map(|b| b.to_vec())
        );
        assert_eq!(s.live(), 5);
        drop(s);
        let (s, reports) = Store::open(dir.path(), LogConfig::default(), commit, 9).unwrap();
        assert_eq!(reports.len(), 3);
        assert_eq!(s.live(), 5);
    }

    /// Appends `n` transient one-byte messages to level 0.
    fn append(s: &mut Store, n: usize) {
        for _ in 0..n {
            let parts = rec(b"m");
            let r = BatchRecord {
                timestamp: 1,
                persistent: false,
                kind: 0,
                parts: &parts,
            };
            s.append_one(r).unwrap();
        }
    }

    /// Seqs of what `peek`/`take` hand out until the store is dry.
    fn drain(s: &mut Store) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some((r, at)) = s.peek() {
            s.take(r.seq, at);
            out.push(r.seq);
        }
        out
    }

    #[test]
    fn a_message_taken_ahead_of_the_cursor_is_passed_over_and_given_back_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let commit = GroupCommit::start(FsyncPolicy::Never);
        let (mut s, _) = Store::open(dir.path(), LogConfig::default(), commit, 0).unwrap();
        append(&mut s, 6);
        assert!(s.take_ahead(2) && !s.take_ahead(2), "taken once");
        assert!(s.take_ahead(4));
        assert!(!s.nothing_ahead() && s.is_taken(2) && !s.is_taken(3));
        // Given back before the cursor gets there: ready where it was.
        s.restore(4);
        assert!(!s.is_taken(4));
        let (first, at) = s.peek().unwrap();
        s.take(first.seq, at);
        assert_eq!(first.seq, 0);
        assert_eq!(drain(&mut s), [1, 3, 4, 5], "2 is out: passed over");
        assert!(s.nothing_ahead() && s.is_taken(2));
        // Given back after the cursor passed it: delivered again, as any requeue.
        s.restore(2);
        assert_eq!(drain(&mut s), [2]);

        // A purge leaves what is taken ahead.
        let dir = tempfile::tempdir().unwrap();
        let commit = GroupCommit::start(FsyncPolicy::Never);
        let (mut s, _) = Store::open(dir.path(), LogConfig::default(), commit, 0).unwrap();
        append(&mut s, 3);
        assert!(s.take_ahead(1));
        assert_eq!(s.purge_ready().unwrap(), 2);
        assert_eq!(s.live(), 1);
        assert!(s.is_taken(1));
    }
}
