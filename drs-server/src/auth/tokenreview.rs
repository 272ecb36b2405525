//! Kubernetes ServiceAccount tokens checked by the cluster's TokenReview API, so a token dies
//! with its pod.
//!
//! A projected ServiceAccount token is bound to its pod: once the pod is deleted, the apiserver
//! refuses it, although its signature and `exp` are still good (which is all the JWKS mode of
//! [`super::jwt`] can check). In this mode the server sends each such token to
//! `POST {api_server}/apis/authentication.k8s.io/v1/tokenreviews` with the configured audiences
//! and trusts the answer: the username (`system:serviceaccount:NS:NAME`, the subject reader rules
//! match) and, from the review's `extra`, the pod's name and UID
//! (`authentication.kubernetes.io/pod-name`, `…/pod-uid`). The server authenticates to the
//! apiserver with its own ServiceAccount token (re-read from its file on every review, since the
//! kubelet rotates it), which needs the `system:auth-delegator` ClusterRole.
//!
//! Answers are cached by the token's SHA-256 for [`TokenReviewConfig::cache_ttl`] (default 10 s)
//! and never past the token's `exp`; so a deleted pod's token is refused at most that long after
//! the deletion, plus the apiserver's own cache of successful token authentications (10 s in
//! kube-apiserver; measured: 10.4 s with a 2 s cache here). Refusals are cached the same way (a replayed dead token does not reach the
//! apiserver more than once per TTL); failures to reach the apiserver are not. The cache holds at
//! most [`TokenReviewConfig::max_cached`] entries: when full, expired entries are dropped, then
//! the oldest. The token itself is never stored, logged or echoed: the request body holding it is
//! zeroized after sending, and the apiserver's error text is quoted only with the token removed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::jwt::PodIdentity;
use crate::secret::SecretString;

/// Largest TokenReview response accepted.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// The in-cluster ServiceAccount directory (token, CA, namespace).
pub const IN_CLUSTER_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The `extra` key naming the pod a bound token belongs to.
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
/// The `extra` key giving that pod's UID.
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";

/// The server's own credential for calling the TokenReview API.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReviewerCredential {
    /// A bearer token file, re-read for every review (a projected token the kubelet rotates).
    TokenFile(PathBuf),
    /// A bearer token held in memory (embedders and tests).
    Token(SecretString),
}

/// How ServiceAccount tokens are reviewed.
#[derive(Debug)]
pub struct TokenReviewConfig {
    /// The apiserver, e.g. `https://kubernetes.default.svc`.
    pub api_server: String,
    /// PEM CA bundle for the apiserver's certificate (in a pod: the ServiceAccount `ca.crt`).
    pub ca_pem: Option<Vec<u8>>,
    /// The server's credential.
    pub credential: ReviewerCredential,
    /// The audiences a token must be valid for (what the tasks' projected tokens are issued for,
    /// e.g. `c4gh-drs`); sent as the review's `spec.audiences`.
    pub audiences: Vec<String>,
    /// How long an answer is reused; also the longest a deleted pod's token stays accepted.
    pub cache_ttl: Duration,
    /// Most answers cached.
    pub max_cached: usize,
    /// Timeout of one review request.
    pub timeout: Duration,
}

impl TokenReviewConfig {
    /// In-cluster defaults: `https://kubernetes.default.svc`, the pod's ServiceAccount CA and
    /// token, a 10 s cache of at most 10 000 answers, a 5 s timeout.
    pub fn in_cluster(audiences: Vec<String>) -> Self {
        TokenReviewConfig {
            api_server: "https://kubernetes.default.svc".into(),
            ca_pem: None,
            credential: ReviewerCredential::TokenFile(PathBuf::from(IN_CLUSTER_DIR).join("token")),
            audiences,
            cache_ttl: Duration::from_secs(10),
            max_cached: 10_000,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReviewError {
    /// The apiserver says the token does not authenticate (expired, revoked, its pod deleted, or
    /// not for the configured audiences).
    #[error(
        "the cluster's TokenReview API refused the ServiceAccount token ({detail}); a token bound \
         to a pod stops working when the pod is deleted: use a current token of a running pod"
    )]
    Refused {
        /// The apiserver's reason, with the token removed.
        detail: String,
    },
    /// The apiserver could not be asked.
    #[error("the cluster's TokenReview API could not be reached: {0}")]
    Unavailable(String),
    /// The server's own credential could not be read.
    #[error("reading this server's ServiceAccount token {path}: {detail}")]
    Credential {
        /// The token file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
}

/// What the apiserver says about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewedToken {
    /// The username, e.g. `system:serviceaccount:lab:worker`.
    pub username: String,
    /// The pod a bound token belongs to (namespace from the username).
    pub pod: Option<PodIdentity>,
    /// The token's `exp` (read from the token once the apiserver accepted it).
    pub expires_at: Option<u64>,
}

impl ReviewedToken {
    /// The ServiceAccount's namespace and name, when the username is a ServiceAccount's.
    pub fn service_account(&self) -> Option<(&str, &str)> {
        self.username
            .strip_prefix("system:serviceaccount:")?
            .split_once(':')
    }
}

#[derive(Deserialize)]
struct Review {
    #[serde(default)]
    status: Option<ReviewStatus>,
}

#[derive(Deserialize, Default)]
struct ReviewStatus {
    #[serde(default)]
    authenticated: bool,
    #[serde(default)]
    user: Option<ReviewUser>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize, Default)]
