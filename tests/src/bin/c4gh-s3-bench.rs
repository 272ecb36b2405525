//! `cargo xtask bench s3`: a body from a real S3 object store (SeaweedFS on loopback HTTPS,
//! `c4gh_e2e::seaweed`) through a pre-signed URL: `c4gh-sidecar fetch` (encrypted mode: header
//! from `c4gh-drs-server serve --s3-bucket`, body from the signed URL, sha-256 and every segment
//! checked) vs `curl` downloading the same signed URL, one run each; and the peak RSS of the
//! sidecar and of `c4gh-drs-server add --s3-bucket` (the streaming multipart upload) for the same
//! body. The body is `ARGS[1]` MiB (default 1024) of pseudo-random plaintext.
//!
//! `memory [LARGE_MIB [SMALL_MIB]]` (`cargo xtask bench s3-memory`) instead measures the peak RSS
//! of `c4gh-sidecar fetch` for a small body (default 16 MiB) and a large one (default 4096 MiB)
//! from the same server and bucket, to show that memory does not grow with the body (no curl
//! run).
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
    /// User + system CPU time of the child.
    cpu_seconds: f64,
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
        cpu_seconds: field("cpu_seconds="),
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
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    println!(
        "maxrss_kib={} seconds={seconds} cpu_seconds={}",
        usage.max_rss(),
        secs(usage.user_time()) + secs(usage.system_time())
    );
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

