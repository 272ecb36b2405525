//! Bodies from a real S3 object store: SeaweedFS (`c4gh_e2e::seaweed`, built by `cargo xtask
//! setup`) on loopback over HTTPS, `c4gh-drs-server`'s S3 body store (bodies uploaded by `add`
//! as multipart uploads, `crypt4gh-body` answered with pre-signed URLs), and `c4gh-sidecar
//! fetch` downloading from the signed URL. Network failures come from a loopback TCP relay
//! (`c4gh_e2e::relay`) that cuts the first connection mid-body; everything else is the real
//! store's behaviour. Results are checked with the reference Python `crypt4gh`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use c4gh_e2e::relay::Relay;
use c4gh_e2e::seaweed::SeaweedFs;
use c4gh_e2e::workspace;
use drs_server::store::S3Store;
use drs_server::testing::TestServer;

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn start_weed() -> SeaweedFs {
    tokio::task::spawn_blocking(SeaweedFs::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The store reached directly over plain HTTP (for uploads and overwrites), its bucket made
/// (retried while SeaweedFS's filer and volume server come up).
async fn uploader(weed: &SeaweedFs, prefix: &str) -> Arc<S3Store> {
    let store = weed
        .store(None, prefix, Duration::from_secs(600), false)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match store.create_bucket().await {
            Ok(()) => return store,
            Err(e) if Instant::now() < deadline => {
                eprintln!("bucket not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("creating the bucket: {e}\n{}", weed.log_tail(40)),
        }
    }
}

/// A DRS server whose bodies are in `store` (the one it signs URLs for).
async fn drs_server(store: Arc<S3Store>) -> TestServer {
    TestServer::start_with(|config| config.settings.body_store = Some(store))
        .await
        .unwrap()
}

struct Run {
    dir: tempfile::TempDir,
}

impl Run {
    fn new(server: &TestServer, weed: &SeaweedFs) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bundle = format!("{}{}", server.ca_pem(), weed.ca_pem());
        std::fs::write(dir.path().join("ca.pem"), bundle).unwrap();
        std::fs::write(dir.path().join("token"), server.token().expose()).unwrap();
        Run { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `c4gh-sidecar fetch URI -o NAME --key-out NAME.sec` with debug logs.
    async fn fetch(&self, uri: &str, name: &str) -> Output {
        let mut c = Command::new(workspace::binary("c4gh-sidecar", "c4gh-sidecar").unwrap());
        c.arg("fetch")
            .arg(uri)
            .arg("-o")
            .arg(self.path(name))
            .arg("--key-out")
            .arg(self.path(&format!("{name}.sec")))
            .arg("--token-file")
            .arg(self.path("token"))
            .arg("--ca-bundle")
            .arg(self.path("ca.pem"))
            .args(["--drs-allow-port", "--no-progress", "--retry-budget", "60s"])
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null());
        tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap()
    }
}

fn stderr(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        let error = text
            .lines()
            .rfind(|l| l.contains("fetch failed"))
            .unwrap_or_default();
        eprintln!("sidecar said: {error}");
    }
    text
}

/// The reference Python implementation decrypts `file` with `sk`.
fn reference_decrypt(file: &Path, sk: &Path) -> Vec<u8> {
    let out = Command::new(testkit::python_tool("crypt4gh"))
        .args(["decrypt", "--sk"])
        .arg(sk)
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "crypt4gh decrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// No signed query string, store secret or bearer token in what the sidecar printed.
fn assert_no_secrets(log: &str, weed: &SeaweedFs, server: &TestServer) {
    for secret in [
        "X-Amz-Signature",
        "X-Amz-Credential",
        weed.access_key(),
        weed.secret_key(),
        server.token().expose(),
    ] {
        assert!(
            !log.contains(secret),
            "the sidecar logged {secret:?}:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_from_the_bucket_survives_a_cut_and_an_expired_url() {
    let weed = start_weed().await;
    let direct = uploader(&weed, "bodies/").await;
    // Signed URLs live 2 s; the relay cuts the first body connection after 1 MiB and holds it
    // 3 s, so the resume finds its URL expired and must ask the DRS server for a new one.
    let relay = Relay::start(weed.https_addr(), 1 << 20, Duration::from_secs(3))
        .await
        .unwrap();
    let endpoint = format!("https://{}", relay.addr());
    let signing = weed
        .store(Some(&endpoint), "bodies/", Duration::from_secs(2), false)
        .unwrap();
    let server = drs_server(signing).await;
    let plain = data(6 * 65536 * 16 + 777, 7);
    let record = server
        .add_in_store(&direct, "obj-s3", &plain, &["*"])
        .await
        .unwrap();
    let etag = record
        .store_etag
        .clone()
        .expect("the record names the store's ETag");
    assert_eq!(
        direct.etag("obj-s3").await.unwrap().as_deref(),
        Some(etag.as_str()),
        "the body is in the bucket under the recorded ETag"
    );
    assert!(
        !server.catalog_dir().join("obj-s3.c4gh-body").exists(),
        "no body file in the catalog directory"
    );

    let run = Run::new(&server, &weed);
    let out = run.fetch(&server.drs_uri("obj-s3"), "obj.c4gh").await;
    let log = stderr(&out);
    assert!(
        out.status.success(),
        "fetch failed:\n{log}\n{}",
        weed.log_tail(20)
    );
    assert!(
        log.contains("the signed body URL expired; asking the access endpoint for a new one"),
        "the expired URL was renewed:\n{log}"
    );
    assert_eq!(
        reference_decrypt(&run.path("obj.c4gh"), &run.path("obj.c4gh.sec")),
        plain
    );
    assert_no_secrets(&log, &weed, &server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_missing_and_replaced_bodies_fail_cleanly() {
    let weed = start_weed().await;
    let direct = uploader(&weed, "bodies/").await;
    let https = format!("https://{}", weed.https_addr());
    let plain = data(3 * 65536 + 5, 11);

    // A server signing with a secret the store does not know: the store refuses the signature.
    let wrong = weed
        .store(Some(&https), "bodies/", Duration::from_secs(60), true)
        .unwrap();
    let tampered = drs_server(wrong).await;
    tampered
        .add_in_store(&direct, "obj-sig", &plain, &["*"])
        .await
        .unwrap();
    let run = Run::new(&tampered, &weed);
    let out = run.fetch(&tampered.drs_uri("obj-sig"), "sig.c4gh").await;
    let log = stderr(&out);
    assert!(
        !out.status.success(),
        "a refused signature failed the fetch"
    );
    assert!(log.contains("obj-sig"), "names the object:\n{log}");
    assert!(log.contains("SignatureDoesNotMatch"), "says why:\n{log}");
    assert!(log.contains("S3 credentials"), "says what to do:\n{log}");
    assert!(!run.path("sig.c4gh").exists(), "no output file");
    assert_no_secrets(&log, &weed, &tampered);

    // A catalog entry whose body is not in the bucket (uploaded under another prefix).
    let signing = weed
        .store(Some(&https), "bodies/", Duration::from_secs(60), false)
        .unwrap();
    let server = drs_server(Arc::clone(&signing)).await;
    let elsewhere = weed
        .store(None, "elsewhere/", Duration::from_secs(60), false)
        .unwrap();
    server
        .add_in_store(&elsewhere, "obj-gone", &plain, &["*"])
        .await
        .unwrap();
    let run = Run::new(&server, &weed);
    let out = run.fetch(&server.drs_uri("obj-gone"), "gone.c4gh").await;
    let log = stderr(&out);
    assert!(!out.status.success(), "a missing body failed the fetch");
    assert!(log.contains("obj-gone"), "names the object:\n{log}");
    assert!(
        log.contains("404") && log.contains("NoSuchKey"),
        "says why:\n{log}"
    );
    assert!(
        log.contains("archive's operator"),
        "says what to do:\n{log}"
    );
    assert!(!run.path("gone.c4gh").exists(), "no output file");

    // The body is replaced in the bucket while a download is cut mid-way: the resume sees
    // another ETag, and the fetch starts over or fails, never splicing two bodies.
    let relay = Relay::start(weed.https_addr(), 1 << 20, Duration::from_secs(3))
        .await
        .unwrap();
    let via_relay = weed
        .store(
            Some(&format!("https://{}", relay.addr())),
            "bodies/",
            Duration::from_secs(60),
            false,
        )
        .unwrap();
    let server = drs_server(via_relay).await;
    let big = data(6 * 65536 * 16, 13);
    server
        .add_in_store(&direct, "obj-moving", &big, &["*"])
        .await
        .unwrap();
    let run = Run::new(&server, &weed);
    let uri = server.drs_uri("obj-moving");
    let (out, ()) = tokio::join!(run.fetch(&uri, "moving.c4gh"), async {
        relay.cut().await;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(Ok(data(9 << 20, 99))).await.unwrap();
        drop(tx);
        direct.upload("obj-moving", rx).await.unwrap();
    });
    let log = stderr(&out);
    assert!(
        !out.status.success(),
        "the replaced body failed the fetch:\n{log}"
    );
    assert!(
        log.contains("obj-moving") && log.contains("changed"),
        "says why:\n{log}"
    );
    assert!(!run.path("moving.c4gh").exists(), "no output file");
    let leftovers: Vec<_> = std::fs::read_dir(run.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("moving.c4gh") && !n.ends_with(".sec"))
        .collect();
    assert!(
        leftovers
            .iter()
            .all(|n| n.contains(".part") || n.contains("resume")),
        "only a partial, named as one, may remain: {leftovers:?}"
    );
    assert_no_secrets(&log, &weed, &server);
}
