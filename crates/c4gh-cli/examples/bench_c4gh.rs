//! `cargo xtask bench c4gh`: throughput and memory of `c4gh` against the reference Python
//! `crypt4gh` and against the machine's ChaCha20-Poly1305 ceiling, all in one run.
//!
//! Measures on one plaintext file (default 1 GiB, `--mib N`) in a work directory on disk:
//! - the ceilings, ChaCha20-Poly1305 sealing 64 KiB segments on one core in memory, in GiB per
//!   CPU-second (`openssl speed` divides by CPU time; so do the others here): OpenSSL's
//!   own `openssl speed -evp chacha20-poly1305 -bytes 65536` (run and parsed here), OpenSSL's
//!   libcrypto called from Rust as `c4gh` calls it (the backend `c4gh` uses), `ring` (the
//!   previous backend) and RustCrypto `chacha20poly1305`; the fastest of them is "the ceiling";
//! - the header path: opening a one-recipient header and re-encrypting it (X25519, BLAKE2b,
//!   ChaCha20-Poly1305 on a few bytes), microseconds per operation;
//! - `c4gh encrypt` / `c4gh decrypt` (the release binary, stdin from the file, stdout to
//!   /dev/null) on one thread, on every core and with the default thread count (no
//!   `--threads`, no `C4GH_THREADS`), and the Python reference's `crypt4gh`;
//! - the multi-core speed-up of decryption read two ways: (a) hardware scaling, the same command
//!   (`--threads 0`, one thread per core it may run on) pinned to one core and then to every
//!   core (CPU affinity set for the child, as `taskset -c 0` / `taskset -c 0,1` would), and
//!   (b) `--threads 1` against `--threads N` unpinned;
//! - peak RSS of a streaming `c4gh decrypt` for the full file and a 1/16 prefix, each from
//!   `getrusage(RUSAGE_CHILDREN)` in a helper process that runs only that decrypt.
//!
//! Each throughput figure is the best of `--runs` runs (default 3), printed with the CPU time
//! (user + system, from `getrusage`) that run used, and the load average before and after is
//! printed. Prints ratios and whether the targets are met: single-core decrypt ≥ 70 % of the
//! fastest ceiling, all cores ≥ 1.7× single core (both readings), the CLI defaults ≥ 3× Python,
//! peak RSS ≤ 16 MiB. The work directory is removed at the end.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use c4gh::keys::SecretKey;
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeValLike;
use nix::unistd::Pid;
use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

const SEG: usize = 65_536;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

