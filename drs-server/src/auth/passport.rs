//! GA4GH Passports (v1.2) and their `ControlledAccessGrants` visas.
//!
//! A caller presents JWTs in a DRS POST body (`passports: [jwt, …]`) or as a bearer token. Each JWT
//! is either a **passport** (claim `ga4gh_passport_v1`: a list of visa JWTs), signed by a trusted
//! broker, or a **visa** itself (claim `ga4gh_visa_v1`). Every JWT must be signed by a configured
//! trusted issuer ([`VisaIssuer`]: exact `iss` and its JWKS URL, fetched over TLS with the
//! configured CA bundle, cached and refetched on an unknown `kid`, see [`super::jwt`]); `exp` and
//! `nbf` are checked with a bounded clock skew ([`PassportConfig::leeway`], 60 s), `asserted` must
//! not be in the future. A `ControlledAccessGrants` visa without `conditions` grants its `value`,
//! a dataset; the objects of that dataset (catalog `dataset`) may then be read. Other visa types
//! and visas with conditions grant nothing. `aud` is not checked (visas carry none).
//!
//! Verified JWTs are remembered by their SHA-256 (at most 10 000, each until its `exp` and at most
//! 5 minutes), so a client repeating its passport per request pays one signature check per JWT.
//!
//! Each JWT that does not count is described in a note (which one, which issuer, which claim, why)
//! so a refusal can say what was missing, expired or untrusted; notes never contain a token.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::jwt::{JwksSource, JwtConfig, JwtError, JwtVerifier};

/// Most JWTs (passports and the visas inside them) considered per request.
pub const MAX_TOKENS: usize = 64;

/// The only visa type that grants access here.
pub const CONTROLLED_ACCESS_GRANTS: &str = "ControlledAccessGrants";

/// One trusted passport broker or visa issuer.
#[derive(Debug, Clone)]
pub struct VisaIssuer {
    /// The exact `iss`.
    pub issuer: String,
    /// Its JWKS URL.
    pub jwks_url: String,
}

/// How passports and visas are verified.
#[derive(Debug, Clone)]
pub struct PassportConfig {
    /// The trusted brokers and visa issuers.
    pub issuers: Vec<VisaIssuer>,
    /// Extra PEM CA certificates trusted when fetching their JWKS.
    pub ca_pem: Option<Vec<u8>>,
    /// Clock skew allowed for `exp`, `nbf` and `asserted`.
    pub leeway: Duration,
    /// Minimum time between JWKS refetches triggered by an unknown `kid` (issuer key rotation).
    pub min_refresh_interval: Duration,
}

impl PassportConfig {
    /// A configuration trusting `issuers`, with a 60 s clock skew.
    pub fn new(issuers: Vec<VisaIssuer>) -> Self {
        PassportConfig {
            issuers,
            ca_pem: None,
            leeway: Duration::from_secs(60),
            min_refresh_interval: Duration::from_secs(10),
        }
    }
}

/// The verified content of a request's passports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grants {
    /// The holder: `sub` of the first verified passport or visa.
    pub holder: String,
    /// Granted datasets, each with the label of the visa that grants it.
    pub datasets: Vec<(String, String)>,
    /// The earliest `exp` of the JWTs that grant something.
    pub expires_at: Option<u64>,
    /// Why each JWT that grants nothing does not count.
    pub notes: Vec<String>,
}

#[derive(Deserialize, Clone)]
struct TokenClaims {
    sub: String,
    exp: u64,
    #[serde(default)]
    ga4gh_passport_v1: Option<Vec<String>>,
    #[serde(default)]
    ga4gh_visa_v1: Option<Visa>,
}

#[derive(Deserialize, Clone)]
struct Visa {
    r#type: String,
    value: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    asserted: Option<u64>,
    #[serde(default)]
    conditions: Option<serde_json::Value>,
}

