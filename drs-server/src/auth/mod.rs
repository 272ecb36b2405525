//! Who is asking: bearer tokens (static, JWT, or Kubernetes ServiceAccount tokens checked by the
//! cluster's TokenReview API, [`tokenreview`]) to a subject, whom objects' readers and the
//! dataset readers admit; or GA4GH passports and visas ([`passport`]) to a holder, whose dataset
//! grants decide access.
//!
//! A bearer token is tried as a static token first, then as a passport (a JWT with
//! `ga4gh_passport_v1`, when visa issuers are configured), then — when TokenReview is configured —
//! as a ServiceAccount token (a JWT with a `kubernetes.io` claim) sent to the apiserver, and
//! otherwise as a JWT verified against the configured issuer's JWKS.

pub mod jwt;
pub mod passport;
pub mod tokenreview;
pub mod tokens;

use axum::http::{HeaderMap, header};

use crate::problem::Problem;
use jwt::{JwtError, JwtVerifier, PodIdentity};
use passport::{Grants, PassportVerifier};
use tokenreview::{ReviewError, TokenReviewer};
use tokens::StaticTokens;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The subject that reader rules match: a static token's subject, a JWT's `sub`, or the
    /// username the TokenReview API returned (`system:serviceaccount:NS:NAME`).
    pub subject: String,
    /// How the caller authenticated.
    pub method: AuthMethod,
    /// When the credential expires (a JWT's `exp`, seconds since the Unix epoch); `None` for
    /// static tokens.
    pub expires_at: Option<u64>,
    /// The pod a projected ServiceAccount token was issued to (from the token's `kubernetes.io`
    /// claim in JWKS mode, from the review's `extra` in TokenReview mode).
    pub pod: Option<PodIdentity>,
    /// For passport holders: the verified visas. Such callers are authorised by their dataset
    /// grants only, never by an object's readers.
    pub grants: Option<Grants>,
}

impl Principal {
    /// The identity a key binding is kept for: the pod UID when the token names a pod (pods
    /// sharing a ServiceAccount each have their own key), else the subject.
    pub fn binding_identity(&self) -> String {
        match &self.pod {
            Some(pod) => format!("pod:{}", pod.uid),
            None => format!("sub:{}", self.subject),
        }
    }
}

/// How a caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMethod {
    /// A static bearer token from the token file.
    StaticToken,
    /// A JWT verified against the issuer's keys.
    Jwt,
    /// GA4GH passports or visas (POST body or bearer token).
    Passport,
    /// A Kubernetes ServiceAccount token the cluster's TokenReview API accepted.
    TokenReview,
}

impl AuthMethod {
    /// A short name for logs and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::StaticToken => "static_token",
            AuthMethod::Jwt => "jwt",
            AuthMethod::Passport => "passport",
            AuthMethod::TokenReview => "token_review",
        }
    }
}

/// Turns `Authorization` headers into principals.
#[derive(Debug, Default)]
pub struct Authenticator {
    tokens: StaticTokens,
    jwt: Option<JwtVerifier>,
    passports: Option<PassportVerifier>,
    reviewer: Option<TokenReviewer>,
}

impl Authenticator {
    /// Accepts the `tokens` and, when given, JWTs checked by `jwt`.
    pub fn new(tokens: StaticTokens, jwt: Option<JwtVerifier>) -> Self {
        Authenticator {
            tokens,
            jwt,
            passports: None,
            reviewer: None,
        }
    }

    /// Also accepts Kubernetes ServiceAccount tokens checked by `reviewer` (the TokenReview API).
    pub fn with_token_review(mut self, reviewer: Option<TokenReviewer>) -> Self {
        self.reviewer = reviewer;
        self
    }

    /// Also accepts GA4GH passports and visas checked by `passports`.
    pub fn with_passports(mut self, passports: Option<PassportVerifier>) -> Self {
        self.passports = passports;
        self
    }

    /// The trusted passport and visa issuers.
    pub fn passport_issuers(&self) -> Vec<String> {
        self.passports
            .as_ref()
            .map(PassportVerifier::issuers)
            .unwrap_or_default()
    }

    /// Authenticates the request's bearer token or, when it has none, the `passports` of its
    /// POST body.
    pub async fn authenticate_with(
        &self,
        headers: &HeaderMap,
        passports: &[String],
    ) -> Result<Principal, AuthError> {
        if headers.contains_key(header::AUTHORIZATION) || passports.is_empty() {
            return self.authenticate(headers).await;
        }
        self.authenticate_passports(passports).await
    }

