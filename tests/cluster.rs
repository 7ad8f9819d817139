//! The cluster integration tests (several `warren` processes, fault-injecting proxies,
//! the shortened Jepsen workload) and the Raft log storage, one binary, kept apart from
//! `tests/broker.rs` so elections are timed on a machine no single-node test is loading.
//! Run one file's tests with `cargo test --release --test cluster FILE::`.

mod cluster_support;

mod cluster_access;
mod cluster_consumers;
mod cluster_dead_letter;
mod cluster_definitions;
mod cluster_detector;
mod cluster_holders;
mod cluster_jepsen;
mod cluster_metadata_storm;
mod cluster_nodes;
mod cluster_quorum;
mod cluster_rebalance;
mod cluster_retry;
mod cluster_ttl;
mod raft_snapshot_bodies;
mod raft_storage;
