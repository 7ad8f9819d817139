//! The driver of the fuzz target `raft_rpc` (issue 17): bytes as a peer could send them on
//! the cluster port. The first byte picks what the rest is:
//!
//! - 0: one request frame (without its length prefix): decoded by `wire`, then its body as
//!   every type a request of its kind carries, for both group kinds (the metadata group,
//!   a queue group);
//! - 1: one response frame, its body as every answer type;
//! - 2: a byte stream as the transport reads it (length-prefixed frames, as many as there
//!   are), each frame a request.
//!
//! Nothing may panic or allocate by a length it has not checked; whatever decodes must
//! encode again and decode to the same encoding (serde's round trip through `codec.rs`).

use openraft::error::{ClientWriteError, InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, ClientWriteResponse, InstallSnapshotRequest,
    InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::codec;
use super::meta_machine::{MetaCommand, MetaRaft};
use super::node::{JoinRequest, LeaveRequest, NodeStatus};
use super::types::{QueueCommand, QueueRaft};
use super::wire::{self, RpcKind};

type Answer<T, E = openraft::error::Infallible> = Result<T, RaftError<u64, E>>;

/// Decodes `body` as `T` (`codec.rs`: MessagePack after its marker, or JSON); if it
/// decodes, its encoding must survive a second round trip.
fn round_trip<T: Serialize + DeserializeOwned>(body: &[u8]) {
    let Ok(value) = codec::decode::<T>(body) else {
        return;
    };
    let once = codec::encode(&value).expect("a decoded value encodes");
    let again: T = codec::decode(&once).expect("an encoding decodes");
    let twice = codec::encode(&again).expect("a decoded value encodes");
    assert_eq!(once, twice, "the round trip is not stable");
}

fn request_body(kind: RpcKind, body: &[u8]) {
    match kind {
        RpcKind::Append => {
            round_trip::<AppendEntriesRequest<MetaRaft>>(body);
            round_trip::<AppendEntriesRequest<QueueRaft>>(body);
        }
        RpcKind::Vote => round_trip::<VoteRequest<u64>>(body),
        RpcKind::Snapshot => {
            round_trip::<InstallSnapshotRequest<MetaRaft>>(body);
            round_trip::<InstallSnapshotRequest<QueueRaft>>(body);
        }
        RpcKind::ClientWrite => {
            round_trip::<MetaCommand>(body);
            round_trip::<QueueCommand>(body);
        }
        RpcKind::NodeStatus => {}
        RpcKind::Join => round_trip::<JoinRequest>(body),
        RpcKind::Leave => round_trip::<LeaveRequest>(body),
        RpcKind::Checkout => round_trip::<super::checkout::CheckoutRequest>(body),
        RpcKind::Beacon => round_trip::<super::detector::Beacon>(body),
        RpcKind::Transfer => round_trip::<super::transfer::TransferRequest>(body),
        RpcKind::Stand | RpcKind::Rebalance => {}
    }
}

fn response_body(body: &[u8]) {
    round_trip::<Answer<AppendEntriesResponse<u64>>>(body);
    round_trip::<Answer<VoteResponse<u64>>>(body);
    round_trip::<Answer<InstallSnapshotResponse<u64>, InstallSnapshotError>>(body);
    round_trip::<Answer<ClientWriteResponse<MetaRaft>, ClientWriteError<u64, BasicNode>>>(body);
    round_trip::<Answer<ClientWriteResponse<QueueRaft>, ClientWriteError<u64, BasicNode>>>(body);
    round_trip::<NodeStatus>(body);
    round_trip::<super::checkout::CheckoutReply>(body);
}

fn request(frame: &[u8]) {
    if let Ok(r) = wire::decode_request(frame) {
        // What decodes encodes back to the same bytes.
        let again = wire::encode_request(r.id, r.kind, r.group, r.body);
        assert_eq!(&again[4..], frame);
        request_body(r.kind, r.body);
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
}

pub fn fuzz_raft_rpc(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => request(rest),
        1 => {
            if let Ok(r) = wire::decode_response(rest) {
                let again = wire::encode_response(r.id, r.result);
                assert_eq!(&again[4..], rest);
                if let Ok(body) = r.result {
                    response_body(body);
                }
            }
        }
        _ => RUNTIME.with(|rt| {
            rt.block_on(async {
                let mut stream = rest;
                while let Ok(frame) = super::transport::read_frame(&mut stream).await {
                    request(&frame);
                }
            })
        }),
    }
}
