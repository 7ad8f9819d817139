//! The model the broker is checked against: per queue, the messages ready in it; per
//! channel, the unacked delivery tags, the consumers, the prefetch and the confirms
//! owed. Each operation says what reply it expects (or which error closes the channel,
//! with RabbitMQ 3.10's code) and changes the model as the broker must; each event the
//! broker sends is checked against the model and moves it on. Every broken expectation
//! panics, which the fuzzer reports as a crash.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::BytesMut;

use super::ops::{self, Chan, Exchange, Key, Op, QueueName, TagPick};
use super::server::Event;
use crate::protocol::method::ids;

const NOT_FOUND: u16 = 404;
const ACCESS_REFUSED: u16 = 403;
const PRECONDITION_FAILED: u16 = 406;
const NO_ROUTE: u16 = 312;

/// A message in a queue: its id (the body) and whether it was delivered before.
#[derive(Debug, Clone, Copy)]
struct Msg {
    id: u64,
    redelivered: bool,
}

#[derive(Debug, Default)]
struct Queue {
    exists: bool,
    /// Bumped by every (re)creation: an unacked message of a deleted queue never comes back.
    generation: u32,
    ready: VecDeque<Msg>,
    /// Once a message was requeued, deliveries need not be in publish order.
    requeued: bool,
    bound: BTreeSet<(u8, &'static str)>,
}

#[derive(Debug)]
struct Consumer {
    tag: String,
    queue: QueueName,
    no_ack: bool,
    prefetch: u16,
    unacked: usize,
}

#[derive(Debug)]
struct Unacked {
    queue: QueueName,
    generation: u32,
    id: u64,
    consumer: Option<String>,
}

#[derive(Debug)]
struct Channel {
    open: bool,
    last_tag: u64,
    unacked: BTreeMap<u64, Unacked>,
    consumers: Vec<Consumer>,
    prefetch: u16,
    confirm: bool,
    published: u64,
    unconfirmed: BTreeSet<u64>,
}

impl Channel {
    fn opened() -> Channel {
        Channel {
            open: true,
            last_tag: 0,
            unacked: BTreeMap::new(),
            consumers: Vec::new(),
            prefetch: 0,
            confirm: false,
            published: 0,
            unconfirmed: BTreeSet::new(),
        }
    }
}

/// What the operation sent in this step must be answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Done(ids::MethodId),
    DeclareOk {
        messages: u32,
        consumers: u32,
    },
    Count(ids::MethodId, u32),
    ConsumeOk(QueueName, bool),
    CancelOk(String),
    Get(QueueName, bool),
    /// The channel is closed with this code.
    Error(u16),
}

#[derive(Debug)]
pub struct Model {
    queues: [Queue; 3],
    channels: [Channel; 2],
    next_id: u64,
    /// This step's expectation, on its channel.
    expected: Option<(Chan, Expected)>,
    returns_due: Vec<u64>,
    cancels_due: Vec<(u16, String)>,
    /// A channel the broker closed: the client owes it close-ok.
    close_ok_due: Option<Chan>,
}

impl Model {
    /// The model of a session after `ops::handshake`: both channels open, every queue
    /// declared and empty.
    pub fn new() -> Model {
        let declared = || Queue {
            exists: true,
            generation: 1,
            ..Queue::default()
        };
        Model {
            queues: [declared(), declared(), declared()],
            channels: [Channel::opened(), Channel::opened()],
            next_id: 0,
            expected: None,
            returns_due: Vec::new(),
            cancels_due: Vec::new(),
            close_ok_due: None,
        }
    }

    fn chan(&mut self, c: Chan) -> &mut Channel {
        &mut self.channels[c.index()]
    }

    fn queue(&mut self, q: QueueName) -> &mut Queue {
        &mut self.queues[q.index()]
    }

