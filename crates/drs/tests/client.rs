//! The DRS client against real local HTTPS servers that misbehave on purpose.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns: a failure is a test failure

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use drs::auth::{Auth, BearerToken, Passports};
use drs::flavour::{ClientPublicKey, Crypt4ghDrs, HTSGET_PUBLIC_KEY_HEADER, KeyHeaderUrl, SdaV2};
use drs::resolve::{MetaResolver, PrefixMap};
use drs::types::ProblemCode;
use drs::uri::ParseOptions;
use drs::{BodyExpectation, Client, ClientConfig, Error, RetryPolicy, Timeouts};
use support::{
    FaultServer, Reply, Request, TestCa, bytes, fake_header, object_json, serve_range, sha256_hex,
};

const TOKEN: &str = "tok-3f9a.secret.value";

fn config(ca: &TestCa) -> ClientConfig {
    ClientConfig {
        uri_options: ParseOptions {
            allow_port: true,
            allow_http: false,
        },
        ca_bundle: Some(ca.ca_file.clone()),
        auth: Auth::Token(BearerToken::new(TOKEN).unwrap()),
        retry: RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_elapsed: Duration::from_secs(20),
        },
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            response: Duration::from_secs(2),
            idle: Duration::from_millis(400),
            max_accepted_wait: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(2),
            min_rate: 20_000,
            rate_window: Duration::from_millis(500),
        },
        ..ClientConfig::default()
    }
}

fn key() -> ClientPublicKey {
    ClientPublicKey::from_raw([42; 32])
}

type Fault = dyn Fn(&str, usize, &Request, &Scenario) -> Option<Reply> + Send + Sync;

/// A DRS server speaking this project's protocol for one object `obj1`, with fault hooks.
struct Scenario {
    port: OnceLock<u16>,
    body: Mutex<(Vec<u8>, String)>,
    header: Mutex<Vec<u8>>,
    hits: Mutex<std::collections::HashMap<&'static str, usize>>,
    fault: Box<Fault>,
}

impl Scenario {
    fn new(
        body: Vec<u8>,
        fault: impl Fn(&str, usize, &Request, &Scenario) -> Option<Reply> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            port: OnceLock::new(),
            body: Mutex::new((body, "\"etag-A\"".into())),
            header: Mutex::new(fake_header(1)),
            hits: Mutex::new(Default::default()),
            fault: Box::new(fault),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port.get().unwrap())
    }

    fn hits(&self, kind: &str) -> usize {
        self.hits.lock().unwrap().get(kind).copied().unwrap_or(0)
    }

    fn handle(&self, req: &Request) -> Reply {
        let path = req.path();
        let kind: &'static str = match path {
            "/ga4gh/drs/v1/objects/obj1" => "object",
            "/ga4gh/drs/v1/objects/obj1/access/crypt4gh-header" => "access-header",
            "/ga4gh/drs/v1/objects/obj1/access/crypt4gh-body" => "access-body",
            "/c4gh/v1/objects/obj1/header" => "header",
            "/c4gh/v1/objects/obj1/body" => "body",
            _ => "other",
        };
        let n = {
            let mut h = self.hits.lock().unwrap();
            let e = h.entry(kind).or_insert(0);
            *e += 1;
            *e - 1
        };
        if let Some(r) = (self.fault)(kind, n, req, self) {
            return r;
        }
        let (body, etag) = self.body.lock().unwrap().clone();
        match kind {
            "object" => Reply::json(200, &object_json("obj1", &body)),
            "access-header" => Reply::json(
                200,
                &serde_json::json!({"url": self.url("/c4gh/v1/objects/obj1/header")}),
            ),
            "access-body" => Reply::json(
                200,
                &serde_json::json!({"url": self.url("/c4gh/v1/objects/obj1/body")}),
            ),
            "header" => {
                if req.header("x-c4gh-public-key").is_none() {
                    return Reply::problem(400, "KEY_MISSING", "send X-C4GH-Public-Key");
                }
                Reply::status(200)
                    .header("Content-Type", "application/vnd.ga4gh.crypt4gh.header")
                    .header("X-C4GH-Content-ETag", &etag)
                    .body(self.header.lock().unwrap().clone())
            }
            "body" => serve_range(req, &body, &etag),
            _ => Reply::problem(404, "NOT_FOUND", "no such thing"),
        }
    }
}

async fn start(ca: &TestCa, sc: &Arc<Scenario>) -> FaultServer {
    let s2 = sc.clone();
    let server = FaultServer::start(ca, move |req, _| s2.handle(req)).await;
    sc.port.set(server.port()).unwrap();
    server
}

async fn fetch(
    client: &Client,
    server: &FaultServer,
    dest: &std::path::Path,
) -> drs::Result<drs::FetchReport> {
    let obj = client
        .locate_str(&format!("drs://localhost:{}/obj1", server.port()))
        .await?;
    let object = client.object(&obj).await?;
    client
        .fetch_to_file(&Crypt4ghDrs, &obj, &object, &key(), dest, None)
        .await
}

#[tokio::test]
async fn happy_path_writes_header_then_body_and_sends_key_and_token() {
    let ca = TestCa::new();
    let body = bytes(300_000, 1);
    let sc = Scenario::new(body.clone(), |_, _, _, _| None);
    let server = start(&ca, &sc).await;
    let client = Client::new(config(&ca)).unwrap();
    let dest = ca.dir.path().join("out.c4gh");
    let progress_calls = AtomicUsize::new(0);
    let last = Mutex::new(0u64);
    let cb = |p: drs::Progress| {
        progress_calls.fetch_add(1, Ordering::Relaxed);
        assert_eq!(p.total, Some(300_000));
        *last.lock().unwrap() = p.done;
    };
    let obj = client
        .locate_str(&format!("drs://localhost:{}/obj1", server.port()))
        .await
        .unwrap();
    assert_eq!(obj.authority(), format!("localhost:{}", server.port()));
    let object = client.object(&obj).await.unwrap();
    let report = client
        .fetch_to_file(&Crypt4ghDrs, &obj, &object, &key(), &dest, Some(&cb))
        .await
        .unwrap();
    let written = std::fs::read(&dest).unwrap();
    assert_eq!(&written[..124], &fake_header(1)[..]);
    assert_eq!(&written[124..], &body[..]);
    assert_eq!(report.header_bytes, 124);
    assert_eq!(report.body.bytes, 300_000);
    assert!(report.body.checksum_verified);
    assert_eq!(report.body.sha256, sha256_hex(&body));
    assert_eq!(report.body.resumes, 0);
    assert!(progress_calls.load(Ordering::Relaxed) > 0);
    assert_eq!(*last.lock().unwrap(), 300_000);
    assert!(!drs::part_path(&dest).exists());

    let reqs = server.requests();
    let header_req = reqs.iter().find(|r| r.path().ends_with("/header")).unwrap();
    let sent = header_req.header("x-c4gh-public-key").unwrap();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(sent)
        .unwrap();
    assert_eq!(String::from_utf8(pem).unwrap(), key().pem());
    for r in &reqs {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str()),
            "{} must carry the token (same origin)",
            r.target
        );
    }
}

