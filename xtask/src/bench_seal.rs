//! `cargo xtask bench seal`: output encryption (`c4gh-sidecar seal`, what the sidecar does at
//! SIGTERM and TESK's outputs filer step runs) against the `c4gh encrypt` ceiling, in one run.
//!
//! On a file of `C4GH_BENCH_MIB` MiB (default 4096) in `target/bench-seal` (removed at the
//! end), written and fsynced before anything is timed:
//! 1. `c4gh encrypt --recipient_pk` from the file into a second file on the same disk (the
//!    CLI's default threads): the ceiling, which leaves its output in the page cache — it
//!    does no fsync;
//! 2. the same followed by `sync -d` of its output (`fdatasync`): the ceiling with the
//!    durability the sealing needs;
//! 3. `c4gh-sidecar seal` replacing the file by its encryption (same lanes, plus the
//!    background and final `fdatasync`s and the renames of the atomic replacement); its debug
//!    log says how long the encryption and the final sync took.
//!
//! Prints GiB/s, both ratios (target ≥ 0.8×), peak RSS (flat: independent of the size) and CPU
//! seconds per GiB of each. `C4GH_BENCH_BIN_DIR`: take `c4gh` and `c4gh-sidecar` from there
//! instead of building them.

use std::fs;
use std::path::PathBuf;

use crate::bench_sidecar::{Measured, measured, measured_with, write_random};
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
    Cmd::new("sync").args(["-d"]).arg_path(&file).run()?;
    let gib = mib as f64 / 1024.0;
    let out = dir.join("ceiling.c4gh");
    let encrypt = format!(
        "{} encrypt --recipient_pk {} < {} > {}",
        bin.join("c4gh").display(),
        pk.display(),
        file.display(),
        out.display()
    );
    let remove = |path: &std::path::Path| {
        fs::remove_file(path)
            .map_err(|e| Error::Message(format!("remove the ceiling's output: {e}")))
    };
    let ceiling = measured(std::path::Path::new("sh"), &["-c", &encrypt])?;
    remove(&out)?;
    let synced_script = format!("{encrypt} && sync -d {}", out.display());
    let ceiling_synced = measured(std::path::Path::new("sh"), &["-c", &synced_script])?;
    remove(&out)?;
    let pem = fs::read_to_string(&pk)
        .map_err(|e| Error::Message(format!("read {}: {e}", pk.display())))?;
    // JSON by hand: the path has no characters to escape, the PEM only newlines.
    let outputs = format!(
        r#"[{{"path": "{}", "recipients": ["{}"]}}]"#,
        file.display(),
        pem.trim().replace('\n', "\\n")
    );
    let seal = measured_with(
        &bin.join("c4gh-sidecar"),
        &[
            "--log-format",
            "text",
            "seal",
            "--outputs",
            &outputs,
            "--termination-log",
            "/dev/null",
        ],
        &[("RUST_LOG", "c4gh_sidecar::seal=debug")],
    )?;
    let phase = |name: &str| -> Option<f64> {
        let rest = &seal.stderr[seal.stderr.find(name)? + name.len()..];
        let value: String = rest
            .trim_start_matches(['=', '"', ':'])
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        value.parse().ok()
    };
    let mut head = [0u8; 8];
    let sealed = fs::File::open(&file)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head).and_then(|()| f.metadata()))
        .map_err(|e| Error::Message(format!("read the sealed file: {e}")))?;
    if &head != b"crypt4gh" || sealed.len() <= (mib as u64) << 20 {
        return Err(Error::Message(
            "the sealed file is not a Crypt4GH file of the output".into(),
        ));
    }
    let rate = |m: &Measured| gib / m.seconds;
    println!("output encryption, {mib} MiB, one run each:");
    for (name, m) in [
        ("c4gh encrypt (no fsync)", &ceiling),
        ("c4gh encrypt + fdatasync", &ceiling_synced),
        ("c4gh-sidecar seal", &seal),
    ] {
        println!(
            "  {name:26} {:6.2} GiB/s   peak RSS {:6.1} MiB   CPU {:5.2} s/GiB",
            rate(m),
            m.maxrss_mib,
            m.cpu_seconds / gib
        );
    }
    match (phase("encrypt_seconds"), phase("sync_seconds")) {
        (Some(encrypt), Some(sync)) => println!(
            "  seal's own phases: encryption (with background fdatasyncs) {encrypt:.2} s, last fdatasync {sync:.2} s"
        ),
        _ => println!("  seal's own phases: not in its log"),
    }
    println!(
        "  seal / ceiling without fsync: {:.2}x; seal / ceiling with fdatasync: {:.2}x (target >= 0.8x)",
        rate(&seal) / rate(&ceiling),
        rate(&seal) / rate(&ceiling_synced)
    );
    Ok(())
}
