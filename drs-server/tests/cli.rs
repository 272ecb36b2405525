//! The `c4gh-drs-server` binary: `add` (encrypt + register, checksums, refusals), and `serve`
//! with an encrypted server key whose passphrase comes from the environment, a token file and
//! TLS files; JSON logs captured and checked for secrets; SIGTERM → graceful exit 0.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use c4gh::keys::{Kdf, SecretKey};
use common::{client_for, data, key_header};
use drs_server::testing::TestCa;
use serde_json::Value;
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_c4gh-drs-server");
const PASSPHRASE: &str = "correct horse battery staple 42";
const TOKEN: &str = "alice-secret-token-7f3a9c1d2e";

struct Setup {
    dir: tempfile::TempDir,
    key: SecretKey,
}

impl Setup {
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate();
    key.write_file(
        &dir.path().join("server.sec"),
        Some((PASSPHRASE.as_bytes(), Kdf::Scrypt)),
        None,
        0o600,
    )
    .unwrap();
    std::fs::write(dir.path().join("server.pub"), key.public_key().to_pem()).unwrap();
    std::fs::create_dir(dir.path().join("catalog")).unwrap();
    std::fs::write(dir.path().join("plain.bin"), data(300_000)).unwrap();
    std::fs::write(
        dir.path().join("tokens.json"),
        format!(r#"[{{"subject": "alice", "token": "{TOKEN}"}}]"#),
    )
    .unwrap();
    Setup { dir, key }
}

fn add(setup: &Setup, id: &str, extra: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["add", "--catalog"])
        .arg(setup.path("catalog"))
        .arg("--file")
        .arg(setup.path("plain.bin"))
        .args(["--id", id])
        .args(extra)
        .env_remove("C4GH_DRS_PASSPHRASE")
        .output()
        .unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn add_encrypts_registers_and_refuses_bad_input() {
    let s = setup();
    let public = s.path("server.pub");
    let out = add(
        &s,
        "sample",
        &[
            "--public-key",
            public.to_str().unwrap(),
            "--reader",
            "alice",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    let plain = data(300_000);
    assert_eq!(record["plaintext"]["sha256"], sha256_hex(&plain));
    assert_eq!(record["plaintext"]["size"], 300_000);
    let body = std::fs::read(s.path("catalog/sample.c4gh-body")).unwrap();
    assert_eq!(record["body"]["sha256"], sha256_hex(&body));
    assert_eq!(record["body"]["size"], body.len());
    assert_eq!(record["readers"], serde_json::json!(["alice"]));
    assert_eq!(record["name"], "plain.bin");
    // Header + body is a Crypt4GH file for the server key.
    let mut file = std::fs::read(s.path("catalog/sample.c4gh-header")).unwrap();
    file.extend_from_slice(&body);
    let mut out_plain = Vec::new();
    c4gh::decrypt(&mut &file[..], &mut out_plain, &[&s.key]).unwrap();
    assert_eq!(out_plain, plain);
    let stored: Value =
        serde_json::from_slice(&std::fs::read(s.path("catalog/sample.json")).unwrap()).unwrap();
    assert_eq!(stored, record);

    let again = add(&s, "sample", &["--public-key", public.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let bad_id = add(&s, "../escape", &["--public-key", public.to_str().unwrap()]);
    assert!(!bad_id.status.success());
    assert!(String::from_utf8_lossy(&bad_id.stderr).contains("invalid object ID"));

    let missing = Command::new(BIN)
        .args(["add", "--catalog"])
        .arg(s.path("catalog"))
        .arg("--file")
        .arg(s.path("does-not-exist"))
        .args(["--id", "ghost", "--public-key", public.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does-not-exist"));
    assert!(!s.path("catalog/ghost.json").exists());
    assert!(!s.path("catalog/ghost.c4gh-body.part").exists());

    // With the secret key: the passphrase from the environment.
    let with_secret = Command::new(BIN)
        .args(["add", "--catalog"])
        .arg(s.path("catalog"))
        .arg("--file")
        .arg(s.path("plain.bin"))
        .args(["--id", "sample2", "--secret-key"])
        .arg(s.path("server.sec"))
        .env("C4GH_DRS_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap();
    assert!(
        with_secret.status.success(),
        "{}",
        String::from_utf8_lossy(&with_secret.stderr)
    );
    let wrong = Command::new(BIN)
        .args(["add", "--catalog"])
        .arg(s.path("catalog"))
        .arg("--file")
        .arg(s.path("plain.bin"))
        .args(["--id", "sample3", "--secret-key"])
        .arg(s.path("server.sec"))
        .env("C4GH_DRS_PASSPHRASE", "not-the-right-one-913")
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("passphrase"), "{stderr}");
    assert!(!stderr.contains("not-the-right-one-913"), "{stderr}");
}

/// Spawns `serve`, collects its stderr, and returns (child, log lines, address).
fn serve(s: &Setup, ca: &TestCa) -> (std::process::Child, Arc<Mutex<Vec<String>>>, String) {
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]).unwrap();
    std::fs::write(s.path("tls.crt"), cert).unwrap();
    std::fs::write(s.path("tls.key"), key.as_bytes()).unwrap();
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--catalog"])
        .arg(s.path("catalog"))
        .arg("--secret-key")
        .arg(s.path("server.sec"))
        .arg("--tls-cert")
        .arg(s.path("tls.crt"))
        .arg("--tls-key")
        .arg(s.path("tls.key"))
        .arg("--tokens-file")
        .arg(s.path("tokens.json"))
        .env("C4GH_DRS_PASSPHRASE", PASSPHRASE)
        .env("C4GH_DRS_LOG_FORMAT", "json")
        .env("C4GH_DRS_LOG", "trace")
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let reader = BufReader::new(child.stderr.take().unwrap());
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in reader.lines() {
            sink.lock().unwrap().push(line.unwrap());
        }
    });
    let started = Instant::now();
    loop {
        let found = lines.lock().unwrap().iter().find_map(|line| {
            let v: Value = serde_json::from_str(line).ok()?;
            (v["message"] == "c4gh-drs-server listening")
                .then(|| v["addr"].as_str().unwrap().to_owned())
        });
        if let Some(addr) = found {
            return (child, lines, addr);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "server did not start: {:?}",
            lines.lock().unwrap()
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("server exited with {status}: {:?}", lines.lock().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(child: &mut std::process::Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_binary_logs_json_without_secrets_and_stops_on_sigterm() {
    let s = setup();
    let public = s.path("server.pub");
    let out = add(
        &s,
        "sample",
        &[
            "--public-key",
            public.to_str().unwrap(),
            "--reader",
            "alice",
        ],
    );
    assert!(out.status.success());
    let ca = TestCa::new().unwrap();
    let (mut child, lines, addr) = serve(&s, &ca);
    let http = client_for(&ca.ca_pem());
    let base = format!("https://{addr}");
    let requester = SecretKey::generate();
    let object = http
        .get(format!("{base}/ga4gh/drs/v1/objects/sample"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(object.status(), 200);
    let header = http
        .get(format!("{base}/c4gh/v1/objects/sample/header"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("x-c4gh-public-key", key_header(&requester.public_key()))
        .send()
        .await
        .unwrap();
    assert_eq!(header.status(), 200);
    let header = header.bytes().await.unwrap();
    let body = http
        .get(format!("{base}/c4gh/v1/objects/sample/body"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut file = header.to_vec();
    file.extend_from_slice(&body);
    let mut plain = Vec::new();
    c4gh::decrypt(&mut &file[..], &mut plain, &[&requester]).unwrap();
    assert_eq!(plain, data(300_000));
    let wrong = http
        .get(format!("{base}/ga4gh/drs/v1/objects/sample"))
        .header("authorization", format!("Bearer {TOKEN}-but-wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let status = sigterm(&mut child);
    assert!(status.success(), "exit status after SIGTERM: {status}");
    std::thread::sleep(Duration::from_millis(100));
    let lines = lines.lock().unwrap().clone();
    let log = lines.join("\n");
    for line in &lines {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    assert!(log.contains("crypt4gh header issued"), "{log}");
    assert!(log.contains("request handled"));
    assert!(log.contains("shutting down"));
    let secret_forms = [
        TOKEN.to_owned(),
        PASSPHRASE.to_owned(),
        hex::encode(s.key.secret_bytes()),
        STANDARD.encode(s.key.secret_bytes()),
        STANDARD.encode(requester.secret_bytes()),
    ];
    for secret in &secret_forms {
        assert!(!log.contains(secret.as_str()), "a secret is in the log");
    }
    let key_file = std::fs::read_to_string(s.path("server.sec")).unwrap();
    let key_body = key_file.lines().nth(1).unwrap();
    assert!(!log.contains(key_body));
}

#[test]
fn serve_refuses_bad_configuration_with_clear_errors() {
    let s = setup();
    let run = |args: &[&str], passphrase: &str| {
        let out = Command::new(BIN)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--catalog"])
            .arg(s.path("catalog"))
            .arg("--secret-key")
            .arg(s.path("server.sec"))
            .args(args)
            .env("C4GH_DRS_PASSPHRASE", passphrase)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let tokens = s.path("tokens.json");
    let tokens = tokens.to_str().unwrap();
    let err = run(
        &["--insecure-plain-http", "--tokens-file", tokens],
        "nope-wrong",
    );
    assert!(err.contains("passphrase"), "{err}");
    assert!(!err.contains("nope-wrong"), "{err}");
    let err = run(&["--insecure-plain-http"], PASSPHRASE);
    assert!(err.contains("--tokens-file"), "{err}");
    assert!(err.contains("--visa-issuer"), "{err}");
    let err = run(
        &[
            "--insecure-plain-http",
            "--visa-issuer",
            "https://visas.test=http://visas.test/jwks",
        ],
        PASSPHRASE,
    );
    assert!(err.contains("ISSUER=JWKS_URL"), "{err}");
    let err = run(&["--tokens-file", tokens], PASSPHRASE);
    assert!(err.contains("--tls-cert"), "{err}");
    std::fs::write(s.path("catalog/broken.json"), "{}").unwrap();
    let err = run(
        &["--insecure-plain-http", "--tokens-file", tokens],
        PASSPHRASE,
    );
    assert!(err.contains("broken.json"), "{err}");
    assert_path_absent(&s.path("catalog/broken.c4gh-body"));
}

fn assert_path_absent(path: &Path) {
    assert!(!path.exists(), "{}", path.display());
}
