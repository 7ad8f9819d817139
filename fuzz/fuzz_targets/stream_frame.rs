//! RabbitMQ Stream protocol input (issue 17's `stream_frame`): arbitrary bytes cut at
//! arbitrary read boundaries through the frame reader, every frame through the command
//! decoder (as the client side sends them), and what decodes must encode back to a frame
//! that decodes to the same command. Publish entries and Deliver chunks go through the
//! chunk and AMQP 1.0 message parsers too. Nothing may panic.
#![no_main]
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use warren::stream_protocol::message::Message;
use warren::stream_protocol::{read_frame, Chunk, Command, Origin};

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let frame_max = [64u32, 4096, 1 << 20][(seed % 3) as usize];
    let piece = 1 + (seed as usize >> 2);
    let mut buf = BytesMut::new();
    let mut bodies = Vec::new();
    'feed: for part in stream.chunks(piece) {
        buf.extend_from_slice(part);
        loop {
            match read_frame(&mut buf, frame_max) {
                Ok(Some(body)) => bodies.push(body),
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    for body in bodies {
        for origin in [Origin::Client, Origin::Server] {
            let Ok(command) = Command::decode(body.clone(), origin) else {
                continue;
            };
            let mut out = BytesMut::new();
            command.encode_body(&mut out);
            let again = Command::decode(out.freeze(), origin).expect("an encoded command decodes");
            assert_eq!(again, command);
            match &command {
                Command::Publish { messages, .. } => {
                    for m in messages {
                        for r in m.entry.records().unwrap_or_default() {
                            let _ = Message::decode(r);
                        }
                    }
                }
                Command::Deliver { chunk, .. } => {
                    if let Ok(c) = Chunk::parse(chunk.clone()) {
                        for (_, r) in c.records() {
                            let _ = r.map(Message::decode);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    // The bytes as one AMQP 1.0 message and one chunk, too.
    let _ = Message::decode(Bytes::copy_from_slice(stream));
    let _ = Chunk::parse(Bytes::copy_from_slice(stream));
});
