//! `cargo xtask bench operator`: builds the release `c4gh-operator` and its load generator
//! (`operator/examples/admission_load.rs`, which documents what is measured) and runs it:
//! admission p50/p99 latency and throughput at 1, 32 and 256 concurrent requests over TLS on
//! loopback, the CPU time per request of the operator and of the load generator, and the
//! operator's RSS. Requests per level: `C4GH_BENCH_OPERATOR_REQUESTS` (default 20000); the
//! operator's log filter: `C4GH_BENCH_OPERATOR_LOG` (default `info`, as deployed).

use std::env;
use std::path::PathBuf;

use crate::run::{Cmd, Error};

/// Runs the operator benchmark.
pub fn bench() -> Result<(), Error> {
    Cmd::new("cargo")
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "c4gh-operator",
            "--bin",
            "c4gh-operator",
            "--example",
            "admission_load",
        ])
        .run()?;
    let release = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release");
    let requests = env::var("C4GH_BENCH_OPERATOR_REQUESTS").unwrap_or_else(|_| "20000".into());
    let log = env::var("C4GH_BENCH_OPERATOR_LOG").unwrap_or_else(|_| "info".into());
    Cmd::new(release.join("examples/admission_load"))
        .args(["--operator"])
        .arg_path(&release.join("c4gh-operator"))
        .args(["--requests", &requests])
        .args(["--operator-log", &log])
        .run()
}
