//! Consuming: choosing a consumer for each ready message (round-robin among those with
//! credit), basic.get, and settling deliveries (ack, nack, reject, recover).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::channel::ChannelState;
use super::channel::Unacked;
use super::dead_letter::{DeadLetter, DeathReason};
use super::declare::decode_args;
use super::error::BrokerError;
use super::fast_map::FastMap;
use super::grants::{Perm, Resource};
use super::outbox::Outgoing;
use super::queue::quorum::Returned;
use super::queue::{args, Consumer, Queue};
use super::replicated::LeaderGetWait;
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

/// Hands message `seq` (taken from `q`'s ready messages, stored as `payload`) to a
/// basic.get on channel `ch`, counting it; the caller counts it in the broker's stats.
pub(super) fn hand_out_get(
    q: &mut Queue,
    ch: &mut ChannelState,
    seq: u64,
    payload: Bytes,
    no_ack: bool,
    redelivered: bool,
) -> Result<Got, BrokerError> {
    let payload = q.outgoing_payload(seq, payload, true);
    let (delivery_tag, acked) = hand_out(q, ch, seq, no_ack, None);
    acked?;
    match no_ack {
        true => q.counters.get_no_ack += 1,
        false => q.counters.get += 1,
    }
    q.counters.redeliver += redelivered as u64;
    Ok(Got {
        delivery_tag,
        redelivered,
        message_count: q.ready().min(u32::MAX as u64) as u32,
        payload,
    })
}

