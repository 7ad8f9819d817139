//! The data paths of a stream-protocol session: a Publish frame appended as one batch and
//! confirmed when its sync completes, and delivery of one chunk per unit of credit from
//! each subscription's own cursor.

use bytes::{BufMut, Bytes};
use warren_storage::Cursor;

use super::super::chunk::{encode_chunk, Entry};
use super::super::command::{Command, PublishedMessage};
use super::super::*;
use super::{code, Phase, Session};
use crate::broker::stream_convert::{stored_to_amqp10, KIND_AMQP10};

/// Records per chunk at most (a chunk is what one unit of credit buys).
const CHUNK_RECORDS: usize = 1000;

/// Message bytes per chunk at most: with the output bound below, what one session holds
/// for a reader is a few hundred KiB whatever its credit (100 readers of 1 KiB messages
/// with credit 10 held 10 MB each when chunks filled the frame size).
const CHUNK_BYTES_MAX: usize = 256 * 1024;

/// Deliveries stop adding to the output once it holds this much; the socket loop writes
/// it and comes back for more (`delivery_pending`).
pub(super) const OUTPUT_HIGH: usize = 256 * 1024;

/// The (publishing id, message) pairs of a version-1 Publish frame (key, version,
/// publisher id, count, messages) whose entries are all simple messages; `None` for
/// anything else (a sub-batch, a count that does not match, a truncated entry), which the
/// general decoder answers.
fn simple_messages(body: &[u8]) -> Option<SimpleMessages<'_>> {
    if body.len() < 9 || body[0..2] != KEY_PUBLISH.to_be_bytes() {
        return None;
    }
    if body[2..4] != VERSION_1.to_be_bytes() {
        return None;
    }
    let declared = u32::from_be_bytes(body[5..9].try_into().expect("4 bytes"));
    let (mut at, mut present) = (9usize, 0u32);
    while at < body.len() {
        let len = body.get(at + 8..at + 12)?;
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes"));
        if len & 0x8000_0000 != 0 {
            return None;
        }
        at = at
            .checked_add(12 + len as usize)
            .filter(|&end| end <= body.len())?;
        present += 1;
    }
    (present == declared).then_some(SimpleMessages { body, at: 9 })
}

/// Iterates the messages of a frame `simple_messages` checked.
struct SimpleMessages<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Iterator for SimpleMessages<'a> {
    type Item = (u64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let at = self.at;
        let header = self.body.get(at..at + 12)?;
        let id = u64::from_be_bytes(header[..8].try_into().expect("8 bytes"));
        let len = u32::from_be_bytes(header[8..].try_into().expect("4 bytes")) as usize;
        self.at = at + 12 + len;
        Some((id, &self.body[at + 12..self.at]))
    }
}

impl Session {
    /// A client frame on its way to the state machine: a Publish of simple messages by an
    /// anonymous publisher waits in `pending_publishes` so that the Publish frames of one
    /// read are appended together (one append and one sync registration for all of them;
    /// their confirms are still sent per publishing id). A named publisher's frames are
    /// appended one by one, as deduplication compares each frame with what came before.
    /// Anything else goes through the general decoder, after the publishes before it.
    pub(super) fn frame_in_order(&mut self, body: Bytes) {
        if self.phase == Phase::Open && simple_messages(&body).is_some() {
            match self.publishers.get(&body[4]) {
                Some(p) if p.reference.is_none() => {
                    self.pending_publishes.push(body);
                    return;
                }
                Some(_) => {
                    self.flush_publishes();
                    return self.publish_frames(body[4], &[body]);
                }
                None => {}
            }
        }
        self.flush_publishes();
        self.frame(body);
    }

    /// Appends the waiting Publish frames, one batch per run of the same publisher.
    pub(super) fn flush_publishes(&mut self) {
        let frames = std::mem::take(&mut self.pending_publishes);
        let mut i = 0;
        while i < frames.len() {
            let publisher_id = frames[i][4];
            let run = frames[i..]
                .iter()
                .take_while(|f| f[4] == publisher_id)
                .count();
            self.publish_frames(publisher_id, &frames[i..i + run]);
            i += run;
        }
        self.pending_publishes = frames;
        self.pending_publishes.clear();
    }

    /// Publish frames of simple messages (checked by `simple_messages`) by one publisher.
    fn publish_frames(&mut self, publisher_id: u8, frames: &[Bytes]) {
        let mut views: Vec<(u64, &[u8])> = Vec::new();
        for f in frames {
            // Checked by `simple_messages` before it was queued: walk it without checking again.
            views.extend(SimpleMessages { body: f, at: 9 });
        }
        let ids: Vec<u64> = views.iter().map(|(id, _)| *id).collect();
        self.publish_views(publisher_id, &views, ids);
    }

    /// A Publish frame through the general decoder (sub-batches, or an unknown publisher).
    pub(super) fn publish(&mut self, publisher_id: u8, messages: Vec<PublishedMessage>) {
        if !self.publishers.contains_key(&publisher_id) {
            let errors = messages
                .iter()
                .map(|m| (m.publishing_id, RESPONSE_CODE_PUBLISHER_DOES_NOT_EXIST))
                .collect();
            return self.send(&Command::PublishError {
                publisher_id,
                errors,
            });
        }
        // A sub-batch's records are stored one by one, under its publishing id.
        let mut records: Vec<(u64, Bytes)> = Vec::with_capacity(messages.len());
        let (mut ids, mut refused) = (Vec::with_capacity(messages.len()), Vec::new());
        for m in &messages {
            match m.entry.records() {
                Some(rs) => {
                    records.extend(rs.into_iter().map(|r| (m.publishing_id, r)));
                    ids.push(m.publishing_id);
                }
                None => refused.push((m.publishing_id, RESPONSE_CODE_PRECONDITION_FAILED)),
            }
        }
        if !refused.is_empty() {
            self.send(&Command::PublishError {
                publisher_id,
                errors: refused,
            });
        }
        let views: Vec<(u64, &[u8])> = records.iter().map(|(id, r)| (*id, &r[..])).collect();
        self.publish_views(publisher_id, &views, ids);
    }

