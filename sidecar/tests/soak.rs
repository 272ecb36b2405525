//! Randomized, seeded fault-injection soak: the sidecar's fetch code (`Fetcher`, the same code
//! `run` and `fetch` use) fetches objects from the real `c4gh-drs-server` through a proxy that
//! cuts, resets, stalls and flips bits in responses (tests/common/proxy.rs), in both file modes
//! and at sizes around the segment boundaries. Every outcome must be a byte-exact file or a
//! clean failure that leaves nothing behind; nothing corrupt may ever appear under a final
//! name; and nearly all fetches (≥ 98 %) must end in success, the faults being transient.
//!
//! The seed is printed; `C4GH_SOAK_SEED=N` replays it, `C4GH_SOAK_FETCHES=N` changes the
//! number of fetches (default 1000).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use c4gh_sidecar::cleanup::Cleanup;
use c4gh_sidecar::cli::DrsArgs;
use c4gh_sidecar::fetch::Fetcher;
use c4gh_sidecar::inputs::{Input, Mode};
use c4gh_sidecar::key::EphemeralKey;
use c4gh_sidecar::telemetry::{Metrics, RetryLabels};
use common::pattern;
use common::proxy::{FaultProxy, ProxyConfig};

/// Body sizes: empty, one byte, around one segment, and a few segments.
const SIZES: [usize; 6] = [0, 1, 65_535, 65_536, 65_537, 3 * 65_536 + 1000];
/// Share of fetches that must succeed.
const MIN_OK_SHARE: f64 = 0.98;
/// Fetches running at the same time.
const CONCURRENCY: usize = 8;
/// The retry counter's reasons.
const REASONS: [&str; 7] = [
    "status",
    "transport",
    "timeout",
    "response_body",
    "invalid_response",
    "body_resume",
    "integrity",
];

enum Outcome {
    Ok { retried: bool },
    Failed(String),
    Corrupt(String),
    LeftBehind(Vec<String>),
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn leftovers(dir: &Path, id: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fetch_through_faults_is_exact_or_clean() {
    let seed = env_u64("C4GH_SOAK_SEED").unwrap_or_else(rand::random);
    let fetches = env_u64("C4GH_SOAK_FETCHES").unwrap_or(1000) as usize;
    println!(
        "soak seed {seed} ({fetches} fetches); replay: C4GH_SOAK_SEED={seed} cargo test -p c4gh-sidecar --test soak"
    );

    let (listener, proxy_addr) = FaultProxy::bind().await;
    let server = drs_server::testing::TestServer::start_with(|config| {
        config.settings.public_url = Some(format!("https://{proxy_addr}"));
    })
    .await
    .unwrap();
    let idle = Duration::from_millis(500);
    let response = Duration::from_secs(1);
    let proxy = FaultProxy::start(
        listener,
        server.server().local_addr(),
        &server.ca_pem(),
        ProxyConfig {
            seed,
            fault_rate: 0.35,
            stall: response + Duration::from_millis(300),
            max_offset: 300_000,
        },
    );

    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let ca = work.path().join("proxy-ca.pem");
    std::fs::write(&ca, proxy.ca_pem()).unwrap();
    let token = work.path().join("token");
    std::fs::write(&token, server.token().expose()).unwrap();
    let args = DrsArgs {
        allowed_hosts: vec![proxy_addr.to_string()],
        ca_bundle: Some(ca),
        token_file: Some(token),
        passports_file: None,
        prefix_map: None,
        server_flavours: Vec::new(),
        drs_allow_port: true,
        drs_allow_http: false,
        max_plaintext_bytes: None,
        concurrency: 1,
        retry_budget: Duration::from_secs(20),
        retry_max_backoff: Duration::from_millis(200),
        response_timeout: response,
        idle_timeout: idle,
    };

    let mut cases = Vec::new();
    for i in 0..fetches {
        let size = SIZES[i % SIZES.len()];
        let mode = if (i / SIZES.len()).is_multiple_of(2) {
            Mode::Encrypted
        } else {
            Mode::Plaintext
        };
        let id = format!("soak{i:05}");
        let plaintext = pattern(size, i as u8);
        server.add(&id, &plaintext, &["*"]).unwrap();
        cases.push((id, mode, plaintext));
    }

    let key = Arc::new(EphemeralKey::generate());
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for (id, mode, plaintext) in cases {
        let (args, key, semaphore) = (args.clone(), Arc::clone(&key), Arc::clone(&semaphore));
        let out = out.clone();
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await.unwrap();
            // One fetcher (one connection pool) per object: the proxy's faults then depend only
            // on the seed, not on which fetch reused which connection.
            let metrics = Arc::new(Metrics::new());
            let fetcher = Fetcher::new(
                &args,
                Arc::clone(&key),
                Arc::new(Cleanup::new()),
                Arc::clone(&metrics),
            )
            .await
            .unwrap();
            let path: PathBuf = out.join(format!("{id}.bin"));
            let input = Input {
                url: format!("drs://{proxy_addr}/{id}"),
                path: path.clone(),
                mode,
            };
            let result = fetcher.fetch(&input, &|_| ()).await;
            let retried = metrics.retries_total() > 0;
            let outcome = match result {
                Ok(_) => check_file(&path, mode, &plaintext, &key, &id, &out, retried),
                Err(e) => {
                    let left = leftovers(&out, &id);
                    if left.is_empty() {
                        Outcome::Failed(format!("{id} ({mode}, {} bytes): {e}", plaintext.len()))
                    } else {
                        Outcome::LeftBehind(left)
                    }
                }
            };
            let retries: Vec<u64> = REASONS
                .iter()
                .map(|r| {
                    metrics
                        .retries
                        .get_or_create(&RetryLabels {
                            reason: (*r).to_owned(),
                        })
                        .get()
                })
                .collect();
            (outcome, retries)
        });
    }

