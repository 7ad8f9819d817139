//! Consuming: choosing a consumer for each ready message (round-robin among those with
//! credit), basic.get, and settling deliveries (ack, nack, reject, recover).

use std::sync::Arc;

use bytes::Bytes;

use super::channel::Unacked;
use super::dead_letter::DeathReason;
use super::declare::decode_args;
use super::error::BrokerError;
use super::grants::{Perm, Resource};
use super::outbox::Outgoing;
use super::queue::{args, Consumer};
use super::reply_to::REPLY_TO;
use super::vhost::{now_millis, VHost};
use super::ChannelKey;

/// A message handed out by basic.get.
pub struct Got {
    pub delivery_tag: u64,
    pub redelivered: bool,
    pub message_count: u32,
    pub payload: Bytes,
}

/// What a basic.consume asks for.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeSpec<'a> {
    pub queue: &'a str,
    /// Empty: the server names the consumer.
    pub tag: &'a str,
    pub no_ack: bool,
    pub exclusive: bool,
    pub args_raw: &'a [u8],
}

/// Notes a queue whose consumers may now get more.
fn continue_touch(touched: &mut Vec<Arc<str>>, queue: &Arc<str>) {
    if !touched.contains(queue) {
        touched.push(queue.clone());
    }
}

fn unknown_tag(tag: u64) -> BrokerError {
    BrokerError::PreconditionFailed(format!("unknown delivery tag {tag}"))
}

impl VHost {
    /// Hands ready messages of `queue` to its consumers while any has credit.
    pub fn dispatch(&mut self, queue: &str) {
        self.dispatch_at(queue, now_millis());
    }

