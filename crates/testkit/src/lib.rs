//! Test support shared by the workspace.
//!
//! Tests in this project run against real components: the reference Python `crypt4gh`
//! implementation, the GA4GH DRS compliance suite, and a real `kube-apiserver` + `etcd`.
//! `cargo xtask setup` installs them into a cache directory outside the source tree; this crate
//! tells tests where they are. A missing component is a **test failure** with a message that
//! says how to install it — never a silent skip.
//!
//! [`reference`] runs the reference `crypt4gh decrypt`; [`tls`] is the one throw-away TLS CA
//! (and rustls server/client configurations) that every crate's tests use for loopback HTTPS
//! servers.
//!
//! ```
//! let dir = testkit::cache_dir();
//! match std::env::var_os("C4GH_SIDECAR_CACHE") {
//!     Some(moved) => assert_eq!(dir, std::path::PathBuf::from(moved)),
//!     None => assert!(dir.ends_with("crypt4gh-sidecar")),
//! }
//! ```

pub mod reference;
pub mod tls;

use std::env;
use std::path::{Path, PathBuf};

/// The directory where `cargo xtask setup` puts tools that tests need.
///
/// `$C4GH_SIDECAR_CACHE` if set, else `$XDG_CACHE_HOME/crypt4gh-sidecar`, else
/// `$HOME/.cache/crypt4gh-sidecar`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = env::var_os("C4GH_SIDECAR_CACHE") {
        return PathBuf::from(dir);
    }
    let base = env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(env::temp_dir);
    base.join("crypt4gh-sidecar")
}

/// The Python virtualenv holding the reference `crypt4gh` (and `drs-compliance-suite`).
pub fn python_venv() -> PathBuf {
    cache_dir().join("venv")
}

/// Path of an executable installed in the reference Python virtualenv, e.g. `crypt4gh`,
/// `crypt4gh-keygen`, `python`, `drs-compliance-suite`.
///
/// # Panics
///
/// Panics (failing the test) when the executable is missing, naming the command that installs it.
pub fn python_tool(name: &str) -> PathBuf {
    let path = python_venv().join("bin").join(name);
    require(&path, "the reference Python tools");
    path
}

/// Directory holding `kube-apiserver`, `etcd` and `kube-controller-manager`.
///
/// `$KUBEBUILDER_ASSETS` if set (the convention of the controller-runtime ecosystem), else the
/// directory `cargo xtask setup` builds them into.
pub fn control_plane_dir() -> PathBuf {
    env::var_os("KUBEBUILDER_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("control-plane").join("bin"))
}

/// Path of one control-plane binary (`kube-apiserver`, `etcd`, `kube-controller-manager`).
///
/// # Panics
///
/// Panics (failing the test) when the binary is missing, naming the command that builds it.
pub fn control_plane_binary(name: &str) -> PathBuf {
    let path = control_plane_dir().join(name);
    require(&path, "the Kubernetes control-plane binaries");
    path
}

/// Fails the calling test unless `path` exists. Tests never skip for a missing component.
///
/// # Panics
///
/// Panics when `path` does not exist.
pub fn require(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what}: {} is missing. Run `cargo xtask setup` (or `cargo xtask test`, which runs it) \
         to install it; tests do not skip when a component is missing.",
        path.display()
    );
}
