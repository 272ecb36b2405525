//! `cargo xtask bench drs`: `c4gh-drs-server` on loopback TLS (not a timed test; numbers are
//! printed).
//!
//! Builds and runs the load generator `drs-server/examples/bench.rs` in release mode:
//! re-encrypted headers per second with p50/p99 latency at 1, 16 and 256 concurrent clients
//! (bounded by a request count and a time limit per level), and body throughput over HTTPS vs
//! reading the same body file from disk, as a ratio (target ≥ 0.9).
//!
//! Environment: `C4GH_BENCH_DRS_MIB` body size (default 512), `C4GH_BENCH_DRS_REQUESTS`
//! requests per level (default 20000), `C4GH_BENCH_DRS_SECONDS` time limit per level
//! (default 20).

use std::env;

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
            "run",
            "--release",
            "--quiet",
            "--package",
            "drs-server",
            "--features",
            "test-support",
            "--example",
            "bench",
            "--",
        ])
        .args([mib, requests, seconds])
        .run()
}
