//! Load generator for `cargo xtask bench drs` (loopback only, bounded by request count and
//! time). Not a test: it prints numbers.
//!
//! The server is the real `c4gh-drs-server` binary in its own process (TLS files, a token file,
//! an unencrypted server key in a scratch directory, info-level JSON logs to a file), once with
//! TLS and once with `--insecure-plain-http`. Clients run in other processes: this one (headers,
//! file reads, ceilings), `curl`, and this binary re-run as `bench client …` (reqwest + rustls,
//! the project's client stack).
//!
//! 1. Re-encrypted headers per second, p50/p99 latency and the server's CPU time per header over
//!    TLS at 1, 16 and 256 concurrent clients (each client its own HTTP/1.1 connection and its
//!    own public key), with a static bearer token and with a GA4GH passport as the bearer token
//!    (one `ControlledAccessGrants` visa, ES256, JWKS from a local HTTPS issuer in this process),
//!    and the passport/bearer ratio; with `C4GH_BENCH_TOKENREVIEW_DIR` (set by `c4gh-e2e`'s
//!    `c4gh-drs-tokenreview-bench`, which starts a real control plane) also with a pod-bound
//!    ServiceAccount token checked by TokenReview (answers cached 10 s), and its ratio to bearer.
//! 2. Body, cold page cache (needs root: `sync; echo 1 > /proc/sys/vm/drop_caches` before each
//!    run): reading the body file vs downloading it over HTTPS (and plain HTTP), as ratios.
//! 3. Body, warm page cache: file read vs HTTPS vs plain HTTP, with the loopback TCP ceiling (a
//!    trivial sender and receiver of the same byte count) and the TLS ceiling (the same over
//!    rustls, no HTTP, no file), as ratios; and the server's CPU seconds per GiB.
//!
//! Best of 3 for every body number. Arguments: `[BODY_MIB] [REQUESTS_PER_LEVEL]
//! [SECONDS_PER_LEVEL]` (defaults 512, 20000, 20). `C4GH_DRS_SERVER_BIN` overrides the server
//! binary (default: `c4gh-drs-server` beside `examples/`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use c4gh::keys::SecretKey;
use drs_server::admin::{AddOptions, add_file};
use drs_server::testing::TestCa;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const MIB: f64 = (1u64 << 20) as f64;
const BLOCK: usize = 1 << 20;

type Run = (u64, f64);

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("bench drs: {message}");
    std::process::exit(1);
}

fn http_client(ca_pem: &str) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .http1_only()
        .no_proxy()
        .pool_max_idle_per_host(1);
    if let Ok(ca) = reqwest::Certificate::from_pem(ca_pem.as_bytes()) {
        builder = builder.add_root_certificate(ca);
    }
    builder.build().unwrap_or_else(|e| fail(e))
}

/// A server process and what a client needs to reach it.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// CPU seconds (user + system) the server process has used so far.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15,
        // in USER_HZ (100 per second on Linux).
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (ticks(11) + ticks(12)) / 100.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    dir: tempfile::TempDir,
    bin: PathBuf,
    ca_pem: String,
    cert_pem: String,
    key_pem: zeroize::Zeroizing<String>,
    token: String,
    /// `--visa-issuer` for the server: the bench's own visa issuer.
    visa_issuer: String,
    /// A real apiserver for TokenReview, when `C4GH_BENCH_TOKENREVIEW_DIR` names its setup.
    token_review: Option<TokenReviewSetup>,
}

/// The audience of the pod-bound token in a TokenReview setup.
const TOKENREVIEW_AUDIENCE: &str = "c4gh-bench";

