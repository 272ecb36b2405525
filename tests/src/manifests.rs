//! Applying the project's `manifests/` to the local control plane with `kubectl apply
//! --server-side` (kustomize directories with `-k`, single files with `-f`), exactly as an
//! operator of a real cluster would.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{ControlPlane, Error};

/// The `kubectl` to use: the one built next to the control plane (`cargo xtask setup`).
pub fn kubectl() -> PathBuf {
    testkit::control_plane_binary("kubectl")
}

/// Server-side applies `path` (a kustomization directory or a YAML file) with field manager
/// `c4gh-e2e`, failing with kubectl's output when anything does not apply cleanly. Returns
/// kubectl's report (one line per object).
pub fn apply(plane: &ControlPlane, path: &Path) -> Result<String, Error> {
    apply_in(plane, path, None)
}

/// Like [`apply`], with objects that name no namespace going to `namespace`.
pub fn apply_in(
    plane: &ControlPlane,
    path: &Path,
    namespace: Option<&str>,
) -> Result<String, Error> {
    let mode = if path.join("kustomization.yaml").is_file() {
        "-k"
    } else {
        "-f"
    };
    let mut command = Command::new(kubectl());
    if let Some(namespace) = namespace {
        command.arg(format!("--namespace={namespace}"));
    }
    let output = command
        .arg(format!("--kubeconfig={}", plane.kubeconfig().display()))
        .args(["apply", "--server-side", "--field-manager=c4gh-e2e", mode])
        .arg(path)
        .output()
        .map_err(|source| Error::Io {
            context: format!("running kubectl apply on {}", path.display()),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(Error::Command {
            command: format!("kubectl apply --server-side {mode} {}", path.display()),
            output: format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
        })
    }
}
