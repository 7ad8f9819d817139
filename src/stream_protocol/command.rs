//! The commands of the stream protocol as RabbitMQ 3.10.8 speaks them, both directions, and
//! their encoding. Decoding is in `decode.rs`.
//!
//! Every command is version 1 (3.10.8 knows no other version of any key). Where RabbitMQ
//! writes something other than what the protocol document says, the encoder follows
//! RabbitMQ; each such place says so.

use super::chunk::Entry;
use super::wire::{
    put_count, put_nullable_bytes, put_string, put_string_list, put_string_map, Reader,
};
use super::*;
use bytes::{BufMut, Bytes, BytesMut};

/// One message of a Publish frame: the client's publishing id and an osiris entry (a
/// simple entry is an int32-length message, a sub-batch starts with its top bit set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedMessage {
    pub publishing_id: u64,
    pub entry: Entry,
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    First,
    Last,
    Next,
    Offset(u64),
    /// Milliseconds since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    pub fn type_code(&self) -> u16 {
        match self {
            OffsetSpec::First => OFFSET_TYPE_FIRST,
            OffsetSpec::Last => OFFSET_TYPE_LAST,
            OffsetSpec::Next => OFFSET_TYPE_NEXT,
            OffsetSpec::Offset(_) => OFFSET_TYPE_OFFSET,
            OffsetSpec::Timestamp(_) => OFFSET_TYPE_TIMESTAMP,
        }
    }
}

/// A broker of a Metadata response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub reference: u16,
    pub host: String,
    pub port: u32,
}

/// A stream of a Metadata response. For a missing stream RabbitMQ writes code 2, leader
/// 0xffff and no replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMetadata {
    pub stream: String,
    pub code: u16,
    pub leader: u16,
    pub replicas: Vec<u16>,
}

/// The commands whose response is only a correlation id and a response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimpleResponseKey {
    DeclarePublisher,
    DeletePublisher,
    Subscribe,
    Unsubscribe,
    Create,
    Delete,
    Close,
}

impl SimpleResponseKey {
    pub fn key(self) -> u16 {
        match self {
            SimpleResponseKey::DeclarePublisher => KEY_DECLARE_PUBLISHER,
            SimpleResponseKey::DeletePublisher => KEY_DELETE_PUBLISHER,
            SimpleResponseKey::Subscribe => KEY_SUBSCRIBE,
            SimpleResponseKey::Unsubscribe => KEY_UNSUBSCRIBE,
            SimpleResponseKey::Create => KEY_CREATE,
            SimpleResponseKey::Delete => KEY_DELETE,
            SimpleResponseKey::Close => KEY_CLOSE,
        }
    }

    pub fn from_key(key: u16) -> Option<Self> {
        Some(match key {
            KEY_DECLARE_PUBLISHER => SimpleResponseKey::DeclarePublisher,
            KEY_DELETE_PUBLISHER => SimpleResponseKey::DeletePublisher,
            KEY_SUBSCRIBE => SimpleResponseKey::Subscribe,
            KEY_UNSUBSCRIBE => SimpleResponseKey::Unsubscribe,
            KEY_CREATE => SimpleResponseKey::Create,
            KEY_DELETE => SimpleResponseKey::Delete,
            KEY_CLOSE => SimpleResponseKey::Close,
            _ => return None,
        })
    }
}