/// What `c4gh-e2e`'s `c4gh-drs-tokenreview-bench` prepared on a local control plane: files
/// `api-server` (URL), `ca.pem`, `reviewer-token` (the server's own token, allowed to create
/// TokenReviews) and `pod-token` (a token bound to a pod, audience `c4gh-bench`).
struct TokenReviewSetup {
    dir: PathBuf,
    api_server: String,
    pod_token: String,
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start(&self, tls: bool) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| fail(format!("finding a free port: {e}")));
        let name = if tls { "tls" } else { "plain" };
        let log = std::fs::File::create(self.path(&format!("{name}.log")))
            .unwrap_or_else(|e| fail(format!("creating the server log: {e}")));
        let mut command = Command::new(&self.bin);
        command
            .arg("serve")
            .arg("--catalog")
            .arg(self.path("catalog"))
            .arg("--secret-key")
            .arg(self.path("server.sec"))
            .arg("--tokens-file")
            .arg(self.path("tokens.json"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--max-connections", "4096", "--log-format", "json"])
            .args(["--visa-issuer", &self.visa_issuer])
            .arg("--visa-ca-file")
            .arg(self.path("ca.pem"))
            .env_remove("C4GH_DRS_PASSPHRASE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(review) = &self.token_review {
            command
                .args(["--tokenreview-audience", TOKENREVIEW_AUDIENCE])
                .args(["--tokenreview-api-server", &review.api_server])
                .arg("--tokenreview-ca-file")
                .arg(review.dir.join("ca.pem"))
                .arg("--tokenreview-token-file")
                .arg(review.dir.join("reviewer-token"));
        }
        if tls {
            command
                .arg("--tls-cert")
                .arg(self.path("tls.crt"))
                .arg("--tls-key")
                .arg(self.path("tls.key"));
        } else {
            command.arg("--insecure-plain-http");
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| fail(format!("starting {}: {e}", self.bin.display())));
        let scheme = if tls { "https" } else { "http" };
        let server = Server {
            child,
            base: format!("{scheme}://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                fail(format!(
                    "the {name} server did not listen within 20 s; see {}",
                    self.path(&format!("{name}.log")).display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

fn setup(body_mib: u64, visa_issuer: String) -> Setup {
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(e));
    let examples = exe.parent().unwrap_or(Path::new("."));
    let target = examples.parent().unwrap_or(examples);
    let bin = std::env::var_os("C4GH_DRS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("c4gh-drs-server"));
    if !bin.is_file() {
        fail(format!(
            "{} not found; build it (`cargo build --release -p drs-server`) or set \
             C4GH_DRS_SERVER_BIN",
            bin.display()
        ));
    }
    // On the target directory's disk (not a tmpfs), so that dropping caches means disk reads.
    let dir = tempfile::Builder::new()
        .prefix("bench-drs-")
        .tempdir_in(target)
        .unwrap_or_else(|e| fail(format!("scratch directory: {e}")));
    let ca = TestCa::new().unwrap_or_else(|e| fail(e));
    let (cert_pem, key_pem) = ca
        .issue(&["localhost", "127.0.0.1"])
        .unwrap_or_else(|e| fail(e));
    let token = format!("bench-token-{:032x}", rand::random::<u128>());
    let server_key = SecretKey::generate();
    let token_review = std::env::var_os("C4GH_BENCH_TOKENREVIEW_DIR").map(|dir| {
        let dir = PathBuf::from(dir);
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .map(|t| t.trim().to_owned())
                .unwrap_or_else(|e| fail(format!("reading {name} of the TokenReview setup: {e}")))
        };
        TokenReviewSetup {
            api_server: read("api-server"),
            pod_token: read("pod-token"),
            dir,
        }
    });
    let setup = Setup {
        token_review,
        dir,
        bin,
        ca_pem: ca.ca_pem(),
        cert_pem,
        key_pem,
        token,
        visa_issuer,
    };
    let write = |name: &str, contents: &[u8]| {
        std::fs::write(setup.path(name), contents)
            .unwrap_or_else(|e| fail(format!("writing {name}: {e}")));
    };
    write("ca.pem", setup.ca_pem.as_bytes());
    write("tls.crt", setup.cert_pem.as_bytes());
    write("tls.key", setup.key_pem.as_bytes());
    write(
        "tokens.json",
        format!(r#"[{{"subject": "bench", "token": "{}"}}]"#, setup.token).as_bytes(),
    );
    write(
        "curl-headers",
        format!("Authorization: Bearer {}\n", setup.token).as_bytes(),
    );
    server_key
        .write_file(&setup.path("server.sec"), None, None, 0o600)
        .unwrap_or_else(|e| fail(format!("writing the server key: {e}")));
    let catalog = setup.path("catalog");
    std::fs::create_dir(&catalog).unwrap_or_else(|e| fail(e));
    let add = |id: &str, plain: &Path, dataset: Option<&str>| {
        add_file(
            &catalog,
            &server_key.public_key(),
            plain,
            &AddOptions {
                id: id.into(),
                name: None,
                description: None,
                mime_type: None,
                dataset: dataset.map(str::to_owned),
                readers: vec!["*".into()],
            },
        )
        .unwrap_or_else(|e| fail(format!("adding {id}: {e}")));
    };
    let plain = setup.path("plain");
    write("plain", b"a small object for header benchmarks");
    add("small", &plain, Some(BENCH_DATASET));
    println!("preparing a {body_mib} MiB object…");
    {
        let block: Vec<u8> = (0..BLOCK).map(|i| (i * 31 % 251) as u8).collect();
        let mut f = std::fs::File::create(&plain).unwrap_or_else(|e| fail(e));
        for _ in 0..body_mib {
            f.write_all(&block)
                .unwrap_or_else(|e| fail(format!("writing the plain file: {e}")));
        }
    }
    add("big", &plain, None);
    let _ = std::fs::remove_file(&plain);
    setup
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

async fn headers_level(
    setup: &Setup,
    server: &Server,
    (label, authorization): (&str, &str),
    clients: usize,
    max_requests: usize,
    max_time: Duration,
) -> f64 {
    let url = format!("{}/c4gh/v1/objects/small/header", server.base);
    let issued = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let cpu_before = server.cpu_seconds();
    let started = Instant::now();
    let deadline = started + max_time;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let http = http_client(&setup.ca_pem);
        let url = url.clone();
        let bearer = authorization.to_owned();
        let key = base64::engine::general_purpose::STANDARD
            .encode(SecretKey::generate().public_key().to_pem());
        let issued = Arc::clone(&issued);
        let errors = Arc::clone(&errors);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while issued.fetch_add(1, Ordering::Relaxed) < max_requests && Instant::now() < deadline
            {
                let t = Instant::now();
                let ok = match http
                    .get(&url)
                    .header("authorization", &bearer)
                    .header("x-c4gh-public-key", &key)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => r.bytes().await.is_ok_and(|b| b.len() == 124),
                    _ => false,
                };
                if ok {
                    latencies.push(t.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        if let Ok(latencies) = task.await {
            all.extend(latencies);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = server.cpu_seconds() - cpu_before;
    all.sort();
    let rate = all.len() as f64 / wall;
    println!(
        "headers {label:<8} clients={clients:>3}  requests={:>6}  errors={}  {:>7.0} headers/s  p50={:.2} ms  p99={:.2} ms  server CPU {:.0} µs/header",
        all.len(),
        errors.load(Ordering::Relaxed),
        rate,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        cpu / all.len().max(1) as f64 * 1e6,
    );
    rate
}

/// The dataset of the header benchmark's object, granted by the bench's visa.
const BENCH_DATASET: &str = "BENCH-DATASET";
/// The bench's visa issuer (`iss`).
const VISA_ISSUER: &str = "https://visas.bench.invalid";

/// A local HTTPS JWKS endpoint on `listener` (the server's certificate, for 127.0.0.1) and a passport
/// carrying one `ControlledAccessGrants` visa for [`BENCH_DATASET`], both signed by a fresh
/// ES256 key.
fn visa_issuer(
    setup: &Setup,
    listener: std::net::TcpListener,
) -> (impl std::future::Future<Output = ()> + Send + use<>, String) {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let key = rcgen::KeyPair::generate().unwrap_or_else(|e| fail(e));
    let raw = key.public_key_raw();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "bench",
        "alg": "ES256", "use": "sig", "x": b64(&raw[1..33]), "y": b64(&raw[33..])}]});
    let encoding = EncodingKey::from_ec_der(&key.serialize_der());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("bench".into());
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(&header, &claims, &encoding).unwrap_or_else(|e| fail(e))
    };
    let visa = sign(
        serde_json::json!({"iss": VISA_ISSUER, "sub": "bench@visas", "iat": now,
        "exp": now + 3600, "ga4gh_visa_v1": {"type": "ControlledAccessGrants",
        "value": BENCH_DATASET, "source": "https://dac.bench.invalid", "by": "dac",
        "asserted": now}}),
    );
    let passport = sign(serde_json::json!({"iss": VISA_ISSUER, "sub": "bench@visas",
        "iat": now, "exp": now + 3600, "ga4gh_passport_v1": [visa]}));
    let tls = drs_server::tls::server_config(&drs_server::tls::TlsConfig::Pem {
        cert_chain: setup.cert_pem.clone().into_bytes(),
        key: zeroize::Zeroizing::new(setup.key_pem.as_bytes().to_vec()),
    })
    .unwrap_or_else(|e| fail(e));
    let serve = async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap_or_else(|e| fail(e));
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || async move { axum::Json(jwks) }),
        );
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(tls),
                        hyper_util::service::TowerToHyperService::new(app),
                    )
                    .await;
                }
            });
        }
    };
    (serve, passport)
}