/// Claims read before verification, only to name a JWT in notes.
#[derive(Deserialize, Default)]
struct Peek {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    ga4gh_visa_v1: Option<PeekVisa>,
    #[serde(default)]
    ga4gh_passport_v1: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct PeekVisa {
    #[serde(default)]
    r#type: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

/// Longest claim value quoted in a note.
const MAX_QUOTED: usize = 120;

fn quoted(value: &str) -> String {
    let mut text: String = value.chars().take(MAX_QUOTED).collect();
    if value.chars().count() > MAX_QUOTED {
        text.push('…');
    }
    format!("{text:?}")
}

fn peek(token: &str) -> Option<Peek> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether `token` looks like a passport (a JWT with `ga4gh_passport_v1`), read without
/// verification.
pub fn looks_like_passport(token: &str) -> bool {
    peek(token).is_some_and(|p| p.ga4gh_passport_v1.is_some())
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Most verified JWTs remembered (by SHA-256) so a client repeating its passport per request does
/// not pay a signature check each time.
const MAX_CACHED: usize = 10_000;

/// How long a verified JWT is remembered at most (the issuers' JWKS cache time, so a key the
/// issuer withdrew stops verifying within the same delay).
const CACHE_TTL_S: u64 = 300;

struct Verified {
    claims: TokenClaims,
    until: u64,
}

/// Verifies passports and visas against the trusted issuers.
pub struct PassportVerifier {
    issuers: HashMap<String, JwtVerifier>,
    leeway: Duration,
    verified: std::sync::Mutex<HashMap<[u8; 32], Verified>>,
}

impl std::fmt::Debug for PassportVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassportVerifier")
            .field("issuers", &self.issuers())
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl PassportVerifier {
    /// A verifier for `config`; JWKS are fetched on first use.
    pub fn new(config: PassportConfig) -> Result<Self, JwtError> {
        let mut issuers = HashMap::new();
        for issuer in config.issuers {
            let mut jwt = JwtConfig::new(issuer.issuer.clone(), Vec::new());
            jwt.jwks = JwksSource::Url(issuer.jwks_url);
            jwt.ca_pem.clone_from(&config.ca_pem);
            jwt.leeway = config.leeway;
            jwt.min_refresh_interval = config.min_refresh_interval;
            issuers.insert(issuer.issuer, JwtVerifier::new(jwt)?);
        }
        Ok(PassportVerifier {
            issuers,
            leeway: config.leeway,
            verified: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The trusted issuers.
    pub fn issuers(&self) -> Vec<String> {
        let mut list: Vec<String> = self.issuers.keys().cloned().collect();
        list.sort();
        list
    }

    /// Verifies the passports or visas in `tokens`; the error lists why each failed when none of
    /// them verifies.
    pub async fn verify(&self, tokens: &[String]) -> Result<Grants, Vec<String>> {
        let mut grants = Grants::default();
        let mut holder = None;
        let mut budget = MAX_TOKENS;
        for (index, token) in tokens.iter().enumerate() {
            let label = format!("passport {}", index + 1);
            let Some(claims) = self
                .verified(token, &label, &mut grants.notes, &mut budget)
                .await
            else {
                continue;
            };
            holder.get_or_insert_with(|| claims.sub.clone());
            if let Some(visas) = &claims.ga4gh_passport_v1 {
                for (v, visa) in visas.iter().enumerate() {
                    let label = format!("{label}, visa {}", v + 1);
                    if let Some(claims) = self
                        .verified(visa, &label, &mut grants.notes, &mut budget)
                        .await
                    {
                        self.grant(&label, claims, &mut grants);
                    }
                }
            } else {
                self.grant(&label, claims, &mut grants);
            }
        }
        match holder {
            Some(holder) => {
                grants.holder = holder;
                Ok(grants)
            }
            None if grants.notes.is_empty() => Err(vec!["no passport was sent".into()]),
            None => Err(grants.notes),
        }
    }

    /// Verifies one JWT; on failure adds a note and returns `None`.
    async fn verified(
        &self,
        token: &str,
        label: &str,
        notes: &mut Vec<String>,
        budget: &mut usize,
    ) -> Option<TokenClaims> {
        if *budget == 0 {
            notes.push(format!(
                "{label}: not checked (more than {MAX_TOKENS} JWTs in one request)"
            ));
            return None;
        }
        *budget -= 1;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = now_s();
        if let Some(hit) = self.cache().get(&digest)
            && hit.until > now
        {
            return Some(hit.claims.clone());
        }
        let Some(peeked) = peek(token) else {
            notes.push(format!("{label}: not a JWT with a JSON payload"));
            return None;
        };
        let name = match (&peeked.ga4gh_visa_v1, &peeked.iss) {
            (Some(visa), Some(iss)) => format!(
                "{label} ({} visa for {} from {})",
                visa.r#type.as_deref().map_or("untyped".into(), quoted),
                visa.value.as_deref().map_or("no value".into(), quoted),
                quoted(iss)
            ),
            (None, Some(iss)) => format!("{label} (from {})", quoted(iss)),
            (_, None) => format!("{label} (no iss)"),
        };
        let Some(verifier) = peeked.iss.as_ref().and_then(|iss| self.issuers.get(iss)) else {
            notes.push(format!(
                "{name}: the issuer is not trusted by this server (trusted: {})",
                self.issuers().join(", ")
            ));
            return None;
        };
        match verifier.verify_claims::<TokenClaims>(token).await {
            Ok(claims) => {
                let until = claims
                    .exp
                    .saturating_add(self.leeway.as_secs())
                    .min(now + CACHE_TTL_S);
                let mut cache = self.cache();
                if cache.len() >= MAX_CACHED {
                    cache.retain(|_, v| v.until > now);
                }
                if cache.len() < MAX_CACHED {
                    cache.insert(
                        digest,
                        Verified {
                            claims: claims.clone(),
                            until,
                        },
                    );
                }
                Some(claims)
            }
            Err(err) => {
                let why = match err {
                    JwtError::Expired => "expired (exp is in the past)".to_owned(),
                    JwtError::NotYetValid => "not valid yet (nbf is in the future)".to_owned(),
                    JwtError::BadSignature => {
                        "the signature does not verify against the issuer's key".to_owned()
                    }
                    JwtError::UnknownKey { kid } => format!(
                        "signed with key {}, which is not in the issuer's JWKS",
                        kid.as_deref().map_or("without kid".into(), quoted)
                    ),
                    JwtError::MissingClaim(claim) => format!("the claim {claim:?} is missing"),
                    JwtError::Fetch { .. } => {
                        tracing::warn!(error = %err, "cannot fetch a visa issuer's keys");
                        "the issuer's keys cannot be fetched right now".to_owned()
                    }
                    JwtError::Malformed => {
                        "malformed (the ga4gh_visa_v1 claim needs type and value)".to_owned()
                    }
                    other => other.to_string(),
                };
                notes.push(format!("{name}: {why}"));
                None
            }
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Verified>> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn grant(&self, label: &str, claims: TokenClaims, grants: &mut Grants) {
        let Some(visa) = claims.ga4gh_visa_v1 else {
            grants.notes.push(format!(
                "{label}: has neither ga4gh_visa_v1 nor ga4gh_passport_v1"
            ));
            return;
        };
        let name = format!(
            "{label} ({} visa for {})",
            quoted(&visa.r#type),
            quoted(&visa.value)
        );
        if visa.r#type != CONTROLLED_ACCESS_GRANTS {
            grants.notes.push(format!(
                "{name}: only {CONTROLLED_ACCESS_GRANTS} visas grant access"
            ));
            return;
        }
        if visa.conditions.as_ref().is_some_and(|c| !c.is_null()) {
            grants.notes.push(format!(
                "{name}: visas with conditions are not supported, so it grants nothing"
            ));
            return;
        }
        match visa.asserted {
            None => {
                grants
                    .notes
                    .push(format!("{name}: the claim \"asserted\" is missing"));
                return;
            }
            Some(asserted) if asserted > now_s() + self.leeway.as_secs() => {
                grants
                    .notes
                    .push(format!("{name}: asserted is in the future"));
                return;
            }
            Some(_) => {}
        }
        tracing::debug!(visa = %name, source = visa.source.as_deref(), "visa accepted");
        grants.expires_at = Some(grants.expires_at.map_or(claims.exp, |e| e.min(claims.exp)));
        grants.datasets.push((name, visa.value));
    }
}

impl Grants {
    /// Whether a visa grants `dataset`.
    pub fn allows(&self, dataset: &str) -> bool {
        self.datasets.iter().any(|(_, value)| value == dataset)
    }

    /// Why the passports do not allow `dataset` (of object `id`): the grants for other datasets
    /// and the notes.
    pub fn refusal(&self, id: &str, dataset: Option<&str>) -> String {
        let mut parts = Vec::new();
        for (name, value) in &self.datasets {
            parts.push(format!(
                "{name}: grants dataset {}, not this one",
                quoted(value)
            ));
        }
        parts.extend(self.notes.iter().cloned());
        let head = match dataset {
            Some(dataset) => format!(
                "no valid {CONTROLLED_ACCESS_GRANTS} visa for dataset {} (object {id:?})",
                quoted(dataset)
            ),
            None => format!("object {id:?} belongs to no dataset, so no visa grants it"),
        };
        if parts.is_empty() {
            format!("{head}; the passports hold no visas")
        } else {
            format!("{head}; {}", parts.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt_with(payload: &serde_json::Value) -> String {
        format!(
            "eyJhbGciOiJFUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(payload.to_string())
        )
    }

    #[test]
    fn passports_are_told_from_visas_before_verification() {
        assert!(looks_like_passport(&jwt_with(
            &serde_json::json!({"iss": "b", "ga4gh_passport_v1": []})
        )));
        assert!(!looks_like_passport(&jwt_with(
            &serde_json::json!({"iss": "b", "ga4gh_visa_v1": {}})
        )));
        assert!(!looks_like_passport("not.a-jwt"));
        assert!(!looks_like_passport("opaque-token"));
    }

    #[test]
    fn quoted_claims_are_bounded() {
        let long = "x".repeat(500);
        let text = quoted(&long);
        assert!(text.chars().count() < 130, "{text}");
        assert!(text.ends_with("…\""), "{text}");
        assert_eq!(quoted("EGAD1"), "\"EGAD1\"");
    }

    #[test]
    fn refusals_list_other_grants_and_notes() {
        let grants = Grants {
            holder: "alice".into(),
            datasets: vec![("passport 1".into(), "EGAD2".into())],
            expires_at: Some(1),
            notes: vec!["passport 2: expired".into()],
        };
        assert!(grants.allows("EGAD2") && !grants.allows("EGAD1"));
        let text = grants.refusal("obj", Some("EGAD1"));
        assert!(
            text.contains("dataset \"EGAD1\" (object \"obj\")"),
            "{text}"
        );
        assert!(
            text.contains("grants dataset \"EGAD2\", not this one"),
            "{text}"
        );
        assert!(text.contains("passport 2: expired"), "{text}");
        assert!(
            grants
                .refusal("obj", None)
                .contains("belongs to no dataset")
        );
    }
}