#[tokio::test]
async fn dropped_connection_mid_body_resumes_with_range_and_if_range() {
    let ca = TestCa::new();
    let body = bytes(500_000, 2);
    let sc = Scenario::new(body.clone(), |kind, n, req, sc| {
        if kind == "body" && n < 2 {
            let (b, etag) = sc.body.lock().unwrap().clone();
            let mut r = serve_range(req, &b, &etag);
            r.send_only = Some(100_000);
            return Some(r);
        }
        None
    });
    let server = start(&ca, &sc).await;
    let client = Client::new(config(&ca)).unwrap();
    let dest = ca.dir.path().join("out.c4gh");
    let report = fetch(&client, &server, &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap()[124..], body[..]);
    assert_eq!(report.body.resumes, 2);
    let ranges: Vec<(Option<String>, Option<String>)> = server
        .requests()
        .iter()
        .filter(|r| r.path().ends_with("/body"))
        .map(|r| {
            (
                r.header("range").map(Into::into),
                r.header("if-range").map(Into::into),
            )
        })
        .collect();
    assert_eq!(
        ranges,
        vec![
            (None, None),
            (Some("bytes=100000-".into()), Some("\"etag-A\"".into())),
            (Some("bytes=200000-".into()), Some("\"etag-A\"".into())),
        ]
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let ca = TestCa::new();
    let sc = Scenario::new(bytes(1000, 3), |kind, n, _, _| {
        (kind == "object" && n < 2).then(|| Reply::problem(503, "UNAVAILABLE", "busy"))
    });
    let server = start(&ca, &sc).await;
    let client = Client::new(config(&ca)).unwrap();
    fetch(&client, &server, &ca.dir.path().join("o"))
        .await
        .unwrap();
    assert_eq!(sc.hits("object"), 3);
}

#[tokio::test]
async fn persistent_server_errors_give_up_after_max_attempts() {
    let ca = TestCa::new();
    let sc = Scenario::new(bytes(10, 3), |kind, _, _, _| {
        (kind == "object").then(|| Reply::problem(500, "INTERNAL", "internal error"))
    });
    let server = start(&ca, &sc).await;
    let client = Client::new(config(&ca)).unwrap();
    let started = Instant::now();
    let e = fetch(&client, &server, &ca.dir.path().join("o"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(500), "{e}");
    assert_eq!(sc.hits("object"), 4, "max_attempts = 4");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(e.to_string().contains("retries were exhausted"), "{e}");
}

#[tokio::test]
async fn accepted_with_retry_after_is_honoured_and_bounded() {
    let ca = TestCa::new();
    let sc = Scenario::new(bytes(10, 4), |kind, n, _, _| {
        (kind == "object" && n == 0).then(|| Reply::status(202).header("Retry-After", "1"))
    });
    let server = start(&ca, &sc).await;
    let client = Client::new(config(&ca)).unwrap();
    let started = Instant::now();
    fetch(&client, &server, &ca.dir.path().join("o"))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    assert_eq!(sc.hits("object"), 2);

    let always = Scenario::new(bytes(10, 4), |kind, _, _, _| {
        (kind == "object").then(|| Reply::status(202).header("Retry-After", "100"))
    });
    let server = start(&ca, &always).await;
    let started = Instant::now();
    let e = fetch(&client, &server, &ca.dir.path().join("o"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotReady { .. }), "{e}");
    // Retry-After 100 is capped to 2 s; the total wait to 5 s.
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    assert!(always.hits("object") >= 2);
}

#[tokio::test]
async fn oversized_header_is_refused_without_reading_it_all() {
    let ca = TestCa::new();
    for declared in [true, false] {
        let sc = Scenario::new(bytes(10, 5), move |kind, _, _, _| {
            (kind == "header").then(|| {
                let mut r = Reply::status(200).body(vec![b'x'; 32 << 20]);
                if !declared {
                    r.declared_len = Some(None);
                }
                r
            })
        });
        let server = start(&ca, &sc).await;
        let client = Client::new(config(&ca)).unwrap();
        let dest = ca.dir.path().join("o");
        let started = Instant::now();
        let e = fetch(&client, &server, &dest).await.unwrap_err();
        assert!(
            matches!(e, Error::HeaderTooLarge { limit: 65536, .. }),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(!dest.exists() && !drs::part_path(&dest).exists());
    }
}

#[tokio::test]
async fn garbage_instead_of_a_header_is_rejected() {
    let ca = TestCa::new();
    let sc = Scenario::new(bytes(10, 5), |kind, _, _, _| {
        (kind == "header").then(|| {
            Reply::status(200)
                .header("Content-Type", "text/html")
                .body(b"<html>login page</html>".to_vec())
        })
    });
    let server = start(&ca, &sc).await;
    let client = Client::new(config(&ca)).unwrap();
    let e = fetch(&client, &server, &ca.dir.path().join("o"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotAHeader { .. }), "{e}");
    assert!(e.to_string().contains("text/html"), "{e}");
}

#[tokio::test]
async fn wrong_content_length_is_detected() {
    let ca = TestCa::new();
    // Declares fewer bytes than the object's size: asked once more (a damaged response), then
    // the fetch starts over with a fresh object (its size may have been the damaged part), at
    // most MAX_BODY_RESTARTS times — bounded, and the error names the length.
    let sc = Scenario::new(bytes(1000, 6), |kind, _, _, sc| {
        (kind == "body").then(|| {
            let b = sc.body.lock().unwrap().0.clone();
            Reply::status(200)
                .header("ETag", "\"etag-A\"")
                .body(b[..900].to_vec())
        })
    });
    let server = start(&ca, &sc).await;
    let client = Client::new(config(&ca)).unwrap();
    let dest = ca.dir.path().join("o");
    let e = fetch(&client, &server, &dest).await.unwrap_err();
    assert!(matches!(e, Error::Length { expected: 1000, .. }), "{e}");
    assert!(e.to_string().contains("Content-Length 900"), "{e}");
    assert_eq!(
        sc.hits("body") as u32,
        (1 + drs::MAX_INVALID_BODY_RESPONSES) * (1 + drs::MAX_BODY_RESTARTS)
    );
    assert!(!dest.exists() && !drs::part_path(&dest).exists());

    // Declares the right length but always closes early: bounded resumes, then an error.
    let short = Scenario::new(bytes(1000, 6), |kind, _, req, sc| {
        (kind == "body").then(|| {
            let (b, etag) = sc.body.lock().unwrap().clone();
            let mut r = serve_range(req, &b, &etag);
            r.send_only = Some(0);
            r
        })
    });
    let server = start(&ca, &short).await;
    let e = fetch(&client, &server, &dest).await.unwrap_err();
    assert!(matches!(e, Error::Interrupted { at: 0, .. }), "{e}");
    assert!(
        e.to_string()
            .contains("gave up after 4 interrupted attempts"),
        "{e}"
    );
    assert_eq!(short.hits("body"), 4);

    // More bytes than the object's size (no Content-Length): stopped, not written on.
    let long = Scenario::new(bytes(1000, 6), |kind, _, _, _| {
        (kind == "body").then(|| {
            let mut r = Reply::status(200)
                .header("ETag", "\"etag-A\"")
                .body(vec![0; 5000]);
            r.declared_len = Some(None);
            r
        })
    });
    let server = start(&ca, &long).await;
    let e = fetch(&client, &server, &dest).await.unwrap_err();
    assert!(e.to_string().contains("more than 1000 bytes"), "{e}");
}

#[tokio::test]
async fn slow_loris_servers_are_bounded_by_timeouts() {
    let ca = TestCa::new();
    // Sends 10 bytes and stalls, on every attempt: each attempt makes a little progress, which
    // must not reset the attempt count.
    let stall = Scenario::new(bytes(100_000, 7), |kind, _, req, sc| {
        (kind == "body").then(|| {
            let (b, etag) = sc.body.lock().unwrap().clone();
            let mut r = serve_range(req, &b, &etag);
            r.stall_after = Some(10);
            r
        })
    });
    let server = start(&ca, &stall).await;
    let client = Client::new(config(&ca)).unwrap();
    let started = Instant::now();
    let e = fetch(&client, &server, &ca.dir.path().join("o"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Timeout {
                what: "body data (idle)",
                attempts: 4,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(stall.hits("body"), 4);
    // 4 passes × 400 ms idle + small backoffs.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Trickles the body: 100 bytes every 50 ms (2 kB/s) never trips the 400 ms idle timeout,
    // but stays below the 20 kB per 500 ms minimum rate.
    let slow = Scenario::new(bytes(1_000_000, 7), |kind, _, req, sc| {
        (kind == "body").then(|| {
            let (b, etag) = sc.body.lock().unwrap().clone();
            let mut r = serve_range(req, &b, &etag);
            r.trickle = Some(Duration::from_millis(50));
            r.trickle_chunk = 100;
            r
        })
    });
    let server = start(&ca, &slow).await;
    let started = Instant::now();
    let e = fetch(&client, &server, &ca.dir.path().join("o"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Timeout {
                what: "body data (below the minimum rate)",
                attempts: 4,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    // Never sends the response head.
    let mute = Scenario::new(bytes(10, 7), |kind, _, _, _| {
        (kind == "object").then(|| {
            let mut r = Reply::status(200);
            r.head_delay = Some(Duration::from_secs(3600));
            r
        })
    });
    let server = start(&ca, &mute).await;
    let started = Instant::now();
    let e = fetch(&client, &server, &ca.dir.path().join("o"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Timeout {
                what: "response headers",
                attempts: 4,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // Trickles a JSON object one byte every 100 ms: the whole-response deadline (2 s) stops
    // each attempt, and like any transient failure it is retried within the policy (4 attempts).
    let trickle = Scenario::new(bytes(10, 7), |kind, _, _, sc| {
        (kind == "object").then(|| {
            let b = sc.body.lock().unwrap().0.clone();
            let mut r = Reply::json(200, &object_json("obj1", &b));
            r.trickle = Some(Duration::from_millis(100));
            r.trickle_chunk = 1;
            r
        })
    });
    let server = start(&ca, &trickle).await;
    let started = Instant::now();
    let e = fetch(&client, &server, &ca.dir.path().join("o"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Timeout {
                what: "reading the response",
                attempts: 4,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn etag_change_between_attempts_restarts_with_a_new_header() {
    let ca = TestCa::new();
    let body_a = bytes(300_000, 8);
    let body_b = bytes(310_000, 9);
    let b2 = body_b.clone();
    let sc = Scenario::new(body_a, move |kind, n, req, sc| {
        if kind == "body" && n == 0 {
            // First pass: drop after 100 kB, then the archive replaces the file.
            let (b, etag) = sc.body.lock().unwrap().clone();
            let mut r = serve_range(req, &b, &etag);
            r.send_only = Some(100_000);
            *sc.body.lock().unwrap() = (b2.clone(), "\"etag-B\"".into());
            *sc.header.lock().unwrap() = fake_header(2);
            return Some(r);
        }
        None
    });
    let server = start(&ca, &sc).await;
    let client = Client::new(config(&ca)).unwrap();
    let dest = ca.dir.path().join("o");
    let report = fetch(&client, &server, &dest).await.unwrap();
    let written = std::fs::read(&dest).unwrap();
    assert_eq!(
        &written[..124],
        &fake_header(2)[..],
        "the header was fetched again"
    );
    assert_eq!(&written[124..], &body_b[..]);
    assert_eq!(report.restarts, 1);
    assert_eq!(report.object.size, 310_000, "the object was re-fetched");
    assert_eq!(sc.hits("header"), 2);
    // The resume carried If-Range "etag-A"; the server answered 200 with B.
    let second = &server
        .requests()
        .into_iter()
        .filter(|r| r.path().ends_with("/body"))
        .collect::<Vec<_>>()[1];
    assert_eq!(second.header("if-range"), Some("\"etag-A\""));
}

#[tokio::test]
async fn a_stream_cannot_restart_so_a_changed_body_is_an_error() {
    let ca = TestCa::new();
    let sc = Scenario::new(bytes(200_000, 10), |kind, n, req, sc| {
        if kind == "body" && n == 0 {
            let (b, etag) = sc.body.lock().unwrap().clone();
            let mut r = serve_range(req, &b, &etag);
            r.send_only = Some(50_000);
            sc.body.lock().unwrap().1 = "\"etag-C\"".into();
            return Some(r);
        }
        None
    });
    let server = start(&ca, &sc).await;
    let client = Client::new(config(&ca)).unwrap();
    let obj = client
        .locate_str(&format!("drs://localhost:{}/obj1", server.port()))
        .await
        .unwrap();
    let object = client.object(&obj).await.unwrap();
    let target = client
        .target(
            &obj,
            drs::flavour::Locator::AccessId("crypt4gh-body".into()),
        )
        .await
        .unwrap();
    let mut sink = Vec::new();
    let e = client
        .download_body(
            "obj1",
            &target,
            &BodyExpectation::for_object(&object, None),
            &mut sink,
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::BodyChanged { before, after, .. } if before == "\"etag-A\"" && after == "\"etag-C\""),
        "{e}"
    );
}

#[tokio::test]
async fn checksum_mismatch_fails_and_leaves_nothing() {
    let ca = TestCa::new();
    let sc = Scenario::new(bytes(5000, 11), |kind, _, req, sc| {
        (kind == "body").then(|| {
            let (mut b, etag) = sc.body.lock().unwrap().clone();
            b[4000] ^= 1;
            serve_range(req, &b, &etag)
        })
    });
    let server = start(&ca, &sc).await;
    let client = Client::new(config(&ca)).unwrap();
    let dest = ca.dir.path().join("o");
    let e = fetch(&client, &server, &dest).await.unwrap_err();
    assert!(matches!(e, Error::Checksum { .. }), "{e}");
    assert!(!dest.exists() && !drs::part_path(&dest).exists());
    // Fetched again from the start (fresh object, header, body) a bounded number of times.
    assert_eq!(sc.hits("body") as u32, 1 + drs::MAX_BODY_RESTARTS);
    assert_eq!(sc.hits("object") as u32, 1 + drs::MAX_BODY_RESTARTS);

    // Damaged once: the fetch that starts over succeeds with the right bytes.
    let once = Scenario::new(bytes(5000, 11), |kind, n, req, sc| {
        (kind == "body" && n == 0).then(|| {
            let (mut b, etag) = sc.body.lock().unwrap().clone();
            b[10] ^= 0x40;
            serve_range(req, &b, &etag)
        })
    });
    let server = start(&ca, &once).await;
    let report = fetch(&client, &server, &dest).await.unwrap();
    assert_eq!(report.restarts, 1);
    assert_eq!(&std::fs::read(&dest).unwrap()[124..], &bytes(5000, 11)[..]);
}

/// A connection cut inside a small response (DRS object JSON, access URL, header) and a
/// response that arrives whole but truncated are requested again, not reported.
#[tokio::test]
async fn small_responses_cut_or_garbled_are_fetched_again() {
    let ca = TestCa::new();
    let body = bytes(3000, 12);
    let sc = Scenario::new(body.clone(), |kind, n, _, sc| {
        let b = sc.body.lock().unwrap().0.clone();
        let cut = |mut r: Reply| {
            r.send_only = Some(10);
            r
        };
        match (kind, n) {
            ("object", 0) => Some(cut(Reply::json(200, &object_json("obj1", &b)))),
            ("object", 1) => Some(
                Reply::status(200)
                    .header("Content-Type", "application/json")
                    .body(br#"{"id": "obj1", "si"#.to_vec()),
            ),
            ("access-header", 0) => Some(cut(Reply::json(
                200,
                &serde_json::json!({"url": sc.url("/c4gh/v1/objects/obj1/header")}),
            ))),
            ("header", 0) => Some(cut(Reply::status(200).body(fake_header(1)))),
            ("header", 1) => Some(Reply::status(200).body(fake_header(1)[..50].to_vec())),
            _ => None,
        }
    });
    let server = start(&ca, &sc).await;
    let client = Client::new(config(&ca)).unwrap();
    let dest = ca.dir.path().join("o");
    let report = fetch(&client, &server, &dest).await.unwrap();
    assert_eq!(report.body.bytes, 3000);
    assert_eq!(sc.hits("object"), 3);
    assert_eq!(sc.hits("access-header"), 2);
    assert_eq!(sc.hits("header"), 3);

    // Garbage every time: asked MAX_INVALID_RESPONSES more times, then a specific error.
    let garbage = Scenario::new(body, |kind, _, _, _| {
        (kind == "object").then(|| {
            Reply::status(200)
                .header("Content-Type", "application/json")
                .body(b"<html>proxy error</html>".to_vec())
        })
    });
    let server = start(&ca, &garbage).await;
    let e = fetch(&client, &server, &dest).await.unwrap_err();
    assert!(matches!(e, Error::BadResponse { .. }), "{e}");
    assert!(e.to_string().contains("invalid JSON"), "{e}");
    assert_eq!(
        garbage.hits("object") as u32,
        1 + drs::MAX_INVALID_RESPONSES
    );
}

/// Every checksum type the object lists that the client can compute is verified; types it
/// cannot compute are reported as unverified.
#[tokio::test]
async fn every_computable_checksum_is_verified() {
    use sha2::Digest as _;
    fn hexed(d: &[u8]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }
    let ca = TestCa::new();
    let body = bytes(70_000, 13);
    let sums = serde_json::json!([
        {"type": "md5", "checksum": hexed(&md5::Md5::digest(&body))},
        {"type": "sha-512", "checksum": hexed(&sha2::Sha512::digest(&body))},
        {"type": "SHA-1", "checksum": hexed(&sha1::Sha1::digest(&body))},
        {"type": "crc32c", "checksum": "00000000"},
    ]);
    let listed = sums.clone();
    let sc = Scenario::new(body.clone(), move |kind, _, _, sc| {
        (kind == "object").then(|| {
            let mut o = object_json("obj1", &sc.body.lock().unwrap().0);
            o["checksums"] = listed.clone();
            Reply::json(200, &o)
        })
    });
    let server = start(&ca, &sc).await;
    let client = Client::new(config(&ca)).unwrap();
    let dest = ca.dir.path().join("o");
    let report = fetch(&client, &server, &dest).await.unwrap();
    use drs::ChecksumKind::{Md5, Sha1, Sha512};
    assert_eq!(report.body.verified, vec![Md5, Sha512, Sha1]);
    assert_eq!(report.body.unverified, vec!["crc32c".to_owned()]);

    // Only md5 listed, and it does not match: a checksum error naming md5.
    let wrong = Scenario::new(body, |kind, _, _, sc| {
        (kind == "object").then(|| {
            let mut o = object_json("obj1", &sc.body.lock().unwrap().0);
            o["checksums"] = serde_json::json!([{"type": "md5", "checksum": "0".repeat(32)}]);
            Reply::json(200, &o)
        })
    });
    let server = start(&ca, &wrong).await;
    let dest = ca.dir.path().join("o2");
    let e = fetch(&client, &server, &dest).await.unwrap_err();
    assert!(
        matches!(&e, Error::Checksum { kind, .. } if kind == "md5"),
        "{e}"
    );
    assert!(!dest.exists() && !drs::part_path(&dest).exists());
}

#[tokio::test]
async fn auth_and_not_found_errors_are_specific_and_not_retried() {
    let ca = TestCa::new();
    let cases = [
        (401, "UNAUTHENTICATED", "C4GH_TOKEN_FILE"),
        (403, "FORBIDDEN", "ask the data steward"),
        (404, "NOT_FOUND", "check the id"),
    ];
    for (status, code, hint) in cases {
        let sc = Scenario::new(bytes(10, 12), move |kind, _, _, _| {
            (kind == "object").then(|| Reply::problem(status, code, "server detail here"))
        });
        let server = start(&ca, &sc).await;
        let client = Client::new(config(&ca)).unwrap();
        let e = fetch(&client, &server, &ca.dir.path().join("o"))
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.status(), Some(status));
        assert!(
            msg.starts_with(&format!(
                "{status} from localhost:{} for object `obj1`",
                server.port()
            )),
            "{msg}"
        );
        assert!(msg.contains(hint), "{msg}");
        assert!(
            msg.contains(&format!("server said: {code}: server detail here")),
            "{msg}"
        );
        assert!(!msg.contains(TOKEN));
        assert_eq!(sc.hits("object"), 1, "{status} must not be retried");
    }
}

#[tokio::test]
async fn key_problems_carry_their_code() {
    let ca = TestCa::new();
    let sc = Scenario::new(bytes(10, 13), |kind, _, _, _| {
        (kind == "header").then(|| Reply::problem(400, "KEY_INVALID", "not a Crypt4GH key"))
    });
    let server = start(&ca, &sc).await;
    let client = Client::new(config(&ca)).unwrap();
    let e = fetch(&client, &server, &ca.dir.path().join("o"))
        .await
        .unwrap_err();
    assert_eq!(e.problem_code(), Some(ProblemCode::KeyInvalid));
    assert!(e.to_string().contains("header flavour"), "{e}");
}

#[tokio::test]
async fn credentials_go_only_to_the_object_origin() {
    let ca = TestCa::new();
    let body = bytes(20_000, 14);
    // A second origin standing in for a signed object-store URL.
    let store_body = body.clone();
    let store =
        FaultServer::start(&ca, move |req, _| serve_range(req, &store_body, "\"s3\"")).await;
    let store_url = store.url("/bucket/obj1?X-Amz-Signature=sekrit");
    let sc = Scenario::new(body.clone(), move |kind, _, _, _| {
        (kind == "access-body").then(|| {
            Reply::json(
                200,
                &serde_json::json!({"url": store_url, "headers": ["X-Store-Auth: store-cred"]}),
            )
        })
    });
    let server = start(&ca, &sc).await;
    let client = Client::new(config(&ca)).unwrap();
    let dest = ca.dir.path().join("o");
    // The header's content ETag ("etag-A") differs from the store's ETag: the client must notice
    // and restart; make the header agree by serving the store's ETag in the header.
    sc.body.lock().unwrap().1 = "\"s3\"".into();
    fetch(&client, &server, &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap()[124..], body[..]);
    let store_reqs = store.requests();
    assert_eq!(store_reqs.len(), 1);
    assert_eq!(
        store_reqs[0].header("authorization"),
        None,
        "token leaked to another origin"
    );
    assert_eq!(store_reqs[0].header("x-store-auth"), Some("store-cred"));
    assert!(store_reqs[0].target.contains("X-Amz-Signature=sekrit"));
}

#[tokio::test]
async fn a_lapsed_signed_url_is_renewed_whatever_the_store_calls_it() {
    // SeaweedFS answers a URL signed with temporary credentials that have expired with
    // `403 InvalidAccessKeyId` (the session is gone), AWS with `400 ExpiredToken`: once the
    // URL's own X-Amz-Date + X-Amz-Expires is over, both get a new URL. The same refusal of a
    // URL still within its lifetime is final.
    let ca = TestCa::new();
    let body = bytes(20_000, 31);
    let store_body = body.clone();
    let refused = "<Error><Code>InvalidAccessKeyId</Code><Message>The access key ID you provided \
                   does not exist in our records.</Message></Error>";
    let store = FaultServer::start(&ca, move |req, _| {
        if req.target.contains("X-Amz-Date=20000101T000000Z") || req.target.contains("live=no") {
            Reply::status(403).body(refused.as_bytes().to_vec())
        } else {
            serve_range(req, &store_body, "\"s3\"")
        }
    })
    .await;
    let lapsed = store.url("/b/o?X-Amz-Date=20000101T000000Z&X-Amz-Expires=60&X-Amz-Signature=s");
    let fresh = store.url("/b/o?X-Amz-Date=20990101T000000Z&X-Amz-Expires=60&X-Amz-Signature=t");
    let sc = Scenario::new(body.clone(), move |kind, n, _, _| {
        (kind == "access-body").then(|| {
            let url = if n == 0 { &lapsed } else { &fresh };
            Reply::json(200, &serde_json::json!({ "url": url }))
        })
    });
    sc.body.lock().unwrap().1 = "\"s3\"".into();
    let server = start(&ca, &sc).await;
    let client = Client::new(config(&ca)).unwrap();
    let dest = ca.dir.path().join("o");
    fetch(&client, &server, &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap()[124..], body[..]);
    assert_eq!(sc.hits("access-body"), 2, "the lapsed URL was renewed");

    let live = store.url("/b/o?X-Amz-Date=20990101T000000Z&X-Amz-Expires=60&live=no");
    let sc = Scenario::new(body.clone(), move |kind, _, _, _| {
        (kind == "access-body").then(|| Reply::json(200, &serde_json::json!({ "url": live })))
    });
    sc.body.lock().unwrap().1 = "\"s3\"".into();
    let server = start(&ca, &sc).await;
    let e = fetch(&client, &server, &ca.dir.path().join("o2"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("InvalidAccessKeyId"), "{e}");
    assert_eq!(
        sc.hits("access-body"),
        1,
        "a URL within its lifetime is not renewed"
    );
}

#[tokio::test]
async fn unreachable_signed_url_errors_do_not_leak_the_query() {
    let ca = TestCa::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let sc = Scenario::new(bytes(100, 22), move |kind, _, _, _| {
        (kind == "access-body").then(|| {
            Reply::json(
                200,
                &serde_json::json!({"url": format!("https://localhost:{port}/b?X-Amz-Signature=sekrit")}),
            )
        })
    });
    let server = start(&ca, &sc).await;
    let client = Client::new(config(&ca)).unwrap();
    let e = fetch(&client, &server, &ca.dir.path().join("o"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Transport { attempts: 4, .. }), "{e}");
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("sekrit"), "{shown}");
    assert!(shown.contains("?[query elided]"), "{shown}");
}

#[tokio::test]
async fn passports_are_posted_under_the_configured_field() {
    let ca = TestCa::new();
    let sc = Scenario::new(bytes(100, 15), |kind, _, req, _| {
        if matches!(kind, "object" | "access-header" | "access-body" | "header") {
            assert_eq!(req.method, "POST", "{kind}");
            let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(
                v["tokens"],
                serde_json::json!(["eyJ.passport.sig"]),
                "{kind}"
            );
            assert!(v.get("passports").is_none());
        }
        None
    });
    let server = start(&ca, &sc).await;
    let mut cfg = config(&ca);
    cfg.auth = Auth::None;
    cfg.passports = Some(Passports::new(vec!["eyJ.passport.sig".into()]).unwrap());
    cfg.passport_field = "tokens".into();
    let client = Client::new(cfg).unwrap();
    assert!(!format!("{client:?}").contains("passport.sig"));
    fetch(&client, &server, &ca.dir.path().join("o"))
        .await
        .unwrap();
    assert_eq!(sc.hits("header"), 1);
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_none())
    );
}

#[tokio::test]
async fn client_debug_never_shows_the_token() {
    let ca = TestCa::new();
    let client = Client::new(config(&ca)).unwrap();
    let dbg = format!("{client:?}");
    assert!(!dbg.contains(TOKEN), "{dbg}");
    assert!(dbg.contains("[secret elided]"));
}

#[tokio::test]
async fn token_file_is_read_per_request() {
    let ca = TestCa::new();
    let sc = Scenario::new(bytes(10, 16), |_, _, _, _| None);
    let server = start(&ca, &sc).await;
    let token_file = ca.dir.path().join("token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    let mut cfg = config(&ca);
    cfg.auth = Auth::TokenFile(token_file.clone());
    let client = Client::new(cfg).unwrap();
    let obj = client
        .locate_str(&format!("drs://localhost:{}/obj1", server.port()))
        .await
        .unwrap();
    client.object(&obj).await.unwrap();
    std::fs::write(&token_file, "rotated-token").unwrap();
    client.object(&obj).await.unwrap();
    let auths: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_owned())
        .collect();
    assert_eq!(auths, ["Bearer first-token", "Bearer rotated-token"]);
}

/// An SDA v2 error body as `sda-svc-3.4.3` sends it: problem+json with `errorCode`, no `code`.
fn sda_problem(status: u16, title: &str, detail: &str, error_code: Option<&str>) -> Reply {
    let mut v = serde_json::json!({
        "title": title, "status": status, "detail": detail, "correlationId": "c0ffee"
    });
    if let Some(code) = error_code {
        v["errorCode"] = code.into();
    }
    Reply::status(status)
        .header("Content-Type", "application/problem+json")
        .body(serde_json::to_vec(&v).unwrap())
}

/// The routes and answers of the real SDA v2 download service (docs/drs-crypt4gh.md §9.1; the
/// real service itself runs in tests/tests/sda.rs): the DRS object only at
/// `/objects/{datasetId}/{filePath}`, with one `https` access method and no access ids, headers at
/// `/files/{id}/header` (`SDA-Content-ETag`), bodies at `/files/{id}/content`, 403 for unknown
/// names, `errorCode` in problem bodies.
#[tokio::test]
async fn sda_v2_flavour_uses_sdas_routes() {
    let ca = TestCa::new();
    let body = bytes(70_000, 17);
    let b = body.clone();
    let server = FaultServer::start(&ca, move |req, _| match req.path() {
        "/objects/EGAD1/samples/a.c4gh" => Reply::json(200, &{
            let mut o = object_json("EGAF1", &b);
            o["self_uri"] = "drs://localhost/EGAF1".into();
            o["access_methods"] = serde_json::json!([{"type": "https", "access_url": {"url": "https://localhost/files/EGAF1/content"}}]);
            o
        }),
        "/files/EGAF1/header" => match req.header("x-c4gh-public-key") {
            Some(_) => Reply::status(200)
                .header("Content-Type", "application/octet-stream")
                .header("SDA-Content-ETag", "\"sda\"")
                .body(fake_header(3)),
            None => sda_problem(
                400,
                "Bad Request",
                "X-C4GH-Public-Key or Htsget-Context-Public-Key header is required",
                Some("KEY_MISSING"),
            ),
        },
        "/files/EGAF1/content" => serve_range(req, &b, "\"sda\""),
        p if p.starts_with("/objects/") || p.starts_with("/files/") => {
            sda_problem(403, "Forbidden", "access denied", None)
        }
        _ => Reply::status(404)
            .header("Content-Type", "text/plain")
            .body(b"404 page not found".to_vec()),
    })
    .await;
    let client = Client::new(config(&ca)).unwrap();
    let uri = format!("drs://localhost:{}/EGAD1/samples/a.c4gh", server.port());
    let opts = client.config().uri_options;
    let drs::uri::DrsUri::Hostname(h) = drs::uri::DrsUri::parse(&uri, &opts).unwrap() else {
        panic!("not a hostname URI")
    };
    let obj = SdaV2::object_ref(&h, &opts).unwrap();
    let object = client.object(&obj).await.unwrap();
    assert_eq!(object.id, "EGAF1");
    let dest = ca.dir.path().join("sda.c4gh");
    client
        .fetch_to_file(&SdaV2::default(), &obj, &object, &key(), &dest, None)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap()[124..], body[..]);
    assert_eq!(server.count(|r| r.path() == "/files/EGAF1/header"), 1);

    // This project's route does not exist on SDA.
    let e = client
        .object(
            &client
                .locate_str(&format!("drs://localhost:{}/EGAF1", server.port()))
                .await
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
    // SDA's `errorCode` is read as the problem code.
    let bare = KeyHeaderUrl {
        header_pattern: format!("https://localhost:{}/files/{{id}}/header", server.port()),
        key_header: "X-Not-The-Key".into(),
    };
    let e = client
        .fetch_header(&bare, &obj, &object, &key())
        .await
        .unwrap_err();
    assert_eq!(e.problem_code(), Some(ProblemCode::KeyMissing), "{e}");
    // An unknown path is a 403 without a code, as SDA sends it.
    let h2 = match drs::uri::DrsUri::parse(
        &format!("drs://localhost:{}/EGAD1/samples/nope.c4gh", server.port()),
        &opts,
    )
    .unwrap()
    {
        drs::uri::DrsUri::Hostname(h) => h,
        _ => panic!("not a hostname URI"),
    };
    let e = client
        .object(&SdaV2::object_ref(&h2, &opts).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403));
    assert!(e.to_string().contains("access denied"), "{e}");
}

#[tokio::test]
async fn key_header_url_flavour_sends_the_htsget_header() {
    let ca = TestCa::new();
    let body = bytes(1000, 18);
    let b = body.clone();
    let server = FaultServer::start(&ca, move |req, _| match req.path() {
        "/ga4gh/drs/v1/objects/o" => Reply::json(200, &{
            let mut o = object_json("o", &b);
            o["access_methods"] =
                serde_json::json!([{"type": "https", "access_url": {"url": "/raw/o"}}]);
            o
        }),
        "/hts/o/header" => {
            if req.header("x-c4gh-public-key").is_some() {
                return Reply::problem(400, "KEY_CONFLICT", "two keys");
            }
            match req.header("htsget-context-public-key") {
                Some(_) => Reply::status(200).body(fake_header(4)),
                None => Reply::problem(400, "KEY_MISSING", "none"),
            }
        }
        "/raw/o" => serve_range(req, &b, "\"r\""),
        _ => Reply::problem(404, "NOT_FOUND", "no"),
    })
    .await;
    let client = Client::new(config(&ca)).unwrap();
    let obj = client
        .locate_str(&format!("drs://localhost:{}/o", server.port()))
        .await
        .unwrap();
    let object = client.object(&obj).await.unwrap();
    let flavour = KeyHeaderUrl {
        header_pattern: server.url("/hts/{id}/header"),
        key_header: HTSGET_PUBLIC_KEY_HEADER.into(),
    };
    let dest = ca.dir.path().join("h.c4gh");
    let r = client
        .fetch_to_file(&flavour, &obj, &object, &key(), &dest, None)
        .await
        .unwrap();
    assert_eq!(r.body.etag.as_deref(), Some("\"r\""));
    assert_eq!(std::fs::read(&dest).unwrap()[..124], fake_header(4)[..]);
}

#[tokio::test]
async fn unsupported_object_says_which_flavour_to_use() {
    let ca = TestCa::new();
    let b = bytes(10, 19);
    let server = FaultServer::start(&ca, move |_, _| {
        let mut o = object_json("plain", &b);
        o["access_methods"] = serde_json::json!([{"type": "https", "access_url": {"url": "/x"}}]);
        Reply::json(200, &o)
    })
    .await;
    let client = Client::new(config(&ca)).unwrap();
    let obj = client
        .locate_str(&format!("drs://localhost:{}/plain", server.port()))
        .await
        .unwrap();
    let object = client.object(&obj).await.unwrap();
    let e = client
        .fetch_header(&Crypt4ghDrs, &obj, &object, &key())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
}

#[tokio::test]
async fn invalid_objects_are_rejected() {
    let ca = TestCa::new();
    let server = FaultServer::start(&ca, |req, _| match req.path() {
        "/ga4gh/drs/v1/objects/nosize" => Reply::json(
            200,
            &serde_json::json!({"id": "nosize", "self_uri": "drs://x/nosize", "created_time": "t", "checksums": []}),
        ),
        "/ga4gh/drs/v1/objects/nochecksum" => Reply::json(
            200,
            &serde_json::json!({"id": "nochecksum", "self_uri": "drs://x/y", "size": 1, "created_time": "t", "checksums": []}),
        ),
        _ => Reply::status(200).header("Content-Type", "application/json").body(b"{not json".to_vec()),
    })
    .await;
    let client = Client::new(config(&ca)).unwrap();
    let port = server.port();
    let get = |id: &'static str| {
        let client = &client;
        async move {
            let obj = client
                .locate_str(&format!("drs://localhost:{port}/{id}"))
                .await
                .unwrap();
            client.object(&obj).await.unwrap_err()
        }
    };
    let e = get("nosize").await;
    assert!(e.to_string().contains("missing field `size`"), "{e}");
    let e = get("nochecksum").await;
    assert!(matches!(e, Error::InvalidObject(_)), "{e}");
    let e = get("garbage").await;
    assert!(matches!(e, Error::BadResponse { .. }), "{e}");
}

#[tokio::test]
async fn untrusted_certificate_is_refused() {
    let ca = TestCa::new();
    let other = TestCa::new();
    let sc = Scenario::new(bytes(10, 20), |_, _, _, _| None);
    let server = start(&ca, &sc).await;
    let client = Client::new(config(&other)).unwrap();
    let e = fetch(&client, &server, &ca.dir.path().join("o"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e}");
    assert_eq!(sc.hits("object"), 0);
}

#[tokio::test]
async fn options_bulk_and_service_info() {
    let ca = TestCa::new();
    let b = bytes(10, 21);
    let server = FaultServer::start(&ca, move |req, _| match (req.method.as_str(), req.path()) {
        ("OPTIONS", "/ga4gh/drs/v1/objects/open") => Reply::status(204),
        ("OPTIONS", "/ga4gh/drs/v1/objects/locked") => Reply::json(
            200,
            &serde_json::json!({"supported_types": ["BearerAuth"], "bearer_auth_issuers": ["https://iss"]}),
        ),
        ("POST", "/ga4gh/drs/v1/objects") => {
            let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
            let ids = v["bulk_object_ids"].as_array().unwrap();
            if ids.len() > 2 {
                return Reply::problem(413, "BULK_TOO_LARGE", "at most 2");
            }
            Reply::json(200, &serde_json::json!({
                "summary": {"requested": ids.len(), "resolved": 1, "unresolved": ids.len() - 1},
                "resolved_drs_object": [object_json("a", &b)],
                "unresolved_drs_objects": [{"error_code": 404, "object_ids": ["zzz"]}]
            }))
        }
        ("POST", "/ga4gh/drs/v1/objects/access") => Reply::json(200, &serde_json::json!({
            "resolved_drs_object_access_urls": [{"drs_object_id": "a", "drs_access_id": "crypt4gh-body", "url": "https://x/a"}]
        })),
        ("GET", "/ga4gh/drs/v1/service-info") => Reply::json(200, &serde_json::json!({
            "id": "org.test", "name": "t", "version": "1",
            "type": {"group": "org.ga4gh", "artifact": "drs", "version": "1.5.0"},
            "drs": {"maxBulkRequestLength": 2},
            "crypt4gh": {"protocol_version": 1, "max_header_bytes": 65536}
        })),
        _ => Reply::problem(404, "NOT_FOUND", "no"),
    })
    .await;
    let client = Client::new(config(&ca)).unwrap();
    let open = client
        .locate_str(&format!("drs://localhost:{}/open", server.port()))
        .await
        .unwrap();
    assert_eq!(client.options(&open).await.unwrap(), None);
    let locked = client
        .locate_str(&format!("drs://localhost:{}/locked", server.port()))
        .await
        .unwrap();
    let auth = client.options(&locked).await.unwrap().unwrap();
    assert_eq!(auth.bearer_auth_issuers, ["https://iss"]);
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_none()),
        "OPTIONS is unauthenticated"
    );
    let base = open.api_base().unwrap();
    let r = client
        .bulk_objects(&base, &["a".into(), "zzz".into()])
        .await
        .unwrap();
    assert_eq!(r.resolved_drs_object[0].id, "a");
    assert_eq!(r.unresolved_drs_objects[0].object_ids, ["zzz"]);
    let e = client
        .bulk_objects(&base, &["a".into(), "b".into(), "c".into()])
        .await
        .unwrap_err();
    assert_eq!(e.problem_code(), Some(ProblemCode::BulkTooLarge), "{e}");
    let acc = client
        .bulk_access(
            &base,
            &[drs::types::BulkObjectAccessId {
                bulk_object_id: "a".into(),
                bulk_access_ids: vec!["crypt4gh-body".into()],
            }],
        )
        .await
        .unwrap();
    assert_eq!(acc.resolved_drs_object_access_urls[0].url, "https://x/a");
    let si = client.service_info(&base).await.unwrap();
    assert_eq!(si.drs.unwrap().max_bulk_request_length, Some(2));
    assert_eq!(si.crypt4gh.unwrap().public_key_header, "X-C4GH-Public-Key");
}

#[tokio::test]
async fn compact_identifiers_resolve_via_map_and_cached_resolvers() {
    let ca = TestCa::new();
    let resolver = FaultServer::start(&ca, |req, _| match req.path() {
        "/ega:EGAF%2F1" | "/ebi/ega:EGAF%2F1" => Reply::json(200, &serde_json::json!({
            "payload": {"resolvedResources": [
                {"compactIdentifierResolvedUrl": "https://drs.ebi.example/ga4gh/drs/v1/objects/EGAF%2F1", "providerCode": "ebi", "official": false},
                {"compactIdentifierResolvedUrl": "https://drs.main.example/ga4gh/drs/v1/objects/EGAF%2F1", "providerCode": "main", "official": true}
            ]}
        })),
        "/bad:1" => Reply::json(200, &serde_json::json!({
            "payload": {"resolvedResources": [{"compactIdentifierResolvedUrl": "http://insecure.example/o/1"}]}
        })),
        "/n2t:abc" => Reply::status(302).header("Location", "https://drs.n2t.example/ga4gh/drs/v1/objects/abc"),
        _ => Reply::json(404, &serde_json::json!({"errorMessage": "unknown prefix"})),
    })
    .await;
    let mut cfg = config(&ca);
    cfg.prefix_map = PrefixMap::from_json(
        r#"{"mapped": "https://drs.mapped.example/ga4gh/drs/v1/objects/{id}"}"#,
        &cfg.uri_options,
    )
    .unwrap();
    cfg.meta_resolver = Some(MetaResolver::identifiers_org(&resolver.url("/")).unwrap());
    let client = Client::new(cfg).unwrap();

    let o = client.locate_str("drs://mapped:X%201").await.unwrap();
    assert_eq!(
        o.url().as_str(),
        "https://drs.mapped.example/ga4gh/drs/v1/objects/X%201"
    );
    assert_eq!(
        resolver.requests().len(),
        0,
        "the prefix map needs no network"
    );

    let o = client.locate_str("drs://ega:EGAF%2F1").await.unwrap();
    assert_eq!(
        o.authority(),
        "drs.main.example",
        "the official resource is preferred"
    );
    assert_eq!(o.id(), "EGAF/1");
    let again = client.locate_str("drs://ega:EGAF%2F1").await.unwrap();
    assert_eq!(again, o);
    assert_eq!(
        resolver.requests().len(),
        1,
        "second lookup served from the cache"
    );

    let o = client.locate_str("drs://ebi/ega:EGAF%2F1").await.unwrap();
    assert_eq!(o.authority(), "drs.ebi.example");

    let e = client.locate_str("drs://nope:1").await.unwrap_err();
    assert!(matches!(e, Error::Resolve { .. }), "{e}");
    let e = client.locate_str("drs://bad:1").await.unwrap_err();
    assert!(e.to_string().contains("plain http"), "{e}");

    let mut cfg = config(&ca);
    cfg.meta_resolver = Some(MetaResolver::n2t(&resolver.url("/")).unwrap());
    let client = Client::new(cfg).unwrap();
    let o = client.locate_str("drs://n2t:abc").await.unwrap();
    assert_eq!(o.authority(), "drs.n2t.example");

    let client = Client::new(config(&ca)).unwrap();
    let e = client.locate_str("drs://ega:1").await.unwrap_err();
    assert!(e.to_string().contains("C4GH_PREFIX_MAP"), "{e}");
}

/// A verified partial body is continued from its offset with `Range`/`If-Range` (what a
/// resume across reruns builds on): the consumer receives only the rest, and the checksums
/// cover the whole body, prefix included.
#[tokio::test]
async fn a_verified_partial_body_is_continued_from_its_offset() {
    use drs::flavour::HeaderFlavour as _;
    let ca = TestCa::new();
    let body = bytes(200_000, 14);
    let sc = Scenario::new(body.clone(), |_, _, _, _| None);
    let server = start(&ca, &sc).await;
    let client = Client::new(config(&ca)).unwrap();
    let obj = client
        .locate_str(&format!("drs://localhost:{}/obj1", server.port()))
        .await
        .unwrap();
    let object = client.object(&obj).await.unwrap();
    let header = client
        .fetch_header(&Crypt4ghDrs, &obj, &object, &key())
        .await
        .unwrap();
    let target = client
        .target(&obj, Crypt4ghDrs.body_locator(&obj, &object).unwrap())
        .await
        .unwrap();
    let expect = BodyExpectation::for_object(&object, Some(&header));
    let resume = |prefix: &[u8]| {
        let mut hashes = drs::BodyHashes::new(&expect);
        hashes.update(prefix);
        drs::ResumeFrom {
            offset: prefix.len() as u64,
            etag: "\"etag-A\"".into(),
            hashes,
        }
    };
    let read_rest = |r: &mut drs::BodyReader| {
        assert_eq!(r.offset(), 120_000);
        let mut rest = Vec::new();
        r.copy_to(&mut rest)?;
        Ok::<_, std::io::Error>(rest)
    };
    let (report, rest) = client
        .download_body_blocking_from(
            obj.id(),
            &target,
            &expect,
            Some(resume(&body[..120_000])),
            None,
            read_rest,
        )
        .await
        .unwrap();
    assert_eq!(rest, &body[120_000..]);
    assert_eq!(report.bytes, 200_000);
    assert_eq!(report.sha256, sha256_hex(&body));
    assert_eq!(report.verified, vec![drs::ChecksumKind::Sha256]);
    let reqs = server.requests();
    let last = reqs
        .iter()
        .rev()
        .find(|r| r.path().ends_with("/body"))
        .unwrap();
    assert_eq!(last.header("range"), Some("bytes=120000-"));
    assert_eq!(last.header("if-range"), Some("\"etag-A\""));

    // A prefix that is not the body's: the whole-body checksum fails.
    let e = client
        .download_body_blocking_from(
            obj.id(),
            &target,
            &expect,
            Some(resume(&[0u8; 120_000])),
            None,
            read_rest,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, drs::PipelineError::Download(Error::Checksum { .. })),
        "{e}"
    );
}