    /// Writes `op`'s frames to `out` and records what must follow; false if the op is
    /// not sent (its channel is closed, or it opens an open channel).
    pub fn send(&mut self, op: Op, out: &mut BytesMut) -> bool {
        let c = op_channel(op);
        if let Op::OpenChannel(c) = op {
            if self.chan(c).open {
                return false;
            }
            ops::open_channel(out, c);
            *self.chan(c) = Channel::opened();
            self.expect(c, Expected::Done(ids::CHANNEL_OPEN_OK));
            return true;
        }
        if !self.chan(c).open {
            return false;
        }
        // A settlement of a held tag when none is held is not sent (it would only be one
        // more 406; unknown tags come from `Beyond` and `Zero`).
        let held = |t: TagPick| matches!(t, TagPick::Held(_) | TagPick::Oldest | TagPick::Newest);
        if let Op::Ack { tag, .. } | Op::Nack { tag, .. } | Op::Reject { tag, .. } = op {
            if held(tag) && self.chan(c).unacked.is_empty() {
                return false;
            }
        }
        let expected = self.apply(op, out);
        if let Some(e) = expected {
            self.expect(c, e);
        }
        true
    }

    fn expect(&mut self, c: Chan, e: Expected) {
        if let Expected::Error(_) = e {
            self.close_channel(c);
            assert!(self.close_ok_due.replace(c).is_none(), "one error per step");
        }
        self.expected = Some((c, e));
    }