    let (mut ok, mut ok_after_retry) = (0usize, 0usize);
    let mut failed = Vec::new();
    let mut corrupt = Vec::new();
    let mut left_behind = Vec::new();
    let mut retries = [0u64; REASONS.len()];
    while let Some(joined) = tasks.join_next().await {
        let (outcome, counted) = joined.unwrap();
        for (sum, n) in retries.iter_mut().zip(counted) {
            *sum += n;
        }
        match outcome {
            Outcome::Ok { retried } => {
                ok += 1;
                ok_after_retry += usize::from(retried);
            }
            Outcome::Failed(e) => failed.push(e),
            Outcome::Corrupt(e) => corrupt.push(e),
            Outcome::LeftBehind(files) => left_behind.extend(files),
        }
    }
    let elapsed = started.elapsed();
    let stats = &proxy.stats;
    let share = ok as f64 / fetches as f64;
    println!(
        "soak: {fetches} fetches in {:.1} s: {ok} byte-exact ({:.2} %; {ok_after_retry} of them after retries), {} clean failures, {} corrupt, {} left files behind",
        elapsed.as_secs_f64(),
        share * 100.0,
        failed.len(),
        corrupt.len(),
        left_behind.len()
    );
    println!(
        "soak: {} connections, {} faults: {} cuts, {} resets, {} flipped bits ({} flips skipped near a URL), {} stalls",
        stats.connections.load(Ordering::Relaxed),
        stats.faults(),
        stats.cuts.load(Ordering::Relaxed),
        stats.resets.load(Ordering::Relaxed),
        stats.flips.load(Ordering::Relaxed),
        stats.flips_skipped.load(Ordering::Relaxed),
        stats.stalls.load(Ordering::Relaxed),
    );
    let retries: Vec<String> = REASONS
        .iter()
        .zip(retries)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    println!("soak: retries by reason: {}", retries.join(", "));
    for e in &failed {
        println!("soak: clean failure: {e}");
    }
    assert!(
        corrupt.is_empty(),
        "corrupt outputs (seed {seed}): {corrupt:#?}"
    );
    assert!(
        left_behind.is_empty(),
        "failed fetches left files behind (seed {seed}): {left_behind:?}"
    );
    assert!(
        stats.faults() as usize >= fetches / 4,
        "too few faults injected to mean anything"
    );
    assert!(
        share >= MIN_OK_SHARE,
        "only {:.2} % of fetches succeeded (seed {seed}); failures: {failed:#?}",
        share * 100.0
    );
}

fn check_file(
    path: &Path,
    mode: Mode,
    plaintext: &[u8],
    key: &EphemeralKey,
    id: &str,
    dir: &Path,
    retried: bool,
) -> Outcome {
    let left: Vec<String> = leftovers(dir, id)
        .into_iter()
        .filter(|n| *n != format!("{id}.bin"))
        .collect();
    if !left.is_empty() {
        return Outcome::LeftBehind(left);
    }
    let bytes = std::fs::read(path).unwrap();
    let content = match mode {
        Mode::Encrypted => {
            let mut plain = Vec::new();
            match c4gh::decrypt(&mut &bytes[..], &mut plain, &[key.secret()]) {
                Ok(_) => plain,
                Err(e) => {
                    return Outcome::Corrupt(format!("{id}: final file does not decrypt: {e}"));
                }
            }
        }
        _ => bytes,
    };
    if content == plaintext {
        Outcome::Ok { retried }
    } else {
        Outcome::Corrupt(format!(
            "{id} ({mode}): {} bytes, expected {}",
            content.len(),
            plaintext.len()
        ))
    }
}