    /// As `dispatch`, with the clock at `now`: messages whose deadline is before `now`
    /// are dead-lettered (or dropped) instead of delivered. Consumers are chosen
    /// round-robin among those with credit (prefetch, outbox room) — the highest
    /// `x-priority` first, and only the active one under single active consumer.
    pub(super) fn dispatch_at(&mut self, queue: &str, now: u64) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        if q.consumers.is_empty() {
            return;
        }
        // Counted here and added to the queue's counters once, after the loop.
        let (mut delivered, mut no_ack, mut redelivers) = (0u64, 0u64, 0u64);
        let plain = q.is_plain();
        while q.ready() > 0 {
            let channels = &self.channels;
            let has_credit = |c: &Consumer| {
                let Some(ch) = channels.get(&(c.conn, c.channel)) else {
                    return false;
                };
                let consumer_ok = c.no_ack || c.prefetch == 0 || c.unacked < c.prefetch as u32;
                let channel_ok = c.no_ack
                    || ch.channel_prefetch == 0
                    || ch.consumer_unacked < ch.channel_prefetch as usize;
                consumer_ok && channel_ok && c.outbox.has_room()
            };
            let n = q.consumers.len();
            let chosen = if q.features.single_active_consumer {
                // The first consumer is the active one; the others wait their turn.
                has_credit(&q.consumers[0]).then_some(0)
            } else if q.consumer_priorities {
                // The highest priority with credit, round-robin among equals.
                (0..n)
                    .map(|k| (q.rr + k) % n)
                    .filter(|&i| has_credit(&q.consumers[i]))
                    .fold(None, |best: Option<usize>, i| match best {
                        Some(b) if q.consumers[b].priority >= q.consumers[i].priority => Some(b),
                        _ => Some(i),
                    })
            } else {
                (0..n)
                    .map(|k| (q.rr + k) % n)
                    .find(|&i| has_credit(&q.consumers[i]))
            };
            let Some(i) = chosen else { break };
            let (rec, redelivered) = if plain {
                match q.take_next_plain() {
                    Some(taken) => taken,
                    None => break,
                }
            } else {
                let Some((rec, after)) = q.peek() else {
                    break;
                };
                let redelivered = q.take(&rec, after);
                (rec, redelivered)
            };
            if !plain && q.can_expire() && q.deadline(&rec).is_some_and(|d| d < now) {
                self.pending_dead.push_back(q.hold_dead(
                    rec.seq,
                    rec.payload,
                    DeathReason::Expired,
                ));
                continue;
            }
            q.rr = (i + 1) % n;
            q.store.mark_delivered(rec.seq);
            if q.consumers[i].no_ack {
                let _ = q.ack(rec.seq);
            }
            let c = &mut q.consumers[i];
            let ch = self
                .channels
                .get_mut(&(c.conn, c.channel))
                .expect("checked above");
            let tag = if c.no_ack {
                ch.next_delivery(None)
            } else {
                c.unacked += 1;
                q.unacked += 1;
                ch.next_delivery(Some(Unacked {
                    queue: q.name.clone(),
                    queue_id: q.id,
                    seq: rec.seq,
                    consumer: Some(c.serial),
                }))
            };
            no_ack += c.no_ack as u64;
            redelivers += redelivered as u64;
            c.outbox.push(Outgoing::Deliver {
                channel: c.channel,
                consumer_tag: c.tag.clone(),
                delivery_tag: tag,
                redelivered,
                payload: rec.payload,
            });
            delivered += 1;
        }
        q.counters.deliver += delivered - no_ack;
        q.counters.deliver_no_ack += no_ack;
        q.counters.redeliver += redelivers;
        self.stats.delivered(delivered);
        self.drain_dead_letters();
    }

    /// Registers a consumer; returns its tag. The caller sends consume-ok, then calls
    /// `dispatch` for the queue (so deliveries follow consume-ok).
    pub fn consume(
        &mut self,
        key: ChannelKey,
        spec: &ConsumeSpec<'_>,
    ) -> Result<Arc<str>, BrokerError> {
        let args = decode_args(spec.args_raw)?;
        if spec.queue == REPLY_TO {
            return self.consume_reply(key, spec.tag, spec.no_ack);
        }
        let queue = spec.queue;
        self.authorize(key.0, Perm::Read, Resource::Queue, queue)?;
        let q = self.check_queue_access(queue, key.0)?;
        let priority = args::validate_consume(&args, queue, &self.name)?;
        // RabbitMQ's exclusive_consume_unavailable: an exclusive consumer holds the queue,
        // or one asks for exclusivity on a queue in use or under single active consumer.
        let in_use = q.consumers.iter().any(|c| c.exclusive)
            || (spec.exclusive && (!q.consumers.is_empty() || q.features.single_active_consumer));
        if in_use {
            return Err(BrokerError::AccessRefused(format!(
                "queue '{queue}' in vhost '{}' in exclusive use",
                self.name
            )));
        }
        let queue_name = q.name.clone();
        let tag: Arc<str> = if spec.tag.is_empty() {
            self.generated_name("amq.ctag-").into()
        } else {
            spec.tag.into()
        };
        let ch = self
            .channels
            .get_mut(&key)
            .ok_or(BrokerError::ChannelNotOpen)?;
        if ch.consumers.contains_key(&tag) {
            return Err(BrokerError::NotAllowed(format!(
                "attempt to reuse consumer tag '{tag}'"
            )));
        }
        ch.consumers.insert(tag.clone(), queue_name.clone());
        let serial = self.next_consumer_serial;
        self.next_consumer_serial += 1;
        let consumer = Consumer {
            serial,
            conn: key.0,
            channel: key.1,
            tag: tag.clone(),
            no_ack: spec.no_ack,
            exclusive: spec.exclusive,
            prefetch: ch.consumer_prefetch,
            priority,
            unacked: 0,
            outbox: ch.outbox.clone(),
        };
        let q = self.queues.get_mut(&queue_name).expect("checked");
        q.consumer_priorities |= priority != 0;
        q.consumers.push(consumer);
        q.had_consumer = true;
        q.last_used = now_millis();
        Ok(tag)
    }

    /// The queue a consumer reads, for the dispatch that follows consume-ok.
    pub fn consumer_queue(&self, key: ChannelKey, tag: &str) -> Option<Arc<str>> {
        self.channels.get(&key)?.consumers.get(tag).cloned()
    }

    /// Cancels a consumer; returns false if the tag was unknown (RabbitMQ answers
    /// cancel-ok anyway).
    pub fn cancel(&mut self, key: ChannelKey, tag: &str) -> bool {
        if self.cancel_reply(key, tag) {
            return true;
        }
        let Some(queue) = self
            .channels
            .get_mut(&key)
            .and_then(|ch| ch.consumers.remove(tag))
        else {
            return false;
        };
        self.detach_consumer(&queue, key, tag);
        self.maybe_auto_delete(&queue);
        // Under single active consumer the next consumer takes over now.
        self.dispatch(&queue);
        true
    }

    pub fn get(
        &mut self,
        key: ChannelKey,
        queue: &str,
        no_ack: bool,
    ) -> Result<Option<Got>, BrokerError> {
        self.authorize(key.0, Perm::Read, Resource::Queue, queue)?;
        self.check_queue_access(queue, key.0)?;
        if !self.channels.contains_key(&key) {
            return Err(BrokerError::ChannelNotOpen);
        }
        let now = now_millis();
        let q = self.queues.get_mut(queue).expect("checked");
        q.last_used = now;
        let (rec, redelivered) = loop {
            let Some((rec, after)) = q.peek() else {
                q.counters.get_empty += 1;
                self.drain_dead_letters();
                return Ok(None);
            };
            let redelivered = q.take(&rec, after);
            if q.can_expire() && q.deadline(&rec).is_some_and(|d| d < now) {
                self.pending_dead.push_back(q.hold_dead(
                    rec.seq,
                    rec.payload,
                    DeathReason::Expired,
                ));
                continue;
            }
            break (rec, redelivered);
        };
        q.store.mark_delivered(rec.seq);
        let ch = self.channels.get_mut(&key).expect("checked");
        let tag = if no_ack {
            q.ack(rec.seq)?;
            ch.next_delivery(None)
        } else {
            q.unacked += 1;
            ch.next_delivery(Some(Unacked {
                queue: q.name.clone(),
                queue_id: q.id,
                seq: rec.seq,
                consumer: None,
            }))
        };
        if no_ack {
            q.counters.get_no_ack += 1;
        } else {
            q.counters.get += 1;
        }
        q.counters.redeliver += redelivered as u64;
        self.stats.delivered(1);
        let got = Got {
            delivery_tag: tag,
            redelivered,
            message_count: q.ready().min(u32::MAX as u64) as u32,
            payload: rec.payload,
        };
        self.drain_dead_letters();
        Ok(Some(got))
    }

    /// Settles deliveries: ack, or nack/reject with or without requeue. An unknown tag is
    /// a channel error (406), as in RabbitMQ. `tag` 0 with `multiple` means all.
    pub fn settle(
        &mut self,
        key: ChannelKey,
        tag: u64,
        multiple: bool,
        ack: bool,
        requeue: bool,
    ) -> Result<(), BrokerError> {
        let Some(ch) = self.channels.get_mut(&key) else {
            return Ok(());
        };
        let tags = if multiple {
            // As RabbitMQ: `multiple` up to a tag that is not outstanding is an unknown
            // tag, and nothing is settled.
            if tag != 0 && !ch.is_unacked(tag) {
                return Err(unknown_tag(tag));
            }
            ch.tags_through(if tag == 0 { u64::MAX } else { tag })
        } else {
            if !ch.is_unacked(tag) {
                return Err(unknown_tag(tag));
            }
            vec![tag]
        };
        let mut touched: Vec<Arc<str>> = Vec::new();
        let mut requeued_expiring: Vec<Arc<str>> = Vec::new();
        let mut settled = 0u64;
        for t in tags {
            let Some(u) = ch.take_unacked(t) else {
                continue;
            };
            // A queue deleted (and perhaps declared again) since the delivery: the
            // message went with the old queue.
            let Some(q) = self.queues.get_mut(&u.queue).filter(|q| q.id == u.queue_id) else {
                continue;
            };
            if let Some(serial) = u.consumer {
                if let Some(c) = q.consumers.iter_mut().find(|c| c.serial == serial) {
                    assert!(c.unacked > 0, "consumer unacked count out of step");
                    c.unacked -= 1;
                }
            }
            if ack || !requeue {
                if !ack && q.features.dead_letter_exchange.is_some() {
                    // Rejected without requeue: dead-lettered, acked once its copies are
                    // durable.
                    if let Some(rec) = q.store.read(u.seq) {
                        q.unacked -= 1;
                        self.pending_dead.push_back(q.hold_dead(
                            u.seq,
                            rec.payload,
                            DeathReason::Rejected,
                        ));
                        settled += 1;
                        continue_touch(&mut touched, &u.queue);
                        continue;
                    }
                }
                q.settle(u.seq)?;
                q.counters.ack += ack as u64;
                settled += 1;
            } else {
                q.requeue(u.seq);
                if q.can_expire() {
                    // A requeued message is older than the head: its deadline may be
                    // the queue's earliest.
                    requeued_expiring.push(u.queue.clone());
                }
            }
            continue_touch(&mut touched, &u.queue);
        }
        // RabbitMQ counts basic.ack only as acknowledged (not rejects and nacks).
        if ack {
            self.stats.acked(settled);
        }
        // Credit freed under a channel-wide prefetch may unblock this channel's consumers
        // on any queue, not only the ones settled from.
        if ch.channel_prefetch > 0 {
            for q in ch.consumers.values() {
                if !touched.contains(q) {
                    touched.push(q.clone());
                }
            }
        }
        let now = now_millis();
        for q in requeued_expiring {
            self.schedule(&q, now);
        }
        self.drain_dead_letters();
        for q in touched {
            self.dispatch(&q);
            // Requeued messages count against a length limit again.
            self.trim(&q);
        }
        Ok(())
    }

    /// basic.recover: every unacked delivery of the channel goes back to its queue.
    pub fn recover(&mut self, key: ChannelKey) -> Result<(), BrokerError> {
        self.settle(key, 0, true, false, true)
    }
}
