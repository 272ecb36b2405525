//! The CWL client of `tests/tests/cwl_tes.rs`: `cwl-tes` 0.3.0 (PyPI, the last release; it pins
//! `cwltool==1.0.20191022103248`, which runs on Python 3.7 only) in its own virtualenv under the
//! cache directory, with `bagit<1.9` (bagit 1.9's sdist needs a `setuptools-scm` that Python 3.7
//! does not have) and the test's FTP store, `pyftpdlib` with `pyOpenSSL` (cwl-tes speaks
//! FTP over TLS, TESK's filer plain FTP). Stamped: only the first setup installs.
//!
//! Python 3.7 is found as `$PYTHON37`, else `python3.7` on `PATH`, else pyenv's
//! `$PYENV_ROOT/versions/3.7.*/bin/python3.7` (`~/.pyenv` by default).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use crate::python::cache_dir;
use crate::run::{Cmd, Error};

/// Pinned so that the chain is reproducible.
const PACKAGES: &[&str] = &[
    "cwl-tes==0.3.0",
    "bagit==1.8.1",
    "pyftpdlib==2.2.0",
    "pyOpenSSL==25.3.0",
];

/// The virtualenv's directory.
pub fn venv_dir() -> PathBuf {
    cache_dir().join("venv-cwltes")
}

/// Creates the virtualenv and installs [`PACKAGES`] unless its stamp says it is done.
pub fn ensure() -> Result<(), Error> {
    let venv = venv_dir();
    let stamp = venv.join(".installed");
    let wanted = PACKAGES.join("\n");
    if fs::read_to_string(&stamp).is_ok_and(|have| have == wanted) {
        return Ok(());
    }
    let python = python37()?;
    Cmd::new(&python)
        .args(["-m", "venv", "--clear"])
        .arg_path(&venv)
        .run()?;
    Cmd::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(PACKAGES)
        .run()?;
    Cmd::new(venv.join("bin").join("cwl-tes"))
        .arg("--version")
        .run()?;
    fs::write(&stamp, wanted)
        .map_err(|err| Error::Message(format!("writing {}: {err}", stamp.display())))
}

/// A Python 3.7 interpreter (see the module docs).
fn python37() -> Result<PathBuf, Error> {
    if let Some(python) = env::var_os("PYTHON37") {
        return Ok(PathBuf::from(python));
    }
    if runs(Path::new("python3.7")) {
        return Ok(PathBuf::from("python3.7"));
    }
    let root = env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    if let Some(versions) = root.map(|r| r.join("versions"))
        && let Ok(entries) = fs::read_dir(&versions)
    {
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("3.7."))
            .map(|e| e.path().join("bin").join("python3.7"))
            .filter(|p| runs(p))
            .collect();
        found.sort();
        if let Some(python) = found.pop() {
            return Ok(python);
        }
    }
    Err(Error::Message(
        "cwl-tes 0.3.0 needs Python 3.7, and none was found: set PYTHON37, put python3.7 on \
         PATH, or install it with pyenv (`pyenv install 3.7`)"
            .into(),
    ))
}

/// Whether `python --version` runs (a pyenv shim for a version not selected fails).
fn runs(python: &Path) -> bool {
    std::process::Command::new(python)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
