//! The async DRS client: configuration, the request engine (retries, `202 Retry-After`,
//! deadlines, bounded reads, credential rules) and the DRS 1.5 calls.
//!
//! Credential rule: the bearer token and passports go only to URLs with the same origin
//! (scheme, host, port) as the object URL they concern. URLs elsewhere (signed URLs, CDNs) get
//! only the headers their AccessURL lists.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::auth::{Auth, Passports};
use crate::error::{Error, Result, sanitize};
use crate::flavour::{ClientPublicKey, HeaderFlavour, Locator};
use crate::resolve::{
    IdentifiersOrgResponse, MetaResolver, ObjectRef, PrefixMap, ResolverCache, check_url, join,
};
use crate::types::{
    AccessUrl, Authorizations, BulkAccessRequest, BulkAccessResponse, BulkObjectAccessId,
    BulkObjectResponse, BulkOptionsResponse, CONTENT_ETAG_HEADER, DrsObject, HEADER_MEDIA_TYPE,
    Problem, ServiceInfo, redact_url,
};
use crate::uri::{DrsUri, ParseOptions};

/// Default cap on a Crypt4GH header (64 KiB).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// SDA v2's name for the header↔body ETag response header.
pub const SDA_CONTENT_ETAG_HEADER: &str = "SDA-Content-ETag";

/// How often a response that arrived whole but does not parse (truncated or garbled JSON, a
/// header that is not a Crypt4GH header) is requested again before it counts as the server's
/// answer.
pub const MAX_INVALID_RESPONSES: u32 = 2;

/// Retry policy for transient failures: connection errors and timeouts (also while reading a
/// response body), 408, 429, 5xx but 501, and bodies interrupted mid-way. Bounded by time: a
/// request — or a body download, counted from its last progress — is retried with exponential
/// backoff and full jitter until [`RetryPolicy::max_elapsed`] is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Optional cap on attempts per request, including the first (and per body stretch
    /// without progress). Default: no cap (`u32::MAX`), the time budget decides.
    pub max_attempts: u32,
    /// First backoff; doubled per attempt, with full jitter.
    pub initial_backoff: Duration,
    /// Cap on one backoff (also caps a server's `Retry-After` on 5xx/429).
    pub max_backoff: Duration,
    /// The retry budget: how long one request, or one body download without progress, keeps
    /// retrying. Default 5 minutes — long enough to ride out a server restart or a network
    /// blip in the middle of a multi-hour genomic download, short enough that a task whose
    /// server is gone fails within minutes.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: u32::MAX,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            max_elapsed: DEFAULT_RETRY_BUDGET,
        }
    }
}

/// Default [`RetryPolicy::max_elapsed`].
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(300);

/// Why the client retried (the label of a retry counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryReason {
    /// A retryable status (408, 429, 5xx but 501).
    Status,
    /// A connection or TLS failure before the response headers.
    Transport,
    /// No response headers within the deadline.
    Timeout,
    /// A connection failure or deadline while reading a small (JSON, header) response.
    ResponseBody,
    /// A response that arrived but does not parse or contradicts the request.
    InvalidResponse,
    /// A body download resumed after a dropped connection or a stall.
    BodyResume,
    /// A fetch started over because the body failed its length, checksum or segment check.
    Integrity,
}

impl RetryReason {
    /// A stable lower-case name (`status`, `transport`, `timeout`, `response_body`,
    /// `invalid_response`, `body_resume`, `integrity`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Transport => "transport",
            Self::Timeout => "timeout",
            Self::ResponseBody => "response_body",
            Self::InvalidResponse => "invalid_response",
            Self::BodyResume => "body_resume",
            Self::Integrity => "integrity",
        }
    }
}

/// Called once per retry, e.g. to count retries in metrics.
#[derive(Clone)]
pub struct RetryObserver(pub std::sync::Arc<dyn Fn(RetryReason) + Send + Sync>);

impl std::fmt::Debug for RetryObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryObserver")
    }
}

/// Retry bookkeeping of one logical request: when it started and how many attempts it made.
struct Budget {
    started: Instant,
    attempts: u32,
}

impl Budget {
    fn new() -> Self {
        Budget {
            started: Instant::now(),
            attempts: 0,
        }
    }

    /// How long to wait before the next attempt (`wait`, cut to what is left of the budget so
    /// that the last attempt happens when it runs out); `None` when the policy is spent.
    fn next_wait(&self, policy: &RetryPolicy, wait: Duration) -> Option<Duration> {
        policy.next_wait(self.started, self.attempts, wait)
    }
}

impl RetryPolicy {
    /// The wait before another attempt after `attempts` failures since `since`: `wait`, cut
    /// to what is left of [`RetryPolicy::max_elapsed`]; `None` when the budget or
    /// [`RetryPolicy::max_attempts`] is spent.
    pub fn next_wait(&self, since: Instant, attempts: u32, wait: Duration) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let left = self.max_elapsed.checked_sub(since.elapsed())?;
        (!left.is_zero()).then(|| wait.min(left))
    }

    /// Backoff before attempt `attempt + 1` (full jitter: uniform in `[0, min(cap, base·2^n)]`,
    /// at least 1 ms).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max_backoff);
        let ms = u64::try_from(exp.as_millis()).unwrap_or(u64::MAX).max(1);
        Duration::from_millis(rand::thread_rng().gen_range(1..=ms))
    }
}

/// Deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP + TLS connect.
    pub connect: Duration,
    /// Until response headers arrive, and for reading a whole small (JSON, header) response.
    pub response: Duration,
    /// Longest wait for the next bytes of a body (slow or stalled servers).
    pub idle: Duration,
    /// Total time spent waiting on `202 Accepted` for one request.
    pub max_accepted_wait: Duration,
    /// Cap on one `Retry-After` of a `202`.
    pub max_retry_after: Duration,
    /// Minimum body bytes per [`Timeouts::rate_window`]; a slower (trickling) server is treated
    /// as stalled. 0 disables the check.
    pub min_rate: u64,
    /// Window over which [`Timeouts::min_rate`] is measured.
    pub rate_window: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            response: Duration::from_secs(30),
            idle: Duration::from_secs(30),
            max_accepted_wait: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(60),
            min_rate: 1024,
            rate_window: Duration::from_secs(60),
        }
    }
}

/// Client configuration. `Default` is strict: https only, no port, no resolver, no credentials.
#[derive(Debug)]
pub struct ClientConfig {
    /// Development relaxations for URIs and URLs.
    pub uri_options: ParseOptions,
    /// PEM bundle of extra CA certificates trusted for DRS TLS (added to the built-in roots).
    pub ca_bundle: Option<PathBuf>,
    /// Bearer token source.
    pub auth: Auth,
    /// GA4GH passports; when set, object/access calls use POST.
    pub passports: Option<Passports>,
    /// JSON field carrying passports in POST bodies (`passports`; some servers want `tokens`).
    pub passport_field: String,
    /// Compact identifier prefix map.
    pub prefix_map: PrefixMap,
    /// Meta-resolver for prefixes not in the map; `None` = never call one.
    pub meta_resolver: Option<MetaResolver>,
    /// How long resolver answers are cached.
    pub resolver_cache_ttl: Duration,
    /// Retries.
    pub retry: RetryPolicy,
    /// Deadlines.
    pub timeouts: Timeouts,
    /// Largest Crypt4GH header accepted.
    pub max_header_bytes: usize,
    /// Largest JSON response accepted.
    pub max_json_bytes: usize,
    /// `User-Agent`.
    pub user_agent: String,
    /// Download bodies over HTTP/1.1 (a connection pool of its own) even where the server offers
    /// HTTP/2: one bulk stream per connection, without HTTP/2 framing and flow control. API
    /// calls and headers use HTTP/2 when offered either way, and so do bodies with less than
    /// 1 MiB left to fetch (they open no connection of their own).
    pub http1_bodies: bool,
    /// Told about every retry (metrics).
    pub on_retry: Option<RetryObserver>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            uri_options: ParseOptions::default(),
            ca_bundle: None,
            auth: Auth::None,
            passports: None,
            passport_field: "passports".into(),
            prefix_map: PrefixMap::default(),
            meta_resolver: None,
            resolver_cache_ttl: Duration::from_secs(24 * 3600),
            retry: RetryPolicy::default(),
            timeouts: Timeouts::default(),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_json_bytes: 16 << 20,
            user_agent: concat!("c4gh-drs-client/", env!("CARGO_PKG_VERSION")).into(),
            http1_bodies: true,
            on_retry: None,
        }
    }
}

/// A re-encrypted header and what ties it to its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedHeader {
    /// The Crypt4GH header bytes.
    pub bytes: Vec<u8>,
    /// ETag of the body this header belongs to (`X-C4GH-Content-ETag` / `SDA-Content-ETag`).
    pub content_etag: Option<String>,
}

/// A URL to download from, with the headers to send there.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL.
    pub url: Url,
    /// Extra headers (from an AccessURL), values marked sensitive.
    pub headers: HeaderMap,
    /// Whether the client's own credential is sent.
    pub credentials: bool,
    /// The object and access ID whose access endpoint gave this URL: a signed URL that expires
    /// mid-download is renewed there ([`Client::target`] again).
    pub(crate) renew: Option<(ObjectRef, String)>,
}

/// The DRS client. Cheap to share by reference across tasks.
#[derive(Debug)]
pub struct Client {
    pub(crate) http: reqwest::Client,
    no_redirect: reqwest::Client,
    bodies: reqwest::Client,
    pub(crate) cfg: ClientConfig,
    cache: ResolverCache,
}

/// One logical request, rebuilt for each attempt.
pub(crate) struct Req<'a> {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Zeroizing<Vec<u8>>>,
    pub(crate) credentials: bool,
    pub(crate) object: &'a str,
    pub(crate) no_redirect: bool,
    /// A body download (uses the body client, see [`ClientConfig::http1_bodies`]).
    pub(crate) body_download: bool,
}

impl<'a> Req<'a> {
    pub(crate) fn new(method: Method, url: Url, object: &'a str) -> Self {
        Self {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            credentials: false,
            object,
            no_redirect: false,
            body_download: false,
        }
    }
}

enum Attempt {
    Done(Response),
    Retry(RetryCause, Option<Duration>),
}

enum RetryCause {
    Status(Response),
    Transport(reqwest::Error),
    Timeout,
}