struct Options {
    c4gh: PathBuf,
    python: PathBuf,
    dir: PathBuf,
    mib: u64,
    runs: usize,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut c4gh = None;
    let mut python = None;
    let mut dir = None;
    let mut mib = 1024;
    let mut runs = 3;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--c4gh" => c4gh = Some(PathBuf::from(value()?)),
            "--python" => python = Some(PathBuf::from(value()?)),
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--mib" => mib = value()?.parse()?,
            "--runs" => runs = value()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(Options {
        c4gh: c4gh.context("--c4gh PATH is required")?,
        python: python.context("--python PATH (the reference crypt4gh) is required")?,
        dir: dir.context("--dir PATH is required")?,
        mib,
        runs,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("--rss-probe") {
        rss_probe(&args[1..])
    } else {
        parse_options(&args).and_then(|o| {
            let result = bench(&o);
            let _ = fs::remove_dir_all(&o.dir);
            result
        })
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_c4gh: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Helper mode: `--rss-probe STDIN PROGRAM ARGS…` runs the program with stdin from the file and
/// stdout to /dev/null, and prints its peak RSS in KiB.
fn rss_probe(args: &[String]) -> Result<()> {
    let [stdin, program, rest @ ..] = args else {
        bail!("--rss-probe STDIN PROGRAM ARGS…");
    };
    let status = Command::new(program)
        .args(rest)
        .env_remove("C4GH_THREADS")
        .stdin(File::open(stdin)?)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("{program} failed: {status}");
    }
    println!("{}", getrusage(UsageWho::RUSAGE_CHILDREN)?.max_rss());
    Ok(())
}

/// One measured command: best wall-clock seconds of several runs, and the CPU seconds (user +
/// system) of that run.
#[derive(Clone, Copy)]
struct Timing {
    wall: f64,
    cpu: f64,
}

/// CPU seconds (user + system) used so far by waited-for children.
fn children_cpu() -> Result<f64> {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    Ok(
        (usage.user_time().num_microseconds() + usage.system_time().num_microseconds()) as f64
            / 1e6,
    )
}

/// Runs `f` with this process's CPU affinity set to `cpus` (inherited by the children it
/// starts), then restores it.
fn with_affinity<T>(cpus: Option<&CpuSet>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let Some(cpus) = cpus else { return f() };
    let me = Pid::from_raw(0);
    let saved = sched_getaffinity(me)?;
    sched_setaffinity(me, cpus).context("setting CPU affinity")?;
    let result = f();
    sched_setaffinity(me, &saved).context("restoring CPU affinity")?;
    result
}

/// The best of `runs` runs of a command reading `stdin`, optionally pinned to `cpus`.
fn time_command(
    runs: usize,
    stdin: &Path,
    program: &Path,
    args: &[&str],
    cpus: Option<&CpuSet>,
) -> Result<Timing> {
    let mut best = Timing {
        wall: f64::INFINITY,
        cpu: 0.0,
    };
    for _ in 0..runs {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_remove("C4GH_THREADS")
            .stdin(File::open(stdin)?)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let cpu_before = children_cpu()?;
        let start = Instant::now();
        let out = with_affinity(cpus, || {
            cmd.output()
                .with_context(|| format!("starting {}", program.display()))
        })?;
        let wall = start.elapsed().as_secs_f64();
        let cpu = children_cpu()? - cpu_before;
        if !out.status.success() {
            bail!(
                "{} {args:?} failed: {}",
                program.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if wall < best.wall {
            best = Timing { wall, cpu };
        }
    }
    Ok(best)
}

/// Peak RSS (MiB) of one run of a command, measured in a fresh helper process.
fn peak_rss(stdin: &Path, program: &Path, args: &[&str]) -> Result<f64> {
    let me = std::env::current_exe()?;
    let out = Command::new(me)
        .arg("--rss-probe")
        .arg(stdin)
        .arg(program)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("RSS probe failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let kib: f64 = String::from_utf8(out.stdout)?.trim().parse()?;
    Ok(kib / 1024.0)
}

/// GiB/s of `ring` ChaCha20-Poly1305 sealing `bytes` worth of 64 KiB segments on one core.
fn ring_ceiling(bytes: u64, runs: usize) -> f64 {
    let key = LessSafeKey::new(
        UnboundKey::new(&CHACHA20_POLY1305, &[7u8; 32]).unwrap_or_else(|_| unreachable!()),
    );
    let mut buf = vec![1u8; SEG];
    let segments = bytes / SEG as u64;
    best_rate(bytes, runs, || {
        for i in 0..segments {
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&i.to_le_bytes());
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::empty(),
                    &mut buf,
                )
                .unwrap_or_else(|_| unreachable!());
            let _ = std::hint::black_box(tag);
        }
    })
}

/// GiB/s of OpenSSL's libcrypto doing the same through the `openssl` crate, one cipher context
/// re-armed with each nonce (as `c4gh` does).
fn openssl_ceiling(bytes: u64, runs: usize) -> Result<f64> {
    let mut ctx = CipherCtx::new()?;
    ctx.encrypt_init(Some(Cipher::chacha20_poly1305()), Some(&[7u8; 32]), None)?;
    let mut buf = vec![1u8; SEG];
    let mut tag = [0u8; 16];
    let segments = bytes / SEG as u64;
    let mut result = Ok(());
    let rate = best_rate(bytes, runs, || {
        for i in 0..segments {
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&i.to_le_bytes());
            let step = ctx
                .encrypt_init(None, None, Some(&nonce))
                .and_then(|()| ctx.cipher_update_inplace(&mut buf, SEG))
                .and_then(|_| ctx.cipher_final(&mut []))
                .and_then(|_| ctx.tag(&mut tag));
            if let Err(e) = step {
                result = Err(e);
                return;
            }
            let _ = std::hint::black_box(&tag);
        }
    });
    result?;
    Ok(rate)
}

/// GiB/s of `openssl speed -evp chacha20-poly1305 -bytes 65536` (OpenSSL's own loop), parsed
/// from its last line (`ChaCha20-Poly1305  4252938.42k`: thousands of bytes per second).
fn openssl_speed() -> Result<f64> {
    let out = Command::new("openssl")
        .args([
            "speed",
            "-evp",
            "chacha20-poly1305",
            "-bytes",
            "65536",
            "-seconds",
            "3",
        ])
        .stderr(Stdio::null())
        .output()
        .context("running `openssl speed` (install the openssl command-line tool)")?;
    if !out.status.success() {
        bail!("openssl speed failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    parse_openssl_speed(&text)
        .with_context(|| format!("no ChaCha20-Poly1305 figure in `openssl speed` output:\n{text}"))
}

fn parse_openssl_speed(text: &str) -> Option<f64> {
    let line = text
        .lines()
        .rev()
        .find(|l| l.to_ascii_lowercase().starts_with("chacha20-poly1305"))?;
    let k: f64 = line
        .split_whitespace()
        .last()?
        .strip_suffix('k')?
        .parse()
        .ok()?;
    Some(k * 1000.0 / GIB)
}

/// Microseconds per header open and per re-encryption of a one-recipient header.
fn header_path(runs: usize) -> Result<(f64, f64)> {
    const OPS: u32 = 2000;
    let (writer, reader, task) = (
        SecretKey::generate(),
        SecretKey::generate(),
        SecretKey::generate(),
    );
    let key = c4gh::DataKey::generate();
    let header = c4gh::header::build(&writer, &[reader.public_key()], &[&key], None)?;
    let parsed = c4gh::header::EncryptedHeader::parse(&header)?;
    let mut best_open = f64::INFINITY;
    let mut best_reencrypt = f64::INFINITY;
    for _ in 0..runs {
        let start = Instant::now();
        for _ in 0..OPS {
            std::hint::black_box(parsed.open(&[&reader], None)?);
        }
        best_open = best_open.min(start.elapsed().as_secs_f64());
        let start = Instant::now();
        for _ in 0..OPS {
            std::hint::black_box(c4gh::header::reencrypt(
                &header,
                &reader,
                &[task.public_key()],
                true,
            )?);
        }
        best_reencrypt = best_reencrypt.min(start.elapsed().as_secs_f64());
    }
    let per_op = |s: f64| s / f64::from(OPS) * 1e6;
    Ok((per_op(best_open), per_op(best_reencrypt)))
}

/// The 1-, 5- and 15-minute load averages.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".into(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

/// GiB/s of RustCrypto `chacha20poly1305` doing the same.
fn rustcrypto_ceiling(bytes: u64, runs: usize) -> f64 {
    let cipher = ChaCha20Poly1305::new(&[7u8; 32].into());
    let mut buf = vec![1u8; SEG];
    let segments = bytes / SEG as u64;
    best_rate(bytes, runs, || {
        for i in 0..segments {
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&i.to_le_bytes());
            let tag = cipher
                .encrypt_in_place_detached(&nonce.into(), b"", &mut buf)
                .unwrap_or_else(|_| unreachable!());
            let _ = std::hint::black_box(tag);
        }
    })
}

/// CPU seconds (user + system) used so far by the calling thread.
fn thread_cpu() -> f64 {
    getrusage(UsageWho::RUSAGE_THREAD).map_or(0.0, |u| {
        (u.user_time().num_microseconds() + u.system_time().num_microseconds()) as f64 / 1e6
    })
}

/// GiB per CPU-second (of this thread) of the fastest of `runs` runs of `f` over `bytes`: the
/// same divisor as `openssl speed` (CPU time), so the ceilings compare even when other work
/// shares the machine. On an idle machine it equals GiB/s.
fn best_rate(bytes: u64, runs: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let start = thread_cpu();
        f();
        best = best.min(thread_cpu() - start);
    }
    bytes as f64 / GIB / best.max(1e-9)
}

/// Writes `mib` MiB of pseudo-random (incompressible, cheap) plaintext.
fn write_plaintext(path: &Path, mib: u64) -> Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        out.write_all(&block)?;
    }
    out.flush()?;
    Ok(())
}

fn bench(o: &Options) -> Result<()> {
    fs::create_dir_all(&o.dir)?;
    let bytes = o.mib * 1024 * 1024;
    let gib = bytes as f64 / GIB;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "c4gh benchmark: {} MiB file in {}, {cores} cores, best of {} runs",
        o.mib,
        o.dir.display(),
        o.runs
    );

