//! The FTP store of `tests/tests/cwl_tes.rs`: where TESK's outputs filer uploads a task's
//! outputs and cwl-tes reads them back. `tests/cwl/ftp_store.py` (pyftpdlib, in the cwl-tes
//! virtualenv `cargo xtask setup` makes) on one loopback address at port 21: TESK's filer and
//! cwl-tes both connect to the URL's host at FTP's default port and cannot be given another
//! (`ftplib.FTP.connect(netloc)`). One user, with a password made here and handed to the server
//! in its environment and to the clients as a `.netrc` (as both expect); the files live in a
//! directory the test owns, so what reached the store is read from disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::distributions::Alphanumeric;
use zeroize::Zeroizing;

use crate::Error;
use crate::process::Supervised;

/// The store's user name.
pub const USER: &str = "c4gh-e2e";

/// The cwl-tes virtualenv of `cargo xtask setup` (`xtask/src/cwl_tes.rs`).
pub fn cwl_tes_venv() -> PathBuf {
    testkit::cache_dir().join("venv-cwltes")
}

/// A program of the cwl-tes virtualenv; [`Error::Missing`] naming the fix when it is not there.
pub fn cwl_tes_tool(name: &str) -> Result<PathBuf, Error> {
    let path = cwl_tes_venv().join("bin").join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Missing {
            what: format!("{name} (the cwl-tes virtualenv, Python 3.7)"),
            path,
            fix: "cargo xtask setup".into(),
        })
    }
}

/// A running FTP store; dropping it stops the server.
#[derive(Debug)]
pub struct FtpStore {
    process: Supervised,
    address: String,
    root: PathBuf,
    password: Zeroizing<String>,
}

impl FtpStore {
    /// Starts the store on `address`:21 serving `dir/store`, with its state (log, TLS key) in
    /// `dir/ftp-state`, and waits until it listens.
    pub async fn start(dir: &Path, address: &str) -> Result<Self, Error> {
        let python = cwl_tes_tool("python")?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("cwl")
            .join("ftp_store.py");
        let io = |context: String| move |source| Error::Io { context, source };
        let root = dir.join("store");
        let state = dir.join("ftp-state");
        for d in [&root, &state] {
            std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
        }
        let password: Zeroizing<String> = Zeroizing::new(
            rand::thread_rng()
                .sample_iter(&Alphanumeric)
                .take(24)
                .map(char::from)
                .collect(),
        );
        let mut command = Command::new(python);
        command
            .env("FTP_STORE_PASSWORD", password.as_str())
            .env("PYTHONWARNINGS", "ignore")
            .arg(&script)
            .args(["--address", address, "--user", USER, "--max-seconds", "900"])
            .arg("--root")
            .arg(&root)
            .arg("--state")
            .arg(&state);
        let log = state.join("ftp-store.log");
        let mut process = Supervised::spawn("ftp store", command, &log)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = process.try_exit_status()? {
                return Err(Error::Exited {
                    name: "ftp store".into(),
                    status: status.to_string(),
                    log_tail: process.log_tail(20),
                });
            }
            if std::fs::read_to_string(&log).is_ok_and(|l| l.lines().any(|x| x == "ready")) {
                return Ok(Self {
                    process,
                    address: address.to_owned(),
                    root,
                    password,
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("the FTP store on {address}:21"),
                    log_tail: process.log_tail(20),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `ftp://ADDRESS/path` (path without a leading `/`).
    pub fn url(&self, path: &str) -> String {
        format!("ftp://{}/{path}", self.address)
    }

    /// The directory the store serves: what an upload to `ftp://ADDRESS/P` wrote is `root()/P`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A `.netrc` with the store's credentials.
    pub fn netrc(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "machine {} login {USER} password {}\n",
            self.address,
            self.password.as_str()
        ))
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}
