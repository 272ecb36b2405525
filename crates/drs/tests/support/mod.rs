//! Fault-injecting HTTPS servers for the client tests.
//!
//! Real sockets and real TLS (tokio-rustls, certificates from a `testkit::tls` CA the client trusts via
//! its CA-bundle option). The HTTP/1.1 responses are written by hand, one request per
//! connection, so a test can misbehave exactly: cut a body short, lie in `Content-Length`, stall,
//! trickle bytes, or delay the response head.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failure is a test failure

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A CA and a server certificate for `localhost` / `127.0.0.1`, with the CA PEM on disk.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
    acceptor: TlsAcceptor,
}

impl TestCa {
    pub fn new() -> Self {
        let ca = testkit::tls::TestCa::new("drs client test CA").unwrap();
        let leaf = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.cert_pem()).unwrap();
        let config = testkit::tls::server_config(&leaf).unwrap();
        Self {
            dir,
            ca_file,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        }
    }
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// A scripted response.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `Content-Length` to declare (default: body length; `Some(None)` = none, close-delimited).
    pub declared_len: Option<Option<usize>>,
    /// Send only this many body bytes, then close the connection.
    pub send_only: Option<usize>,
    /// Send this many body bytes, then hang with the connection open.
    pub stall_after: Option<usize>,
    /// Wait this long between body chunks of `trickle_chunk` bytes.
    pub trickle: Option<Duration>,
    pub trickle_chunk: usize,
    /// Wait before sending the status line.
    pub head_delay: Option<Duration>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    pub fn json(status: u16, v: &serde_json::Value) -> Self {
        Self::status(status)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(v).unwrap())
    }

    pub fn problem(status: u16, code: &str, detail: &str) -> Self {
        Self::status(status)
            .header("Content-Type", "application/problem+json")
            .body(
                serde_json::to_vec(&serde_json::json!({
                    "type": format!("https://c4gh.dev/problems/{code}"),
                    "title": code, "status": status, "detail": detail, "code": code,
                    "msg": detail, "status_code": status
                }))
                .unwrap(),
            )
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn body(mut self, b: Vec<u8>) -> Self {
        self.body = b;
        self
    }
}

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

/// A running server.
pub struct FaultServer {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultServer {
    pub async fn start(
        ca: &TestCa,
        handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let acceptor = ca.acceptor.clone();
        let reqs = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let handler = handler.clone();
                let reqs = reqs.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Some(req) = read_request(&mut tls).await else {
                        return;
                    };
                    let n = {
                        let mut r = reqs.lock().unwrap();
                        r.push(req.clone());
                        r.len() - 1
                    };
                    let reply = handler(&req, n);
                    let _ = write_reply(&mut tls, &req, reply).await;
                });
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self, pred: impl Fn(&Request) -> bool) -> usize {
        self.requests().iter().filter(|r| pred(r)).count()
    }
}

async fn read_request<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<Request> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 64 * 1024 || s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let text = String::from_utf8(buf).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

async fn write_reply<S: tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    req: &Request,
    r: Reply,
) -> std::io::Result<()> {
    if let Some(d) = r.head_delay {
        tokio::time::sleep(d).await;
    }
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", r.status);
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match r.declared_len {
        Some(Some(n)) => head.push_str(&format!("Content-Length: {n}\r\n")),
        Some(None) => {}
        None => head.push_str(&format!("Content-Length: {}\r\n", r.body.len())),
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await?;
    if req.method == "HEAD" {
        return s.shutdown().await;
    }
    let limit = r
        .send_only
        .or(r.stall_after)
        .unwrap_or(r.body.len())
        .min(r.body.len());
    let body = &r.body[..limit];
    match r.trickle {
        Some(d) => {
            for c in body.chunks(r.trickle_chunk.max(1)) {
                s.write_all(c).await?;
                s.flush().await?;
                tokio::time::sleep(d).await;
            }
        }
        None => s.write_all(body).await?,
    }
    s.flush().await?;
    if r.stall_after.is_some() {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    s.shutdown().await
}

/// A full or ranged reply for `body` with a strong ETag, honouring `Range` and `If-Range`.
pub fn serve_range(req: &Request, body: &[u8], etag: &str) -> Reply {
    let range = req.header("range").and_then(|r| r.strip_prefix("bytes="));
    let if_range_ok = req.header("if-range").is_none_or(|t| t == etag);
    match range {
        Some(r) if if_range_ok => {
            let start: usize = r.trim_end_matches('-').parse().unwrap();
            if start >= body.len() {
                return Reply::status(416)
                    .header("Content-Range", &format!("bytes */{}", body.len()));
            }
            Reply::status(206)
                .header("ETag", etag)
                .header("Accept-Ranges", "bytes")
                .header(
                    "Content-Range",
                    &format!("bytes {start}-{}/{}", body.len() - 1, body.len()),
                )
                .body(body[start..].to_vec())
        }
        _ => Reply::status(200)
            .header("ETag", etag)
            .header("Accept-Ranges", "bytes")
            .body(body.to_vec()),
    }
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x & 0xff) as u8
        })
        .collect()
}

pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A structurally valid one-recipient Crypt4GH header (124 bytes) filled with `fill`.
pub fn fake_header(fill: u8) -> Vec<u8> {
    let mut h = b"crypt4gh".to_vec();
    h.extend(1u32.to_le_bytes());
    h.extend(1u32.to_le_bytes());
    h.extend(108u32.to_le_bytes());
    h.extend(vec![fill; 104]);
    h
}

/// A DRS object JSON for `body`, with this project's two access methods.
pub fn object_json(id: &str, body: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "self_uri": format!("drs://localhost/{id}"),
        "size": body.len(),
        "created_time": "2024-01-01T00:00:00Z",
        "checksums": [{"type": "sha-256", "checksum": sha256_hex(body)}],
        "access_methods": [
            {"type": "https", "access_id": "crypt4gh-header"},
            {"type": "https", "access_id": "crypt4gh-body"}
        ]
    })
}
