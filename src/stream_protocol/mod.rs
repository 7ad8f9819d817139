//! The RabbitMQ Stream protocol (port 5552, `--listen-stream`), as the `rabbitmq_stream`
//! plugin of RabbitMQ 3.10.8 speaks it: a pure codec layer with no sockets and nothing of
//! the broker, and [`session`], one connection wired to the broker.
//!
//! The protocol is binary and framed: every frame is a uint32 size, then a uint16 key (top
//! bit set on responses), a uint16 version (always 1 in 3.10.8) and the content. Requests
//! carry a uint32 correlation id that their response repeats with a uint16 response code.
//! Strings are int16-length UTF-8, byte strings int32-length, arrays an int32 count.
//!
//! Commands (key): DeclarePublisher (1), Publish (2), PublishConfirm (3), PublishError (4),
//! QueryPublisherSequence (5), DeletePublisher (6), Subscribe (7), Deliver (8), Credit (9),
//! StoreOffset (10), QueryOffset (11), Unsubscribe (12), Create (13), Delete (14),
//! Metadata (15), MetadataUpdate (16), PeerProperties (17), SaslHandshake (18),
//! SaslAuthenticate (19), Tune (20), Open (21), Close (22), Heartbeat (23), Route (24),
//! Partitions (25). 3.10.8 has no Publish v2 (filter values), no ExchangeCommandVersions
//! (0x1b) and no StreamStats (0x1c): those came in 3.11 and later, and 3.10.8 answers them
//! as unknown frames.
//!
//! What is here:
//! - [`frame`]: taking whole frames off a `BytesMut`, bounded by the frame max before any
//!   allocation.
//! - [`command`] / [`encode`] / [`decode`]: every command both ways, encode and decode, and what
//!   RabbitMQ does with a frame it cannot decode ([`decode::undecodable_reaction`]).
//! - [`chunk`]: osiris chunks (Deliver content) and entries (Publish content, sub-batches).
//! - [`amqp10`]: AMQP 1.0 values; [`message`]: AMQP 1.0 messages (the records of a stream);
//!   [`convert`]: RabbitMQ 3.10's conversion between AMQP 0-9-1 and those messages.
//! - [`session`]: a connection: handshake, commands, publishing into a stream queue's log,
//!   delivering chunks from a subscription's own cursor.
//!
//! `tests/stream_reference/` holds frames recorded from a real RabbitMQ 3.10.8 and notes on
//! what it answers.

pub mod amqp10;
pub mod chunk;
pub mod command;
pub mod convert;
pub mod decode;
pub mod encode;
pub mod frame;
pub mod message;
pub mod session;
pub mod wire;

pub use chunk::{encode_chunk, Chunk, ChunkHeader, Entry};
pub use command::{
    Broker, Command, OffsetSpec, PublishedMessage, SimpleResponseKey, StreamMetadata,
};
pub use decode::{undecodable_reaction, DecodeError, Origin, UndecodableReaction};
pub use frame::{read_frame, FrameError};

/// The only version of every command in 3.10.8.
pub const VERSION_1: u16 = 1;
/// Set on the key of a response.
pub const RESPONSE_BIT: u16 = 0x8000;

pub const KEY_DECLARE_PUBLISHER: u16 = 1;
pub const KEY_PUBLISH: u16 = 2;
pub const KEY_PUBLISH_CONFIRM: u16 = 3;
pub const KEY_PUBLISH_ERROR: u16 = 4;
pub const KEY_QUERY_PUBLISHER_SEQUENCE: u16 = 5;
pub const KEY_DELETE_PUBLISHER: u16 = 6;
pub const KEY_SUBSCRIBE: u16 = 7;
pub const KEY_DELIVER: u16 = 8;
pub const KEY_CREDIT: u16 = 9;
pub const KEY_STORE_OFFSET: u16 = 10;
pub const KEY_QUERY_OFFSET: u16 = 11;
pub const KEY_UNSUBSCRIBE: u16 = 12;
pub const KEY_CREATE: u16 = 13;
pub const KEY_DELETE: u16 = 14;
pub const KEY_METADATA: u16 = 15;
pub const KEY_METADATA_UPDATE: u16 = 16;
pub const KEY_PEER_PROPERTIES: u16 = 17;
pub const KEY_SASL_HANDSHAKE: u16 = 18;
pub const KEY_SASL_AUTHENTICATE: u16 = 19;
pub const KEY_TUNE: u16 = 20;
pub const KEY_OPEN: u16 = 21;
pub const KEY_CLOSE: u16 = 22;
pub const KEY_HEARTBEAT: u16 = 23;
pub const KEY_ROUTE: u16 = 24;
pub const KEY_PARTITIONS: u16 = 25;
/// RabbitMQ 3.11+'s command-version exchange; answered by the session (`session.rs`) so
/// that today's clients connect, though 3.10.8 does not know it.
pub const KEY_EXCHANGE_COMMAND_VERSIONS: u16 = 0x1b;

pub const RESPONSE_CODE_OK: u16 = 0x01;
pub const RESPONSE_CODE_STREAM_DOES_NOT_EXIST: u16 = 0x02;
pub const RESPONSE_CODE_SUBSCRIPTION_ID_ALREADY_EXISTS: u16 = 0x03;
pub const RESPONSE_CODE_SUBSCRIPTION_ID_DOES_NOT_EXIST: u16 = 0x04;
pub const RESPONSE_CODE_STREAM_ALREADY_EXISTS: u16 = 0x05;
pub const RESPONSE_CODE_STREAM_NOT_AVAILABLE: u16 = 0x06;
pub const RESPONSE_CODE_SASL_MECHANISM_NOT_SUPPORTED: u16 = 0x07;
pub const RESPONSE_CODE_AUTHENTICATION_FAILURE: u16 = 0x08;
pub const RESPONSE_CODE_SASL_ERROR: u16 = 0x09;
pub const RESPONSE_CODE_SASL_CHALLENGE: u16 = 0x0a;
pub const RESPONSE_CODE_SASL_AUTHENTICATION_FAILURE_LOOPBACK: u16 = 0x0b;
pub const RESPONSE_CODE_VIRTUAL_HOST_ACCESS_FAILURE: u16 = 0x0c;
pub const RESPONSE_CODE_UNKNOWN_FRAME: u16 = 0x0d;
pub const RESPONSE_CODE_FRAME_TOO_LARGE: u16 = 0x0e;
pub const RESPONSE_CODE_INTERNAL_ERROR: u16 = 0x0f;
pub const RESPONSE_CODE_ACCESS_REFUSED: u16 = 0x10;
pub const RESPONSE_CODE_PRECONDITION_FAILED: u16 = 0x11;
pub const RESPONSE_CODE_PUBLISHER_DOES_NOT_EXIST: u16 = 0x12;
pub const RESPONSE_CODE_NO_OFFSET: u16 = 0x13;

pub const OFFSET_TYPE_FIRST: u16 = 1;
pub const OFFSET_TYPE_LAST: u16 = 2;
pub const OFFSET_TYPE_NEXT: u16 = 3;
pub const OFFSET_TYPE_OFFSET: u16 = 4;
pub const OFFSET_TYPE_TIMESTAMP: u16 = 5;

/// What RabbitMQ 3.10.8 proposes in its Tune: 1 MiB frames, 60 s heartbeats (the
/// `stream.frame_max` and `stream.heartbeat` defaults).
pub const DEFAULT_FRAME_MAX: u32 = 1_048_576;
pub const DEFAULT_HEARTBEAT: u32 = 60;

#[cfg(test)]
mod tests;
