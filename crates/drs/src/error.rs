//! The client's error type: what failed, for which object and URL, and what to do about it.
//!
//! URLs in errors are passed through [`redact_url`](crate::types::redact_url) (no query strings,
//! no userinfo) and server-supplied text is shortened and stripped of control characters, so an
//! error can be logged or written to a pod's termination message as is.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::types::{InvalidObject, Problem, ProblemCode, redact_url};
use crate::uri::UriError;

/// Result alias for this crate's client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the DRS client can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `drs://` URI is malformed.
    #[error(transparent)]
    Uri(#[from] UriError),

    /// Client configuration is unusable (bad CA bundle, token file, prefix map, …).
    #[error("DRS client configuration: {what}")]
    Config {
        /// What is wrong and what to change.
        what: String,
    },

    /// A credential file could not be read.
    #[error("cannot read {what} from {}: {source}", path.display())]
    CredentialFile {
        /// `bearer token`, `passports`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    /// A compact identifier could not be resolved.
    #[error("cannot resolve `{uri}`: {detail}")]
    Resolve {
        /// The compact `drs://` URI.
        uri: String,
        /// Why, and what to configure.
        detail: String,
    },

    /// The server answered with an error status.
    #[error("{status} from {host} for object `{object}` ({url}): {hint}{}", server_says(.problem))]
    Status {
        /// HTTP status code.
        status: u16,
        /// Host (and port) that answered.
        host: String,
        /// Object id (or URI) being fetched.
        object: String,
        /// Redacted request URL.
        url: String,
        /// The problem+json / DRS error body, if the server sent one.
        problem: Option<Box<Problem>>,
        /// What the status usually means and what to do.
        hint: String,
    },

    /// Connection, TLS or protocol failure that retries did not overcome.
    #[error("request to {url} for object `{object}` failed after {attempts} attempt(s): {source}")]
    Transport {
        /// Object id.
        object: String,
        /// Redacted URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        source: reqwest::Error,
    },

    /// A deadline passed (response headers, a whole small response, or an idle body read).
    #[error(
        "{what} from {url} for object `{object}` timed out after {after:?} ({attempts} attempt(s)); the server is too slow or unreachable"
    )]
    Timeout {
        /// Object id.
        object: String,
        /// Redacted URL.
        url: String,
        /// Which deadline.
        what: &'static str,
        /// The deadline.
        after: Duration,
        /// Attempts made.
        attempts: u32,
    },

    /// The server kept answering `202 Accepted` (or 5xx with `Retry-After`) past the wait limit.
    #[error(
        "object `{object}` at {url} was still not ready after waiting {waited:?}; try again later"
    )]
    NotReady {
        /// Object id.
        object: String,
        /// Redacted URL.
        url: String,
        /// Total time waited.
        waited: Duration,
    },

    /// A response body was not the JSON expected.
    #[error("unexpected response from {url} for object `{object}`: {detail}")]
    BadResponse {
        /// Object id.
        object: String,
        /// Redacted URL.
        url: String,
        /// What was wrong.
        detail: String,
    },

    /// The DRS object breaks a DRS rule.
    #[error(transparent)]
    InvalidObject(#[from] InvalidObject),

    /// The object does not offer what the chosen header flavour needs.
    #[error("object `{object}` does not support {what}; {hint}")]
    Unsupported {
        /// Object id.
        object: String,
        /// What is missing.
        what: String,
        /// What to do.
        hint: &'static str,
    },

    /// The server sent a header larger than the configured limit; it was not read further.
    #[error(
        "the Crypt4GH header for object `{object}` from {url} is larger than {limit} bytes; refusing it (a header for one recipient is 124 bytes)"
    )]
    HeaderTooLarge {
        /// Object id.
        object: String,
        /// Redacted URL.
        url: String,
        /// The limit.
        limit: usize,
    },

    /// The header endpoint returned something that is not a Crypt4GH header.
    #[error("the response from {url} for object `{object}` is not a Crypt4GH header: {detail}")]
    NotAHeader {
        /// Object id.
        object: String,
        /// Redacted URL.
        url: String,
        /// What was wrong.
        detail: String,
    },

    /// The body has a different length than the object's `size`.
    #[error("body of object `{object}` from {url}: {detail} (expected {expected} bytes)")]
    Length {
        /// Object id.
        object: String,
        /// Redacted URL.
        url: String,
        /// Expected length.
        expected: u64,
        /// What the server did.
        detail: String,
    },

    /// A body download kept being interrupted without progress until the retry policy was
    /// spent.
    #[error(
        "body of object `{object}` from {url}: gave up after {attempts} interrupted attempts without progress at byte {at} of {expected}: {detail}; the connection to the server is unreliable, try again later"
    )]
    Interrupted {
        /// Object id.
        object: String,
        /// Redacted URL.
        url: String,
        /// Failed attempts in a row.
        attempts: u32,
        /// Body bytes received and kept.
        at: u64,
        /// Expected length.
        expected: u64,
        /// The last failure.
        detail: String,
    },

    /// The downloaded body does not match the object's checksum.
    #[error(
        "body of object `{object}` has {kind} {actual}, but the DRS object lists {expected}; the download is corrupt or the object changed — retry, and report it to the data steward if it persists"
    )]
    Checksum {
        /// Object id.
        object: String,
        /// Checksum type (`sha-256`).
        kind: String,
        /// Listed value.
        expected: String,
        /// Computed value.
        actual: String,
    },

    /// The body changed (new ETag) while being downloaded and could not be restarted.
    #[error(
        "body of object `{object}` changed during the download (ETag {before} → {after}); restart the fetch"
    )]
    BodyChanged {
        /// Object id.
        object: String,
        /// ETag expected.
        before: String,
        /// ETag seen.
        after: String,
    },

    /// An object store (or another host than the DRS server) refused the signed URL of a body.
    #[error(
        "{status} from {host} for the signed body URL of object `{object}` ({url}){}: {hint}",
        store_says(.code)
    )]
    SignedUrlRefused {
        /// Object id.
        object: String,
        /// Host (and port) that answered.
        host: String,
        /// HTTP status code.
        status: u16,
        /// The URL without its (signed) query string.
        url: String,
        /// The store's error code and message (S3 XML `Code: Message`), sanitised.
        code: String,
        /// What it usually means and what to do.
        hint: &'static str,
    },

    /// Writing the downloaded bytes failed.
    #[error("cannot write object `{object}` to {}: {source}", path.display())]
    Write {
        /// Object id.
        object: String,
        /// Destination (empty for non-file sinks).
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// The problem+json code the server returned, if any.
    pub fn problem_code(&self) -> Option<ProblemCode> {
        match self {
            Error::Status {
                problem: Some(p), ..
            } => p.problem_code(),
            _ => None,
        }
    }

    /// The HTTP status, for [`Error::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn status_error(
        status: u16,
        url: &reqwest::Url,
        object: &str,
        problem: Option<Problem>,
    ) -> Self {
        Error::Status {
            status,
            host: authority_of(url),
            object: object.to_owned(),
            url: redact_url(url.as_str()),
            hint: hint_for(status, problem.as_ref().and_then(Problem::problem_code)),
            problem: problem.map(Box::new),
        }
    }
}

