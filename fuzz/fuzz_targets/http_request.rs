//! One management-API request from arbitrary bytes (method, target with query string,
//! headers, body) through the whole router against a real broker on a temporary data dir
//! (`warren::http::fuzz::fuzz_request`): no handler may panic, on the async side or on
//! the blocking pool.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warren::http::fuzz::fuzz_request(data);
});
