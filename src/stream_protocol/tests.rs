//! Round trips of every command, truncation at every byte, hostile counts.

use super::*;
use bytes::{Bytes, BytesMut};

fn s(x: &str) -> String {
    x.to_string()
}

fn props() -> Vec<(String, String)> {
    vec![(s("product"), s("RabbitMQ")), (s("version"), s("3.10.8"))]
}

/// Every command, with the side that sends it.
fn all() -> Vec<(Command, Origin)> {
    use Command::*;
    use Origin::*;
    let entries = vec![
        PublishedMessage {
            publishing_id: 1,
            entry: Entry::Simple(Bytes::from_static(b"\x00\x53\x75\xa0\x01x")),
        },
        PublishedMessage {
            publishing_id: 2,
            entry: Entry::sub_batch(&[Bytes::from_static(b"a"), Bytes::from_static(b"bc")]),
        },
    ];
    let chunk = encode_chunk(
        0,
        1_700_000_000_000,
        1,
        0,
        &[Entry::Simple(Bytes::from_static(b"m"))],
        &[],
    )
    .freeze();
    let mut v = vec![
        (
            DeclarePublisher {
                correlation_id: 1,
                publisher_id: 7,
                reference: s("ref"),
                stream: s("s"),
            },
            Client,
        ),
        (
            Publish {
                publisher_id: 7,
                messages: entries,
            },
            Client,
        ),
        (
            Publish {
                publisher_id: 7,
                messages: vec![],
            },
            Client,
        ),
        (
            QueryPublisherSequence {
                correlation_id: 2,
                reference: s("ref"),
                stream: s("s"),
            },
            Client,
        ),
        (
            DeletePublisher {
                correlation_id: 3,
                publisher_id: 7,
            },
            Client,
        ),
        (
            Credit {
                subscription_id: 1,
                credit: 10,
            },
            Client,
        ),
        (
            StoreOffset {
                reference: s("c"),
                stream: s("s"),
                offset: 99,
            },
            Client,
        ),
        (
            QueryOffset {
                correlation_id: 4,
                reference: s("c"),
                stream: s("s"),
            },
            Client,
        ),
        (
            Unsubscribe {
                correlation_id: 5,
                subscription_id: 1,
            },
            Client,
        ),
        (
            Create {
                correlation_id: 6,
                stream: s("s"),
                arguments: vec![(s("max-age"), s("1h"))],
            },
            Client,
        ),
        (
            Delete {
                correlation_id: 7,
                stream: s("s"),
            },
            Client,
        ),
        (
            Metadata {
                correlation_id: 8,
                streams: vec![s("s"), s("missing")],
            },
            Client,
        ),
        (
            PeerProperties {
                correlation_id: 9,
                properties: props(),
            },
            Client,
        ),
        (SaslHandshake { correlation_id: 10 }, Client),
        (
            SaslAuthenticate {
                correlation_id: 11,
                mechanism: s("PLAIN"),
                data: Some(Bytes::from_static(b"\0guest\0guest")),
            },
            Client,
        ),
        (
            SaslAuthenticate {
                correlation_id: 11,
                mechanism: s("ANONYMOUS"),
                data: None,
            },
            Client,
        ),
        (
            TuneResponse {
                frame_max: 1 << 20,
                heartbeat: 60,
            },
            Client,
        ),
        (
            Open {
                correlation_id: 12,
                virtual_host: s("/"),
            },
            Client,
        ),
        (
            Route {
                correlation_id: 13,
                routing_key: s("rk"),
                super_stream: s("ss"),
            },
            Client,
        ),
        (
            Partitions {
                correlation_id: 14,
                super_stream: s("ss"),
            },
            Client,
        ),
        (
            Close {
                correlation_id: 15,
                code: 1,
                reason: s("bye"),
            },
            Client,
        ),
        (
            Close {
                correlation_id: 1,
                code: 13,
                reason: s("unknown frame"),
            },
            Server,
        ),
        (Heartbeat, Client),
        (Heartbeat, Server),
        (
            Response {
                key: SimpleResponseKey::Close,
                correlation_id: 1,
                code: 1,
            },
            Client,
        ),
        (
            PublishConfirm {
                publisher_id: 7,
                publishing_ids: vec![1, 2, 3],
            },
            Server,
        ),
        (
            PublishError {
                publisher_id: 7,
                errors: vec![(4, 0x12), (5, 0x12)],
            },
            Server,
        ),
        (
            Deliver {
                subscription_id: 1,
                chunk,
            },
            Server,
        ),
        (
            CreditResponse {
                code: 4,
                subscription_id: 9,
            },
            Server,
        ),
        (
            MetadataUpdate {
                code: 6,
                stream: s("s"),
            },
            Server,
        ),
        (
            Tune {
                frame_max: 1 << 20,
                heartbeat: 60,
            },
            Server,
        ),
        (
            QueryPublisherSequenceResponse {
                correlation_id: 2,
                code: 1,
                sequence: 3,
            },
            Server,
        ),
        (
            QueryOffsetResponse {
                correlation_id: 4,
                code: 0x13,
                offset: 0,
            },
            Server,
        ),
        (
            MetadataResponse {
                correlation_id: 8,
                brokers: vec![Broker {
                    reference: 0,
                    host: s("localhost"),
                    port: 5552,
                }],
                streams: vec![
                    StreamMetadata {
                        stream: s("s"),
                        code: 1,
                        leader: 0,
                        replicas: vec![],
                    },
                    StreamMetadata {
                        stream: s("missing"),
                        code: 2,
                        leader: 0xffff,
                        replicas: vec![],
                    },
                ],
            },
            Server,
        ),
        (
            PeerPropertiesResponse {
                correlation_id: 9,
                code: 1,
                properties: props(),
            },
            Server,
        ),
        (
            SaslHandshakeResponse {
                correlation_id: 10,
                code: 1,
                mechanisms: vec![s("PLAIN"), s("AMQPLAIN")],
            },
            Server,
        ),
        (
            SaslAuthenticateResponse {
                correlation_id: 11,
                code: 1,
                challenge: None,
            },
            Server,
        ),
        (
            SaslAuthenticateResponse {
                correlation_id: 11,
                code: 10,
                challenge: Some(Bytes::from_static(b"ch")),
            },
            Server,
        ),
        (
            OpenResponse {
                correlation_id: 12,
                code: 1,
                properties: Some(props()),
            },
            Server,
        ),
        (
            OpenResponse {
                correlation_id: 12,
                code: 0x0c,
                properties: None,
            },
            Server,
        ),
        (
            RouteResponse {
                correlation_id: 13,
                code: 1,
                streams: vec![s("ss-0")],
            },
            Server,
        ),
        (
            PartitionsResponse {
                correlation_id: 14,
                code: 1,
                streams: vec![s("ss-0"), s("ss-1")],
            },
            Server,
        ),
    ];
    for offset in [
        OffsetSpec::First,
        OffsetSpec::Last,
        OffsetSpec::Next,
        OffsetSpec::Offset(5),
        OffsetSpec::Timestamp(-1),
    ] {
        for properties in [
            None,
            Some(vec![]),
            Some(vec![(s("single-active-consumer"), s("true"))]),
        ] {
            v.push((
                Subscribe {
                    correlation_id: 16,
                    subscription_id: 1,
                    stream: s("s"),
                    offset,
                    credit: 10,
                    properties,
                },
                Client,
            ));
        }
    }
    for key in [
        SimpleResponseKey::DeclarePublisher,
        SimpleResponseKey::DeletePublisher,
        SimpleResponseKey::Subscribe,
        SimpleResponseKey::Unsubscribe,
        SimpleResponseKey::Create,
        SimpleResponseKey::Delete,
        SimpleResponseKey::Close,
    ] {
        v.push((
            Response {
                key,
                correlation_id: 3,
                code: 5,
            },
            Server,
        ));
    }
    v
}

