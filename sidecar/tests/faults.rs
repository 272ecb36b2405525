//! Fault injection: a misbehaving HTTPS DRS server (tests/common/faulty.rs) in front of the real
//! `c4gh-sidecar run` binary. Each fault must give its specific error in `status.json`, fail the
//! gate with that reason in the termination log, and leave no final-named (or `.part`) file —
//! or, for transient faults, be overcome with the same bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use c4gh_sidecar::status::{InputState, Phase, Status};
use common::faulty::{Fault, FaultyServer};
use common::{RunEnv, Sidecar, entries_under, pattern, run_gate};
use nix::sys::signal::Signal;

const SIZE: usize = 600_000;

struct Outcome {
    status: Status,
    work: tempfile::TempDir,
    sidecar: Sidecar,
}

impl Outcome {
    fn target(&self) -> std::path::PathBuf {
        self.work.path().join("data/obj.bin")
    }
}

async fn run_one(
    server: &FaultyServer,
    id: &str,
    mode: &str,
    authority: Option<String>,
) -> Outcome {
    run_one_with(server, id, mode, authority, Vec::new()).await
}

async fn run_one_with(
    server: &FaultyServer,
    id: &str,
    mode: &str,
    authority: Option<String>,
    extra: Vec<(String, String)>,
) -> Outcome {
    let work = tempfile::tempdir().unwrap();
    let authority = authority.unwrap_or_else(|| server.authority());
    let env = RunEnv {
        inputs: format!(
            r#"[{{"url":"drs://{authority}/{id}","path":"{}/data/obj.bin","mode":"{mode}"}}]"#,
            work.path().display()
        ),
        key_dir: work.path().join("key"),
        root: work.path().join("data"),
        ca_pem: server.ca_pem().to_owned(),
        token: None,
        allowed_host: authority.clone(),
        extra,
    };
    let mut sidecar = Sidecar::start(&env, work.path());
    let status = tokio::task::block_in_place(|| sidecar.wait_settled());
    Outcome {
        status,
        work,
        sidecar,
    }
}

/// Asserts a failure: the error contains `needle`, the gate fails with it, nothing is left.
fn assert_failed(outcome: &mut Outcome, needle: &str) {
    let status = &outcome.status;
    assert_eq!(status.phase, Phase::Failed, "{status:?}");
    let input = &status.inputs[0];
    assert_eq!(input.state, InputState::Failed);
    let error = input.error.clone().unwrap_or_default();
    assert!(
        error.to_lowercase().contains(&needle.to_lowercase()),
        "error {error:?} lacks {needle:?}"
    );
    let (gate, termination, stderr) =
        run_gate(&outcome.work.path().join("key"), outcome.work.path(), 5);
    assert_eq!(gate.code(), Some(1));
    assert!(
        termination.contains(&error),
        "termination log {termination:?} lacks {error:?}"
    );
    assert!(
        termination.starts_with("c4gh-sidecar failed: "),
        "{termination}"
    );
    // The reason, then the summary `kubectl c4gh status` reads back.
    assert_eq!(termination.lines().count(), 2, "{termination}");
    let summary = c4gh_contract::termination::parse(&termination).expect("a summary line");
    assert_eq!(summary.phase, Phase::Failed);
    assert_eq!(summary.inputs[0].state, InputState::Failed);
    let kept = summary.inputs[0].error.clone().unwrap_or_default();
    assert!(
        error.starts_with(kept.trim_end_matches("...")),
        "{kept:?} is not the start of {error:?}"
    );
    assert!(stderr.contains(&error));
    assert!(!outcome.target().exists(), "final-named file left");
    let entries = entries_under(&outcome.work.path().join("data"));
    assert!(entries.is_empty(), "left behind: {entries:?}");
    let exit = outcome.sidecar.signal_and_wait(Signal::SIGTERM);
    assert!(exit.success());
}

fn assert_ready_with(outcome: &mut Outcome, plaintext: &[u8]) {
    assert_eq!(
        outcome.status.phase,
        Phase::Ready,
        "{:?}\n{}",
        outcome.status,
        outcome.sidecar.log_text()
    );
    assert_eq!(std::fs::read(outcome.target()).unwrap(), plaintext);
    let (gate, _, _) = run_gate(&outcome.work.path().join("key"), outcome.work.path(), 5);
    assert!(gate.success());
    assert!(outcome.sidecar.signal_and_wait(Signal::SIGTERM).success());
}

