//! Helpers shared by the sidecar's integration tests: running the real binary, waiting for a
//! phase, signalling it, reading what it wrote.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod faulty;
pub mod proxy;
pub mod throttle;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use c4gh_sidecar::status::{Phase, Status};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The binary under test.
pub fn sidecar_bin() -> &'static str {
    env!("CARGO_BIN_EXE_c4gh-sidecar")
}

/// A `c4gh-sidecar run` child with its stdout/stderr going to files.
pub struct Sidecar {
    pub child: Child,
    pub key_dir: PathBuf,
    pub log: PathBuf,
}

/// Environment for a run: inputs, key dir, one input root, TLS trust and the DRS authority.
pub struct RunEnv {
    pub inputs: String,
    pub key_dir: PathBuf,
    pub root: PathBuf,
    pub ca_pem: String,
    pub token: Option<String>,
    pub allowed_host: String,
    pub extra: Vec<(String, String)>,
}

impl Sidecar {
    /// Starts `run` with `env`; logs go to `<key_dir>/../sidecar-N.log`.
    pub fn start(env: &RunEnv, work: &Path) -> Sidecar {
        Self::start_with(env, work, |_| {})
    }

    /// Like [`Sidecar::start`], letting the caller adjust the command (uid, env).
    pub fn start_with(env: &RunEnv, work: &Path, adjust: impl FnOnce(&mut Command)) -> Sidecar {
        Self::start_program(Path::new(sidecar_bin()), env, work, adjust)
    }

    /// Like [`Sidecar::start_with`], running the sidecar binary at `program` (a copy another
    /// uid can reach when the checkout's directories are private).
    pub fn start_program(
        program: &Path,
        env: &RunEnv,
        work: &Path,
        adjust: impl FnOnce(&mut Command),
    ) -> Sidecar {
        std::fs::create_dir_all(&env.key_dir).unwrap();
        std::fs::create_dir_all(&env.root).unwrap();
        let ca = work.join("ca.pem");
        std::fs::write(&ca, &env.ca_pem).unwrap();
        let mut n = 0;
        let log = loop {
            let candidate = work.join(format!("sidecar-{n}.log"));
            if !candidate.exists() {
                break candidate;
            }
            n += 1;
        };
        let out = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(program);
        command
            .arg("run")
            .env_clear()
            .env("C4GH_INPUTS", &env.inputs)
            .env("C4GH_KEY_DIR", &env.key_dir)
            .env("C4GH_INPUT_ROOTS", &env.root)
            .env("C4GH_CA_BUNDLE", &ca)
            .env("C4GH_DRS_ALLOW_PORT", "true")
            .env("C4GH_ALLOWED_HOSTS", &env.allowed_host)
            .env("C4GH_LOG_FORMAT", "json")
            .env("RUST_LOG", "debug")
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        if let Some(token) = &env.token {
            let file = work.join("token");
            std::fs::write(&file, token).unwrap();
            command.env("C4GH_TOKEN_FILE", file);
        }
        for (k, v) in &env.extra {
            command.env(k, v);
        }
        adjust(&mut command);
        let child = command.spawn().unwrap();
        Sidecar {
            child,
            key_dir: env.key_dir.clone(),
            log,
        }
    }

    /// Waits until the phase is `Ready` or `Failed` (panics after 60 s or if the process died).
    pub fn wait_settled(&mut self) -> Status {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(status) = Status::read(&self.key_dir.join("status.json"))
                && matches!(status.phase, Phase::Ready | Phase::Failed)
            {
                return status;
            }
            if let Some(exit) = self.child.try_wait().unwrap() {
                panic!("sidecar exited early ({exit}); log:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "sidecar not settled after 60 s; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` and waits for the exit (at most 20 s).
    pub fn signal_and_wait(&mut self, signal: Signal) -> ExitStatus {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return exit;
            }
            assert!(Instant::now() < deadline, "sidecar ignored {signal}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The captured stdout + stderr.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `c4gh-sidecar gate` against `key_dir`; returns (exit status, termination log text).
pub fn run_gate(key_dir: &Path, work: &Path, timeout_secs: u64) -> (ExitStatus, String, String) {
    let term = work.join("termination-log");
    let _ = std::fs::remove_file(&term);
    let output = Command::new(sidecar_bin())
        .args(["gate", "--poll-ms", "20"])
        .env_clear()
        .env("C4GH_KEY_DIR", key_dir)
        .env("C4GH_GATE_TIMEOUT", timeout_secs.to_string())
        .env("C4GH_TERMINATION_LOG", &term)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status,
        std::fs::read_to_string(&term).unwrap_or_default(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every regular file under `dir` (recursively), FIFOs and symlinks excluded.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            out.extend(files_under(&path));
        } else if meta.is_file() {
            out.push(path);
        }
    }
    out
}

/// Every entry (any type) under `dir`, recursively, as paths relative to `dir`.
pub fn entries_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(base).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                walk(base, &path, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Deterministic test bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// Starts the real `c4gh-drs-server` (in process, TLS on loopback) with its public URL set, so
/// access URLs do not depend on the request's `Host` header (HTTP/2 requests carry
/// `:authority` instead; see the report on drs-server).
pub async fn start_drs_server() -> drs_server::testing::TestServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    drs_server::testing::TestServer::start_with(|config| {
        config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        config.settings.public_url = Some(format!("https://127.0.0.1:{port}"));
    })
    .await
    .unwrap()
}
