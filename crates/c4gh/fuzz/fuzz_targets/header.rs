//! Header parsing, length discovery, opening and re-encryption on arbitrary bytes: no panic,
//! and agreement between `header_len`, `read_header` and `parse_prefix`.
#![no_main]

use c4gh::SecretKey;
use c4gh::header::{self, EncryptedHeader, HeaderLen};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SecretKey::from_bytes([7; 32]);
    let len = header::header_len(data);
    let read = header::read_header(&mut &data[..]);
    let parsed = EncryptedHeader::parse_prefix(data);
    match (&len, &read, &parsed) {
        (Ok(HeaderLen::Complete(n)), Ok(bytes), Ok((h, used))) => {
            assert_eq!(*n, bytes.len());
            assert_eq!(*n, *used);
            assert_eq!(h.to_bytes(), bytes.as_slice());
            let _ = h.open(&[&key], None);
            let _ = header::reencrypt(bytes, &key, &[key.public_key()], false);
        }
        (Ok(HeaderLen::Complete(n)), _, _) => {
            assert!(
                *n > data.len(),
                "complete header of {n} bytes failed to parse"
            );
            assert!(read.is_err() && parsed.is_err());
        }
        _ => assert!(read.is_err() && parsed.is_err()),
    }
});