    let sk_path = o.dir.join("bench.sec");
    let pk_path = o.dir.join("bench.pub");
    let key = SecretKey::generate();
    key.write_file(&sk_path, None, None, c4gh::keys::SECRET_KEY_FILE_MODE)?;
    c4gh::keys::write_key_file(&pk_path, key.public_key().to_pem().as_bytes(), 0o644)?;
    let (sk, pk) = (
        sk_path.to_str().context("path")?,
        pk_path.to_str().context("path")?,
    );

    let plain = o.dir.join("plain.bin");
    let enc = o.dir.join("plain.bin.c4gh");
    let small_enc = o.dir.join("small.bin.c4gh");
    write_plaintext(&plain, o.mib)?;
    let status = Command::new(&o.c4gh)
        .args(["encrypt", "--sk", sk, "--recipient_pk", pk])
        .stdin(File::open(&plain)?)
        .stdout(File::create(&enc)?)
        .status()?;
    if !status.success() {
        bail!("c4gh encrypt failed");
    }
    let small_range = format!("0-{}", bytes / 16);
    let status = Command::new(&o.c4gh)
        .args([
            "encrypt",
            "--sk",
            sk,
            "--recipient_pk",
            pk,
            "--range",
            &small_range,
        ])
        .stdin(File::open(&plain)?)
        .stdout(File::create(&small_enc)?)
        .status()?;
    if !status.success() {
        bail!("c4gh encrypt --range failed");
    }

