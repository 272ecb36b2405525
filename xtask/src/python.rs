//! The reference Python tools in a virtualenv outside the source tree.

use std::env;
use std::fs;
use std::path::PathBuf;

use crate::run::{Cmd, Error};

/// Pinned so that interoperability results are reproducible.
const PACKAGES: &[&str] = &[
    "crypt4gh==1.8.6",
    "drs-compliance-suite==1.0.3",
    "jsonschema",
    "werkzeug<3",
];

/// Same rule as `testkit::cache_dir` (xtask stays dependency-free, so it is repeated here).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = env::var_os("C4GH_SIDECAR_CACHE") {
        return PathBuf::from(dir);
    }
    let base = env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(env::temp_dir);
    base.join("crypt4gh-sidecar")
}

/// Creates the virtualenv and installs [`PACKAGES`] unless a stamp says it is already done.
pub fn ensure_venv() -> Result<(), Error> {
    let venv = cache_dir().join("venv");
    let stamp = venv.join(".installed");
    let wanted = PACKAGES.join("\n");
    if fs::read_to_string(&stamp).is_ok_and(|have| have == wanted) {
        return Ok(());
    }
    let python = env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    Cmd::new(python)
        .args(["-m", "venv", "--clear"])
        .arg_path(&venv)
        .run()?;
    let pip = venv.join("bin").join("pip");
    Cmd::new(&pip)
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(PACKAGES)
        .run()?;
    // drs-compliance-suite 1.0.3 imports a module its wheel does not ship (REFERENCE.md).
    let site = site_packages(&venv)?;
    fs::write(
        site.join("supported_drs_versions.py"),
        "SUPPORTED_DRS_VERSIONS = [\"1.2.0\"]\n",
    )
    .map_err(|err| Error::Message(format!("writing supported_drs_versions.py: {err}")))?;
    fs::write(&stamp, wanted)
        .map_err(|err| Error::Message(format!("writing {}: {err}", stamp.display())))
}

fn site_packages(venv: &std::path::Path) -> Result<PathBuf, Error> {
    let lib = venv.join("lib");
    let entries = fs::read_dir(&lib)
        .map_err(|err| Error::Message(format!("reading {}: {err}", lib.display())))?;
    for entry in entries.flatten() {
        let candidate = entry.path().join("site-packages");
        if candidate.is_dir() {
            return Ok(candidate);
        }
    }
    Err(Error::Message(format!(
        "no site-packages under {}",
        lib.display()
    )))
}