    /// Appends `views` (publishing id, message) for a declared publisher and queues the
    /// confirm of `ids` behind the sync that covers them (duplicates are confirmed at once).
    fn publish_views(&mut self, publisher_id: u8, views: &[(u64, &[u8])], ids: Vec<u64>) {
        let p = self
            .publishers
            .get(&publisher_id)
            .expect("a declared publisher");
        let (stream, reference) = (p.stream.clone(), p.reference.clone());
        let r = self
            .vhost()
            .with(|m| m.stream_publish(&stream, views, reference.as_deref()));
        match r {
            Ok(published) => {
                let dup = published.duplicates;
                let fresh: Vec<u64> = ids.into_iter().filter(|i| !dup.contains(i)).collect();
                if !dup.is_empty() {
                    self.send(&Command::PublishConfirm {
                        publisher_id,
                        publishing_ids: dup,
                    });
                }
                if !fresh.is_empty() {
                    self.confirms
                        .push_back((published.ticket, publisher_id, fresh));
                }
            }
            Err(e) => {
                let c = code(Err(e));
                let errors = ids.into_iter().map(|i| (i, c)).collect();
                self.send(&Command::PublishError {
                    publisher_id,
                    errors,
                });
            }
        }
    }

    /// Sends the confirms whose syncs completed (in order: a later sync never completes
    /// before an earlier one).
    pub(super) fn confirm_synced(&mut self) {
        while let Some((ticket, publisher_id, _)) = self.confirms.front() {
            let (ticket, publisher_id) = (*ticket, *publisher_id);
            let Some(ok) = self.ctx.confirms.status(ticket) else {
                break;
            };
            let (_, _, ids) = self.confirms.pop_front().expect("front");
            if ok {
                self.send(&Command::PublishConfirm {
                    publisher_id,
                    publishing_ids: ids,
                });
            } else {
                let errors = ids
                    .into_iter()
                    .map(|i| (i, RESPONSE_CODE_INTERNAL_ERROR))
                    .collect();
                self.send(&Command::PublishError {
                    publisher_id,
                    errors,
                });
            }
        }
    }

    /// One chunk per unit of credit for each subscription that has new records, until the
    /// output holds `OUTPUT_HIGH` bytes.
    pub(super) fn deliver(&mut self) {
        if self.phase != Phase::Open {
            return;
        }
        self.delivery_pending = false;
        let max_bytes = (self.frame_max as usize)
            .saturating_sub(64 + 4 * CHUNK_RECORDS)
            .clamp(1024, CHUNK_BYTES_MAX);
        let ids: Vec<u8> = self.subscriptions.keys().copied().collect();
        for id in ids {
            while let Some(sub) = self.subscriptions.get_mut(&id) {
                if sub.credit <= 0 {
                    break;
                }
                if self.wbuf.len() >= OUTPUT_HIGH {
                    self.delivery_pending = true;
                    return;
                }
                let stream = sub.stream.clone();
                let mut cursor = sub.cursor;
                let Some(vh) = self.vhost.as_ref() else {
                    return;
                };
                let records =
                    vh.with(|m| m.stream_read(&stream, &mut cursor, CHUNK_RECORDS, max_bytes));
                let Some(records) = records else {
                    // The stream was deleted.
                    self.stream_gone(&stream);
                    break;
                };
                if records.is_empty() {
                    break;
                }
                // A chunk is a run of contiguous offsets; a record that cannot be
                // converted ends it (and is skipped, as RabbitMQ's reader skips what it
                // cannot parse).
                let first = records[0].seq;
                let timestamp = records[0].timestamp as i64;
                let mut entries = Vec::with_capacity(records.len());
                let mut next = first;
                for rec in &records {
                    if rec.seq != next {
                        break;
                    }
                    let data = match rec.kind() {
                        KIND_AMQP10 => Some(rec.payload.clone()),
                        _ => stored_to_amqp10(&rec.payload),
                    };
                    match data {
                        Some(d) => entries.push(Entry::Simple(d)),
                        None => break,
                    }
                    next += 1;
                }
                let sub = self.subscriptions.get_mut(&id).expect("present");
                sub.cursor = Cursor::at(next.max(first + 1));
                if entries.is_empty() {
                    continue;
                }
                sub.credit -= 1;
                let chunk = encode_chunk(0, timestamp, 1, first, &entries, &[]);
                self.wbuf.put_u32((chunk.len() + 5) as u32);
                self.wbuf.put_u16(KEY_DELIVER);
                self.wbuf.put_u16(VERSION_1);
                self.wbuf.put_u8(id);
                self.wbuf.put_slice(&chunk);
            }
        }
    }

    /// A stream went: its subscriptions and publishers here hear MetadataUpdate (code 6,
    /// stream not available) and are dropped, as RabbitMQ does.
    pub(super) fn stream_gone(&mut self, stream: &str) {
        let before = self.subscriptions.len() + self.publishers.len();
        self.subscriptions.retain(|_, s| &*s.stream != stream);
        self.publishers.retain(|_, p| &*p.stream != stream);
        if self.subscriptions.len() + self.publishers.len() != before {
            self.send(&Command::MetadataUpdate {
                code: RESPONSE_CODE_STREAM_NOT_AVAILABLE,
                stream: stream.to_owned(),
            });
        }
    }
}
