//! GA4GH passports and visas over real TLS, against a local visa issuer whose JWKS is served over
//! HTTPS (keys made at test time, certificate from `testkit::tls`): a `ControlledAccessGrants`
//! visa for an object's dataset allows it (POST bodies on the header, object and access
//! endpoints; a passport as bearer token); forged signature, untrusted issuer, expired (beyond the
//! 60 s skew), not yet valid, a non-grant visa, a grant for another dataset and an object without
//! dataset are refused with problem+json naming the visa and the claim, never the token; a rotated
//! issuer key is fetched on its unknown `kid`. Visas carry no audience, so none is checked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{client, expect_problem, key_header};
use drs_server::auth::passport::{PassportConfig, VisaIssuer};
use drs_server::testing::TestServer;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const ISSUER: &str = "https://visas.test/oidc";

/// An ES256 signing key and its public JWK.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

fn signing_key(kid: &str) -> SigningKey {
    let key = rcgen::KeyPair::generate().unwrap();
    let raw = key.public_key_raw();
    SigningKey {
        kid: kid.to_owned(),
        encoding: EncodingKey::from_ec_der(&key.serialize_der()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..])}),
    }
}

/// A local HTTPS visa issuer serving a replaceable JWKS; counts fetches.
struct Issuer {
    jwks_url: String,
    ca_pem: String,
    jwks: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

async fn start_issuer(keys: &[&SigningKey]) -> Issuer {
    let ca = testkit::tls::TestCa::new("visa issuer test CA").unwrap();
    let leaf = ca.issue_server(&["127.0.0.1"]).unwrap();
    let tls = Arc::new(testkit::tls::server_config(&leaf).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let jwks = Arc::new(Mutex::new(
        json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}),
    ));
    let hits = Arc::new(AtomicUsize::new(0));
    let (served, counter) = (Arc::clone(&jwks), Arc::clone(&hits));
    let app = Router::new().route(
        "/jwks",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let body = served.lock().unwrap().clone();
            async move { axum::Json(body) }
        }),
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
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
        jwks_url: format!("https://{addr}/jwks"),
        ca_pem: ca.cert_pem(),
        jwks,
        hits,
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn visa_claims(iss: &str, kind: &str, dataset: &str) -> Value {
    json!({
        "iss": iss, "sub": "alice@visas.test", "iat": now(), "exp": now() + 3600,
        "ga4gh_visa_v1": {"type": kind, "value": dataset, "source": "https://dac.test/EGAC1",
            "by": "dac", "asserted": now() - 60}
    })
}

