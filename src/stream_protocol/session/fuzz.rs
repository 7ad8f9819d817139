//! The session driven without a socket, for the `stream_session` fuzz target and tests:
//! each read goes through what the socket loop does with it.

use std::sync::Arc;

use bytes::BytesMut;

use super::Session;
use crate::connection::ServerContext;

/// Feeds `input` to a fresh stream-protocol session, as if it arrived on a connection to
/// `--listen-stream`, with a real broker on a temporary data dir (reused across inputs
/// and reset between them: `broker::fuzz_broker`); the server's output is discarded. The
/// first byte picks the read boundaries. Each read goes through what the
/// socket loop in `serve` does with it: whole frames to the state machine, then the
/// confirms whose syncs completed and the deliveries that credit allows. Used by the
/// `stream_session` fuzz target and its regression tests: it must not panic (nor hang) on
/// any input.
#[doc(hidden)]
pub fn fuzz_session(input: &[u8]) {
    fuzz_drive(input, |_| {});
}

/// [`fuzz_session`], with what the server writes after each read handed to `output`.
fn fuzz_drive(input: &[u8], mut output: impl FnMut(&[u8])) {
    use crate::broker::fuzz_broker;
    fuzz_broker::with_broker("stream", fuzz_broker::fresh, |broker, dir| {
        drive_on(broker, dir, input, &mut output)
    });
}

