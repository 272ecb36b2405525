//! A small HTTPS DRS server for fault injection: it speaks the same protocol as
//! `c4gh-drs-server` (DRS object, `crypt4gh-header` / `crypt4gh-body` access methods, header
//! re-encrypted for `X-C4GH-Public-Key`, body with Range/ETag/If-Range) over real TLS on loopback,
//! and misbehaves on request: error statuses, 5xx or 202 Retry-After before succeeding, a
//! tampered or wrongly keyed header, a wrong checksum or checksum type, a truncated or damaged
//! body, a connection dropped in the middle of the body.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use c4gh::{PublicKey, SecretKey};
use drs::types::{AccessMethod, AccessType, AccessUrl, Checksum, DrsObject, ProblemCode};
use sha2::{Digest, Sha256};

/// What one object does wrong.
#[derive(Debug, Clone, Default)]
pub struct Fault {
    /// Answer the object request with this status (401, 403, 404 …), always.
    pub object_status: Option<u16>,
    /// Answer the object request with 503 this many times first.
    pub object_5xx: usize,
    /// Answer the object request with 202 + `Retry-After: 1` this many times first.
    pub object_202: usize,
    /// Flip a byte in the re-encrypted header's encrypted payload.
    pub tamper_header: bool,
    /// Re-encrypt the header for a key other than the requester's.
    pub wrong_key_header: bool,
    /// Announce a wrong SHA-256 for the body.
    pub wrong_checksum: bool,
    /// Serve a body this many bytes shorter than announced (consistently).
    pub truncate_body: Option<usize>,
    /// Drop the connection after this many body bytes, this many times.
    pub drop_body_after: Option<(usize, usize)>,
    /// List the body's checksum under this type instead of `sha-256` (e.g. a garbled one).
    pub checksum_type: Option<String>,
    /// Flip a bit of the body byte at this offset in the first this-many body responses.
    pub corrupt_body: Option<(usize, usize)>,
}

struct Object {
    header: Vec<u8>,
    body: Vec<u8>,
    fault: Fault,
}

#[derive(Default)]
struct Counters {
    object_requests: usize,
    body_requests: usize,
    ranges: Vec<String>,
}

struct AppState {
    base: String,
    key: SecretKey,
    objects: Mutex<HashMap<String, Object>>,
    counters: Mutex<HashMap<String, Counters>>,
}