    /// Encodes `op` and changes the model as the broker must; the expected answer.
    fn apply(&mut self, op: Op, out: &mut BytesMut) -> Option<Expected> {
        use Expected::*;
        let found = |m: &Model, q: QueueName| m.queues[q.index()].exists;
        Some(match op {
            Op::Declare(c, q) | Op::DeclarePassive(c, q) => {
                let passive = matches!(op, Op::DeclarePassive(..));
                ops::declare(out, c, q, passive);
                if !found(self, q) {
                    if passive {
                        return Some(Error(NOT_FOUND));
                    }
                    let queue = self.queue(q);
                    queue.exists = true;
                    queue.generation += 1;
                }
                DeclareOk {
                    messages: self.queues[q.index()].ready.len() as u32,
                    consumers: self.consumers_on(q),
                }
            }
            Op::Delete(c, q) => {
                ops::delete(out, c, q);
                let n = self.queues[q.index()].ready.len() as u32;
                self.delete_queue(q);
                Count(ids::QUEUE_DELETE_OK, n)
            }
            Op::Purge(c, q) => {
                ops::purge(out, c, q);
                if !found(self, q) {
                    return Some(Error(NOT_FOUND));
                }
                let n = std::mem::take(&mut self.queue(q).ready).len() as u32;
                Count(ids::QUEUE_PURGE_OK, n)
            }
            Op::Bind(c, q, x, k) => {
                ops::bind(out, c, q, x, k);
                match x {
                    Exchange::Default => Error(ACCESS_REFUSED),
                    Exchange::Missing => Error(NOT_FOUND),
                    _ if !found(self, q) => Error(NOT_FOUND),
                    _ => {
                        self.queue(q).bound.insert((x as u8, k.text()));
                        Done(ids::QUEUE_BIND_OK)
                    }
                }
            }
            Op::BindRefused(c, q, default) => {
                let x = if default {
                    Exchange::Default
                } else {
                    Exchange::Missing
                };
                return self.apply(Op::Bind(c, q, x, Key::Green), out);
            }
            Op::PublishToMissing(chan) => {
                let publish = Op::Publish {
                    chan,
                    exchange: Exchange::Missing,
                    key: Key::Green,
                    mandatory: false,
                    persistent: false,
                };
                return self.apply(publish, out);
            }
            Op::Publish {
                chan,
                exchange,
                key,
                mandatory,
                persistent,
            } => {
                self.next_id += 1;
                let id = self.next_id;
                ops::publish(
                    out,
                    chan,
                    (exchange, key, mandatory, persistent),
                    &id.to_le_bytes(),
                );
                if exchange == Exchange::Missing {
                    return Some(Error(NOT_FOUND));
                }
                let routed = self.route(exchange, key);
                for &q in &routed {
                    self.queue(q).ready.push_back(Msg {
                        id,
                        redelivered: false,
                    });
                }
                if routed.is_empty() && mandatory {
                    self.returns_due.push(id);
                }
                let ch = self.chan(chan);
                if ch.confirm {
                    ch.published += 1;
                    let tag = ch.published;
                    ch.unconfirmed.insert(tag);
                }
                return None;
            }
            Op::Get {
                chan,
                queue,
                no_ack,
            } => {
                ops::get(out, chan, queue, no_ack);
                if !found(self, queue) {
                    return Some(Error(NOT_FOUND));
                }
                Get(queue, no_ack)
            }
            Op::Consume {
                chan,
                queue,
                no_ack,
            } => {
                ops::consume(out, chan, queue, no_ack);
                if !found(self, queue) {
                    return Some(Error(NOT_FOUND));
                }
                ConsumeOk(queue, no_ack)
            }
            Op::Cancel(c, pick) => {
                let ch = self.chan(c);
                let tag = match pick {
                    Some(n) if !ch.consumers.is_empty() => {
                        let i = n as usize % ch.consumers.len();
                        ch.consumers.remove(i).tag
                    }
                    _ => "no.such.consumer".to_string(),
                };
                ops::cancel(out, c, &tag);
                CancelOk(tag)
            }
            Op::Ack {
                chan,
                tag,
                multiple,
            } => {
                let t = self.tag(chan, tag);
                ops::settle(out, chan, ids::BASIC_ACK, t, (multiple, false));
                return self.settle(chan, t, multiple, None);
            }
            Op::Nack {
                chan,
                tag,
                multiple,
                requeue,
            } => {
                let t = self.tag(chan, tag);
                ops::settle(out, chan, ids::BASIC_NACK, t, (multiple, requeue));
                return self.settle(chan, t, multiple, Some(requeue));
            }
            Op::Reject { chan, tag, requeue } => {
                let t = self.tag(chan, tag);
                ops::settle(out, chan, ids::BASIC_REJECT, t, (false, requeue));
                if t == 0 {
                    return Some(Error(PRECONDITION_FAILED));
                }
                return self.settle(chan, t, false, Some(requeue));
            }
            Op::Qos(c, prefetch) => {
                ops::qos(out, c, prefetch as u16);
                self.chan(c).prefetch = prefetch as u16;
                Done(ids::BASIC_QOS_OK)
            }
            Op::Recover(c) => {
                ops::recover(out, c);
                let tags: Vec<u64> = self.chan(c).unacked.keys().copied().collect();
                self.requeue(c, &tags);
                Done(ids::BASIC_RECOVER_OK)
            }
            Op::ConfirmSelect(c) => {
                ops::confirm_select(out, c);
                self.chan(c).confirm = true;
                Done(ids::CONFIRM_SELECT_OK)
            }
            Op::CloseChannel(c) => {
                ops::close_channel(out, c);
                self.close_channel(c);
                Done(ids::CHANNEL_CLOSE_OK)
            }
            Op::OpenChannel(_) => unreachable!("handled in send"),
        })
    }

    fn consumers_on(&self, q: QueueName) -> u32 {
        let on = |c: &Channel| c.consumers.iter().filter(|k| k.queue == q).count();
        self.channels.iter().map(on).sum::<usize>() as u32
    }

    fn route(&self, exchange: Exchange, key: Key) -> Vec<QueueName> {
        QueueName::ALL
            .into_iter()
            .filter(|&q| {
                let queue = &self.queues[q.index()];
                queue.exists
                    && match exchange {
                        Exchange::Default => key == Key::Queue(q),
                        Exchange::Direct => queue.bound.contains(&(exchange as u8, key.text())),
                        Exchange::Fanout => queue.bound.iter().any(|b| b.0 == exchange as u8),
                        Exchange::Missing => false,
                    }
            })
            .collect()
    }

