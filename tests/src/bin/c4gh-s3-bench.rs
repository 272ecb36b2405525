//! `cargo xtask bench s3`: a body from a real S3 object store (SeaweedFS on loopback HTTPS,
//! `c4gh_e2e::seaweed`) through a pre-signed URL: `c4gh-sidecar fetch` (encrypted mode: header
//! from `c4gh-drs-server serve --s3-bucket`, body from the signed URL, sha-256 and every segment
//! checked) vs `curl` downloading the same signed URL, one run each; and the peak RSS of the
//! sidecar and of `c4gh-drs-server add --s3-bucket` (the streaming multipart upload) for the same
//! body. The body is `ARGS[1]` MiB (default 1024) of pseudo-random plaintext.
//!
//! The driver only starts processes, so it runs as a debug build; `c4gh-sidecar` and
//! `c4gh-drs-server` are the release builds next to it (`target/release`, built by
//! `cargo xtask bench s3`). `__rusage PROGRAM ARGS…` is the hidden mode that measures one child.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: failures abort the run

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use c4gh_e2e::seaweed::{BUCKET, REGION, SeaweedFs};
use c4gh_e2e::workspace;
use nix::sys::resource::{UsageWho, getrusage};

const TOKEN: &str = "s3-bench-token-0123456789abcdef0123456789";

struct Measured {
    seconds: f64,
    maxrss_mib: f64,
}