/// A stream-protocol command. Requests carry `correlation_id`; the one-way commands
/// (Publish, Deliver, Credit, StoreOffset, Tune, Heartbeat, ...) do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    // ---- client to server ----
    DeclarePublisher {
        correlation_id: u32,
        publisher_id: u8,
        reference: String,
        stream: String,
    },
    Publish {
        publisher_id: u8,
        messages: Vec<PublishedMessage>,
    },
    QueryPublisherSequence {
        correlation_id: u32,
        reference: String,
        stream: String,
    },
    DeletePublisher {
        correlation_id: u32,
        publisher_id: u8,
    },
    /// `properties: None` is a frame that ends after the credit (what RabbitMQ writes
    /// for no properties); `Some(vec![])` is an explicit zero count.
    Subscribe {
        correlation_id: u32,
        subscription_id: u8,
        stream: String,
        offset: OffsetSpec,
        credit: u16,
        properties: Option<Vec<(String, String)>>,
    },
    /// RabbitMQ reads the credit as a *signed* int16: a value of 0x8000 or more lowers
    /// the subscription's credit.
    Credit {
        subscription_id: u8,
        credit: u16,
    },
    StoreOffset {
        reference: String,
        stream: String,
        offset: u64,
    },
    QueryOffset {
        correlation_id: u32,
        reference: String,
        stream: String,
    },
    Unsubscribe {
        correlation_id: u32,
        subscription_id: u8,
    },
    Create {
        correlation_id: u32,
        stream: String,
        arguments: Vec<(String, String)>,
    },
    Delete {
        correlation_id: u32,
        stream: String,
    },
    Metadata {
        correlation_id: u32,
        streams: Vec<String>,
    },
    PeerProperties {
        correlation_id: u32,
        properties: Vec<(String, String)>,
    },
    SaslHandshake {
        correlation_id: u32,
    },
    /// `data: None` is the int32 -1 (RabbitMQ reads it as empty).
    SaslAuthenticate {
        correlation_id: u32,
        mechanism: String,
        data: Option<Bytes>,
    },
    /// The client's answer to Tune: key 0x8014, no correlation id.
    TuneResponse {
        frame_max: u32,
        heartbeat: u32,
    },
    Open {
        correlation_id: u32,
        virtual_host: String,
    },
    Route {
        correlation_id: u32,
        routing_key: String,
        super_stream: String,
    },
    Partitions {
        correlation_id: u32,
        super_stream: String,
    },

    // ---- both directions ----
    /// The server sends it too: after an unknown frame (code 13, "unknown frame"), always
    /// with correlation id 1.
    Close {
        correlation_id: u32,
        code: u16,
        reason: String,
    },
    Heartbeat,
    /// The answers of the commands in [`SimpleResponseKey`] (the client sends the Close one).
    Response {
        key: SimpleResponseKey,
        correlation_id: u32,
        code: u16,
    },

    // ---- server to client ----
    PublishConfirm {
        publisher_id: u8,
        publishing_ids: Vec<u64>,
    },
    /// RabbitMQ puts one code on every id of a frame, but the wire carries one per id.
    PublishError {
        publisher_id: u8,
        errors: Vec<(u64, u16)>,
    },
    /// `chunk` is the osiris chunk as sent: the 48-byte header and the entry data, without
    /// the trailer even when the header counts one (see `chunk.rs`).
    Deliver {
        subscription_id: u8,
        chunk: Bytes,
    },
    /// Only sent for a problem (an unknown subscription): key 0x8009, no correlation id.
    CreditResponse {
        code: u16,
        subscription_id: u8,
    },
    MetadataUpdate {
        code: u16,
        stream: String,
    },
    Tune {
        frame_max: u32,
        heartbeat: u32,
    },
    QueryPublisherSequenceResponse {
        correlation_id: u32,
        code: u16,
        sequence: u64,
    },
    QueryOffsetResponse {
        correlation_id: u32,
        code: u16,
        offset: u64,
    },
    MetadataResponse {
        correlation_id: u32,
        brokers: Vec<Broker>,
        streams: Vec<StreamMetadata>,
    },
    PeerPropertiesResponse {
        correlation_id: u32,
        code: u16,
        properties: Vec<(String, String)>,
    },
    SaslHandshakeResponse {
        correlation_id: u32,
        code: u16,
        mechanisms: Vec<String>,
    },
    /// RabbitMQ writes a challenge as an int16-length string, and nothing at all when
    /// there is none (`None`).
    SaslAuthenticateResponse {
        correlation_id: u32,
        code: u16,
        challenge: Option<Bytes>,
    },
    /// RabbitMQ writes no property array at all for an empty map (`None`).
    OpenResponse {
        correlation_id: u32,
        code: u16,
        properties: Option<Vec<(String, String)>>,
    },
    /// RabbitMQ 3.10.8 writes Route and Partitions responses with the *request* key
    /// (0x0018, 0x0019, response bit clear) and a list of streams; the encoder does the
    /// same, the decoder accepts either key.
    RouteResponse {
        correlation_id: u32,
        code: u16,
        streams: Vec<String>,
    },
    PartitionsResponse {
        correlation_id: u32,
        code: u16,
        streams: Vec<String>,
    },
}

fn head(out: &mut BytesMut, key: u16) {
    out.put_u16(key);
    out.put_u16(VERSION_1);
}

fn request(out: &mut BytesMut, key: u16, correlation_id: u32) {
    head(out, key);
    out.put_u32(correlation_id);
}

fn response(out: &mut BytesMut, key: u16, correlation_id: u32, code: u16) {
    head(out, key | RESPONSE_BIT);
    out.put_u32(correlation_id);
    out.put_u16(code);
}

