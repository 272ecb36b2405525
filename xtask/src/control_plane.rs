//! The local Kubernetes control plane and node for the end-to-end tests: `kube-apiserver`,
//! `kubectl`, `kube-controller-manager`, `kube-scheduler`, `kubelet`, `etcd`, `containerd`, its
//! runc shim and `ctr`, built from pinned Go modules by
//! `tests/control-plane/build.sh` into the cache directory (same rule as
//! `testkit::control_plane_dir`). The script stamps what it built and does nothing when the stamp
//! matches, so only the first `cargo xtask setup` pays for the Go build. Also the two commands
//! that run on that control plane: `cargo xtask demo` and `cargo xtask bench e2e`.

use std::env;
use std::path::{Path, PathBuf};

use crate::python::cache_dir;
use crate::run::{Cmd, Error};

/// The binaries the tests need.
const BINARIES: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "etcd",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
];

/// Builds the control-plane binaries unless `KUBEBUILDER_ASSETS` already provides them or the
/// cached build is current.
pub fn ensure_binaries() -> Result<(), Error> {
    if let Some(assets) = env::var_os("KUBEBUILDER_ASSETS") {
        let assets = PathBuf::from(assets);
        let missing: Vec<&str> = BINARIES
            .iter()
            .copied()
            .filter(|name| !assets.join(name).is_file())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        return Err(Error::Message(format!(
            "KUBEBUILDER_ASSETS={} lacks {}; unset it to build them from tests/control-plane/",
            assets.display(),
            missing.join(", ")
        )));
    }
    let out = cache_dir().join("control-plane").join("bin");
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("control-plane")
        .join("build.sh");
    Cmd::new("go").args(["version"]).run().map_err(|err| {
        Error::Message(format!(
            "{err}: building kube-apiserver and etcd needs Go (https://go.dev/dl, version in \
             tests/control-plane/*/go.mod), or set KUBEBUILDER_ASSETS to a directory holding \
             {}",
            BINARIES.join(", ")
        ))
    })?;
    Cmd::new("bash").arg_path(&script).arg_path(&out).run()
}

/// `cargo xtask demo`: builds the images, then runs the narrated end-to-end flow
/// (`tests/src/scenario.rs`) on the real node (root only).
pub fn demo() -> Result<(), Error> {
    crate::images::build()?;
    Cmd::new("cargo")
        .args(["run", "--quiet", "-p", "c4gh-e2e", "--bin", "c4gh-demo"])
        .run()
}

/// `cargo xtask bench e2e`: pod admission latency through the real apiserver with and without
/// the webhook (p50/p99 over 200 pods each), then pod start-up with and without the sidecar and
/// key removal on the real node (30 pods per series, with 1, 10 and 100 inputs; the images from
/// `cargo xtask images`), with release builds. `C4GH_BENCH_E2E_PODS` (admission pods per
/// series), `C4GH_BENCH_E2E_NODE_PODS` (node pods per series; 0 skips the node) and
/// `C4GH_BENCH_E2E_INPUTS` (the input counts, comma-separated) change those numbers.
pub fn bench_e2e() -> Result<(), Error> {
    let knob = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let pods = knob("C4GH_BENCH_E2E_PODS", "200");
    let node_pods = knob("C4GH_BENCH_E2E_NODE_PODS", "30");
    let inputs = knob("C4GH_BENCH_E2E_INPUTS", "1,10,100");
    Cmd::new("cargo")
        .args(["build", "--release", "--quiet", "-p", "c4gh-operator"])
        .run()?;
    crate::images::build()?;
    Cmd::new("cargo")
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "c4gh-e2e",
            "--bin",
            "c4gh-e2e-bench",
            "--",
            pods.as_str(),
            node_pods.as_str(),
            inputs.as_str(),
        ])
        .run()
}