    let load_before = load_average();
    let speed = openssl_speed()?;
    let openssl = openssl_ceiling(bytes, o.runs)?;
    let ring = ring_ceiling(bytes, o.runs);
    let rustcrypto = rustcrypto_ceiling(bytes, o.runs);
    let ceiling = speed.max(openssl).max(ring).max(rustcrypto);
    let (header_open_us, reencrypt_us) = header_path(o.runs)?;

    let all = cores.to_string();
    let enc_1 = time_command(
        o.runs,
        &plain,
        &o.c4gh,
        &[
            "encrypt",
            "--sk",
            sk,
            "--recipient_pk",
            pk,
            "--threads",
            "1",
        ],
        None,
    )?;
    let enc_n = time_command(
        o.runs,
        &plain,
        &o.c4gh,
        &[
            "encrypt",
            "--sk",
            sk,
            "--recipient_pk",
            pk,
            "--threads",
            &all,
        ],
        None,
    )?;
    let enc_default = time_command(
        o.runs,
        &plain,
        &o.c4gh,
        &["encrypt", "--sk", sk, "--recipient_pk", pk],
        None,
    )?;
    let dec_1 = time_command(
        o.runs,
        &enc,
        &o.c4gh,
        &["decrypt", "--sk", sk, "--threads", "1"],
        None,
    )?;
    let dec_n = time_command(
        o.runs,
        &enc,
        &o.c4gh,
        &["decrypt", "--sk", sk, "--threads", &all],
        None,
    )?;
    let dec_default = time_command(o.runs, &enc, &o.c4gh, &["decrypt", "--sk", sk], None)?;
    // (a) The same command, one thread per core it may use, pinned to one core and to all.
    let every_core = sched_getaffinity(Pid::from_raw(0))?;
    let mut one_core = CpuSet::new();
    let first = (0..CpuSet::count())
        .find(|&c| every_core.is_set(c).unwrap_or(false))
        .context("no CPU in this process's affinity mask")?;
    one_core.set(first)?;
    let auto = ["decrypt", "--sk", sk, "--threads", "0"];
    let pinned_1 = time_command(o.runs, &enc, &o.c4gh, &auto, Some(&one_core))?;
    let pinned_n = time_command(o.runs, &enc, &o.c4gh, &auto, Some(&every_core))?;
    let py_enc = time_command(
        o.runs,
        &plain,
        &o.python,
        &["encrypt", "--sk", sk, "--recipient_pk", pk],
        None,
    )?;
    let py_dec = time_command(o.runs, &enc, &o.python, &["decrypt", "--sk", sk], None)?;

    let one = ["decrypt", "--sk", sk, "--threads", "1"];
    let rss_big = peak_rss(&enc, &o.c4gh, &one)?;
    let rss_small = peak_rss(&small_enc, &o.c4gh, &one)?;
    let rss_big_n = peak_rss(&enc, &o.c4gh, &["decrypt", "--sk", sk])?;
    let rss_small_n = peak_rss(&small_enc, &o.c4gh, &["decrypt", "--sk", sk])?;
    let rss_py = peak_rss(&enc, &o.python, &["decrypt", "--sk", sk])?;
    let load_after = load_average();