/// Reads the whole file with 1 MiB `read`s.
fn read_file(path: &Path) -> Run {
    let started = Instant::now();
    let mut file = std::fs::File::open(path).unwrap_or_else(|e| fail(e));
    let mut buf = vec![0u8; BLOCK];
    let mut bytes = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes += n as u64,
            Err(e) => fail(format!("reading {}: {e}", path.display())),
        }
    }
    (bytes, started.elapsed().as_secs_f64())
}

/// `curl` downloads `url` to /dev/null over HTTP/1.1 (or HTTP/2 with `http2`).
fn curl(setup: &Setup, url: &str, http2: bool) -> Run {
    let output = Command::new("curl")
        .args(["-sS", "--fail", "-o", "/dev/null"])
        .arg(if http2 { "--http2" } else { "--http1.1" })
        .arg("--cacert")
        .arg(setup.path("ca.pem"))
        .arg("-H")
        .arg(format!("@{}", setup.path("curl-headers").display()))
        .args(["-w", "%{size_download} %{time_total}"])
        .arg(url)
        .output()
        .unwrap_or_else(|e| fail(format!("running curl (is it installed?): {e}")));
    if !output.status.success() {
        fail(format!(
            "curl {url} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    parse_run(&String::from_utf8_lossy(&output.stdout))
}

fn parse_run(text: &str) -> Run {
    let mut parts = text.split_whitespace();
    let bytes = parts.next().and_then(|b| b.parse().ok());
    let secs = parts.next().and_then(|s| s.parse().ok());
    match (bytes, secs) {
        (Some(b), Some(s)) => (b, s),
        _ => fail(format!("cannot parse a client's result {text:?}")),
    }
}

/// This binary as `bench client URL`: a reqwest (rustls/ring, HTTP/1.1) download in its own
/// process.
fn rust_client(setup: &Setup, url: &str) -> Run {
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(e));
    let output = Command::new(exe)
        .arg("client")
        .arg(url)
        .arg(setup.path("ca.pem"))
        .env("C4GH_BENCH_TOKEN", &setup.token)
        .output()
        .unwrap_or_else(|e| fail(format!("running the client: {e}")));
    if !output.status.success() {
        fail(format!(
            "the client failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    parse_run(&String::from_utf8_lossy(&output.stdout))
}

async fn client_main(url: &str, ca_file: &str) {
    let ca = std::fs::read_to_string(ca_file).unwrap_or_else(|e| fail(e));
    let token = std::env::var("C4GH_BENCH_TOKEN").unwrap_or_default();
    let http = http_client(&ca);
    let started = Instant::now();
    let mut response = http
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| fail(format!("download failed: {e}")));
    if !response.status().is_success() {
        fail(format!("download failed: {}", response.status()));
    }
    let mut bytes = 0u64;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes += chunk.len() as u64,
            Ok(None) => break,
            Err(e) => fail(format!("download failed: {e}")),
        }
    }
    println!("{bytes} {}", started.elapsed().as_secs_f64());
}

/// `sync; echo 1 > /proc/sys/vm/drop_caches`; false when not permitted.
fn drop_caches() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", b"1").is_ok()
}

/// The loopback TCP ceiling: a sender thread writes `bytes` in 1 MiB writes, this thread reads.
fn tcp_ceiling(bytes: u64) -> Run {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| fail(e));
    let addr = listener.local_addr().unwrap_or_else(|e| fail(e));
    let sender = std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let block = vec![7u8; BLOCK];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(BLOCK as u64) as usize;
            if stream.write_all(&block[..n]).is_err() {
                return;
            }
            left -= n as u64;
        }
    });
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| fail(e));
    let received = drain(&mut stream);
    let run = (received, started.elapsed().as_secs_f64());
    let _ = sender.join();
    run
}