/// A `c4gh-drs-server serve --s3-bucket` on SeaweedFS with its files in a work directory.
struct Bench {
    weed: SeaweedFs,
    work: tempfile::TempDir,
    sidecar: PathBuf,
    server_bin: PathBuf,
    authority: String,
    server: std::process::Child,
    creds: Vec<(&'static str, String)>,
}

impl Bench {
    fn start() -> Self {
        let (sidecar, server_bin) = (release("c4gh-sidecar"), release("c4gh-drs-server"));
        let work = tempfile::Builder::new()
            .prefix("c4gh-s3-bench-")
            .tempdir_in(workspace::root().join("target"))
            .unwrap();
        let w = |name: &str| work.path().join(name);
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
        let creds = vec![
            ("AWS_ACCESS_KEY_ID", weed.access_key().to_owned()),
            ("AWS_SECRET_ACCESS_KEY", weed.secret_key().to_owned()),
        ];
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let authority = format!("127.0.0.1:{port}");
        let ws = |name: &str| w(name).display().to_string();
        let serve_args: Vec<String> =
            ["serve", "--listen", &authority, "--catalog", &ws("catalog")]
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
                .chain(s3_args(format!("https://{}", weed.https_addr())))
                .collect();
        let server = Command::new(&server_bin)
            .args(&serve_args)
            .envs(creds.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Bench {
            weed,
            work,
            sidecar,
            server_bin,
            authority,
            server,
            creds,
        }
    }

    fn path(&self, name: &str) -> String {
        self.work.path().join(name).display().to_string()
    }

    /// `c4gh-drs-server add --s3-bucket` of `mib` MiB as `id`: its measurement and the body's
    /// size in bytes.
    fn add(&self, id: &str, mib: u64) -> (Measured, u64) {
        let plain = self.work.path().join(format!("{id}.bin"));
        eprintln!("writing {mib} MiB of test data");
        write_data(&plain, mib);
        let add_args: Vec<String> = ["add", "--catalog", &self.path("catalog"), "--id", id]
            .into_iter()
            .map(str::to_owned)
            .chain(["--public-key".into(), self.path("server.pub")])
            .chain(["--file".into(), plain.display().to_string()])
            .chain(s3_args(self.weed.endpoint()))
            .collect();
        eprintln!("c4gh-drs-server add --s3-bucket ({mib} MiB)");
        let add = measured(&self.server_bin, &add_args, &self.creds);
        fs::remove_file(plain).unwrap();
        let record: serde_json::Value = serde_json::from_slice(
            &fs::read(self.work.path().join("catalog").join(format!("{id}.json"))).unwrap(),
        )
        .unwrap();
        (add, record["body"]["size"].as_u64().unwrap())
    }

    /// The signed body URL of `id` (waits for the server to answer).
    fn signed_url(&self, id: &str) -> String {
        let access = format!(
            "https://{}/ga4gh/drs/v1/objects/{id}/access/crypt4gh-body",
            self.authority
        );
        let auth = format!("Authorization: Bearer {TOKEN}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let answer = loop {
            let out = Command::new("curl")
                .args([
                    "-sS",
                    "--fail",
                    "--cacert",
                    &self.path("ca.pem"),
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
        signed["url"].as_str().unwrap().to_owned()
    }

    /// curl downloading `url` (`bytes` long).
    fn curl(&self, url: String, bytes: u64) -> Measured {
        let out = self.path("out.curl");
        let curl_args: Vec<String> = [
            "-sS",
            "--fail",
            "-o",
            &out,
            "--cacert",
            &self.path("ca.pem"),
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([url])
        .collect();
        eprintln!("curl on the signed URL");
        let curl = measured(Path::new("curl"), &curl_args, &[]);
        assert_eq!(fs::metadata(&out).unwrap().len(), bytes);
        fs::remove_file(out).unwrap();
        curl
    }

    /// `c4gh-sidecar fetch` of `id` (encrypted mode: the Crypt4GH file, `bytes` of body).
    fn fetch(&self, id: &str, bytes: u64) -> Measured {
        let out = self.path(&format!("{id}.c4gh"));
        let fetch_args: Vec<String> = [
            "fetch",
            &format!("drs://{}/{id}", self.authority),
            "-o",
            &out,
        ]
        .into_iter()
        .map(str::to_owned)
        .chain(["--key-out".into(), self.path(&format!("{id}.sec"))])
        .chain(["--drs-allow-port".into(), "--no-progress".into()])
        .chain(["--ca-bundle".into(), self.path("ca.pem")])
        .chain(["--token-file".into(), self.path("token")])
        .collect();
        eprintln!("c4gh-sidecar fetch {id}");
        let fetch = measured(&self.sidecar, &fetch_args, &[]);
        assert!(fs::metadata(&out).unwrap().len() > bytes);
        fs::remove_file(out).unwrap();
        fetch
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn s3_args(endpoint: String) -> Vec<String> {
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
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 30)
}

fn load() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("__rusage") => rusage(&args[1..]),
        Some("memory") => {
            let large: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(4096);
            let small: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(16);
            memory(small, large);
        }
        _ => speed(args.first().and_then(|a| a.parse().ok()).unwrap_or(1024)),
    }
}

fn speed(mib: u64) {
    let bench = Bench::start();
    let (add, body_bytes) = bench.add("big", mib);
    let url = bench.signed_url("big");
    let curl = bench.curl(url, body_bytes);
    let fetch = bench.fetch("big", body_bytes);
    let gib = gib(body_bytes);
    println!();
    println!(
        "body from SeaweedFS via a signed URL: {mib} MiB plaintext, {body_bytes} bytes body, one run each"
    );
    println!(
        "  curl (signed URL)        {:6.3} GiB/s   {:7.2} s   CPU {:6.2} s   peak RSS {:6.1} MiB",
        gib / curl.seconds,
        curl.seconds,
        curl.cpu_seconds,
        curl.maxrss_mib
    );
    println!(
        "  c4gh-sidecar fetch       {:6.3} GiB/s   {:7.2} s   CPU {:6.2} s   peak RSS {:6.1} MiB   {:.2}x curl (target >= 0.9)",
        gib / fetch.seconds,
        fetch.seconds,
        fetch.cpu_seconds,
        fetch.maxrss_mib,
        curl.seconds / fetch.seconds
    );
    println!(
        "  c4gh-drs-server add      {:6.3} GiB/s   {:7.2} s   CPU {:6.2} s   peak RSS {:6.1} MiB   (encrypt + multipart upload)",
        gib / add.seconds,
        add.seconds,
        add.cpu_seconds,
        add.maxrss_mib
    );
    println!("  load average (1/5/15 min, running/total): {}", load());
}

fn memory(small: u64, large: u64) {
    let bench = Bench::start();
    let mut rows = Vec::new();
    for (id, mib) in [("small", small), ("large", large)] {
        let (add, bytes) = bench.add(id, mib);
        bench.signed_url(id);
        let fetch = bench.fetch(id, bytes);
        rows.push((mib, bytes, add, fetch));
    }
    println!();
    println!("peak RSS by body size, body from SeaweedFS via a signed URL, one run each");
    for (mib, bytes, add, fetch) in &rows {
        println!(
            "  {mib:5} MiB plaintext ({bytes} bytes body): c4gh-sidecar fetch peak RSS {:6.1} MiB ({:7.2} s, {:.3} GiB/s); c4gh-drs-server add peak RSS {:6.1} MiB ({:7.2} s)",
            fetch.maxrss_mib,
            fetch.seconds,
            gib(*bytes) / fetch.seconds,
            add.maxrss_mib,
            add.seconds
        );
    }
    println!("  load average (1/5/15 min, running/total): {}", load());
}
