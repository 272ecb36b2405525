//! `cargo xtask bench sda`: `c4gh-sidecar fetch` against the real NeIC SDA v2 download service vs
//! curl downloading the same body from it (`/files/{id}/content`), in one run, alternating, on
//! the same TLS endpoint inside the SDA test namespace (`c4gh_e2e::sda`). The body is `ARGS[1]`
//! MiB (default 1024) of zeros encrypted for the archive key, read by the server from the page
//! cache, so the comparison is of the download paths. Both write their output to the same
//! directory; the sidecar also checks the body's sha-256 and authenticates every segment. Prints
//! each run and the median throughputs.
//!
//! The driver itself does no heavy work (curl, the sidecar and sha256sum are child processes),
//! so it runs as a debug build; the sidecar measured is the release build next to it
//! (`target/release/c4gh-sidecar`, built by `cargo xtask bench sda`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: failures abort the run

use std::fs;
use std::process::{Command, Stdio};
use std::time::Instant;

use c4gh_e2e::sda::{OWNER, Sda};
use c4gh_e2e::workspace;

const RUNS: usize = 5;

fn main() {
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    let debug = workspace::binary("c4gh-sidecar", "c4gh-sidecar").unwrap();
    let sidecar = debug
        .parent()
        .and_then(|d| d.parent())
        .map(|t| t.join("release").join("c4gh-sidecar"))
        .filter(|p| p.is_file())
        .expect("target/release/c4gh-sidecar is missing: cargo build --release -p c4gh-sidecar");
    let mut sda = Sda::start().unwrap();
    let file = sda
        .archive_zeros("EGAD00000000001", "bench/body.c4gh", mib << 20)
        .unwrap();
    let token = sda.token_file(OWNER, true).unwrap();
    let auth = sda.dir().join("work/auth-header.txt");
    fs::write(
        &auth,
        format!(
            "Authorization: Bearer {}",
            fs::read_to_string(&token).unwrap()
        ),
    )
    .unwrap();
    let out = sda.dir().join("bench-out");
    fs::create_dir_all(&out).unwrap();
    let bytes = file.body_len as f64;
    let mut curl_rates = Vec::new();
    let mut sidecar_rates = Vec::new();
    println!(
        "SDA v2 body {} MiB over TLS on loopback; load average {}",
        mib,
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    for run in 0..RUNS {
        let dest = out.join("curl.bin");
        let mut c = sda.command("curl");
        c.args(["-sS", "--fail", "--cacert"])
            .arg(&sda.ca)
            .arg("-H")
            .arg(format!("@{}", auth.display()))
            .arg("-o")
            .arg(&dest)
            .arg(file.content_url());
        let t = Instant::now();
        let status = c.stdout(Stdio::null()).status().unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert!(status.success(), "curl failed");
        assert_eq!(fs::metadata(&dest).unwrap().len(), file.body_len);
        fs::remove_file(&dest).unwrap();
        curl_rates.push(bytes / secs / 1e6);

        let dest = out.join("sidecar.c4gh");
        let mut c: Command = sda.command(&sidecar);
        c.arg("fetch")
            .arg(file.drs_uri())
            .arg("-o")
            .arg(&dest)
            .arg("--key-out")
            .arg(out.join(format!("k{run}.sec")))
            .arg("--token-file")
            .arg(&token)
            .arg("--ca-bundle")
            .arg(&sda.ca)
            .args(["--drs-allow-port", "--no-progress", "--flavour", "sda-v2"])
            .env("RUST_LOG", "warn");
        let t = Instant::now();
        let o = c.output().unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert!(
            o.status.success(),
            "sidecar failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            fs::metadata(&dest).unwrap().len(),
            file.body_len + file.header.len() as u64
        );
        fs::remove_file(&dest).unwrap();
        sidecar_rates.push(bytes / secs / 1e6);
        println!(
            "run {run}: curl {:.0} MB/s, c4gh-sidecar fetch {:.0} MB/s",
            curl_rates[run], sidecar_rates[run]
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (c, s) = (median(&mut curl_rates), median(&mut sidecar_rates));
    println!(
        "median: curl {c:.0} MB/s, c4gh-sidecar fetch {s:.0} MB/s, ratio {:.2} (target >= 0.9); load average {}",
        s / c,
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