fn drive_on(
    broker: &crate::broker::BrokerHandle,
    dir: &std::path::Path,
    input: &[u8],
    output: &mut impl FnMut(&[u8]),
) {
    use crate::alarms::Alarms;
    use crate::config::Limits;
    let (_shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let ctx = Arc::new(ServerContext {
        confirms: broker.confirm_tracker(),
        broker: broker.clone(),
        limits: Limits::default(),
        alarms: Arc::new(Alarms::new(dir, u64::MAX, 0)),
        shutdown,
    });
    let mut s = Session::new(
        ctx.clone(),
        (
            "127.0.0.1:1".parse().expect("literal"),
            "127.0.0.1:5552".parse().expect("literal"),
        ),
    );
    let (seed, rest) = input.split_first().map_or((1, input), |(s, r)| (*s, r));
    let mut rbuf = BytesMut::new();
    for piece in rest.chunks(1 + seed as usize * 4) {
        rbuf.extend_from_slice(piece);
        if s.process(&mut rbuf).is_err() {
            break;
        }
        s.confirm_synced();
        s.deliver();
        output(&s.wbuf);
        s.wbuf.clear();
        while s.delivery_pending {
            s.deliver();
            output(&s.wbuf);
            s.wbuf.clear();
        }
        if s.done {
            break;
        }
    }
    s.detach();
    drop(s);
    drop(ctx);
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, Bytes};

    use super::super::super::chunk::{Chunk, Entry};
    use super::super::super::command::{Command, OffsetSpec, PublishedMessage, SimpleResponseKey};
    use super::super::super::decode::Origin;
    use super::super::super::frame::read_frame;
    use super::super::super::*;
    use super::*;

    /// What the server answers a seed of `fuzz/corpus/stream_session/`, decoded.
    fn answers(seed: &str) -> Vec<Command> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/stream_session")
            .join(seed);
        let input = std::fs::read(&path).expect("seed (fuzz/stream_session_corpus.py)");
        let mut out = BytesMut::new();
        fuzz_drive(&input, |w| out.extend_from_slice(w));
        let mut commands = Vec::new();
        while let Some(body) = read_frame(&mut out, u32::MAX).expect("server frame") {
            // The codec knows 3.10.8's commands only; 0x1b's answer is built in the session.
            if body[..2] == (KEY_EXCHANGE_COMMAND_VERSIONS | RESPONSE_BIT).to_be_bytes() {
                continue;
            }
            commands.push(Command::decode(body, Origin::Server).expect("server command"));
        }
        commands
    }

    /// The seeds reach the deep states: the lifecycle seed is answered OK throughout,
    /// with confirms, deliveries and the stored offset, then the close.
    #[test]
    fn lifecycle_seed_goes_all_the_way() {
        let got = answers("lifecycle");
        for c in &got {
            match c {
                Command::Response { code, key, .. } => {
                    assert_eq!(*code, RESPONSE_CODE_OK, "{key:?} in {got:?}")
                }
                Command::PublishError { .. } | Command::Close { .. } => panic!("{c:?}"),
                _ => {}
            }
        }
        let count = |f: fn(&Command) -> bool| got.iter().filter(|c| f(c)).count();
        assert_eq!(count(|c| matches!(c, Command::PublishConfirm { .. })), 3);
        // Subscription at offset 2 with credit 1, then 5 more: chunks of offsets 2-4, 5.
        assert_eq!(
            count(|c| matches!(c, Command::Deliver { .. })),
            2,
            "{got:?}"
        );
        assert!(got.iter().any(|c| matches!(
            c,
            Command::QueryOffsetResponse {
                code: RESPONSE_CODE_OK,
                offset: 3,
                ..
            }
        )));
        assert!(matches!(
            got.last(),
            Some(Command::Response {
                key: SimpleResponseKey::Close,
                code: RESPONSE_CODE_OK,
                ..
            })
        ));
    }

    /// Every seed's answers decode as server commands.
    #[test]
    fn every_seed_answers_in_frames() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/stream_session");
        for e in std::fs::read_dir(dir).expect("corpus").flatten() {
            answers(&e.file_name().to_string_lossy());
        }
    }

    /// Publish frames of one read by an anonymous publisher are appended together, a named
    /// publisher's one frame at a time (deduplication sees each frame's predecessors), a
    /// sub-batch goes through the general decoder in its place, an unknown publisher gets
    /// PublishError: the stream holds everything in the order sent, and every publishing id
    /// is confirmed.
    #[test]
    fn batched_publishes_keep_order_confirms_and_deduplication() {
        let simple = |publisher_id: u8, messages: &[(u64, &'static str)]| Command::Publish {
            publisher_id,
            messages: messages
                .iter()
                .map(|(id, body)| PublishedMessage {
                    publishing_id: *id,
                    entry: Entry::Simple(Bytes::from_static(body.as_bytes())),
                })
                .collect(),
        };
        let declare = |correlation_id, publisher_id, reference: &str| Command::DeclarePublisher {
            correlation_id,
            publisher_id,
            reference: reference.into(),
            stream: "s".into(),
        };
        let commands = [
            Command::PeerProperties {
                correlation_id: 1,
                properties: vec![],
            },
            Command::SaslHandshake { correlation_id: 2 },
            Command::SaslAuthenticate {
                correlation_id: 3,
                mechanism: "PLAIN".into(),
                data: Some(Bytes::from_static(b"\0guest\0guest")),
            },
            Command::TuneResponse {
                frame_max: 1 << 20,
                heartbeat: 0,
            },
            Command::Open {
                correlation_id: 4,
                virtual_host: "/".into(),
            },
            Command::Create {
                correlation_id: 5,
                stream: "s".into(),
                arguments: vec![],
            },
            declare(6, 1, ""),
            declare(7, 2, "orders"),
            simple(1, &[(1, "a1"), (2, "a2")]),
            simple(1, &[(3, "a3")]),
            simple(2, &[(1, "b1"), (2, "b2")]),
            simple(2, &[(2, "b2 again"), (3, "b3")]),
            Command::Publish {
                publisher_id: 1,
                messages: vec![PublishedMessage {
                    publishing_id: 4,
                    entry: Entry::sub_batch(&[
                        Bytes::from_static(b"s1"),
                        Bytes::from_static(b"s2"),
                    ]),
                }],
            },
            simple(1, &[(5, "a5")]),
            simple(9, &[(1, "nobody's")]),
            Command::Subscribe {
                correlation_id: 8,
                subscription_id: 0,
                stream: "s".into(),
                offset: OffsetSpec::First,
                credit: 10,
                properties: None,
            },
        ];
        let mut input = BytesMut::new();
        input.put_u8(255); // reads of 1,021 bytes: the publishes arrive in one
        for c in &commands {
            c.encode(&mut input);
        }
        let mut out = BytesMut::new();
        fuzz_drive(&input, |w| out.extend_from_slice(w));
        let (mut confirmed, mut errors, mut stored) = (Vec::new(), Vec::new(), Vec::new());
        while let Some(body) = read_frame(&mut out, u32::MAX).expect("server frame") {
            match Command::decode(body, Origin::Server).expect("server command") {
                Command::PublishConfirm {
                    publisher_id,
                    publishing_ids,
                } => confirmed.extend(publishing_ids.into_iter().map(|id| (publisher_id, id))),
                Command::PublishError {
                    publisher_id,
                    errors: e,
                } => errors.extend(e.into_iter().map(|(id, code)| (publisher_id, id, code))),
                Command::Deliver { chunk, .. } => {
                    let chunk = Chunk::parse(chunk).expect("chunk");
                    for (offset, record) in chunk.records() {
                        stored.push((offset, record.expect("simple record")));
                    }
                }
                Command::Response { code, key, .. } => {
                    assert_eq!(code, RESPONSE_CODE_OK, "{key:?}")
                }
                _ => {}
            }
        }
        let bodies: Vec<&[u8]> = stored.iter().map(|(_, b)| &b[..]).collect();
        let want: [&[u8]; 9] = [
            b"a1", b"a2", b"a3", b"b1", b"b2", b"b3", b"s1", b"s2", b"a5",
        ];
        assert_eq!(bodies, want);
        let offsets: Vec<u64> = stored.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, (0..9).collect::<Vec<u64>>());
        confirmed.sort_unstable();
        assert_eq!(
            confirmed,
            [
                (1, 1),
                (1, 2),
                (1, 3),
                (1, 4),
                (1, 5),
                (2, 1),
                (2, 2),
                (2, 2),
                (2, 3)
            ]
        );
        assert_eq!(errors, [(9, 1, RESPONSE_CODE_PUBLISHER_DOES_NOT_EXIST)]);
    }
}
