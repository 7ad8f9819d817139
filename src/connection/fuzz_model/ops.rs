//! What a `connection_model` input is made of: client operations with small, structured
//! arguments (three queues, two channels, a handful of routing keys), decoded from the
//! fuzzer's bytes with `arbitrary`, and their encoding as the frames a client sends.

use arbitrary::{Arbitrary, Unstructured};
use bytes::{BufMut, BytesMut};

use crate::protocol::frame::{self, FRAME_BODY, FRAME_HEADER};
use crate::protocol::method::{self, class, ids};

/// One of the two channels the session uses.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chan {
    One,
    Two,
}

impl Chan {
    pub const ALL: [Chan; 2] = [Chan::One, Chan::Two];

    pub fn number(self) -> u16 {
        match self {
            Chan::One => 1,
            Chan::Two => 2,
        }
    }

    pub fn index(self) -> usize {
        self.number() as usize - 1
    }
}

/// The queues: each name has fixed properties, so declares never differ in equivalence.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueName {
    /// Durable.
    Durable,
    /// Transient.
    Transient,
    /// Exclusive to the connection.
    Exclusive,
}

impl QueueName {
    pub const ALL: [QueueName; 3] = [
        QueueName::Durable,
        QueueName::Transient,
        QueueName::Exclusive,
    ];

    pub fn name(self) -> &'static str {
        match self {
            QueueName::Durable => "q.durable",
            QueueName::Transient => "q.transient",
            QueueName::Exclusive => "q.exclusive",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Where a publish goes, or what a bind binds to (a publish to a missing exchange and a
/// bind to the default or a missing one are ops of their own, so that errors, which close
/// the channel, stay a small share of the steps).
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    Default,
    Direct,
    Fanout,
    /// An exchange that does not exist (404).
    #[arbitrary(skip)]
    Missing,
}

impl Exchange {
    pub fn name(self) -> &'static str {
        match self {
            Exchange::Default => "",
            Exchange::Direct => "amq.direct",
            Exchange::Fanout => "amq.fanout",
            Exchange::Missing => "no.such.exchange",
        }
    }
}

/// A routing key: a queue's name (for the default exchange) or a binding key.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Queue(QueueName),
    Green,
    Blue,
}

impl Key {
    pub fn text(self) -> &'static str {
        match self {
            Key::Queue(q) => q.name(),
            Key::Green => "green",
            Key::Blue => "blue",
        }
    }
}

/// Which delivery tag an ack, nack or reject names: one the channel holds (picked by
/// index), or one it does not (one in ten).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagPick {
    Held(u8),
    Oldest,
    Newest,
    /// The channel's last tag plus 1 + n: never delivered.
    Beyond(u8),
    /// Tag 0 (with `multiple`: everything).
    Zero,
}

impl<'a> Arbitrary<'a> for TagPick {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0..=19u8)? {
            0..=11 => TagPick::Held(u.arbitrary()?),
            12..=14 => TagPick::Oldest,
            15..=17 => TagPick::Newest,
            18 => TagPick::Beyond(u.arbitrary()?),
            _ => TagPick::Zero,
        })
    }
}

/// One thing the client does.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Declare(Chan, QueueName),
    DeclarePassive(Chan, QueueName),
    Delete(Chan, QueueName),
    Purge(Chan, QueueName),
    Bind(Chan, QueueName, Exchange, Key),
    /// A bind to the default exchange (403) or to a missing one (404).
    BindRefused(Chan, QueueName, bool),
    Publish {
        chan: Chan,
        exchange: Exchange,
        key: Key,
        mandatory: bool,
        persistent: bool,
    },
    PublishToMissing(Chan),
    Get {
        chan: Chan,
        queue: QueueName,
        no_ack: bool,
    },
    Consume {
        chan: Chan,
        queue: QueueName,
        no_ack: bool,
    },
    /// Cancels the channel's n-th consumer (modulo how many it has), or an unknown tag.
    Cancel(Chan, Option<u8>),
    Ack {
        chan: Chan,
        tag: TagPick,
        multiple: bool,
    },
    Nack {
        chan: Chan,
        tag: TagPick,
        multiple: bool,
        requeue: bool,
    },
    Reject {
        chan: Chan,
        tag: TagPick,
        requeue: bool,
    },
    Qos(Chan, u8),
    Recover(Chan),
    ConfirmSelect(Chan),
    TxSelect(Chan),
    TxCommit(Chan),
    TxRollback(Chan),
    CloseChannel(Chan),
    OpenChannel(Chan),
}

