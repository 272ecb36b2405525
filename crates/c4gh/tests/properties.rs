//! Property tests: round trips through every stream form, edit lists and seeking against a
//! simple model, and tampering detection.

// Test helpers outside `#[test]` functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Seek, SeekFrom, Write};

use c4gh::SecretKey;
use c4gh::body::{self, CIPHER_SEGMENT_SIZE, DataKey, Decryptor, Encryptor};
use c4gh::header::{self, EncryptedHeader};
use proptest::prelude::*;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn encrypt_body(plain: &[u8], key: &DataKey) -> Vec<u8> {
    let mut enc = Encryptor::new(Vec::new(), key);
    // Uneven writes exercise buffering across segment boundaries.
    for chunk in plain.chunks(9_999) {
        enc.write_all(chunk).unwrap();
    }
    enc.finish().unwrap()
}

fn copy_key(k: &DataKey) -> DataKey {
    DataKey::from_bytes(*k.secret_bytes())
}

/// What an edit list keeps, computed naively.
fn model(plain: &[u8], edit: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    for (i, &n) in edit.iter().enumerate() {
        let n = n as usize;
        let end = pos.saturating_add(n).min(plain.len());
        if i % 2 == 1 {
            out.extend_from_slice(&plain[pos.min(plain.len())..end]);
        }
        pos = pos.saturating_add(n);
    }
    if edit.len() % 2 == 1 {
        out.extend_from_slice(&plain[pos.min(plain.len())..]);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn whole_file_round_trip(len in 0usize..300_000, seed: u8, recipients in 1usize..4, ours in 0usize..3) {
        let writer = SecretKey::generate();
        let keys: Vec<SecretKey> = (0..recipients).map(|_| SecretKey::generate()).collect();
        let pks: Vec<_> = keys.iter().map(SecretKey::public_key).collect();
        let plain = data(len, seed);
        let mut file = Vec::new();
        c4gh::encrypt(&mut &plain[..], &mut file, &writer, &pks).unwrap();
        let reader = &keys[ours % recipients];
        let mut out = Vec::new();
        c4gh::decrypt(&mut &file[..], &mut out, &[reader]).unwrap();
        prop_assert!(out == plain);
    }

    #[test]
    fn edit_lists_match_the_model(len in 0usize..250_000, edit in proptest::collection::vec(0u64..90_000, 0..7)) {
        let key = DataKey::generate();
        let plain = data(len, 7);
        let body = encrypt_body(&plain, &key);
        let want = model(&plain, &edit);
        let mut out = Vec::new();
        Decryptor::new(&body[..], &[copy_key(&key)], Some(&edit)).unwrap().copy_to(&mut out).unwrap();
        prop_assert!(out == want, "sync");
        let mut out = Vec::new();
        c4gh::parallel::decrypt_parallel(&mut &body[..], &mut out, &[copy_key(&key)], Some(&edit), 2).unwrap();
        prop_assert!(out == want, "parallel");
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let out = rt.block_on(async {
            use tokio::io::AsyncReadExt;
            let mut dec = c4gh::body_async::AsyncDecryptor::new(&body[..], &[copy_key(&key)], Some(&edit)).unwrap();
            let mut out = Vec::new();
            dec.read_to_end(&mut out).await.unwrap();
            out
        });
        prop_assert!(out == want, "async");
    }

    /// The thread count never changes the output: bodies of several 1 MiB batches, encrypted
    /// and decrypted on 1 to 5 threads (the CLI's default picks up to 4), with and without an
    /// edit list, give the model's bytes.
    #[test]
    fn output_is_the_same_whatever_the_thread_count(len in 0usize..3_500_000, enc_threads in 1usize..6,
                                                     dec_threads in 1usize..6, seed: u8,
                                                     edit in proptest::option::of(proptest::collection::vec(0u64..1_500_000, 0..5))) {
        let key = DataKey::generate();
        let plain = data(len, seed);
        let mut body = Vec::new();
        let n = c4gh::parallel::encrypt_parallel(&mut &plain[..], &mut body, &key, enc_threads).unwrap();
        prop_assert_eq!(n, len as u64);
        prop_assert_eq!(body.len() as u64, body::encrypted_len(len as u64));
        let want = match &edit { Some(e) => model(&plain, e), None => plain.clone() };
        let mut out = Vec::new();
        let written = c4gh::parallel::decrypt_parallel(&mut &body[..], &mut out, &[copy_key(&key)], edit.as_deref(), dec_threads).unwrap();
        prop_assert_eq!(written, want.len() as u64);
        prop_assert!(out == want, "{} threads to encrypt, {} to decrypt", enc_threads, dec_threads);
    }

    #[test]
    fn ranges_restrict_edit_lists(len in 0usize..200_000, edit in proptest::collection::vec(0u64..70_000, 0..5),
                                  start in 0u64..150_000, span in proptest::option::of(1u64..100_000)) {
        let key = DataKey::generate();
        let plain = data(len, 3);
        let body = encrypt_body(&plain, &key);
        let visible = model(&plain, &edit);
        let from = (start as usize).min(visible.len());
        let to = span.map_or(visible.len(), |s| (start + s).min(visible.len() as u64) as usize).max(from);
        let restricted = body::restrict_edit_list(Some(&edit), start, span);
        let mut out = Vec::new();
        Decryptor::new(&body[..], &[key], Some(&restricted)).unwrap().copy_to(&mut out).unwrap();
        prop_assert!(out == visible[from..to]);
    }

    #[test]
    fn seeking_reads_the_right_bytes(len in 1usize..300_000, edit in proptest::option::of(proptest::collection::vec(0u64..80_000, 1..5)),
                                     seeks in proptest::collection::vec((0u64..320_000, 0usize..70_000), 1..6)) {
        let key = DataKey::generate();
        let plain = data(len, 11);
        let visible = match &edit { Some(e) => model(&plain, e), None => plain.clone() };
        let mut input = b"some header".to_vec();
        input.extend_from_slice(&encrypt_body(&plain, &key));
        let mut cursor = std::io::Cursor::new(input);
        cursor.set_position(11);
        let mut dec = Decryptor::new(cursor, &[key], edit.as_deref()).unwrap();
        prop_assert_eq!(dec.seek(SeekFrom::End(0)).unwrap(), visible.len() as u64);
        for (pos, n) in seeks {
            prop_assert_eq!(dec.seek(SeekFrom::Start(pos)).unwrap(), pos);
            let mut buf = vec![0u8; n];
            let mut got = 0;
            while got < n {
                match dec.read(&mut buf[got..]).unwrap() { 0 => break, k => got += k }
            }
            let from = (pos as usize).min(visible.len());
            let to = (from + n).min(visible.len());
            prop_assert!(buf[..got] == visible[from..to], "seek {} read {}", pos, n);
        }
    }

    #[test]
    fn any_single_byte_change_is_detected(len in 1usize..200_000, pos_frac in 0.0f64..1.0, flip in 1u8..=255) {
        let writer = SecretKey::generate();
        let reader = SecretKey::generate();
        let plain = data(len, 5);
        let mut file = Vec::new();
        c4gh::encrypt(&mut &plain[..], &mut file, &writer, &[reader.public_key()]).unwrap();
        let pos = ((file.len() - 1) as f64 * pos_frac) as usize;
        file[pos] ^= flip;
        let mut out = Vec::new();
        prop_assert!(c4gh::decrypt(&mut &file[..], &mut out, &[&reader]).is_err(), "change at {} of {}", pos, file.len());
    }

    #[test]
    fn header_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), fix_magic: bool) {
        let mut bytes = bytes;
        if fix_magic && bytes.len() >= 16 {
            bytes[..12].copy_from_slice(b"crypt4gh\x01\x00\x00\x00");
        }
        let key = SecretKey::generate();
        let _ = header::header_len(&bytes);
        let _ = header::read_header(&mut &bytes[..]);
        if let Ok((h, _)) = EncryptedHeader::parse_prefix(&bytes) {
            let _ = h.open(&[&key], None);
        }
        let _ = header::reencrypt(&bytes, &key, &[key.public_key()], false);
    }

    #[test]
    fn reencrypted_headers_open_for_the_new_recipient(recipients in 1usize..5, trim: bool) {
        let owner = SecretKey::generate();
        let others: Vec<SecretKey> = (0..recipients).map(|_| SecretKey::generate()).collect();
        let mut pks: Vec<_> = others.iter().map(SecretKey::public_key).collect();
        pks.push(owner.public_key());
        let dk = DataKey::generate();
        let h = header::build(&owner, &pks, &[&dk], Some(&[1, 2])).unwrap();
        let task = SecretKey::generate();
        let re = header::reencrypt(&h, &owner, &[task.public_key()], trim).unwrap();
        let expected_len = if trim { 16 + 108 + 92 } else { 16 + 108 + 92 + recipients * (108 + 92) };
        prop_assert_eq!(re.len(), expected_len);
        prop_assert_eq!(header::header_len(&re).unwrap(), header::HeaderLen::Complete(re.len()));
        let opened = EncryptedHeader::parse(&re).unwrap().open(&[&task], None).unwrap();
        prop_assert_eq!(opened.data_keys[0].secret_bytes(), dk.secret_bytes());
        prop_assert_eq!(opened.edit_list, Some(vec![1, 2]));
    }
}