    fn delete_queue(&mut self, q: QueueName) {
        let queue = self.queue(q);
        queue.exists = false;
        queue.ready.clear();
        queue.requeued = false;
        queue.bound.clear();
        for (i, ch) in self.channels.iter_mut().enumerate() {
            let (gone, kept) = std::mem::take(&mut ch.consumers)
                .into_iter()
                .partition(|k| k.queue == q);
            ch.consumers = kept;
            let gone: Vec<Consumer> = gone;
            self.cancels_due
                .extend(gone.into_iter().map(|k| (i as u16 + 1, k.tag)));
        }
    }

    /// The delivery tag an op names.
    fn tag(&mut self, c: Chan, pick: TagPick) -> u64 {
        let ch = self.chan(c);
        match pick {
            TagPick::Held(n) if !ch.unacked.is_empty() => *ch
                .unacked
                .keys()
                .nth(n as usize % ch.unacked.len())
                .expect("in range"),
            TagPick::Oldest | TagPick::Newest if !ch.unacked.is_empty() => {
                let mut tags = ch.unacked.keys();
                *if pick == TagPick::Oldest {
                    tags.next()
                } else {
                    tags.next_back()
                }
                .expect("not empty")
            }
            TagPick::Held(_) | TagPick::Oldest | TagPick::Newest => {
                unreachable!("not sent when nothing is held")
            }
            TagPick::Beyond(n) => ch.last_tag + 1 + n as u64 % 4,
            TagPick::Zero => 0,
        }
    }

    /// ack (`requeue` None), nack or reject of `tag`: RabbitMQ's rules (tag 0 with
    /// `multiple` is everything; otherwise the tag must be held, or 406).
    fn settle(
        &mut self,
        c: Chan,
        tag: u64,
        multiple: bool,
        requeue: Option<bool>,
    ) -> Option<Expected> {
        let ch = self.chan(c);
        let tags: Vec<u64> = if multiple && tag == 0 {
            ch.unacked.keys().copied().collect()
        } else if !ch.unacked.contains_key(&tag) {
            return Some(Expected::Error(PRECONDITION_FAILED));
        } else if multiple {
            ch.unacked.range(..=tag).map(|(t, _)| *t).collect()
        } else {
            vec![tag]
        };
        if requeue == Some(true) {
            self.requeue(c, &tags);
        } else {
            for t in tags {
                self.forget(c, t);
            }
        }
        None
    }

    /// Takes an unacked message off the channel (and its consumer's count).
    fn forget(&mut self, c: Chan, tag: u64) -> Option<Unacked> {
        let ch = self.chan(c);
        let u = ch.unacked.remove(&tag)?;
        if let Some(k) = ch
            .consumers
            .iter_mut()
            .find(|k| Some(&k.tag) == u.consumer.as_ref())
        {
            k.unacked -= 1;
        }
        Some(u)
    }

    /// Puts unacked messages back into their queues (if those still exist).
    fn requeue(&mut self, c: Chan, tags: &[u64]) {
        for &t in tags {
            let Some(u) = self.forget(c, t) else {
                continue;
            };
            let queue = self.queue(u.queue);
            if queue.exists && queue.generation == u.generation {
                queue.ready.push_back(Msg {
                    id: u.id,
                    redelivered: true,
                });
                queue.requeued = true;
            }
        }
    }

    fn close_channel(&mut self, c: Chan) {
        let tags: Vec<u64> = self.chan(c).unacked.keys().copied().collect();
        self.requeue(c, &tags);
        let ch = self.chan(c);
        ch.open = false;
        ch.consumers.clear();
        ch.unconfirmed.clear();
    }

    /// The close-ok the client owes (the broker closed this channel).
    pub fn take_close_ok(&mut self) -> Option<Chan> {
        self.close_ok_due.take()
    }

