//! Field tables and values: validation (depth, tags, lengths) then decoding; anything
//! that validates must decode, and the allocation-free top-level readers the broker uses on
//! message headers (CC/BCC arrays, the deduplication header) agree with the decoder on
//! which keys are there, and never read past the table.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warren::protocol::table;

fuzz_target!(|data: &[u8]| {
    if table::validate(data, 0).is_ok() {
        let mut raw = (data.len() as u32).to_be_bytes().to_vec();
        raw.extend_from_slice(data);
        let decoded = table::decode(&raw).expect("a validated table decodes");
        for key in ["CC", "BCC", "x-deduplication-header"] {
            let value = table::raw_value(&raw, key);
            assert_eq!(value.is_some(), decoded.inner().contains_key(key), "{key}");
            let total: usize = table::string_array(&raw, key).map(<[u8]>::len).sum();
            assert!(total <= raw.len());
        }
    }
});