    println!("load average before {load_before}, after {load_after}");
    println!();
    let vs = |x: f64| format!("{:.2}x the ceiling", x / ceiling);
    println!("ChaCha20-Poly1305 ceilings, 64 KiB segments, 1 core, in memory  GiB/CPU-s");
    println!(
        "  openssl speed -evp chacha20-poly1305 -bytes 65536               {speed:6.2}  {}",
        vs(speed)
    );
    println!(
        "  OpenSSL libcrypto via the openssl crate (c4gh's backend)        {openssl:6.2}  {}",
        vs(openssl)
    );
    println!(
        "  ring (the previous backend)                                     {ring:6.2}  {}",
        vs(ring)
    );
    println!(
        "  RustCrypto chacha20poly1305                                     {rustcrypto:6.2}  {}",
        vs(rustcrypto)
    );
    println!(
        "header path: open {header_open_us:.1} us, re-encrypt for one key {reencrypt_us:.1} us"
    );
    println!();
    let rate = |t: Timing| gib / t.wall;
    let cpu = |t: Timing| t.cpu / gib;
    println!("                                  GiB/s   CPU s/GiB (user+sys, best run)");
    let row = |name: &str, t: Timing| {
        println!("{name:<33} {:5.2}   {:5.2}", rate(t), cpu(t));
    };
    row("encrypt  c4gh --threads 1", enc_1);
    row(&format!("encrypt  c4gh --threads {cores}"), enc_n);
    row("encrypt  c4gh (default threads)", enc_default);
    row("encrypt  python crypt4gh 1.8.6", py_enc);
    row("decrypt  c4gh --threads 1", dec_1);
    row(&format!("decrypt  c4gh --threads {cores}"), dec_n);
    row("decrypt  c4gh (default threads)", dec_default);
    row(&format!("decrypt  c4gh --threads 0, cpu {first}"), pinned_1);
    row(
        &format!("decrypt  c4gh --threads 0, {cores} cpus"),
        pinned_n,
    );
    row("decrypt  python crypt4gh 1.8.6", py_dec);
    println!();
    println!(
        "peak RSS, streaming decrypt (MiB)   {} MiB file   {} MiB file",
        o.mib,
        o.mib / 16
    );
    println!("c4gh --threads 1                    {rss_big:10.1}   {rss_small:10.1}");
    println!("c4gh (default threads)              {rss_big_n:10.1}   {rss_small_n:10.1}");
    println!("python crypt4gh 1.8.6               {rss_py:10.1}");
    println!();
    let check = |ok: bool| if ok { "met" } else { "MISSED" };
    let r1 = rate(dec_1) / ceiling;
    let r1_cpu = gib / dec_1.cpu / ceiling;
    let r1_pinned = rate(pinned_1) / ceiling;
    let scaling_a = rate(pinned_n) / rate(pinned_1);
    let scaling_b = rate(dec_n) / rate(dec_1);
    let rp = rate(dec_default) / rate(py_dec);
    let rss_max = rss_big.max(rss_small).max(rss_big_n).max(rss_small_n);
    println!(
        "single-core decrypt / fastest ceiling    {r1:5.2}  (target >= 0.70: {}); pinned --threads 0: {r1_pinned:.2}",
        check(r1 >= 0.70)
    );
    println!("  the same per CPU-second (load-robust)  {r1_cpu:5.2}");
    println!(
        "single-core decrypt / ring ceiling       {:5.2}",
        rate(dec_1) / ring
    );
    println!(
        "all cores / one core, pinned (a)         {scaling_a:5.2}  (target >= 1.70: {})",
        check(scaling_a >= 1.70)
    );
    println!(
        "--threads {cores} / --threads 1, unpinned (b)  {scaling_b:5.2}  (target >= 1.70: {})",
        check(scaling_b >= 1.70)
    );
    println!(
        "default decrypt / python decrypt         {rp:5.2}  (target >= 3.00: {})",
        check(rp >= 3.0)
    );
    println!(
        "default encrypt / python encrypt         {:5.2}",
        rate(enc_default) / rate(py_enc)
    );
    println!(
        "all-core encrypt / single-core           {:5.2}",
        rate(enc_n) / rate(enc_1)
    );
    println!(
        "peak RSS                                 {rss_max:5.1} MiB (target <= 16: {})",
        check(rss_max <= 16.0)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_speed_output_parses() {
        let out = "CPUINFO: OPENSSL_ia32cap=0xfffa32034f8bffff:0x1a415f46f1bf2ffb\n\
                   The 'numbers' are in 1000s of bytes per second processed.\n\
                   type          65536 bytes\n\
                   ChaCha20-Poly1305  4252938.42k\n";
        let gib = parse_openssl_speed(out).unwrap();
        assert!((gib - 4_252_938_420.0 / GIB).abs() < 1e-6, "{gib}");
        assert!(parse_openssl_speed("type 65536 bytes\n").is_none());
    }
}
