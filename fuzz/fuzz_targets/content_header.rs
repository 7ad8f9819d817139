//! Content header + basic properties: decoding, and for headers that decode, the rewrites
//! the broker makes of them (dead letters drop `expiration` and replace `headers`, direct
//! reply-to replaces `reply-to`): a rewritten header decodes again, with the change made
//! and every other property as it was.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warren::protocol::properties::{self, Rewrite};

fuzz_target!(|data: &[u8]| {
    let Ok(before) = properties::decode(data) else {
        return;
    };
    let headers = [0u8, 0, 0, 7, 1, b'k', b'S', 0, 0, 0, 0];
    let change = Rewrite {
        headers: Some(&headers),
        drop_expiration: true,
        reply_to: Some("amq.rabbitmq.reply-to.fuzz"),
    };
    let out = properties::rewrite(data, &change).expect("a decoded header can be rewritten");
    let after = properties::decode(&out).expect("a rewritten header decodes");
    assert_eq!(after.headers, Some(&headers[..]));
    assert_eq!(after.expiration, None);
    assert_eq!(after.reply_to, Some("amq.rabbitmq.reply-to.fuzz"));
    assert_eq!(
        (after.body_size, after.delivery_mode, after.priority, after.user_id),
        (before.body_size, before.delivery_mode, before.priority, before.user_id)
    );
    if let Some(e) = before.expiration {
        let _ = properties::parse_expiration(e);
    }
});