/// The running server.
pub struct FaultyServer {
    addr: SocketAddr,
    ca_pem: String,
    state: Arc<AppState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultyServer {
    /// Starts on `127.0.0.1:0` with a fresh CA and server key.
    pub async fn start() -> Self {
        let ca = testkit::tls::TestCa::new("faulty DRS test CA").unwrap();
        let leaf = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
        let mut tls = testkit::tls::server_config(&leaf).unwrap();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(AppState {
            base: format!("https://{addr}"),
            key: SecretKey::generate(),
            objects: Mutex::new(HashMap::new()),
            counters: Mutex::new(HashMap::new()),
        });
        let router = router(Arc::clone(&state));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(router);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        FaultyServer {
            addr,
            ca_pem: ca.cert_pem(),
            state,
            task,
        }
    }

    /// Adds object `id` holding `plaintext`, encrypted for the server key, with `fault`.
    pub fn add(&self, id: &str, plaintext: &[u8], fault: Fault) {
        let mut file = Vec::new();
        let writer = SecretKey::generate();
        c4gh::encrypt(
            &mut &plaintext[..],
            &mut file,
            &writer,
            &[self.state.key.public_key()],
        )
        .unwrap();
        let header_len = c4gh::header::read_header(&mut &file[..]).unwrap().len();
        let body = file.split_off(header_len);
        self.state.objects.lock().unwrap().insert(
            id.to_owned(),
            Object {
                header: file,
                body,
                fault,
            },
        );
    }

    /// `drs://127.0.0.1:PORT/{id}`.
    pub fn drs_uri(&self, id: &str) -> String {
        format!("drs://{}/{id}", self.addr)
    }

    /// `127.0.0.1:PORT`.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// The CA certificate to trust (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// How many times the object endpoint of `id` was requested.
    pub fn object_requests(&self, id: &str) -> usize {
        self.counters(id, |c| c.object_requests)
    }

    /// How many body requests `id` got and the `Range` headers they carried.
    pub fn body_requests(&self, id: &str) -> (usize, Vec<String>) {
        self.counters(id, |c| (c.body_requests, c.ranges.clone()))
    }

    fn counters<T>(&self, id: &str, f: impl FnOnce(&Counters) -> T) -> T {
        let counters = self.state.counters.lock().unwrap();
        f(counters.get(id).unwrap_or(&Counters::default()))
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/ga4gh/drs/v1/objects/{id}", get(object))
        .route("/ga4gh/drs/v1/objects/{id}/access/{access}", get(access))
        .route("/c4gh/v1/objects/{id}/header", get(header_bytes))
        .route("/c4gh/v1/objects/{id}/body", get(body))
        .with_state(state)
}

fn problem(status: u16, code: ProblemCode, detail: &str) -> Response {
    let body = serde_json::to_vec(&drs::types::Problem::new(status, code, detail)).unwrap();
    let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

fn code_for(status: u16) -> ProblemCode {
    match status {
        401 => ProblemCode::Unauthenticated,
        403 => ProblemCode::Forbidden,
        404 => ProblemCode::NotFound,
        _ => ProblemCode::BadRequest,
    }
}

async fn object(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let seen = {
        let mut counters = state.counters.lock().unwrap();
        let c = counters.entry(id.clone()).or_default();
        c.object_requests += 1;
        c.object_requests
    };
    let objects = state.objects.lock().unwrap();
    let Some(obj) = objects.get(&id) else {
        return problem(404, ProblemCode::NotFound, &format!("no object {id}"));
    };
    let fault = &obj.fault;
    if let Some(status) = fault.object_status {
        return problem(
            status,
            code_for(status),
            &format!("injected {status} for {id}"),
        );
    }
    if seen <= fault.object_5xx {
        return problem(503, ProblemCode::BadRequest, "injected 503");
    }
    if seen <= fault.object_5xx + fault.object_202 {
        let mut response = StatusCode::ACCEPTED.into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    let served = obj.body.len() - fault.truncate_body.unwrap_or(0);
    let mut sha = hex(&Sha256::digest(&obj.body[..served]));
    if fault.wrong_checksum {
        sha = hex(&Sha256::digest(b"something else"));
    }
    let method = |access_id: &str| AccessMethod {
        r#type: AccessType::Https,
        access_url: None,
        access_id: Some(access_id.to_owned()),
        cloud: None,
        region: None,
        available: Some(true),
        authorizations: None,
    };
    let object = DrsObject {
        id: id.clone(),
        name: Some(format!("{id}.bin")),
        self_uri: format!("drs://{}/{id}", state.base.trim_start_matches("https://")),
        size: obj.body.len() as u64,
        created_time: "2026-01-01T00:00:00Z".into(),
        updated_time: None,
        version: None,
        mime_type: None,
        checksums: vec![Checksum {
            checksum: sha,
            r#type: fault
                .checksum_type
                .clone()
                .unwrap_or_else(|| "sha-256".into()),
        }],
        access_methods: vec![
            method(drs::types::HEADER_ACCESS_ID),
            method(drs::types::BODY_ACCESS_ID),
        ],
        contents: Vec::new(),
        description: None,
        aliases: Vec::new(),
    };
    axum::Json(object).into_response()
}

async fn access(
    State(state): State<Arc<AppState>>,
    Path((id, access)): Path<(String, String)>,
) -> Response {
    let path = match access.as_str() {
        drs::types::HEADER_ACCESS_ID => "header",
        drs::types::BODY_ACCESS_ID => "body",
        _ => return problem(404, ProblemCode::NotFound, "no such access id"),
    };
    axum::Json(AccessUrl {
        url: format!("{}/c4gh/v1/objects/{id}/{path}", state.base),
        headers: Vec::new(),
    })
    .into_response()
}

fn requester_key(headers: &HeaderMap) -> Option<PublicKey> {
    let value = headers.get(drs::types::PUBLIC_KEY_HEADER)?.to_str().ok()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()?;
    let text = String::from_utf8(decoded.clone()).ok();
    match text.as_deref().and_then(|t| PublicKey::from_pem(t).ok()) {
        Some(key) => Some(key),
        None => <[u8; 32]>::try_from(decoded.as_slice())
            .ok()
            .map(PublicKey::from_bytes),
    }
}

async fn header_bytes(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(recipient) = requester_key(&headers) else {
        return problem(400, ProblemCode::KeyMissing, "send X-C4GH-Public-Key");
    };
    let objects = state.objects.lock().unwrap();
    let Some(obj) = objects.get(&id) else {
        return problem(404, ProblemCode::NotFound, "no object");
    };
    let recipient = if obj.fault.wrong_key_header {
        SecretKey::generate().public_key()
    } else {
        recipient
    };
    let mut bytes = c4gh::header::reencrypt(&obj.header, &state.key, &[recipient], true).unwrap();
    if obj.fault.tamper_header {
        let last = bytes.len() - 20;
        bytes[last] ^= 0x55;
    }
    let served = &obj.body[..obj.body.len() - obj.fault.truncate_body.unwrap_or(0)];
    let etag = format!("\"{}\"", hex(&Sha256::digest(served)));
    let mut response = bytes.into_response();
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(drs::types::HEADER_MEDIA_TYPE),
    );
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out.insert(
        drs::types::CONTENT_ETAG_HEADER,
        HeaderValue::try_from(etag).unwrap(),
    );
    response
}

async fn body(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let attempt = {
        let mut counters = state.counters.lock().unwrap();
        let c = counters.entry(id.clone()).or_default();
        c.body_requests += 1;
        if let Some(r) = &range {
            c.ranges.push(r.clone());
        }
        c.body_requests
    };
    let objects = state.objects.lock().unwrap();
    let Some(obj) = objects.get(&id) else {
        return problem(404, ProblemCode::NotFound, "no object");
    };
    let served = &obj.body[..obj.body.len() - obj.fault.truncate_body.unwrap_or(0)];
    let etag = format!("\"{}\"", hex(&Sha256::digest(served)));
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0)
        .min(served.len());
    let mut chunk = served[start..].to_vec();
    if let Some((at, times)) = obj.fault.corrupt_body
        && attempt <= times
        && at >= start
        && at - start < chunk.len()
    {
        chunk[at - start] ^= 0x10;
    }
    let total = served.len();
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let drop_after = obj
        .fault
        .drop_body_after
        .filter(|(_, times)| attempt <= *times)
        .map(|(bytes, _)| bytes);
    let len = chunk.len();
    let stream_body = match drop_after {
        Some(cut) if cut < len => {
            use futures_util::StreamExt;
            let first = bytes::Bytes::from(chunk[..cut].to_vec());
            let head = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(first)]);
            // Let the first part reach the client before the connection breaks.
            let fail = futures_util::stream::once(async {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected drop",
                ))
            });
            Body::from_stream(head.chain(fail))
        }
        _ => Body::from_stream(futures_util::stream::iter(vec![Ok::<_, Infallible>(
            bytes::Bytes::from(chunk),
        )])),
    };
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, len.to_string())
        .header(header::ETAG, etag)
        .header(header::ACCEPT_RANGES, "bytes");
    if range.is_some() {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{total}", total.saturating_sub(1)),
        );
    }
    response.body(stream_body).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
