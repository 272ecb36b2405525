//! Malformed inputs from `testdata/malformed/` and key-dependent malformed files generated at
//! test time: each is rejected with the specific error, never a panic.

// Test helpers outside `#[test]` functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use c4gh::header::{self, EncryptedHeader};
use c4gh::{DataKey, Error, SecretKey};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/malformed")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn decrypt(input: &[u8], key: &SecretKey) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    c4gh::decrypt(&mut &input[..], &mut out, &[key]).map(|_| out)
}

#[test]
fn fixtures_are_rejected_with_the_right_error() {
    let key = SecretKey::generate();
    type Check = fn(&Error) -> bool;
    let table: &[(&str, Check)] = &[
        ("empty.c4gh", |e| {
            matches!(e, Error::TruncatedHeader { got: 0, .. })
        }),
        ("not-crypt4gh.c4gh", |e| matches!(e, Error::NotCrypt4gh)),
        ("short-magic.c4gh", |e| {
            matches!(e, Error::TruncatedHeader { got: 5, .. })
        }),
        ("version-2.c4gh", |e| {
            matches!(e, Error::UnsupportedVersion { version: 2 })
        }),
        ("zero-packets.c4gh", |e| {
            matches!(e, Error::PacketCount { count: 0, .. })
        }),
        ("too-many-packets.c4gh", |e| {
            matches!(e, Error::PacketCount { count: 5000, .. })
        }),
        ("packet-length-3.c4gh", |e| {
            matches!(e, Error::PacketLength { index: 0, len: 3 })
        }),
        ("huge-packet-length.c4gh", |e| {
            matches!(e, Error::HeaderTooLarge { .. })
        }),
        ("truncated-packet.c4gh", |e| {
            matches!(
                e,
                Error::TruncatedHeader {
                    got: 70,
                    needed: 124
                }
            )
        }),
        ("unknown-method.c4gh", |e| matches!(e, Error::NoMatchingKey)),
        ("garbage-packet.c4gh", |e| matches!(e, Error::NoMatchingKey)),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/malformed");
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        files,
        table.len(),
        "every fixture in {} has an expectation",
        dir.display()
    );
    for (name, check) in table {
        let err = decrypt(&fixture(name), &key).expect_err(name);
        assert!(check(&err), "{name}: unexpected error {err:?}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn two_edit_lists_for_one_reader_are_rejected() {
    let writer = SecretKey::generate();
    let reader = SecretKey::generate();
    let dk = DataKey::generate();
    let a = header::build(&writer, &[reader.public_key()], &[&dk], Some(&[1, 2])).unwrap();
    let b = header::build(&writer, &[reader.public_key()], &[&dk], Some(&[3, 4])).unwrap();
    // Append b's edit-list packet (its second packet) to a, fixing the packet count.
    let b_edit = &b[16 + 108..];
    let mut spliced = a.clone();
    spliced[12..16].copy_from_slice(&3u32.to_le_bytes());
    spliced.extend_from_slice(b_edit);
    let parsed = EncryptedHeader::parse(&spliced).unwrap();
    assert!(matches!(
        parsed.open(&[&reader], None),
        Err(Error::MultipleEditLists)
    ));
}

#[test]
fn a_header_with_only_an_edit_list_for_the_reader_is_not_opened() {
    let writer = SecretKey::generate();
    let reader = SecretKey::generate();
    let other = SecretKey::generate();
    let dk = DataKey::generate();
    // Data key for `other`, edit list for both: the reader holds no data key.
    let for_other = header::build(&writer, &[other.public_key()], &[&dk], Some(&[0, 5])).unwrap();
    let for_reader = header::build(&writer, &[reader.public_key()], &[&dk], Some(&[0, 5])).unwrap();
    let mut spliced = for_other[..16 + 108].to_vec();
    spliced[12..16].copy_from_slice(&2u32.to_le_bytes());
    spliced.extend_from_slice(&for_reader[16 + 108..]);
    let parsed = EncryptedHeader::parse(&spliced).unwrap();
    assert!(matches!(
        parsed.open(&[&reader], None),
        Err(Error::NoMatchingKey)
    ));
    assert!(matches!(
        header::reencrypt(&spliced, &reader, &[other.public_key()], true),
        Err(Error::NoMatchingKey)
    ));
}

#[test]
fn every_single_byte_change_of_a_small_file_is_detected() {
    let writer = SecretKey::generate();
    let reader = SecretKey::generate();
    let plain: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let mut file = Vec::new();
    c4gh::encrypt(&mut &plain[..], &mut file, &writer, &[reader.public_key()]).unwrap();
    assert_eq!(decrypt(&file, &reader).unwrap(), plain);
    for pos in 0..file.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = file.clone();
            bad[pos] ^= flip;
            assert!(
                decrypt(&bad, &reader).is_err(),
                "change at byte {pos} (^{flip:#x}) went undetected"
            );
        }
    }
}

#[test]
fn secrets_are_redacted_and_zeroized_on_drop() {
    fn zeroizes_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    zeroizes_on_drop::<SecretKey>();
    zeroizes_on_drop::<DataKey>();

    let sk = SecretKey::from_bytes([0xAB; 32]);
    let dk = DataKey::from_bytes([0xCD; 32]);
    let header = header::build(&sk, &[sk.public_key()], &[&dk], None).unwrap();
    let opened = EncryptedHeader::parse(&header)
        .unwrap()
        .open(&[&sk], None)
        .unwrap();
    for text in [
        format!("{sk:?}"),
        format!("{dk:?}"),
        format!("{opened:?}"),
        format!("{:#?}", opened),
    ] {
        assert!(text.contains("[secret key elided]"), "{text}");
        for needle in ["171", "205", "ab, ab", "AB, AB", "0xab", "q6ur", "zc3N"] {
            assert!(!text.contains(needle), "{text} contains {needle}");
        }
    }
}