fn drain(reader: &mut impl Read) -> u64 {
    let mut buf = vec![0u8; BLOCK];
    let mut total = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return total,
            Err(e) => fail(format!("receiving: {e}")),
        }
    }
}

/// A TCP stream whose reads go through a 1 MiB buffer: rustls pulls TLS data in 4 KiB reads,
/// which would otherwise be one system call each.
struct BufferedTcp(std::io::BufReader<TcpStream>);

impl Read for BufferedTcp {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for BufferedTcp {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.get_mut().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.get_mut().flush()
    }
}

/// The TLS ceiling: the same over rustls (ring, TLS 1.3, default suite order), no HTTP, no
/// file; the receiver reads the socket through a 1 MiB buffer. Returns the run and the
/// negotiated cipher suite.
fn tls_ceiling(setup: &Setup, bytes: u64) -> (Run, String) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(setup.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| fail(e));
    let key = PrivateKeyDer::from_pem_slice(setup.key_pem.as_bytes()).unwrap_or_else(|e| fail(e));
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map(Arc::new)
        .unwrap_or_else(|e| fail(e));
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(setup.ca_pem.as_bytes()).flatten() {
        let _ = roots.add(ca);
    }
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map(Arc::new)
        .unwrap_or_else(|e| fail(e));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| fail(e));
    let addr: SocketAddr = listener.local_addr().unwrap_or_else(|e| fail(e));
    let sender = std::thread::spawn(move || {
        let Ok((tcp, _)) = listener.accept() else {
            return;
        };
        let Ok(connection) = rustls::ServerConnection::new(server_config) else {
            return;
        };
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        let block = vec![7u8; BLOCK];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(BLOCK as u64) as usize;
            if stream.write_all(&block[..n]).is_err() {
                return;
            }
            left -= n as u64;
        }
        stream.conn.send_close_notify();
        let _ = stream.flush();
    });
    let started = Instant::now();
    let tcp = TcpStream::connect(addr).unwrap_or_else(|e| fail(e));
    let name = ServerName::try_from("localhost").unwrap_or_else(|e| fail(e));
    let connection = rustls::ClientConnection::new(client_config, name).unwrap_or_else(|e| fail(e));
    let buffered = BufferedTcp(std::io::BufReader::with_capacity(BLOCK, tcp));
    let mut stream = rustls::StreamOwned::new(connection, buffered);
    let received = drain(&mut stream);
    let run = (received, started.elapsed().as_secs_f64());
    let suite = stream
        .conn
        .negotiated_cipher_suite()
        .map_or_else(|| "?".to_owned(), |s| format!("{:?}", s.suite()));
    let _ = sender.join();
    (run, suite)
}