struct ReviewUser {
    #[serde(default)]
    username: String,
    #[serde(default)]
    extra: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct ExpClaim {
    #[serde(default)]
    exp: Option<u64>,
}

struct Cached {
    answer: Result<ReviewedToken, ReviewError>,
    until: Instant,
    inserted: Instant,
}

/// Reviews tokens; cheap to share.
pub struct TokenReviewer {
    config: TokenReviewConfig,
    http: reqwest::Client,
    url: String,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("api_server", &self.config.api_server)
            .field("audiences", &self.config.audiences)
            .field("cache_ttl", &self.config.cache_ttl)
            .finish_non_exhaustive()
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `token` is a JWT with a `kubernetes.io` claim (read without verification), i.e. a
/// ServiceAccount token for this mode to review.
pub fn looks_like_service_account_token(token: &str) -> bool {
    #[derive(Deserialize)]
    struct Peek {
        #[serde(rename = "kubernetes.io")]
        kubernetes: Option<serde_json::Value>,
    }
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(payload) else {
        return false;
    };
    serde_json::from_slice::<Peek>(&bytes).is_ok_and(|p| p.kubernetes.is_some())
}

fn token_exp(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<ExpClaim>(&bytes).ok()?.exp
}

/// `text` with every occurrence of `token` replaced, and bounded in length.
fn redact(text: &str, token: &str) -> String {
    let cleaned = if token.is_empty() {
        text.to_owned()
    } else {
        text.replace(token, "[token elided]")
    };
    let mut out: String = cleaned.chars().take(300).collect();
    if cleaned.chars().count() > 300 {
        out.push('…');
    }
    out
}

impl TokenReviewer {
    /// A reviewer for `config`.
    pub fn new(config: TokenReviewConfig) -> Result<Self, ReviewError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &config.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                ReviewError::Unavailable(format!("the apiserver CA bundle is not valid PEM: {e}"))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ReviewError::Unavailable(format!("building the HTTP client: {e}")))?;
        let url = format!(
            "{}/apis/authentication.k8s.io/v1/tokenreviews",
            config.api_server.trim_end_matches('/')
        );
        Ok(TokenReviewer {
            config,
            http,
            url,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The configured audiences.
    pub fn audiences(&self) -> &[String] {
        &self.config.audiences
    }

    /// How long answers are cached.
    pub fn cache_ttl(&self) -> Duration {
        self.config.cache_ttl
    }

    /// Reviews `token`, from the cache when a fresh answer is there.
    pub async fn review(&self, token: &str) -> Result<ReviewedToken, ReviewError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(answer) = self.cached(&key) {
            return answer;
        }
        let answer = self.ask(token).await;
        if !matches!(
            answer,
            Err(ReviewError::Unavailable(_) | ReviewError::Credential { .. })
        ) {
            self.remember(key, token, &answer);
        }
        answer
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Cached>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Result<ReviewedToken, ReviewError>> {
        let mut cache = self.lock();
        let entry = cache.get(key)?;
        if entry.until > Instant::now() {
            return Some(entry.answer.clone());
        }
        cache.remove(key);
        None
    }

    fn remember(&self, key: [u8; 32], token: &str, answer: &Result<ReviewedToken, ReviewError>) {
        if self.config.max_cached == 0 || self.config.cache_ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut ttl = self.config.cache_ttl;
        if let Some(exp) = token_exp(token) {
            ttl = ttl.min(Duration::from_secs(exp.saturating_sub(now_s())));
        }
        if ttl.is_zero() {
            return;
        }
        let mut cache = self.lock();
        if cache.len() >= self.config.max_cached && !cache.contains_key(&key) {
            cache.retain(|_, entry| entry.until > now);
            if cache.len() >= self.config.max_cached {
                let oldest = cache
                    .iter()
                    .min_by_key(|(_, entry)| entry.inserted)
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    cache.remove(&oldest);
                }
            }
        }
        cache.insert(
            key,
            Cached {
                answer: answer.clone(),
                until: now + ttl,
                inserted: now,
            },
        );
    }

    async fn credential(&self) -> Result<SecretString, ReviewError> {
        match &self.config.credential {
            ReviewerCredential::Token(token) => Ok(SecretString::new(token.expose().to_owned())),
            ReviewerCredential::TokenFile(path) => {
                let bytes = Zeroizing::new(tokio::fs::read(path).await.map_err(|e| {
                    ReviewError::Credential {
                        path: path.clone(),
                        detail: e.to_string(),
                    }
                })?);
                let text = std::str::from_utf8(&bytes).map_err(|_| ReviewError::Credential {
                    path: path.clone(),
                    detail: "the file is not UTF-8".into(),
                })?;
                Ok(SecretString::new(text.trim().to_owned()))
            }
        }
    }

    async fn ask(&self, token: &str) -> Result<ReviewedToken, ReviewError> {
        let credential = self.credential().await?;
        let mut authorization =
            reqwest::header::HeaderValue::try_from(format!("Bearer {}", credential.expose()))
                .map_err(|_| {
                    ReviewError::Unavailable(
                        "this server's ServiceAccount token is not a valid header value".into(),
                    )
                })?;
        authorization.set_sensitive(true);
        let body = Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token, "audiences": self.config.audiences},
            }))
            .map_err(|e| ReviewError::Unavailable(format!("encoding the review: {e}")))?,
        );
        let unavailable = |e: reqwest::Error| {
            ReviewError::Unavailable(redact(&format!("{}: {e}", self.url), token))
        };
        let mut response = self
            .http
            .post(&self.url)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(unavailable)?;
        drop(body);
        let status = response.status();
        let mut bytes = Zeroizing::new(Vec::new());
        while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ReviewError::Unavailable(format!(
                    "{}: the response is larger than {MAX_RESPONSE_BYTES} bytes",
                    self.url
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            // 401/403 here mean the server's own credential or RBAC is wrong, not the caller's.
            let hint = match status.as_u16() {
                401 => "; this server's own ServiceAccount token was not accepted",
                403 => {
                    "; this server's ServiceAccount needs the system:auth-delegator ClusterRole \
                     (create tokenreviews)"
                }
                _ => "",
            };
            return Err(ReviewError::Unavailable(format!(
                "{} answered HTTP {status}{hint}",
                self.url
            )));
        }
        let review: Review = serde_json::from_slice(&bytes).map_err(|e| {
            ReviewError::Unavailable(format!("{}: not a TokenReview: {e}", self.url))
        })?;
        let status = review.status.unwrap_or_default();
        if !status.authenticated {
            let detail = status
                .error
                .as_deref()
                .map_or_else(|| "not authenticated".to_owned(), |e| redact(e, token));
            return Err(ReviewError::Refused { detail });
        }
        if !self.config.audiences.is_empty()
            && !status
                .audiences
                .iter()
                .any(|a| self.config.audiences.contains(a))
        {
            return Err(ReviewError::Refused {
                detail: format!(
                    "the token is not valid for the audiences {:?}",
                    self.config.audiences
                ),
            });
        }
        let user = status.user.unwrap_or_default();
        if user.username.is_empty() {
            return Err(ReviewError::Refused {
                detail: "the review names no username".into(),
            });
        }
        let first = |key: &str| user.extra.get(key).and_then(|v| v.first()).cloned();
        let namespace = user
            .username
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
            .map(|(ns, _)| ns.to_owned());
        let pod = match (first(EXTRA_POD_NAME), first(EXTRA_POD_UID)) {
            (Some(name), Some(uid)) => Some(PodIdentity {
                namespace,
                name,
                uid,
            }),
            _ => None,
        };
        Ok(ReviewedToken {
            username: user.username,
            pod,
            expires_at: token_exp(token),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: serde_json::Value) -> String {
        format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(payload.to_string())
        )
    }

    #[test]
    fn recognises_service_account_tokens() {
        assert!(looks_like_service_account_token(&jwt(
            serde_json::json!({"kubernetes.io": {"namespace": "lab"}, "sub": "x"})
        )));
        assert!(!looks_like_service_account_token(&jwt(
            serde_json::json!({"sub": "x"})
        )));
        assert!(!looks_like_service_account_token("static-token-0123456789"));
        assert!(!looks_like_service_account_token("a.b.c.d"));
    }

    #[test]
    fn redaction_removes_the_token_and_bounds_the_text() {
        let token = "secret-token-value";
        assert_eq!(
            redact("[invalid bearer token secret-token-value]", token),
            "[invalid bearer token [token elided]]"
        );
        assert!(redact(&"x".repeat(1000), token).chars().count() <= 301);
    }

    fn reviewer(max_cached: usize) -> TokenReviewer {
        let mut config = TokenReviewConfig::in_cluster(vec!["aud".into()]);
        config.max_cached = max_cached;
        TokenReviewer::new(config).unwrap()
    }

    #[test]
    fn cache_is_bounded_and_never_outlives_the_token() {
        let reviewer = reviewer(2);
        let ok = |name: &str| {
            Ok(ReviewedToken {
                username: name.into(),
                pod: None,
                expires_at: None,
            })
        };
        let live = |n: u64| jwt(serde_json::json!({"exp": now_s() + 600, "n": n}));
        for n in 0..5 {
            let token = live(n);
            let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            reviewer.remember(key, &token, &ok("a"));
            assert!(reviewer.cached(&key).is_some());
        }
        assert_eq!(reviewer.lock().len(), 2);
        let expired = jwt(serde_json::json!({"exp": now_s() - 1}));
        let key: [u8; 32] = Sha256::digest(expired.as_bytes()).into();
        reviewer.remember(key, &expired, &ok("b"));
        assert!(reviewer.cached(&key).is_none());
    }
}
