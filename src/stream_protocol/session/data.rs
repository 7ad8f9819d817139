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

impl Session {
    pub(super) fn publish(&mut self, publisher_id: u8, messages: Vec<PublishedMessage>) {
        let Some(p) = self.publishers.get(&publisher_id) else {
            let errors = messages
                .iter()
                .map(|m| (m.publishing_id, RESPONSE_CODE_PUBLISHER_DOES_NOT_EXIST))
                .collect();
            return self.send(&Command::PublishError {
                publisher_id,
                errors,
            });
        };
        let (stream, reference) = (p.stream.clone(), p.reference.clone());
        // A sub-batch's records are stored one by one, under its publishing id.
        let mut records: Vec<(u64, Bytes)> = Vec::with_capacity(messages.len());
        let mut refused = Vec::new();
        for m in &messages {
            match m.entry.records() {
                Some(rs) => records.extend(rs.into_iter().map(|r| (m.publishing_id, r))),
                None => refused.push((m.publishing_id, RESPONSE_CODE_PRECONDITION_FAILED)),
            }
        }
        if !refused.is_empty() {
            self.send(&Command::PublishError {
                publisher_id,
                errors: refused,
            });
        }
        let ids: Vec<u64> = messages.iter().map(|m| m.publishing_id).collect();
        let views: Vec<(u64, &[u8])> = records.iter().map(|(id, r)| (*id, &r[..])).collect();
        let r = self
            .vhost()
            .with(|m| m.stream_publish(&stream, &views, reference.as_deref()));
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

    /// One chunk per unit of credit for each subscription that has new records.
    pub(super) fn deliver(&mut self) {
        if self.phase != Phase::Open {
            return;
        }
        let max_bytes = (self.frame_max as usize)
            .saturating_sub(64 + 4 * CHUNK_RECORDS)
            .max(1024);
        let ids: Vec<u8> = self.subscriptions.keys().copied().collect();
        for id in ids {
            while let Some(sub) = self.subscriptions.get_mut(&id) {
                if sub.credit <= 0 {
                    break;
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
