//! The `connection_model` fuzz target's driver: a structure-aware fuzzer for the AMQP
//! connection. The raw `connection` target feeds arbitrary bytes, which mostly end in a
//! frame or syntax error within the first few frames; this one decodes the input (with
//! `arbitrary`) into a sequence of well-formed client operations with random arguments —
//! declares, binds, publishes with and without confirms and `mandatory`, gets, consumes,
//! cancels, acks, nacks and rejects of held and unknown tags, prefetch, recover, purge,
//! delete, channels closed and reopened — and sends them one step at a time to a real
//! connection on a real broker. After every step the broker's answers are checked
//! against a small model (`model.rs`) of the queues and each channel's unacked tags:
//! message counts, which message is delivered with which tag and redelivered flag,
//! prefetch, returns, confirms, and RabbitMQ's error codes for what must fail.

mod model;
mod ops;
mod server;

use arbitrary::Unstructured;
use bytes::BytesMut;

use super::Conn;
use crate::broker::{fuzz_broker, BrokerHandle};
use crate::config::Limits;
use model::Model;
use ops::Op;
use server::Event;

/// Operations per input at most (a step costs a broker round trip).
const MAX_OPS: usize = 64;

/// How long the end of an input waits for confirms whose syncs are still running.
const CONFIRM_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs the operations `input` decodes to; panics where the broker and the model differ.
#[doc(hidden)]
pub fn fuzz_model(input: &[u8]) {
    fuzz_model_steps(input);
}

/// [`fuzz_model`]; how many operations were sent.
fn fuzz_model_steps(input: &[u8]) -> usize {
    let ops = decode(input);
    if std::env::var_os("WARREN_FUZZ_MODEL_TRACE").is_some() {
        eprintln!("{ops:?}");
    }
    fuzz_broker::with_broker("model", fuzz_broker::fresh, |broker, dir| {
        run(broker, dir, &ops)
    })
    .unwrap_or(0)
}

/// The operations an input decodes to (at most `MAX_OPS`).
fn decode(input: &[u8]) -> Vec<Op> {
    let mut u = Unstructured::new(input);
    let mut ops = Vec::new();
    while ops.len() < MAX_OPS && !u.is_empty() {
        match u.arbitrary::<Op>() {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    ops
}

/// A way to reach a broker: each step sends frames and returns what the broker answers.
trait Wire {
    /// `answer`: the model expects a reply to these frames (over TCP, the step waits for it).
    fn step(&mut self, frames: &[u8], answer: bool) -> Vec<Event>;
}

/// A connection of this process's broker, driven without a socket.
struct InProcess {
    conn: Conn,
    rbuf: BytesMut,
}

impl Wire for InProcess {
    /// Sends `frames` and returns everything the broker answers, deliveries included.
    fn step(&mut self, frames: &[u8], _answer: bool) -> Vec<Event> {
        self.rbuf.extend_from_slice(frames);
        self.conn.process_all(&mut self.rbuf);
        // Draining a full outbox lets the queues dispatch more: go on until it is empty.
        for _ in 0..1_000 {
            self.conn.drain_outbox();
            if self.conn.outbox.is_empty() {
                break;
            }
        }
        self.conn.flush_confirms();
        assert!(self.conn.out_chunks.is_empty(), "small bodies only");
        server::events(&mut self.conn.wbuf)
    }
}

fn run(broker: &BrokerHandle, dir: &std::path::Path, ops: &[Op]) -> usize {
    let limits = Limits {
        outbox_limit: 64,
        ..Limits::default()
    };
    let (conn, _shutdown) = super::fuzz_conn(broker, dir, limits);
    let mut client = InProcess {
        conn,
        rbuf: BytesMut::new(),
    };
    let sent = session(&mut client, ops);
    client.conn.detach();
    sent
}

/// Runs `ops` as one session over `wire`, checking every answer; how many were sent.
fn session(wire: &mut impl Wire, ops: &[Op]) -> usize {
    let mut frames = BytesMut::new();
    ops::handshake(&mut frames);
    let mut opened = wire.step(&frames, true);
    // Over TCP the answers come over time: wait for the last queue's declare-ok.
    let declared = |events: &[Event]| {
        let oks = events
            .iter()
            .filter(|e| matches!(e, Event::DeclareOk { .. }));
        oks.count() == ops::QueueName::ALL.len()
    };
    while !declared(&opened)
        && !opened
            .iter()
            .any(|e| matches!(e, Event::ConnectionClose(_)))
    {
        opened.extend(wire.step(&[], true));
    }
    assert!(
        !opened
            .iter()
            .any(|e| matches!(e, Event::ChannelClose(..) | Event::ConnectionClose(_))),
        "the handshake failed: {opened:?}"
    );
    // The queues exist at the start (ops delete and declare them again).
    let mut model = Model::new();
    let mut sent = 0;
    let trace = std::env::var_os("WARREN_FUZZ_MODEL_TRACE").is_some();
    for &op in ops {
        frames.clear();
        if !model.send(op, &mut frames) {
            continue;
        }
        sent += 1;
        let events = wire.step(&frames, model.awaits_answer());
        if trace {
            eprintln!("{op:?} -> {events:?}");
        }
        model.observe(events);
        // A channel the broker closed gets its close-ok and is opened again, as a client
        // library's user would open a new one.
        if let Some(c) = model.take_close_ok() {
            frames.clear();
            ops::close_ok(&mut frames, c);
            model.send(Op::OpenChannel(c), &mut frames);
            let events = wire.step(&frames, true);
            if trace {
                eprintln!("close-ok, open {c:?} -> {events:?}");
            }
            model.observe(events);
        }
        model.check_delivered();
    }
    // Every publish in confirm mode is confirmed once its sync completes.
    let deadline = std::time::Instant::now() + CONFIRM_WAIT;
    while model.unconfirmed() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} publishes never confirmed",
            model.unconfirmed()
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
        let events = wire.step(&[], false);
        model.observe(events);
    }
    sent
}