/// What a basic.get answers.
pub enum GetAnswer {
    Got(Got),
    Empty,
    /// The queue is a quorum queue another member leads: the leader was asked for a
    /// message; the channel waits for `wait`, then calls `VHost::replica_get` with it.
    AskLeader {
        queue_id: u64,
        wait: LeaderGetWait,
    },
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

/// The consumer of `q` to get the next message: round-robin among those with credit,
/// the highest `x-priority` first, only the active one under single active consumer.
pub(super) fn choose_consumer(
    q: &Queue,
    channels: &FastMap<ChannelKey, ChannelState>,
) -> Option<usize> {
    let has_credit = |c: &Consumer| {
        channels
            .get(&(c.conn, c.channel))
            .is_some_and(|ch| credit(c, ch) > 0)
    };
    let n = q.consumers.len();
    if q.features.single_active_consumer {
        // The first consumer is the active one; the others wait their turn. On a quorum
        // queue's leader, another node's consumer may be the active one.
        (has_credit(&q.consumers[0]) && super::replica_sac::serves_here(q)).then_some(0)
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
    }
}

/// How many more messages consumer `c` on channel `ch` may be given now: its own
/// prefetch room, the channel's (both ignored for no-ack consumers) and its outbox's room.
pub(super) fn credit(c: &Consumer, ch: &ChannelState) -> u32 {
    let outbox = c.outbox.room().min(u32::MAX as usize) as u32;
    if c.no_ack {
        return outbox;
    }
    let own = match c.prefetch {
        0 => u32::MAX,
        p => (p as u32).saturating_sub(c.unacked),
    };
    let channel = match ch.channel_prefetch {
        0 => u32::MAX,
        p => (p as usize)
            .saturating_sub(ch.consumer_unacked)
            .min(u32::MAX as usize) as u32,
    };
    outbox.min(own).min(channel)
}

/// Hands message `seq` of `q` out on channel `ch`: marks it delivered (a redelivery after
/// a crash), then acks it at once (no-ack) or remembers it as unacked, for `consumer`
/// (None: basic.get). Returns its delivery tag, and the no-ack ack's outcome.
#[inline]
pub(super) fn hand_out(
    q: &mut Queue,
    ch: &mut ChannelState,
    seq: u64,
    no_ack: bool,
    consumer: Option<u64>,
) -> (u64, std::io::Result<bool>) {
    q.store.mark_delivered(seq);
    q.note_out(seq);
    if no_ack {
        let acked = q.ack(seq);
        return (ch.next_delivery(None), acked);
    }
    q.unacked += 1;
    let tag = ch.next_delivery(Some(Unacked {
        queue: q.name.clone(),
        queue_id: q.id,
        seq,
        consumer,
    }));
    (tag, Ok(true))
}

/// What settling one delivery did.
struct Settled {
    /// Acked, or rejected for good (dropped or dead-lettered): counts as settled.
    settled: bool,
    /// Requeued to a queue whose messages can expire.
    requeued_expiring: bool,
}

/// Gives delivery `seq` back to `q` (a nack or reject with requeue, basic.recover, its
/// channel closed): requeued, unless it has now been returned more often than a quorum
/// queue's `x-delivery-limit` allows; then it is dead-lettered (reason `delivery_limit`)
/// or dropped. Returns whether it was requeued.
pub(super) fn return_delivery(
    q: &mut Queue,
    seq: u64,
    pending_dead: &mut VecDeque<DeadLetter>,
) -> std::io::Result<bool> {
    if q.settled_by_group(seq) {
        q.settle(seq)?;
        return Ok(false);
    }
    if q.count_return(seq) == Returned::Requeued {
        // Lent by the leader to a node with no copy: back to the leader, not ready here.
        if !super::replica_checkout::drop_lent(q, seq, true)? {
            q.requeue(seq);
        }
        return Ok(true);
    }
    if let Some(mark) = q.marked_dead(seq) {
        // Past its limit, but its group holds it dead-lettered already (another node
        // marked it while it was out here): set aside for the leader to publish, not
        // dead-lettered a second time.
        q.unacked -= 1;
        q.park(seq, mark);
        return Ok(false);
    }
    if q.features.dead_letter_exchange.is_some() {
        if let Some(rec) = q.store.read(seq) {
            q.unacked -= 1;
            pending_dead.push_back(q.hold_dead(seq, rec.payload, DeathReason::DeliveryLimit));
            return Ok(false);
        }
    }
    q.settle(seq)?;
    Ok(false)
}

/// Settles delivery `u` of queue `q`: ack, reject/nack for good (dead-lettered if the
/// queue has a dead-letter exchange: acked once its copies are durable), or requeue.
fn settle_one(
    q: &mut Queue,
    u: &Unacked,
    ack: bool,
    requeue: bool,
    pending_dead: &mut VecDeque<DeadLetter>,
) -> Result<Settled, BrokerError> {
    if let Some(serial) = u.consumer {
        if let Some(c) = q.consumers.iter_mut().find(|c| c.serial == serial) {
            assert!(c.unacked > 0, "consumer unacked count out of step");
            c.unacked -= 1;
        }
    }
    if q.is_stream() {
        // An ack on a stream only gives its consumer credit: nothing leaves the log.
        q.counters.ack += 1;
        return Ok(Settled {
            settled: true,
            requeued_expiring: false,
        });
    }
    if !ack && requeue {
        let requeued = return_delivery(q, u.seq, pending_dead)?;
        return Ok(Settled {
            settled: !requeued,
            requeued_expiring: requeued && q.can_expire(),
        });
    }
    if !ack && q.features.dead_letter_exchange.is_some() {
        if let Some(rec) = q.store.read(u.seq) {
            q.unacked -= 1;
            pending_dead.push_back(q.hold_dead(u.seq, rec.payload, DeathReason::Rejected));
            return Ok(Settled {
                settled: true,
                requeued_expiring: false,
            });
        }
    }
    q.settle(u.seq)?;
    q.counters.ack += ack as u64;
    Ok(Settled {
        settled: true,
        requeued_expiring: false,
    })
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
    ///
    /// A consumer that is alone (or the active one) takes a burst of messages, as many as
    /// its credit allows, pushed to its outbox at once: one channel lookup, one outbox
    /// lock and one wake-up per burst, not per message. With several consumers each
    /// choice takes one message, so round-robin stays as RabbitMQ's.
    pub(super) fn dispatch_at(&mut self, queue: &str, now: u64) {
        let Some(mut q) = self.queues.get_mut(queue) else {
            return;
        };
        if q.parked > 0 && !q.waits_for_leader() {
            // A message given back here that its group holds dead-lettered was set aside
            // (`Queue::restore`): the leader publishes it soon (a queue timer).
            self.schedule_parked(queue, now);
            let Some(again) = self.queues.get_mut(queue) else {
                return;
            };
            q = again;
        }
        if q.consumers.is_empty() {
            return;
        }
        if q.waits_for_leader() {
            // Another member leads: only what it handed this node goes out here.
            return self.dispatch_granted(queue);
        }
        if super::replica_claims::holds_back(q) {
            return; // A new leader: what the last one's consumers had goes out first.
        }
        if q.is_stream() {
            return self.dispatch_stream(queue);
        }
        let mut out = std::mem::take(&mut self.delivery_scratch);
        // Counted here and added to the queue's counters once, after the loop.
        let (mut delivered, mut no_ack, mut redelivers) = (0u64, 0u64, 0u64);
        let plain = q.is_plain();
        let alone = q.consumers.len() == 1 || q.features.single_active_consumer;
        while q.ready() > 0 {
            let Some(i) = choose_consumer(q, &self.channels) else {
                break;
            };
            let n = q.consumers.len();
            q.rr = (i + 1) % n;
            let c = &q.consumers[i];
            let key = (c.conn, c.channel);
            let ch = self.channels.get_mut(&key).expect("chosen for its credit");
            let burst = if alone { credit(c, ch) } else { 1 };
            let (serial, consumer_no_ack) = (c.serial, c.no_ack);
            let mut given = 0u32;
            while given < burst {
                let taken = if plain {
                    q.take_next_plain()
                } else {
                    q.peek().map(|(rec, after)| {
                        let redelivered = q.take(&rec, after);
                        (rec, redelivered)
                    })
                };
                let Some((rec, redelivered)) = taken else {
                    break;
                };
                if !plain && q.can_expire() && q.deadline(&rec).is_some_and(|d| d < now) {
                    let dead = q.hold_dead(rec.seq, rec.payload, DeathReason::Expired);
                    self.pending_dead.push_back(dead);
                    continue;
                }
                // A failed no-ack ack leaves the message live: it is redelivered after a
                // restart, never lost.
                // Before hand_out: a no-ack delivery is acked there, and its count with it.
                let payload = q.outgoing_payload(rec.seq, rec.payload, false);
                let tag = hand_out(q, ch, rec.seq, consumer_no_ack, Some(serial)).0;
                redelivers += redelivered as u64;
                out.push(Outgoing::Deliver {
                    channel: key.1,
                    consumer_tag: q.consumers[i].tag.clone(),
                    delivery_tag: tag,
                    redelivered,
                    payload,
                });
                given += 1;
            }
            let c = &mut q.consumers[i];
            if !consumer_no_ack {
                c.unacked += given;
            }
            no_ack += if consumer_no_ack { given as u64 } else { 0 };
            delivered += given as u64;
            c.outbox.push_all(&mut out);
            if given < burst {
                break; // The queue ran dry (or only expired messages were left).
            }
        }
        self.delivery_scratch = out;
        q.counters.deliver += delivered - no_ack;
        q.counters.deliver_no_ack += no_ack;
        q.counters.redeliver += redelivers;
        if q.flow.engaged() {
            let (ready, counts) = (q.ready(), q.flow_counts());
            q.flow.after_dispatch(ready, counts, now);
        }
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
        let (priority, reader) = match q.is_stream() {
            true => (
                0,
                Some(self.stream_consume_start(q, key, &args, spec.no_ack)?),
            ),
            false => (args::validate_consume(&args, queue, &self.name)?, None),
        };
        let global_qos = self.channels.get(&key).map(|ch| ch.channel_prefetch > 0);
        if q.is_quorum() && global_qos == Some(true) {
            return Err(BrokerError::NotImplemented(format!(
                "queue '{queue}' in vhost '{}' does not support global qos",
                self.name
            )));
        }
        // RabbitMQ's exclusive_consume_unavailable: an exclusive consumer holds the queue,
        // or one asks for exclusivity on a queue in use or under single active consumer.
        // Quorum queues in 3.10 do not hold consumers to exclusivity (recorded:
        // quorum/consume/exclusive): an exclusive consumer does not keep others out.
        let in_use = !q.is_quorum()
            && (q.consumers.iter().any(|c| c.exclusive)
                || (spec.exclusive
                    && (!q.consumers.is_empty() || q.features.single_active_consumer)));
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
            reader,
            subscribed: std::time::Instant::now(),
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

    /// basic.get where the answer is needed now (the management API, tests): on a member
    /// that does not lead a quorum queue it is get-empty.
    pub fn get(
        &mut self,
        key: ChannelKey,
        queue: &str,
        no_ack: bool,
    ) -> Result<Option<Got>, BrokerError> {
        match self.get_or_ask_leader(key, queue, no_ack)? {
            GetAnswer::Got(got) => Ok(Some(got)),
            GetAnswer::Empty | GetAnswer::AskLeader { .. } => Ok(None),
        }
    }

    /// basic.get as a client's channel asks it: a message, get-empty, or (a quorum queue
    /// another member leads) a request to that leader to wait for.
    pub fn get_or_ask_leader(
        &mut self,
        key: ChannelKey,
        queue: &str,
        no_ack: bool,
    ) -> Result<GetAnswer, BrokerError> {
        self.authorize(key.0, Perm::Read, Resource::Queue, queue)?;
        self.check_queue_access(queue, key.0)?;
        if !self.channels.contains_key(&key) {
            return Err(BrokerError::ChannelNotOpen);
        }
        let now = now_millis();
        let q = self.queues.get_mut(queue).expect("checked");
        if q.is_stream() {
            return Err(super::stream::not_supported("basic.get", queue, &self.name));
        }
        q.last_used = now;
        if q.waits_for_leader() {
            // Another node leads this replicated queue: only it hands messages out.
            if let Some(hook) = self.replication.get() {
                let wait = hook.leader_get(&self.name, queue);
                let queue_id = q.id;
                return Ok(GetAnswer::AskLeader { queue_id, wait });
            }
            q.counters.get_empty += 1;
            return Ok(GetAnswer::Empty);
        }
        if let Some(wait) = super::replica_claims::claims_wait(q) {
            // A new leader: what the last one's consumers had goes out first. The get is
            // made again once the members' claims are in (`replica_get`, no id).
            let queue_id = q.id;
            return Ok(GetAnswer::AskLeader { queue_id, wait });
        }
        let (rec, redelivered) = loop {
            let Some((rec, after)) = q.peek() else {
                q.counters.get_empty += 1;
                self.drain_dead_letters();
                return Ok(GetAnswer::Empty);
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
        let ch = self.channels.get_mut(&key).expect("checked");
        let got = hand_out_get(q, ch, rec.seq, rec.payload, no_ack, redelivered)?;
        self.stats.delivered(1);
        self.drain_dead_letters();
        Ok(GetAnswer::Got(got))
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
        let mut tags = tags.into_iter();
        // A delivery of another queue than the run before it, to start the next run.
        let mut next_run: Option<Unacked> = None;
        loop {
            let first = match next_run.take() {
                Some(u) => u,
                None => match tags.by_ref().find_map(|t| ch.take_unacked(t)) {
                    Some(u) => u,
                    None => break,
                },
            };
            // A queue deleted (and perhaps declared again) since the delivery: the
            // message went with the old queue.
            let Some(q) = self
                .queues
                .get_mut(&first.queue)
                .filter(|q| q.id == first.queue_id)
            else {
                continue;
            };
            if q.is_stream() && !ack {
                return Err(super::stream::not_supported(
                    "basic.nack and basic.reject",
                    &q.name,
                    &self.name,
                ));
            }
            // Settle the run of deliveries from this queue with one lookup.
            let mut u = first;
            let mut expiring = false;
            loop {
                let outcome = settle_one(q, &u, ack, requeue, &mut self.pending_dead)?;
                settled += outcome.settled as u64;
                expiring |= outcome.requeued_expiring;
                // The next delivery still outstanding (a tag may have gone meanwhile).
                let Some(next) = tags.by_ref().find_map(|t| ch.take_unacked(t)) else {
                    break;
                };
                if Arc::ptr_eq(&next.queue, &u.queue) && next.queue_id == u.queue_id {
                    u = next;
                } else {
                    next_run = Some(next);
                    break;
                }
            }
            if expiring {
                // A requeued message is older than the head: its deadline may be the
                // queue's earliest.
                requeued_expiring.push(u.queue.clone());
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
