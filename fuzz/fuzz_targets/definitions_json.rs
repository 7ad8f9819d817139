//! RabbitMQ definitions JSON imported into a real broker (on a temporary data dir): the
//! import must never panic, and an import that fails must change nothing (the broker's
//! export before and after is the same).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warren::broker::definitions_import::fuzz_import(data);
});
