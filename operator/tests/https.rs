//! The webhook over real TLS on loopback: AdmissionReview JSON posted to the running server
//! (certificates from the operator's own CA code), and certificate rotation observed on the wire
//! without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use c4gh_operator::admission::{EffectivePolicies, StaticPolicies};
use c4gh_operator::certs::{self, Lifetimes};
use c4gh_operator::effective::OperatorDefaults;
use c4gh_operator::metrics::Metrics;
use c4gh_operator::serving;
use c4gh_operator::tls::{self, ReloadingResolver};
use c4gh_operator::webhook::{self, WebhookState};
use k8s_openapi::api::core::v1::Pod;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

fn golden(name: &str) -> String {
    fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name),
    )
    .unwrap()
}

struct Server {
    addr: SocketAddr,
    ca_pem: String,
    stop: watch::Sender<bool>,
}

/// Starts the webhook with the golden policy; the certificate comes from `cert_dir` files
/// (reloaded on change) — the same path the cert-manager overlay uses.
async fn start(cert_dir: &Path, ca_pem: String) -> Server {
    let policies = StaticPolicies::from_yaml(&golden("policy.yaml")).unwrap();
    let metrics = Arc::new(Metrics::new());
    let resolver = Arc::new(ReloadingResolver::new());
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(certs::watch_files(
        cert_dir.to_owned(),
        resolver.clone(),
        metrics.clone(),
        stop_rx.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !resolver.is_loaded() {
        assert!(Instant::now() < deadline, "certificate not loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state = WebhookState {
        policies: Arc::new(EffectivePolicies::new(
            Arc::new(policies),
            Arc::new(OperatorDefaults::default()),
        )),
        metrics,
        recorder: None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Arc::new(tls::server_config(resolver).unwrap());
    let mut rx = stop_rx;
    tokio::spawn(serving::serve_tls(
        listener,
        config,
        webhook::router(state),
        async move {
            let _ = rx.wait_for(|s| *s).await;
        },
        Duration::from_secs(2),
    ));
    Server { addr, ca_pem, stop }
}

fn write_certs(dir: &Path, stored: &certs::Stored) {
    // Atomic replacement, like the kubelet's symlink swap of a mounted Secret.
    for (name, content) in [
        (certs::TLS_KEY, stored.serving.key_pem.as_str()),
        (certs::TLS_CRT, stored.serving.cert_pem.as_str()),
    ] {
        let part = dir.join(format!(".{name}.part"));
        fs::write(&part, content).unwrap();
        fs::rename(&part, dir.join(name)).unwrap();
    }
}

fn lifetimes(serving_secs: u64) -> Lifetimes {
    Lifetimes {
        serving: Duration::from_secs(serving_secs),
        ca: Duration::from_secs(3600),
    }
}

fn client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn review(operation: &str, pod: &Pod) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "tasks",
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:tesk:taskmaster"},
            "object": pod,
            "dryRun": false
        }
    })
}

async fn post(client: &reqwest::Client, addr: SocketAddr, body: &Value) -> (u16, Value) {
    let r = client
        .post(format!("https://localhost:{}/mutate-pods", addr.port()))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn server_with_fresh_certs(dir: &Path, serving_secs: u64) -> (Server, certs::Stored) {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let stored = certs::renew(
        None,
        &names,
        lifetimes(serving_secs),
        OffsetDateTime::now_utc(),
    )
    .unwrap()
    .unwrap();
    write_certs(dir, &stored);
    let server = start(dir, stored.ca.cert_pem.clone()).await;
    (server, stored)
}

#[tokio::test]
async fn injects_over_tls_and_the_patch_yields_the_golden_pod() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = server_with_fresh_certs(dir.path(), 3600).await;
    let pod: Pod = serde_yaml_ng::from_str(&golden("job-pod.input.yaml")).unwrap();
    let (status, body) = post(
        &client(&server.ca_pem),
        server.addr,
        &review("CREATE", &pod),
    )
    .await;
    assert_eq!(status, 200);
    let resp = &body["response"];
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(resp["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(resp["allowed"], true);
    assert_eq!(resp["patchType"], "JSONPatch");
    let patch_bytes = base64::engine::general_purpose::STANDARD
        .decode(resp["patch"].as_str().expect("patch is a base64 string"))
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch_bytes).unwrap();
    let mut patched = serde_json::to_value(&pod).unwrap();
    json_patch::patch(&mut patched, &patch).unwrap();
    let expected: Pod = serde_yaml_ng::from_str(&golden("job-pod.expected.yaml")).unwrap();
    assert_eq!(patched, serde_json::to_value(&expected).unwrap());
    let _ = server.stop.send(true);
}

#[tokio::test]
async fn denies_over_tls_with_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = server_with_fresh_certs(dir.path(), 3600).await;
    let mut pod: Pod = serde_yaml_ng::from_str(&golden("job-pod.input.yaml")).unwrap();
    pod.metadata.annotations = Some(
        [(
            "c4gh.dev/inputs".to_owned(),
            r#"[{"url": "drs://evil.example.com/x", "path": "/data/x"}]"#.to_owned(),
        )]
        .into(),
    );
    let (status, body) = post(
        &client(&server.ca_pem),
        server.addr,
        &review("CREATE", &pod),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], false);
    assert_eq!(
        body["response"]["status"]["message"],
        "input 0 (drs://evil.example.com/x): host \"evil.example.com\" is not allowed by Crypt4ghPolicy \"default\" (allowed: drs.example.org, localhost:8443); use an allowed DRS server or ask the cluster operator to add the host to spec.allowedHosts"
    );
    assert!(body["response"]["patch"].is_null());

    // A namespace without a policy.
    let mut req = review("CREATE", &pod);
    req["request"]["namespace"] = json!("other");
    let (_, body) = post(&client(&server.ca_pem), server.addr, &req).await;
    assert_eq!(
        body["response"]["status"]["message"],
        "no Crypt4ghPolicy \"default\" in namespace \"other\"; create one (see manifests/samples/) or set annotation c4gh.dev/policy to an existing policy"
    );
    let _ = server.stop.send(true);
}