fn setup(server: &FaultyServer, id: &str, fault: Fault) -> Vec<u8> {
    let plaintext = pattern(SIZE, id.len() as u8);
    server.add(id, &plaintext, fault);
    plaintext
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_dropped_mid_body_resumes_with_same_bytes() {
    let server = FaultyServer::start().await;
    let plaintext = setup(
        &server,
        "dropped",
        Fault {
            drop_body_after: Some((200_000, 2)),
            ..Fault::default()
        },
    );
    let mut outcome = run_one(&server, "dropped", "plaintext", None).await;
    let (requests, ranges) = server.body_requests("dropped");
    assert_eq!(requests, 3, "ranges {ranges:?}");
    assert!(
        ranges.iter().any(|r| r.starts_with("bytes=200000-")),
        "{ranges:?}"
    );
    assert_ready_with(&mut outcome, &plaintext);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_5xx_then_success_is_retried() {
    let server = FaultyServer::start().await;
    let plaintext = setup(
        &server,
        "flaky",
        Fault {
            object_5xx: 2,
            ..Fault::default()
        },
    );
    let mut outcome = run_one(&server, "flaky", "plaintext", None).await;
    assert_eq!(server.object_requests("flaky"), 3);
    assert_ready_with(&mut outcome, &plaintext);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_202_retry_after_is_honoured() {
    let server = FaultyServer::start().await;
    let plaintext = setup(
        &server,
        "staged",
        Fault {
            object_202: 1,
            ..Fault::default()
        },
    );
    let started = std::time::Instant::now();
    let mut outcome = run_one(&server, "staged", "plaintext", None).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    assert_eq!(server.object_requests("staged"), 2);
    assert_ready_with(&mut outcome, &plaintext);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_header_fails() {
    let server = FaultyServer::start().await;
    setup(
        &server,
        "tampered",
        Fault {
            tamper_header: true,
            ..Fault::default()
        },
    );
    let mut outcome = run_one(&server, "tampered", "encrypted", None).await;
    assert_failed(&mut outcome, "header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_for_another_key_fails() {
    let server = FaultyServer::start().await;
    setup(
        &server,
        "wrongkey",
        Fault {
            wrong_key_header: true,
            ..Fault::default()
        },
    );
    let mut outcome = run_one(&server, "wrongkey", "plaintext", None).await;
    assert_failed(&mut outcome, "ephemeral key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_mismatch_fails() {
    let server = FaultyServer::start().await;
    setup(
        &server,
        "badsum",
        Fault {
            wrong_checksum: true,
            ..Fault::default()
        },
    );
    let mut outcome = run_one(&server, "badsum", "encrypted", None).await;
    assert_failed(&mut outcome, "sha-256");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_body_fails() {
    let server = FaultyServer::start().await;
    setup(
        &server,
        "short",
        Fault {
            truncate_body: Some(1000),
            ..Fault::default()
        },
    );
    let mut outcome = run_one(&server, "short", "encrypted", None).await;
    assert_failed(&mut outcome, "bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_host_fails() {
    let server = FaultyServer::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let authority = closed.local_addr().unwrap().to_string();
    drop(closed);
    // Retried (connection refused is transient) until the retry budget is spent.
    let budget = vec![("C4GH_RETRY_BUDGET".to_owned(), "2s".to_owned())];
    let started = std::time::Instant::now();
    let mut outcome = run_one_with(
        &server,
        "whatever",
        "encrypted",
        Some(authority.clone()),
        budget,
    )
    .await;
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    assert_failed(&mut outcome, &authority);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_not_found_statuses_fail_with_the_status() {
    let server = FaultyServer::start().await;
    for status in [401u16, 403, 404] {
        let id = format!("status{status}");
        setup(
            &server,
            &id,
            Fault {
                object_status: Some(status),
                ..Fault::default()
            },
        );
        let mut outcome = run_one(&server, &id, "encrypted", None).await;
        assert_failed(&mut outcome, &status.to_string());
        // 4xx are not retried.
        assert_eq!(server.object_requests(&id), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_outside_the_allow_list_is_refused_without_contact() {
    let server = FaultyServer::start().await;
    setup(&server, "denied", Fault::default());
    let work = tempfile::tempdir().unwrap();
    let env = RunEnv {
        inputs: format!(
            r#"[{{"url":"{}","path":"{}/data/obj.bin"}}]"#,
            server.drs_uri("denied"),
            work.path().display()
        ),
        key_dir: work.path().join("key"),
        root: work.path().join("data"),
        ca_pem: server.ca_pem().to_owned(),
        token: None,
        allowed_host: "drs.example.org".into(),
        extra: Vec::new(),
    };
    let mut sidecar = Sidecar::start(&env, work.path());
    let status = tokio::task::block_in_place(|| sidecar.wait_settled());
    let mut outcome = Outcome {
        status,
        work,
        sidecar,
    };
    assert_failed(&mut outcome, "not in C4GH_ALLOWED_HOSTS");
    assert_eq!(server.object_requests("denied"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_outside_the_roots_fails_that_input() {
    let server = FaultyServer::start().await;
    setup(&server, "escape", Fault::default());
    let work = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("data")).unwrap();
    std::os::unix::fs::symlink(outside.path(), work.path().join("data/link")).unwrap();
    let env = RunEnv {
        inputs: format!(
            r#"[{{"url":"{}","path":"{}/data/link/obj.bin"}}]"#,
            server.drs_uri("escape"),
            work.path().display()
        ),
        key_dir: work.path().join("key"),
        root: work.path().join("data"),
        ca_pem: server.ca_pem().to_owned(),
        token: None,
        allowed_host: server.authority(),
        extra: Vec::new(),
    };
    let mut sidecar = Sidecar::start(&env, work.path());
    let status = tokio::task::block_in_place(|| sidecar.wait_settled());
    assert_eq!(status.phase, Phase::Failed);
    let error = status.inputs[0].error.clone().unwrap();
    assert!(error.contains("through a symlink"), "{error}");
    assert!(
        Path::new(outside.path())
            .read_dir()
            .unwrap()
            .next()
            .is_none()
    );
    assert!(sidecar.signal_and_wait(Signal::SIGTERM).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_over_the_limit_fails_before_writing() {
    let server = FaultyServer::start().await;
    setup(&server, "toolarge", Fault::default());
    let limit = vec![(
        "C4GH_MAX_PLAINTEXT_BYTES".to_owned(),
        (SIZE - 1).to_string(),
    )];
    let mut outcome = run_one_with(&server, "toolarge", "plaintext", None, limit).await;
    assert_failed(&mut outcome, "C4GH_MAX_PLAINTEXT_BYTES");
    assert_eq!(server.body_requests("toolarge").0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_list_fails_the_gate_with_the_reason() {
    let work = tempfile::tempdir().unwrap();
    let env = RunEnv {
        inputs: r#"[{"url": "drs://h/1", "path": "/x", "mode": "zip"}]"#.into(),
        key_dir: work.path().join("key"),
        root: work.path().join("data"),
        ca_pem: String::new(),
        token: None,
        allowed_host: "h".into(),
        extra: Vec::new(),
    };
    let mut sidecar = Sidecar::start(&env, work.path());
    let status = tokio::task::block_in_place(|| sidecar.wait_settled());
    assert_eq!(status.phase, Phase::Failed);
    assert!(
        status.message.contains("unknown variant `zip`"),
        "{}",
        status.message
    );
    // The probe passes (so the pod moves on to the gate), the gate fails with the reason.
    let probe = std::process::Command::new(common::sidecar_bin())
        .arg("probe")
        .env("C4GH_KEY_DIR", &env.key_dir)
        .status()
        .unwrap();
    assert!(probe.success());
    let (gate, termination, _) = run_gate(&env.key_dir, work.path(), 5);
    assert_eq!(gate.code(), Some(1));
    assert!(termination.contains("input list rejected"), "{termination}");
    assert!(sidecar.signal_and_wait(Signal::SIGTERM).success());
}

/// Regression: an empty `C4GH_ALLOWED_HOSTS` used to let `run` contact any host (with a
/// warning). It now fails closed before any request and says what to set; the explicit
/// development switch `C4GH_ALLOW_ANY_HOST=true` restores the old behaviour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_allow_list_fails_closed_unless_any_host_is_allowed() {
    let server = FaultyServer::start().await;
    let plaintext = setup(&server, "open", Fault::default());
    let env = |work: &Path, extra: Vec<(String, String)>| RunEnv {
        inputs: format!(
            r#"[{{"url":"{}","path":"{}/data/obj.bin","mode":"plaintext"}}]"#,
            server.drs_uri("open"),
            work.display()
        ),
        key_dir: work.join("key"),
        root: work.join("data"),
        ca_pem: server.ca_pem().to_owned(),
        token: None,
        allowed_host: String::new(),
        extra,
    };

    let work = tempfile::tempdir().unwrap();
    let mut sidecar = Sidecar::start(&env(work.path(), Vec::new()), work.path());
    let status = tokio::task::block_in_place(|| sidecar.wait_settled());
    assert_eq!(status.phase, Phase::Failed, "{status:?}");
    for needle in ["C4GH_ALLOWED_HOSTS is empty", "C4GH_ALLOW_ANY_HOST=true"] {
        assert!(status.message.contains(needle), "{:?}", status.message);
    }
    assert_eq!(server.object_requests("open"), 0);
    let (gate, termination, _) = run_gate(&work.path().join("key"), work.path(), 5);
    assert_eq!(gate.code(), Some(1));
    assert!(
        termination.contains("C4GH_ALLOWED_HOSTS is empty"),
        "{termination}"
    );
    assert!(entries_under(&work.path().join("data")).is_empty());
    assert!(sidecar.signal_and_wait(Signal::SIGTERM).success());

    let work = tempfile::tempdir().unwrap();
    let allow = vec![("C4GH_ALLOW_ANY_HOST".to_owned(), "true".to_owned())];
    let mut sidecar = Sidecar::start(&env(work.path(), allow), work.path());
    let status = tokio::task::block_in_place(|| sidecar.wait_settled());
    let mut outcome = Outcome {
        status,
        work,
        sidecar,
    };
    assert_ready_with(&mut outcome, &plaintext);
}

/// The pipelined `plaintext` path (network task → channel → decrypting threads): a body that
/// decrypts cleanly but fails the checksum, and a cut-off body, both fail with their specific
/// error and leave neither a final-named file nor a `.part`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_checksum_mismatch_and_truncation_leave_nothing() {
    let cases = [
        (
            "pbadsum",
            Fault {
                wrong_checksum: true,
                ..Fault::default()
            },
            "sha-256",
        ),
        (
            "pshort",
            Fault {
                truncate_body: Some(100_000),
                ..Fault::default()
            },
            "bytes",
        ),
    ];
    for (id, fault, needle) in cases {
        let server = FaultyServer::start().await;
        setup(&server, id, fault);
        let mut outcome = run_one(&server, id, "plaintext", None).await;
        assert_failed(&mut outcome, needle);
    }
}

/// Regression (issue "Every byte verified"): an object that lists no usable checksum (here
/// its checksum type is garbled) used to be committed in `encrypted` mode without any check.
/// Every body segment is now authenticated with the header's data key while it streams: a body
/// damaged once is fetched again and delivered byte-exact; one damaged every time fails with
/// the specific error and leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_body_without_usable_checksum_is_authenticated_segment_by_segment() {
    let server = FaultyServer::start().await;
    let garbled = Some("sha-2r6".to_owned());
    let plaintext = setup(
        &server,
        "once",
        Fault {
            checksum_type: garbled.clone(),
            corrupt_body: Some((300_000, 1)),
            ..Fault::default()
        },
    );
    let mut outcome = run_one(&server, "once", "encrypted", None).await;
    assert_eq!(
        server.body_requests("once").0,
        2,
        "fetched again after the bad segment"
    );
    let input = &outcome.status.inputs[0];
    assert_eq!(input.checks, ["size", "etag", "segments"], "{input:?}");
    let file = std::fs::read(outcome.target()).unwrap();
    let log = outcome.sidecar.log_text();
    assert!(log.contains("starting over"), "the restart is logged");
    let key = c4gh::SecretKey::read_file(&outcome.work.path().join("key/ephemeral.sec"), || None)
        .unwrap();
    let mut plain = Vec::new();
    c4gh::decrypt(&mut &file[..], &mut plain, &[&key]).unwrap();
    assert_eq!(plain, plaintext);
    assert_ready_with_file(&mut outcome);

    setup(
        &server,
        "always",
        Fault {
            checksum_type: garbled,
            corrupt_body: Some((70_000, usize::MAX)),
            ..Fault::default()
        },
    );
    let mut outcome = run_one(&server, "always", "encrypted", None).await;
    assert_failed(&mut outcome, "failed authentication");
    assert_eq!(server.body_requests("always").0, 4, "1 + 3 restarts");
}

fn assert_ready_with_file(outcome: &mut Outcome) {
    assert_eq!(outcome.status.phase, Phase::Ready, "{:?}", outcome.status);
    let (gate, _, _) = run_gate(&outcome.work.path().join("key"), outcome.work.path(), 5);
    assert!(gate.success());
    assert!(outcome.sidecar.signal_and_wait(Signal::SIGTERM).success());
}
