//! The reference Python `crypt4gh` (the tests' virtualenv) decrypting a file the way its users
//! run it: the secret key named by `--sk`, or by `C4GH_SECRET_KEY` alone (how a task container
//! gets the sidecar's key).
//!
//! ```no_run
//! # use std::path::Path;
//! let plaintext = testkit::reference::decrypt(Path::new("x.c4gh"), Path::new("k.sec")).unwrap();
//! # let _ = plaintext;
//! ```

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::python_tool;

/// Why the reference `crypt4gh decrypt` gave no plaintext.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The input could not be opened or the command not started.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: io::Error,
    },
    /// `crypt4gh decrypt` exited unsuccessfully.
    #[error("crypt4gh decrypt {} failed: {stderr}", file.display())]
    Failed {
        /// The file it was given.
        file: PathBuf,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// `crypt4gh decrypt --sk SK < FILE`: the plaintext.
///
/// # Errors
///
/// [`ReferenceError`] when the file cannot be read or the reference refuses it.
///
/// # Panics
///
/// When the reference tools are not installed (see [`python_tool`]).
pub fn decrypt(file: &Path, sk: &Path) -> Result<Vec<u8>, ReferenceError> {
    let mut command = Command::new(python_tool("crypt4gh"));
    command.arg("decrypt").arg("--sk").arg(sk);
    run(command, file)
}

/// `C4GH_SECRET_KEY=SK crypt4gh decrypt < FILE` in an otherwise empty environment: what a task
/// that knows only the variable the sidecar sets can do.
///
/// # Errors
///
/// As [`decrypt`].
///
/// # Panics
///
/// As [`decrypt`].
pub fn decrypt_with_env_key(file: &Path, sk: &Path) -> Result<Vec<u8>, ReferenceError> {
    let mut command = Command::new(python_tool("crypt4gh"));
    command
        .arg("decrypt")
        .env_clear()
        .env("C4GH_SECRET_KEY", sk);
    run(command, file)
}

fn run(mut command: Command, file: &Path) -> Result<Vec<u8>, ReferenceError> {
    let input = File::open(file).map_err(|source| ReferenceError::Io {
        context: format!("opening {}", file.display()),
        source,
    })?;
    let out = command
        .stdin(input)
        .output()
        .map_err(|source| ReferenceError::Io {
            context: "running crypt4gh decrypt".to_owned(),
            source,
        })?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(ReferenceError::Failed {
            file: file.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