impl<'a> Arbitrary<'a> for Op {
    /// Weighted: publishes and settlements are most of a session, as in real traffic;
    /// operations that only fail are rare, since an error closes the channel.
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let c: Chan = u.arbitrary()?;
        Ok(match u.int_in_range(0..=99u8)? {
            0..=25 => Op::Publish {
                chan: c,
                exchange: u.arbitrary()?,
                key: u.arbitrary()?,
                mandatory: u.arbitrary()?,
                persistent: u.arbitrary()?,
            },
            26..=31 => Op::Consume {
                chan: c,
                queue: u.arbitrary()?,
                no_ack: u.arbitrary()?,
            },
            32..=37 => Op::Get {
                chan: c,
                queue: u.arbitrary()?,
                no_ack: u.arbitrary()?,
            },
            38..=48 => Op::Ack {
                chan: c,
                tag: u.arbitrary()?,
                multiple: u.arbitrary()?,
            },
            49..=54 => Op::Nack {
                chan: c,
                tag: u.arbitrary()?,
                multiple: u.arbitrary()?,
                requeue: u.arbitrary()?,
            },
            55..=58 => Op::Reject {
                chan: c,
                tag: u.arbitrary()?,
                requeue: u.arbitrary()?,
            },
            59..=62 => Op::Qos(c, u.int_in_range(0..=8)?),
            63..=66 => Op::Declare(c, u.arbitrary()?),
            67..=68 => Op::DeclarePassive(c, u.arbitrary()?),
            69..=71 => Op::Delete(c, u.arbitrary()?),
            72..=74 => Op::Purge(c, u.arbitrary()?),
            75..=80 => {
                let x = if u.arbitrary()? {
                    Exchange::Direct
                } else {
                    Exchange::Fanout
                };
                Op::Bind(c, u.arbitrary()?, x, u.arbitrary()?)
            }
            81 => Op::BindRefused(c, u.arbitrary()?, u.arbitrary()?),
            82 => Op::PublishToMissing(c),
            83..=86 => Op::Cancel(c, u.arbitrary()?),
            87..=89 => Op::Recover(c),
            90..=92 => Op::ConfirmSelect(c),
            93..=94 => Op::TxSelect(c),
            95..=96 => Op::TxCommit(c),
            97 => Op::TxRollback(c),
            98 => Op::CloseChannel(c),
            _ => Op::OpenChannel(c),
        })
    }
}

/// The frames that open the connection as guest, open both channels and declare every
/// queue afresh (deleted first: over TCP, a durable queue may be left from a session
/// before).
pub fn handshake(out: &mut BytesMut) {
    let mut props = BytesMut::new();
    crate::protocol::table::encode(
        &mut props,
        &[(
            "capabilities",
            crate::protocol::table::Value::Table(&[
                (
                    "consumer_cancel_notify",
                    crate::protocol::table::Value::Bool(true),
                ),
                (
                    "publisher_confirms",
                    crate::protocol::table::Value::Bool(true),
                ),
                ("basic.nack", crate::protocol::table::Value::Bool(true)),
            ]),
        )],
    );
    method::write(out, 0, ids::CONNECTION_START_OK, |w| {
        w.raw(&props)
            .shortstr("PLAIN")
            .longstr(b"\0guest\0guest")
            .shortstr("en_US");
    });
    method::write(out, 0, ids::CONNECTION_TUNE_OK, |w| {
        w.u16(16).u32(131_072).u16(0);
    });
    method::write(out, 0, ids::CONNECTION_OPEN, |w| {
        w.shortstr("/").shortstr("").bit(false);
    });
    for chan in Chan::ALL {
        open_channel(out, chan);
    }
    for queue in QueueName::ALL {
        delete(out, Chan::One, queue);
        declare(out, Chan::One, queue, false);
    }
}

pub fn open_channel(out: &mut BytesMut, chan: Chan) {
    method::write(out, chan.number(), ids::CHANNEL_OPEN, |w| {
        w.shortstr("");
    });
}

pub fn close_ok(out: &mut BytesMut, chan: Chan) {
    method::write_empty(out, chan.number(), ids::CHANNEL_CLOSE_OK);
}

/// queue.declare with the queue's fixed properties.
pub fn declare(out: &mut BytesMut, chan: Chan, queue: QueueName, passive: bool) {
    let (durable, exclusive) = match queue {
        QueueName::Durable => (true, false),
        QueueName::Transient => (false, false),
        QueueName::Exclusive => (false, true),
    };
    method::write(out, chan.number(), ids::QUEUE_DECLARE, |w| {
        w.u16(0).shortstr(queue.name());
        w.bit(passive)
            .bit(durable)
            .bit(exclusive)
            .bit(false)
            .bit(false);
        w.u32(0);
    });
}

