//! Load generator for `cargo xtask bench operator`: starts the real `c4gh-operator` binary
//! (policies from a file, certificates from a directory — no API server needed), posts
//! AdmissionReview requests for the golden TESK executor pod over TLS on loopback at several
//! concurrencies, and prints p50/p99 latency, throughput, the CPU time per request of the
//! operator and of the load generator (measured separately, so the two can be compared), and
//! the operator's RSS.
//!
//! Like the API server, each concurrent client keeps one TLS connection alive for all its
//! requests (one handshake per connection, made before the clock starts). Requests are built
//! once and shared (`Bytes`); a response is checked by its status, `"allowed":true` and
//! `"patchType":"JSONPatch"`; the first response of each level is checked in full (the patch
//! applied to the pod gives the golden expected pod). The load generator runs on one thread.
//!
//! Usage: `admission_load --operator target/release/c4gh-operator [--requests N]
//! [--operator-log FILTER]` (`RUST_LOG` of the operator, default `info`, JSON logs to
//! `/dev/null`, as in a cluster).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: failures abort it

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use c4gh_operator::certs::{self, Lifetimes};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use k8s_openapi::api::core::v1::Pod;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use time::OffsetDateTime;
use tokio::net::TcpStream;

const POLICY: &str = include_str!("../tests/golden/policy.yaml");
const POD: &str = include_str!("../tests/golden/tesk-executor.input.yaml");
const EXPECTED: &str = include_str!("../tests/golden/tesk-executor.expected.yaml");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `VmHWM` (peak) and `VmRSS` (current) of a process, KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// User + system CPU time of a process (clock ticks of 10 ms, the Linux default).
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the command name: state is field 0, utime field 11, stime field 12.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .map(|i| args[i + 1].clone())
}

/// One kept-alive HTTP/1.1 connection over TLS.
async fn connect(port: u16, tls: &tokio_rustls::TlsConnector) -> SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let stream = tls
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (sender, conn) = http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// Posts the review and returns the response body (status 200 asserted).
async fn post(sender: &mut SendRequest<Full<Bytes>>, port: u16, body: &Bytes) -> Bytes {
    sender.ready().await.unwrap();
    let request = hyper::Request::post("/mutate-pods")
        .header(hyper::header::HOST, format!("localhost:{port}"))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.clone()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap().to_bytes()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The full check of one response: allowed, and the patch turns the pod into the golden one.
fn check_fully(response: &[u8], pod: &serde_json::Value) {
    let review: serde_json::Value = serde_json::from_slice(response).unwrap();
    assert_eq!(review["response"]["allowed"], true, "{review}");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(review["response"]["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    let expected: Pod = serde_yaml_ng::from_str(EXPECTED).unwrap();
    assert_eq!(patched, serde_json::to_value(expected).unwrap());
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let operator = PathBuf::from(arg(&args, "--operator").expect("--operator PATH is required"));
    let requests: usize =
        arg(&args, "--requests").map_or(20000, |n| n.parse().expect("--requests N"));
    let operator_log = arg(&args, "--operator-log").unwrap_or_else(|| "info".to_owned());

    let dir = tempfile::tempdir().unwrap();
    let names = vec!["localhost".to_owned()];
    let lifetimes = Lifetimes {
        serving: Duration::from_secs(3600),
        ca: Duration::from_secs(86_400),
    };
    let stored = certs::renew(None, &names, lifetimes, OffsetDateTime::now_utc())
        .unwrap()
        .unwrap();
    std::fs::write(dir.path().join(certs::TLS_CRT), &stored.serving.cert_pem).unwrap();
    std::fs::write(
        dir.path().join(certs::TLS_KEY),
        stored.serving.key_pem.as_str(),
    )
    .unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let (webhook_port, health_port) = (free_port(), free_port());
    let mut child = Command::new(&operator)
        .args(["--webhook-addr", &format!("127.0.0.1:{webhook_port}")])
        .args(["--health-addr", &format!("127.0.0.1:{health_port}")])
        .args(["--log-format", "json"])
        .arg("--cert-dir")
        .arg(dir.path())
        .arg("--policy-file")
        .arg(dir.path().join("policy.yaml"))
        .env("RUST_LOG", &operator_log)
        .stdout(Stdio::null())
        .spawn()
        .expect("start c4gh-operator");
    let pid = child.id();
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let ready = http
            .get(format!("http://127.0.0.1:{health_port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "operator not ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, idle_rss) = rss_kib(pid);

    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(stored.ca.cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = tokio_rustls::TlsConnector::from(Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    ));

    let pod: Pod = serde_yaml_ng::from_str(POD).unwrap();
    let pod = serde_json::to_value(pod).unwrap();
    let body = Bytes::from(
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "00000000-0000-0000-0000-000000000000",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "tasks",
                "operation": "CREATE",
                "userInfo": {"username": "bench"},
                "object": pod,
            }
        }))
        .unwrap(),
    );
    println!(
        "c4gh-operator admission benchmark: TESK executor pod ({} B request), TLS 1.3 on loopback, \
         one kept-alive connection per client, {requests} requests per level, operator RUST_LOG={operator_log}",
        body.len()
    );
    println!(
        "{:>11} {:>8} {:>8} {:>8} {:>15} {:>15}",
        "concurrency", "p50 ms", "p99 ms", "req/s", "operator CPU/req", "loadgen CPU/req"
    );
    for concurrency in [1usize, 32, 256] {
        let mut senders = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            senders.push(connect(webhook_port, &tls).await);
        }
        // Warm up every connection; check the first answer in full.
        for (i, s) in senders.iter_mut().enumerate() {
            let response = post(s, webhook_port, &body).await;
            if i == 0 {
                check_fully(&response, &pod);
            }
        }
        let per_worker = requests.div_ceil(concurrency);
        let (op_before, lg_before) = (cpu_time(&pid.to_string()), cpu_time("self"));
        let wall = Instant::now();
        let workers: Vec<_> = senders
            .into_iter()
            .map(|mut s| {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(per_worker);
                    for _ in 0..per_worker {
                        let t = Instant::now();
                        let response = post(&mut s, webhook_port, &body).await;
                        lat.push(t.elapsed());
                        let head = &response[..response.len().min(512)];
                        assert!(contains(head, b"\"allowed\":true"));
                        assert!(contains(&response, b"\"patchType\":\"JSONPatch\""));
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::with_capacity(per_worker * concurrency);
        for w in workers {
            all.extend(w.await.unwrap());
        }
        let elapsed = wall.elapsed();
        let op_cpu = cpu_time(&pid.to_string()).saturating_sub(op_before);
        let lg_cpu = cpu_time("self").saturating_sub(lg_before);
        all.sort();
        let per_request = |d: Duration| d.as_secs_f64() * 1e6 / all.len() as f64;
        println!(
            "{:>11} {:>8.2} {:>8.2} {:>8.0} {:>12.0} µs {:>12.0} µs",
            concurrency,
            percentile(&all, 0.50).as_secs_f64() * 1e3,
            percentile(&all, 0.99).as_secs_f64() * 1e3,
            all.len() as f64 / elapsed.as_secs_f64(),
            per_request(op_cpu),
            per_request(lg_cpu),
        );
    }
    let (peak, now) = rss_kib(pid);
    println!(
        "operator RSS: {:.1} MiB after start, {:.1} MiB at the end, {:.1} MiB peak (VmHWM)",
        idle_rss as f64 / 1024.0,
        now as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
}
