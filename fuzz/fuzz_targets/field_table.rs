//! Field tables and values: validation (depth, tags, lengths) then decoding; anything
//! that validates must decode.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warren::protocol::table;

fuzz_target!(|data: &[u8]| {
    if table::validate(data, 0).is_ok() {
        let mut raw = (data.len() as u32).to_be_bytes().to_vec();
        raw.extend_from_slice(data);
        table::decode(&raw).expect("a validated table decodes");
    }
});