    /// Authenticates GA4GH passports or visas.
    pub async fn authenticate_passports(
        &self,
        passports: &[String],
    ) -> Result<Principal, AuthError> {
        let Some(verifier) = &self.passports else {
            return Err(AuthError::new(
                "passports_unsupported",
                "this server does not accept GA4GH passports; send a bearer token in the \
                 Authorization header",
                false,
            ));
        };
        match verifier.verify(passports).await {
            Ok(grants) => Ok(Principal {
                subject: grants.holder.clone(),
                method: AuthMethod::Passport,
                expires_at: grants.expires_at,
                pod: None,
                grants: Some(grants),
            }),
            Err(notes) => Err(AuthError::new(
                "passport_invalid",
                format!("no passport or visa verifies: {}", notes.join("; ")),
                true,
            )),
        }
    }

    /// The JWT issuer, when JWTs are accepted.
    pub fn jwt_issuer(&self) -> Option<&str> {
        self.jwt.as_ref().map(JwtVerifier::issuer)
    }

    /// Authenticates the request's bearer token.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(AuthError::new(
                "missing",
                "this endpoint needs an Authorization: Bearer token",
                false,
            ));
        };
        let value = value.to_str().map_err(|_| {
            AuthError::new("malformed", "the Authorization header is not ASCII", true)
        })?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(AuthError::new(
                    "malformed",
                    "the Authorization header must be `Bearer <token>`",
                    true,
                ));
            }
        };
        if let Some(subject) = self.tokens.subject(token) {
            return Ok(Principal {
                subject: subject.to_owned(),
                method: AuthMethod::StaticToken,
                expires_at: None,
                pod: None,
                grants: None,
            });
        }
        if self.passports.is_some() && passport::looks_like_passport(token) {
            return self.authenticate_passports(&[token.to_owned()]).await;
        }
        if let Some(reviewer) = &self.reviewer
            && tokenreview::looks_like_service_account_token(token)
        {
            return review(reviewer, token).await;
        }
        let Some(jwt) = &self.jwt else {
            return Err(AuthError::new(
                "unknown_token",
                "the bearer token is not valid for this server",
                true,
            ));
        };
        if token.split('.').count() != 3 {
            return Err(AuthError::new(
                "unknown_token",
                "the bearer token is neither one of this server's tokens nor a JWT",
                true,
            ));
        }
        match jwt.verify(token).await {
            Ok(verified) => Ok(Principal {
                subject: verified.subject,
                method: AuthMethod::Jwt,
                expires_at: Some(verified.expires_at),
                pod: verified.pod,
                grants: None,
            }),
            Err(err @ JwtError::Fetch { .. }) => {
                tracing::error!(error = %err, "cannot verify JWTs");
                Err(AuthError {
                    reason: "issuer_unavailable",
                    problem: Problem::unavailable(
                        "the server cannot fetch its token issuer's keys right now; retry later",
                        10,
                    ),
                })
            }
            Err(err) => {
                let reason = match err {
                    JwtError::Expired => "expired",
                    JwtError::NotYetValid => "not_yet_valid",
                    JwtError::WrongAudience { .. } => "wrong_audience",
                    JwtError::WrongIssuer { .. } => "wrong_issuer",
                    JwtError::UnknownKey { .. } => "unknown_key",
                    JwtError::BadSignature => "bad_signature",
                    _ => "invalid_jwt",
                };
                Err(AuthError::new(reason, err.to_string(), true))
            }
        }
    }
}

async fn review(reviewer: &TokenReviewer, token: &str) -> Result<Principal, AuthError> {
    match reviewer.review(token).await {
        Ok(reviewed) => Ok(Principal {
            subject: reviewed.username,
            method: AuthMethod::TokenReview,
            expires_at: reviewed.expires_at,
            pod: reviewed.pod,
            grants: None,
        }),
        Err(err @ ReviewError::Refused { .. }) => Err(AuthError::new(
            "token_review_refused",
            err.to_string(),
            true,
        )),
        Err(err) => {
            tracing::error!(error = %err, "cannot review ServiceAccount tokens");
            Err(AuthError {
                reason: "token_review_unavailable",
                problem: Problem::unavailable(
                    "the server cannot reach the cluster's TokenReview API right now; retry later",
                    5,
                ),
            })
        }
    }
}

/// A rejected authentication: a short reason (a metrics label) and the response.
#[derive(Debug)]
pub struct AuthError {
    /// `missing`, `malformed`, `unknown_token`, `expired`, `wrong_audience`, …
    pub reason: &'static str,
    /// The response to send.
    pub problem: Problem,
}

impl From<AuthError> for Problem {
    fn from(err: AuthError) -> Self {
        err.problem
    }
}

impl AuthError {
    fn new(reason: &'static str, detail: impl Into<String>, token_present: bool) -> Self {
        AuthError {
            reason,
            problem: Problem::unauthenticated(detail, token_present),
        }
    }
}
