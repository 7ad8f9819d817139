//! Structure-aware: the input decodes (with `arbitrary`) into client operations with
//! small arguments — declares, binds, publishes, gets, consumes, acks, nacks, rejects,
//! prefetch, confirms, channels closed and reopened — sent one step at a time to a real
//! connection on a real broker, whose every answer is checked against a model of the
//! queues and each channel's unacked tags (`warren::connection::fuzz_model`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warren::connection::fuzz_model::fuzz_model(data);
});