impl Command {
    /// Encodes the whole frame, size prefix included.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u32(0);
        self.encode_body(out);
        let size = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    }

    pub fn to_frame(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }

    /// Encodes the body (key, version and content), without the size prefix.
    pub fn encode_body(&self, out: &mut BytesMut) {
        use Command::*;
        match self {
            DeclarePublisher {
                correlation_id,
                publisher_id,
                reference,
                stream,
            } => {
                request(out, KEY_DECLARE_PUBLISHER, *correlation_id);
                out.put_u8(*publisher_id);
                put_string(out, reference);
                put_string(out, stream);
            }
            Publish {
                publisher_id,
                messages,
            } => {
                head(out, KEY_PUBLISH);
                out.put_u8(*publisher_id);
                put_count(out, messages.len());
                for m in messages {
                    out.put_u64(m.publishing_id);
                    m.entry.encode(out);
                }
            }
            QueryPublisherSequence {
                correlation_id,
                reference,
                stream,
            } => {
                request(out, KEY_QUERY_PUBLISHER_SEQUENCE, *correlation_id);
                put_string(out, reference);
                put_string(out, stream);
            }
            DeletePublisher {
                correlation_id,
                publisher_id,
            } => {
                request(out, KEY_DELETE_PUBLISHER, *correlation_id);
                out.put_u8(*publisher_id);
            }
            Subscribe {
                correlation_id,
                subscription_id,
                stream,
                offset,
                credit,
                properties,
            } => {
                request(out, KEY_SUBSCRIBE, *correlation_id);
                out.put_u8(*subscription_id);
                put_string(out, stream);
                out.put_u16(offset.type_code());
                match offset {
                    OffsetSpec::Offset(o) => out.put_u64(*o),
                    OffsetSpec::Timestamp(t) => out.put_i64(*t),
                    _ => {}
                }
                out.put_u16(*credit);
                if let Some(p) = properties {
                    put_string_map(out, p);
                }
            }
            Credit {
                subscription_id,
                credit,
            } => {
                head(out, KEY_CREDIT);
                out.put_u8(*subscription_id);
                out.put_u16(*credit);
            }
            StoreOffset {
                reference,
                stream,
                offset,
            } => {
                head(out, KEY_STORE_OFFSET);
                put_string(out, reference);
                put_string(out, stream);
                out.put_u64(*offset);
            }
            QueryOffset {
                correlation_id,
                reference,
                stream,
            } => {
                request(out, KEY_QUERY_OFFSET, *correlation_id);
                put_string(out, reference);
                put_string(out, stream);
            }
            Unsubscribe {
                correlation_id,
                subscription_id,
            } => {
                request(out, KEY_UNSUBSCRIBE, *correlation_id);
                out.put_u8(*subscription_id);
            }
            Create {
                correlation_id,
                stream,
                arguments,
            } => {
                request(out, KEY_CREATE, *correlation_id);
                put_string(out, stream);
                put_string_map(out, arguments);
            }
            Delete {
                correlation_id,
                stream,
            } => {
                request(out, KEY_DELETE, *correlation_id);
                put_string(out, stream);
            }
            Metadata {
                correlation_id,
                streams,
            } => {
                request(out, KEY_METADATA, *correlation_id);
                put_string_list(out, streams);
            }
            PeerProperties {
                correlation_id,
                properties,
            } => {
                request(out, KEY_PEER_PROPERTIES, *correlation_id);
                put_string_map(out, properties);
            }
            SaslHandshake { correlation_id } => request(out, KEY_SASL_HANDSHAKE, *correlation_id),
            SaslAuthenticate {
                correlation_id,
                mechanism,
                data,
            } => {
                request(out, KEY_SASL_AUTHENTICATE, *correlation_id);
                put_string(out, mechanism);
                put_nullable_bytes(out, data.as_deref());
            }
            TuneResponse {
                frame_max,
                heartbeat,
            } => {
                head(out, KEY_TUNE | RESPONSE_BIT);
                out.put_u32(*frame_max);
                out.put_u32(*heartbeat);
            }
            Open {
                correlation_id,
                virtual_host,
            } => {
                request(out, KEY_OPEN, *correlation_id);
                put_string(out, virtual_host);
            }
            Route {
                correlation_id,
                routing_key,
                super_stream,
            } => {
                request(out, KEY_ROUTE, *correlation_id);
                put_string(out, routing_key);
                put_string(out, super_stream);
            }
            Partitions {
                correlation_id,
                super_stream,
            } => {
                request(out, KEY_PARTITIONS, *correlation_id);
                put_string(out, super_stream);
            }
            Close {
                correlation_id,
                code,
                reason,
            } => {
                request(out, KEY_CLOSE, *correlation_id);
                out.put_u16(*code);
                put_string(out, reason);
            }
            Heartbeat => head(out, KEY_HEARTBEAT),
            Response {
                key,
                correlation_id,
                code,
            } => response(out, key.key(), *correlation_id, *code),
            PublishConfirm {
                publisher_id,
                publishing_ids,
            } => {
                head(out, KEY_PUBLISH_CONFIRM);
                out.put_u8(*publisher_id);
                put_count(out, publishing_ids.len());
                for id in publishing_ids {
                    out.put_u64(*id);
                }
            }
            PublishError {
                publisher_id,
                errors,
            } => {
                head(out, KEY_PUBLISH_ERROR);
                out.put_u8(*publisher_id);
                put_count(out, errors.len());
                for (id, code) in errors {
                    out.put_u64(*id);
                    out.put_u16(*code);
                }
            }
            Deliver {
                subscription_id,
                chunk,
            } => {
                head(out, KEY_DELIVER);
                out.put_u8(*subscription_id);
                out.put_slice(chunk);
            }
            CreditResponse {
                code,
                subscription_id,
            } => {
                head(out, KEY_CREDIT | RESPONSE_BIT);
                out.put_u16(*code);
                out.put_u8(*subscription_id);
            }
            MetadataUpdate { code, stream } => {
                head(out, KEY_METADATA_UPDATE);
                out.put_u16(*code);
                put_string(out, stream);
            }
            Tune {
                frame_max,
                heartbeat,
            } => {
                head(out, KEY_TUNE);
                out.put_u32(*frame_max);
                out.put_u32(*heartbeat);
            }
            QueryPublisherSequenceResponse {
                correlation_id,
                code,
                sequence,
            } => {
                response(out, KEY_QUERY_PUBLISHER_SEQUENCE, *correlation_id, *code);
                out.put_u64(*sequence);
            }
            QueryOffsetResponse {
                correlation_id,
                code,
                offset,
            } => {
                response(out, KEY_QUERY_OFFSET, *correlation_id, *code);
                out.put_u64(*offset);
            }
            MetadataResponse {
                correlation_id,
                brokers,
                streams,
            } => {
                // No response code of its own: the codes are per stream.
                head(out, KEY_METADATA | RESPONSE_BIT);
                out.put_u32(*correlation_id);
                put_count(out, brokers.len());
                for b in brokers {
                    out.put_u16(b.reference);
                    put_string(out, &b.host);
                    out.put_u32(b.port);
                }
                put_count(out, streams.len());
                for s in streams {
                    put_string(out, &s.stream);
                    out.put_u16(s.code);
                    out.put_u16(s.leader);
                    put_count(out, s.replicas.len());
                    for r in &s.replicas {
                        out.put_u16(*r);
                    }
                }
            }
            PeerPropertiesResponse {
                correlation_id,
                code,
                properties,
            } => {
                response(out, KEY_PEER_PROPERTIES, *correlation_id, *code);
                put_string_map(out, properties);
            }
            SaslHandshakeResponse {
                correlation_id,
                code,
                mechanisms,
            } => {
                response(out, KEY_SASL_HANDSHAKE, *correlation_id, *code);
                put_string_list(out, mechanisms);
            }
            SaslAuthenticateResponse {
                correlation_id,
                code,
                challenge,
            } => {
                response(out, KEY_SASL_AUTHENTICATE, *correlation_id, *code);
                if let Some(c) = challenge {
                    let len = c.len().min(i16::MAX as usize);
                    out.put_i16(len as i16);
                    out.put_slice(&c[..len]);
                }
            }
            OpenResponse {
                correlation_id,
                code,
                properties,
            } => {
                response(out, KEY_OPEN, *correlation_id, *code);
                if let Some(p) = properties {
                    put_string_map(out, p);
                }
            }
            RouteResponse {
                correlation_id,
                code,
                streams,
            } => {
                request(out, KEY_ROUTE, *correlation_id);
                out.put_u16(*code);
                put_string_list(out, streams);
            }
            PartitionsResponse {
                correlation_id,
                code,
                streams,
            } => {
                request(out, KEY_PARTITIONS, *correlation_id);
                out.put_u16(*code);
                put_string_list(out, streams);
            }
        }
    }
}

/// Reads one message of a Publish frame: a publishing id and an entry.
pub(crate) fn read_published(r: &mut Reader) -> Result<PublishedMessage, super::wire::WireError> {
    let publishing_id = r.u64()?;
    let entry = Entry::read(r)?;
    Ok(PublishedMessage {
        publishing_id,
        entry,
    })
}
