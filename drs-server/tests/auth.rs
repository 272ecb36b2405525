//! Authentication and authorisation over real TLS: static tokens, and JWTs verified against a
//! JWKS served by a local HTTPS issuer (OIDC discovery, and a Kubernetes ServiceAccount-style
//! issuer with a configured JWKS URL): good RS256 and ES256 tokens, expired, not yet valid, wrong
//! audience, wrong issuer, unknown kid, bad signature, wrong algorithm, unreachable issuer; key
//! caching; per-object readers.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{client, expect_problem};
use drs_server::auth::jwt::{JwksSource, JwtConfig};
use drs_server::testing::{TestCa, TestServer};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const AUDIENCE: &str = "drs.test";
const K8S_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const WORKER: &str = "system:serviceaccount:lab:worker";

struct RsaKey {
    der: Vec<u8>,
    n: String,
}

/// A fresh 2048-bit RSA key from the system `openssl` (ring cannot generate RSA keys).
fn rsa_key(dir: &Path, name: &str) -> RsaKey {
    let pem = dir.join(format!("{name}.pem"));
    let der = dir.join(format!("{name}.der"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is required");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    run(&["genrsa", "-out", pem.to_str().unwrap(), "2048"]);
    run(&[
        "rsa",
        "-in",
        pem.to_str().unwrap(),
        "-outform",
        "DER",
        "-traditional",
        "-out",
        der.to_str().unwrap(),
    ]);
    let modulus = String::from_utf8(run(&[
        "rsa",
        "-in",
        pem.to_str().unwrap(),
        "-noout",
        "-modulus",
    ]))
    .unwrap();
    let hex_n = modulus.trim().strip_prefix("Modulus=").unwrap();
    RsaKey {
        der: std::fs::read(der).unwrap(),
        n: URL_SAFE_NO_PAD.encode(hex::decode(hex_n).unwrap()),
    }
}

struct EcKey {
    pkcs8: Vec<u8>,
    x: String,
    y: String,
}

fn ec_key() -> EcKey {
    let key = rcgen::KeyPair::generate().unwrap();
    let raw = key.public_key_raw();
    assert_eq!(raw.len(), 65);
    EcKey {
        pkcs8: key.serialize_der(),
        x: URL_SAFE_NO_PAD.encode(&raw[1..33]),
        y: URL_SAFE_NO_PAD.encode(&raw[33..]),
    }
}

/// A local HTTPS OIDC issuer: discovery at `/.well-known/openid-configuration`, keys at
/// `/openid/v1/jwks` (the Kubernetes path). Counts JWKS fetches.
struct Issuer {
    url: String,
    ca_pem: String,
    jwks_hits: Arc<AtomicUsize>,
}

async fn start_issuer(jwks: Value) -> Issuer {
    let ca = TestCa::new().unwrap();
    let tls = drs_server::tls::server_config(&ca.server_tls().unwrap()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let url = format!("https://{addr}");
    let hits = Arc::new(AtomicUsize::new(0));
    let discovery = json!({"issuer": url, "jwks_uri": format!("{url}/openid/v1/jwks")});
    let counter = Arc::clone(&hits);
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { axum::Json(discovery) }),
        )
        .route(
            "/openid/v1/jwks",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async move { axum::Json(jwks) }
            }),
        );
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                        .await;
                }
            });
        }
    });
    Issuer {
        url,
        ca_pem: ca.ca_pem(),
        jwks_hits: hits,
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(iss: &str, sub: &str) -> Value {
    json!({"iss": iss, "sub": sub, "aud": [AUDIENCE], "iat": now(), "nbf": now() - 10, "exp": now() + 600})
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    issuer: Issuer,
    rsa: EncodingKey,
    other_rsa: EncodingKey,
    ec: EncodingKey,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let rsa = rsa_key(dir.path(), "k1");
    let other = rsa_key(dir.path(), "other");
    let ec = ec_key();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig", "n": rsa.n, "e": "AQAB"},
        {"kty": "EC", "kid": "e1", "crv": "P-256", "x": ec.x, "y": ec.y, "use": "sig"}
    ]});
    let issuer = start_issuer(jwks).await;
    Fixture {
        _dir: dir,
        issuer,
        rsa: EncodingKey::from_rsa_der(&rsa.der),
        other_rsa: EncodingKey::from_rsa_der(&other.der),
        ec: EncodingKey::from_ec_der(&ec.pkcs8),
    }
}