#[test]
fn every_command_round_trips() {
    for (cmd, origin) in all() {
        let frame = cmd.to_frame();
        let mut buf = BytesMut::from(&frame[..]);
        let body = read_frame(&mut buf, 1 << 20).unwrap().unwrap();
        assert!(buf.is_empty());
        let back = Command::decode(body, origin).unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert_eq!(back, cmd);
        assert_eq!(back.to_frame(), frame);
    }
}

#[test]
fn every_truncation_needs_more_or_fails_cleanly() {
    for (cmd, origin) in all() {
        let frame = cmd.to_frame();
        for cut in 0..frame.len() {
            // As a stream: a prefix is never a frame.
            let mut buf = BytesMut::from(&frame[..cut]);
            assert_eq!(
                read_frame(&mut buf, 1 << 20).unwrap(),
                None,
                "{cmd:?} cut {cut}"
            );
            // As a body: a short body is an error unless it is itself a valid command
            // (Subscribe without properties, an empty Deliver chunk, ...).
            if cut >= 4 {
                let body = frame.slice(4..cut);
                if let Ok(c) = Command::decode(body.clone(), origin) {
                    assert_eq!(c.to_frame().slice(4..), body, "{cmd:?} cut {cut}");
                }
            }
        }
    }
}

#[test]
fn unknown_keys_versions_and_trailing_bytes() {
    let body = |b: &'static [u8]| Bytes::from_static(b);
    assert_eq!(
        Command::decode(body(&[0x00, 0x63, 0x00, 0x01]), Origin::Client),
        Err(DecodeError::UnknownKey {
            key: 0x63,
            version: 1
        })
    );
    // 3.11's ExchangeCommandVersions and StreamStats are unknown to 3.10.8.
    for k in [0x1bu8, 0x1c] {
        assert!(matches!(
            Command::decode(Bytes::from(vec![0, k, 0, 1, 0, 0, 0, 1]), Origin::Client),
            Err(DecodeError::UnknownKey { .. })
        ));
    }
    assert_eq!(
        Command::decode(body(&[0x00, 0x17, 0x00, 0x02]), Origin::Client),
        Err(DecodeError::UnsupportedVersion {
            key: 0x17,
            version: 2
        })
    );
    assert!(matches!(
        Command::decode(body(&[0x00, 0x17, 0x00, 0x01, 0x00]), Origin::Client),
        Err(DecodeError::Malformed { .. })
    ));
    // A server-only key from a client.
    assert!(matches!(
        Command::decode(body(&[0x00, 0x08, 0x00, 0x01, 0x00]), Origin::Client),
        Err(DecodeError::UnknownKey { .. })
    ));
    assert!(matches!(
        Command::decode(body(&[0x00]), Origin::Client),
        Err(DecodeError::UnknownKey { .. })
    ));
    // Subscribe with offset type 9.
    let mut b = BytesMut::new();
    b.extend_from_slice(&[0, 7, 0, 1, 0, 0, 0, 1, 1, 0, 1, b's', 0, 9, 0, 1]);
    assert_eq!(
        Command::decode(b.freeze(), Origin::Client),
        Err(DecodeError::UnknownOffsetType(9))
    );
    assert_eq!(
        undecodable_reaction(true),
        UndecodableReaction::SendClose {
            correlation_id: 1,
            code: 13,
            reason: "unknown frame"
        }
    );
    assert_eq!(
        undecodable_reaction(false),
        UndecodableReaction::CloseSocket
    );
}

