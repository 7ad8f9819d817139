//! Frame splitting over arbitrary byte streams cut at arbitrary read boundaries; plus the
//! round trip write -> parse for the frames that parse.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren::protocol::frame;

fuzz_target!(|data: &[u8]| {
    let Some((&cut_seed, stream)) = data.split_first() else {
        return;
    };
    let frame_max = [0u32, 4096, 131072][(cut_seed % 3) as usize];
    let chunk = 1 + (cut_seed as usize >> 2);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    'feed: for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match frame::parse(&mut buf, frame_max) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    for f in frames {
        let mut out = BytesMut::new();
        frame::write(&mut out, f.kind, f.channel, &f.payload);
        let again = frame::parse(&mut out, 0).unwrap().unwrap();
        assert_eq!(again, f);
        assert!(out.is_empty());
    }
});
