//! The commands of the stream protocol as RabbitMQ 3.10.8 speaks them, both directions.
//! Encoding is in `encode.rs`, decoding in `decode.rs`.
//!
//! Every command is version 1 (3.10.8 knows no other version of any key). Where RabbitMQ
//! writes something other than what the protocol document says, the encoder follows
//! RabbitMQ; each such place says so.

use super::chunk::Entry;
use super::wire::Reader;
use super::*;
use bytes::Bytes;

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

/// Reads one message of a Publish frame: a publishing id and an entry.
pub(crate) fn read_published(r: &mut Reader) -> Result<PublishedMessage, super::wire::WireError> {
    let publishing_id = r.u64()?;
    let entry = Entry::read(r)?;
    Ok(PublishedMessage {
        publishing_id,
        entry,
    })
}
