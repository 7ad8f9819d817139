//! Frames recorded from a real RabbitMQ 3.10.8 (tests/stream_reference/session.json, made by
//! tools/stream_reference.py) against Warren's stream-protocol codec: every server frame
//! decodes and re-encodes byte for byte, every client frame decodes (or fails where
//! RabbitMQ answered "unknown frame"), every delivered chunk parses with a good CRC and
//! rebuilds identically, and the cross-protocol conversions match what RabbitMQ did.

use bytes::{Bytes, BytesMut};

use serde_json::Value as Json;
use warren::stream_protocol::convert::{
    add_stream_offset, from_amqp091, to_amqp091, BasicProperties, FieldValue,
};
use warren::stream_protocol::message::Message;
use warren::stream_protocol::*;

fn session() -> Json {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/stream_reference/session.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("session.json")).expect("valid JSON")
}

fn unhex(s: &str) -> Bytes {
    let bytes: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect();
    Bytes::from(bytes)
}

/// Checks a delivered chunk: CRC, counts, every record an AMQP 1.0 message, and the header
/// plus entries rebuilt byte for byte.
fn check_chunk(chunk: &Bytes) -> Chunk {
    let parsed = Chunk::parse(chunk.clone()).expect("chunk parses");
    assert!(parsed.trailer.is_empty(), "Deliver leaves the trailer out");
    for (_, rec) in parsed.records() {
        Message::decode(rec.expect("uncompressed")).expect("record is an AMQP 1.0 message");
    }
    let h = parsed.header;
    let rebuilt = encode_chunk(
        h.chunk_type,
        h.timestamp,
        h.epoch,
        h.chunk_id,
        &parsed.entries,
        &[],
    );
    // encode_chunk counts no trailer; RabbitMQ's header counts the one it did not send
    // (bytes 40..44). Everything else is the same.
    assert_eq!(
        &rebuilt[..40],
        &chunk[..40],
        "header up to the trailer length"
    );
    assert_eq!(&rebuilt[44..], &chunk[44..], "reserved field and entries");
    parsed
}

#[test]
fn recorded_frames_decode_and_reencode() {
    let s = session();
    let mut counts = (0, 0, 0);
    for conn in s["connections"].as_array().unwrap() {
        for f in conn["frames"].as_array().unwrap() {
            let Some(hex) = f["hex"].as_str() else {
                continue;
            };
            let mut buf = BytesMut::from(&unhex(hex)[..]);
            let body = read_frame(&mut buf, DEFAULT_FRAME_MAX)
                .unwrap()
                .expect("whole frame");
            assert!(buf.is_empty());
            let origin = if f["dir"] == "client" {
                Origin::Client
            } else {
                Origin::Server
            };
            let decoded = Command::decode(body.clone(), origin);
            if f["expect_decode_error"].as_bool() == Some(true) {
                assert!(decoded.is_err(), "{f}");
                continue;
            }
            let cmd = decoded.unwrap_or_else(|e| panic!("{}: {e}\n{f}", conn["connection"]));
            // Both directions re-encode identically: maps and lists keep their order.
            assert_eq!(&cmd.to_frame()[4..], &body[..], "{cmd:?}");
            match (&cmd, origin) {
                (Command::Deliver { chunk, .. }, _) => {
                    check_chunk(chunk);
                    counts.2 += 1;
                }
                (_, Origin::Server) => counts.1 += 1,
                (_, Origin::Client) => counts.0 += 1,
            }
        }
    }
    assert!(
        counts.0 > 50 && counts.1 > 50 && counts.2 >= 8,
        "{counts:?}"
    );
}

