//! `c4gh encrypt` / `c4gh decrypt` give the same bytes whatever the thread count: the default
//! (several threads for large inputs), `--threads N`, `C4GH_THREADS`, stdin from a regular
//! file or from a pipe, with and without `--range`.

// Test helpers outside `#[test]` functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn ours() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_c4gh"))
}

/// Where `c4gh` reads stdin from.
enum Input<'a> {
    File(&'a Path),
    Pipe(&'a [u8]),
}

/// Runs `c4gh` with no inherited C4GH_* variables but `env`; requires success, returns stdout.
fn c4gh(args: &[&str], env: &[(&str, &str)], input: Input<'_>) -> Vec<u8> {
    let mut cmd = Command::new(ours());
    cmd.args(args)
        .env_remove("C4GH_SECRET_KEY")
        .env_remove("C4GH_PASSPHRASE")
        .env_remove("C4GH_THREADS")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = match input {
        Input::File(path) => cmd.stdin(File::open(path).unwrap()).output().unwrap(),
        Input::Pipe(bytes) => {
            let mut child = cmd.stdin(Stdio::piped()).spawn().unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let data = bytes.to_vec();
            let writer = std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            });
            let out = child.wait_with_output().unwrap();
            writer.join().unwrap();
            out
        }
    };
    assert!(
        out.status.success(),
        "c4gh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

#[test]
fn every_thread_count_gives_the_same_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (sk, pk) = (path("k.sec"), path("k.pub"));
    c4gh(
        &["keygen", "--sk", &sk, "--pk", &pk, "--nocrypt", "-f"],
        &[],
        Input::Pipe(b""),
    );
    // Below and above the 4 MiB regular-file threshold, with partial last segments and batches.
    for len in [
        0,
        1,
        70_000,
        3 * 1024 * 1024 + 5,
        9 * 1024 * 1024 + 65_536 * 3 + 77,
    ] {
        let plain = data(len);
        let plain_file = path("plain");
        fs::write(&plain_file, &plain).unwrap();
        let encrypt = ["encrypt", "--sk", &sk, "--recipient_pk", &pk];
        let mut files = Vec::new();
        for (name, env) in [
            ("default", &[][..]),
            ("one", &[("C4GH_THREADS", "1")][..]),
            ("three", &[("C4GH_THREADS", "3")][..]),
        ] {
            let file = path(&format!("{name}.c4gh"));
            fs::write(
                &file,
                c4gh(&encrypt, env, Input::File(Path::new(&plain_file))),
            )
            .unwrap();
            files.push(file);
        }
        let piped = c4gh(&encrypt, &[], Input::Pipe(&plain));
        fs::write(path("piped.c4gh"), &piped).unwrap();
        files.push(path("piped.c4gh"));

        let decrypt = ["decrypt", "--sk", &sk];
        for file in &files {
            let encrypted = fs::read(file).unwrap();
            for (how, args) in [
                ("default", &[][..]),
                ("--threads 1", &["--threads", "1"][..]),
                ("--threads 2", &["--threads", "2"][..]),
                ("--threads 5", &["--threads", "5"][..]),
                ("--threads 0", &["--threads", "0"][..]),
            ] {
                let args: Vec<&str> = decrypt.iter().chain(args).copied().collect();
                let from_file = c4gh(&args, &[], Input::File(Path::new(file)));
                assert!(from_file == plain, "len {len}, {file}, {how}, stdin a file");
                let from_pipe = c4gh(&args, &[], Input::Pipe(&encrypted));
                assert!(from_pipe == plain, "len {len}, {file}, {how}, stdin a pipe");
            }
            let from = len / 3;
            let to = len - len / 5;
            if from < to {
                let range = format!("{from}-{to}");
                for threads in [None, Some("1"), Some("3")] {
                    let mut args = vec!["decrypt", "--sk", &sk, "--range", &range];
                    args.extend(threads.iter().flat_map(|t| ["--threads", t]));
                    let out = c4gh(&args, &[], Input::File(Path::new(file)));
                    assert!(
                        out == plain[from..to],
                        "len {len}, {file}, range {range}, threads {threads:?}"
                    );
                }
            }
        }
    }
}
