//! What the broker sent, decoded as a client would: the frames of one step as a list of
//! events, content bodies attached to the deliver, get-ok or return they belong to.
//!
//! Anything a client could not decode is a failure of the broker, so this panics on it.

use bytes::BytesMut;

use crate::protocol::frame::{self, FRAME_BODY, FRAME_HEADER, FRAME_METHOD};
use crate::protocol::method::ids;
use crate::protocol::wire::Reader;

/// One thing the broker said on a channel (or on channel 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A method that carries no information the model checks (open-ok, bind-ok, ...).
    Done(u16, ids::MethodId),
    DeclareOk {
        chan: u16,
        messages: u32,
        consumers: u32,
    },
    /// purge-ok or delete-ok.
    Count(u16, ids::MethodId, u32),
    ConsumeOk(u16, String),
    CancelOk(u16, String),
    /// basic.cancel from the broker (the queue went away).
    Cancelled(u16, String),
    Deliver {
        chan: u16,
        consumer: String,
        tag: u64,
        redelivered: bool,
        body: Vec<u8>,
    },
    GetOk {
        chan: u16,
        tag: u64,
        redelivered: bool,
        remaining: u32,
        body: Vec<u8>,
    },
    GetEmpty(u16),
    Return {
        chan: u16,
        code: u16,
        body: Vec<u8>,
    },
    /// A publisher confirm (`ack` false: a nack).
    Confirm {
        chan: u16,
        tag: u64,
        multiple: bool,
        ack: bool,
    },
    ChannelClose(u16, u16),
    ConnectionClose(u16),
}

/// Decodes everything in `out`; the frames must be whole.
pub fn events(out: &mut BytesMut) -> Vec<Event> {
    let mut events = Vec::new();
    let mut content: Option<(Event, u64)> = None;
    while let Some(f) = frame::parse(out, 0).expect("the broker sends well-formed frames") {
        match f.kind {
            FRAME_METHOD => {
                assert!(content.is_none(), "a method inside content: {content:?}");
                let event = method(f.channel, &f.payload);
                if matches!(
                    event,
                    Event::Deliver { .. } | Event::GetOk { .. } | Event::Return { .. }
                ) {
                    content = Some((event, 0));
                } else {
                    events.push(event);
                }
            }
            FRAME_HEADER => {
                let (_, size) = content.as_mut().expect("a header after its method");
                let mut r = Reader::new(&f.payload);
                r.take(4).expect("class and weight");
                *size = r.u64().expect("body size");
                if *size == 0 {
                    events.extend(content.take().map(|(e, _)| e));
                }
            }
            FRAME_BODY => {
                let (event, size) = content.as_mut().expect("a body after its header");
                let body = match event {
                    Event::Deliver { body, .. }
                    | Event::GetOk { body, .. }
                    | Event::Return { body, .. } => body,
                    _ => unreachable!("only content events are held"),
                };
                body.extend_from_slice(&f.payload);
                assert!(body.len() as u64 <= *size, "more body than the header said");
                if body.len() as u64 == *size {
                    events.extend(content.take().map(|(e, _)| e));
                }
            }
            kind => panic!("a frame of kind {kind} from the broker"),
        }
    }
    assert!(out.is_empty(), "a partial frame at the end of a step");
    assert!(content.is_none(), "content cut short: {content:?}");
    events
}

fn method(chan: u16, payload: &[u8]) -> Event {
    let mut r = Reader::new(payload);
    let id = (r.u16().expect("class"), r.u16().expect("method"));
    let shortstr = |r: &mut Reader<'_>| r.shortstr().expect("shortstr").to_string();
    match id {
        ids::QUEUE_DECLARE_OK => {
            r.shortstr().expect("queue");
            Event::DeclareOk {
                chan,
                messages: r.u32().expect("messages"),
                consumers: r.u32().expect("consumers"),
            }
        }
        ids::QUEUE_PURGE_OK | ids::QUEUE_DELETE_OK => {
            Event::Count(chan, id, r.u32().expect("count"))
        }
        ids::BASIC_CONSUME_OK => Event::ConsumeOk(chan, shortstr(&mut r)),
        ids::BASIC_CANCEL_OK => Event::CancelOk(chan, shortstr(&mut r)),
        ids::BASIC_CANCEL => Event::Cancelled(chan, shortstr(&mut r)),
        ids::BASIC_DELIVER => Event::Deliver {
            chan,
            consumer: shortstr(&mut r),
            tag: r.u64().expect("tag"),
            redelivered: r.bit().expect("redelivered"),
            body: Vec::new(),
        },
        ids::BASIC_GET_OK => {
            let tag = r.u64().expect("tag");
            let redelivered = r.bit().expect("redelivered");
            r.shortstr().expect("exchange");
            r.shortstr().expect("routing key");
            Event::GetOk {
                chan,
                tag,
                redelivered,
                remaining: r.u32().expect("message count"),
                body: Vec::new(),
            }
        }
        ids::BASIC_GET_EMPTY => Event::GetEmpty(chan),
        ids::BASIC_RETURN => Event::Return {
            chan,
            code: r.u16().expect("code"),
            body: Vec::new(),
        },
        ids::BASIC_ACK | ids::BASIC_NACK => Event::Confirm {
            chan,
            tag: r.u64().expect("tag"),
            multiple: r.bit().expect("multiple"),
            ack: id == ids::BASIC_ACK,
        },
        ids::CHANNEL_CLOSE => Event::ChannelClose(chan, r.u16().expect("code")),
        ids::CONNECTION_CLOSE => Event::ConnectionClose(r.u16().expect("code")),
        _ => Event::Done(chan, id),
    }
}
