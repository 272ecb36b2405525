//! `cargo xtask bench c4gh`: builds the release `c4gh` and its benchmark program
//! (`crates/c4gh-cli/examples/bench_c4gh.rs`, which documents what is measured) and runs it on a
//! 1 GiB file in `target/bench-c4gh` (removed at the end). Size: `C4GH_BENCH_MIB` (default 1024).

use std::env;
use std::path::PathBuf;

use crate::python;
use crate::run::{Cmd, Error};

/// Runs the c4gh benchmark.
pub fn bench() -> Result<(), Error> {
    Cmd::new("cargo")
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "c4gh-cli",
            "--bin",
            "c4gh",
            "--example",
            "bench_c4gh",
        ])
        .run()?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let release = root.join("target/release");
    let mib = env::var("C4GH_BENCH_MIB").unwrap_or_else(|_| "1024".into());
    Cmd::new(release.join("examples/bench_c4gh"))
        .args(["--c4gh"])
        .arg_path(&release.join("c4gh"))
        .args(["--python"])
        .arg_path(&python::cache_dir().join("venv/bin/crypt4gh"))
        .args(["--dir"])
        .arg_path(&root.join("target/bench-c4gh"))
        .args(["--mib", &mib])
        .run()
}
