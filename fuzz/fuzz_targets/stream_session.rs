//! The RabbitMQ Stream protocol session fed arbitrary bytes from the first frame on:
//! peer properties, SASL, tune and open out of order, then streams created and deleted,
//! publishers, publishes with malformed entries, subscriptions at every offset kind,
//! credit, stored offsets, close. The broker behind it is real (a temporary data dir per
//! run); the first byte picks the read boundaries.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warren::stream_protocol::session::fuzz_session(data);
});
