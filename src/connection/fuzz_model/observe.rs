//! The half of the model that reads the broker's answers: each event of a step checked
//! against the model, which it moves on (a delivery takes a message out of its queue and
//! holds it under its tag, a confirm settles a publish, an error closes the channel).

use super::*;

impl Model {
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
