//! Policy definitions (as the definitions file and the HTTP API give them): validation
//! must never panic, user patterns must compile in bounded size and match in linear time,
//! and resolution against arbitrary queue names and arguments must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warren::broker::policy::fuzz_policy(data);
});
