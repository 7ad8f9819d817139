//! How Raft entries, the log's own records and the groups' messages between nodes are
//! encoded: MessagePack (`rmp-serde`) behind a marker byte.
//!
//! They were JSON, where a message body is a base64 string: in a three-node run of
//! `tools/cluster_compare.py` with 1 KiB messages, `perf` put base64 (both ways) and
//! JSON's string escaping at about 40 % of the leader's CPU. MessagePack keeps bytes as
//! bytes (`types::base64_bytes` writes base64 only for human-readable formats) and, being
//! self-describing, carries what the metadata group replicates as JSON values
//! (policies, permissions) unchanged. Structs are written as maps, so a field left out
//! (`skip_serializing_if`) or added later (`serde(default)`) reads as it does in JSON.
//!
//! Decoding still reads JSON: a log written before this change, and the JSON bodies of
//! the fuzz corpora. The marker, 0xC1, is a byte MessagePack never uses and no UTF-8
//! text (so no JSON document) begins with.

use std::io;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The first byte of a MessagePack encoding.
const MESSAGEPACK: u8 = 0xC1;

/// `value` as MessagePack, after the marker.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    out.push(MESSAGEPACK);
    let mut ser = rmp_serde::Serializer::new(&mut out).with_struct_map();
    value.serialize(&mut ser).map_err(invalid)?;
    Ok(out)
}

/// `bytes` as a `T`: MessagePack after the marker, JSON otherwise. Lengths inside are
/// checked against what is left of `bytes` before anything is allocated by them.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    match bytes.split_first() {
        Some((&MESSAGEPACK, rest)) => rmp_serde::from_slice(rest).map_err(invalid),
        _ => serde_json::from_slice(bytes).map_err(invalid),
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::types::{QueueCommand, QueueRaft};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    #[test]
    fn bodies_stay_bytes_and_json_still_reads() {
        let body = vec![0xABu8; 1024];
        let cmd = QueueCommand::EnqueueBatch {
            messages: vec![body.clone().into(), bytes::Bytes::from_static(b"two")],
            enqueued_at: 1_700_000_000_000,
        };
        let entry: Entry<QueueRaft> = Entry {
            log_id: LogId::new(CommittedLeaderId::new(7, 2), 41),
            payload: EntryPayload::Normal(cmd.clone()),
        };
        let packed = encode(&entry).unwrap();
        assert_eq!(packed[0], MESSAGEPACK);
        // 1 KiB and 3 bytes of messages, and under 120 bytes of framing and enqueue time
        // around them (JSON with base64: over 1,400).
        assert!(packed.len() < 1027 + 120, "{} bytes", packed.len());
        let back: Entry<QueueRaft> = decode(&packed).unwrap();
        assert_eq!(back.log_id, entry.log_id);
        assert!(matches!(back.payload, EntryPayload::Normal(ref c) if *c == cmd));
        // A JSON entry, as logs written before MessagePack hold them.
        let json = serde_json::to_vec(&entry).unwrap();
        assert!(json.len() > 1400);
        let old: Entry<QueueRaft> = decode(&json).unwrap();
        assert!(matches!(old.payload, EntryPayload::Normal(ref c) if *c == cmd));
        // A batch written before enqueue times were: read with none (0).
        let earlier = serde_json::json!({"EnqueueBatch": {"messages": ["dHdv"]}});
        let back: QueueCommand = decode(&serde_json::to_vec(&earlier).unwrap()).unwrap();
        let none = QueueCommand::EnqueueBatch {
            messages: vec![bytes::Bytes::from_static(b"two")],
            enqueued_at: 0,
        };
        assert_eq!(back, none);
    }

    #[test]
    fn json_values_and_skipped_fields_survive() {
        let value = serde_json::json!({"pattern": "^a", "definition": {"max-length": 5, "x": [1.5, null, "s"]}});
        let back: serde_json::Value = decode(&encode(&value).unwrap()).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn a_cut_or_lying_encoding_is_an_error_not_an_allocation() {
        let packed = encode(&QueueCommand::Enqueue {
            message: vec![1; 300].into(),
        })
        .unwrap();
        for cut in 0..packed.len() {
            assert!(
                decode::<QueueCommand>(&packed[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        // A bin 32 header claiming 4 GiB with three bytes behind it.
        let lying = [
            MESSAGEPACK,
            0x81,
            0xA7,
            b'E',
            b'n',
            b'q',
            b'u',
            b'e',
            b'u',
            b'e',
            0x81,
            0xA7,
            b'm',
            b'e',
            b's',
            b's',
            b'a',
            b'g',
            b'e',
            0xC6,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            1,
            2,
            3,
        ];
        assert!(decode::<QueueCommand>(&lying).is_err());
    }
}
