//! End-to-end: the real `c4gh-sidecar` binary against the real `c4gh-drs-server` (in process,
//! TLS on loopback), the reference Python `crypt4gh` reading what the sidecar wrote.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use c4gh::SecretKey;
use c4gh_sidecar::status::{InputState, Phase};
use common::{RunEnv, Sidecar, entries_under, pattern, run_gate};
use drs_server::testing::TestServer;
use nix::sys::signal::Signal;

fn env_for(server: &TestServer, inputs: String, work: &Path) -> RunEnv {
    RunEnv {
        inputs,
        key_dir: work.join("key"),
        root: work.join("data"),
        ca_pem: server.ca_pem(),
        token: Some(server.token().expose().to_owned()),
        allowed_host: server.server().local_addr().to_string(),
        extra: Vec::new(),
    }
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::Write;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mode_then_sigterm_destroys_key_and_plaintext() {
    let server = common::start_drs_server().await;
    let (a, b, c) = (
        pattern(300_000, 1),
        pattern(200_001, 2),
        pattern(150_000, 3),
    );
    server.add("objA", &a, &["*"]).unwrap();
    server.add("objB", &b, &["*"]).unwrap();
    server.add("objC", &c, &["*"]).unwrap();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let inputs = format!(
        r#"[{{"url":"{}","path":"{}/enc/a.c4gh"}},
            {{"url":"{}","path":"{}/plain/b.bin","mode":"plaintext"}},
            {{"url":"{}","path":"{}/c.fifo","mode":"stream"}}]"#,
        server.drs_uri("objA"),
        data.display(),
        server.drs_uri("objB"),
        data.display(),
        server.drs_uri("objC"),
        data.display()
    );
    let mut env = env_for(&server, inputs, work.path());
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.extra.push((
        "C4GH_METRICS_ADDR".into(),
        format!("127.0.0.1:{metrics_port}"),
    ));
    let mut sidecar = Sidecar::start(&env, work.path());
    let status = sidecar.wait_settled();
    assert_eq!(
        status.phase,
        Phase::Ready,
        "{status:?}\n{}",
        sidecar.log_text()
    );
    assert!(status.inputs.iter().all(|i| i.state == InputState::Done));
    assert_eq!(status.inputs[1].bytes, b.len() as u64);

    // Prometheus metrics.
    let metrics = http_get(metrics_port, "/metrics");
    assert!(metrics.contains("c4gh_sidecar_ready 1"), "{metrics}");
    assert!(
        metrics.contains(r#"c4gh_sidecar_objects_total{mode="plaintext",result="ok"} 1"#),
        "{metrics}"
    );

    // Probe and gate agree.
    let probe = Command::new(common::sidecar_bin())
        .arg("probe")
        .env("C4GH_KEY_DIR", &env.key_dir)
        .status()
        .unwrap();
    assert!(probe.success());
    let (gate, _, _) = run_gate(&env.key_dir, work.path(), 5);
    assert!(gate.success());

    // The key file: 0440, reference format, and the only thing the reference CLI needs.
    let key_file = env.key_dir.join("ephemeral.sec");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o440);
    let enc = data.join("enc/a.c4gh");
    assert_eq!(
        testkit::reference::decrypt_with_env_key(&enc, &key_file).unwrap(),
        a
    );

    // Plaintext mode.
    assert_eq!(std::fs::read(data.join("plain/b.bin")).unwrap(), b);

    // Stream mode: a FIFO, fed on every open.
    let fifo = data.join("c.fifo");
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    for _ in 0..2 {
        let mut got = Vec::new();
        std::fs::File::open(&fifo)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got.len(), c.len());
        assert!(got == c);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }

    // Nothing half-written anywhere.
    let entries = entries_under(&data);
    assert!(!entries.iter().any(|e| e.ends_with(".part")), "{entries:?}");

    let exit = sidecar.signal_and_wait(Signal::SIGTERM);
    assert!(exit.success(), "exit {exit}; log:\n{}", sidecar.log_text());
    assert!(!key_file.exists(), "key file survived SIGTERM");
    assert_eq!(
        entries_under(&env.key_dir),
        Vec::<String>::new(),
        "key volume not empty"
    );
    let left = entries_under(&data);
    assert_eq!(
        left,
        ["enc", "enc/a.c4gh", "plain"],
        "plaintext or FIFO survived"
    );
    let log = sidecar.log_text();
    assert!(log.contains("\"key_shredded\":true"), "{log}");
    assert!(log.contains("fetch summary"), "{log}");
    // No task container list (C4GH_TASK_CONTAINERS): the key waits for the signal.
    assert!(log.contains("the key is destroyed at SIGTERM"), "{log}");
    assert!(log.contains(r#""trigger":"signal""#), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_run_gets_a_new_key_and_reuses_the_body_in_place() {
    let server = common::start_drs_server().await;
    let plaintext = pattern(700_000, 9);
    server.add("reuse", &plaintext, &["*"]).unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("data/in/reuse.c4gh");
    let inputs = format!(
        r#"[{{"url":"{}","path":"{}"}}]"#,
        server.drs_uri("reuse"),
        file.display()
    );
    let env = env_for(&server, inputs, work.path());
    let key_file = env.key_dir.join("ephemeral.sec");

    let mut first = Sidecar::start(&env, work.path());
    assert_eq!(
        first.wait_settled().phase,
        Phase::Ready,
        "{}",
        first.log_text()
    );
    let old_key = SecretKey::read_file(&key_file, || None).unwrap();
    let inode = std::fs::metadata(&file).unwrap().ino();
    let old_bytes = std::fs::read(&file).unwrap();
    assert!(first.signal_and_wait(Signal::SIGTERM).success());
    assert!(!key_file.exists());

    let mut second = Sidecar::start(&env, work.path());
    assert_eq!(
        second.wait_settled().phase,
        Phase::Ready,
        "{}",
        second.log_text()
    );
    let new_key = SecretKey::read_file(&key_file, || None).unwrap();
    assert_ne!(new_key.public_key(), old_key.public_key());
    let new_bytes = std::fs::read(&file).unwrap();
    // Same body, new 124-byte header written in place (same inode).
    assert_eq!(std::fs::metadata(&file).unwrap().ino(), inode);
    assert_eq!(new_bytes[124..], old_bytes[124..]);
    assert_ne!(new_bytes[..124], old_bytes[..124]);
    let log = second.log_text();
    assert!(log.contains("header replaced in place"), "{log}");

    // The old key opens nothing the server sends now; the new one does.
    let mut out = Vec::new();
    let err = c4gh::decrypt(&mut &new_bytes[..], &mut out, &[&old_key]).unwrap_err();
    assert!(err.to_string().contains("key"), "{err}");
    let mut out = Vec::new();
    c4gh::decrypt(&mut &new_bytes[..], &mut out, &[&new_key]).unwrap();
    assert_eq!(out, plaintext);
    assert!(second.signal_and_wait(Signal::SIGINT).success());
    assert!(!key_file.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_fetch_leaves_no_key_no_part_and_exits_zero() {
    let server = common::start_drs_server().await;
    let big = pattern(64 << 20, 5);
    server.add("big", &big, &["*"]).unwrap();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let inputs = format!(
        r#"[{{"url":"{}","path":"{}/big.bin","mode":"plaintext"}}]"#,
        server.drs_uri("big"),
        data.display()
    );
    let mut env = env_for(&server, inputs, work.path());
    env.extra.push(("C4GH_CONCURRENCY".into(), "1".into()));
    let mut sidecar = Sidecar::start(&env, work.path());
    // Wait until the fetch is under way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let entries = entries_under(&data);
        if entries.iter().any(|e| e.ends_with(".part")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no .part appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let exit = sidecar.signal_and_wait(Signal::SIGTERM);
    assert!(exit.success(), "exit {exit}; log:\n{}", sidecar.log_text());
    assert!(!env.key_dir.join("ephemeral.sec").exists());
    assert_eq!(entries_under(&data), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_cli_encrypted_with_key_out_and_decrypt() {
    let server = common::start_drs_server().await;
    let (a, b) = (pattern(100_000, 11), pattern(65_536, 12));
    server.add("f1", &a, &["*"]).unwrap();
    server.add("f2", &b, &["*"]).unwrap();
    let work = tempfile::tempdir().unwrap();
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem()).unwrap();
    let token = work.path().join("token");
    std::fs::write(&token, server.token().expose()).unwrap();
    let fetch = |args: &[&str]| {
        Command::new(common::sidecar_bin())
            .arg("fetch")
            .args(args)
            .env_clear()
            .env("C4GH_CA_BUNDLE", &ca)
            .env("C4GH_TOKEN_FILE", &token)
            .env("C4GH_DRS_ALLOW_PORT", "1")
            .output()
            .unwrap()
    };
    let w = |n: &str| work.path().join(n).display().to_string();
    let (u1, u2) = (server.drs_uri("f1"), server.drs_uri("f2"));

    let refused = fetch(&[&u1, "-o", &w("x.c4gh")]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--key-out"));
    assert!(!work.path().join("x.c4gh").exists());

    let out = fetch(&[
        &u1,
        &u2,
        "-o",
        &w("1.c4gh"),
        "-o",
        &w("2.c4gh"),
        "--key-out",
        &w("k.sec"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not a terminal: no progress bar drawing characters.
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\u{2588}'));
    let key = work.path().join("k.sec");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o400
    );
    assert_eq!(
        testkit::reference::decrypt_with_env_key(&work.path().join("1.c4gh"), &key).unwrap(),
        a
    );
    assert_eq!(
        testkit::reference::decrypt_with_env_key(&work.path().join("2.c4gh"), &key).unwrap(),
        b
    );

    let out = fetch(&[&u1, &u2, "-O", &w("plain"), "--decrypt"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(work.path().join("plain/f1")).unwrap(), a);
    assert_eq!(std::fs::read(work.path().join("plain/f2")).unwrap(), b);

    let missing = fetch(&[&server.drs_uri("nope"), "-o", &w("nope.bin"), "--decrypt"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
    assert!(!work.path().join("nope.bin").exists());
}

/// Outputs declared to `run` are Crypt4GH for their recipient after SIGTERM (the reference
/// `crypt4gh` decrypts them with the recipient's key), the termination log says so and the exit
/// code is 0; a bad output list fails the run at once, before any task would start, and the
/// exit code at SIGTERM is 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_are_encrypted_at_sigterm() {
    let server = common::start_drs_server().await;
    let work = tempfile::tempdir().unwrap();
    let alice = SecretKey::generate();
    let alice_sk = work.path().join("alice.sec");
    alice.write_file(&alice_sk, None, None, 0o600).unwrap();
    let out = work.path().join("data/out");
    std::fs::create_dir_all(out.join("calls")).unwrap();
    let termination = work.path().join("termination-log");
    let outputs = serde_json::json!([
        {"path": out.join("result.bin"), "recipients": [alice.public_key().to_pem()]},
        {"path": out.join("calls"), "recipients": [alice.public_key().to_pem()]},
    ])
    .to_string();
    let mut env = env_for(&server, "[]".into(), work.path());
    env.extra = vec![
        ("C4GH_OUTPUTS".into(), outputs),
        (
            "C4GH_TERMINATION_LOG".into(),
            termination.display().to_string(),
        ),
    ];
    let mut sidecar = Sidecar::start(&env, work.path());
    assert_eq!(sidecar.wait_settled().phase, Phase::Ready);
    // The task writes its results while the sidecar waits.
    let big = pattern((5 << 20) + 3, 9);
    std::fs::write(out.join("result.bin"), &big).unwrap();
    std::fs::write(out.join("calls/a.vcf"), b"variant\n").unwrap();
    let exit = sidecar.signal_and_wait(Signal::SIGTERM);
    assert!(exit.success(), "{exit:?}: {}", sidecar.log_text());
    let message = std::fs::read_to_string(&termination).unwrap();
    assert!(
        message.starts_with("outputs encrypted: 2 files, 5242891 bytes, 0 absent"),
        "{message}"
    );
    assert_eq!(
        testkit::reference::decrypt_with_env_key(&out.join("result.bin"), &alice_sk).unwrap(),
        big
    );
    assert_eq!(
        testkit::reference::decrypt_with_env_key(&out.join("calls/a.vcf"), &alice_sk).unwrap(),
        b"variant\n"
    );
    assert_eq!(entries_under(&out), ["calls", "calls/a.vcf", "result.bin"]);

    let mut env = env_for(&server, "[]".into(), work.path());
    env.key_dir = work.path().join("key2");
    env.extra = vec![
        ("C4GH_OUTPUTS".into(), r#"[{"path": "/x/y"}]"#.into()),
        (
            "C4GH_TERMINATION_LOG".into(),
            termination.display().to_string(),
        ),
    ];
    let mut sidecar = Sidecar::start(&env, work.path());
    let status = sidecar.wait_settled();
    assert_eq!(status.phase, Phase::Failed);
    assert_eq!(
        status.message,
        "output list rejected: output 0 (/x/y): no recipient; name at least one Crypt4GH public key"
    );
    // Nothing was encrypted: the sidecar says so when it ends, too.
    assert_eq!(sidecar.signal_and_wait(Signal::SIGTERM).code(), Some(1));
    let message = std::fs::read_to_string(&termination).unwrap();
    assert!(
        message.starts_with("output list rejected, nothing encrypted"),
        "{message}"
    );
}

/// With every task container listed as wrapped, their exit notices destroy the key before any
/// signal: not after a failed attempt under OnFailure (it is retried), at once after the
/// successful one; the sidecar then keeps serving until SIGTERM, which it answers as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_notices_destroy_the_key_before_sigterm() {
    let server = common::start_drs_server().await;
    server.add("obj", &pattern(10_000, 7), &["*"]).unwrap();
    let work = tempfile::tempdir().unwrap();
    let inputs = format!(
        r#"[{{"url":"{}","path":"{}/a.c4gh"}}]"#,
        server.drs_uri("obj"),
        work.path().join("data").display()
    );
    let exits = work.path().join("exit");
    std::fs::create_dir_all(&exits).unwrap();
    let mut env = env_for(&server, inputs, work.path());
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.extra.extend([
        (
            "C4GH_METRICS_ADDR".to_owned(),
            format!("127.0.0.1:{metrics_port}"),
        ),
        ("C4GH_EXIT_DIR".to_owned(), exits.display().to_string()),
        (
            "C4GH_TASK_CONTAINERS".to_owned(),
            r#"[{"name":"task","restartPolicy":"OnFailure","wrapped":true}]"#.to_owned(),
        ),
    ]);
    let mut sidecar = Sidecar::start(&env, work.path());
    assert_eq!(sidecar.wait_settled().phase, Phase::Ready);
    let key_file = env.key_dir.join("ephemeral.sec");
    // As c4gh-exec writes a notice: a temporary name, then rename.
    let notice = |status: u8| {
        let part = exits.join(".task.part");
        std::fs::write(&part, c4gh_contract::exits::notice(status)).unwrap();
        std::fs::rename(&part, exits.join("task")).unwrap();
    };
    notice(1);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        key_file.exists(),
        "a failed attempt under OnFailure destroyed the key its retry needs"
    );
    let ended = std::time::Instant::now();
    notice(0);
    while key_file.exists() {
        assert!(
            ended.elapsed() < std::time::Duration::from_secs(2),
            "the key outlived the task's end; log:\n{}",
            sidecar.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    eprintln!("key gone {:?} after the notice", ended.elapsed());
    assert!(
        sidecar.child.try_wait().unwrap().is_none(),
        "the sidecar must wait for SIGTERM"
    );
    let metrics = http_get(metrics_port, "/metrics");
    assert!(
        metrics.contains(r#"c4gh_sidecar_key_destroyed_total{trigger="task_exit"} 1"#),
        "{metrics}"
    );
    let exit = sidecar.signal_and_wait(Signal::SIGTERM);
    assert!(exit.success(), "exit {exit}; log:\n{}", sidecar.log_text());
    let log = sidecar.log_text();
    for needle in [
        "watching the task containers' exit notices",
        r#""exit_statuses":"task=0""#,
        "task containers ended; destroying the key",
        r#""trigger":"task_exit""#,
        "signal received; the key was destroyed when the task ended",
        "\"key_shredded\":true",
    ] {
        assert!(log.contains(needle), "{needle}: {log}");
    }
    assert_eq!(entries_under(&env.key_dir), Vec::<String>::new());
}