pub fn delete(out: &mut BytesMut, chan: Chan, queue: QueueName) {
    method::write(out, chan.number(), ids::QUEUE_DELETE, |w| {
        w.u16(0).shortstr(queue.name());
        w.bit(false).bit(false).bit(false);
    });
}

pub fn purge(out: &mut BytesMut, chan: Chan, queue: QueueName) {
    method::write(out, chan.number(), ids::QUEUE_PURGE, |w| {
        w.u16(0).shortstr(queue.name()).bit(false);
    });
}

pub fn bind(out: &mut BytesMut, chan: Chan, queue: QueueName, exchange: Exchange, key: Key) {
    method::write(out, chan.number(), ids::QUEUE_BIND, |w| {
        w.u16(0)
            .shortstr(queue.name())
            .shortstr(exchange.name())
            .shortstr(key.text())
            .bit(false)
            .u32(0);
    });
}

/// basic.publish, its content header and one body frame holding `body`.
pub fn publish(out: &mut BytesMut, chan: Chan, op: (Exchange, Key, bool, bool), body: &[u8]) {
    let (exchange, key, mandatory, persistent) = op;
    method::write(out, chan.number(), ids::BASIC_PUBLISH, |w| {
        w.u16(0)
            .shortstr(exchange.name())
            .shortstr(key.text())
            .bit(mandatory)
            .bit(false);
    });
    frame::write_with(out, FRAME_HEADER, chan.number(), |buf| {
        buf.put_u16(class::BASIC);
        buf.put_u16(0);
        buf.put_u64(body.len() as u64);
        if persistent {
            buf.put_u16(0x1000); // delivery-mode
            buf.put_u8(2);
        } else {
            buf.put_u16(0);
        }
    });
    frame::write(out, FRAME_BODY, chan.number(), body);
}

pub fn get(out: &mut BytesMut, chan: Chan, queue: QueueName, no_ack: bool) {
    method::write(out, chan.number(), ids::BASIC_GET, |w| {
        w.u16(0).shortstr(queue.name()).bit(no_ack);
    });
}

pub fn consume(out: &mut BytesMut, chan: Chan, queue: QueueName, no_ack: bool) {
    method::write(out, chan.number(), ids::BASIC_CONSUME, |w| {
        w.u16(0).shortstr(queue.name()).shortstr("");
        w.bit(false).bit(no_ack).bit(false).bit(false);
        w.u32(0);
    });
}

pub fn cancel(out: &mut BytesMut, chan: Chan, tag: &str) {
    method::write(out, chan.number(), ids::BASIC_CANCEL, |w| {
        w.shortstr(tag).bit(false);
    });
}

/// basic.ack, basic.nack or basic.reject (`multiple` is ignored for reject).
pub fn settle(out: &mut BytesMut, chan: Chan, id: ids::MethodId, tag: u64, flags: (bool, bool)) {
    let (multiple, requeue) = flags;
    method::write(out, chan.number(), id, |w| {
        w.u64(tag);
        if id == ids::BASIC_ACK {
            w.bit(multiple);
        } else if id == ids::BASIC_NACK {
            w.bit(multiple).bit(requeue);
        } else {
            w.bit(requeue);
        }
    });
}

pub fn qos(out: &mut BytesMut, chan: Chan, prefetch: u16) {
    method::write(out, chan.number(), ids::BASIC_QOS, |w| {
        w.u32(0).u16(prefetch).bit(false);
    });
}

pub fn recover(out: &mut BytesMut, chan: Chan) {
    method::write(out, chan.number(), ids::BASIC_RECOVER, |w| {
        w.bit(true);
    });
}

pub fn confirm_select(out: &mut BytesMut, chan: Chan) {
    method::write(out, chan.number(), ids::CONFIRM_SELECT, |w| {
        w.bit(false);
    });
}

/// tx.select, tx.commit or tx.rollback (no arguments).
pub fn tx(out: &mut BytesMut, chan: Chan, id: ids::MethodId) {
    method::write_empty(out, chan.number(), id);
}

pub fn close_channel(out: &mut BytesMut, chan: Chan) {
    method::write(out, chan.number(), ids::CHANNEL_CLOSE, |w| {
        w.u16(200).shortstr("bye").u16(0).u16(0);
    });
}
