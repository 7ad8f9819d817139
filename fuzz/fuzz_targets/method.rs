//! Method decoding for every class and method id.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warren::protocol::method;

fuzz_target!(|data: &[u8]| {
    let _ = method::decode(data);
});
