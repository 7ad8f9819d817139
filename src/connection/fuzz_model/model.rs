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

#[path = "observe.rs"]
mod observe;
#[path = "tx.rs"]
mod tx;

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
    /// In tx mode: publishes and settlements wait for commit (`tx.rs`).
    tx: Option<tx::Pending>,
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
            tx: None,
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
                if let Some(pending) = &mut self.chan(chan).tx {
                    pending.publishes.push((id, routed, mandatory));
                    return None;
                }
                self.deliver_to(id, &routed, mandatory);
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
                if self.chan(c).tx.is_some() {
                    return Some(Error(PRECONDITION_FAILED));
                }
                self.chan(c).confirm = true;
                Done(ids::CONFIRM_SELECT_OK)
            }
            Op::TxSelect(c) => {
                ops::tx(out, c, ids::TX_SELECT);
                return Some(self.tx_select(c));
            }
            Op::TxCommit(c) => {
                ops::tx(out, c, ids::TX_COMMIT);
                return Some(self.tx_commit(c));
            }
            Op::TxRollback(c) => {
                ops::tx(out, c, ids::TX_ROLLBACK);
                return Some(self.tx_rollback(c));
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
        if self.chan(c).tx.is_some() {
            self.tx_settle(c, &tags, requeue == Some(true));
            return None;
        }
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
        let u = self.chan(c).unacked.remove(&tag)?;
        self.release(c, &u);
        Some(u)
    }

    /// A settled message no longer counts against its consumer's prefetch.
    fn release(&mut self, c: Chan, u: &Unacked) {
        let ch = self.chan(c);
        if let Some(k) = ch
            .consumers
            .iter_mut()
            .find(|k| Some(&k.tag) == u.consumer.as_ref())
        {
            k.unacked -= 1;
        }
    }

    /// Puts unacked messages back into their queues (if those still exist).
    fn requeue(&mut self, c: Chan, tags: &[u64]) {
        for &t in tags {
            if let Some(u) = self.forget(c, t) {
                self.requeue_one(u);
            }
        }
    }

    fn requeue_one(&mut self, u: Unacked) {
        let queue = self.queue(u.queue);
        if queue.exists && queue.generation == u.generation {
            queue.ready.push_back(Msg {
                id: u.id,
                redelivered: true,
            });
            queue.requeued = true;
        }
    }

    /// A routed publish arrives in its queues (those that still exist, looked up by name
    /// as RabbitMQ does); returned if it reaches none and is mandatory.
    fn deliver_to(&mut self, id: u64, routed: &[QueueName], mandatory: bool) {
        let mut reached = false;
        for &q in routed {
            let queue = self.queue(q);
            if queue.exists {
                queue.ready.push_back(Msg {
                    id,
                    redelivered: false,
                });
                reached = true;
            }
        }
        if !reached && mandatory {
            self.returns_due.push(id);
        }
    }

    fn close_channel(&mut self, c: Chan) {
        // What a transaction settled and did not commit is still unacked.
        self.tx_forget(c);
        let tags: Vec<u64> = self.chan(c).unacked.keys().copied().collect();
        self.requeue(c, &tags);
        let ch = self.chan(c);
        ch.open = false;
        ch.consumers.clear();
        ch.unconfirmed.clear();
    }

    /// Whether the op just sent is answered (publishes and settlements are not).
    pub fn awaits_answer(&self) -> bool {
        self.expected.is_some()
    }

    /// The close-ok the client owes (the broker closed this channel).
    pub fn take_close_ok(&mut self) -> Option<Chan> {
        self.close_ok_due.take()
    }
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
        | Op::TxSelect(c)
        | Op::TxCommit(c)
        | Op::TxRollback(c)
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
