//! Helpers shared by the integration tests: an HTTPS client that trusts the test CA, key
//! encoding, and problem+json assertions.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use c4gh::keys::PublicKey;
use drs_server::testing::TestServer;

/// A client that trusts only `ca_pem`, with no proxy and short timeouts.
pub fn client_for(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A client for `server`.
pub fn client(server: &TestServer) -> reqwest::Client {
    client_for(&server.ca_pem())
}

/// The `X-C4GH-Public-Key` value for `key`: base64 of its PEM.
pub fn key_header(key: &PublicKey) -> String {
    STANDARD.encode(key.to_pem())
}

/// Asserts that `response` is problem+json with `status` and `code`; returns the body.
pub async fn expect_problem(
    response: reqwest::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    assert_eq!(
        response.status().as_u16(),
        status,
        "status of {}",
        response.url()
    );
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(kind, "application/problem+json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["status_code"], status, "{body}");
    assert_eq!(body["msg"], body["detail"], "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| d.len() > 10),
        "{body}"
    );
    body
}

/// Deterministic test data of `len` bytes.
pub fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761).to_le_bytes()[1])
        .collect()
}
