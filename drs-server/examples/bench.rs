//! Load generator for `cargo xtask bench drs` (loopback only, bounded by request count and
//! time). Not a test: it prints numbers.
//!
//! 1. Re-encrypted headers per second and p50/p99 latency over TLS at 1, 16 and 256 concurrent
//!    clients (each client its own HTTP/1.1 connection, a fresh public key per client).
//! 2. Body throughput over HTTPS vs reading the same body file from disk (page cache warm), as
//!    a ratio; plus plain HTTP to show what TLS costs.
//!
//! Arguments: `[BODY_MIB] [REQUESTS_PER_LEVEL] [SECONDS_PER_LEVEL]` (defaults 512, 20000, 20).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use c4gh::keys::SecretKey;
use drs_server::testing::TestServer;
use tokio::io::AsyncReadExt;

fn client(ca_pem: &str) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .http1_only()
        .no_proxy()
        .pool_max_idle_per_host(1);
    if let Ok(ca) = reqwest::Certificate::from_pem(ca_pem.as_bytes()) {
        builder = builder.add_root_certificate(ca);
    }
    builder.build().unwrap_or_default()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

async fn headers_level(
    server: &TestServer,
    clients: usize,
    max_requests: usize,
    max_time: Duration,
) {
    let url = format!("{}/c4gh/v1/objects/small/header", server.base_url());
    let issued = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + max_time;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let http = client(&server.ca_pem());
        let url = url.clone();
        let bearer = server.bearer();
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
    all.sort();
    println!(
        "headers  clients={clients:>3}  requests={:>6}  errors={}  {:>8.0} headers/s  p50={:.2} ms  p99={:.2} ms",
        all.len(),
        errors.load(Ordering::Relaxed),
        all.len() as f64 / wall,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
    );
}

async fn download(http: &reqwest::Client, url: &str, bearer: &str) -> (u64, f64) {
    let started = Instant::now();
    let mut response = match http.get(url).header("authorization", bearer).send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("download failed: {e}");
            return (0, 1.0);
        }
    };
    let mut bytes = 0u64;
    while let Ok(Some(chunk)) = response.chunk().await {
        bytes += chunk.len() as u64;
    }
    (bytes, started.elapsed().as_secs_f64())
}

async fn read_from_disk(path: &std::path::Path) -> (u64, f64) {
    let started = Instant::now();
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return (0, 1.0);
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    while let Ok(n) = file.read(&mut buf).await {
        if n == 0 {
            break;
        }
        bytes += n as u64;
    }
    (bytes, started.elapsed().as_secs_f64())
}

fn best(runs: &[(u64, f64)]) -> f64 {
    runs.iter()
        .map(|(b, s)| *b as f64 / s / (1 << 20) as f64)
        .fold(0.0, f64::max)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let body_mib = arg(0, 512);
    let max_requests = arg(1, 20_000) as usize;
    let max_time = Duration::from_secs(arg(2, 20));

    let server = match TestServer::start_with(|c| c.max_connections = 4096).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start the server: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = server.add("small", b"a small object for header benchmarks", &["*"]) {
        eprintln!("{e}");
        std::process::exit(1);
    }
    println!(
        "c4gh-drs-server benchmark (loopback, TLS 1.3, rustls/ring); one process, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for clients in [1, 16, 256] {
        headers_level(&server, clients, max_requests, max_time).await;
    }

    println!("preparing a {body_mib} MiB object…");
    let block: Vec<u8> = (0..(1usize << 20)).map(|i| (i * 31 % 251) as u8).collect();
    let plain = server.catalog_dir().join(".bench-plain");
    {
        use std::io::Write;
        let Ok(mut f) = std::fs::File::create(&plain) else {
            eprintln!("cannot write {}", plain.display());
            std::process::exit(1);
        };
        for _ in 0..body_mib {
            if f.write_all(&block).is_err() {
                eprintln!("cannot write {}", plain.display());
                std::process::exit(1);
            }
        }
    }
    let add = {
        let dir = server.catalog_dir().to_owned();
        let key = server.server_public_key();
        let plain = plain.clone();
        tokio::task::spawn_blocking(move || {
            drs_server::admin::add_file(
                &dir,
                &key,
                &plain,
                &drs_server::admin::AddOptions {
                    id: "big".into(),
                    name: None,
                    description: None,
                    mime_type: None,
                    readers: vec!["*".into()],
                },
            )
        })
        .await
    };
    let _ = std::fs::remove_file(&plain);
    if !matches!(add, Ok(Ok(_))) {
        eprintln!("adding the body object failed");
        std::process::exit(1);
    }
    let body_path = server.catalog_dir().join("big.c4gh-body");
    let http = client(&server.ca_pem());
    let url = format!("{}/c4gh/v1/objects/big/body", server.base_url());
    let mut disk = Vec::new();
    let mut https = Vec::new();
    for _ in 0..3 {
        disk.push(read_from_disk(&body_path).await);
        https.push(download(&http, &url, &server.bearer()).await);
    }
    let (disk, https) = (best(&disk), best(&https));
    println!("body     disk read (page cache): {disk:>7.0} MiB/s");
    println!(
        "body     HTTPS download:         {https:>7.0} MiB/s   ratio {:.2} (target ≥ 0.9)",
        https / disk
    );
    // The same catalog over plain HTTP, to separate what TLS costs.
    let mut tokens = drs_server::auth::tokens::StaticTokens::default();
    tokens.insert("tester", server.token());
    let mut plain_config =
        drs_server::Config::new(server.catalog_dir().to_owned(), SecretKey::generate(), None);
    plain_config.tokens = tokens;
    if let Ok(plain_server) = drs_server::start(plain_config).await {
        let url = format!("{}/c4gh/v1/objects/big/body", plain_server.base_url());
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(download(&http, &url, &server.bearer()).await);
        }
        let plain = best(&runs);
        println!(
            "body     plain HTTP download:    {plain:>7.0} MiB/s   ratio {:.2}",
            plain / disk
        );
        let _ = plain_server.shutdown().await;
    }
    if let Err(e) = server.shutdown().await {
        eprintln!("{e}");
    }
}
