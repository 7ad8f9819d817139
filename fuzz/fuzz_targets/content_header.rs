//! Content header + basic properties.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warren::protocol::properties;

fuzz_target!(|data: &[u8]| {
    let _ = properties::decode(data);
});
