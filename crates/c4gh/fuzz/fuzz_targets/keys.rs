//! Key parsing (private key files, public keys in PEM and base64 forms): no panic.
#![no_main]

use c4gh::{PublicKey, SecretKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PublicKey::from_pem(text);
        let _ = SecretKey::from_pem(text, Some(b"x"));
    }
});
