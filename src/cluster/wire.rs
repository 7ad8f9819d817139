//! The bytes nodes exchange on the cluster port. Pure encoding and decoding, no I/O: the
//! transport (`transport.rs`) reads and writes these frames, the fuzz target `raft_rpc`
//! feeds them arbitrary bytes.
//!
//! A connection starts with `HELLO` from the side that dialled and the same eight bytes
//! back. Then each frame is a 4-byte big-endian length followed by that many bytes:
//!
//! ```text
//! request:  u64 id | u8 kind | u16 n | group name (n bytes, UTF-8) | body
//! response: u64 id | u8 status (0 ok, 1 failed) | body
//! ```
//!
//! Bodies are serde encodings: the groups' Raft messages and writes as `codec.rs` writes
//! them (MessagePack), the rest (status, beacons, checkouts, transfers) JSON; a failed
//! response's body is the reason as text. Requests on one connection are answered in any
//! order; the id pairs them.

use std::fmt;

/// The first bytes each side writes: a name and a version of this format.
pub const HELLO: &[u8; 8] = b"WARRENR1";

/// Largest frame accepted. A Raft append carries whole messages (each up to
/// `--max-message-size`, 16 MiB by default) and openraft batches up to
/// `MAX_PAYLOAD_ENTRIES` of them; larger frames are refused before anything is allocated
/// for them, and the frame's buffer grows only as its bytes arrive.
pub const MAX_FRAME: u32 = 1 << 30;

/// Longest group name.
pub const MAX_GROUP_NAME: usize = u16::MAX as usize;

/// Entries per append openraft sends at most (its config's `max_payload_entries`).
pub const MAX_PAYLOAD_ENTRIES: u64 = 64;

/// What a request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcKind {
    /// openraft's AppendEntries, to one group.
    Append = 1,
    /// openraft's RequestVote.
    Vote = 2,
    /// A chunk of a snapshot (openraft's InstallSnapshot).
    Snapshot = 3,
    /// A command a node that is not the group's leader forwards to the leader.
    ClientWrite = 4,
    /// The node's state: its groups, leaders, terms and log positions (no group).
    NodeStatus = 5,
    /// Add the sender as a member of every group (`warren cluster join`).
    Join = 6,
    /// Remove a node from every group (`warren cluster leave`).
    Leave = 7,
    /// Messages of a quorum queue for another member's consumers (`checkout.rs`).
    Checkout = 8,
    /// The queue groups the sender leads (`detector.rs`).
    Beacon = 9,
    /// To a queue group's leader: give the leadership to another member (`transfer.rs`).
    Transfer = 10,
    /// To the target of a transfer: stand for election in the group now.
    Stand = 11,
    /// Spread the quorum queues' leaders over the nodes (`warren cluster rebalance`).
    Rebalance = 12,
}

impl RpcKind {
    fn from_u8(b: u8) -> Option<RpcKind> {
        Some(match b {
            1 => RpcKind::Append,
            2 => RpcKind::Vote,
            3 => RpcKind::Snapshot,
            4 => RpcKind::ClientWrite,
            5 => RpcKind::NodeStatus,
            6 => RpcKind::Join,
            7 => RpcKind::Leave,
            8 => RpcKind::Checkout,
            9 => RpcKind::Beacon,
            10 => RpcKind::Transfer,
            11 => RpcKind::Stand,
            12 => RpcKind::Rebalance,
            _ => return None,
        })
    }
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    Short,
    TooLarge(u32),
    UnknownKind(u8),
    GroupName,
    UnknownStatus(u8),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Short => write!(f, "frame shorter than its header"),
            WireError::TooLarge(n) => write!(f, "frame of {n} bytes (most {MAX_FRAME})"),
            WireError::UnknownKind(k) => write!(f, "unknown request kind {k}"),
            WireError::GroupName => write!(f, "group name is not UTF-8"),
            WireError::UnknownStatus(s) => write!(f, "unknown response status {s}"),
        }
    }
}

/// A decoded request (borrowing the frame).
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub id: u64,
    pub kind: RpcKind,
    pub group: &'a str,
    pub body: &'a [u8],
}

