//! Serving behaviour: TLS certificate hot reload, HTTP/2 via ALPN, slow clients dropped,
//! graceful shutdown with a deadline.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use c4gh::keys::SecretKey;
use common::{client, client_for, data};
use drs_server::testing::{TestCa, TestServer};
use drs_server::tls::TlsConfig;
use drs_server::{Config, start};
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn tls_certificate_files_are_reloaded_when_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog");
    std::fs::create_dir(&catalog).unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let first = TestCa::new().unwrap();
    let write = |ca: &TestCa| {
        let (c, k) = ca.issue(&["127.0.0.1"]).unwrap();
        std::fs::write(dir.path().join("tls.crt.new"), c).unwrap();
        std::fs::write(dir.path().join("tls.key.new"), k.as_bytes()).unwrap();
        std::fs::rename(dir.path().join("tls.key.new"), &key).unwrap();
        std::fs::rename(dir.path().join("tls.crt.new"), &cert).unwrap();
    };
    write(&first);
    let tls = TlsConfig::Files {
        cert: cert.clone(),
        key: key.clone(),
        reload_interval: Some(Duration::from_millis(100)),
    };
    let server = start(Config::new(catalog, SecretKey::generate(), Some(tls)))
        .await
        .unwrap();
    let url = format!("{}/healthz", server.base_url());
    assert_eq!(
        client_for(&first.ca_pem())
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A broken pair is ignored (the old certificate keeps serving).
    std::fs::write(&cert, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        client_for(&first.ca_pem())
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let second = TestCa::new().unwrap();
    write(&second);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if client_for(&second.ca_pem()).get(&url).send().await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(client_for(&first.ca_pem()).get(&url).send().await.is_err());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn http2_is_negotiated() {
    let server = TestServer::start().await.unwrap();
    let response = client(&server)
        .get(format!("{}/service-info", server.drs_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn silent_clients_are_dropped_after_the_client_timeout() {
    let server = TestServer::start_with(|c| c.client_timeout = Duration::from_millis(500))
        .await
        .unwrap();
    let started = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(server.server().local_addr())
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("the server kept a silent connection open")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() < Duration::from_secs(3));
    // The server still serves others.
    let ok = client(&server)
        .get(format!("{}/healthz", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn shutdown_waits_for_requests_up_to_the_deadline() {
    let server = TestServer::start_with(|c| c.shutdown_timeout = Duration::from_secs(1))
        .await
        .unwrap();
    server.add("big", &data(8 << 20), &["*"]).unwrap();
    let http = client(&server);
    // A download that is started but never read: it cannot finish.
    let stalled = http
        .get(format!("{}/c4gh/v1/objects/big/body", server.base_url()))
        .header("authorization", server.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(stalled.status(), 200);
    let addr = server.server().local_addr();
    let started = Instant::now();
    server.shutdown().await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "did not wait: {took:?}");
    assert!(took < Duration::from_secs(4), "waited too long: {took:?}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    drop(stalled);
}
