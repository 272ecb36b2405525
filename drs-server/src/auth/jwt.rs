//! JWT bearer tokens verified against an OIDC issuer's JWKS.
//!
//! Works with any OIDC issuer and with a Kubernetes ServiceAccount issuer: the keys come from the
//! issuer's discovery document (`{issuer}/.well-known/openid-configuration` → `jwks_uri`), from a
//! configured JWKS URL, or from a JWKS file (e.g. `kubectl get --raw /openid/v1/jwks`). Keys are
//! cached for [`JwtConfig::cache_ttl`] and refetched early when a token names an unknown `kid`
//! (at most once per [`JwtConfig::min_refresh_interval`]). Accepted algorithms: RS256 and ES256.
//! Checked claims: signature, `iss` (exact), `aud` (one of the configured audiences), `exp`,
//! `nbf` (with [`JwtConfig::leeway`]), and a non-empty `sub`, which becomes the subject that
//! access rules match (`system:serviceaccount:NS:NAME` for ServiceAccount tokens).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, RwLock};

use crate::secret::SecretString;

/// Largest JWKS or discovery document accepted.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Where the issuer's signing keys come from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum JwksSource {
    /// OIDC discovery: `{issuer}/.well-known/openid-configuration` names the `jwks_uri`.
    Discovery,
    /// A JWKS URL.
    Url(String),
    /// A JWKS file, re-read on each refresh.
    File(PathBuf),
}

/// How JWT bearer tokens are verified.
#[derive(Debug)]
pub struct JwtConfig {
    /// The expected `iss`, e.g. `https://kubernetes.default.svc.cluster.local`.
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one (none: `aud` is not checked, for
    /// GA4GH visas, which carry no audience).
    pub audiences: Vec<String>,
    /// Where the keys come from.
    pub jwks: JwksSource,
    /// Extra PEM CA certificates trusted when fetching discovery and JWKS documents.
    pub ca_pem: Option<Vec<u8>>,
    /// Bearer token sent when fetching discovery and JWKS (a Kubernetes API server may require
    /// one), e.g. the server's own ServiceAccount token.
    pub fetch_token: Option<SecretString>,
    /// Clock skew allowed for `exp` and `nbf`.
    pub leeway: Duration,
    /// How long fetched keys are used before refetching.
    pub cache_ttl: Duration,
    /// Minimum time between refetches triggered by unknown key IDs.
    pub min_refresh_interval: Duration,
}

impl JwtConfig {
    /// A configuration with the default timings (60 s leeway, 5 min cache, 10 s refresh
    /// interval) and keys from OIDC discovery.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        JwtConfig {
            issuer: issuer.into(),
            audiences,
            jwks: JwksSource::Discovery,
            ca_pem: None,
            fetch_token: None,
            leeway: Duration::from_secs(60),
            cache_ttl: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(10),
        }
    }
}

/// Why a JWT was rejected or could not be checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The token is not a well-formed JWT.
    #[error("the bearer token is not a well-formed JWT")]
    Malformed,
    /// The token's algorithm is not RS256 or ES256.
    #[error("the token is signed with {0}, but only RS256 and ES256 are accepted")]
    UnsupportedAlgorithm(String),
    /// No key in the issuer's JWKS has the token's `kid`.
    #[error("the token's signing key {kid:?} is not in the issuer's JWKS")]
    UnknownKey {
        /// The token's key ID (`None` if it has none).
        kid: Option<String>,
    },
    /// The signature does not verify.
    #[error("the token's signature does not verify against the issuer's key")]
    BadSignature,
    /// `exp` is in the past.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet (nbf is in the future)")]
    NotYetValid,
    /// `aud` does not name this server.
    #[error("the token's audience does not include {expected:?}")]
    WrongAudience {
        /// The accepted audiences.
        expected: Vec<String>,
    },
    /// `iss` is not the configured issuer.
    #[error("the token was not issued by {expected:?}")]
    WrongIssuer {
        /// The configured issuer.
        expected: String,
    },
    /// A required claim is missing.
    #[error("the token lacks the required claim {0:?}")]
    MissingClaim(String),
    /// The issuer's keys could not be fetched.
    #[error("fetching the token issuer's keys from {url}: {detail}")]
    Fetch {
        /// What was fetched.
        url: String,
        /// Why it failed.
        detail: String,
    },
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default, rename = "kubernetes.io")]
    kubernetes: Option<KubernetesClaims>,
}

