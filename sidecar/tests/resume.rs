//! `c4gh-sidecar fetch` continues an `encrypted` body across reruns: the real binary against
//! the real `c4gh-drs-server` (in process, TLS on loopback) behind a loopback pass-through that
//! slows the body down so the first run can be killed in the middle of it. Bytes are counted at
//! the server (its `body_bytes` counter); the result is read by the reference Python
//! `crypt4gh`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use c4gh_sidecar::status::Phase;
use common::throttle::Throttle;
use common::{RunEnv, Sidecar, entries_under, pattern, sidecar_bin};
use drs_server::testing::TestServer;
use nix::sys::signal::Signal;

const SIZE: usize = 8 << 20;
/// A partial is kept in whole encrypted segments.
const SEGMENT: u64 = c4gh::body::CIPHER_SEGMENT_SIZE as u64;

struct Setup {
    server: TestServer,
    throttle: Throttle,
    work: tempfile::TempDir,
    uri: String,
}

impl Setup {
    async fn new(plain: &[u8]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = listener.local_addr().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = TestServer::start_with(|config| {
            config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            config.settings.public_url = Some(format!("https://{front}"));
        })
        .await
        .unwrap();
        let throttle = Throttle::start(listener, server.server().local_addr());
        server.add("big", plain, &["*"]).unwrap();
        let work = tempfile::tempdir().unwrap();
        std::fs::write(work.path().join("ca.pem"), server.ca_pem()).unwrap();
        std::fs::write(work.path().join("token"), server.token().expose()).unwrap();
        Setup {
            server,
            throttle,
            work,
            uri: format!("drs://{front}/big"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    fn command(&self) -> Command {
        let mut c = Command::new(sidecar_bin());
        c.arg("fetch")
            .arg(&self.uri)
            .arg("-o")
            .arg(self.path("big.c4gh"))
            .arg("--key-out")
            .arg(self.path("k.sec"))
            .arg("--no-progress")
            .env_clear()
            .env("C4GH_CA_BUNDLE", self.path("ca.pem"))
            .env("C4GH_TOKEN_FILE", self.path("token"))
            .env("C4GH_DRS_ALLOW_PORT", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// Starts a slowed-down fetch and SIGKILLs it once its partial body has `bytes`; returns
    /// what it logged.
    fn killed_run(&self, bytes: u64) -> String {
        self.throttle
            .slow
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut child = self.command().spawn().unwrap();
        wait_for_part(&mut child, &self.path(".big.c4gh.part"), bytes);
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs the fetch at full speed; returns its output and the body bytes the server sent.
    fn full_run(&self) -> (Output, u64) {
        self.throttle
            .slow
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let before = self.body_bytes();
        let out = self.command().output().unwrap();
        (out, self.body_bytes() - before)
    }

    fn body_bytes(&self) -> u64 {
        self.server.server().state().metrics().body_bytes.get()
    }
}

fn wait_for_part(child: &mut Child, part: &Path, bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(part).map_or(0, |m| m.len()) < bytes {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the fetch ended ({status}) before its partial body had {bytes} bytes");
        }
        assert!(Instant::now() < deadline, "no partial body after 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `offset` of the sidecar's "resuming" log line (text `offset=N` or JSON `"offset":N`).
fn resumed_offset(log: &str) -> Option<u64> {
    let line = log
        .lines()
        .find(|l| l.contains("from an earlier run verified"))?;
    let (at, len) = ["offset=", "\"offset\":"]
        .iter()
        .find_map(|k| line.find(k).map(|at| (at, k.len())))?;
    let rest = &line[at + len..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_fetch_continues_on_rerun_and_a_damaged_partial_is_refetched() {
    let plain = pattern(SIZE, 21);
    let s = Setup::new(&plain).await;
    let (dest, key) = (s.path("big.c4gh"), s.path("k.sec"));
    let record = s.path(".big.c4gh.resume.json");

    // Run 1, killed mid-body: a hidden partial and its record, no final file, no key file.
    s.killed_run(2 << 20);
    assert!(!dest.exists() && !key.exists(), "a killed run left outputs");
    assert!(record.exists(), "no resume record beside the partial");

    // Damage the kept prefix: run 2 must refuse it, say why, and start from byte 0.
    let part = s.path(".big.c4gh.part");
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[1 << 20] ^= 0x40;
    std::fs::write(&part, &bytes).unwrap();
    let log = s.killed_run(3 << 20);
    assert!(
        log.contains("discarded") && log.contains("authentication"),
        "the damaged partial was not discarded with its reason:\n{log}"
    );
    assert!(
        resumed_offset(&log).is_none(),
        "resumed a damaged partial:\n{log}"
    );

    // Run 3 at full speed: only the remainder crosses the network.
    let kept = std::fs::metadata(&part).unwrap().len();
    let (out, sent) = s.full_run();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rerun failed:\n{log}");
    let offset = resumed_offset(&log).unwrap_or_else(|| panic!("no resume:\n{log}"));
    assert!(
        offset >= 2 << 20 && offset <= kept,
        "offset {offset}, partial {kept}"
    );
    assert_eq!(
        sent,
        body_len(SIZE) - offset,
        "the server sent {sent} body bytes for a rerun that kept {offset}"
    );
    eprintln!(
        "rerun: kept {offset} of {} body bytes, server sent {sent}",
        body_len(SIZE)
    );
    assert_eq!(
        testkit::reference::decrypt_with_env_key(&dest, &key).unwrap(),
        plain
    );
    assert!(
        !part.exists() && !record.exists(),
        "partial left after success"
    );
}

/// Encrypted body length of `plain` plaintext bytes.
fn body_len(plain: usize) -> u64 {
    c4gh::body::encrypted_len(plain as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_out_is_not_written_when_every_fetch_fails() {
    let plain = pattern(100_000, 22);
    let s = Setup::new(&plain).await;
    s.throttle
        .slow
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let key = s.path("k.sec");
    let out = Command::new(sidecar_bin())
        .arg("fetch")
        .arg(s.uri.replace("/big", "/missing"))
        .arg("-o")
        .arg(s.path("missing.c4gh"))
        .arg("--key-out")
        .arg(&key)
        .env_clear()
        .env("C4GH_CA_BUNDLE", s.path("ca.pem"))
        .env("C4GH_TOKEN_FILE", s.path("token"))
        .env("C4GH_DRS_ALLOW_PORT", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    assert!(
        !key.exists(),
        "--key-out written although nothing was fetched"
    );
    let (out, _) = s.full_run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        testkit::reference::decrypt_with_env_key(&s.path("big.c4gh"), &key).unwrap(),
        plain
    );
}

/// Pod mode shares the code: a sidecar SIGKILLed mid-body (a container restart) leaves the
/// partial on the shared volume, and the restarted sidecar — with a new ephemeral key —
/// continues it; a graceful stop then removes everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_pod_sidecar_continues_the_partial_of_the_killed_one() {
    let plain = pattern(SIZE, 23);
    let s = Setup::new(&plain).await;
    let data = s.path("data");
    let dest = data.join("in/big.c4gh");
    let env = RunEnv {
        inputs: format!(r#"[{{"url":"{}","path":"{}"}}]"#, s.uri, dest.display()),
        key_dir: s.path("key"),
        root: data.clone(),
        ca_pem: s.server.ca_pem(),
        token: Some(s.server.token().expose().to_owned()),
        allowed_host: s.uri["drs://".len()..s.uri.len() - "/big".len()].to_owned(),
        extra: Vec::new(),
    };
    let mut first = Sidecar::start(&env, s.work.path());
    wait_for_part(&mut first.child, &data.join("in/.big.c4gh.part"), 2 << 20);
    assert!(!first.signal_and_wait(Signal::SIGKILL).success());

    s.throttle
        .slow
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let before = s.body_bytes();
    let mut second = Sidecar::start(&env, s.work.path());
    let status = second.wait_settled();
    let log = second.log_text();
    assert_eq!(status.phase, Phase::Ready, "{log}");
    let offset = resumed_offset(&log).unwrap_or_else(|| panic!("no resume:\n{log}"));
    assert!(offset + SEGMENT > 2 << 20, "offset {offset}");
    assert_eq!(s.body_bytes() - before, body_len(SIZE) - offset);
    let key = env.key_dir.join("ephemeral.sec");
    assert_eq!(
        testkit::reference::decrypt_with_env_key(&dest, &key).unwrap(),
        plain
    );
    assert!(second.signal_and_wait(Signal::SIGTERM).success());
    assert_eq!(
        entries_under(&data),
        vec!["in".to_owned(), "in/big.c4gh".to_owned()]
    );
}

/// A fetch that gives up (the server went away for longer than the retry budget) keeps its
/// partial and says so; the same command run again continues it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_that_gave_up_keeps_its_partial_for_the_rerun() {
    let plain = pattern(SIZE, 24);
    let s = Setup::new(&plain).await;
    let part = s.path(".big.c4gh.part");
    s.throttle
        .slow
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut child = s.command().args(["--retry-budget", "1s"]).spawn().unwrap();
    wait_for_part(&mut child, &part, 2 << 20);
    s.throttle
        .refuse
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("partial body kept"), "{log}");
    assert!(part.exists() && s.path(".big.c4gh.resume.json").exists());
    assert!(!s.path("big.c4gh").exists() && !s.path("k.sec").exists());

    s.throttle
        .refuse
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let (out, sent) = s.full_run();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let offset = resumed_offset(&log).unwrap_or_else(|| panic!("no resume:\n{log}"));
    assert!(offset + SEGMENT > 2 << 20, "offset {offset}");
    assert_eq!(sent, body_len(SIZE) - offset);
    assert_eq!(
        testkit::reference::decrypt_with_env_key(&s.path("big.c4gh"), &s.path("k.sec")).unwrap(),
        plain
    );
}
