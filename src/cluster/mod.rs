//! The cluster (issue 16), built on `openraft`: one Raft group per quorum queue, each with
//! its Raft log in a Warren segment log (`log_store.rs`) and a replicated queue as its
//! state machine (`queue_machine.rs`). So far the groups' storage and state machine exist
//! and pass openraft's own storage test suite (`tests/raft_storage.rs`); networking, the
//! metadata group and the broker's use of them come next.

#[doc(hidden)]
pub mod fuzz_machine;
pub mod log_store;
pub mod queue_machine;
pub mod types;
