//! End-to-end test harness for crypt4gh-sidecar: a real Kubernetes control plane on loopback.
//!
//! [`ControlPlane::start`] runs `etcd`, `kube-apiserver` and optionally
//! `kube-controller-manager` (built by `cargo xtask setup` from pinned Go modules, see
//! `tests/control-plane/`), with certificates generated at test time, and hands out
//! [`kube::Client`]s authenticated as the cluster admin. Dropping it stops every process, also
//! when a test fails.
//!
//! ```no_run
//! # async fn demo() -> Result<(), c4gh_e2e::Error> {
//! use c4gh_e2e::{ControlPlane, Options};
//! let plane = ControlPlane::start(Options::default()).await?;
//! let client = plane.client().await?;
//! # drop(client);
//! # Ok(())
//! # }
//! ```

pub mod balancer;
pub mod bench;
pub mod cluster;
pub mod control_plane;
pub mod ftp;
pub mod manifests;
pub mod node;
pub mod node_bench;
pub mod operator;
pub mod pki;
pub mod process;
pub mod reference;
pub mod relay;
pub mod scenario;
pub mod sda;
pub mod seaweed;
pub mod tesk;
pub mod tesk_fixtures;
pub mod workspace;

pub use control_plane::{ControlPlane, Options};

/// Why the harness could not do what a test asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A process exited while it was expected to run.
    #[error("{name} exited unexpectedly ({status}); last log lines:\n{log_tail}")]
    Exited {
        /// Which process.
        name: String,
        /// Its exit status.
        status: String,
        /// The end of its log.
        log_tail: String,
    },
    /// Something did not become ready in time.
    #[error("timed out waiting for {what}; last log lines:\n{log_tail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The end of the relevant log.
        log_tail: String,
    },
    /// A component the tests need is not there.
    #[error("{what} is missing at {}; build it with `{fix}`", path.display())]
    Missing {
        /// The component.
        what: String,
        /// Where it was looked for.
        path: std::path::PathBuf,
        /// The command that provides it.
        fix: String,
    },
    /// A command exited unsuccessfully.
    #[error("`{command}` failed:\n{output}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed.
        output: String,
    },
    /// A check on what the control plane stored failed.
    #[error("{0}")]
    Unexpected(String),
    /// Certificate generation failed.
    #[error(transparent)]
    Certificate(#[from] testkit::tls::TlsError),
    /// Building the Kubernetes client configuration failed.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An HTTP request could not be built.
    #[error("building an HTTP request: {0}")]
    Http(#[from] http::Error),
}
