//! Bodies from a real S3 object store: SeaweedFS (`c4gh_e2e::seaweed`, built by `cargo xtask
//! setup`) on loopback over HTTPS, `c4gh-drs-server`'s S3 body store (bodies uploaded by `add`
//! as multipart uploads, `crypt4gh-body` answered with pre-signed URLs), and `c4gh-sidecar
//! fetch` downloading from the signed URL. Network failures come from a loopback TCP relay
//! (`c4gh_e2e::relay`) that cuts the first connection mid-body; everything else is the real
//! store's behaviour. Results are checked with the reference Python `crypt4gh`.
//!
//! The last two cases run the real `c4gh-drs-server` binary (`serve` and `add`): with
//! temporary credentials from SeaweedFS's STS (`AssumeRoleWithWebIdentity` with a token file, as
//! in a pod; the OIDC issuer is a local one whose JWKS is served over loopback HTTPS), and as two
//! replicas on one catalog directory and bucket behind a round-robin loopback balancer
//! (`c4gh_e2e::balancer`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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
        Self::with(
            &format!("{}{}", server.ca_pem(), weed.ca_pem()),
            server.token().expose(),
        )
    }

    /// A run trusting the CAs in `ca_bundle` and sending `token` to the DRS server.
    fn with(ca_bundle: &str, token: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_bundle).unwrap();
        std::fs::write(dir.path().join("token"), token).unwrap();
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

/// The bearer token of the `c4gh-drs-server` processes of [`Deployment`].
const SERVE_TOKEN: &str = "object-store-serve-token-0123456789abcdef";

/// The files the real `c4gh-drs-server` binary needs (server key, TLS certificate, tokens file,
/// catalog directory), shared by every process started from it.
struct Deployment {
    dir: tempfile::TempDir,
    ca_bundle: String,
}

/// A running `c4gh-drs-server serve`.
struct Serving {
    process: c4gh_e2e::process::Supervised,
    addr: std::net::SocketAddr,
}

