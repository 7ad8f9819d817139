//! The cluster (issue 16), built on `openraft`. Every group's Raft log is a Warren segment
//! log (`log_store.rs`), its state machine a `Replicated` state (`machine.rs`): the
//! metadata group every node belongs to (`meta_machine.rs`) and, per quorum queue, a
//! replicated queue (`queue_machine.rs`). Nodes talk over the cluster port (`wire.rs`
//! frames, `transport.rs` connections, `network.rs` for openraft); `node.rs` hosts the
//! groups and answers `warren cluster status|join|leave|rebalance`. Entries and the
//! groups' messages are MessagePack (`codec.rs`); a queue group snapshots as its log grows
//! (`log_growth.rs`).
//!
//! The bridge to the broker is `src/replication.rs`; a member that does not lead a queue
//! asks the leader for messages for its consumers (`checkout.rs`). A node notices a
//! queue group's missing leader from per-node beacons, not per-group heartbeats
//! (`detector.rs`, which also acts on refused votes: `vote_refusals.rs`); `transfer.rs`
//! moves a group's leadership to another member and spreads leaders over the nodes
//! (`warren cluster rebalance`).

pub mod checkout;
mod claims;
pub mod codec;
pub mod detector;
#[doc(hidden)]
pub mod fuzz_machine;
#[doc(hidden)]
pub mod fuzz_rpc;
pub mod group;
pub mod log_growth;
mod log_import;
pub mod log_store;
pub mod machine;
pub mod meta_machine;
pub mod network;
pub mod node;
pub mod queue_groups;
pub mod queue_machine;
pub mod settings;
pub mod shared_log;
pub mod snapshot_bodies;
pub mod snapshot_file;
mod start_number;
pub mod transfer;
pub mod transport;
pub mod types;
pub mod vote_refusals;
pub mod wire;