fn best(runs: &[Run], expected: u64) -> f64 {
    if let Some((bytes, _)) = runs.iter().find(|(b, _)| *b != expected) {
        fail(format!("a run moved {bytes} bytes, expected {expected}"));
    }
    runs.iter()
        .map(|(b, s)| *b as f64 / s / MIB)
        .fold(0.0, f64::max)
}

fn row(label: &str, mib_s: f64, reference: f64) {
    println!(
        "body     {label:<44} {mib_s:>7.0} MiB/s   ratio {:.2}",
        mib_s / reference
    );
}

/// Three runs of `f`, each after `prepare`.
fn three(mut prepare: impl FnMut(), mut f: impl FnMut() -> Run) -> Vec<Run> {
    (0..3)
        .map(|_| {
            prepare();
            f()
        })
        .collect()
}

fn body(setup: &Setup, tls: &Server, plain: &Server) {
    let path = setup.path("catalog/big.c4gh-body");
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    let https = format!("{}/c4gh/v1/objects/big/body", tls.base);
    let http = format!("{}/c4gh/v1/objects/big/body", plain.base);

    if drop_caches() {
        let evict = || {
            drop_caches();
        };
        let disk = best(&three(evict, || read_file(&path)), size);
        let cpu = tls.cpu_seconds();
        let curl_tls = best(&three(evict, || curl(setup, &https, false)), size);
        let cpu_per_gib = (tls.cpu_seconds() - cpu) / (3.0 * size as f64 / 1024.0 / MIB);
        let rust_tls = best(&three(evict, || rust_client(setup, &https)), size);
        let curl_plain = best(&three(evict, || curl(setup, &http, false)), size);
        println!("-- cold page cache (caches dropped before every run), best of 3 --");
        row("disk: read(2) of the body file, 1 MiB reads", disk, disk);
        row("HTTPS, curl HTTP/1.1", curl_tls, disk);
        row("HTTPS, reqwest/rustls HTTP/1.1", rust_tls, disk);
        row("plain HTTP, curl", curl_plain, disk);
        println!("body     server CPU, cold HTTPS: {cpu_per_gib:.2} s per GiB");
    } else {
        println!(
            "!! COLD-CACHE RUN SKIPPED: cannot write /proc/sys/vm/drop_caches (not root?). \
             Only page-cache (warm) numbers follow; they do not measure the disk."
        );
    }

    println!("-- warm page cache, best of 3 --");
    let nothing = || {};
    read_file(&path);
    let disk = best(&three(nothing, || read_file(&path)), size);
    let tcp = best(&three(nothing, || tcp_ceiling(size)), size);
    let mut suite = String::new();
    let tls_runs = three(nothing, || {
        let (run, s) = tls_ceiling(setup, size);
        suite = s;
        run
    });
    let tls_ceiling = best(&tls_runs, size);
    let cpu = tls.cpu_seconds();
    let curl_tls = best(&three(nothing, || curl(setup, &https, false)), size);
    let tls_cpu = (tls.cpu_seconds() - cpu) / (3.0 * size as f64 / 1024.0 / MIB);
    let curl_h2 = best(&three(nothing, || curl(setup, &https, true)), size);
    let rust_tls = best(&three(nothing, || rust_client(setup, &https)), size);
    let cpu = plain.cpu_seconds();
    let curl_plain = best(&three(nothing, || curl(setup, &http, false)), size);
    let plain_cpu = (plain.cpu_seconds() - cpu) / (3.0 * size as f64 / 1024.0 / MIB);
    row("page cache: read(2) of the body file", disk, disk);
    row("loopback TCP ceiling (1 MiB writes/reads)", tcp, disk);
    row(&format!("TLS ceiling (rustls, {suite})"), tls_ceiling, disk);
    row("HTTPS, curl HTTP/1.1", curl_tls, disk);
    row("HTTPS, curl HTTP/2", curl_h2, disk);
    row("HTTPS, reqwest/rustls HTTP/1.1", rust_tls, disk);
    row("plain HTTP, curl", curl_plain, disk);
    println!(
        "body     HTTPS (curl HTTP/1.1) / TLS ceiling: {:.2};  plain HTTP / TCP ceiling: {:.2}",
        curl_tls / tls_ceiling,
        curl_plain / tcp
    );
    println!(
        "body     server CPU, warm: HTTPS {tls_cpu:.2} s per GiB, plain HTTP {plain_cpu:.2} s per GiB"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| fail(e));
    if args.first().map(String::as_str) == Some("client") {
        let (Some(url), Some(ca)) = (args.get(1), args.get(2)) else {
            fail("usage: bench client URL CA_FILE (token in C4GH_BENCH_TOKEN)");
        };
        runtime.block_on(client_main(url, ca));
        return;
    }
    let arg = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let body_mib = arg(0, 512);
    let max_requests = arg(1, 20_000) as usize;
    let max_time = Duration::from_secs(arg(2, 20));

    let jwks_listener = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .unwrap_or_else(|e| fail(format!("binding the visa issuer: {e}")));
    let jwks_addr = jwks_listener.local_addr().unwrap_or_else(|e| fail(e));
    let setup = setup(body_mib, format!("{VISA_ISSUER}=https://{jwks_addr}/jwks"));
    let tls = setup.start(true);
    let plain = setup.start(false);
    println!(
        "c4gh-drs-server benchmark: server `{}` in its own process (TLS 1.3 via rustls/ring, \
         info-level JSON logs to a file); clients in other processes; {} cores",
        setup.bin.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let bearer = format!("Bearer {}", setup.token);
    runtime.block_on(async {
        let (serve, passport) = visa_issuer(&setup, jwks_listener);
        tokio::spawn(serve);
        let passport = format!("Bearer {passport}");
        for clients in [1, 16, 256] {
            let token = headers_level(
                &setup,
                &tls,
                ("bearer", &bearer),
                clients,
                max_requests,
                max_time,
            )
            .await;
            let visas = headers_level(
                &setup,
                &tls,
                ("passport", &passport),
                clients,
                max_requests,
                max_time,
            )
            .await;
            println!(
                "headers  clients={clients:>3}  passport/bearer = {:.2} (target >= 0.8; verified \
                 JWTs cached by SHA-256)",
                visas / token
            );
            if let Some(review) = &setup.token_review {
                let pod = format!("Bearer {}", review.pod_token);
                let reviewed = headers_level(
                    &setup,
                    &tls,
                    ("tokenreview", &pod),
                    clients,
                    max_requests,
                    max_time,
                )
                .await;
                println!(
                    "headers  clients={clients:>3}  tokenreview/bearer = {:.2} (pod-bound \
                     ServiceAccount token, TokenReview answers cached 10 s)",
                    reviewed / token
                );
            }
        }
    });
    body(&setup, &tls, &plain);
}