impl Deployment {
    fn new(weed: &SeaweedFs) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        let key = c4gh::SecretKey::generate();
        std::fs::write(p("server.sec"), key.to_pem(None, None).unwrap().as_bytes()).unwrap();
        std::fs::write(p("server.pub"), key.public_key().to_pem()).unwrap();
        let ca = testkit::tls::TestCa::new("object-store serve CA").unwrap();
        let leaf = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
        std::fs::write(p("tls.crt"), &leaf.cert_pem).unwrap();
        std::fs::write(p("tls.key"), leaf.key_pem.as_bytes()).unwrap();
        let ca_bundle = format!("{}{}", ca.cert_pem(), weed.ca_pem());
        std::fs::write(p("ca.pem"), &ca_bundle).unwrap();
        std::fs::write(
            p("tokens.json"),
            format!(r#"[{{"subject":"reader","token":"{SERVE_TOKEN}"}}]"#),
        )
        .unwrap();
        std::fs::create_dir(p("catalog")).unwrap();
        Deployment { dir, ca_bundle }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `c4gh-drs-server` with `args`, no AWS setting of the test's environment, and `env`.
    fn command(&self, args: &[String], env: &[(&str, String)]) -> Command {
        let mut c = Command::new(workspace::binary("c4gh-drs-server", "drs-server").unwrap());
        c.args(args);
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
            "AWS_ROLE_SESSION_NAME",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_STS",
        ] {
            c.env_remove(var);
        }
        c.env("AWS_SHARED_CREDENTIALS_FILE", self.path("no-credentials"))
            .env("AWS_CONFIG_FILE", self.path("no-config"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        c
    }

    fn s3_args(endpoint: &str) -> Vec<String> {
        [
            "--s3-bucket",
            c4gh_e2e::seaweed::BUCKET,
            "--s3-prefix",
            "bodies/",
            "--s3-region",
            c4gh_e2e::seaweed::REGION,
            "--s3-path-style",
            "--s3-endpoint",
            endpoint,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// `c4gh-drs-server add --s3-bucket …` of `plain` as `id`, uploading to `endpoint`.
    async fn add(&self, id: &str, plain: &[u8], endpoint: &str, env: &[(&str, String)]) {
        let file = self.path(&format!("{id}.plain"));
        std::fs::write(&file, plain).unwrap();
        let mut args: Vec<String> = ["add", "--id", id, "--catalog"].map(str::to_owned).to_vec();
        args.push(self.path("catalog").display().to_string());
        args.extend([
            "--public-key".into(),
            self.path("server.pub").display().to_string(),
        ]);
        args.extend(["--file".into(), file.display().to_string()]);
        args.extend(Self::s3_args(endpoint));
        let mut c = self.command(&args, env);
        let out = tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "c4gh-drs-server add failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(file).unwrap();
    }

    /// Starts `c4gh-drs-server serve` (its debug log in `NAME.log`) signing URLs of `endpoint`
    /// that live `url_seconds`, and waits until it answers.
    async fn serve(
        &self,
        name: &str,
        endpoint: &str,
        url_seconds: u64,
        env: &[(&str, String)],
    ) -> Serving {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let ws = |name: &str| self.path(name).display().to_string();
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            addr.to_string(),
            "--catalog".into(),
            ws("catalog"),
            "--secret-key".into(),
            ws("server.sec"),
            "--tls-cert".into(),
            ws("tls.crt"),
            "--tls-key".into(),
            ws("tls.key"),
            "--tokens-file".into(),
            ws("tokens.json"),
            "--signed-url-seconds".into(),
            url_seconds.to_string(),
        ];
        args.extend(Self::s3_args(endpoint));
        let mut command = self.command(&args, env);
        command.env("C4GH_DRS_LOG", "info,drs_server=debug,reqwest=debug");
        let mut process =
            c4gh_e2e::process::Supervised::spawn(name, command, &self.path(&format!("{name}.log")))
                .unwrap();
        let client = self.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = format!("https://{addr}/ga4gh/drs/v1/service-info");
            if let Ok(resp) = client.get(&url).send().await
                && resp.status().is_success()
            {
                return Serving { process, addr };
            }
            if let Some(status) = process.try_exit_status().unwrap() {
                panic!("{name} exited {status}:\n{}", process.log_tail(40));
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not start:\n{}",
                process.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An HTTPS client trusting the deployment's CAs.
    fn client(&self) -> reqwest::Client {
        let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        for cert in reqwest::Certificate::from_pem_bundle(self.ca_bundle.as_bytes()).unwrap() {
            builder = builder.add_root_certificate(cert);
        }
        builder.build().unwrap()
    }
}

impl Serving {
    fn log(&self) -> String {
        std::fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }

    /// `GET PATH` with the bearer token: status and body.
    async fn get(&self, client: &reqwest::Client, path: &str) -> (u16, String) {
        let resp = client
            .get(format!("https://{}{path}", self.addr))
            .bearer_auth(SERVE_TOKEN)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// The signed body URL the access endpoint gives for `id`.
    async fn signed_url(&self, client: &reqwest::Client, id: &str) -> reqwest::Url {
        let path = format!("/ga4gh/drs/v1/objects/{id}/access/crypt4gh-body");
        let (status, body) = self.get(client, &path).await;
        assert_eq!(status, 200, "{body}\n{}", self.process.log_tail(20));
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        answer["url"].as_str().unwrap().parse().unwrap()
    }

    /// The value of the metric line `name` (with its labels) at `/metrics`.
    async fn metric(&self, client: &reqwest::Client, name: &str) -> Option<f64> {
        let (_, text) = self.get(client, "/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }
}

/// The value of query parameter `name` of `url`.
fn query(url: &reqwest::Url, name: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn sleep_until(t: SystemTime) {
    if let Ok(left) = t.duration_since(SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
}

impl Serving {
    /// Waits up to `timeout` for the metric line `name` to reach `at_least`.
    async fn wait_for_metric(
        &self,
        client: &reqwest::Client,
        name: &str,
        at_least: f64,
        timeout: Duration,
    ) {
        let deadline = Instant::now() + timeout;
        while self.metric(client, name).await < Some(at_least) {
            assert!(
                Instant::now() < deadline,
                "{name} did not reach {at_least}:\n{}",
                self.process.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_identity_credentials_come_from_sts_and_are_refreshed_before_expiry() {
    use c4gh_e2e::seaweed::{ROLE_ARN, STS_AUDIENCE, StsOptions};
    use drs_server::credentials::{CredentialProvider, WebIdentity};

    // The web identity tokens' issuer: a Kubernetes-style service-account issuer whose JWKS
    // SeaweedFS fetches over loopback HTTPS. Sessions last 20 s (SeaweedFS's maxSessionLength
    // caps the DurationSeconds of 900 the server asks for).
    let issuer =
        drs_server::testing::LocalVisaIssuer::start("https://kubernetes.default.svc.cluster.local")
            .await
            .unwrap();
    let sts = StsOptions {
        issuer: issuer.issuer().to_owned(),
        jwks_url: issuer.jwks_url().to_owned(),
        jwks_ca_pem: issuer.ca_pem(),
        session: Duration::from_secs(20),
    };
    let weed = tokio::task::spawn_blocking(move || SeaweedFs::start_with_sts(Some(&sts)))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    uploader(&weed, "bodies/").await;
    let deploy = Deployment::new(&weed);
    let sa_token = |subject: &str| {
        let now = unix_now();
        issuer.sign(&serde_json::json!({
            "iss": issuer.issuer(), "sub": subject, "aud": [STS_AUDIENCE],
            "iat": now, "nbf": now, "exp": now + 3600,
            "kubernetes.io": {"namespace": "archive", "serviceaccount": {"name": "c4gh-drs-server"}},
        }))
    };
    let token_file = deploy.path("sa-token");
    let first_token = sa_token("system:serviceaccount:archive:c4gh-drs-server");
    std::fs::write(&token_file, &first_token).unwrap();
    let env = vec![
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("AWS_ROLE_ARN", ROLE_ARN.to_owned()),
        ("AWS_ROLE_SESSION_NAME", "c4gh-e2e-drs".to_owned()),
        ("AWS_ENDPOINT_URL_STS", weed.sts_endpoint()),
        ("C4GH_DRS_S3_STS_DURATION_SECONDS", "900".to_owned()),
    ];

    // The library's exchange with the real STS: temporary credentials for 20 s.
    let own = CredentialProvider::web_identity(WebIdentity {
        token_file: token_file.clone(),
        role_arn: ROLE_ARN.into(),
        session_name: "c4gh-e2e-test".into(),
        sts_endpoint: weed.sts_endpoint().parse().unwrap(),
        duration: Some(Duration::from_secs(900)),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", weed.log_tail(40)));
    let own_until = own.current().expires().unwrap();
    let left = own_until.duration_since(SystemTime::now()).unwrap();
    assert!(
        (Duration::from_secs(10)..=Duration::from_secs(21)).contains(&left),
        "the session lasts SeaweedFS's 20 s: {left:?}"
    );
    let own_credentials = own.current().credentials().clone();
    assert_ne!(own_credentials.key(), weed.access_key());
    assert!(
        own_credentials.token().is_some(),
        "temporary credentials carry a session token"
    );

    // `add` uploads with credentials from the token file (no static keys anywhere).
    let plain = data(6 * 65536 + 99, 17);
    deploy.add("obj-wi", &plain, &weed.endpoint(), &env).await;

    // A URL signed with the temporary credentials for 300 s works while they last; one whose
    // session token was altered is refused.
    let config = drs_server::store::S3Config {
        endpoint: weed.endpoint().parse().unwrap(),
        bucket: c4gh_e2e::seaweed::BUCKET.into(),
        prefix: "bodies/".into(),
        region: c4gh_e2e::seaweed::REGION.into(),
        path_style: true,
        url_lifetime: Duration::from_secs(300),
    };
    let long_url = S3Store::new(&config, own_credentials)
        .unwrap()
        .signed_get("obj-wi")
        .unwrap();
    assert_eq!(query(&long_url, "X-Amz-Expires"), "300");
    let store_client = reqwest::Client::new();
    let answer = |url: reqwest::Url| {
        let client = store_client.clone();
        async move {
            let resp = client.get(url).send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            )
        }
    };
    let (code, body) = answer(long_url.clone()).await;
    assert_eq!(code, 200, "{}", weed.log_tail(20));
    assert!(body.len() > plain.len(), "the whole body");
    let mut tampered = long_url.clone();
    let pairs: Vec<(String, String)> = long_url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "X-Amz-Security-Token" {
                // One character inside the token's signature, a full 6 bits of base64.
                let mut chars: Vec<char> = v.chars().collect();
                let at = chars.len() - 10;
                chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
                chars.into_iter().collect()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let (code, body) = answer(tampered).await;
    assert_eq!(code, 403, "an altered session token is refused: {body}");

    // The server: credentials from the token file, URLs no longer-lived than they are. Readers
    // reach the store through a relay that cuts the first body connection after 64 KiB and
    // holds it 21 s, past the credentials' expiry.
    let relay = Relay::start(weed.https_addr(), 64 << 10, Duration::from_secs(21))
        .await
        .unwrap();
    let server = deploy
        .serve("drs-wi", &format!("https://{}", relay.addr()), 300, &env)
        .await;
    let client = deploy.client();
    let first_url = server.signed_url(&client, "obj-wi").await;
    let first_key = query(&first_url, "X-Amz-Credential");
    assert!(!first_key.starts_with(weed.access_key()), "{first_key}");
    assert!(
        query(&first_url, "X-Amz-Expires").parse::<u64>().unwrap() <= 20,
        "a signed URL does not outlive its credentials: {first_url}"
    );

    // The kubelet rotates the projected token (a rename over the file); the refresh, due at
    // half the 20 s, reads the new one.
    let rotated_token = sa_token("system:serviceaccount:archive:c4gh-drs-server-rotated");
    std::fs::write(deploy.path("sa-token.new"), &rotated_token).unwrap();
    std::fs::rename(deploy.path("sa-token.new"), &token_file).unwrap();

    // The sidecar's download is held until the URL's credentials expired: the store refuses
    // the resumed request, the sidecar gets a new URL (signed with refreshed credentials) from
    // the access endpoint and completes.
    let run = Run::with(&deploy.ca_bundle, SERVE_TOKEN);
    let uri = format!("drs://{}/obj-wi", server.addr);
    let out = run.fetch(&uri, "wi.c4gh").await;
    let log = stderr(&out);
    assert!(out.status.success(), "fetch failed:\n{log}");
    assert!(
        log.contains("the signed body URL expired; asking the access endpoint for a new one"),
        "the URL signed with expired credentials was renewed:\n{log}"
    );
    assert_eq!(
        reference_decrypt(&run.path("wi.c4gh"), &run.path("wi.c4gh.sec")),
        plain
    );
    let refreshes = r#"c4gh_drs_s3_credential_refreshes_total{outcome="ok"}"#;
    assert!(
        server.metric(&client, refreshes).await >= Some(2.0),
        "refreshed:\n{}",
        server.log()
    );
    let log = server.log();
    assert!(
        log.contains("object-store credentials refreshed")
            && log.contains("system:serviceaccount:archive:c4gh-drs-server-rotated"),
        "the refresh used the rotated token:\n{log}"
    );
    let second_url = server.signed_url(&client, "obj-wi").await;
    assert_ne!(
        query(&second_url, "X-Amz-Credential"),
        first_key,
        "new temporary credentials sign"
    );

    // The test's own credentials have expired as well: the URL they signed is refused by the
    // store although its own X-Amz-Expires (300 s) has not passed.
    sleep_until(own_until + Duration::from_secs(1)).await;
    let (code, body) = answer(long_url.clone()).await;
    assert!(
        matches!(code, 400 | 403)
            && ["ExpiredToken", "InvalidAccessKeyId", "AccessDenied"]
                .iter()
                .any(|c| body.contains(c)),
        "expired temporary credentials are refused: {code} {body}"
    );
    eprintln!("the store's answer to a URL signed with expired credentials: {code} {body}");

    // The token file goes bad: refreshes fail (logged, counted); when the credentials expire the
    // access endpoint says so with a 503 instead of handing out URLs the store refuses.
    std::fs::write(&token_file, "not-a-token").unwrap();
    let failed = r#"c4gh_drs_s3_credential_refreshes_total{outcome="failed"}"#;
    server
        .wait_for_metric(&client, failed, 1.0, Duration::from_secs(30))
        .await;
    assert!(
        server
            .log()
            .contains("refreshing the object-store credentials failed"),
        "the failure is logged"
    );
    let expiry = server
        .metric(&client, "c4gh_drs_s3_credential_expiry_seconds")
        .await
        .unwrap();
    sleep_until(std::time::UNIX_EPOCH + Duration::from_secs_f64(expiry) + Duration::from_secs(1))
        .await;
    let (code, body) = server
        .get(&client, "/ga4gh/drs/v1/objects/obj-wi/access/crypt4gh-body")
        .await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("refreshing them fails"), "{body}");

    // No token, session token, signature or credential in the server's debug log.
    let log = server.log();
    for secret in [
        first_token.as_str(),
        rotated_token.as_str(),
        &query(&first_url, "X-Amz-Security-Token"),
        &query(&second_url, "X-Amz-Security-Token"),
        &query(&first_url, "X-Amz-Signature"),
        "X-Amz-Credential",
    ] {
        assert!(!log.contains(secret), "the server logged {secret:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_a_balancer_serve_one_catalog_and_bucket() {
    let weed = start_weed().await;
    uploader(&weed, "bodies/").await;
    let deploy = Deployment::new(&weed);
    let keys = vec![
        ("AWS_ACCESS_KEY_ID", weed.access_key().to_owned()),
        ("AWS_SECRET_ACCESS_KEY", weed.secret_key().to_owned()),
    ];
    // Readers reach the store through a relay that cuts the first body connection after 1 MiB
    // and holds it 3 s; URLs live 2 s, so the resume needs a new URL from the DRS service.
    let relay = Relay::start(weed.https_addr(), 1 << 20, Duration::from_secs(3))
        .await
        .unwrap();
    let via_relay = format!("https://{}", relay.addr());
    let a = deploy.serve("replica-a", &via_relay, 2, &keys).await;
    let b = deploy.serve("replica-b", &via_relay, 2, &keys).await;

    // Added while both run: both serve it, without a restart.
    let plain = data(6 * 65536 * 16 + 321, 23);
    deploy
        .add("obj-fleet", &plain, &weed.endpoint(), &keys)
        .await;
    let client = deploy.client();
    for replica in [&a, &b] {
        let (code, body) = replica
            .get(&client, "/ga4gh/drs/v1/objects/obj-fleet")
            .await;
        assert_eq!(code, 200, "{body}");
        replica.signed_url(&client, "obj-fleet").await;
    }

    // The sidecar through a round-robin balancer that closes connections idle for 500 ms (as
    // cloud load balancers do, with longer timeouts): its DRS connection idles while the body
    // download is held, so the renewed URL comes over a new connection, from the other replica.
    let balancer =
        c4gh_e2e::balancer::Balancer::start(vec![a.addr, b.addr], Duration::from_millis(500))
            .await
            .unwrap();
    let (before_a, before_b) = (a.log().len(), b.log().len());
    let run = Run::with(&deploy.ca_bundle, SERVE_TOKEN);
    let out = run
        .fetch(
            &format!("drs://{}/obj-fleet", balancer.addr()),
            "fleet.c4gh",
        )
        .await;
    let log = stderr(&out);
    assert!(out.status.success(), "fetch failed:\n{log}");
    assert!(
        log.contains("the signed body URL expired; asking the access endpoint for a new one"),
        "the URL was renewed:\n{log}"
    );
    assert_eq!(
        reference_decrypt(&run.path("fleet.c4gh"), &run.path("fleet.c4gh.sec")),
        plain
    );
    let served = |log: &str, what: &str| {
        log.lines()
            .any(|l| l.contains("request handled") && l.contains(what))
    };
    let (log_a, log_b) = (
        a.log()[before_a..].to_owned(),
        b.log()[before_b..].to_owned(),
    );
    let header = "/objects/obj-fleet/header";
    let access = "/objects/obj-fleet/access/crypt4gh-body";
    let header_on_a = served(&log_a, header);
    assert!(
        header_on_a != served(&log_b, header),
        "one replica served the header:\nA:\n{log_a}\nB:\n{log_b}"
    );
    let other = if header_on_a { &log_b } else { &log_a };
    assert!(
        served(other, access),
        "the other replica signed a body URL (connections {:?}):\nA:\n{log_a}\nB:\n{log_b}",
        balancer.connections()
    );
}
