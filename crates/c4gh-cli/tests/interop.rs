//! Interoperability of `c4gh` with the reference Python `crypt4gh` 1.8.6 in both directions,
//! and the command's user-visible errors. The reference tools come from `cargo xtask setup`;
//! a missing tool fails the test.

// Test helpers outside `#[test]` functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

const SEG: usize = 65_536;

fn ours() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_c4gh"))
}

fn py(tool: &str) -> PathBuf {
    testkit::python_tool(tool)
}

/// Runs a command with `stdin` bytes and extra environment; no inherited C4GH_* variables.
fn run(program: &Path, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("C4GH_SECRET_KEY")
        .env_remove("C4GH_PUBLIC_KEY")
        .env_remove("C4GH_PASSPHRASE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// Runs and requires success; returns stdout.
fn ok(program: &Path, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Vec<u8> {
    let out = run(program, args, env, stdin);
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs, requires failure, returns stderr.
fn fails(program: &Path, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> String {
    let out = run(program, args, env, stdin);
    assert!(
        !out.status.success(),
        "{} {args:?} unexpectedly succeeded",
        program.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

struct Keys {
    dir: TempDir,
}

impl Keys {
    fn new() -> Self {
        Keys {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// An unencrypted key pair written by the reference `crypt4gh-keygen --nocrypt`.
    fn python(&self, name: &str) -> (String, String) {
        let (sk, pk) = (self.path(name), format!("{}.pub", self.path(name)));
        ok(
            &py("crypt4gh-keygen"),
            &["--sk", &sk, "--pk", &pk, "--nocrypt", "-f"],
            &[],
            b"",
        );
        (sk, pk)
    }

    /// An unencrypted key pair written by `c4gh keygen --nocrypt`.
    fn ours(&self, name: &str) -> (String, String) {
        let (sk, pk) = (self.path(name), format!("{}.pub", self.path(name)));
        ok(
            &ours(),
            &["keygen", "--sk", &sk, "--pk", &pk, "--nocrypt", "-f"],
            &[],
            b"",
        );
        (sk, pk)
    }
}

const SIZES: [usize; 6] = [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG + 1234];

#[test]
fn python_encrypts_for_several_recipients_and_c4gh_decrypts() {
    let k = Keys::new();
    let (alice_sk, _) = k.python("alice");
    let (_, other_pk) = k.python("other");
    let (our_sk, our_pk) = k.ours("reader");
    for len in SIZES {
        let plain = data(len);
        let file = ok(
            &py("crypt4gh"),
            &[
                "encrypt",
                "--sk",
                &alice_sk,
                "--recipient_pk",
                &other_pk,
                "--recipient_pk",
                &our_pk,
            ],
            &[],
            &plain,
        );
        let out = ok(&ours(), &["decrypt", "--sk", &our_sk], &[], &file);
        assert!(out == plain, "size {len}: plaintext differs");
        let out = ok(
            &ours(),
            &["decrypt", "--sk", &our_sk, "--threads", "2"],
            &[],
            &file,
        );
        assert!(out == plain, "size {len}: plaintext differs with 2 threads");
    }
}

#[test]
fn c4gh_encrypts_for_several_recipients_and_python_decrypts() {
    let k = Keys::new();
    let (our_sk, _) = k.ours("writer");
    let (_, other_pk) = k.ours("other");
    let (py_sk, py_pk) = k.python("reader");
    for len in SIZES {
        let plain = data(len);
        let file = ok(
            &ours(),
            &[
                "encrypt",
                "--sk",
                &our_sk,
                "--recipient_pk",
                &other_pk,
                "--recipient_pk",
                &py_pk,
            ],
            &[],
            &plain,
        );
        assert_eq!(
            file.len(),
            16 + 2 * 108 + len + 28 * len.div_ceil(SEG),
            "size {len}"
        );
        let out = ok(&py("crypt4gh"), &["decrypt", "--sk", &py_sk], &[], &file);
        assert!(out == plain, "size {len}: plaintext differs");
        let file = ok(
            &ours(),
            &["encrypt", "--recipient_pk", &py_pk, "--threads", "2"],
            &[],
            &plain,
        );
        let out = ok(&py("crypt4gh"), &["decrypt", "--sk", &py_sk], &[], &file);
        assert!(out == plain, "size {len}: plaintext differs (2 threads)");
    }
}

#[test]
fn encrypt_without_sk_uses_a_throwaway_writer_key() {
    let k = Keys::new();
    let (py_sk, py_pk) = k.python("reader");
    let plain = data(1000);
    let file = ok(&ours(), &["encrypt", "--recipient_pk", &py_pk], &[], &plain);
    assert_eq!(
        ok(&py("crypt4gh"), &["decrypt", "--sk", &py_sk], &[], &file),
        plain
    );
}

/// Writes a passphrase-protected key with the reference library itself, for each KDF.
fn python_protected_key(k: &Keys, name: &str, kdf: &str, passphrase: &str) -> (String, String) {
    let (sk, pk) = (k.path(name), format!("{}.pub", k.path(name)));
    let script = r#"
import sys, os
from base64 import b64encode
from crypt4gh.keys import c4gh
from crypt4gh.keys.kdf import derive_key, get_kdf
from crypt4gh import sodium
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
sk_path, pk_path, kdf, passphrase = sys.argv[1], sys.argv[2], sys.argv[3].encode(), sys.argv[4].encode()
if kdf == b'scrypt':
    c4gh.generate(sk_path, pk_path, passphrase, b'made by python')
    sys.exit(0)
key = os.urandom(32)
saltsize, rounds = get_kdf(kdf)
salt = os.urandom(saltsize)
derived = derive_key(kdf, passphrase, salt, rounds)
nonce = os.urandom(12)
blob = (c4gh.MAGIC_WORD + c4gh.encode_string(kdf) + c4gh.encode_string(rounds.to_bytes(4, 'big') + salt)
        + c4gh.encode_string(b'chacha20_poly1305') + c4gh.encode_string(nonce + ChaCha20Poly1305(derived).encrypt(nonce, key, None)))
with open(sk_path, 'wb') as f:
    f.write(b'-----BEGIN CRYPT4GH ENCRYPTED PRIVATE KEY-----\n' + b64encode(blob) + b'\n-----END CRYPT4GH ENCRYPTED PRIVATE KEY-----\n')
with open(pk_path, 'wb') as f:
    f.write(b'-----BEGIN CRYPT4GH PUBLIC KEY-----\n' + b64encode(sodium.derive_pk(key)) + b'\n-----END CRYPT4GH PUBLIC KEY-----\n')
"#;
    ok(
        &py("python"),
        &["-c", script, &sk, &pk, kdf, passphrase],
        &[],
        b"",
    );
    (sk, pk)
}

#[test]
fn every_kdf_interoperates_both_ways() {
    let k = Keys::new();
    let plain = data(100_000);
    for kdf in ["scrypt", "bcrypt", "pbkdf2_hmac_sha256"] {
        // Keys written by the reference, read by c4gh.
        let (sk, pk) = python_protected_key(&k, &format!("py-{kdf}"), kdf, "correct horse");
        let file = ok(
            &py("crypt4gh"),
            &["encrypt", "--recipient_pk", &pk],
            &[],
            &plain,
        );
        let pass = [("C4GH_PASSPHRASE", "correct horse")];
        assert_eq!(
            ok(&ours(), &["decrypt", "--sk", &sk], &pass, &file),
            plain,
            "{kdf}"
        );
        let err = fails(
            &ours(),
            &["decrypt", "--sk", &sk],
            &[("C4GH_PASSPHRASE", "wrong")],
            &file,
        );
        assert!(err.contains("wrong passphrase"), "{kdf}: {err}");

        // Keys written by c4gh, read by the reference.
        let (sk, pk) = (
            k.path(&format!("ours-{kdf}")),
            k.path(&format!("ours-{kdf}.pub")),
        );
        ok(
            &ours(),
            &[
                "keygen", "--sk", &sk, "--pk", &pk, "--kdf", kdf, "-C", "test", "-f",
            ],
            &pass,
            b"",
        );
        let text = fs::read_to_string(&sk).unwrap();
        assert!(
            text.starts_with("-----BEGIN CRYPT4GH PRIVATE KEY-----\n"),
            "{text}"
        );
        let file = ok(&ours(), &["encrypt", "--recipient_pk", &pk], &[], &plain);
        assert_eq!(
            ok(&py("crypt4gh"), &["decrypt", "--sk", &sk], &pass, &file),
            plain,
            "{kdf}"
        );
        let out = run(
            &py("crypt4gh"),
            &["decrypt", "--sk", &sk],
            &[("C4GH_PASSPHRASE", "wrong")],
            &file,
        );
        assert!(
            !out.status.success(),
            "the reference accepted a wrong passphrase for our {kdf} key"
        );
    }
}

#[test]
fn keygen_writes_the_secret_key_0400_and_refuses_to_overwrite_without_f() {
    let k = Keys::new();
    let (sk, pk) = k.ours("k");
    assert_eq!(
        fs::metadata(&sk).unwrap().permissions().mode() & 0o777,
        0o400
    );
    assert!(
        fs::read_to_string(&pk)
            .unwrap()
            .starts_with("-----BEGIN CRYPT4GH PUBLIC KEY-----\n")
    );
    let before = fs::read(&sk).unwrap();
    let err = fails(
        &ours(),
        &["keygen", "--sk", &sk, "--pk", &pk, "--nocrypt"],
        &[],
        b"",
    );
    assert!(
        err.contains("already exists") && err.contains("-f"),
        "{err}"
    );
    assert_eq!(fs::read(&sk).unwrap(), before);
    // The reference reads our unencrypted key file.
    let (py_sk, _) = k.python("p");
    let file = ok(
        &py("crypt4gh"),
        &["encrypt", "--sk", &py_sk, "--recipient_pk", &pk],
        &[],
        b"x",
    );
    assert_eq!(
        ok(&py("crypt4gh"), &["decrypt", "--sk", &sk], &[], &file),
        b"x"
    );
    // Environment variables name the default key files.
    let (sk2, pk2) = (k.path("env"), k.path("env.pub"));
    ok(
        &ours(),
        &["keygen", "--nocrypt"],
        &[("C4GH_SECRET_KEY", &sk2), ("C4GH_PUBLIC_KEY", &pk2)],
        b"",
    );
    assert!(Path::new(&sk2).exists() && Path::new(&pk2).exists());
}

#[test]
fn ranges_and_rearranged_edit_lists_interoperate() {
    let k = Keys::new();
    let (sk, pk) = k.ours("me");
    let plain = data(5 * SEG + 77);
    let file = ok(
        &py("crypt4gh"),
        &["encrypt", "--recipient_pk", &pk],
        &[],
        &plain,
    );
    let env = [("C4GH_SECRET_KEY", sk.as_str())];
    for (start, end) in [
        (0usize, 10usize),
        (100, 200_000),
        (SEG, 2 * SEG),
        (SEG - 1, SEG + 1),
        (300_000, 400_000),
    ] {
        let range = format!("{start}-{end}");
        let want = &plain[start.min(plain.len())..end.min(plain.len())];
        // c4gh decrypt --range: END is excluded, as documented.
        assert!(
            ok(&ours(), &["decrypt", "--range", &range], &env, &file) == want,
            "{range}"
        );
        // The reference's --range yields one byte less than its documentation says (it computes
        // span = END - START - 1); asking it for END + 1 gives the same bytes. (For START of
        // 64 KiB or more its decrypt --range is broken, see `reference_range_bugs`.)
        let py_range = format!("{start}-{}", end + 1);
        if start < SEG {
            assert!(
                ok(
                    &py("crypt4gh"),
                    &["decrypt", "--range", &py_range],
                    &env,
                    &file
                ) == want,
                "{range}"
            );
        }

        // The reference's rearrange, read by c4gh.
        let rearranged = ok(
            &py("crypt4gh"),
            &["rearrange", "--range", &py_range],
            &env,
            &file,
        );
        assert!(
            ok(&ours(), &["decrypt"], &env, &rearranged) == want,
            "python rearrange {range}"
        );
        // c4gh's rearrange, read by the reference.
        let rearranged = ok(&ours(), &["rearrange", "--range", &range], &env, &file);
        assert!(
            ok(&py("crypt4gh"), &["decrypt"], &env, &rearranged) == want,
            "c4gh rearrange {range}"
        );
        assert!(
            rearranged.len() < file.len() || end - start >= 4 * SEG,
            "rearrange dropped no segment for {range}"
        );
        // A range over an edited file applies to what the edit list keeps.
        let sub = ok(&ours(), &["decrypt", "--range", "3-9"], &env, &rearranged);
        assert!(
            sub == want[3.min(want.len())..9.min(want.len())],
            "range within edit list {range}"
        );
    }
    // Open-ended ranges.
    assert!(ok(&ours(), &["decrypt", "--range", "200000-"], &env, &file) == plain[200_000..]);
    assert!(ok(&ours(), &["decrypt", "--range", "200000"], &env, &file) == plain[200_000..]);
    // c4gh encrypt --range, read by the reference.
    let part = ok(
        &ours(),
        &["encrypt", "--recipient_pk", &pk, "--range", "70000-140000"],
        &[],
        &plain,
    );
    assert!(ok(&py("crypt4gh"), &["decrypt"], &env, &part) == plain[70_000..140_000]);
}

#[test]
fn header_only_reencryption_and_separate_header_files() {
    let k = Keys::new();
    let (our_sk, our_pk) = k.ours("us");
    let (py_sk, py_pk) = k.python("them");
    let (_, third_pk) = k.python("third");
    let plain = data(2 * SEG + 5);
    let dir = k.dir.path();

    // c4gh writes header and body apart; the reference re-encrypts the header only.
    let header = dir.join("ours.header");
    let body = ok(
        &ours(),
        &[
            "encrypt",
            "--sk",
            &our_sk,
            "--recipient_pk",
            &our_pk,
            "--header",
            header.to_str().unwrap(),
        ],
        &[],
        &plain,
    );
    assert!(!dir.join("ours.header.part").exists());
    let header_bytes = fs::read(&header).unwrap();
    assert_eq!(header_bytes.len(), 124);
    assert_eq!(body.len(), plain.len() + 3 * 28);
    let new_header = ok(
        &py("crypt4gh"),
        &[
            "reencrypt",
            "--sk",
            &our_sk,
            "--recipient_pk",
            &py_pk,
            "--header-only",
        ],
        &[],
        &header_bytes,
    );
    let mut file = new_header.clone();
    file.extend_from_slice(&body);
    assert!(ok(&py("crypt4gh"), &["decrypt", "--sk", &py_sk], &[], &file) == plain);

    // The reference writes header and body apart; c4gh re-encrypts the header only, for two
    // recipients, with and without trimming.
    let header = dir.join("py.header");
    let body = ok(
        &py("crypt4gh"),
        &[
            "encrypt",
            "--sk",
            &py_sk,
            "--recipient_pk",
            &third_pk,
            "--recipient_pk",
            &our_pk,
            "--header",
            header.to_str().unwrap(),
        ],
        &[],
        &plain,
    );
    let header_bytes = fs::read(&header).unwrap();
    for (trim, want_len) in [(true, 16 + 2 * 108), (false, 16 + 3 * 108)] {
        let mut args = vec![
            "reencrypt",
            "--sk",
            &our_sk,
            "--recipient_pk",
            &py_pk,
            "--recipient_pk",
            &our_pk,
            "--header-only",
        ];
        if trim {
            args.push("--trim");
        }
        let new_header = ok(&ours(), &args, &[], &header_bytes);
        assert_eq!(new_header.len(), want_len, "trim {trim}");
        let mut file = new_header;
        file.extend_from_slice(&body);
        assert!(ok(&py("crypt4gh"), &["decrypt", "--sk", &py_sk], &[], &file) == plain);
        assert!(ok(&ours(), &["decrypt", "--sk", &our_sk], &[], &file) == plain);
    }

    // Whole-file reencrypt by c4gh, checked by the reference with --sender_pk.
    let mut whole = header_bytes.clone();
    whole.extend_from_slice(&body);
    let re = ok(
        &ours(),
        &[
            "reencrypt",
            "--sk",
            &our_sk,
            "--recipient_pk",
            &py_pk,
            "--trim",
        ],
        &[],
        &whole,
    );
    assert!(
        ok(
            &py("crypt4gh"),
            &["decrypt", "--sk", &py_sk, "--sender_pk", &our_pk],
            &[],
            &re
        ) == plain
    );
    // And the reverse: the reference re-encrypts, c4gh checks the sender.
    let re = ok(
        &py("crypt4gh"),
        &[
            "reencrypt",
            "--sk",
            &py_sk,
            "--recipient_pk",
            &our_pk,
            "--trim",
        ],
        &[],
        &{
            let mut f = ok(&ours(), &["encrypt", "--recipient_pk", &py_pk], &[], &plain);
            f.truncate(f.len());
            f
        },
    );
    assert!(
        ok(
            &ours(),
            &["decrypt", "--sk", &our_sk, "--sender_pk", &py_pk],
            &[],
            &re
        ) == plain
    );
    let err = fails(
        &ours(),
        &["decrypt", "--sk", &our_sk, "--sender_pk", &third_pk],
        &[],
        &re,
    );
    assert!(err.contains("no header packet could be decrypted"), "{err}");
}

#[test]
fn errors_say_what_is_wrong() {
    let k = Keys::new();
    let (sk, pk) = k.ours("me");
    let (other_sk, _) = k.ours("other");
    let plain = data(3 * SEG + 10);
    let file = ok(&ours(), &["encrypt", "--recipient_pk", &pk], &[], &plain);

    let err = fails(&ours(), &["decrypt", "--sk", &other_sk], &[], &file);
    assert!(
        err.contains("not encrypted for this key"),
        "wrong key: {err}"
    );

    let err = fails(
        &ours(),
        &["decrypt", "--sk", &sk],
        &[],
        b"PK\x03\x04 a zip file, not crypt4gh",
    );
    assert!(err.contains("not a Crypt4GH file"), "not crypt4gh: {err}");

    let err = fails(
        &ours(),
        &["decrypt", "--sk", &sk],
        &[],
        &file[..file.len() - 100],
    );
    assert!(
        err.contains("segment 2") && err.contains("truncated"),
        "truncated: {err}"
    );

    let err = fails(
        &ours(),
        &["decrypt", "--sk", &sk],
        &[],
        &file[..124 + 2 * (SEG + 28) + 5],
    );
    assert!(
        err.contains("truncated") && err.contains("segment 2"),
        "truncated in nonce: {err}"
    );

    let err = fails(&ours(), &["decrypt", "--sk", &sk], &[], &file[..60]);
    assert!(
        err.contains("truncated Crypt4GH header"),
        "truncated header: {err}"
    );

    let mut tampered = file.clone();
    tampered[124 + (SEG + 28) + 500] ^= 0x01;
    let err = fails(&ours(), &["decrypt", "--sk", &sk], &[], &tampered);
    assert!(
        err.contains("segment 1") && err.contains("tampered"),
        "tampered: {err}"
    );
    let err = fails(
        &ours(),
        &["decrypt", "--sk", &sk, "--threads", "2"],
        &[],
        &tampered,
    );
    assert!(
        err.contains("segment 1") && err.contains("tampered"),
        "tampered, 2 threads: {err}"
    );

    let err = fails(
        &ours(),
        &["encrypt", "--recipient_pk", "/nonexistent/key.pub"],
        &[],
        b"x",
    );
    assert!(
        err.contains("/nonexistent/key.pub"),
        "missing recipient: {err}"
    );

    let err = fails(&ours(), &["decrypt"], &[], &file);
    assert!(
        err.contains("--sk") && err.contains("C4GH_SECRET_KEY"),
        "no key: {err}"
    );

    let err = fails(&ours(), &["decrypt", "--sk", &pk], &[], &file);
    assert!(
        err.contains("private key"),
        "public key given as secret: {err}"
    );
}

#[test]
fn secret_key_comes_from_the_environment_like_the_reference() {
    let k = Keys::new();
    let (sk, pk) = k.ours("me");
    let file = ok(&ours(), &["encrypt", "--recipient_pk", &pk], &[], b"hello");
    assert_eq!(
        ok(&ours(), &["decrypt"], &[("C4GH_SECRET_KEY", &sk)], &file),
        b"hello"
    );
    assert_eq!(
        ok(
            &py("crypt4gh"),
            &["decrypt"],
            &[("C4GH_SECRET_KEY", &sk)],
            &file
        ),
        b"hello"
    );
}

/// Documents why `c4gh decrypt --range` differs from the reference for ranges starting at or
/// after 64 KiB: the reference 1.8.6 prints nothing (input from a pipe) for them, while c4gh
/// prints the requested bytes.
#[test]
fn reference_range_bugs() {
    let k = Keys::new();
    let (sk, pk) = k.ours("me");
    let plain = data(4 * SEG);
    let file = ok(&ours(), &["encrypt", "--recipient_pk", &pk], &[], &plain);
    let env = [("C4GH_SECRET_KEY", sk.as_str())];
    let theirs = ok(
        &py("crypt4gh"),
        &["decrypt", "--range", "70000-70011"],
        &env,
        &file,
    );
    assert!(
        theirs.is_empty(),
        "the reference's range bug seems fixed: got {} bytes",
        theirs.len()
    );
    let ours_out = ok(&ours(), &["decrypt", "--range", "70000-70010"], &env, &file);
    assert_eq!(ours_out, &plain[70_000..70_010]);
}