fn store_says(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(", the store said: {code}")
    }
}

/// What a refused signed body URL usually means, by the store's error code.
pub(crate) fn signed_url_hint(status: u16, code: &str) -> &'static str {
    let name = code.split(':').next().unwrap_or("").trim();
    match (status, name) {
        (
            _,
            "SignatureDoesNotMatch" | "InvalidAccessKeyId" | "AuthorizationQueryParametersError",
        ) => {
            "the store does not accept the URL's signature: the URL was altered on the way, or the DRS server signs with object-store credentials (or a region) the store does not accept; ask the archive's operator to check the DRS server's S3 credentials and --s3-region"
        }
        (_, "NoSuchKey" | "NoSuchBucket") | (404, _) => {
            "the store has no body at this URL: the archive's catalog lists an object whose body is not in the bucket; tell the archive's operator (c4gh-drs-server add uploads the body before registering it)"
        }
        (_, "AccessDenied" | "RequestExpired" | "ExpiredToken") => {
            "the store refused the URL (expired or not allowed) and a renewed one did not help; check this machine's clock, or ask the archive's operator whether the DRS server's S3 credentials may read the bucket"
        }
        _ => "the store refused the signed URL; ask the archive's operator",
    }
}

/// `Code: Message` of an S3 XML error document (empty when there is none), sanitised.
pub(crate) fn s3_error_code(xml: &str) -> String {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = xml.find(&open)? + open.len();
        let len = xml[start..].find(&close)?;
        Some(&xml[start..start + len])
    };
    match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => sanitize(&format!("{code}: {message}"), 200),
        (Some(code), None) => sanitize(code, 200),
        _ => String::new(),
    }
}

/// Whether an S3 error code says the signature's lifetime is over (a new URL will work).
pub(crate) fn is_expiry(code: &str) -> bool {
    let name = code.split(':').next().unwrap_or("").trim();
    matches!(
        name,
        "ExpiredToken" | "RequestExpired" | "TokenRefreshRequired"
    ) || (name == "AccessDenied" && code.to_ascii_lowercase().contains("expired"))
}