    /// Checks one step's events, in order, and moves the model on.
    pub fn observe(&mut self, events: Vec<Event>) {
        for e in events {
            self.event(e);
        }
        assert!(self.expected.is_none(), "no answer: {:?}", self.expected);
        assert!(
            self.returns_due.is_empty(),
            "not returned: {:?}",
            self.returns_due
        );
        assert!(
            self.cancels_due.is_empty(),
            "not cancelled: {:?}",
            self.cancels_due
        );
    }

    fn answer(&mut self, chan: u16) -> Expected {
        match self.expected.take() {
            Some((c, e)) if c.number() == chan => e,
            other => panic!("an answer on channel {chan}, expected {other:?}"),
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Done(chan, id) => assert_eq!(self.answer(chan), Expected::Done(id)),
            Event::DeclareOk {
                chan,
                messages,
                consumers,
            } => assert_eq!(
                self.answer(chan),
                Expected::DeclareOk {
                    messages,
                    consumers
                }
            ),
            Event::Count(chan, id, n) => assert_eq!(self.answer(chan), Expected::Count(id, n)),
            Event::ConsumeOk(chan, tag) => {
                let Expected::ConsumeOk(queue, no_ack) = self.answer(chan) else {
                    panic!("consume-ok unasked");
                };
                let ch = &mut self.channels[chan as usize - 1];
                assert!(ch.consumers.iter().all(|k| k.tag != tag), "tag reused");
                let prefetch = ch.prefetch;
                ch.consumers.push(Consumer {
                    tag,
                    queue,
                    no_ack,
                    prefetch,
                    unacked: 0,
                });
            }
            Event::CancelOk(chan, tag) => {
                assert_eq!(self.answer(chan), Expected::CancelOk(tag))
            }
            Event::Cancelled(chan, tag) => {
                let at = self
                    .cancels_due
                    .iter()
                    .position(|d| *d == (chan, tag.clone()));
                self.cancels_due
                    .remove(at.unwrap_or_else(|| panic!("cancel of {tag} unasked")));
            }
            Event::Deliver {
                chan,
                consumer,
                tag,
                redelivered,
                body,
            } => self.delivered(chan, Some(consumer), tag, redelivered, &body),
            Event::GetOk {
                chan,
                tag,
                redelivered,
                remaining,
                body,
            } => {
                let Expected::Get(queue, no_ack) = self.answer(chan) else {
                    panic!("get-ok unasked");
                };
                self.take_ready(queue, redelivered, &body);
                assert_eq!(remaining as usize, self.queues[queue.index()].ready.len());
                self.hold(chan, tag, (queue, id_of(&body)), None, no_ack);
            }
            Event::GetEmpty(chan) => {
                let Expected::Get(queue, _) = self.answer(chan) else {
                    panic!("get-empty unasked");
                };
                let ready = &self.queues[queue.index()].ready;
                assert!(ready.is_empty(), "get-empty with {ready:?} ready");
            }
            Event::Return { chan, code, body } => {
                assert_eq!(code, NO_ROUTE);
                assert!(self.channels[chan as usize - 1].open);
                let id = id_of(&body);
                let at = self.returns_due.iter().position(|&r| r == id);
                self.returns_due
                    .remove(at.unwrap_or_else(|| panic!("return of {id} unasked")));
            }
            Event::Confirm {
                chan,
                tag,
                multiple,
                ack,
            } => {
                assert!(ack, "a nack with nothing failing");
                let ch = &mut self.channels[chan as usize - 1];
                assert!(ch.unconfirmed.contains(&tag), "confirm of {tag} unowed");
                if multiple {
                    ch.unconfirmed.retain(|&t| t > tag);
                } else {
                    ch.unconfirmed.remove(&tag);
                }
            }
            Event::ChannelClose(chan, code) => {
                assert_eq!(self.answer(chan), Expected::Error(code));
            }
            Event::ConnectionClose(code) => panic!("connection closed with {code}"),
        }
    }

