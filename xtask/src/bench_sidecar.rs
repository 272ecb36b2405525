//! `cargo xtask bench sidecar`: the sidecar against `c4gh-drs-server` on loopback TLS.
//!
//! Measures, in one run (not a timed test; numbers are printed):
//! - `encrypted` mode (`c4gh-sidecar fetch … --key-out`) vs `curl` downloading the same body bytes
//!   from the body URL to a file on the same disk (target ≥ 0.9×);
//! - `plaintext` mode (`--decrypt`) vs min(curl, decrypt ceiling), the ceiling being in-memory
//!   single-stream decryption with the `c4gh` crate (target ≥ 0.8×);
//! - peak RSS of each client, from `getrusage(RUSAGE_CHILDREN)` in a helper process that runs only
//!   that client (target ≤ 32 MiB), and its CPU seconds (user + system) per GiB, which stay
//!   meaningful on a busy machine where the rates do not;
//! - time from starting `c4gh-sidecar run` until `status.json` says `Ready`, for 200 small inputs
//!   (target < 1 s), then SIGTERM and a check that it exits 0 and the key file is gone.
//!
//! Size: `C4GH_BENCH_MIB` (default 1024). Work directory: `target/bench-sidecar` (removed at the
//! end). `C4GH_BENCH_BIN_DIR`: take `c4gh-sidecar` and `c4gh-drs-server` from there instead of
//! building them into `target/release`.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::run::{Cmd, Error};

const SMALL_INPUTS: usize = 200;
const TOKEN: &str = "bench-token-0123456789abcdef0123456789abcdef";

/// Hidden helper: `xtask __rusage PROGRAM ARGS…` runs the program and prints
/// `maxrss_kib=N seconds=S` on stdout; exits with the program's status.
pub fn rusage_helper(args: &[String]) -> Result<(), Error> {
    let (program, rest) = args
        .split_first()
        .ok_or_else(|| Error::Message("__rusage needs a program".into()))?;
    let start = Instant::now();
    let status = Command::new(program)
        .args(rest)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| Error::Message(format!("cannot start {program}: {e}")))?;
    let seconds = start.elapsed().as_secs_f64();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)
        .map_err(|e| Error::Message(format!("getrusage: {e}")))?;
    let cpu = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    println!(
        "maxrss_kib={} seconds={seconds} cpu_seconds={}",
        usage.max_rss(),
        cpu(usage.user_time()) + cpu(usage.system_time())
    );
    if status.success() {
        Ok(())
    } else {
        Err(Error::Message(format!("{program} failed: {status}")))
    }
}

pub(crate) struct Measured {
    pub(crate) seconds: f64,
    pub(crate) maxrss_mib: f64,
    /// User + system CPU seconds of the client (all its threads).
    pub(crate) cpu_seconds: f64,
    /// What the program wrote to stderr.
    pub(crate) stderr: String,
}

pub(crate) fn measured(program: &Path, args: &[&str]) -> Result<Measured, Error> {
    measured_with(program, args, &[])
}

