//! Encoding [`Command`]s. Where RabbitMQ writes something other than the protocol document
//! (no property array for an empty Open or Subscribe map, an int16-length SASL challenge,
//! the request key on Route and Partitions responses), this follows RabbitMQ.

use super::command::{Command, OffsetSpec};
use super::wire::{put_count, put_nullable_bytes, put_string, put_string_list, put_string_map};
use super::*;
use bytes::{BufMut, Bytes, BytesMut};

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