    fn delivered(
        &mut self,
        chan: u16,
        consumer: Option<String>,
        tag: u64,
        again: bool,
        body: &[u8],
    ) {
        let ch = &self.channels[chan as usize - 1];
        assert!(ch.open, "a delivery on closed channel {chan}");
        let k = ch
            .consumers
            .iter()
            .find(|k| Some(&k.tag) == consumer.as_ref())
            .unwrap_or_else(|| panic!("a delivery to unknown consumer {consumer:?}"));
        let (queue, no_ack) = (k.queue, k.no_ack);
        self.take_ready(queue, again, body);
        self.hold(chan, tag, (queue, id_of(body)), consumer, no_ack);
    }

    /// A message leaves `queue`: it must be there (first in line unless something was
    /// requeued), with the redelivered flag the model gives it.
    fn take_ready(&mut self, queue: QueueName, redelivered: bool, body: &[u8]) {
        let id = id_of(body);
        let q = self.queue(queue);
        let at = q
            .ready
            .iter()
            .position(|m| m.id == id)
            .unwrap_or_else(|| panic!("message {id} is not ready in {queue:?}: {q:?}"));
        assert!(at == 0 || q.requeued, "message {id} out of order in {q:?}");
        let m = q.ready.remove(at).expect("found");
        assert_eq!(m.redelivered, redelivered, "redelivered flag of {id}");
    }

    /// The delivery tag is the channel's next; an acked delivery is held, within the
    /// consumer's prefetch.
    fn hold(
        &mut self,
        chan: u16,
        tag: u64,
        (queue, id): (QueueName, u64),
        consumer: Option<String>,
        no_ack: bool,
    ) {
        let generation = self.queues[queue.index()].generation;
        let ch = &mut self.channels[chan as usize - 1];
        assert_eq!(tag, ch.last_tag + 1, "delivery tags count up by one");
        ch.last_tag = tag;
        if no_ack {
            return;
        }
        if let Some(k) = ch
            .consumers
            .iter_mut()
            .find(|k| Some(&k.tag) == consumer.as_ref())
        {
            k.unacked += 1;
            assert!(
                k.prefetch == 0 || k.unacked <= k.prefetch as usize,
                "consumer {} over its prefetch {}",
                k.tag,
                k.prefetch
            );
        }
        ch.unacked.insert(
            tag,
            Unacked {
                queue,
                generation,
                id,
                consumer,
            },
        );
    }

    /// After a step: a consumer with room never leaves its queue's messages waiting.
    pub fn check_delivered(&self) {
        for ch in self.channels.iter().filter(|c| c.open) {
            for k in &ch.consumers {
                let room = k.no_ack || k.prefetch == 0 || k.unacked < k.prefetch as usize;
                let ready = &self.queues[k.queue.index()].ready;
                assert!(
                    !room || ready.is_empty(),
                    "consumer {} has room and {:?} waits in {:?}",
                    k.tag,
                    ready,
                    k.queue
                );
            }
        }
    }

    /// Publishes still owed a confirm.
    pub fn unconfirmed(&self) -> usize {
        self.channels.iter().map(|c| c.unconfirmed.len()).sum()
    }
}

fn id_of(body: &[u8]) -> u64 {
    u64::from_le_bytes(body.try_into().expect("an 8-byte body"))
}

fn op_channel(op: Op) -> Chan {
    match op {
        Op::Declare(c, _)
        | Op::DeclarePassive(c, _)
        | Op::Delete(c, _)
        | Op::Purge(c, _)
        | Op::Bind(c, ..)
        | Op::BindRefused(c, ..)
        | Op::PublishToMissing(c)
        | Op::Cancel(c, _)
        | Op::Qos(c, _)
        | Op::Recover(c)
        | Op::ConfirmSelect(c)
        | Op::CloseChannel(c)
        | Op::OpenChannel(c) => c,
        Op::Publish { chan, .. }
        | Op::Get { chan, .. }
        | Op::Consume { chan, .. }
        | Op::Ack { chan, .. }
        | Op::Nack { chan, .. }
        | Op::Reject { chan, .. } => chan,
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