impl Client {
    /// Builds a client.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the CA bundle cannot be read or parsed.
    pub fn new(cfg: ClientConfig) -> Result<Self> {
        let mut roots = Vec::new();
        if let Some(path) = &cfg.ca_bundle {
            let pem = std::fs::read(path).map_err(|e| Error::Config {
                what: format!("cannot read CA bundle {}: {e}", path.display()),
            })?;
            roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::Config {
                what: format!("CA bundle {} is not PEM certificates: {e}", path.display()),
            })?;
            if roots.is_empty() {
                return Err(Error::Config {
                    what: format!("CA bundle {} holds no certificates", path.display()),
                });
            }
        }
        let build = |redirect: reqwest::redirect::Policy, http1: bool| {
            let mut b = reqwest::Client::builder()
                .use_rustls_tls()
                .https_only(!cfg.uri_options.allow_http)
                .connect_timeout(cfg.timeouts.connect)
                .redirect(redirect)
                .user_agent(cfg.user_agent.clone());
            if http1 {
                b = b.http1_only();
            }
            for r in &roots {
                b = b.add_root_certificate(r.clone());
            }
            b.build().map_err(|e| Error::Config {
                what: format!("cannot build the HTTP client: {e}"),
            })
        };
        Ok(Self {
            http: build(reqwest::redirect::Policy::limited(5), false)?,
            no_redirect: build(reqwest::redirect::Policy::none(), false)?,
            bodies: build(reqwest::redirect::Policy::limited(5), cfg.http1_bodies)?,
            cache: ResolverCache::new(cfg.resolver_cache_ttl, 4096),
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// Parses a `drs://` URI with the configured options and locates the object.
    ///
    /// # Errors
    ///
    /// As [`DrsUri::parse`] and [`Client::locate`].
    pub async fn locate_str(&self, uri: &str) -> Result<ObjectRef> {
        let parsed = DrsUri::parse(uri, &self.cfg.uri_options)?;
        self.locate(&parsed).await
    }

    /// The object URL of a URI: directly for hostname URIs; through the prefix map, else the
    /// meta-resolver (cached), for compact identifiers. Check [`ObjectRef::authority`] against
    /// your allowed hosts before fetching.
    ///
    /// # Errors
    ///
    /// [`Error::Resolve`] when no prefix-map entry or resolver answer exists, or the result is
    /// not an acceptable URL.
    pub async fn locate(&self, uri: &DrsUri) -> Result<ObjectRef> {
        let c = match uri {
            DrsUri::Hostname(h) => return ObjectRef::from_hostname(h),
            DrsUri::Compact(c) => c,
        };
        let key = c.to_string();
        let url = if let Some(pattern) = self.cfg.prefix_map.pattern_for(c) {
            c.expand(pattern)?
        } else if let Some(cached) = self.cache.get(&key) {
            cached
        } else if let Some(resolver) = &self.cfg.meta_resolver {
            let url = self.meta_resolve(resolver, c).await?;
            self.cache.put(key.clone(), url.clone());
            url
        } else {
            return Err(Error::Resolve {
                uri: key,
                detail: format!(
                    "no prefix map entry for `{}` and no resolver is enabled; add the prefix to \
                     the prefix map (C4GH_PREFIX_MAP)",
                    c.prefix()
                ),
            });
        };
        ObjectRef::from_url(&url, c.accession(), &key, &self.cfg.uri_options)
    }

    async fn meta_resolve(
        &self,
        resolver: &MetaResolver,
        c: &crate::uri::CompactUri,
    ) -> Result<String> {
        let uri = c.to_string();
        let url = resolver.request_url(c)?;
        let fail = |detail: String| Error::Resolve {
            uri: uri.clone(),
            detail,
        };
        match resolver {
            MetaResolver::IdentifiersOrg { .. } => {
                let mut req = Req::new(Method::GET, url, &uri);
                req.headers
                    .insert(ACCEPT, HeaderValue::from_static("application/json"));
                let resp = self.send(&req).await?;
                if resp.status() == StatusCode::NOT_FOUND {
                    return Err(fail(format!(
                        "identifiers.org does not know `{}`",
                        c.prefix()
                    )));
                }
                let resp = self.check(resp, &uri).await?;
                let body: IdentifiersOrgResponse = self.read_json(resp, &uri).await?;
                body.pick(c.provider()).map(str::to_owned).ok_or_else(|| {
                    fail(format!(
                        "identifiers.org returned no resource{}{}",
                        c.provider()
                            .map(|p| format!(" for provider `{p}`"))
                            .unwrap_or_default(),
                        body.error_message
                            .as_deref()
                            .map(|m| format!(": {}", sanitize(m, 200)))
                            .unwrap_or_default()
                    ))
                })
            }
            MetaResolver::N2t { .. } => {
                let mut req = Req::new(Method::GET, url.clone(), &uri);
                req.no_redirect = true;
                let resp = self.send(&req).await?;
                if !resp.status().is_redirection() {
                    return Err(fail(format!(
                        "n2t.net answered {} instead of a redirect",
                        resp.status().as_u16()
                    )));
                }
                let loc = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| fail("n2t.net redirect has no Location".into()))?;
                url.join(loc)
                    .map(|u| u.to_string())
                    .map_err(|e| fail(format!("bad Location from n2t.net: {e}")))
            }
        }
    }

    /// `GET {api_base}/service-info`.
    ///
    /// # Errors
    ///
    /// Status, transport and decoding errors.
    pub async fn service_info(&self, api_base: &Url) -> Result<ServiceInfo> {
        let url = join(api_base, &["service-info"]);
        let mut req = Req::new(Method::GET, url, "service-info");
        req.credentials = true;
        self.json(req).await
    }

    /// The DRS object: `POST` with passports when passports are configured, else `GET`.
    ///
    /// # Errors
    ///
    /// Status, transport, decoding and [`Error::InvalidObject`] errors.
    pub async fn object(&self, obj: &ObjectRef) -> Result<DrsObject> {
        if self.cfg.passports.is_some() {
            self.post_object(obj, false).await
        } else {
            self.get_object(obj).await
        }
    }

    /// `GET /objects/{id}`.
    ///
    /// # Errors
    ///
    /// As [`Client::object`].
    pub async fn get_object(&self, obj: &ObjectRef) -> Result<DrsObject> {
        let mut req = Req::new(Method::GET, obj.url().clone(), obj.id());
        req.credentials = true;
        self.json_checked(req, validate_object).await
    }

    /// `POST /objects/{id}` with `{expand, <passport field>: […]}`.
    ///
    /// # Errors
    ///
    /// As [`Client::object`].
    pub async fn post_object(&self, obj: &ObjectRef, expand: bool) -> Result<DrsObject> {
        let mut req = Req::new(Method::POST, obj.url().clone(), obj.id());
        req.credentials = true;
        req.body = Some(self.post_body(&[("expand", expand.into())])?);
        self.json_checked(req, validate_object).await
    }

    /// `GET|POST /objects/{id}/access/{access_id}` (POST when passports are configured).
    ///
    /// # Errors
    ///
    /// Status, transport and decoding errors.
    pub async fn access_url(&self, obj: &ObjectRef, access_id: &str) -> Result<AccessUrl> {
        let url = obj.access_endpoint(access_id);
        let mut req = if self.cfg.passports.is_some() {
            let mut r = Req::new(Method::POST, url, obj.id());
            r.body = Some(self.post_body(&[])?);
            r
        } else {
            Req::new(Method::GET, url, obj.id())
        };
        req.credentials = true;
        self.json(req).await
    }

    /// `OPTIONS /objects/{id}`: the authorisations needed, or `None` when the server does not
    /// describe them (204 or 405).
    ///
    /// # Errors
    ///
    /// Status, transport and decoding errors.
    pub async fn options(&self, obj: &ObjectRef) -> Result<Option<Authorizations>> {
        let req = Req::new(Method::OPTIONS, obj.url().clone(), obj.id());
        let resp = self.send(&req).await?;
        if matches!(resp.status().as_u16(), 204 | 405) {
            return Ok(None);
        }
        let resp = self.check(resp, obj.id()).await?;
        self.read_json(resp, obj.id()).await.map(Some)
    }

    /// `POST {api_base}/objects` for many ids.
    ///
    /// # Errors
    ///
    /// Status (413 when longer than the server's `maxBulkRequestLength`), transport, decoding.
    pub async fn bulk_objects(&self, api_base: &Url, ids: &[String]) -> Result<BulkObjectResponse> {
        let mut req = Req::new(Method::POST, join(api_base, &["objects"]), "(bulk)");
        req.credentials = true;
        req.body = Some(self.post_body(&[("bulk_object_ids", ids.into())])?);
        self.json(req).await
    }

    /// `POST {api_base}/objects/access`.
    ///
    /// # Errors
    ///
    /// As [`Client::bulk_objects`].
    pub async fn bulk_access(
        &self,
        api_base: &Url,
        ids: &[BulkObjectAccessId],
    ) -> Result<BulkAccessResponse> {
        let mut req = Req::new(
            Method::POST,
            join(api_base, &["objects", "access"]),
            "(bulk)",
        );
        req.credentials = true;
        let list = serde_json::to_value(BulkAccessRequest {
            bulk_object_access_ids: ids.to_vec(),
            passports: vec![],
        })
        .map_err(|e| Error::Config {
            what: format!("cannot encode bulk access request: {e}"),
        })?;
        let ids_value = list
            .get("bulk_object_access_ids")
            .cloned()
            .unwrap_or_default();
        req.body = Some(self.post_body(&[("bulk_object_access_ids", ids_value)])?);
        self.json(req).await
    }

    /// `OPTIONS {api_base}/objects` with `{bulk_object_ids}`.
    ///
    /// # Errors
    ///
    /// As [`Client::bulk_objects`].
    pub async fn bulk_options(
        &self,
        api_base: &Url,
        ids: &[String],
    ) -> Result<BulkOptionsResponse> {
        let mut req = Req::new(Method::OPTIONS, join(api_base, &["objects"]), "(bulk)");
        let body =
            serde_json::to_vec(&serde_json::json!({ "bulk_object_ids": ids })).map_err(|e| {
                Error::Config {
                    what: format!("cannot encode bulk request: {e}"),
                }
            })?;
        req.body = Some(Zeroizing::new(body));
        self.json(req).await
    }

    /// Turns a flavour's [`Locator`] into a concrete [`Target`], calling the access endpoint
    /// when needed.
    ///
    /// # Errors
    ///
    /// Access-call errors; [`Error::Resolve`] for unacceptable URLs.
    pub async fn target(&self, obj: &ObjectRef, loc: Locator) -> Result<Target> {
        let mut renew = None;
        let access = match loc {
            Locator::Url(url) => {
                self.check_target_url(obj, &url)?;
                return Ok(Target {
                    credentials: same_origin(&url, obj.url()),
                    url,
                    headers: HeaderMap::new(),
                    renew: None,
                });
            }
            Locator::AccessId(id) => {
                let access = self.access_url(obj, &id).await?;
                renew = Some((obj.clone(), id));
                access
            }
            Locator::AccessUrl(a) => a,
        };
        let url = obj.url().join(&access.url).map_err(|e| Error::Resolve {
            uri: obj.uri().to_owned(),
            detail: format!("access URL `{}` is invalid: {e}", redact_url(&access.url)),
        })?;
        self.check_target_url(obj, &url)?;
        let mut headers = HeaderMap::new();
        for h in &access.headers {
            let (name, value) = h.split_once(':').ok_or_else(|| Error::BadResponse {
                object: obj.id().to_owned(),
                url: redact_url(url.as_str()),
                detail: "an AccessURL header is not `Name: value`".into(),
            })?;
            let name = HeaderName::from_bytes(name.trim().as_bytes());
            let value = HeaderValue::from_str(value.trim());
            let (Ok(name), Ok(mut value)) = (name, value) else {
                return Err(Error::BadResponse {
                    object: obj.id().to_owned(),
                    url: redact_url(url.as_str()),
                    detail: "an AccessURL header has an invalid name or value".into(),
                });
            };
            value.set_sensitive(true);
            headers.append(name, value);
        }
        Ok(Target {
            credentials: headers.is_empty() && same_origin(&url, obj.url()),
            url,
            headers,
            renew,
        })
    }

    fn check_target_url(&self, obj: &ObjectRef, url: &Url) -> Result<()> {
        check_url(url, &self.cfg.uri_options).map_err(|detail| Error::Resolve {
            uri: obj.uri().to_owned(),
            detail,
        })
    }

    /// Fetches the header re-encrypted for `key`, capped at `max_header_bytes` (the excess is
    /// never read), and checks it starts like a Crypt4GH header.
    ///
    /// # Errors
    ///
    /// [`Error::HeaderTooLarge`], [`Error::NotAHeader`], status (`KEY_*` problem codes),
    /// transport and timeout errors.
    pub async fn fetch_header(
        &self,
        flavour: &dyn HeaderFlavour,
        obj: &ObjectRef,
        object: &DrsObject,
        key: &ClientPublicKey,
    ) -> Result<FetchedHeader> {
        let target = self
            .target(obj, flavour.header_locator(obj, object)?)
            .await?;
        let id = object.id.as_str();
        let post =
            target.credentials && flavour.passports_in_post() && self.cfg.passports.is_some();
        let mut req = Req::new(
            if post { Method::POST } else { Method::GET },
            target.url.clone(),
            id,
        );
        req.headers = target.headers;
        req.credentials = target.credentials;
        if post {
            req.body = Some(self.post_body(&[])?);
        }
        let key_name =
            HeaderName::from_bytes(flavour.key_header().as_bytes()).map_err(|_| Error::Config {
                what: format!("`{}` is not a valid header name", flavour.key_header()),
            })?;
        let key_value = HeaderValue::from_str(&key.header_value()).map_err(|_| Error::Config {
            what: "the public key cannot be sent in a header".into(),
        })?;
        req.headers.insert(key_name, key_value);
        req.headers.insert(
            ACCEPT,
            HeaderValue::from_static(concat!(
                "application/vnd.ga4gh.crypt4gh.header, ",
                "application/octet-stream;q=0.9, application/problem+json;q=0.5"
            )),
        );
        let limit = self.cfg.max_header_bytes;
        let req = &req;
        self.parsed(&target.url, move || async move {
            let small = self.read_small(req, limit).await?;
            let content_etag = [CONTENT_ETAG_HEADER, SDA_CONTENT_ETAG_HEADER]
                .iter()
                .find_map(|h| small.headers.get(*h))
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let media = small
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let Some(bytes) = small.bytes else {
                return Err(Error::HeaderTooLarge {
                    object: id.to_owned(),
                    url: small.url,
                    limit,
                });
            };
            check_header_bytes(&bytes).map_err(|detail| Error::NotAHeader {
                object: id.to_owned(),
                url: small.url.clone(),
                detail: if media.starts_with(HEADER_MEDIA_TYPE)
                    || media.starts_with("application/octet-stream")
                    || media.is_empty()
                {
                    detail
                } else {
                    format!("{detail} (Content-Type `{}`)", sanitize(media, 80))
                },
            })?;
            Ok(FetchedHeader {
                bytes,
                content_etag,
            })
        })
        .await
    }

    fn post_body(&self, extra: &[(&str, serde_json::Value)]) -> Result<Zeroizing<Vec<u8>>> {
        match &self.cfg.passports {
            Some(p) => p.body(&self.cfg.passport_field, extra),
            None => {
                let map: serde_json::Map<String, serde_json::Value> = extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect();
                serde_json::to_vec(&map)
                    .map(Zeroizing::new)
                    .map_err(|e| Error::Config {
                        what: format!("cannot encode request body: {e}"),
                    })
            }
        }
    }

    /// Sends, checks the status, and decodes a bounded JSON body (see [`Client::json_checked`]).
    async fn json<T: DeserializeOwned>(&self, req: Req<'_>) -> Result<T> {
        self.json_checked(req, |_| Ok(())).await
    }

    /// Sends, checks the status, decodes a bounded JSON body and runs `check` on it; a body cut
    /// off while reading is fetched again within the retry budget, one that does not decode or
    /// fails `check` up to [`MAX_INVALID_RESPONSES`] more times.
    async fn json_checked<T: DeserializeOwned>(
        &self,
        mut req: Req<'_>,
        check: impl Fn(&T) -> Result<()>,
    ) -> Result<T> {
        req.headers
            .insert(ACCEPT, HeaderValue::from_static("application/json"));
        if req.body.is_some() {
            req.headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let (req, check) = (&req, &check);
        self.parsed(&req.url, move || async move {
            let small = self.read_small(req, self.cfg.max_json_bytes).await?;
            let value = self.decode_json(small, req.object)?;
            check(&value)?;
            Ok(value)
        })
        .await
    }

    fn decode_json<T: DeserializeOwned>(&self, small: Small, object: &str) -> Result<T> {
        let bytes = small.bytes.ok_or_else(|| Error::BadResponse {
            object: object.to_owned(),
            url: small.url.clone(),
            detail: format!(
                "JSON response larger than {} bytes",
                self.cfg.max_json_bytes
            ),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::BadResponse {
            object: object.to_owned(),
            url: small.url,
            detail: format!(
                "invalid JSON: {}",
                scrub_queries(&sanitize(&e.to_string(), 200))
            ),
        })
    }

    async fn read_json<T: DeserializeOwned>(&self, resp: Response, object: &str) -> Result<T> {
        let url = redact_url(resp.url().as_str());
        let bytes = self
            .read_capped(resp, self.cfg.max_json_bytes, object)
            .await?
            .ok_or_else(|| Error::BadResponse {
                object: object.to_owned(),
                url: url.clone(),
                detail: format!(
                    "JSON response larger than {} bytes",
                    self.cfg.max_json_bytes
                ),
            })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::BadResponse {
            object: object.to_owned(),
            url,
            detail: format!(
                "invalid JSON: {}",
                scrub_queries(&sanitize(&e.to_string(), 200))
            ),
        })
    }

    /// Returns the response if successful; otherwise reads a bounded problem body into
    /// [`Error::Status`].
    pub(crate) async fn check(&self, resp: Response, object: &str) -> Result<Response> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.status_error(resp, object).await)
    }