#[tokio::test]
async fn other_operations_and_bad_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = server_with_fresh_certs(dir.path(), 3600).await;
    let c = client(&server.ca_pem);
    let pod: Pod = serde_yaml_ng::from_str(&golden("job-pod.input.yaml")).unwrap();
    let (status, body) = post(&c, server.addr, &review("UPDATE", &pod)).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"]["patch"].is_null());

    let (status, _) = post(&c, server.addr, &json!({"kind": "Nonsense"})).await;
    assert!((400..500).contains(&status), "status {status}");
    let r = c
        .post(format!(
            "https://localhost:{}/mutate-pods",
            server.addr.port()
        ))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    let _ = server.stop.send(true);
}

/// Completes a TLS handshake and returns the certificate the server presented.
async fn served_cert(addr: SocketAddr, ca_pem: &str) -> Vec<u8> {
    let config = testkit::tls::client_config(ca_pem).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn short_lived_certificate_is_rotated_and_served_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let (server, first) = server_with_fresh_certs(dir.path(), 6).await;
    assert_eq!(
        served_cert(server.addr, &server.ca_pem).await,
        der(&first.serving.cert_pem)
    );

    // Not yet due: renewal keeps everything.
    assert!(
        certs::renew(
            Some(&first),
            &names,
            lifetimes(6),
            OffsetDateTime::now_utc()
        )
        .unwrap()
        .is_none()
    );
    // Due once a third of the lifetime is left.
    let started = Instant::now();
    let second = loop {
        if let Some(s) = certs::renew(
            Some(&first),
            &names,
            lifetimes(6),
            OffsetDateTime::now_utc(),
        )
        .unwrap()
        {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "renewal never due"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(second.ca.cert_pem, first.ca.cert_pem, "the CA is kept");
    assert_ne!(second.serving.cert_pem, first.serving.cert_pem);
    write_certs(dir.path(), &second);

    // The running server picks it up; clients trusting the CA keep working throughout.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let served = served_cert(server.addr, &server.ca_pem).await;
        if served == der(&second.serving.cert_pem) {
            break;
        }
        assert_eq!(served, der(&first.serving.cert_pem));
        assert!(
            Instant::now() < deadline,
            "rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pod: Pod = serde_yaml_ng::from_str(&golden("no-inputs.input.yaml")).unwrap();
    let (status, body) = post(
        &client(&server.ca_pem),
        server.addr,
        &review("CREATE", &pod),
    )
    .await;
    assert_eq!((status, &body["response"]["allowed"]), (200, &json!(true)));
    let _ = server.stop.send(true);
}

#[test]
fn ca_rotation_keeps_the_old_ca_in_the_bundle() {
    let names = vec!["localhost".to_owned()];
    let l = Lifetimes {
        serving: Duration::from_secs(100),
        ca: Duration::from_secs(1000),
    };
    let t0 = OffsetDateTime::now_utc();
    let first = certs::renew(None, &names, l, t0).unwrap().unwrap();
    // CA renewal is due with three serving lifetimes left (at t0 + 700 s).
    let later = t0 + Duration::from_secs(701);
    let second = certs::renew(Some(&first), &names, l, later)
        .unwrap()
        .unwrap();
    assert_ne!(second.ca.cert_pem, first.ca.cert_pem);
    assert_eq!(
        second.ca_bundle,
        format!("{}{}", second.ca.cert_pem, first.ca.cert_pem)
    );
    // Different names force a new serving certificate under the same CA.
    let other = vec!["other.example".to_owned()];
    let third = certs::renew(Some(&first), &other, l, t0).unwrap().unwrap();
    assert_eq!(third.ca.cert_pem, first.ca.cert_pem);
    assert_eq!(third.names, other);
    // The Secret round-trips, and its Debug output never shows a key.
    let secret = first.to_secret("c4gh-system", "tls");
    let back = certs::Stored::from_secret(&secret).unwrap();
    assert_eq!(back.serving.cert_pem, first.serving.cert_pem);
    assert_eq!(*back.ca.key_pem, *first.ca.key_pem);
    let debug = format!("{first:?}");
    assert!(debug.contains("[secret key elided]"));
    assert!(!debug.contains("PRIVATE KEY"));
}
