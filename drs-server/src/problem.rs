//! One error type for every HTTP response that is not a success: RFC 9457 `problem+json`.
//!
//! The body is [`drs::types::Problem`]: the RFC 9457 members (`type`, `title`, `status`,
//! `detail`), a stable machine-readable `code` from [`ProblemCode`] (the SDA v2 names
//! `KEY_MISSING` / `KEY_CONFLICT` where they apply), and the DRS `Error` members `msg` and
//! `status_code` so DRS clients that expect the DRS error schema read it too. Details of
//! server-side failures (5xx) are logged, not sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use drs::types::{PROBLEM_JSON, ProblemCode};

/// A failed request: status, a stable code, and a message that says what to do.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    code: ProblemCode,
    detail: String,
    www_authenticate: Option<&'static str>,
    content_range: Option<String>,
    allow: Option<HeaderValue>,
    retry_after: Option<u32>,
}

impl Problem {
    /// A problem with `status`, stable `code` and a specific `detail`.
    pub fn new(status: StatusCode, code: ProblemCode, detail: impl Into<String>) -> Self {
        Problem {
            status,
            code,
            detail: detail.into(),
            www_authenticate: None,
            content_range: None,
            allow: None,
            retry_after: None,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> ProblemCode {
        self.code
    }

    /// The human-readable detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// 400: the public key header is absent.
    pub fn key_missing() -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            ProblemCode::KeyMissing,
            "send the Crypt4GH public key to re-encrypt the header for, as base64 of the \
             Crypt4GH PEM public key file (or of the raw 32-byte key), in the X-C4GH-Public-Key \
             header (or Htsget-Context-Public-Key)",
        )
    }

    /// 400: both public key headers were sent.
    pub fn key_conflict() -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            ProblemCode::KeyConflict,
            "send the public key in exactly one of X-C4GH-Public-Key and \
             Htsget-Context-Public-Key, not both",
        )
    }

    /// 400: the public key header could not be decoded.
    pub fn key_invalid(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, ProblemCode::KeyInvalid, detail)
    }

    /// 400: the object ID in the path is not acceptable.
    pub fn invalid_id(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, ProblemCode::InvalidId, detail)
    }

    /// 400: the request is malformed (body, parameter, header).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, ProblemCode::BadRequest, detail)
    }

    /// 404: no object with this ID.
    pub fn object_not_found(id: &str) -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            ProblemCode::NotFound,
            format!("no object with ID {id:?} in this server's catalog"),
        )
    }

    /// 404: no access method with this ID on the object.
    pub fn access_not_found(id: &str, access_id: &str) -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            ProblemCode::NotFound,
            format!(
                "object {id:?} has no access method {access_id:?}; the object's access_methods \
                 list the access IDs it supports"
            ),
        )
    }

    /// 401 with a `WWW-Authenticate: Bearer` challenge.
    pub fn unauthenticated(detail: impl Into<String>, token_present: bool) -> Self {
        let mut problem = Problem::new(
            StatusCode::UNAUTHORIZED,
            ProblemCode::Unauthenticated,
            detail,
        );
        problem.www_authenticate = Some(if token_present {
            "Bearer realm=\"c4gh-drs\", error=\"invalid_token\""
        } else {
            "Bearer realm=\"c4gh-drs\""
        });
        problem
    }

    /// 403: the identity is bound to another recipient key (see [`crate::binding`]).
    pub fn key_not_bound(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::FORBIDDEN, ProblemCode::Forbidden, detail)
    }

    /// 403: the passports hold no visa granting the object's dataset (`detail` says which visa
    /// or claim was missing, expired or untrusted).
    pub fn no_grant(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::FORBIDDEN, ProblemCode::Forbidden, detail)
    }

    /// 403: authenticated, but the object's readers do not admit the subject.
    pub fn forbidden(id: &str, subject: &str) -> Self {
        Problem::new(
            StatusCode::FORBIDDEN,
            ProblemCode::Forbidden,
            format!(
                "subject {subject:?} may not read object {id:?}; ask the data steward to add it \
                 to the object's readers or to a dataset reader rule of its dataset"
            ),
        )
    }

    /// 405 with the `Allow` header of the route.
    pub fn method_not_allowed(method: &str, path: &str, allow: Option<HeaderValue>) -> Self {
        let allowed = allow
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("other methods")
            .to_owned();
        let mut problem = Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ProblemCode::BadRequest,
            format!("{method} is not supported on {path}; it supports {allowed}"),
        );
        problem.allow = allow;
        problem
    }

    /// 404 for a path this server does not serve.
    pub fn no_route(path: &str) -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            ProblemCode::NotFound,
            format!(
                "{path:?} is not an endpoint of this server; DRS lives under /ga4gh/drs/v1 (see \
                 /ga4gh/drs/v1/service-info)"
            ),
        )
    }

    /// 413: a bulk request names more items than allowed.
    pub fn bulk_too_large(requested: usize, limit: usize) -> Self {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ProblemCode::BulkTooLarge,
            format!(
                "the request names {requested} items but this server accepts at most {limit} per \
                 bulk request (service-info drs.maxBulkRequestLength); split it into smaller \
                 requests"
            ),
        )
    }

    /// 416 with `Content-Range: bytes */size`.
    pub fn range_not_satisfiable(range: &str, size: u64) -> Self {
        let mut problem = Problem::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ProblemCode::RangeNotSatisfiable,
            format!("range {range:?} does not overlap the body, which is {size} bytes long"),
        );
        problem.content_range = Some(format!("bytes */{size}"));
        problem
    }

    /// 422: the stored object's header cannot be opened with the server key.
    pub fn not_crypt4gh(id: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(object = id, error = %cause, "stored header unusable");
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ProblemCode::NotCrypt4gh,
            format!(
                "the stored header of object {id:?} cannot be opened with this server's key; \
                 the data steward must re-add the object"
            ),
        )
    }

    /// 500: something failed on the server. `cause` is logged, never sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ProblemCode::Internal,
            "the server failed to handle this request; the server log has the details",
        )
    }

    /// 503 with `Retry-After: retry_after_s`: a dependency (the token issuer, the object
    /// store's STS) is unreachable.
    pub fn unavailable(detail: impl Into<String>, retry_after_s: u32) -> Self {
        let mut problem = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ProblemCode::Unavailable,
            detail,
        );
        problem.retry_after = Some(retry_after_s);
        problem
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code.as_str(),
            self.detail
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = drs::types::Problem::new(self.status.as_u16(), self.code, self.detail);
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (self.status, bytes).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(challenge) = self.www_authenticate {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(range) = self
            .content_range
            .and_then(|v| HeaderValue::try_from(v).ok())
        {
            headers.insert(header::CONTENT_RANGE, range);
        }
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, allow);
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(ProblemMarker(self.code));
        response
    }
}

/// Marks a response as carrying a problem body (the middleware leaves it alone and counts
/// authentication failures by it).
#[derive(Debug, Clone, Copy)]
pub struct ProblemMarker(pub ProblemCode);
