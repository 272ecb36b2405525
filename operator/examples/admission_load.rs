//! Load generator for `cargo xtask bench operator`: starts the real `c4gh-operator` binary
//! (policies from a file, certificates from a directory — no API server needed), posts
//! AdmissionReview requests over TLS on loopback at several concurrencies, and prints p50/p99
//! latency, throughput and the operator's peak RSS.
//!
//! Usage: `admission_load --operator target/release/c4gh-operator [--requests N]`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: failures abort it

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use c4gh_operator::certs::{self, Lifetimes};
use serde_json::json;
use time::OffsetDateTime;

const POLICY: &str = include_str!("../tests/golden/policy.yaml");
const POD: &str = include_str!("../tests/golden/tesk-executor.input.yaml");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// User + system CPU time of a process (clock ticks of 10 ms, the Linux default).
fn cpu_time(pid: u32) -> Duration {
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

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let operator = args
        .iter()
        .position(|a| a == "--operator")
        .map(|i| PathBuf::from(&args[i + 1]))
        .expect("--operator PATH is required");
    let requests: usize = args
        .iter()
        .position(|a| a == "--requests")
        .map_or(5000, |i| args[i + 1].parse().expect("--requests N"));

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
        .arg("--cert-dir")
        .arg(dir.path())
        .arg("--policy-file")
        .arg(dir.path().join("policy.yaml"))
        .env("RUST_LOG", "warn")
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
    let idle_rss = peak_rss_kib(pid).unwrap_or(0);

    let pod: serde_json::Value = serde_yaml_ng::from_str(POD).unwrap();
    let body = Arc::new(
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
    let url = format!("https://localhost:{webhook_port}/mutate-pods");
    println!(
        "c4gh-operator admission benchmark: TESK executor pod ({} B request), TLS 1.3 on loopback, {requests} requests per level",
        body.len()
    );
    println!(
        "{:>11} {:>10} {:>10} {:>12}",
        "concurrency", "p50 ms", "p99 ms", "req/s"
    );
    for concurrency in [1usize, 32, 256] {
        let client = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(stored.ca.cert_pem.as_bytes()).unwrap(),
            )
            .pool_max_idle_per_host(concurrency)
            .build()
            .unwrap();
        // Warm up the connections.
        let warm: Vec<_> = (0..concurrency)
            .map(|_| {
                let (c, u, b) = (client.clone(), url.clone(), body.clone());
                tokio::spawn(async move {
                    c.post(u)
                        .header("content-type", "application/json")
                        .body(b.to_vec())
                        .send()
                        .await
                        .unwrap()
                })
            })
            .collect();
        for w in warm {
            assert!(w.await.unwrap().status().is_success());
        }
        let per_worker = requests.div_ceil(concurrency);
        let cpu_before = cpu_time(pid);
        let wall = Instant::now();
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (c, u, b) = (client.clone(), url.clone(), body.clone());
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(per_worker);
                    for _ in 0..per_worker {
                        let t = Instant::now();
                        let r = c
                            .post(&u)
                            .header("content-type", "application/json")
                            .body(b.to_vec())
                            .send()
                            .await
                            .unwrap();
                        assert!(r.status().is_success());
                        let v: serde_json::Value = r.json().await.unwrap();
                        assert_eq!(v["response"]["allowed"], true);
                        lat.push(t.elapsed());
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
        let cpu = cpu_time(pid).saturating_sub(cpu_before);
        all.sort();
        println!(
            "{:>11} {:>10.2} {:>10.2} {:>12.0} {:>15.0} µs",
            concurrency,
            percentile(&all, 0.50).as_secs_f64() * 1e3,
            percentile(&all, 0.99).as_secs_f64() * 1e3,
            all.len() as f64 / elapsed.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / all.len() as f64
        );
    }
    let peak = peak_rss_kib(pid).unwrap_or(0);
    println!(
        "operator RSS: {:.1} MiB after start, {:.1} MiB peak (VmHWM)",
        idle_rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
}
