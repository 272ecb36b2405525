//! Whole-file decryption of arbitrary bytes, and body decryption with an arbitrary edit list
//! (sync, seek and parallel paths): no panic, and the paths agree.
#![no_main]

use std::io::{Cursor, Read, Seek, SeekFrom};

use c4gh::body::Decryptor;
use c4gh::{DataKey, SecretKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SecretKey::from_bytes([7; 32]);
    let mut out = Vec::new();
    let _ = c4gh::decrypt(&mut &data[..], &mut out, &[&key]);

    // Body path: the first bytes choose an edit list, the rest is the body.
    if data.len() < 9 {
        return;
    }
    let (ctl, body) = data.split_at(9);
    let edit: Vec<u64> = ctl[1..]
        .chunks(2)
        .take(usize::from(ctl[0] % 5))
        .map(|c| u64::from(u16::from_le_bytes([c[0], c[1]])) * 7)
        .collect();
    let dk = || [DataKey::from_bytes([9; 32])];
    let edit = if ctl[0] & 0x80 != 0 {
        None
    } else {
        Some(edit.as_slice())
    };
    let mut seq = Vec::new();
    let seq_result = Decryptor::new(body, &dk(), edit).and_then(|mut d| d.copy_to(&mut seq));
    let mut par = Vec::new();
    let par_result = c4gh::parallel::decrypt_parallel(&mut &body[..], &mut par, &dk(), edit, 2);
    assert_eq!(seq_result.is_ok(), par_result.is_ok());
    if seq_result.is_ok() {
        assert_eq!(seq, par);
    }
    if let Ok(mut d) = Decryptor::new(Cursor::new(body), &dk(), edit) {
        let target = u64::from(ctl[1]) * 300;
        if d.seek(SeekFrom::Start(target)).is_ok() {
            let mut buf = [0u8; 64];
            let _ = d.read(&mut buf);
        }
    }
});