/// [`measured`] with extra environment variables for the program.
pub(crate) fn measured_with(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Measured, Error> {
    let me = std::env::current_exe().map_err(|e| Error::Message(e.to_string()))?;
    let output = Command::new(me)
        .arg("__rusage")
        .arg(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .map_err(|e| Error::Message(format!("cannot run the rusage helper: {e}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(Error::Message(format!(
            "{} {} failed: {}{}",
            program.display(),
            args.join(" "),
            text,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let field = |name: &str| -> Result<f64, Error> {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::Message(format!("rusage helper printed {text:?}")))
    };
    Ok(Measured {
        seconds: field("seconds=")?,
        maxrss_mib: field("maxrss_kib=")? / 1024.0,
        cpu_seconds: field("cpu_seconds=")?,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

fn fail(msg: impl Into<String>) -> Error {
    Error::Message(msg.into())
}

fn io<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> Error + '_ {
    move |e| fail(format!("{what}: {e}"))
}

/// Writes `mib` MiB of incompressible-looking bytes (xorshift).
pub(crate) fn write_random(path: &Path, mib: usize) -> Result<(), Error> {
    let mut file = std::io::BufWriter::new(fs::File::create(path).map_err(io("create"))?);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&block).map_err(io("write"))?;
    }
    file.flush().map_err(io("flush"))
}

fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("bind"))?;
    Ok(listener.local_addr().map_err(io("addr"))?.port())
}

/// Decrypts the first `limit` bytes of body of `file` in memory; returns GiB/s.
fn decrypt_ceiling(file: &Path, key: &Path, limit: usize) -> Result<f64, Error> {
    let secret = c4gh::SecretKey::read_file(key, || None).map_err(io("read key"))?;
    let mut reader = fs::File::open(file).map_err(io("open"))?;
    let header = c4gh::header::read_header(&mut reader).map_err(io("header"))?;
    let opened = c4gh::header::EncryptedHeader::parse(&header)
        .and_then(|h| h.open(&[&secret], None))
        .map_err(io("open header"))?;
    let segments = limit / c4gh::body::CIPHER_SEGMENT_SIZE;
    let mut body = vec![0u8; segments * c4gh::body::CIPHER_SEGMENT_SIZE];
    reader.read_exact(&mut body).map_err(io("read body"))?;
    let start = Instant::now();
    let mut decryptor =
        c4gh::body::Decryptor::new(&body[..], &opened.data_keys, None).map_err(io("decryptor"))?;
    let n = decryptor
        .copy_to(&mut std::io::sink())
        .map_err(io("decrypt"))?;
    Ok(n as f64 / (1u64 << 30) as f64 / start.elapsed().as_secs_f64())
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the benchmark.
pub fn bench() -> Result<(), Error> {
    let mib: usize = std::env::var("C4GH_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .map_err(io("workspace root"))?;
    // C4GH_BENCH_BIN_DIR: use release binaries built elsewhere (e.g. another target dir).
    let bin = match std::env::var_os("C4GH_BENCH_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            Cmd::new("cargo")
                .args([
                    "build",
                    "--release",
                    "-p",
                    "c4gh-sidecar",
                    "-p",
                    "drs-server",
                    "--bins",
                ])
                .run()?;
            root.join("target/release")
        }
    };
    let sidecar = bin.join("c4gh-sidecar");
    let server_bin = bin.join("c4gh-drs-server");
    let work = root.join("target/bench-sidecar");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(work.join("small")).map_err(io("mkdir"))?;
    fs::create_dir_all(work.join("catalog")).map_err(io("mkdir"))?;
    let w = |name: &str| work.join(name);
    let ws = |name: &str| w(name).display().to_string();

    Cmd::new(testkit::python_tool("crypt4gh-keygen"))
        .args([
            "--sk",
            &ws("server.sec"),
            "--pk",
            &ws("server.pub"),
            "--nocrypt",
            "-f",
        ])
        .run()?;
    // A CA and a leaf certificate (rustls rejects a self-signed CA certificate as a server's).
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
    ];
    Cmd::new("openssl")
        .args(["req", "-x509", "-subj", "/CN=bench-ca"])
        .args(ec)
        .args(["-keyout", &ws("ca.key"), "-out", &ws("ca.crt")])
        .run()?;
    Cmd::new("openssl")
        .args(["req", "-subj", "/CN=localhost"])
        .args(ec.iter().filter(|a| **a != "-days" && **a != "1"))
        .args(["-keyout", &ws("tls.key"), "-out", &ws("tls.csr")])
        .run()?;
    fs::write(w("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").map_err(io("ext"))?;
    Cmd::new("openssl")
        .args([
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            &ws("tls.csr"),
            "-CA",
            &ws("ca.crt"),
        ])
        .args([
            "-CAkey",
            &ws("ca.key"),
            "-CAcreateserial",
            "-extfile",
            &ws("ext.cnf"),
        ])
        .args(["-out", &ws("tls.crt")])
        .run()?;
    fs::write(
        w("tokens.json"),
        format!(r#"[{{"subject":"bench","token":"{TOKEN}"}}]"#),
    )
    .map_err(io("tokens"))?;
    fs::write(w("token"), TOKEN).map_err(io("token"))?;
    eprintln!("writing {mib} MiB of test data");
    write_random(&w("big.bin"), mib)?;
    let add = |file: &Path, id: &str| {
        Cmd::new(&server_bin)
            .args([
                "add",
                "--catalog",
                &ws("catalog"),
                "--id",
                id,
                "--public-key",
                &ws("server.pub"),
            ])
            .args(["--file"])
            .arg_path(file)
            .run()
    };
    add(&w("big.bin"), "big")?;
    fs::remove_file(w("big.bin")).map_err(io("rm"))?;
    fs::write(w("small.bin"), vec![b'A'; 4096]).map_err(io("small"))?;
    for i in 0..SMALL_INPUTS {
        add(&w("small.bin"), &format!("small{i}"))?;
    }

    let port = free_port()?;
    let authority = format!("127.0.0.1:{port}");
    let _server = Server(
        Command::new(&server_bin)
            .args(["serve", "--listen", &authority, "--catalog", &ws("catalog")])
            .args([
                "--secret-key",
                &ws("server.sec"),
                "--tls-cert",
                &ws("tls.crt"),
            ])
            .args([
                "--tls-key",
                &ws("tls.key"),
                "--tokens-file",
                &ws("tokens.json"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("start c4gh-drs-server"))?,
    );
    let body_url = format!("https://{authority}/c4gh/v1/objects/big/body");
    let auth = format!("Authorization: Bearer {TOKEN}");
    let curl_args = [
        "-sS",
        "--fail",
        "-o",
        &ws("out.curl"),
        "-H",
        &auth,
        "--cacert",
        &ws("ca.crt"),
        &body_url,
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    while Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "-o",
            "/dev/null",
            "--cacert",
            &ws("ca.crt"),
        ])
        .arg(format!("https://{authority}/ga4gh/drs/v1/service-info"))
        .stderr(Stdio::null())
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        if Instant::now() > deadline {
            return Err(fail("c4gh-drs-server did not start"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let uri = format!("drs://{authority}/big");
    let (ca, token) = (ws("ca.crt"), ws("token"));
    let (out_c4gh, out_plain, bench_key) = (ws("out.c4gh"), ws("out.plain"), ws("bench.sec"));
    let common = [
        "--drs-allow-port",
        "--ca-bundle",
        ca.as_str(),
        "--token-file",
        token.as_str(),
        "--no-progress",
    ];
    let encrypted_args: Vec<&str> = ["fetch", &uri, "-o", &out_c4gh, "--key-out", &bench_key]
        .into_iter()
        .chain(common)
        .collect();
    let plaintext_args: Vec<&str> = ["fetch", &uri, "-o", &out_plain, "--decrypt"]
        .into_iter()
        .chain(common)
        .collect();

    let body_gib = fs::metadata(w("catalog/big.c4gh-body"))
        .or_else(|_| fs::metadata(w("out.curl")))
        .map(|m| m.len())
        .unwrap_or((mib as u64) << 20) as f64
        / (1u64 << 30) as f64;
    let best = |program: &Path, args: &[&str], cleanup: &str| -> Result<Measured, Error> {
        let mut runs = Vec::new();
        for _ in 0..3 {
            let _ = fs::remove_file(w(cleanup));
            let _ = fs::remove_file(w("bench.sec"));
            runs.push(measured(program, args)?);
        }
        runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        let rss = runs.iter().map(|r| r.maxrss_mib).fold(0.0, f64::max);
        let cpu = runs.iter().map(|r| r.cpu_seconds).fold(f64::MAX, f64::min);
        Ok(Measured {
            seconds: runs[0].seconds,
            maxrss_mib: rss,
            cpu_seconds: cpu,
            stderr: String::new(),
        })
    };
    let curl = best(Path::new("curl"), &curl_args, "out.curl")?;
    let encrypted = best(&sidecar, &encrypted_args, "out.c4gh")?;
    let ceiling = decrypt_ceiling(&w("out.c4gh"), &w("bench.sec"), 256 << 20)?;
    let plaintext = best(&sidecar, &plaintext_args, "out.plain")?;
    let body_gib = fs::metadata(w("out.curl"))
        .map(|m| m.len() as f64 / (1u64 << 30) as f64)
        .unwrap_or(body_gib);

    let ready = ready_time(&sidecar, &authority, &w, 4)?;
    let ready16 = ready_time(&sidecar, &authority, &w, 16)?;

    let rate = |m: &Measured| body_gib / m.seconds;
    let (c, e, p) = (rate(&curl), rate(&encrypted), rate(&plaintext));
    let plain_ref = c.min(ceiling);
    println!();
    println!("c4gh-sidecar benchmark: {mib} MiB object on loopback TLS (best of 3)");
    let per_gib = |m: &Measured| m.cpu_seconds / body_gib;
    println!(
        "  curl (body only)        {c:6.2} GiB/s   peak RSS {:6.1} MiB   CPU {:5.2} s/GiB",
        curl.maxrss_mib,
        per_gib(&curl)
    );
    println!(
        "  encrypted mode          {e:6.2} GiB/s   peak RSS {:6.1} MiB   CPU {:5.2} s/GiB   {:.2}x curl (target >= 0.9)",
        encrypted.maxrss_mib,
        per_gib(&encrypted),
        e / c
    );
    println!("  decrypt ceiling         {ceiling:6.2} GiB/s   (c4gh, one stream, in memory)");
    println!(
        "  plaintext mode          {p:6.2} GiB/s   peak RSS {:6.1} MiB   CPU {:5.2} s/GiB   {:.2}x min(curl, ceiling) (target >= 0.8)",
        plaintext.maxrss_mib,
        per_gib(&plaintext),
        p / plain_ref
    );
    println!("  (CPU: user + system seconds of the client, lowest of the 3 runs, per GiB of body)");
    println!(
        "  {SMALL_INPUTS} small inputs ready in {:.3} s (concurrency 4), {:.3} s (concurrency 16) (target < 1 s)",
        ready, ready16
    );
    let _ = fs::remove_dir_all(&work);
    Ok(())
}

/// Starts `run` with 200 small inputs; returns seconds until `Ready`; then SIGTERM and checks.
fn ready_time(
    sidecar: &Path,
    authority: &str,
    w: &dyn Fn(&str) -> PathBuf,
    concurrency: u16,
) -> Result<f64, Error> {
    // The key volume is memory-backed in a pod; /dev/shm is the closest match here.
    let shm = Path::new("/dev/shm");
    let key_dir = if shm.is_dir() {
        shm.join(format!(
            "c4gh-bench-key{concurrency}-{}",
            std::process::id()
        ))
    } else {
        w(&format!("key{concurrency}"))
    };
    let out = w(&format!("small{concurrency}"));
    fs::create_dir_all(&key_dir).map_err(io("mkdir"))?;
    fs::create_dir_all(&out).map_err(io("mkdir"))?;
    let inputs: Vec<String> = (0..SMALL_INPUTS)
        .map(|i| {
            format!(
                r#"{{"url":"drs://{authority}/small{i}","path":"{}/in{i}.c4gh"}}"#,
                out.display()
            )
        })
        .collect();
    let start = Instant::now();
    let mut child = Command::new(sidecar)
        .arg("run")
        .env("C4GH_INPUTS", format!("[{}]", inputs.join(",")))
        .env("C4GH_KEY_DIR", &key_dir)
        .env("C4GH_INPUT_ROOTS", &out)
        .env("C4GH_DRS_ALLOW_PORT", "true")
        .env("C4GH_CA_BUNDLE", w("ca.crt"))
        .env("C4GH_TOKEN_FILE", w("token"))
        .env("C4GH_CONCURRENCY", concurrency.to_string())
        .env("C4GH_ALLOWED_HOSTS", authority)
        .stderr(Stdio::null())
        .spawn()
        .map_err(io("start c4gh-sidecar run"))?;
    let status = key_dir.join("status.json");
    let seconds = loop {
        if let Ok(text) = fs::read_to_string(&status) {
            if text.contains("\"phase\": \"Ready\"") {
                break start.elapsed().as_secs_f64();
            }
            if text.contains("\"phase\": \"Failed\"") {
                let _ = child.kill();
                return Err(fail(format!("sidecar run failed: {text}")));
            }
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            return Err(fail("sidecar run not ready after 120 s"));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let pid = i32::try_from(child.id()).map_err(io("pid"))?;
    kill(Pid::from_raw(pid), Signal::SIGTERM).map_err(io("SIGTERM"))?;
    let exit = child.wait().map_err(io("wait"))?;
    let key_left = key_dir.join("ephemeral.sec").exists();
    let _ = fs::remove_dir_all(&key_dir);
    if !exit.success() || key_left {
        return Err(fail(format!(
            "after SIGTERM: exit {exit}, key file present: {key_left}"
        )));
    }
    Ok(seconds)
}
