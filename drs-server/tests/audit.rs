//! The audit trail over real TLS: every header request, issued or refused, is one JSON `audit`
//! event (object, dataset, subject, key fingerprint, decision, reason, request id, time) and one
//! count in `c4gh_drs_header_decisions_total`, and no log line carries the token or the key; with
//! key binding, a second key for the same identity is refused and audited as such.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use c4gh::keys::SecretKey;
use common::{client, expect_problem, key_header};
use drs_server::crypt::fingerprint;
use drs_server::testing::{TEST_SUBJECT, TestServer};
use serde_json::Value;

/// Everything logged by this test binary, as JSON lines.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buffer);
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter("info")
            .with_writer(move || Sink(Arc::clone(&sink)))
            .init();
        buffer
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8(logs().lock().unwrap().clone()).unwrap()
}

/// The audit events of the request with `request_id`.
fn audit_events(request_id: &str) -> Vec<Value> {
    log_text()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|event| event["target"] == "audit" && event["request_id"] == request_id)
        .collect()
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn metrics(server: &TestServer) -> String {
    client(server)
        .get(format!("{}/metrics", server.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn one_audit_event_per_header_without_secrets() {
    logs();
    let server = TestServer::start().await.unwrap();
    server
        .add_to_dataset("NA12878", b"genome", &["*"], Some("EGAD00000000001"))
        .unwrap();
    server.add("private", b"x", &["someone-else"]).unwrap();
    let http = client(&server);
    let key = SecretKey::generate().public_key();
    let key_value = key_header(&key);
    let header_url = |id: &str| format!("{}/c4gh/v1/objects/{id}/header", server.base_url());

    let issued = http
        .get(header_url("NA12878"))
        .header("authorization", server.bearer())
        .header("x-c4gh-public-key", &key_value)
        .send()
        .await
        .unwrap();
    assert_eq!(issued.status(), 200);
    let id = request_id(&issued);
    let events = audit_events(&id);
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["object"], "NA12878");
    assert_eq!(event["dataset"], "EGAD00000000001");
    assert_eq!(event["subject"], TEST_SUBJECT);
    assert_eq!(event["key_fingerprint"], fingerprint(&key));
    assert_eq!(event["key_fingerprint"].as_str().unwrap().len(), 32);
    assert_eq!(event["decision"], "issued");
    assert_eq!(event["reason"], "granted");
    assert!(
        event["time"].as_str().unwrap().ends_with('Z'),
        "RFC 3339 UTC time: {event}"
    );

    // Refusals are audited too, with what was known at the time.
    let refused = http
        .get(header_url("private"))
        .header("authorization", server.bearer())
        .header("x-c4gh-public-key", &key_value)
        .send()
        .await
        .unwrap();
    let refused_id = request_id(&refused);
    expect_problem(refused, 403, "FORBIDDEN").await;
    let events = audit_events(&refused_id);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["decision"], "refused");
    assert_eq!(events[0]["reason"], "not_reader");
    assert_eq!(events[0]["subject"], TEST_SUBJECT);
    assert_eq!(events[0]["key_fingerprint"], fingerprint(&key));
    assert!(events[0].get("dataset").is_none(), "{}", events[0]);

    let bad_token = http
        .get(header_url("NA12878"))
        .header("authorization", "Bearer not-a-valid-token-0123456789")
        .header("x-c4gh-public-key", &key_value)
        .send()
        .await
        .unwrap();
    let bad_id = request_id(&bad_token);
    expect_problem(bad_token, 401, "UNAUTHENTICATED").await;
    let events = audit_events(&bad_id);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["reason"], "unknown_token");
    assert!(events[0].get("subject").is_none(), "{}", events[0]);

    let malformed = http
        .post(header_url("NA12878"))
        .header("authorization", server.bearer())
        .header("x-c4gh-public-key", &key_value)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let malformed_id = request_id(&malformed);
    expect_problem(malformed, 400, "BAD_REQUEST").await;
    let events = audit_events(&malformed_id);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["reason"], "bad_request");

    let text = metrics(&server).await;
    assert!(
        text.contains(r#"c4gh_drs_header_decisions_total{decision="issued",reason="granted"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"c4gh_drs_header_decisions_total{decision="refused",reason="not_reader"} 1"#
        ),
        "{text}"
    );

    // No token and no key, in any form, anywhere in the logs.
    let all = log_text();
    let raw_key = STANDARD.encode(key.as_bytes());
    let pem_body = key.to_pem();
    let pem_line = pem_body.lines().nth(1).unwrap();
    for secret in [
        server.token().expose(),
        "not-a-valid-token-0123456789",
        key_value.as_str(),
        raw_key.as_str(),
        pem_line,
    ] {
        assert!(!all.contains(secret), "the logs contain {secret:?}");
    }
    assert!(!all.contains(&hex::encode(key.as_bytes())));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn key_binding_refuses_a_second_key_for_the_same_identity() {
    logs();
    let server = TestServer::start_with(|config| config.settings.bind_keys = true)
        .await
        .unwrap();
    server.add("open", b"x", &["*"]).unwrap();
    let http = client(&server);
    let url = format!("{}/c4gh/v1/objects/open/header", server.base_url());
    let first = SecretKey::generate().public_key();
    let second = SecretKey::generate().public_key();
    let get = |key: &c4gh::keys::PublicKey| {
        http.get(&url)
            .header("authorization", server.bearer())
            .header("x-c4gh-public-key", key_header(key))
            .send()
    };
    assert_eq!(get(&first).await.unwrap().status(), 200);
    assert_eq!(get(&first).await.unwrap().status(), 200, "the bound key");
    let refused = get(&second).await.unwrap();
    let id = request_id(&refused);
    let body = expect_problem(refused, 403, "FORBIDDEN").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("sub:{TEST_SUBJECT}"))
            && detail.contains(&fingerprint(&first))
            && detail.contains(&fingerprint(&second))
            && detail.contains("one key per identity"),
        "{detail}"
    );
    assert!(!detail.contains(server.token().expose()));
    let events = audit_events(&id);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["decision"], "refused");
    assert_eq!(events[0]["reason"], "key_binding");
    assert_eq!(events[0]["key_fingerprint"], fingerprint(&second));
    assert_eq!(get(&first).await.unwrap().status(), 200, "still bound");
    server.shutdown().await.unwrap();
}
