//! Decoding frame bodies into [`Command`]s, and what RabbitMQ does with the ones it cannot
//! decode.
//!
//! RabbitMQ 3.10.8 matches each body against exact binary patterns (version 1, every field,
//! nothing left over); a body that matches none becomes `{unknown, Bin}`. The decoder is as
//! strict: every field must be there, version must be 1, no bytes may be left over, and
//! array counts must be right (RabbitMQ ignores the counts of property maps and string
//! lists and reads to the end of the frame; a frame whose count disagrees with its content
//! is refused here).

use super::command::{
    read_published, Broker, Command, OffsetSpec, SimpleResponseKey, StreamMetadata,
};
use super::wire::{Reader, WireError};
use super::*;
use bytes::Bytes;
use std::fmt;

/// Who sent the frame. The same key means different things each way (Close and Heartbeat
/// go both ways; the server's Route and Partitions responses reuse the request keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Server,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A key this side never receives (or no key at all).
    UnknownKey { key: u16, version: u16 },
    /// A version other than 1.
    UnsupportedVersion { key: u16, version: u16 },
    /// A known key whose content does not parse.
    Malformed { key: u16, error: WireError },
    /// The Publish message count disagrees with the messages present.
    CountMismatch {
        key: u16,
        declared: u32,
        present: usize,
    },
    /// A Subscribe offset type outside 1..=5. RabbitMQ crashes the connection on this
    /// one (`case_clause`), rather than answering it as an unknown frame.
    UnknownOffsetType(u16),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownKey { key, version } => {
                write!(f, "unknown key {key:#06x} (version {version})")
            }
            DecodeError::UnsupportedVersion { key, version } => {
                write!(f, "key {key:#06x}: unsupported version {version}")
            }
            DecodeError::Malformed { key, error } => write!(f, "key {key:#06x}: {error}"),
            DecodeError::CountMismatch {
                key,
                declared,
                present,
            } => {
                write!(
                    f,
                    "key {key:#06x}: {declared} messages declared, {present} present"
                )
            }
            DecodeError::UnknownOffsetType(t) => write!(f, "unknown offset type {t}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// What RabbitMQ 3.10.8 does when a client frame does not decode (`rabbit_stream_reader`):
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UndecodableReaction {
    /// Before the connection is open (peer properties, SASL, tune, open): it logs "unknown
    /// command" and closes the socket without a word.
    CloseSocket,
    /// Once open: it sends a Close request (correlation id 1, code 13, reason "unknown
    /// frame"), ignores further frames except the client's Close response, then closes.
    SendClose {
        correlation_id: u32,
        code: u16,
        reason: &'static str,
    },
}

/// The reaction to an undecodable client frame; `opened` is whether Open succeeded.
pub fn undecodable_reaction(opened: bool) -> UndecodableReaction {
    if opened {
        UndecodableReaction::SendClose {
            correlation_id: 1,
            code: RESPONSE_CODE_UNKNOWN_FRAME,
            reason: "unknown frame",
        }
    } else {
        UndecodableReaction::CloseSocket
    }
}

fn malformed(key: u16) -> impl Fn(WireError) -> DecodeError {
    move |error| DecodeError::Malformed { key, error }
}

impl Command {
    /// Decodes a frame body (key, version, content; no size prefix).
    pub fn decode(body: Bytes, origin: Origin) -> Result<Command, DecodeError> {
        let mut r = Reader::new(body);
        let (key, version) = match (r.u16(), r.u16()) {
            (Ok(k), Ok(v)) => (k, v),
            _ => return Err(DecodeError::UnknownKey { key: 0, version: 0 }),
        };
        if !known(key, origin) {
            return Err(DecodeError::UnknownKey { key, version });
        }
        if version != VERSION_1 {
            return Err(DecodeError::UnsupportedVersion { key, version });
        }
        let cmd = match origin {
            Origin::Client => client(key, &mut r),
            Origin::Server => server(key, &mut r),
        }?;
        r.finish().map_err(malformed(key))?;
        Ok(cmd)
    }
}

/// The keys each side sends.
fn known(key: u16, origin: Origin) -> bool {
    match origin {
        Origin::Client => {
            matches!(
                key,
                KEY_DECLARE_PUBLISHER
                    | KEY_PUBLISH
                    | KEY_QUERY_PUBLISHER_SEQUENCE
                    | KEY_DELETE_PUBLISHER
                    | KEY_SUBSCRIBE
                    | KEY_CREDIT
                    | KEY_STORE_OFFSET
                    | KEY_QUERY_OFFSET
                    | KEY_UNSUBSCRIBE
                    | KEY_CREATE
                    | KEY_DELETE
                    | KEY_METADATA
                    | KEY_PEER_PROPERTIES
                    | KEY_SASL_HANDSHAKE
                    | KEY_SASL_AUTHENTICATE
                    | KEY_OPEN
                    | KEY_CLOSE
                    | KEY_HEARTBEAT
                    | KEY_ROUTE
                    | KEY_PARTITIONS
            ) || key == KEY_TUNE | RESPONSE_BIT
                || key == KEY_CLOSE | RESPONSE_BIT
        }
        Origin::Server => {
            let base = key & !RESPONSE_BIT;
            if key & RESPONSE_BIT == 0 {
                matches!(
                    key,
                    KEY_PUBLISH_CONFIRM
                        | KEY_PUBLISH_ERROR
                        | KEY_DELIVER
                        | KEY_METADATA_UPDATE
                        | KEY_TUNE
                        | KEY_CLOSE
                        | KEY_HEARTBEAT
                        | KEY_ROUTE
                        | KEY_PARTITIONS
                )
            } else {
                SimpleResponseKey::from_key(base).is_some()
                    || matches!(
                        base,
                        KEY_QUERY_PUBLISHER_SEQUENCE
                            | KEY_QUERY_OFFSET
                            | KEY_METADATA
                            | KEY_PEER_PROPERTIES
                            | KEY_SASL_HANDSHAKE
                            | KEY_SASL_AUTHENTICATE
                            | KEY_OPEN
                            | KEY_CREDIT
                            | KEY_ROUTE
                            | KEY_PARTITIONS
                    )
            }
        }
    }
}

fn client(key: u16, r: &mut Reader) -> Result<Command, DecodeError> {
    let m = malformed(key);
    Ok(match key {
        KEY_DECLARE_PUBLISHER => Command::DeclarePublisher {
            correlation_id: r.u32().map_err(&m)?,
            publisher_id: r.u8().map_err(&m)?,
            reference: r.string().map_err(&m)?,
            stream: r.string().map_err(&m)?,
        },
        KEY_PUBLISH => {
            let publisher_id = r.u8().map_err(&m)?;
            let declared = r.u32().map_err(&m)?;
            // Each message takes at least 12 bytes (id + entry header): bounds the vector
            // whatever the declared count says.
            let mut messages = Vec::with_capacity((declared as usize).min(r.remaining() / 12));
            while !r.is_empty() {
                messages.push(read_published(r).map_err(&m)?);
            }
            if messages.len() != declared as usize {
                return Err(DecodeError::CountMismatch {
                    key,
                    declared,
                    present: messages.len(),
                });
            }
            Command::Publish {
                publisher_id,
                messages,
            }
        }
        KEY_QUERY_PUBLISHER_SEQUENCE => Command::QueryPublisherSequence {
            correlation_id: r.u32().map_err(&m)?,
            reference: r.string().map_err(&m)?,
            stream: r.string().map_err(&m)?,
        },
        KEY_DELETE_PUBLISHER => Command::DeletePublisher {
            correlation_id: r.u32().map_err(&m)?,
            publisher_id: r.u8().map_err(&m)?,
        },
        KEY_SUBSCRIBE => {
            let correlation_id = r.u32().map_err(&m)?;
            let subscription_id = r.u8().map_err(&m)?;
            let stream = r.string().map_err(&m)?;
            let offset = match r.u16().map_err(&m)? {
                OFFSET_TYPE_FIRST => OffsetSpec::First,
                OFFSET_TYPE_LAST => OffsetSpec::Last,
                OFFSET_TYPE_NEXT => OffsetSpec::Next,
                OFFSET_TYPE_OFFSET => OffsetSpec::Offset(r.u64().map_err(&m)?),
                OFFSET_TYPE_TIMESTAMP => OffsetSpec::Timestamp(r.i64().map_err(&m)?),
                other => return Err(DecodeError::UnknownOffsetType(other)),
            };
            let credit = r.u16().map_err(&m)?;
            let properties = if r.is_empty() {
                None
            } else {
                Some(r.string_map().map_err(&m)?)
            };
            Command::Subscribe {
                correlation_id,
                subscription_id,
                stream,
                offset,
                credit,
                properties,
            }
        }
        KEY_CREDIT => Command::Credit {
            subscription_id: r.u8().map_err(&m)?,
            credit: r.u16().map_err(&m)?,
        },
        KEY_STORE_OFFSET => Command::StoreOffset {
            reference: r.string().map_err(&m)?,
            stream: r.string().map_err(&m)?,
            offset: r.u64().map_err(&m)?,
        },
        KEY_QUERY_OFFSET => Command::QueryOffset {
            correlation_id: r.u32().map_err(&m)?,
            reference: r.string().map_err(&m)?,
            stream: r.string().map_err(&m)?,
        },
        KEY_UNSUBSCRIBE => Command::Unsubscribe {
            correlation_id: r.u32().map_err(&m)?,
            subscription_id: r.u8().map_err(&m)?,
        },
        KEY_CREATE => Command::Create {
            correlation_id: r.u32().map_err(&m)?,
            stream: r.string().map_err(&m)?,
            arguments: r.string_map().map_err(&m)?,
        },
        KEY_DELETE => Command::Delete {
            correlation_id: r.u32().map_err(&m)?,
            stream: r.string().map_err(&m)?,
        },
        KEY_METADATA => Command::Metadata {
            correlation_id: r.u32().map_err(&m)?,
            streams: r.string_list().map_err(&m)?,
        },
        KEY_PEER_PROPERTIES => Command::PeerProperties {
            correlation_id: r.u32().map_err(&m)?,
            properties: r.string_map().map_err(&m)?,
        },
        KEY_SASL_HANDSHAKE => Command::SaslHandshake {
            correlation_id: r.u32().map_err(&m)?,
        },
        KEY_SASL_AUTHENTICATE => Command::SaslAuthenticate {
            correlation_id: r.u32().map_err(&m)?,
            mechanism: r.string().map_err(&m)?,
            data: r.nullable_bytes().map_err(&m)?,
        },
        KEY_OPEN => Command::Open {
            correlation_id: r.u32().map_err(&m)?,
            virtual_host: r.string().map_err(&m)?,
        },
        KEY_CLOSE => Command::Close {
            correlation_id: r.u32().map_err(&m)?,
            code: r.u16().map_err(&m)?,
            reason: r.string().map_err(&m)?,
        },
        KEY_HEARTBEAT => Command::Heartbeat,
        KEY_ROUTE => Command::Route {
            correlation_id: r.u32().map_err(&m)?,
            routing_key: r.string().map_err(&m)?,
            super_stream: r.string().map_err(&m)?,
        },
        KEY_PARTITIONS => Command::Partitions {
            correlation_id: r.u32().map_err(&m)?,
            super_stream: r.string().map_err(&m)?,
        },
        k if k == KEY_TUNE | RESPONSE_BIT => Command::TuneResponse {
            frame_max: r.u32().map_err(&m)?,
            heartbeat: r.u32().map_err(&m)?,
        },
        k if k == KEY_CLOSE | RESPONSE_BIT => Command::Response {
            key: SimpleResponseKey::Close,
            correlation_id: r.u32().map_err(&m)?,
            code: r.u16().map_err(&m)?,
        },
        _ => {
            return Err(DecodeError::UnknownKey {
                key,
                version: VERSION_1,
            })
        }
    })
}

fn server(key: u16, r: &mut Reader) -> Result<Command, DecodeError> {
    let m = malformed(key);
    let base = key & !RESPONSE_BIT;
    if key & RESPONSE_BIT == 0 {
        return Ok(match key {
            KEY_PUBLISH_CONFIRM => {
                let publisher_id = r.u8().map_err(&m)?;
                let n = r.count(8).map_err(&m)?;
                let mut publishing_ids = Vec::with_capacity(n);
                for _ in 0..n {
                    publishing_ids.push(r.u64().map_err(&m)?);
                }
                Command::PublishConfirm {
                    publisher_id,
                    publishing_ids,
                }
            }
            KEY_PUBLISH_ERROR => {
                let publisher_id = r.u8().map_err(&m)?;
                let n = r.count(10).map_err(&m)?;
                let mut errors = Vec::with_capacity(n);
                for _ in 0..n {
                    errors.push((r.u64().map_err(&m)?, r.u16().map_err(&m)?));
                }
                Command::PublishError {
                    publisher_id,
                    errors,
                }
            }
            KEY_DELIVER => Command::Deliver {
                subscription_id: r.u8().map_err(&m)?,
                chunk: r.rest(),
            },
            KEY_METADATA_UPDATE => Command::MetadataUpdate {
                code: r.u16().map_err(&m)?,
                stream: r.string().map_err(&m)?,
            },
            KEY_TUNE => Command::Tune {
                frame_max: r.u32().map_err(&m)?,
                heartbeat: r.u32().map_err(&m)?,
            },
            KEY_CLOSE => Command::Close {
                correlation_id: r.u32().map_err(&m)?,
                code: r.u16().map_err(&m)?,
                reason: r.string().map_err(&m)?,
            },
            KEY_HEARTBEAT => Command::Heartbeat,
            // 3.10.8 answers Route and Partitions with the request key.
            KEY_ROUTE => route_response(r, &m)?,
            KEY_PARTITIONS => partitions_response(r, &m)?,
            _ => {
                return Err(DecodeError::UnknownKey {
                    key,
                    version: VERSION_1,
                })
            }
        });
    }
    if base == KEY_CREDIT {
        // No correlation id in this one.
        return Ok(Command::CreditResponse {
            code: r.u16().map_err(&m)?,
            subscription_id: r.u8().map_err(&m)?,
        });
    }
    if let Some(simple) = SimpleResponseKey::from_key(base) {
        return Ok(Command::Response {
            key: simple,
            correlation_id: r.u32().map_err(&m)?,
            code: r.u16().map_err(&m)?,
        });
    }
    if base == KEY_METADATA {
        let correlation_id = r.u32().map_err(&m)?;
        let n = r.count(10).map_err(&m)?;
        let mut brokers = Vec::with_capacity(n);
        for _ in 0..n {
            brokers.push(Broker {
                reference: r.u16().map_err(&m)?,
                host: r.string().map_err(&m)?,
                port: r.u32().map_err(&m)?,
            });
        }
        let n = r.count(10).map_err(&m)?;
        let mut streams = Vec::with_capacity(n);
        for _ in 0..n {
            let stream = r.string().map_err(&m)?;
            let code = r.u16().map_err(&m)?;
            let leader = r.u16().map_err(&m)?;
            let rn = r.count(2).map_err(&m)?;
            let mut replicas = Vec::with_capacity(rn);
            for _ in 0..rn {
                replicas.push(r.u16().map_err(&m)?);
            }
            streams.push(StreamMetadata {
                stream,
                code,
                leader,
                replicas,
            });
        }
        return Ok(Command::MetadataResponse {
            correlation_id,
            brokers,
            streams,
        });
    }
    let correlation_id = r.u32().map_err(&m)?;
    let code = r.u16().map_err(&m)?;
    Ok(match base {
        KEY_QUERY_PUBLISHER_SEQUENCE => Command::QueryPublisherSequenceResponse {
            correlation_id,
            code,
            sequence: r.u64().map_err(&m)?,
        },
        KEY_QUERY_OFFSET => Command::QueryOffsetResponse {
            correlation_id,
            code,
            offset: r.u64().map_err(&m)?,
        },
        KEY_PEER_PROPERTIES => Command::PeerPropertiesResponse {
            correlation_id,
            code,
            properties: r.string_map().map_err(&m)?,
        },
        KEY_SASL_HANDSHAKE => Command::SaslHandshakeResponse {
            correlation_id,
            code,
            mechanisms: r.string_list().map_err(&m)?,
        },
        KEY_SASL_AUTHENTICATE => {
            let challenge = if r.is_empty() {
                None
            } else {
                let n = r.u16().map_err(&m)?;
                Some(r.take(n as usize).map_err(&m)?)
            };
            Command::SaslAuthenticateResponse {
                correlation_id,
                code,
                challenge,
            }
        }
        KEY_OPEN => {
            let properties = if r.is_empty() {
                None
            } else {
                Some(r.string_map().map_err(&m)?)
            };
            Command::OpenResponse {
                correlation_id,
                code,
                properties,
            }
        }
        KEY_ROUTE | KEY_PARTITIONS => {
            let streams = r.string_list().map_err(&m)?;
            if base == KEY_ROUTE {
                Command::RouteResponse {
                    correlation_id,
                    code,
                    streams,
                }
            } else {
                Command::PartitionsResponse {
                    correlation_id,
                    code,
                    streams,
                }
            }
        }
        _ => {
            return Err(DecodeError::UnknownKey {
                key,
                version: VERSION_1,
            })
        }
    })
}

fn route_response(
    r: &mut Reader,
    m: &impl Fn(WireError) -> DecodeError,
) -> Result<Command, DecodeError> {
    Ok(Command::RouteResponse {
        correlation_id: r.u32().map_err(m)?,
        code: r.u16().map_err(m)?,
        streams: r.string_list().map_err(m)?,
    })
}

fn partitions_response(
    r: &mut Reader,
    m: &impl Fn(WireError) -> DecodeError,
) -> Result<Command, DecodeError> {
    Ok(Command::PartitionsResponse {
        correlation_id: r.u32().map_err(m)?,
        code: r.u16().map_err(m)?,
        streams: r.string_list().map_err(m)?,
    })
}
