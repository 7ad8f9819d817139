//! Model-based: the input decodes (with `arbitrary`) into a delivery limit and operations on
//! a replicated queue's Raft state machine — enqueue, settle, return, catch-up from a
//! snapshot, replay of the history — each checked against a model of what the queue holds
//! (`warren::cluster::fuzz_machine`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warren::cluster::fuzz_machine::fuzz_queue_machine(data);
});
