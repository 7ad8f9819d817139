//! Bytes a peer could send on the cluster port: request and response frames and their
//! bodies as every openraft message and cluster request of both group kinds, and raw
//! streams through the transport's frame reader (`warren::cluster::fuzz_rpc`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warren::cluster::fuzz_rpc::fuzz_raft_rpc(data);
});