/// A broker over TCP. Answers arrive asynchronously, so a step reads until the
/// connection has been quiet for `QUIET` with only whole frames in hand.
struct Tcp {
    socket: std::net::TcpStream,
    rbuf: BytesMut,
}

/// How long a TCP step waits for more of the broker's answer.
const QUIET: std::time::Duration = std::time::Duration::from_millis(40);

impl Wire for Tcp {
    fn step(&mut self, frames: &[u8], answer: bool) -> Vec<Event> {
        use std::io::{Read, Write};
        self.socket.write_all(frames).expect("send");
        let deadline = std::time::Instant::now() + ANSWER_WAIT;
        let mut chunk = [0u8; 65_536];
        loop {
            match self.socket.read(&mut chunk) {
                Ok(0) => panic!("the broker closed the socket"),
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    let (whole, answered) = scan(&self.rbuf);
                    if whole && (!answer || answered) {
                        break;
                    }
                    assert!(std::time::Instant::now() < deadline, "no answer in time");
                }
                Err(e) => panic!("read: {e}"),
            }
        }
        server::events(&mut self.rbuf)
    }
}

/// How long a TCP step waits for an answer the model expects.
const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the read buffer holds, read with the codec's own frame parser: whether it ends
/// at a frame boundary, and whether it holds a reply to a client method (a method frame
/// other than the ones the broker sends of its own accord).
fn scan(buf: &[u8]) -> (bool, bool) {
    use crate::protocol::frame::{self, FRAME_METHOD};
    use crate::protocol::method::ids;
    let unasked = [
        ids::BASIC_DELIVER,
        ids::BASIC_ACK,
        ids::BASIC_NACK,
        ids::BASIC_RETURN,
        ids::BASIC_CANCEL,
    ];
    let mut rest = BytesMut::from(buf);
    let mut answer = false;
    while let Ok(Some(f)) = frame::parse(&mut rest, 0) {
        if f.kind == FRAME_METHOD && f.payload.len() >= 4 {
            let id = (
                u16::from_be_bytes([f.payload[0], f.payload[1]]),
                u16::from_be_bytes([f.payload[2], f.payload[3]]),
            );
            answer |= !unasked.contains(&id);
        }
    }
    (rest.is_empty(), answer)
}

/// Runs the session `input` decodes to against the AMQP broker at `addr` (RabbitMQ, or
/// Warren over its socket), checking every answer against the model as the fuzz target
/// does; how many operations were sent. Used to check the model against RabbitMQ.
#[doc(hidden)]
pub fn check_over_tcp(addr: std::net::SocketAddr, input: &[u8]) -> usize {
    use std::io::Write;
    let ops = decode(input);
    let mut socket = std::net::TcpStream::connect(addr).expect("connect");
    socket.set_nodelay(true).expect("nodelay");
    socket.set_read_timeout(Some(QUIET)).expect("timeout");
    socket
        .write_all(crate::protocol::frame::PROTOCOL_HEADER)
        .expect("send");
    let mut wire = Tcp {
        socket,
        rbuf: BytesMut::new(),
    };
    let start = wire.step(&[], true);
    assert!(
        matches!(
            start.first(),
            Some(Event::Done(
                0,
                crate::protocol::method::ids::CONNECTION_START
            ))
        ),
        "{start:?}"
    );
    session(&mut wire, &ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs from a fixed pseudo-random stream: the broker and the model agree on all.
    #[test]
    fn pseudo_random_sessions_agree_with_the_model() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut sent = 0;
        for _ in 0..400 {
            let input: Vec<u8> = (0..512)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            sent += fuzz_model_steps(&input);
        }
        assert!(sent > 400 * 20, "only {sent} operations sent");
    }
}
