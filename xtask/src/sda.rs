//! The real NeIC SDA v2 download stack for `tests/tests/sda.rs` and `cargo xtask bench sda`:
//! PostgreSQL from Debian (apt package `postgresql`, installed when missing) and SDA's
//! `download` and `reencrypt` services built by `tests/sda/build.sh` from the pinned source
//! snapshot `sda/sda-svc-3.4.3.tar.gz` of the shared peers directory (`../shared/peers` next to
//! the checkout, or `C4GH_PEERS_DIR`) into the cache directory. The script stamps what it built,
//! so only the first setup pays for the Go build.

use std::fs;
use std::path::{Path, PathBuf};

use crate::peers;
use crate::python::cache_dir;
use crate::run::{Cmd, Error};

/// The snapshot, relative to the peers directory.
const TARBALL: &str = "sda/sda-svc-3.4.3.tar.gz";

/// Installs PostgreSQL if needed and builds the SDA services unless the cached build is current.
pub fn ensure() -> Result<(), Error> {
    ensure_postgres()?;
    let tarball = peers::dir(TARBALL)?.join(TARBALL);
    let script = workspace().join("tests").join("sda").join("build.sh");
    Cmd::new("bash")
        .arg_path(&script)
        .arg_path(&tarball)
        .arg_path(&cache_dir().join("sda"))
        .run()
}

/// `cargo xtask bench sda`: `c4gh-sidecar fetch` (release build) from the real SDA v2 vs curl;
/// the driver is a debug build (it only starts processes).
pub fn bench() -> Result<(), Error> {
    Cmd::new("cargo")
        .args(["build", "--release", "--quiet", "-p", "c4gh-sidecar"])
        .run()?;
    Cmd::new("cargo")
        .args(["build", "--quiet", "-p", "c4gh-sidecar"])
        .run()?;
    Cmd::new("cargo")
        .args([
            "run",
            "--quiet",
            "-p",
            "c4gh-e2e",
            "--bin",
            "c4gh-sda-bench",
        ])
        .run()
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn has_postgres() -> bool {
    fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().any(|e| e.path().join("bin/initdb").is_file()))
        .unwrap_or(false)
}

/// Installs Debian's `postgresql` (binaries only; the package's own cluster is not used: the
/// tests make theirs with initdb) when no PostgreSQL server is installed.
fn ensure_postgres() -> Result<(), Error> {
    if has_postgres() {
        return Ok(());
    }
    Cmd::new("apt-get").args(["update", "-q"]).run()?;
    Cmd::new("apt-get")
        .args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "postgresql",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()?;
    if has_postgres() {
        Ok(())
    } else {
        Err(Error::Message(
            "apt-get installed postgresql but /usr/lib/postgresql/*/bin/initdb is missing".into(),
        ))
    }
}