    async fn status_error(&self, resp: Response, object: &str) -> Error {
        let status = resp.status().as_u16();
        let url = resp.url().clone();
        let is_json = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|m| m.contains("json"));
        let problem = if is_json {
            match tokio::time::timeout(self.cfg.timeouts.response, read_limited(resp, 64 * 1024))
                .await
            {
                Ok(Ok(Some(b))) => serde_json::from_slice::<Problem>(&b).ok(),
                _ => None,
            }
        } else {
            None
        };
        Error::status_error(status, &url, object, problem)
    }

    /// Reads a whole body of at most `cap` bytes within the response deadline. `Ok(None)` when
    /// the body is larger (by `Content-Length` before reading, or once `cap` is passed).
    pub(crate) async fn read_capped(
        &self,
        resp: Response,
        cap: usize,
        object: &str,
    ) -> Result<Option<Vec<u8>>> {
        let url = redact_url(resp.url().as_str());
        match tokio::time::timeout(self.cfg.timeouts.response, read_limited(resp, cap)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(Error::Transport {
                object: object.to_owned(),
                url,
                attempts: 1,
                source: source.without_url(),
            }),
            Err(_) => Err(Error::Timeout {
                object: object.to_owned(),
                url,
                what: "reading the response",
                after: self.cfg.timeouts.response,
                attempts: 1,
            }),
        }
    }

    /// Logs a retry and tells the [`RetryObserver`].
    pub(crate) fn retried(
        &self,
        reason: RetryReason,
        url: &str,
        attempt: u32,
        wait: Duration,
        detail: &str,
    ) {
        tracing::info!(
            %url,
            reason = reason.as_str(),
            attempt,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            detail = %sanitize(detail, 300),
            "transient failure; retrying"
        );
        self.record_retry(reason);
    }

    /// Counts a retry made by the caller (e.g. a fetch started over after a failed segment
    /// check) with the configured [`RetryObserver`].
    pub fn record_retry(&self, reason: RetryReason) {
        if let Some(observer) = &self.cfg.on_retry {
            (observer.0)(reason);
        }
    }

    /// Sends a request with retries (transient failures), `202 Accepted` waits and deadlines.
    /// Returns the first non-retryable response, successful or not.
    pub(crate) async fn send(&self, req: &Req<'_>) -> Result<Response> {
        self.send_within(req, &mut Budget::new()).await
    }

    /// [`Client::send`] drawing on `budget` (shared with the reads of the response).
    async fn send_within(&self, req: &Req<'_>, budget: &mut Budget) -> Result<Response> {
        let mut accepted_wait = Duration::ZERO;
        loop {
            budget.attempts += 1;
            let attempts = budget.attempts;
            let outcome = self.attempt(req).await?;
            let (cause, retry_after) = match outcome {
                Attempt::Done(resp) if resp.status() == StatusCode::ACCEPTED => {
                    let wait = retry_after(resp.headers())
                        .unwrap_or(Duration::from_secs(1))
                        .min(self.cfg.timeouts.max_retry_after);
                    if accepted_wait + wait > self.cfg.timeouts.max_accepted_wait {
                        return Err(Error::NotReady {
                            object: req.object.to_owned(),
                            url: redact_url(req.url.as_str()),
                            waited: accepted_wait,
                        });
                    }
                    tracing::debug!(url = %redact_url(req.url.as_str()), ?wait, "202 Accepted; waiting");
                    tokio::time::sleep(wait).await;
                    accepted_wait += wait;
                    budget.attempts -= 1;
                    continue;
                }
                Attempt::Done(resp) => return Ok(resp),
                Attempt::Retry(cause, after) => (cause, after),
            };
            let wait = retry_after
                .map(|d| d.min(self.cfg.retry.max_backoff))
                .unwrap_or_else(|| self.cfg.retry.backoff(attempts - 1));
            let Some(wait) = budget.next_wait(&self.cfg.retry, wait) else {
                return Err(match cause {
                    RetryCause::Status(resp) => self.status_error(resp, req.object).await,
                    RetryCause::Transport(source) => Error::Transport {
                        object: req.object.to_owned(),
                        url: redact_url(req.url.as_str()),
                        attempts,
                        source,
                    },
                    RetryCause::Timeout => Error::Timeout {
                        object: req.object.to_owned(),
                        url: redact_url(req.url.as_str()),
                        what: "response headers",
                        after: self.cfg.timeouts.response,
                        attempts,
                    },
                });
            };
            let (reason, detail) = match &cause {
                RetryCause::Status(resp) => (
                    RetryReason::Status,
                    format!("status {}", resp.status().as_u16()),
                ),
                RetryCause::Transport(e) => (RetryReason::Transport, error_chain(e)),
                RetryCause::Timeout => (RetryReason::Timeout, "no response headers".into()),
            };
            drop(cause);
            self.retried(
                reason,
                &redact_url(req.url.as_str()),
                attempts,
                wait,
                &detail,
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends `req`, checks the status and reads the whole body (at most `cap` bytes), retrying
    /// connection failures and deadlines while reading as well as before the headers, all
    /// within one retry budget.
    pub(crate) async fn read_small(&self, req: &Req<'_>, cap: usize) -> Result<Small> {
        let mut budget = Budget::new();
        loop {
            let resp = self.send_within(req, &mut budget).await?;
            let resp = self.check(resp, req.object).await?;
            let headers = resp.headers().clone();
            let url = redact_url(resp.url().as_str());
            let read = tokio::time::timeout(self.cfg.timeouts.response, read_limited(resp, cap));
            let failure = match read.await {
                Ok(Ok(bytes)) => {
                    return Ok(Small {
                        headers,
                        url,
                        bytes,
                    });
                }
                Ok(Err(source)) => Error::Transport {
                    object: req.object.to_owned(),
                    url,
                    attempts: budget.attempts,
                    source: source.without_url(),
                },
                Err(_) => Error::Timeout {
                    object: req.object.to_owned(),
                    url,
                    what: "reading the response",
                    after: self.cfg.timeouts.response,
                    attempts: budget.attempts,
                },
            };
            let backoff = self.cfg.retry.backoff(budget.attempts - 1);
            let Some(wait) = budget.next_wait(&self.cfg.retry, backoff) else {
                return Err(failure);
            };
            let detail = match &failure {
                Error::Transport { source, .. } => error_chain(source),
                other => other.to_string(),
            };
            self.retried(
                RetryReason::ResponseBody,
                &redact_url(req.url.as_str()),
                budget.attempts,
                wait,
                &detail,
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Runs `read` (which requests and parses one response) again when its response did not
    /// parse, at most [`MAX_INVALID_RESPONSES`] more times: a garbled or cut-off response is
    /// as often a bad hop as a broken server.
    async fn parsed<T, F, Fut>(&self, url: &Url, mut read: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut invalid = 0u32;
        loop {
            match read().await {
                Err(e) if is_invalid_response(&e) && invalid < MAX_INVALID_RESPONSES => {
                    invalid += 1;
                    let wait = self.cfg.retry.backoff(invalid - 1);
                    self.retried(
                        RetryReason::InvalidResponse,
                        &redact_url(url.as_str()),
                        invalid,
                        wait,
                        &e.to_string(),
                    );
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn attempt(&self, req: &Req<'_>) -> Result<Attempt> {
        let http = if req.no_redirect {
            &self.no_redirect
        } else if req.body_download {
            &self.bodies
        } else {
            &self.http
        };
        let mut rb = http
            .request(req.method.clone(), req.url.clone())
            .headers(req.headers.clone());
        if req.credentials
            && let Some(tok) = self.cfg.auth.current().await?
        {
            rb = rb.header(reqwest::header::AUTHORIZATION, tok.get().header_value()?);
        }
        if let Some(body) = &req.body {
            rb = rb.header(CONTENT_LENGTH, body.len()).body(body.to_vec());
        }
        match tokio::time::timeout(self.cfg.timeouts.response, rb.send()).await {
            Err(_) => Ok(Attempt::Retry(RetryCause::Timeout, None)),
            Ok(Err(e)) => {
                // reqwest's message would include the full URL, signed query string and all.
                let e = e.without_url();
                if is_transient(&e) {
                    Ok(Attempt::Retry(RetryCause::Transport(e), None))
                } else {
                    Err(Error::Transport {
                        object: req.object.to_owned(),
                        url: redact_url(req.url.as_str()),
                        attempts: 1,
                        source: e,
                    })
                }
            }
            Ok(Ok(resp)) => {
                let s = resp.status().as_u16();
                if s == 408 || s == 429 || (s >= 500 && s != 501) {
                    let after = retry_after(resp.headers());
                    Ok(Attempt::Retry(RetryCause::Status(resp), after))
                } else {
                    Ok(Attempt::Done(resp))
                }
            }
        }
    }
}

/// A whole small response.
pub(crate) struct Small {
    /// Its headers.
    pub(crate) headers: HeaderMap,
    /// The redacted URL it came from.
    pub(crate) url: String,
    /// The body; `None` when longer than the cap.
    pub(crate) bytes: Option<Vec<u8>>,
}

fn validate_object(o: &DrsObject) -> Result<()> {
    o.validate().map_err(Error::from)
}

/// Whether a response arrived but could not be used as what was asked for.
fn is_invalid_response(e: &Error) -> bool {
    matches!(
        e,
        Error::BadResponse { .. } | Error::NotAHeader { .. } | Error::InvalidObject(_)
    )
}

/// An error with its sources, for logs.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Reads at most `cap` bytes; `None` if the body is longer.
pub(crate) async fn read_limited(
    mut resp: Response,
    cap: usize,
) -> std::result::Result<Option<Vec<u8>>, reqwest::Error> {
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(cap).unwrap_or(u64::MAX))
    {
        return Ok(None);
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > cap {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf))
}

fn is_transient(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Checks the Crypt4GH header preamble: magic, version 1, at least one packet, and that the
/// declared packets exactly fill the bytes.
pub(crate) fn check_header_bytes(b: &[u8]) -> std::result::Result<(), String> {
    if b.len() < 16 || &b[..8] != b"crypt4gh" {
        return Err("missing the `crypt4gh` magic".into());
    }
    let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    if version != 1 {
        return Err(format!("unsupported Crypt4GH version {version}"));
    }
    let count = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
    if count == 0 {
        return Err("the header has no packets".into());
    }
    let mut pos = 16usize;
    for i in 0..count {
        let Some(len_bytes) = b.get(pos..pos + 4) else {
            return Err(format!("packet {i} of {count} is missing"));
        };
        let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len < 8 || pos.saturating_add(len) > b.len() {
            return Err(format!("packet {i} has an impossible length {len}"));
        }
        pos += len;
    }
    if pos != b.len() {
        return Err(format!(
            "{} trailing bytes after the packets",
            b.len() - pos
        ));
    }
    Ok(())
}

/// Removes query strings from URLs inside a message.
fn scrub_queries(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_query = false;
    let mut last_was_url = false;
    for (i, ch) in s.char_indices() {
        if ch == '?' && last_was_url {
            in_query = true;
            out.push_str("?[elided]");
            continue;
        }
        if in_query {
            if ch.is_whitespace() || ch == '"' || ch == '\'' || ch == '`' {
                in_query = false;
                last_was_url = false;
                out.push(ch);
            }
            continue;
        }
        if s[..i].ends_with("://") {
            last_was_url = true;
        }
        if ch.is_whitespace() || ch == '"' {
            last_was_url = false;
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_preamble_checks() {
        let mut good = b"crypt4gh".to_vec();
        good.extend(1u32.to_le_bytes());
        good.extend(1u32.to_le_bytes());
        good.extend(108u32.to_le_bytes());
        good.extend([0u8; 104]);
        assert_eq!(good.len(), 124);
        check_header_bytes(&good).unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "magic"),
            (b"<html>not a header at all</html>".to_vec(), "magic"),
            (
                [&good[..8], &2u32.to_le_bytes(), &good[12..]].concat(),
                "version 2",
            ),
            ([&good[..12], &0u32.to_le_bytes()].concat(), "no packets"),
            (
                [&good[..12], &2u32.to_le_bytes(), &good[16..]].concat(),
                "missing",
            ),
            ([&good[..], &[0u8]].concat(), "trailing"),
            (good[..100].to_vec(), "impossible length"),
            (
                [&good[..16], &u32::MAX.to_le_bytes(), &good[20..]].concat(),
                "impossible length",
            ),
        ];
        for (bytes, want) in cases {
            let e = check_header_bytes(&bytes).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    /// Random and mutated headers never panic the checker, and anything it accepts has a
    /// consistent packet layout.
    #[test]
    fn header_checker_survives_random_input() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut good = b"crypt4gh".to_vec();
        good.extend(1u32.to_le_bytes());
        good.extend(2u32.to_le_bytes());
        good.extend(108u32.to_le_bytes());
        good.extend([0u8; 104]);
        good.extend(84u32.to_le_bytes());
        good.extend([0u8; 80]);
        check_header_bytes(&good).unwrap();
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..b.len());
                b[i] = rng.r#gen();
            }
            b.truncate(rng.gen_range(0..=b.len()));
            if check_header_bytes(&b).is_ok() {
                assert_eq!(&b[..8], b"crypt4gh");
            }
        }
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(100));
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_str(&later).unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(95) && d <= Duration::from_secs(100),
            "{d:?}"
        );
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("soon"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let p = RetryPolicy::default();
        for attempt in 0..40 {
            let d = p.backoff(attempt);
            assert!(d >= Duration::from_millis(1) && d <= p.max_backoff, "{d:?}");
        }
        let draws: std::collections::HashSet<_> = (0..20).map(|_| p.backoff(5)).collect();
        assert!(draws.len() > 1, "jitter must vary the delay");
    }

    #[test]
    fn origins() {
        let u = |s| Url::parse(s).unwrap();
        assert!(same_origin(
            &u("https://h.org/a"),
            &u("https://h.org:443/b")
        ));
        assert!(!same_origin(
            &u("https://h.org/a"),
            &u("https://h.org:8443/a")
        ));
        assert!(!same_origin(&u("https://h.org/a"), &u("http://h.org/a")));
        assert!(!same_origin(
            &u("https://h.org/a"),
            &u("https://s3.h.org/a")
        ));
    }

    #[test]
    fn scrub_queries_removes_signed_parts() {
        assert_eq!(
            scrub_queries("invalid type: string \"https://s3/x?X-Amz-Signature=abc\", expected"),
            "invalid type: string \"https://s3/x?[elided]\", expected"
        );
        assert_eq!(scrub_queries("what? no url"), "what? no url");
    }

    #[test]
    fn bad_ca_bundle_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let cfg = ClientConfig {
            ca_bundle: Some(path.clone()),
            ..ClientConfig::default()
        };
        let e = Client::new(cfg).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        let cfg = ClientConfig {
            ca_bundle: Some(dir.path().join("missing.pem")),
            ..ClientConfig::default()
        };
        assert!(
            Client::new(cfg)
                .unwrap_err()
                .to_string()
                .contains("missing.pem")
        );
    }
}