/// Runs `program args` in a child of a fresh copy of this driver, so that the child's peak RSS
/// is the only one `RUSAGE_CHILDREN` sees.
fn measured(program: &Path, args: &[String], env: &[(&str, String)]) -> Measured {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("__rusage")
        .arg(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> f64 {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    Measured {
        seconds: field("seconds="),
        maxrss_mib: field("maxrss_kib=") / 1024.0,
    }
}

fn rusage(args: &[String]) {
    let start = Instant::now();
    let status = Command::new(&args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    println!("maxrss_kib={} seconds={seconds}", usage.max_rss());
    std::process::exit(if status.success() { 0 } else { 1 });
}

/// `mib` MiB of xorshift bytes, written 1 MiB at a time.
fn write_data(path: &Path, mib: u64) {
    let mut file = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
}

fn release(name: &str) -> PathBuf {
    let debug = workspace::binary("c4gh-sidecar", "c4gh-sidecar").unwrap();
    debug
        .parent()
        .and_then(|d| d.parent())
        .map(|t| t.join("release").join(name))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| panic!("target/release/{name} is missing: run `cargo xtask bench s3`"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__rusage") {
        rusage(&args[1..]);
        return;
    }
    let mib: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1024);
    let (sidecar, server_bin) = (release("c4gh-sidecar"), release("c4gh-drs-server"));
    let work = tempfile::Builder::new()
        .prefix("c4gh-s3-bench-")
        .tempdir_in(workspace::root().join("target"))
        .unwrap();
    let w = |name: &str| work.path().join(name);
    let ws = |name: &str| w(name).display().to_string();

    let weed = SeaweedFs::start().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let direct = weed
        .store(None, "bodies/", Duration::from_secs(600), false)
        .unwrap();
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(e) = direct.create_bucket().await {
            assert!(Instant::now() < deadline, "creating the bucket: {e}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });

    let key = c4gh::SecretKey::generate();
    fs::write(w("server.sec"), key.to_pem(None, None).unwrap().as_bytes()).unwrap();
    fs::write(w("server.pub"), key.public_key().to_pem()).unwrap();
    let ca = testkit::tls::TestCa::new("s3 bench CA").unwrap();
    let leaf = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    fs::write(w("tls.crt"), &leaf.cert_pem).unwrap();
    fs::write(w("tls.key"), leaf.key_pem.as_bytes()).unwrap();
    fs::write(w("ca.pem"), format!("{}{}", ca.cert_pem(), weed.ca_pem())).unwrap();
    fs::write(
        w("tokens.json"),
        format!(r#"[{{"subject":"bench","token":"{TOKEN}"}}]"#),
    )
    .unwrap();
    fs::write(w("token"), TOKEN).unwrap();
    fs::create_dir(w("catalog")).unwrap();
    eprintln!("writing {mib} MiB of test data");
    write_data(&w("big.bin"), mib);

    let creds = vec![
        ("AWS_ACCESS_KEY_ID", weed.access_key().to_owned()),
        ("AWS_SECRET_ACCESS_KEY", weed.secret_key().to_owned()),
    ];
    let s3 = |endpoint: String| -> Vec<String> {
        [
            "--s3-bucket",
            BUCKET,
            "--s3-prefix",
            "bodies/",
            "--s3-region",
            REGION,
            "--s3-path-style",
            "--s3-endpoint",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([endpoint])
        .collect()
    };
    let add_args: Vec<String> = ["add", "--catalog", &ws("catalog"), "--id", "big"]
        .into_iter()
        .map(str::to_owned)
        .chain(["--public-key".into(), ws("server.pub")])
        .chain(["--file".into(), ws("big.bin")])
        .chain(s3(weed.endpoint()))
        .collect();
    let add = measured(&server_bin, &add_args, &creds);
    fs::remove_file(w("big.bin")).unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(w("catalog/big.json")).unwrap()).unwrap();
    let body_bytes = record["body"]["size"].as_u64().unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let authority = format!("127.0.0.1:{port}");
    let serve_args: Vec<String> = ["serve", "--listen", &authority, "--catalog", &ws("catalog")]
        .into_iter()
        .map(str::to_owned)
        .chain(["--secret-key".into(), ws("server.sec")])
        .chain([
            "--tls-cert".into(),
            ws("tls.crt"),
            "--tls-key".into(),
            ws("tls.key"),
        ])
        .chain(["--tokens-file".into(), ws("tokens.json")])
        .chain(["--signed-url-seconds".into(), "3600".into()])
        .chain(s3(format!("https://{}", weed.https_addr())))
        .collect();
    let mut server = Command::new(&server_bin)
        .args(&serve_args)
        .envs(creds.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let access = format!("https://{authority}/ga4gh/drs/v1/objects/big/access/crypt4gh-body");
    let auth = format!("Authorization: Bearer {TOKEN}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--fail",
                "--cacert",
                &ws("ca.pem"),
                "-H",
                &auth,
                &access,
            ])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        if out.status.success() {
            break out.stdout;
        }
        assert!(Instant::now() < deadline, "c4gh-drs-server did not start");
        std::thread::sleep(Duration::from_millis(100));
    };
    let signed: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    let url = signed["url"].as_str().unwrap().to_owned();

    let curl_args: Vec<String> = [
        "-sS",
        "--fail",
        "-o",
        &ws("out.curl"),
        "--cacert",
        &ws("ca.pem"),
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([url])
    .collect();
    let curl = measured(Path::new("curl"), &curl_args, &[]);
    assert_eq!(fs::metadata(w("out.curl")).unwrap().len(), body_bytes);
    fs::remove_file(w("out.curl")).unwrap();
    let fetch_args: Vec<String> = [
        "fetch",
        &format!("drs://{authority}/big"),
        "-o",
        &ws("out.c4gh"),
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(["--key-out".into(), ws("bench.sec")])
    .chain(["--drs-allow-port".into(), "--no-progress".into()])
    .chain(["--ca-bundle".into(), ws("ca.pem")])
    .chain(["--token-file".into(), ws("token")])
    .collect();
    let fetch = measured(&sidecar, &fetch_args, &[]);
    let _ = server.kill();
    let _ = server.wait();

    let gib = body_bytes as f64 / f64::from(1u32 << 30);
    let uptime = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!(
        "body from SeaweedFS via a signed URL: {mib} MiB plaintext, {body_bytes} bytes body, one run each"
    );
    println!(
        "  curl (signed URL)        {:6.3} GiB/s   {:7.2} s   peak RSS {:6.1} MiB",
        gib / curl.seconds,
        curl.seconds,
        curl.maxrss_mib
    );
    println!(
        "  c4gh-sidecar fetch       {:6.3} GiB/s   {:7.2} s   peak RSS {:6.1} MiB   {:.2}x curl (target >= 0.9)",
        gib / fetch.seconds,
        fetch.seconds,
        fetch.maxrss_mib,
        curl.seconds / fetch.seconds
    );
    println!(
        "  c4gh-drs-server add      {:6.3} GiB/s   {:7.2} s   peak RSS {:6.1} MiB   (encrypt + multipart upload)",
        gib / add.seconds,
        add.seconds,
        add.maxrss_mib
    );
    println!(
        "  load average (1/5/15 min, running/total): {}",
        uptime.trim()
    );
}
