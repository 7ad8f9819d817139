//! A queue's log: its ordered segments, the write head, appends, reads and acks.
//!
//! Messages are named by a per-log u64 sequence number that never repeats, never by file
//! position, so compaction can move a record without touching anything that refers to it.
//!
//! Invariants:
//! - `segments` is sorted by base; the last one is the write head and is never sealed;
//!   every other one is sealed.
//! - `next_seq` is greater than every sequence number ever appended or acked in this log.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::compact::{Compacted, CompactionJob};
use crate::record::{self, FLAG_PERSISTENT};
use crate::segment::{self, BatchRecord, Segment, StoredRecord, WriteMode};
use crate::spares::Spares;
use crate::sync::{FsyncPolicy, GroupCommit, Ticket};
use crate::{acks, compact, recovery};

/// Size of a log's first segment unless its config says otherwise; later ones double up
/// to `segment_size`.
const FIRST_SEGMENT_SIZE: usize = 64 * 1024;

/// Appends smaller than this (and not needing a sync) go through the map.
const MAP_WRITE_MAX: usize = 2048;

/// Tuning for one log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Size of a new segment file (a larger record gets a segment of its own size).
    pub segment_size: usize,
    /// Size of the first segment; each new one doubles its predecessor up to
    /// `segment_size`, so a quiet log does not reserve a full segment.
    pub first_segment_size: usize,
    /// A sealed segment whose live fraction falls below this is compacted.
    pub compact_below: f64,
    /// A segment's pending acks are written out once this many accumulate.
    pub ack_batch: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_size: 8 << 20,
            first_segment_size: FIRST_SEGMENT_SIZE,
            compact_below: 0.5,
            ack_batch: 4096,
        }
    }
}

/// The result of an append: the record's sequence number and the sync that covers it.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub seq: u64,
    pub ticket: Ticket,
}

/// Ack batches and a delivery watermark taken out of a log, to write without holding it.
#[derive(Debug, Default)]
pub struct AckFlush {
    batches: Vec<(PathBuf, Vec<u64>)>,
    hwm: Option<(PathBuf, u64)>,
    /// Spares unused for a while, to delete (their names are never reused).
    idle_spares: Vec<PathBuf>,
}

impl AckFlush {
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty() && self.hwm.is_none() && self.idle_spares.is_empty()
    }

    /// Appends each batch to its ack file, replaces the watermark file and deletes the
    /// idle spares.
    pub fn write(self) -> io::Result<()> {
        for path in &self.idle_spares {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                r => r?,
            }
        }
        for (path, seqs) in &self.batches {
            match acks::append_batch(path, seqs) {
                // The log (and its directory) was deleted meanwhile: nothing to keep.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                r => r?,
            }
        }
        if let Some((dir, hwm)) = &self.hwm {
            match recovery::write_delivered_hwm(dir, *hwm) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                r => r?,
            }
        }
        Ok(())
    }
}

/// A position for sequential reading; it survives compaction (it is re-resolved by
/// sequence number when the segment's layout changed).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor {
    /// The next sequence number to consider.
    pub seq: u64,
    /// (segment base, segment generation, byte offset of the next record in it).
    cached: Option<(u64, u32, usize)>,
    /// Where that segment was in the log at the last read: checked against its base
    /// before use (front segments go, indices shift), it spares a binary search over the
    /// segments per record (a third of a stream reader's time with 60 segments).
    index_hint: usize,
}

impl Cursor {
    pub fn at(seq: u64) -> Self {
        Cursor {
            seq,
            cached: None,
            index_hint: 0,
        }
    }
}

pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) segments: VecDeque<Segment>,
    /// Acks per segment (by base) not yet written to its ack file.
    pub(crate) unflushed: VecDeque<(u64, Vec<u64>)>,
    pub(crate) next_seq: u64,
    pub(crate) live: u64,
    /// Highest sequence number ever handed to a consumer (persisted with the acks).
    pub(crate) delivered_hwm: Option<u64>,
    /// The watermark as recovered at open: records at or below it may have been
    /// delivered before the restart, so they go out again as redeliveries.
    pub(crate) recovered_hwm: Option<u64>,
    hwm_persisted: Option<u64>,
    /// Fully-acked segment files kept for reuse as new segments (see `spares`).
    spares: Spares,
    pub(crate) commit: Arc<GroupCommit>,
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering after a crash if need be.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        commit: Arc<GroupCommit>,
    ) -> io::Result<(Log, recovery::RecoveryReport)> {
        let created = !dir.exists();
        let recovered = recovery::recover(dir, &config)?;
        if created && commit.policy() != FsyncPolicy::Never {
            // A new queue's directory entry must be durable before anything in it is
            // confirmed (a POSIX file system need not persist a mkdir with a file's fsync).
            if let Some(parent) = dir.parent() {
                segment::sync_dir(parent)?;
            }
        }
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments: recovered.segments.into(),
            unflushed: VecDeque::new(),
            next_seq: recovered.next_seq,
            live: 0,
            delivered_hwm: recovered.delivered_hwm,
            recovered_hwm: recovered.delivered_hwm,
            hwm_persisted: recovered.delivered_hwm,
            spares: recovered.spares,
            commit,
        };
        log.unflushed = log.segments.iter().map(|s| (s.base, Vec::new())).collect();
        log.live = log.segments.iter().map(|s| s.live() as u64).sum();
        if log.segments.is_empty() {
            log.push_segment(log.next_seq, 0)?;
        }
        log.drop_empty_segments()?;
        Ok((log, recovered.report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of live (unacked) records.
    pub fn live(&self) -> u64 {
        self.live
    }

    /// The sequence number the next append will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Records at or below this may have been delivered before the last restart.
    pub fn redelivered_through(&self) -> Option<u64> {
        self.recovered_hwm
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Heap bytes of per-segment state, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.segments.iter().map(|s| s.heap_bytes()).sum::<usize>()
            + self
                .unflushed
                .iter()
                .map(|(_, v)| v.capacity() * 8)
                .sum::<usize>()
    }

    /// Size for a new head segment: from `first_segment_size`, doubling up to
    /// `segment_size`, so a quiet queue does not reserve a full segment; a record larger
    /// than that gets a segment of its own size. `prev` is the segment before the new one,
    /// if any.
    fn capacity_after(&self, prev: Option<&Segment>, min_capacity: usize) -> usize {
        let first = self.config.first_segment_size;
        let grown = prev.map_or(first, |p| p.file().len().saturating_mul(2));
        grown
            .clamp(
                first.min(self.config.segment_size),
                self.config.segment_size,
            )
            .max(segment::FILE_HEADER_LEN + min_capacity + record::HEADER_LEN)
    }

    /// Starts a new head segment with base `base`, which must be above the current head's
    /// (a segment's file is named by its base: two live segments must never share one).
    fn push_segment(&mut self, base: u64, min_capacity: usize) -> io::Result<()> {
        assert!(
            self.segments.back().is_none_or(|h| h.base < base),
            "a new segment's base must exceed the head's"
        );
        let capacity = self.capacity_after(self.segments.back(), min_capacity);
        let spare = self.spares.take();
        let synced = self.commit.policy() != FsyncPolicy::Never;
        let seg = Segment::create(&self.dir, base, capacity, spare.as_deref(), synced)?;
        if let Some(spare) = spare.filter(|p| p.exists()) {
            // Not the right size: keep it for later.
            self.spares.give_back(spare, Instant::now());
        }
        self.segments.push_back(seg);
        self.unflushed.push_back((base, Vec::new()));
        Ok(())
    }

    /// Makes room for a record of `encoded` bytes, numbered `seq`, that does not fit in the
    /// head. Normally the head is sealed and a new one started at `seq`; but if the head
    /// starts at `seq` itself (it holds nothing yet), a new segment would take its file
    /// name, so the head grows in place instead.
    fn roll_over(&mut self, seq: u64, encoded: usize) -> io::Result<()> {
        let n = self.segments.len();
        if self.segments[n - 1].base == seq {
            let prev = n.checked_sub(2).map(|i| &self.segments[i]);
            let capacity = self.capacity_after(prev, encoded);
            return self.segments[n - 1].grow_empty(capacity);
        }
        self.push_segment(seq, encoded)?;
        self.segments[n - 1].seal();
        // The old head may now be fully acked: it is no longer the head, so reclaim it.
        self.drop_empty_segments()
    }

    /// Appends one record. A persistent record's ticket names the sync that makes it
    /// durable; a transient one never dirties a file and is complete at once.
    pub fn append(
        &mut self,
        timestamp: u64,
        persistent: bool,
        payload: &[u8],
    ) -> io::Result<Appended> {
        self.append_parts(timestamp, persistent, &[payload])
    }

    /// Appends one record whose payload is the concatenation of `parts`.
    pub fn append_parts(
        &mut self,
        timestamp: u64,
        persistent: bool,
        parts: &[&[u8]],
    ) -> io::Result<Appended> {
        self.append_kind(timestamp, persistent, 0, parts)
    }

    /// `append_parts` with the record's kind (`BatchRecord::kind`).
    fn append_kind(
        &mut self,
        timestamp: u64,
        persistent: bool,
        kind: u8,
        parts: &[&[u8]],
    ) -> io::Result<Appended> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total > record::MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "payload too large",
            ));
        }
        let seq = self.next_seq;
        let flags =
            if persistent { FLAG_PERSISTENT } else { 0 } | (kind as u32) << record::KIND_SHIFT;
        let mode = self.write_mode(total, persistent);
        let head = self.segments.back_mut().expect("a log always has a head");
        if !head.try_append(seq, timestamp, flags, parts, mode)? {
            self.roll_over(seq, record::encoded_len(total))?;
            let head = self.segments.back_mut().expect("a log always has a head");
            let fitted = head.try_append(seq, timestamp, flags, parts, mode)?;
            assert!(fitted, "a rolled-over head is sized to fit the record");
        }
        self.next_seq += 1;
        self.live += 1;
        let ticket = if persistent {
            let head = self.segments.back().expect("a log always has a head");
            self.commit.register(head.file())
        } else {
            Ticket::DONE
        };
        Ok(Appended { seq, ticket })
    }

    /// Appends many records at once. Those that must be synced (persistent, under a sync
    /// policy) or are large go to the file with one pwritev per segment touched, instead
    /// of one system call each; the rest copy into the map. Returns the first record's
    /// sequence number (the others follow in order) and the sync covering all of them.
    pub fn append_batch(&mut self, recs: &[BatchRecord<'_>]) -> io::Result<(u64, Ticket)> {
        let first = self.next_seq;
        let mut ticket = Ticket::DONE;
        let mut i = 0;
        while i < recs.len() {
            let r = recs[i];
            let total: usize = r.parts.iter().map(|p| p.len()).sum();
            if self.write_mode(total, r.persistent) == WriteMode::Map {
                ticket = ticket.max(
                    self.append_kind(r.timestamp, r.persistent, r.kind, r.parts)?
                        .ticket,
                );
                i += 1;
                continue;
            }
            if total > record::MAX_PAYLOAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "payload too large",
                ));
            }
            // The run of records that take the syscall path, written together.
            let run_end = recs[i..]
                .iter()
                .position(|r| {
                    let total: usize = r.parts.iter().map(|p| p.len()).sum();
                    self.write_mode(total, r.persistent) == WriteMode::Map
                        || total > record::MAX_PAYLOAD
                })
                .map_or(recs.len(), |k| i + k);
            let head = self.segments.back_mut().expect("a log always has a head");
            let written = head.append_many(self.next_seq, &recs[i..run_end])?;
            if written == 0 {
                // The next record does not fit: roll over to a head sized for it.
                self.roll_over(self.next_seq, record::encoded_len(total))?;
                continue;
            }
            if recs[i..i + written].iter().any(|r| r.persistent) {
                let head = self.segments.back().expect("a log always has a head");
                ticket = ticket.max(self.commit.register(head.file()));
            }
            self.next_seq += written as u64;
            self.live += written as u64;
            i += written;
        }
        Ok((first, ticket))
    }

    /// Small appends copy into the map (no system call) unless the record must be synced;
    /// large ones, and persistent ones under a sync policy, use pwritev. A store through
    /// the map faults once per fresh page (a 64 KiB record costs 16 faults, more than the
    /// copy), and a file dirtied through the map makes its next fdatasync journal metadata
    /// (see `Segment::try_append`); transient records never make a file need a sync.
    fn write_mode(&self, payload_len: usize, persistent: bool) -> WriteMode {
        let synced = persistent && self.commit.policy() != FsyncPolicy::Never;
        if synced || payload_len >= MAP_WRITE_MAX {
            WriteMode::Syscall
        } else {
            WriteMode::Map
        }
    }

    pub(crate) fn segment_index(&self, seq: u64) -> Option<usize> {
        // Reads and acks cluster at the two ends of the log (a consumer working through a
        // backlog at the oldest segment, a caught-up one at the write head): look there
        // before searching.
        let n = self.segments.len();
        if seq >= self.segments.back()?.base {
            return Some(n - 1);
        }
        if seq < self.segments[0].base {
            return None;
        }
        if seq < self.segments[1].base {
            return Some(0);
        }
        let i = self.segments.partition_point(|s| s.base <= seq);
        i.checked_sub(1)
    }

    /// Reads the live record `seq`, or `None` if it is acked or was never appended.
    pub fn read(&self, seq: u64) -> Option<StoredRecord> {
        self.segments[self.segment_index(seq)?].read_seq(seq)
    }

    /// True if `seq` is live (appended and not acked).
    pub fn is_live(&self, seq: u64) -> bool {
        seq < self.next_seq
            && self
                .segment_index(seq)
                .is_some_and(|i| !self.segments[i].is_acked(seq))
    }

    /// Reads the next live record at or after `cursor.seq` and moves the cursor past it.
    pub fn read_next(&self, cursor: &mut Cursor) -> Option<StoredRecord> {
        let hinted = cursor.cached.and_then(|(base, _, _)| {
            let i = cursor.index_hint;
            (self.segments.get(i)?.base == base).then_some(i)
        });
        let mut i = match hinted.or_else(|| self.segment_index(cursor.seq)) {
            Some(i) => i,
            None => {
                // Everything below the first segment is gone: start at its base.
                cursor.seq = self.segments.front()?.base;
                cursor.cached = None;
                0
            }
        };
        while i < self.segments.len() {
            let seg = &self.segments[i];
            let mut offset = match cursor.cached {
                Some((base, gen, off)) if base == seg.base && gen == seg.generation => off,
                _ => {
                    if let Some(prev) = i.checked_sub(1).map(|p| &self.segments[p]) {
                        // The cursor has left the previous segment: drop its pages from our
                        // resident set (they stay in the page cache), so reading a deep
                        // backlog keeps RSS flat. Held `Bytes` stay valid (a later touch
                        // faults the page back in).
                        prev.file().release_pages();
                    }
                    seg.offset_of(cursor.seq)
                }
            };
            while let Some((rec, next)) = seg.read_at(offset) {
                offset = next;
                if rec.seq < cursor.seq {
                    continue;
                }
                cursor.seq = rec.seq + 1;
                cursor.cached = Some((seg.base, seg.generation, next));
                cursor.index_hint = i;
                if !seg.is_acked(rec.seq) {
                    return Some(rec);
                }
            }
            cursor.cached = Some((seg.base, seg.generation, offset));
            cursor.index_hint = i;
            i += 1;
            if let Some(next) = self.segments.get(i) {
                cursor.seq = cursor.seq.max(next.base);
                cursor.cached = None;
            }
        }
        None
    }

    /// Notes that `seq` was handed to a consumer, so that after a crash it is flagged as a
    /// redelivery.
    pub fn mark_delivered(&mut self, seq: u64) {
        if self.delivered_hwm.is_none_or(|h| seq > h) {
            self.delivered_hwm = Some(seq);
        }
    }

    /// Acks `seq`. O(1): a bit in its segment's bitmap, plus a slot in the pending batch.
    /// Returns false if it was not live. A segment left with nothing live that is not the
    /// write head is deleted at once.
    pub fn ack(&mut self, seq: u64) -> io::Result<bool> {
        let Some(i) = self.segment_index(seq) else {
            return Ok(false);
        };
        if !self.segments[i].ack(seq) {
            return Ok(false);
        }
        self.live -= 1;
        let batch = &mut self.unflushed[i].1;
        batch.push(seq);
        if batch.len() >= self.config.ack_batch {
            self.flush_segment_acks(i)?;
        }
        if self.segments[i].live() == 0 && i + 1 < self.segments.len() {
            self.remove_segment(i)?;
        }
        Ok(true)
    }

    fn flush_segment_acks(&mut self, i: usize) -> io::Result<()> {
        let (base, batch) = &mut self.unflushed[i];
        if batch.is_empty() {
            return Ok(());
        }
        acks::append_batch(&self.dir.join(segment::ack_file_name(*base)), batch)?;
        batch.clear();
        Ok(())
    }

    /// Writes every pending ack batch and the delivery watermark. Not synced: losing them
    /// in a crash only turns those acks into redeliveries.
    pub fn flush_acks(&mut self) -> io::Result<()> {
        self.take_ack_flush().write()
    }

    /// Takes the pending ack batches and watermark out of the log, with the spares idle
    /// for `spares::SPARE_IDLE`, to be written (and deleted) by
    /// `AckFlush::write` — possibly after the caller has released a lock it holds the log
    /// under, so file I/O does not stall other work on the log. If a segment is deleted
    /// before its batch is written, the batch lands in an orphan ack file that recovery
    /// removes.
    pub fn take_ack_flush(&mut self) -> AckFlush {
        let mut flush = AckFlush {
            idle_spares: self.spares.take_idle(Instant::now()),
            ..AckFlush::default()
        };
        for (base, batch) in self.unflushed.iter_mut() {
            if !batch.is_empty() {
                flush.batches.push((
                    self.dir.join(segment::ack_file_name(*base)),
                    std::mem::take(batch),
                ));
            }
        }
        if let Some(hwm) = self
            .delivered_hwm
            .filter(|_| self.delivered_hwm != self.hwm_persisted)
        {
            flush.hwm = Some((self.dir.clone(), hwm));
            self.hwm_persisted = Some(hwm);
        }
        flush
    }

    pub(crate) fn remove_segment(&mut self, i: usize) -> io::Result<()> {
        let seg = self.segments.remove(i).expect("index in range");
        self.unflushed.remove(i);
        let spare = self
            .spares
            .next_path(&self.dir)
            .filter(|_| seg.file().len() == self.config.segment_size && seg.generation == 0);
        if let Some(spare) = spare {
            compact::retire_segment_files(&self.dir, &seg, &spare)?;
            self.spares.add(spare, Instant::now(), seg.into_retired());
            Ok(())
        } else {
            compact::delete_segment_files(&self.dir, &seg)
        }
    }

    /// Deletes every fully-acked segment that is not the write head.
    pub(crate) fn drop_empty_segments(&mut self) -> io::Result<()> {
        let mut i = 0;
        while i + 1 < self.segments.len() {
            if self.segments[i].live() == 0 {
                self.remove_segment(i)?;
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Plans the compaction of every sealed segment whose live fraction is below the
    /// threshold. The jobs run without the log (`CompactionJob::run`); their results go
    /// back through `install_compaction`.
    pub fn plan_compaction(&self) -> Vec<CompactionJob> {
        self.segments
            .iter()
            .filter(|s| compact::wants_compaction(s, self.config.compact_below))
            .map(|s| s.compaction_job())
            .collect()
    }

    /// Installs a compacted file, unless its segment has gone or changed since the job
    /// was planned (then the file is removed). Returns whether it was installed; the
    /// caller fsyncs the directory afterwards (`sync_dir(log.dir())`).
    pub fn install_compaction(&mut self, done: Compacted) -> io::Result<bool> {
        let current = self
            .segments
            .iter_mut()
            .find(|s| s.base == done.base && s.generation == done.generation && s.is_sealed());
        match current {
            Some(seg) => {
                seg.install_compacted(&done.tmp)?;
                self.commit.metrics().compacted(done.reclaimed);
                Ok(true)
            }
            None => {
                done.discard()?;
                Ok(false)
            }
        }
    }

    /// Compacts every sealed segment whose live fraction is below the threshold, all in
    /// one call (plan, run, install, directory sync); returns the bytes reclaimed.
    pub fn compact(&mut self) -> io::Result<u64> {
        let mut reclaimed = 0;
        let jobs = self.plan_compaction();
        for job in &jobs {
            let done = job.run()?;
            let saved = done.reclaimed;
            if self.install_compaction(done)? {
                reclaimed += saved;
            }
        }
        if !jobs.is_empty() {
            segment::sync_dir(&self.dir)?;
        }
        Ok(reclaimed)
    }

    /// Periodic upkeep: write pending acks, compact sparse segments.
    pub fn maintain(&mut self) -> io::Result<()> {
        self.flush_acks()?;
        self.compact()?;
        Ok(())
    }

    /// Bytes of segment files on disk, the spares included (for space accounting).
    pub fn disk_bytes(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.file().len() as u64)
            .sum::<u64>()
            + self.spares.disk_bytes()
    }

    /// Flushes acks and closes the log.
    pub fn close(mut self) -> io::Result<()> {
        self.flush_acks()
    }

    /// Deletes the log and all its files. The directory is first renamed to a name no one
    /// writes to, so ack batches and the delivery watermark written late by an `AckFlush`
    /// (outside the owner's lock) find no directory instead of refilling it while it is
    /// being removed. The name is new each time: a log of the same name, made and
    /// destroyed again while the last one's files are still being removed, must not be
    /// renamed onto that directory (its removal then failed with "Directory not empty").
    pub fn destroy(self) -> io::Result<()> {
        static DESTROYED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = self.dir.clone();
        drop(self);
        let mut doomed = dir.as_os_str().to_owned();
        let n = DESTROYED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        doomed.push(format!(".deleted.{}.{n}", std::process::id()));
        let doomed = PathBuf::from(doomed);
        let target = match std::fs::rename(&dir, &doomed) {
            Ok(()) => &doomed,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // Could not rename (e.g. a leftover `.deleted` from a crash): remove in place.
            Err(_) => &dir,
        };
        match std::fs::remove_dir_all(target) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
