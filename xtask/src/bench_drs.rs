//! `cargo xtask bench drs`: `c4gh-drs-server` on loopback (not a timed test; numbers are
//! printed).
//!
//! Builds the release server binary and the load generator `drs-server/examples/bench.rs`
//! (which documents what it measures), then runs the load generator: the server runs as its own
//! process and the clients (the load generator, `curl`, a reqwest client process) in others.
//! Re-encrypted headers per second with p50/p99 latency at 1, 16 and 256 concurrent clients
//! (bounded by a request count and a time limit per level) for a static bearer token, a GA4GH
//! passport and a pod-bound ServiceAccount token checked by TokenReview on a local control plane
//! (`tests/src/bin/c4gh-drs-tokenreview-bench.rs` starts it and runs the load generator); body throughput over HTTPS and plain
//! HTTP vs reading the same body file, with a cold page cache (root only: caches are dropped
//! before every run) and a warm one, plus the loopback TCP and TLS ceilings (target ≥ 0.9).
//!
//! Environment: `C4GH_BENCH_DRS_MIB` body size (default 512), `C4GH_BENCH_DRS_REQUESTS`
//! requests per level (default 20000), `C4GH_BENCH_DRS_SECONDS` time limit per level
//! (default 20).

use std::env;
use std::path::PathBuf;

use crate::run::{Cmd, Error};

fn setting(name: &str, default: u64) -> Result<String, Error> {
    match env::var(name) {
        Ok(value) => value
            .parse::<u64>()
            .map(|v| v.to_string())
            .map_err(|_| Error::Message(format!("{name}={value:?} is not a whole number"))),
        Err(_) => Ok(default.to_string()),
    }
}

/// Runs the benchmark.
pub fn bench() -> Result<(), Error> {
    let mib = setting("C4GH_BENCH_DRS_MIB", 512)?;
    let requests = setting("C4GH_BENCH_DRS_REQUESTS", 20_000)?;
    let seconds = setting("C4GH_BENCH_DRS_SECONDS", 20)?;
    Cmd::new("cargo")
        .args([
            "build",
            "--release",
            "--locked",
            "--package",
            "drs-server",
            "--features",
            "test-support",
            "--bin",
            "c4gh-drs-server",
            "--example",
            "bench",
        ])
        .run()?;
    // The TokenReview figure needs a real apiserver: a debug driver from `c4gh-e2e` starts a
    // local control plane, prepares the tokens and runs the release load generator.
    Cmd::new("cargo")
        .args([
            "build",
            "--locked",
            "--package",
            "c4gh-e2e",
            "--bin",
            "c4gh-drs-tokenreview-bench",
        ])
        .run()?;
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    let bench = target.join("release/examples/bench");
    Cmd::new(target.join("debug/c4gh-drs-tokenreview-bench"))
        .arg_path(&bench)
        .args([mib, requests, seconds])
        .run()
}