#[test]
fn several_data_keys_decrypt_a_body_whose_segments_use_either() {
    let k1 = DataKey::generate();
    let k2 = DataKey::generate();
    let a = encrypt_body(&data(2 * 65_536, 1), &k1);
    let b = encrypt_body(&data(65_536, 2), &k2);
    let mut mixed = a[..CIPHER_SEGMENT_SIZE].to_vec();
    mixed.extend_from_slice(&b);
    mixed.extend_from_slice(&a[CIPHER_SEGMENT_SIZE..]);
    let mut want = data(2 * 65_536, 1)[..65_536].to_vec();
    want.extend_from_slice(&data(65_536, 2));
    want.extend_from_slice(&data(2 * 65_536, 1)[65_536..]);
    let mut out = Vec::new();
    Decryptor::new(&mixed[..], &[copy_key(&k1), copy_key(&k2)], None)
        .unwrap()
        .copy_to(&mut out)
        .unwrap();
    assert!(out == want);
    let mut out = Vec::new();
    c4gh::parallel::decrypt_parallel(&mut &mixed[..], &mut out, &[k1, k2], None, 2).unwrap();
    assert!(out == want);
}

#[test]
fn a_header_for_two_data_keys_opens_both() {
    let sk = SecretKey::generate();
    let (k1, k2) = (DataKey::generate(), DataKey::generate());
    let h = header::build(&sk, &[sk.public_key()], &[&k1, &k2], None).unwrap();
    let opened = EncryptedHeader::parse(&h)
        .unwrap()
        .open(&[&sk], None)
        .unwrap();
    let got: Vec<_> = opened.data_keys.iter().map(|k| *k.secret_bytes()).collect();
    assert_eq!(got, vec![*k1.secret_bytes(), *k2.secret_bytes()]);
}

#[test]
fn reading_through_the_read_trait_matches_copy_to() {
    let key = DataKey::generate();
    let plain = data(150_000, 9);
    let body = encrypt_body(&plain, &key);
    let mut dec = Decryptor::new(&body[..], &[key], None).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 777];
    loop {
        match dec.read(&mut buf).unwrap() {
            0 => break,
            n => out.extend_from_slice(&buf[..n]),
        }
    }
    assert!(out == plain);
}
