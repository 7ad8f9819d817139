//! Stored password hashes from imported files: decoding must never panic and a hash that
//! decodes must verify only the password it was made from.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warren::broker::password::{HashAlgorithm, PasswordHash};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let alg = [HashAlgorithm::Sha256, HashAlgorithm::Sha512, HashAlgorithm::Md5][pick as usize % 3];
    let text = String::from_utf8_lossy(rest);
    if let Ok(h) = PasswordHash::from_base64(alg, &text) {
        let _ = h.verify(&text);
        assert!(PasswordHash::from_base64(alg, &h.to_base64()).is_ok_and(|back| back == h));
    }
    let made = PasswordHash::hash_new(&text, alg);
    assert!(text.is_empty() || made.verify(&text));
});