async fn drs_with_jwt(issuer: &str, source: JwksSource, ca_pem: &str) -> TestServer {
    let mut jwt = JwtConfig::new(issuer, vec![AUDIENCE.to_owned(), "other-aud".to_owned()]);
    jwt.jwks = source;
    jwt.ca_pem = Some(ca_pem.as_bytes().to_vec());
    let server = TestServer::start_with(move |config| config.jwt = Some(jwt))
        .await
        .unwrap();
    server
        .add("lab-data", b"lab data", &["system:serviceaccount:lab:*"])
        .unwrap();
    server.add("open", b"open data", &["*"]).unwrap();
    server
}

async fn get_object(server: &TestServer, id: &str, token: &str) -> reqwest::Response {
    client(server)
        .get(format!("{}/objects/{id}", server.drs_url()))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn static_tokens() {
    let server = TestServer::start().await.unwrap();
    server.add("open", b"x", &["*"]).unwrap();
    server.add("mine", b"x", &["tester"]).unwrap();
    server.add("theirs", b"x", &["someone-else"]).unwrap();
    let http = client(&server);
    let url = |id: &str| format!("{}/objects/{id}", server.drs_url());
    for id in ["open", "mine"] {
        let ok = http
            .get(url(id))
            .header("authorization", server.bearer())
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "{id}");
    }
    let lower = http
        .get(url("open"))
        .header(
            "authorization",
            format!("bearer {}", server.token().expose()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status(), 200, "the scheme is case-insensitive");
    expect_problem(
        http.get(url("theirs"))
            .header("authorization", server.bearer())
            .send()
            .await
            .unwrap(),
        403,
        "FORBIDDEN",
    )
    .await;
    let missing = http.get(url("open")).send().await.unwrap();
    assert_eq!(
        missing.headers()["www-authenticate"],
        "Bearer realm=\"c4gh-drs\""
    );
    expect_problem(missing, 401, "UNAUTHENTICATED").await;
    for value in [
        "Bearer not-a-valid-token-at-all".to_owned(),
        format!("Basic {}", server.token().expose()),
        format!("Bearer {}x", server.token().expose()),
        "Bearer".to_owned(),
    ] {
        let response = http
            .get(url("open"))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
        expect_problem(response, 401, "UNAUTHENTICATED").await;
    }
    let passports_only = http
        .post(url("open"))
        .json(&json!({"passports": ["eyJhbGciOi.e30.sig"]}))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(passports_only, 401, "UNAUTHENTICATED").await;
    assert!(problem["detail"].as_str().unwrap().contains("passports"));
}

#[tokio::test]
async fn jwt_via_oidc_discovery() {
    let f = fixture().await;
    let iss = f.issuer.url.clone();
    let server = drs_with_jwt(&iss, JwksSource::Discovery, &f.issuer.ca_pem).await;

    let good = sign(Algorithm::RS256, Some("k1"), &f.rsa, &claims(&iss, WORKER));
    assert_eq!(get_object(&server, "lab-data", &good).await.status(), 200);
    let es = sign(Algorithm::ES256, Some("e1"), &f.ec, &claims(&iss, WORKER));
    assert_eq!(get_object(&server, "lab-data", &es).await.status(), 200);
    let mut second_aud = claims(&iss, WORKER);
    second_aud["aud"] = json!("other-aud");
    let token = sign(Algorithm::RS256, Some("k1"), &f.rsa, &second_aud);
    assert_eq!(get_object(&server, "open", &token).await.status(), 200);

    let outsider = sign(
        Algorithm::RS256,
        Some("k1"),
        &f.rsa,
        &claims(&iss, "system:serviceaccount:other:worker"),
    );
    assert_eq!(get_object(&server, "open", &outsider).await.status(), 200);
    expect_problem(
        get_object(&server, "lab-data", &outsider).await,
        403,
        "FORBIDDEN",
    )
    .await;

    let mut expired = claims(&iss, WORKER);
    expired["exp"] = json!(now() - 3600);
    let mut early = claims(&iss, WORKER);
    early["nbf"] = json!(now() + 3600);
    let mut wrong_aud = claims(&iss, WORKER);
    wrong_aud["aud"] = json!(["someone-else"]);
    let wrong_iss = claims("https://evil.example", WORKER);
    let mut no_sub = claims(&iss, WORKER);
    no_sub.as_object_mut().unwrap().remove("sub");
    let cases = [
        (
            "expired",
            sign(Algorithm::RS256, Some("k1"), &f.rsa, &expired),
            "expired",
        ),
        (
            "nbf",
            sign(Algorithm::RS256, Some("k1"), &f.rsa, &early),
            "not valid yet",
        ),
        (
            "aud",
            sign(Algorithm::RS256, Some("k1"), &f.rsa, &wrong_aud),
            "audience",
        ),
        (
            "iss",
            sign(Algorithm::RS256, Some("k1"), &f.rsa, &wrong_iss),
            "not issued by",
        ),
        (
            "sub",
            sign(Algorithm::RS256, Some("k1"), &f.rsa, &no_sub),
            "sub",
        ),
        (
            "kid",
            sign(
                Algorithm::RS256,
                Some("nope"),
                &f.rsa,
                &claims(&iss, WORKER),
            ),
            "not in the issuer's JWKS",
        ),
        (
            "signature",
            sign(
                Algorithm::RS256,
                Some("k1"),
                &f.other_rsa,
                &claims(&iss, WORKER),
            ),
            "signature",
        ),
        (
            "alg",
            sign(
                Algorithm::HS256,
                Some("k1"),
                &EncodingKey::from_secret(b"secret"),
                &claims(&iss, WORKER),
            ),
            "only RS256 and ES256",
        ),
        (
            "ec-as-rsa",
            sign(Algorithm::RS256, Some("e1"), &f.rsa, &claims(&iss, WORKER)),
            "signature",
        ),
        ("garbage", "a.b.c".to_owned(), "not a well-formed JWT"),
    ];
    for (what, token, needle) in cases {
        let response = get_object(&server, "open", &token).await;
        let problem = expect_problem(response, 401, "UNAUTHENTICATED").await;
        assert!(
            problem["detail"].as_str().unwrap().contains(needle),
            "{what}: {problem}"
        );
    }
    // The static token still works next to JWTs.
    assert_eq!(
        get_object(&server, "open", server.token().expose())
            .await
            .status(),
        200
    );
    // Keys are cached: one JWKS fetch at first use, at most one more triggered by the unknown kid
    // (refetches for unknown kids are rate-limited).
    let hits = f.issuer.jwks_hits.load(Ordering::SeqCst);
    assert!((1..=2).contains(&hits), "{hits} JWKS fetches");
    for _ in 0..5 {
        let unknown = sign(
            Algorithm::RS256,
            Some("rotated"),
            &f.rsa,
            &claims(&iss, WORKER),
        );
        get_object(&server, "open", &unknown).await;
    }
    assert_eq!(f.issuer.jwks_hits.load(Ordering::SeqCst), hits);

    let metrics = client(&server)
        .get(format!("{}/metrics", server.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("c4gh_drs_auth_failures_total{reason=\"expired\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("c4gh_drs_auth_failures_total{reason=\"unknown_key\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn kubernetes_service_account_issuer_with_jwks_url() {
    let f = fixture().await;
    let jwks_url = format!("{}/openid/v1/jwks", f.issuer.url);
    let server = drs_with_jwt(K8S_ISSUER, JwksSource::Url(jwks_url), &f.issuer.ca_pem).await;
    // The shape of a projected ServiceAccount token.
    let mut sa = claims(K8S_ISSUER, WORKER);
    sa["kubernetes.io"] = json!({
        "namespace": "lab",
        "serviceaccount": {"name": "worker", "uid": "5f0c9a0e-0000-4000-8000-000000000001"},
        "pod": {"name": "task-1", "uid": "5f0c9a0e-0000-4000-8000-000000000002"}
    });
    let token = sign(Algorithm::RS256, Some("k1"), &f.rsa, &sa);
    assert_eq!(get_object(&server, "lab-data", &token).await.status(), 200);
    let header = client(&server)
        .get(format!(
            "{}/c4gh/v1/objects/lab-data/header",
            server.base_url()
        ))
        .header("authorization", format!("Bearer {token}"))
        .header(
            "x-c4gh-public-key",
            common::key_header(&c4gh::SecretKey::generate().public_key()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(header.status(), 200);
    // A token from the cluster for another audience (e.g. the API server's) is refused.
    let mut api = sa.clone();
    api["aud"] = json!(["https://kubernetes.default.svc.cluster.local"]);
    let token = sign(Algorithm::RS256, Some("k1"), &f.rsa, &api);
    expect_problem(
        get_object(&server, "lab-data", &token).await,
        401,
        "UNAUTHENTICATED",
    )
    .await;
}

#[tokio::test]
async fn unreachable_issuer_is_503_with_retry_after() {
    let f = fixture().await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("https://{}", closed.local_addr().unwrap());
    drop(closed);
    let server = drs_with_jwt(&dead, JwksSource::Discovery, &f.issuer.ca_pem).await;
    let token = sign(Algorithm::RS256, Some("k1"), &f.rsa, &claims(&dead, WORKER));
    let response = get_object(&server, "open", &token).await;
    assert!(response.headers().contains_key("retry-after"));
    expect_problem(response, 503, "UNAVAILABLE").await;
}

#[tokio::test]
async fn key_binding_per_pod_of_a_service_account() {
    let f = fixture().await;
    let jwks_url = format!("{}/openid/v1/jwks", f.issuer.url);
    let mut jwt = JwtConfig::new(K8S_ISSUER, vec![AUDIENCE.to_owned()]);
    jwt.jwks = JwksSource::Url(jwks_url);
    jwt.ca_pem = Some(f.issuer.ca_pem.as_bytes().to_vec());
    let server = TestServer::start_with(move |config| {
        config.jwt = Some(jwt);
        config.settings.bind_keys = true;
    })
    .await
    .unwrap();
    server
        .add("lab-data", b"lab data", &["system:serviceaccount:lab:*"])
        .unwrap();
    let pod_token = |name: &str, uid: &str| {
        let mut sa = claims(K8S_ISSUER, WORKER);
        sa["kubernetes.io"] = json!({
            "namespace": "lab",
            "serviceaccount": {"name": "worker", "uid": "5f0c9a0e-0000-4000-8000-000000000001"},
            "pod": {"name": name, "uid": uid}
        });
        sign(Algorithm::ES256, Some("e1"), &f.ec, &sa)
    };
    let pod_a = pod_token("task-a", "5f0c9a0e-0000-4000-8000-00000000000a");
    let pod_b = pod_token("task-b", "5f0c9a0e-0000-4000-8000-00000000000b");
    let key_a = c4gh::SecretKey::generate().public_key();
    let key_b = c4gh::SecretKey::generate().public_key();
    let http = client(&server);
    let header = |token: &str, key: &c4gh::keys::PublicKey| {
        http.get(format!(
            "{}/c4gh/v1/objects/lab-data/header",
            server.base_url()
        ))
        .header("authorization", format!("Bearer {token}"))
        .header("x-c4gh-public-key", common::key_header(key))
        .send()
    };
    assert_eq!(header(&pod_a, &key_a).await.unwrap().status(), 200);
    // Another pod of the same ServiceAccount binds its own key.
    assert_eq!(header(&pod_b, &key_b).await.unwrap().status(), 200);
    // Pod A's token with pod B's (or any other) key is refused.
    let body = expect_problem(header(&pod_a, &key_b).await.unwrap(), 403, "FORBIDDEN").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("pod:5f0c9a0e-0000-4000-8000-00000000000a"),
        "{detail}"
    );
    assert!(!detail.contains(&pod_a), "{detail}");
    // A new token for the same pod (rotation by the kubelet) keeps the binding.
    let rotated = pod_token("task-a", "5f0c9a0e-0000-4000-8000-00000000000a");
    assert_eq!(header(&rotated, &key_a).await.unwrap().status(), 200);
}