#[test]
fn what_rabbitmq_said() {
    let s = session();
    let main = &s["connections"][0]["frames"];
    let server: Vec<Command> = main
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["dir"] == "server" && f["hex"].is_string())
        .map(|f| {
            Command::decode(unhex(f["hex"].as_str().unwrap()).slice(4..), Origin::Server).unwrap()
        })
        .collect();
    // Open answers with the advertised host and port.
    assert!(server.iter().any(|c| matches!(c, Command::OpenResponse { code: 1, properties: Some(p), .. }
        if p.iter().any(|(k, _)| k == "advertised_host") && p.iter().any(|(k, _)| k == "advertised_port"))));
    // A missing stream in Metadata: code 2, leader 0xffff.
    assert!(server
        .iter()
        .any(|c| matches!(c, Command::MetadataResponse { streams, .. }
        if streams.iter().any(|m| m.code == 2 && m.leader == 0xffff && m.replicas.is_empty()))));
    // Unknown reference: no offset; unknown publisher: publish error 0x12.
    assert!(server
        .iter()
        .any(|c| matches!(c, Command::QueryOffsetResponse { code: 0x13, .. })));
    assert!(server
        .iter()
        .any(|c| matches!(c, Command::PublishError { errors, .. } if errors == &vec![(77, 0x12)])));
    // Route on a missing super stream: the request key, code 2, no streams.
    assert!(server.iter().any(
        |c| matches!(c, Command::RouteResponse { code: 2, streams, .. } if streams.is_empty())
    ));
    // The unknown frame: a Close request with correlation id 1, code 13.
    assert!(server.iter().any(|c| c
        == &Command::Close {
            correlation_id: 1,
            code: RESPONSE_CODE_UNKNOWN_FRAME,
            reason: "unknown frame".into()
        }));
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn amqp091_into_a_stream_matches_rabbitmq_bytes() {
    let s = session();
    let body = unhex(
        s["cross_protocol"]["amqp091_as_stream_deliver_hex"]
            .as_str()
            .unwrap(),
    );
    let Command::Deliver { chunk, .. } = Command::decode(body, Origin::Server).unwrap() else {
        panic!("not a Deliver")
    };
    let chunk = check_chunk(&chunk);
    let record = chunk.records()[0].1.clone().unwrap();
    // What tools/stream_reference.py published with pika.
    let props = BasicProperties {
        content_type: Some(b("application/json")),
        content_encoding: Some(b("gzip")),
        headers: Some(vec![
            (b("str"), FieldValue::LongString(b("v"))),
            (b("int"), FieldValue::I32(42)),
            (b("neg"), FieldValue::I32(-3)),
            (b("bool"), FieldValue::Bool(true)),
            (b("big"), FieldValue::I64(1 << 40)),
            (b("bytes"), FieldValue::Binary(Bytes::from_static(&[1, 2]))),
            (
                b("list"),
                FieldValue::Array(vec![FieldValue::I32(1), FieldValue::I32(2)]),
            ),
            (
                b("table"),
                FieldValue::Table(vec![(b("a"), FieldValue::I32(1))]),
            ),
            (b("none"), FieldValue::Void),
        ]),
        delivery_mode: Some(2),
        priority: Some(5),
        correlation_id: Some(b("corr-091")),
        reply_to: Some(b("reply-q")),
        expiration: Some(b("60000")),
        message_id: Some(b("id-091")),
        timestamp: Some(1_700_000_000),
        kind: Some(b("kind")),
        user_id: Some(b("guest")),
        app_id: Some(b("app-091")),
    };
    let ours = from_amqp091(&props, b("{\"from\":\"amqp091\"}"), "", "ref-s1")
        .unwrap()
        .to_bytes()
        .unwrap();
    assert_eq!(
        ours, record,
        "the record RabbitMQ wrote for the AMQP 0-9-1 message"
    );
}

#[test]
fn stream_message_to_amqp091_matches_what_pika_saw() {
    let s = session();
    let record = unhex(
        s["cross_protocol"]["stream_published_hex"]
            .as_str()
            .unwrap(),
    );
    let seen = &s["cross_protocol"]["amqp091_consumer_from_offset_6"][1];
    let msg = Message::decode(record.clone()).unwrap();
    // The script trims trailing nulls off its properties list (RabbitMQ would write all
    // 13 fields), so its bytes are not compared with a re-encoding.
    let mut c = to_amqp091(&msg, "ref-s1").unwrap();
    add_stream_offset(&mut c.properties, 8);
    assert_eq!(c.exchange, b(seen["exchange"].as_str().unwrap()));
    assert_eq!(c.routing_key, b(seen["routing_key"].as_str().unwrap()));
    assert_eq!(c.payload, b(seen["body"].as_str().unwrap()));
    let p = &c.properties;
    let sp = &seen["properties"];
    let text = |x: &Option<Bytes>| x.as_ref().map(|v| String::from_utf8_lossy(v).into_owned());
    assert_eq!(text(&p.app_id).as_deref(), sp["app_id"].as_str());
    assert_eq!(
        text(&p.content_type).as_deref(),
        sp["content_type"].as_str()
    );
    assert_eq!(
        text(&p.content_encoding).as_deref(),
        sp["content_encoding"].as_str()
    );
    assert_eq!(
        text(&p.correlation_id).as_deref(),
        sp["correlation_id"].as_str()
    );
    assert_eq!(text(&p.message_id).as_deref(), sp["message_id"].as_str());
    assert_eq!(text(&p.reply_to).as_deref(), sp["reply_to"].as_str());
    assert_eq!(text(&p.expiration).as_deref(), sp["expiration"].as_str());
    assert_eq!(text(&p.kind).as_deref(), sp["type"].as_str());
    assert_eq!(text(&p.user_id).as_deref(), sp["user_id"].as_str());
    assert_eq!(p.delivery_mode.map(u64::from), sp["delivery_mode"].as_u64());
    assert_eq!(p.priority.map(u64::from), sp["priority"].as_u64());
    assert_eq!(p.timestamp, sp["timestamp"].as_u64());
    let names: Vec<String> = p
        .headers
        .as_ref()
        .unwrap()
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    let seen_names: Vec<String> = seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, seen_names, "header names and their (sorted) order");
    let hv: Vec<&FieldValue> = p.headers.as_ref().unwrap().iter().map(|(_, v)| v).collect();
    assert_eq!(
        hv,
        vec![
            &FieldValue::Bool(true),
            &FieldValue::Binary(Bytes::from_static(&[0xff])),
            &FieldValue::I32(-2),
            &FieldValue::I64(1 << 40),
            &FieldValue::LongString(b("v")),
            &FieldValue::I64(8),
        ]
    );
}
