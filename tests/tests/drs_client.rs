//! The `drs` client against the real `c4gh-drs-server` over TLS: a header fetched for key K
//! decrypts the fetched body with K's secret (our `c4gh` and the reference Python `crypt4gh`), and
//! with no other key; the server's checksums, ETags and errors are the ones the client expects.
//! (Here rather than in `crates/drs`, so the client crate does not depend on the server.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

use c4gh::keys::SecretKey;
use drs::auth::{Auth, BearerToken};
use drs::flavour::{ClientPublicKey, Crypt4ghDrs, SdaV2};
use drs::types::ProblemCode;
use drs::uri::ParseOptions;
use drs::{Client, ClientConfig};
use drs_server::testing::TestServer;

fn plaintext() -> Vec<u8> {
    (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn client(server: &TestServer, dir: &std::path::Path, token: Option<&str>) -> Client {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, server.ca_pem()).unwrap();
    let token = token.map_or_else(
        || server.bearer().trim_start_matches("Bearer ").to_owned(),
        str::to_owned,
    );
    Client::new(ClientConfig {
        uri_options: ParseOptions {
            allow_port: true,
            allow_http: false,
        },
        ca_bundle: Some(ca),
        auth: Auth::Token(BearerToken::new(token).unwrap()),
        ..ClientConfig::default()
    })
    .unwrap()
}

fn public(key: &SecretKey) -> ClientPublicKey {
    ClientPublicKey::from_pem(&key.public_key().to_pem()).unwrap()
}

#[tokio::test]
async fn header_for_k_decrypts_only_with_k_in_both_implementations() {
    let server = TestServer::start().await.unwrap();
    server.add("obj1", &plaintext(), &["*"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = client(&server, dir.path(), None);
    let k = SecretKey::generate();
    let obj = client.locate_str(&server.drs_uri("obj1")).await.unwrap();
    let object = client.object(&obj).await.unwrap();
    let dest = dir.path().join("obj1.c4gh");
    let report = client
        .fetch_to_file(&Crypt4ghDrs, &obj, &object, &public(&k), &dest, None)
        .await
        .unwrap();
    assert!(
        report.body.checksum_verified,
        "the server lists the body's sha-256"
    );
    assert_eq!(report.header_bytes, 124);
    assert_eq!(report.body.bytes, object.size);

    let file = std::fs::read(&dest).unwrap();
    let mut out = Vec::new();
    c4gh::decrypt(&mut &file[..], &mut out, &[&k]).unwrap();
    assert_eq!(out, plaintext());
    let other = SecretKey::generate();
    assert!(c4gh::decrypt(&mut &file[..], &mut Vec::new(), &[&other]).is_err());

    // The reference implementation reads it with K's secret key file.
    let sk = dir.path().join("k.sec");
    std::fs::write(&sk, k.to_pem(None, None).unwrap().as_bytes()).unwrap();
    assert_eq!(
        testkit::reference::decrypt(&dest, &sk).unwrap(),
        plaintext()
    );
}

#[tokio::test]
async fn two_fetches_give_fresh_headers_for_the_same_body() {
    let server = TestServer::start().await.unwrap();
    server.add("obj1", &plaintext(), &["*"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = client(&server, dir.path(), None);
    let k = SecretKey::generate();
    let obj = client.locate_str(&server.drs_uri("obj1")).await.unwrap();
    let object = client.object(&obj).await.unwrap();
    let h1 = client
        .fetch_header(&Crypt4ghDrs, &obj, &object, &public(&k))
        .await
        .unwrap();
    let h2 = client
        .fetch_header(&SdaV2::default(), &obj, &object, &public(&k))
        .await
        .unwrap();
    assert_eq!(
        h1.bytes.len(),
        h2.bytes.len(),
        "same length: replaceable in place"
    );
    assert_ne!(h1.bytes, h2.bytes, "a fresh writer key per request");
    assert!(h1.content_etag.is_some());
    assert_eq!(h1.content_etag, h2.content_etag);

    let dest = dir.path().join("sda.c4gh");
    client
        .fetch_to_file(&SdaV2::default(), &obj, &object, &public(&k), &dest, None)
        .await
        .unwrap();
    let mut out = Vec::new();
    c4gh::decrypt(&mut &std::fs::read(&dest).unwrap()[..], &mut out, &[&k]).unwrap();
    assert_eq!(out, plaintext());
}

#[tokio::test]
async fn server_errors_map_to_typed_client_errors() {
    let server = TestServer::start().await.unwrap();
    server.add("obj1", b"hello", &["*"]).unwrap();
    server.add("private", b"for alice", &["alice"]).unwrap();
    let dir = tempfile::tempdir().unwrap();

    let bad = client(&server, dir.path(), Some("wrong-token"));
    let obj = bad.locate_str(&server.drs_uri("obj1")).await.unwrap();
    let e = bad.object(&obj).await.unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    assert!(e.to_string().contains("C4GH_TOKEN_FILE"), "{e}");

    let good = client(&server, dir.path(), None);
    let private = good.locate_str(&server.drs_uri("private")).await.unwrap();
    let e = good.object(&private).await.unwrap_err();
    assert!(matches!(e.status(), Some(403 | 404)), "{e}");

    let missing = good.locate_str(&server.drs_uri("nope")).await.unwrap();
    let e = good.object(&missing).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    assert_eq!(e.problem_code(), Some(ProblemCode::NotFound), "{e}");

    let info = good.service_info(&obj.api_base().unwrap()).await.unwrap();
    let ext = info
        .crypt4gh
        .expect("the server advertises the crypt4gh extension");
    assert_eq!(ext.protocol_version, 1);
    assert!(matches!(
        good.bulk_objects(&obj.api_base().unwrap(), &["obj1".into(), "nope".into()])
            .await,
        Ok(r) if r.resolved_drs_object.len() == 1
    ));
}
