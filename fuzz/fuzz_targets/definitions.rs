//! The definitions file parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warren::broker::definitions;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = definitions::parse(text);
    }
});