fn sign(key: &SigningKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

struct Fixture {
    server: TestServer,
    issuer: Issuer,
    key: SigningKey,
}

async fn fixture() -> Fixture {
    let key = signing_key("v1");
    let issuer = start_issuer(&[&key]).await;
    let mut config = PassportConfig::new(vec![VisaIssuer {
        issuer: ISSUER.into(),
        jwks_url: issuer.jwks_url.clone(),
    }]);
    config.ca_pem = Some(issuer.ca_pem.clone().into_bytes());
    config.min_refresh_interval = Duration::from_millis(50);
    let server = TestServer::start_with(move |c| c.passports = Some(config))
        .await
        .unwrap();
    server
        .add_to_dataset("ds1-file", b"dataset one", &["nobody"], Some("EGAD1"))
        .unwrap();
    server
        .add_to_dataset("ds2-file", b"dataset two", &["nobody"], Some("EGAD2"))
        .unwrap();
    server.add("loose", b"no dataset", &["*"]).unwrap();
    Fixture {
        server,
        issuer,
        key,
    }
}

impl Fixture {
    async fn post_header(&self, id: &str, passports: &[&str]) -> reqwest::Response {
        client(&self.server)
            .post(format!(
                "{}/c4gh/v1/objects/{id}/header",
                self.server.base_url()
            ))
            .header(
                "x-c4gh-public-key",
                key_header(&c4gh::SecretKey::generate().public_key()),
            )
            .json(&json!({ "passports": passports }))
            .send()
            .await
            .unwrap()
    }

    /// A refusal's detail, checked not to contain any of `tokens`.
    async fn refused(&self, id: &str, tokens: &[&str], status: u16, code: &str) -> String {
        let body = expect_problem(self.post_header(id, tokens).await, status, code).await;
        let detail = body["detail"].as_str().unwrap().to_owned();
        for token in tokens {
            assert!(
                !detail.contains(token),
                "the detail echoes a token: {detail}"
            );
            let signature = token.rsplit('.').next().unwrap();
            assert!(!detail.contains(signature), "{detail}");
        }
        detail
    }
}

#[tokio::test]
async fn dataset_grants_allow_their_objects() {
    let f = fixture().await;
    let visa = sign(
        &f.key,
        &visa_claims(ISSUER, "ControlledAccessGrants", "EGAD1"),
    );
    let ok = f.post_header("ds1-file", &[&visa]).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.bytes().await.unwrap().len(), 124);
    // The DRS object and access endpoints take the same POST body.
    let http = client(&f.server);
    for path in [
        "objects/ds1-file",
        "objects/ds1-file/access/crypt4gh-header",
    ] {
        let response = http
            .post(format!("{}/{path}", f.server.drs_url()))
            .json(&json!({ "passports": [visa] }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    // A passport from a trusted broker, as the bearer token, carrying the visa.
    let passport = sign(
        &f.key,
        &json!({"iss": ISSUER, "sub": "alice@visas.test", "iat": now(), "exp": now() + 3600,
            "ga4gh_passport_v1": [visa]}),
    );
    let response = http
        .get(format!(
            "{}/c4gh/v1/objects/ds1-file/header",
            f.server.base_url()
        ))
        .header("authorization", format!("Bearer {passport}"))
        .header(
            "x-c4gh-public-key",
            key_header(&c4gh::SecretKey::generate().public_key()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Within the 60 s clock skew an expired visa still counts.
    let mut skewed = visa_claims(ISSUER, "ControlledAccessGrants", "EGAD1");
    skewed["exp"] = json!(now() - 20);
    assert_eq!(
        f.post_header("ds1-file", &[&sign(&f.key, &skewed)])
            .await
            .status(),
        200
    );
    // The OPTIONS authorizations name passports and the trusted issuer.
    let options = http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/objects/ds1-file", f.server.drs_url()),
        )
        .send()
        .await
        .unwrap();
    let body: Value = options.json().await.unwrap();
    assert_eq!(body["passport_auth_issuers"], json!([ISSUER]), "{body}");
}

#[tokio::test]
async fn refusals_name_the_visa_and_the_claim() {
    let f = fixture().await;
    let grant = |dataset: &str| visa_claims(ISSUER, "ControlledAccessGrants", dataset);

    let forged_key = signing_key("v1");
    let forged = sign(&forged_key, &grant("EGAD1"));
    let detail = f
        .refused("ds1-file", &[&forged], 401, "UNAUTHENTICATED")
        .await;
    assert!(
        detail.contains("passport 1") && detail.contains("signature does not verify"),
        "{detail}"
    );

    let untrusted = sign(
        &f.key,
        &visa_claims("https://rogue.test", "ControlledAccessGrants", "EGAD1"),
    );
    let detail = f
        .refused("ds1-file", &[&untrusted], 401, "UNAUTHENTICATED")
        .await;
    assert!(
        detail.contains("\"https://rogue.test\"") && detail.contains("not trusted"),
        "{detail}"
    );

    let mut expired = grant("EGAD1");
    expired["exp"] = json!(now() - 120);
    let detail = f
        .refused(
            "ds1-file",
            &[&sign(&f.key, &expired)],
            401,
            "UNAUTHENTICATED",
        )
        .await;
    assert!(detail.contains("expired"), "{detail}");

    let mut early = grant("EGAD1");
    early["nbf"] = json!(now() + 3600);
    let detail = f
        .refused("ds1-file", &[&sign(&f.key, &early)], 401, "UNAUTHENTICATED")
        .await;
    assert!(detail.contains("not valid yet"), "{detail}");

    let role = sign(
        &f.key,
        &visa_claims(ISSUER, "AffiliationAndRole", "faculty@uni.test"),
    );
    let detail = f.refused("ds1-file", &[&role], 403, "FORBIDDEN").await;
    assert!(
        detail.contains("no valid ControlledAccessGrants visa for dataset \"EGAD1\"")
            && detail.contains("only ControlledAccessGrants visas grant access"),
        "{detail}"
    );

    let other = sign(&f.key, &grant("EGAD2"));
    let detail = f.refused("ds1-file", &[&other], 403, "FORBIDDEN").await;
    assert!(
        detail.contains("grants dataset \"EGAD2\", not this one"),
        "{detail}"
    );
    // …which does allow its own dataset, and never an object outside any dataset, even one
    // whose readers are `*`.
    assert_eq!(f.post_header("ds2-file", &[&other]).await.status(), 200);
    let detail = f.refused("loose", &[&other], 403, "FORBIDDEN").await;
    assert!(detail.contains("belongs to no dataset"), "{detail}");

    let mut future = grant("EGAD1");
    future["ga4gh_visa_v1"]["asserted"] = json!(now() + 3600);
    let detail = f
        .refused("ds1-file", &[&sign(&f.key, &future)], 403, "FORBIDDEN")
        .await;
    assert!(detail.contains("asserted is in the future"), "{detail}");

    // Several visas: each one that does not count is named.
    let detail = f
        .refused("ds1-file", &[&other, &forged], 403, "FORBIDDEN")
        .await;
    assert!(
        detail.contains("passport 1") && detail.contains("passport 2"),
        "{detail}"
    );
}

#[tokio::test]
async fn rotated_issuer_key_is_fetched_on_unknown_kid() {
    let f = fixture().await;
    let grant = visa_claims(ISSUER, "ControlledAccessGrants", "EGAD1");
    assert_eq!(
        f.post_header("ds1-file", &[&sign(&f.key, &grant)])
            .await
            .status(),
        200
    );
    assert_eq!(f.issuer.hits.load(Ordering::SeqCst), 1);
    // Cached: no refetch for a known kid.
    assert_eq!(
        f.post_header("ds1-file", &[&sign(&f.key, &grant)])
            .await
            .status(),
        200
    );
    assert_eq!(f.issuer.hits.load(Ordering::SeqCst), 1);
    // The issuer rotates to a new key and drops the old one.
    let rotated = signing_key("v2");
    *f.issuer.jwks.lock().unwrap() = json!({"keys": [rotated.jwk]});
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        f.post_header("ds1-file", &[&sign(&rotated, &grant)])
            .await
            .status(),
        200
    );
    assert_eq!(f.issuer.hits.load(Ordering::SeqCst), 2);
    // A key the issuer does not publish is refused by kid.
    let stray = signing_key("v9");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let detail = f
        .refused("ds1-file", &[&sign(&stray, &grant)], 401, "UNAUTHENTICATED")
        .await;
    assert!(
        detail.contains("\"v9\"") && detail.contains("not in the issuer's JWKS"),
        "{detail}"
    );
}

#[tokio::test]
async fn drs_client_with_a_passport_bearer_token_fetches_and_decrypts() {
    use drs::auth::{Auth, BearerToken};
    use drs::flavour::{ClientPublicKey, Crypt4ghDrs};
    use drs::uri::ParseOptions;
    use drs::{Client, ClientConfig};

    let f = fixture().await;
    let visa = sign(
        &f.key,
        &visa_claims(ISSUER, "ControlledAccessGrants", "EGAD1"),
    );
    let passport = sign(
        &f.key,
        &json!({"iss": ISSUER, "sub": "alice@visas.test", "iat": now(), "exp": now() + 3600,
            "ga4gh_passport_v1": [visa]}),
    );
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, f.server.ca_pem()).unwrap();
    let client = Client::new(ClientConfig {
        uri_options: ParseOptions {
            allow_port: true,
            allow_http: false,
        },
        ca_bundle: Some(ca),
        auth: Auth::Token(BearerToken::new(passport).unwrap()),
        ..ClientConfig::default()
    })
    .unwrap();
    let key = c4gh::SecretKey::generate();
    let public = ClientPublicKey::from_pem(&key.public_key().to_pem()).unwrap();
    let obj = client
        .locate_str(&f.server.drs_uri("ds1-file"))
        .await
        .unwrap();
    let object = client.object(&obj).await.unwrap();
    let dest = dir.path().join("ds1-file.c4gh");
    client
        .fetch_to_file(&Crypt4ghDrs, &obj, &object, &public, &dest, None)
        .await
        .unwrap();
    let mut plain = Vec::new();
    c4gh::decrypt(&mut &std::fs::read(&dest).unwrap()[..], &mut plain, &[&key]).unwrap();
    assert_eq!(plain, b"dataset one");
    // The same passport does not open another dataset's object.
    let other = client
        .locate_str(&f.server.drs_uri("ds2-file"))
        .await
        .unwrap();
    assert!(client.object(&other).await.is_err());
}

/// Passports only in POST bodies (no bearer token, as the sidecar sends them): the header comes
/// from `POST …/header`, the body through the body token the `crypt4gh-body` access URL carries.
/// That token opens only its object's body, for this server only, and the body endpoint without
/// it refuses.
#[tokio::test]
async fn passports_in_post_bodies_only_download_the_body_with_a_body_token() {
    use drs::auth::Passports;
    use drs::flavour::{ClientPublicKey, Crypt4ghDrs};
    use drs::uri::ParseOptions;
    use drs::{Client, ClientConfig};

    let f = fixture().await;
    let visa = sign(
        &f.key,
        &visa_claims(ISSUER, "ControlledAccessGrants", "EGAD1"),
    );
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, f.server.ca_pem()).unwrap();
    let drs_client = Client::new(ClientConfig {
        uri_options: ParseOptions {
            allow_port: true,
            allow_http: false,
        },
        ca_bundle: Some(ca),
        passports: Some(Passports::new(vec![visa.clone()]).unwrap()),
        ..ClientConfig::default()
    })
    .unwrap();
    let key = c4gh::SecretKey::generate();
    let public = ClientPublicKey::from_pem(&key.public_key().to_pem()).unwrap();
    let obj = drs_client
        .locate_str(&f.server.drs_uri("ds1-file"))
        .await
        .unwrap();
    let object = drs_client.object(&obj).await.unwrap();
    let dest = dir.path().join("ds1-file.c4gh");
    drs_client
        .fetch_to_file(&Crypt4ghDrs, &obj, &object, &public, &dest, None)
        .await
        .unwrap();
    let mut plain = Vec::new();
    c4gh::decrypt(&mut &std::fs::read(&dest).unwrap()[..], &mut plain, &[&key]).unwrap();
    assert_eq!(plain, b"dataset one");

    // What the access endpoint hands out, and what the body endpoint makes of it.
    let http = client(&f.server);
    let access = |id: &str| {
        http.post(format!(
            "{}/ga4gh/drs/v1/objects/{id}/access/crypt4gh-body",
            f.server.base_url()
        ))
        .json(&json!({ "passports": [visa.clone()] }))
        .send()
    };
    let response = access("ds1-file").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let url: Value = response.json().await.unwrap();
    let header = url["headers"][0].as_str().unwrap().to_owned();
    let token = header
        .strip_prefix("Authorization: ")
        .filter(|t| t.starts_with("Bearer c4gh-body.v1."))
        .expect("a body token header")
        .to_owned();
    assert!(!header.contains(&visa), "the access URL carries the visa");
    let body = |path: String, auth: Option<String>| {
        let mut request = http.get(format!("{}/{path}", f.server.base_url()));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send()
    };
    let ok = body("c4gh/v1/objects/ds1-file/body".into(), Some(token.clone()))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // Not for another object, not without it, not forged.
    for (path, auth) in [
        ("c4gh/v1/objects/ds2-file/body", Some(token.clone())),
        ("c4gh/v1/objects/ds1-file/body", None),
        (
            "c4gh/v1/objects/ds1-file/body",
            Some(format!("{token}x").replace(".v1.", ".v1.e")),
        ),
    ] {
        let refused = body(path.into(), auth).await.unwrap();
        let detail = expect_problem(refused, 401, "UNAUTHENTICATED").await;
        assert!(!detail.to_string().contains(&visa), "{detail}");
    }
    // The body token is not a credential for headers.
    let header_with_body_token = http
        .get(format!(
            "{}/c4gh/v1/objects/ds1-file/header",
            f.server.base_url()
        ))
        .header("authorization", token)
        .header("x-c4gh-public-key", key_header(&key.public_key()))
        .send()
        .await
        .unwrap();
    expect_problem(header_with_body_token, 401, "UNAUTHENTICATED").await;
    // A visa for EGAD1 gets no body URL for EGAD2.
    let other = access("ds2-file").await.unwrap();
    expect_problem(other, 403, "FORBIDDEN").await;
}