#[test]
fn hostile_counts_refused() {
    // Publish claiming 2^32-1 messages with one present.
    let mut b = BytesMut::new();
    b.extend_from_slice(&[0, 2, 0, 1, 7, 0xff, 0xff, 0xff, 0xff]);
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, b'x']);
    assert!(matches!(
        Command::decode(b.freeze(), Origin::Client),
        Err(DecodeError::CountMismatch {
            declared: 0xffff_ffff,
            present: 1,
            ..
        })
    ));
    // PublishConfirm, metadata, peer properties with huge counts.
    for raw in [
        &[
            0u8, 3, 0, 1, 7, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1,
        ][..],
        &[0x80, 0x0f, 0, 1, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff][..],
        &[
            0, 0x11, 0, 1, 0, 0, 0, 1, 0x10, 0, 0, 0, 0, 1, b'a', 0, 1, b'b',
        ][..],
        &[0, 0x0f, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0][..],
    ] {
        let origin = if raw[0] & 0x80 != 0 || raw[1] == 3 {
            Origin::Server
        } else {
            Origin::Client
        };
        assert!(
            matches!(
                Command::decode(Bytes::copy_from_slice(raw), origin),
                Err(DecodeError::Malformed { .. })
            ),
            "{raw:?}"
        );
    }
}

#[test]
fn frames_split_anywhere_in_a_session() {
    let frames: Vec<Bytes> = all().into_iter().map(|(c, _)| c.to_frame()).collect();
    let stream: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
    for step in [1usize, 3, 7, 64] {
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in stream.chunks(step) {
            buf.extend_from_slice(piece);
            while let Some(f) = read_frame(&mut buf, 1 << 20).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), frames.len());
        for (g, f) in got.iter().zip(&frames) {
            assert_eq!(&g[..], &f[4..]);
        }
    }
}
