//! The project's one task runner. README.md and `.ci/run` call these, so the commands people run
//! and the commands CI runs are the same.
//!
//! - `cargo xtask setup`: install what the tests need outside the source tree (reference Python
//!   tools in a virtualenv; the Debian packages the node and the images need; `kube-apiserver`,
//!   `etcd`, `kube-controller-manager`, `kube-scheduler`, `kubelet`, `kubectl`, `containerd`,
//!   its shim and `ctr` built from Go modules; PostgreSQL and NeIC SDA v2's download service for
//!   `tests/tests/sda.rs`; the Java `tesk-api` and the `tesk-core` taskmaster for
//!   `tests/tests/tesk.rs`; SeaweedFS's `weed`, the S3 server of
//!   `tests/tests/object_store.rs`; `cwl-tes` and an FTP server in a Python 3.7 virtualenv for
//!   `tests/tests/cwl_tes.rs`). Idempotent and cached.
//! - `cargo xtask images`: the OCI image archives (`target/images/`, see `images.rs`).
//! - `cargo xtask test`: setup, then formatting, clippy with `-D warnings`, the images, and every
//!   test.
//! - `cargo xtask demo`: the end-to-end demo on this machine.
//! - `cargo xtask bench [NAME]`: the benchmarks (see README.md, "Performance").
//! - `cargo xtask completions [--out DIR]`: shell completions (bash, zsh, fish) and man pages of
//!   every binary, generated from their clap definitions by `c4gh-docgen` (default DIR:
//!   `target/dist`; images copy them from there).

mod bench_c4gh;
mod bench_drs;
mod bench_operator;
mod bench_seal;
mod bench_sidecar;
mod control_plane;
mod cwl_tes;
mod images;
mod peers;
mod python;
mod run;
mod sda;
mod seaweedfs;
mod system;
mod tesk;

use std::env;
use std::process::ExitCode;

use run::{Cmd, Error};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  setup         install the reference tools the tests use (cached outside the source tree)
  images        build the OCI image archives into target/images/ (needs root: umoci, mmdebstrap)
  test          setup, cargo fmt --check, cargo clippy -D warnings, images, cargo test --workspace
  demo          run the end-to-end demo on this machine (no cluster or cloud account needed)
  bench [NAME]  run the benchmarks (NAME: c4gh, sidecar, s3, s3-memory, seal, drs, operator, e2e, sda; default: all)
  completions [--out DIR]
                shell completions (bash, zsh, fish) and man pages of every binary into DIR
                (default: target/dist): DIR/completions/{bash,zsh,fish}/, DIR/man/man1/
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup(),
        Some("images") => setup().and_then(|()| images::build()),
        Some("test") => test(),
        Some("demo") => demo(),
        Some("bench") => bench(args.get(1).map(String::as_str)),
        Some("completions") => completions(&args[1..]),
        Some("__rusage") => bench_sidecar::rusage_helper(&args[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(())
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err}");
            ExitCode::FAILURE
        }
    }
}

fn setup() -> Result<(), Error> {
    python::ensure_venv()?;
    system::ensure_packages()?;
    control_plane::ensure_binaries()?;
    sda::ensure()?;
    seaweedfs::ensure()?;
    tesk::ensure()?;
    cwl_tes::ensure()
}

fn test() -> Result<(), Error> {
    setup()?;
    Cmd::new("cargo")
        .args(["fmt", "--all", "--", "--check"])
        .run()?;
    Cmd::new("cargo")
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ])
        .run()?;
    images::build()?;
    // `cargo test` builds a package's binaries only for that package's own integration tests;
    // the e2e tests also run binaries of packages without any (kubectl-c4gh).
    Cmd::new("cargo")
        .args(["build", "--workspace", "--bins", "--locked"])
        .run()?;
    Cmd::new("cargo")
        .args(["test", "--workspace", "--locked", "--no-fail-fast"])
        .run()
}

fn demo() -> Result<(), Error> {
    setup()?;
    control_plane::demo()
}

/// `completions [--out DIR]`: runs `c4gh-docgen --out DIR` (default `target/dist`).
fn completions(args: &[String]) -> Result<(), Error> {
    let out = match args {
        [] => std::path::PathBuf::from("target").join("dist"),
        [flag, dir] if flag == "--out" => std::path::PathBuf::from(dir),
        _ => {
            return Err(Error::Message(
                "usage: cargo xtask completions [--out DIR]".into(),
            ));
        }
    };
    images::docgen(&out)
}

fn bench(name: Option<&str>) -> Result<(), Error> {
    setup()?;
    match name {
        None => bench_c4gh::bench()
            .and_then(|()| bench_sidecar::bench())
            .and_then(|()| seaweedfs::bench())
            .and_then(|()| bench_seal::bench())
            .and_then(|()| bench_drs::bench())
            .and_then(|()| bench_operator::bench())
            .and_then(|()| control_plane::bench_e2e())
            .and_then(|()| sda::bench()),
        Some("c4gh") => bench_c4gh::bench(),
        Some("sidecar") => bench_sidecar::bench().and_then(|()| seaweedfs::bench()),
        Some("s3") => seaweedfs::bench(),
        Some("s3-memory") => seaweedfs::bench_memory(),
        Some("seal") => bench_seal::bench(),
        Some("drs") => bench_drs::bench(),
        Some("operator") => bench_operator::bench(),
        Some("e2e") => control_plane::bench_e2e(),
        Some("sda") => sda::bench(),
        Some(other) => Err(Error::Message(format!("unknown benchmark {other:?}"))),
    }
}