/// The `kubernetes.io` claim of a projected ServiceAccount token.
#[derive(Deserialize)]
struct KubernetesClaims {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    pod: Option<PodClaim>,
}

#[derive(Deserialize)]
struct PodClaim {
    name: String,
    uid: String,
}

/// A pod named by a projected ServiceAccount token (`kubernetes.io.pod`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    /// The pod's namespace (`kubernetes.io.namespace`), if the token names it.
    pub namespace: Option<String>,
    /// The pod's name.
    pub name: String,
    /// The pod's UID (unique across pod re-creations with the same name).
    pub uid: String,
}

/// What a verified JWT says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedJwt {
    /// `sub`.
    pub subject: String,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: u64,
    /// The pod the token was issued to, for projected ServiceAccount tokens.
    pub pod: Option<PodIdentity>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

struct Key {
    key: DecodingKey,
    alg: Algorithm,
}

struct KeySet {
    keys: HashMap<Option<String>, Key>,
    fetched: Instant,
}

/// Verifies JWTs; cheap to share behind an `Arc`.
pub struct JwtVerifier {
    config: JwtConfig,
    http: reqwest::Client,
    keys: RwLock<Option<KeySet>>,
    /// When keys were last fetched or tried; held while fetching.
    refresh: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.config.issuer)
            .field("audiences", &self.config.audiences)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier for `config`. Keys are fetched on first use.
    pub fn new(config: JwtConfig) -> Result<Self, JwtError> {
        let fail = |detail: String| JwtError::Fetch {
            url: config.issuer.clone(),
            detail,
        };
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::limited(3));
        if let Some(pem) = &config.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| fail(format!("the issuer CA bundle is not valid PEM: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| fail(format!("building the HTTP client: {e}")))?;
        Ok(JwtVerifier {
            config,
            http,
            keys: RwLock::new(None),
            refresh: Mutex::new(None),
        })
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Verifies `token`'s signature, `iss`, `aud` (unless no audiences are configured), `exp` and
    /// `nbf`, and returns its claims as `T`.
    pub async fn verify_claims<T: DeserializeOwned>(&self, token: &str) -> Result<T, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(JwtError::UnsupportedAlgorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid;
        let (key, alg) = self.key(&kid).await?;
        if alg != header.alg {
            return Err(JwtError::BadSignature);
        }
        let mut validation = Validation::new(alg);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        if self.config.audiences.is_empty() {
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        } else {
            validation.set_audience(&self.config.audiences);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        }
        let data =
            jsonwebtoken::decode::<T>(token, &key, &validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => JwtError::Expired,
                ErrorKind::ImmatureSignature => JwtError::NotYetValid,
                ErrorKind::InvalidAudience => JwtError::WrongAudience {
                    expected: self.config.audiences.clone(),
                },
                ErrorKind::InvalidIssuer => JwtError::WrongIssuer {
                    expected: self.config.issuer.clone(),
                },
                ErrorKind::MissingRequiredClaim(claim) => JwtError::MissingClaim(claim.clone()),
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidKeyFormat => JwtError::BadSignature,
                _ => JwtError::Malformed,
            })?;
        Ok(data.claims)
    }

    /// Verifies `token` and returns its subject (`sub`), expiry and pod identity.
    pub async fn verify(&self, token: &str) -> Result<VerifiedJwt, JwtError> {
        let claims: Claims = self.verify_claims(token).await?;
        let subject = match claims.sub {
            Some(sub) if !sub.is_empty() => sub,
            _ => return Err(JwtError::MissingClaim("sub".into())),
        };
        let expires_at = claims
            .exp
            .ok_or_else(|| JwtError::MissingClaim("exp".into()))?;
        let pod = claims.kubernetes.and_then(|k| {
            k.pod.map(|p| PodIdentity {
                namespace: k.namespace,
                name: p.name,
                uid: p.uid,
            })
        });
        Ok(VerifiedJwt {
            subject,
            expires_at,
            pod,
        })
    }

    async fn key(&self, kid: &Option<String>) -> Result<(DecodingKey, Algorithm), JwtError> {
        if let Some(found) = self.cached(kid, self.config.cache_ttl).await {
            return Ok(found);
        }
        let mut last_attempt = self.refresh.lock().await;
        // Another request may have refreshed while this one waited.
        if let Some(found) = self.cached(kid, self.config.cache_ttl).await {
            return Ok(found);
        }
        let recently =
            last_attempt.is_some_and(|at| at.elapsed() < self.config.min_refresh_interval);
        if !recently {
            *last_attempt = Some(Instant::now());
            match self.fetch().await {
                Ok(keys) => {
                    *self.keys.write().await = Some(KeySet {
                        keys,
                        fetched: Instant::now(),
                    });
                }
                Err(err) => {
                    // Keep verifying with the keys fetched before while the issuer is down.
                    if let Some(found) = self.cached(kid, Duration::MAX).await {
                        tracing::warn!(error = %err, "refreshing the issuer's keys failed; using the cached keys");
                        return Ok(found);
                    }
                    if self.keys.read().await.is_none() {
                        return Err(err);
                    }
                    tracing::warn!(error = %err, "refreshing the issuer's keys failed");
                }
            }
        }
        if let Some(found) = self.cached(kid, Duration::MAX).await {
            return Ok(found);
        }
        if self.keys.read().await.is_none() {
            return Err(JwtError::Fetch {
                url: self.config.issuer.clone(),
                detail: "the issuer's keys were not fetched yet (the last attempt failed)".into(),
            });
        }
        Err(JwtError::UnknownKey { kid: kid.clone() })
    }

    async fn cached(
        &self,
        kid: &Option<String>,
        max_age: Duration,
    ) -> Option<(DecodingKey, Algorithm)> {
        let guard = self.keys.read().await;
        let set = guard.as_ref()?;
        if set.fetched.elapsed() > max_age {
            return None;
        }
        let key = match kid {
            Some(_) => set.keys.get(kid),
            // A token without `kid` is accepted only when the issuer has exactly one key.
            None if set.keys.len() == 1 => set.keys.values().next(),
            None => None,
        }?;
        Some((key.key.clone(), key.alg))
    }

    async fn fetch(&self) -> Result<HashMap<Option<String>, Key>, JwtError> {
        let (url, bytes) = match &self.config.jwks {
            JwksSource::File(path) => {
                let url = path.display().to_string();
                let bytes = tokio::fs::read(path).await.map_err(|e| JwtError::Fetch {
                    url: url.clone(),
                    detail: e.to_string(),
                })?;
                (url, bytes)
            }
            JwksSource::Url(url) => (url.clone(), self.get(url).await?),
            JwksSource::Discovery => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.config.issuer.trim_end_matches('/')
                );
                let doc: Discovery =
                    serde_json::from_slice(&self.get(&url).await?).map_err(|e| {
                        JwtError::Fetch {
                            url: url.clone(),
                            detail: format!("not an OIDC discovery document: {e}"),
                        }
                    })?;
                if doc.issuer != self.config.issuer {
                    return Err(JwtError::Fetch {
                        url,
                        detail: format!(
                            "the discovery document names issuer {:?}, not the configured {:?}",
                            doc.issuer, self.config.issuer
                        ),
                    });
                }
                let bytes = self.get(&doc.jwks_uri).await?;
                (doc.jwks_uri, bytes)
            }
        };
        let set: JwkSet = serde_json::from_slice(&bytes).map_err(|e| JwtError::Fetch {
            url: url.clone(),
            detail: format!("not a JWK set: {e}"),
        })?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
                (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                    if ec.curve == EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                _ => {
                    tracing::debug!(kid = ?jwk.common.key_id, "skipping a JWK that is not RS256 or ES256");
                    continue;
                }
            };
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                tracing::warn!(kid = ?jwk.common.key_id, %url, "skipping an unusable JWK");
                continue;
            };
            keys.insert(jwk.common.key_id.clone(), Key { key, alg });
        }
        tracing::info!(%url, keys = keys.len(), "fetched the token issuer's keys");
        Ok(keys)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, JwtError> {
        let fail = |detail: String| JwtError::Fetch {
            url: url.to_owned(),
            detail,
        };
        let mut request = self.http.get(url);
        if let Some(token) = &self.config.fetch_token {
            let mut value =
                reqwest::header::HeaderValue::try_from(format!("Bearer {}", token.expose()))
                    .map_err(|_| fail("the fetch token is not a valid header value".into()))?;
            value.set_sensitive(true);
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let mut response = request.send().await.map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP status {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(e.to_string()))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(fail("the document is larger than 1 MiB".into()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
