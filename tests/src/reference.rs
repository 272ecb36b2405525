//! The reference Python `crypt4gh` (the tests' virtualenv) as a submitter uses it: a key pair
//! from `crypt4gh-keygen`, and `crypt4gh decrypt --sk` of what came back.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// A submitter's Crypt4GH key pair, made by the reference `crypt4gh-keygen` (unencrypted
/// secret key in a file the test owns).
#[derive(Debug)]
pub struct Submitter {
    /// The secret key file.
    pub sk: PathBuf,
    /// The public key, PEM.
    pub pub_pem: String,
}

impl Submitter {
    /// Makes `dir/NAME.sec` and `dir/NAME.pub` with `crypt4gh-keygen --nocrypt`.
    pub fn keygen(dir: &Path, name: &str) -> Result<Self, Error> {
        let (sk, pk) = (
            dir.join(format!("{name}.sec")),
            dir.join(format!("{name}.pub")),
        );
        let mut command = Command::new(testkit::python_tool("crypt4gh-keygen"));
        command
            .arg("--sk")
            .arg(&sk)
            .arg("--pk")
            .arg(&pk)
            .args(["--nocrypt", "-f"]);
        run(command, "crypt4gh-keygen")?;
        let pub_pem = std::fs::read_to_string(&pk).map_err(|source| Error::Io {
            context: format!("reading {}", pk.display()),
            source,
        })?;
        Ok(Self { sk, pub_pem })
    }

    /// The reference `crypt4gh decrypt --sk` of `file`: the plaintext.
    pub fn decrypt(&self, file: &Path) -> Result<Vec<u8>, Error> {
        testkit::reference::decrypt(file, &self.sk).map_err(|e| Error::Command {
            command: format!("crypt4gh decrypt {}", file.display()),
            output: e.to_string(),
        })
    }
}

/// Runs `command`; its stdout, or [`Error::Command`] with its stderr.
fn run(mut command: Command, what: &str) -> Result<Vec<u8>, Error> {
    let out = command.output().map_err(|source| Error::Io {
        context: format!("running {what}"),
        source,
    })?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(Error::Command {
            command: what.to_owned(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