/// A decoded response.
#[derive(Debug, PartialEq, Eq)]
pub struct Response<'a> {
    pub id: u64,
    /// The body on success, the reason on failure.
    pub result: Result<&'a [u8], &'a [u8]>,
}

/// Checks a frame's length prefix.
pub fn check_len(len: u32) -> Result<usize, WireError> {
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    Ok(len as usize)
}

/// A request frame, length prefix included.
///
/// Group names are the cluster's own (`meta`, or a vhost and a queue name, each at most
/// 255 bytes in AMQP), far below the two-byte length's limit.
pub fn encode_request(id: u64, kind: RpcKind, group: &str, body: &[u8]) -> Vec<u8> {
    assert!(
        group.len() <= MAX_GROUP_NAME,
        "group name of {} bytes",
        group.len()
    );
    let len = 8 + 1 + 2 + group.len() + body.len();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.push(kind as u8);
    out.extend_from_slice(&(group.len() as u16).to_be_bytes());
    out.extend_from_slice(group.as_bytes());
    out.extend_from_slice(body);
    out
}

/// A response frame, length prefix included.
pub fn encode_response(id: u64, result: Result<&[u8], &[u8]>) -> Vec<u8> {
    let (status, body) = match result {
        Ok(b) => (0u8, b),
        Err(b) => (1u8, b),
    };
    let len = 8 + 1 + body.len();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.push(status);
    out.extend_from_slice(body);
    out
}

fn split_id(frame: &[u8]) -> Result<(u64, &[u8]), WireError> {
    let (id, rest) = frame.split_first_chunk::<8>().ok_or(WireError::Short)?;
    Ok((u64::from_be_bytes(*id), rest))
}

/// Decodes a request frame (without its length prefix).
pub fn decode_request(frame: &[u8]) -> Result<Request<'_>, WireError> {
    let (id, rest) = split_id(frame)?;
    let (&kind, rest) = rest.split_first().ok_or(WireError::Short)?;
    let kind = RpcKind::from_u8(kind).ok_or(WireError::UnknownKind(kind))?;
    let (n, rest) = rest.split_first_chunk::<2>().ok_or(WireError::Short)?;
    let n = u16::from_be_bytes(*n) as usize;
    if rest.len() < n {
        return Err(WireError::Short);
    }
    let (group, body) = rest.split_at(n);
    let group = std::str::from_utf8(group).map_err(|_| WireError::GroupName)?;
    Ok(Request {
        id,
        kind,
        group,
        body,
    })
}

/// Decodes a response frame (without its length prefix).
pub fn decode_response(frame: &[u8]) -> Result<Response<'_>, WireError> {
    let (id, rest) = split_id(frame)?;
    let (&status, body) = rest.split_first().ok_or(WireError::Short)?;
    let result = match status {
        0 => Ok(body),
        1 => Err(body),
        s => return Err(WireError::UnknownStatus(s)),
    };
    Ok(Response { id, result })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_round_trip() {
        let f = encode_request(7, RpcKind::Vote, "meta", b"{}");
        let len = u32::from_be_bytes(f[..4].try_into().unwrap());
        assert_eq!(check_len(len), Ok(f.len() - 4));
        let r = decode_request(&f[4..]).unwrap();
        assert_eq!(
            (r.id, r.kind, r.group, r.body),
            (7, RpcKind::Vote, "meta", &b"{}"[..])
        );
        let f = encode_response(9, Err(b"no such group"));
        let r = decode_response(&f[4..]).unwrap();
        assert_eq!((r.id, r.result), (9, Err(&b"no such group"[..])));
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(decode_request(&[0; 7]), Err(WireError::Short));
        assert_eq!(
            decode_request(&[0, 0, 0, 0, 0, 0, 0, 1, 99, 0, 0]),
            Err(WireError::UnknownKind(99))
        );
        assert_eq!(
            decode_request(&[0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 5, b'a']),
            Err(WireError::Short)
        );
        assert_eq!(
            decode_request(&[0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0xff]),
            Err(WireError::GroupName)
        );
        assert_eq!(
            decode_response(&[0, 0, 0, 0, 0, 0, 0, 1, 2]),
            Err(WireError::UnknownStatus(2))
        );
        assert_eq!(
            check_len(MAX_FRAME + 1),
            Err(WireError::TooLarge(MAX_FRAME + 1))
        );
    }
}
