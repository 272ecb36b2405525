//! `cargo xtask bench seal`: output encryption (`c4gh-sidecar seal`, what the sidecar does at
//! SIGTERM and TESK's outputs filer step runs) against the `c4gh encrypt` ceiling, in one run.
//!
//! On a file of `C4GH_BENCH_MIB` MiB (default 4096) in `target/bench-seal` (removed at the
//! end): first `c4gh encrypt --recipient_pk` from the file into a second file on the same disk
//! (the CLI's default threads), then `c4gh-sidecar seal` replacing the file by its encryption
//! (same lanes, plus the fsyncs and renames of the atomic replacement). Prints GiB/s, the ratio
//! (target ≥ 0.8×), peak RSS (flat: independent of the size) and CPU seconds per GiB of each.
//! `C4GH_BENCH_BIN_DIR`: take `c4gh` and `c4gh-sidecar` from there instead of building them.

use std::fs;
use std::path::PathBuf;

use crate::bench_sidecar::{measured, write_random};
use crate::run::{Cmd, Error};

/// Runs the output-encryption benchmark.
pub fn bench() -> Result<(), Error> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = match std::env::var_os("C4GH_BENCH_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            Cmd::new("cargo")
                .args([
                    "build",
                    "--release",
                    "--locked",
                    "-p",
                    "c4gh-cli",
                    "--bin",
                    "c4gh",
                ])
                .args(["-p", "c4gh-sidecar", "--bin", "c4gh-sidecar"])
                .run()?;
            root.join("target/release")
        }
    };
    let mib: usize = std::env::var("C4GH_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    let dir = root.join("target/bench-seal");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)
        .map_err(|e| Error::Message(format!("create {}: {e}", dir.display())))?;
    let result = run(&bin, &dir, mib);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn run(bin: &std::path::Path, dir: &std::path::Path, mib: usize) -> Result<(), Error> {
    let (sk, pk) = (dir.join("bench.sec"), dir.join("bench.pub"));
    Cmd::new(bin.join("c4gh"))
        .args(["keygen", "--nocrypt", "--sk"])
        .arg_path(&sk)
        .args(["--pk"])
        .arg_path(&pk)
        .run()?;
    let file = dir.join("output.bin");
    write_random(&file, mib)?;
    let gib = mib as f64 / 1024.0;
    let script = format!(
        "{} encrypt --recipient_pk {} < {} > {}",
        bin.join("c4gh").display(),
        pk.display(),
        file.display(),
        dir.join("ceiling.c4gh").display()
    );
    let ceiling = measured(std::path::Path::new("sh"), &["-c", &script])?;
    fs::remove_file(dir.join("ceiling.c4gh"))
        .map_err(|e| Error::Message(format!("remove the ceiling's output: {e}")))?;
    let pem = fs::read_to_string(&pk)
        .map_err(|e| Error::Message(format!("read {}: {e}", pk.display())))?;
    // JSON by hand: the path has no characters to escape, the PEM only newlines.
    let outputs = format!(
        r#"[{{"path": "{}", "recipients": ["{}"]}}]"#,
        file.display(),
        pem.trim().replace('\n', "\\n")
    );
    let seal = measured(
        &bin.join("c4gh-sidecar"),
        &[
            "seal",
            "--outputs",
            &outputs,
            "--termination-log",
            "/dev/null",
        ],
    )?;
    let head = fs::read(&file).map_err(|e| Error::Message(format!("read the sealed file: {e}")))?;
    if !head.starts_with(b"crypt4gh") || head.len() as u64 <= (mib as u64) << 20 {
        return Err(Error::Message(
            "the sealed file is not a Crypt4GH file of the output".into(),
        ));
    }
    drop(head);
    let rate = |m: &crate::bench_sidecar::Measured| gib / m.seconds;
    println!("output encryption, {mib} MiB, one run each:");
    for (name, m) in [
        ("c4gh encrypt (ceiling)", &ceiling),
        ("c4gh-sidecar seal", &seal),
    ] {
        println!(
            "  {name:24} {:6.2} GiB/s   peak RSS {:6.1} MiB   CPU {:5.2} s/GiB",
            rate(m),
            m.maxrss_mib,
            m.cpu_seconds / gib
        );
    }
    println!(
        "  seal / ceiling: {:.2}x (target >= 0.8x)",
        rate(&seal) / rate(&ceiling)
    );
    Ok(())
}
