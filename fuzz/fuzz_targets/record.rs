//! Segment record decoding and segment scanning over arbitrary bytes; the record round
//! trip encode -> decode.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warren_storage::{record, segment};

fuzz_target!(|data: &[u8]| {
    let _ = record::decode(data);
    let path = std::path::Path::new("fuzz.seg");
    let mut seen = 0u64;
    for resync in [false, true] {
        let scan = segment::scan_records(data, path, 0, resync, |r| {
            assert!(r.offset + r.header.total_len() <= data.len());
            seen += 1;
        });
        assert!(scan.valid_end <= data.len().max(segment::FILE_HEADER_LEN));
    }
    // Round trip: the input as a payload.
    let mut buf = vec![0u8; record::encoded_len(data.len())];
    record::encode(&mut buf, seen, 42, record::FLAG_PERSISTENT, data);
    let (h, range) = record::decode(&buf).expect("round trip");
    assert_eq!(h.seq, seen);
    assert_eq!(&buf[range], data);
});
