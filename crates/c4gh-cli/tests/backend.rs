//! The cipher library's own failures reach the user as a specific error: an OpenSSL
//! configuration that leaves libcrypto without ChaCha20-Poly1305 (only the `base` provider, as
//! a misconfigured FIPS-only setup would) makes `encrypt` and `decrypt` fail saying so, with
//! nothing on stdout.

// Test helpers outside `#[test]` functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn c4gh(args: &[&str], openssl_conf: Option<&str>, stdin: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_c4gh"));
    cmd.args(args)
        .env_remove("C4GH_SECRET_KEY")
        .env_remove("C4GH_PASSPHRASE")
        .env_remove("C4GH_THREADS")
        .env_remove("OPENSSL_CONF")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(conf) = openssl_conf {
        cmd.env("OPENSSL_CONF", conf);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

#[test]
fn a_libcrypto_without_chacha20_poly1305_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (sk, pk, conf) = (path("k.sec"), path("k.pub"), path("openssl.cnf"));
    let keygen = c4gh(
        &["keygen", "--sk", &sk, "--pk", &pk, "--nocrypt", "-f"],
        None,
        b"",
    );
    assert!(keygen.status.success());
    fs::write(
        &conf,
        "openssl_conf = init\n[init]\nproviders = providers\n\
         [providers]\nbase = base\n[base]\nactivate = 1\n",
    )
    .unwrap();
    let plain = vec![7u8; 300_000];
    let encrypted = c4gh(&["encrypt", "--recipient_pk", &pk], None, &plain);
    assert!(encrypted.status.success());

    for (args, stdin) in [
        (&["encrypt", "--recipient_pk", &pk][..], &plain[..]),
        (&["decrypt", "--sk", &sk][..], &encrypted.stdout[..]),
        (
            &["decrypt", "--sk", &sk, "--threads", "2"][..],
            &encrypted.stdout[..],
        ),
    ] {
        let out = c4gh(args, Some(&conf), stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{args:?} succeeded without the cipher"
        );
        assert!(out.stdout.is_empty(), "{args:?} wrote output");
        assert!(
            err.contains("ChaCha20-Poly1305 implementation (OpenSSL libcrypto) failed")
                && err.contains("OPENSSL_CONF"),
            "{args:?}: {err}"
        );
    }
}
