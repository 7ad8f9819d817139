//! The connection state machine fed arbitrary bytes after the protocol header: handshake,
//! channel open/close, publish with wrong body sizes, content out of order. The broker
//! behind it is real (a temporary data dir per run).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warren::connection::fuzz_session(data);
});
