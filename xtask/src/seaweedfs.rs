//! The S3-compatible object store of the object-store tests: SeaweedFS's `weed`, built by
//! `tests/seaweedfs/build.sh` from the `github.com/seaweedfs/seaweedfs` Go module pinned in
//! `tests/seaweedfs/go.mod` (the module proxy serves it only as a pseudo-version) into the cache
//! directory. The script stamps what it built, so only the first setup pays for the Go build.
//! Also `cargo xtask bench s3` (part of `bench sidecar`): a body from SeaweedFS via a signed URL,
//! the sidecar vs curl (`tests/src/bin/c4gh-s3-bench.rs`); `cargo xtask bench s3-memory`: the
//! sidecar's peak RSS for a small and a 4 GiB body from the same store.

use std::path::Path;

use crate::python::cache_dir;
use crate::run::{Cmd, Error};

/// Builds `weed` unless the cached build is current.
pub fn ensure() -> Result<(), Error> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("seaweedfs")
        .join("build.sh");
    Cmd::new("go").args(["version"]).run().map_err(|err| {
        Error::Message(format!(
            "{err}: building SeaweedFS needs Go (version in tests/seaweedfs/go.mod)"
        ))
    })?;
    Cmd::new("bash")
        .arg_path(&script)
        .arg_path(&cache_dir().join("seaweedfs").join("bin"))
        .run()
}

/// `cargo xtask bench s3`: builds the release `c4gh-sidecar` and `c4gh-drs-server`, then runs the
/// driver (a debug build: it only starts processes) with `C4GH_BENCH_MIB` MiB (default 1024).
pub fn bench() -> Result<(), Error> {
    let mib = std::env::var("C4GH_BENCH_MIB").unwrap_or_else(|_| "1024".into());
    run_driver(&[mib])
}

/// `cargo xtask bench s3-memory`: the driver's `memory` mode, a body of `C4GH_BENCH_MIB` MiB
/// (default 4096) and one of `C4GH_BENCH_SMALL_MIB` MiB (default 16).
pub fn bench_memory() -> Result<(), Error> {
    let large = std::env::var("C4GH_BENCH_MIB").unwrap_or_else(|_| "4096".into());
    let small = std::env::var("C4GH_BENCH_SMALL_MIB").unwrap_or_else(|_| "16".into());
    run_driver(&["memory".into(), large, small])
}

fn run_driver(args: &[String]) -> Result<(), Error> {
    Cmd::new("cargo")
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "c4gh-sidecar",
            "-p",
            "drs-server",
            "--bins",
        ])
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
            "c4gh-s3-bench",
            "--",
        ])
        .args(args)
        .run()
}