/// When a pre-signed URL stops being valid by its own query, if it says: `X-Amz-Date` +
/// `X-Amz-Expires` (S3 SigV4) or `X-Goog-Date` + `X-Goog-Expires` (GCS V4), the date as
/// `YYYYMMDDTHHMMSSZ`.
pub(crate) fn signed_url_expiry(url: &reqwest::Url) -> Option<SystemTime> {
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.into_owned())
    };
    let (date, expires) = match (param("X-Amz-Date"), param("X-Amz-Expires")) {
        (Some(d), Some(e)) => (d, e),
        _ => (param("X-Goog-Date")?, param("X-Goog-Expires")?),
    };
    let expires: u64 = expires.parse().ok()?;
    let b = date.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| date.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let signed = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(signed.checked_add(expires)?))
}

/// `host[:port]` of a URL.
pub(crate) fn authority_of(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

fn server_says(problem: &Option<Box<Problem>>) -> String {
    let Some(p) = problem else {
        return String::new();
    };
    let code = p
        .code
        .as_deref()
        .map(|c| format!("{c}: "))
        .unwrap_or_default();
    match p.message() {
        Some(m) => format!(" (server said: {code}{})", sanitize(m, 300)),
        None if !code.is_empty() => format!(" (server code {})", sanitize(&code, 60)),
        None => String::new(),
    }
}

/// Shortens server text and removes control characters so it cannot forge log lines.
pub(crate) fn sanitize(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

fn hint_for(status: u16, code: Option<ProblemCode>) -> String {
    let s = match (status, code) {
        (_, Some(ProblemCode::KeyMissing)) => {
            "the server did not receive the public key header; this is a client/server protocol mismatch — check the header flavour configured for this server"
        }
        (_, Some(ProblemCode::KeyConflict)) => {
            "the request carried two public key headers; check for a proxy adding `Htsget-Context-Public-Key`"
        }
        (_, Some(ProblemCode::KeyInvalid)) => {
            "the server rejected the public key format; check the header flavour (base64 of the Crypt4GH PEM public key)"
        }
        (_, Some(ProblemCode::NotCrypt4gh)) => {
            "the stored file cannot be re-encrypted by the server (not Crypt4GH or not encrypted for the server key); report it to the data steward"
        }
        (401, _) => {
            "the credential was missing or rejected; check the bearer token (C4GH_TOKEN_FILE: expired? right audience?) or passports (C4GH_PASSPORTS_FILE)"
        }
        (403, _) => {
            "the credential is valid but not allowed to read this object; ask the data steward for access"
        }
        (404, _) => "no such object on this server; check the id in the drs:// URI",
        (413, _) => "the bulk request is longer than the server's maxBulkRequestLength",
        (416, _) => "the requested range is outside the object",
        (429, _) => "rate limited by the server; retries were exhausted, try again later",
        (400..=499, _) => "the server rejected the request",
        (500..=599, _) => {
            "server-side failure; retries were exhausted, try again later or contact the server operator"
        }
        _ => "unexpected HTTP status",
    };
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_errors_say_who_what_and_what_to_do() {
        let url =
            reqwest::Url::parse("https://drs.example.org/ga4gh/drs/v1/objects/X?sig=abc").unwrap();
        let e = Error::status_error(401, &url, "X", None);
        let msg = e.to_string();
        assert!(
            msg.starts_with("401 from drs.example.org for object `X`"),
            "{msg}"
        );
        assert!(msg.contains("C4GH_TOKEN_FILE"), "{msg}");
        assert!(!msg.contains("sig=abc"), "{msg}");

        let p = Problem::new(400, ProblemCode::KeyMissing, "send it\r\nForged: log");
        let e = Error::status_error(400, &url, "X", Some(p));
        let msg = e.to_string();
        assert!(
            msg.contains("server said: KEY_MISSING: send it  Forged: log"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        assert_eq!(e.problem_code(), Some(ProblemCode::KeyMissing));
        assert_eq!(e.status(), Some(400));
    }

    #[test]
    fn signed_url_lifetimes() {
        let at = |q: &str| {
            signed_url_expiry(&reqwest::Url::parse(&format!("https://s3.test/b/k?{q}")).unwrap())
        };
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        // 2026-12-02T07:29:36Z is 1796196576.
        assert_eq!(
            at("X-Amz-Date=20261202T072936Z&X-Amz-Expires=300&X-Amz-Signature=s").map(secs),
            Some(1_796_196_576 + 300)
        );
        assert_eq!(
            at("X-Goog-Date=20000301T000000Z&X-Goog-Expires=0").map(secs),
            Some(951_868_800)
        );
        assert_eq!(at("X-Amz-Date=2026-12-02&X-Amz-Expires=300"), None);
        assert_eq!(at("X-Amz-Date=20261302T072936Z&X-Amz-Expires=300"), None);
        assert_eq!(at("sig=abc"), None);
    }

    #[test]
    fn sanitize_caps_length() {
        assert_eq!(sanitize("abcdef", 3), "abc…");
        assert_eq!(sanitize("a\tb", 10), "a b");
    }
}
