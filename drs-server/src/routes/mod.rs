//! Request handlers, by API: DRS 1.5 ([`drs`]) and the Crypt4GH header/body endpoints including
//! the SDA v2-compatible ones ([`crypt4gh`]); plus the extractors they share.

pub mod crypt4gh;
pub mod drs;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::extract::rejection::PathRejection;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// Largest accepted JSON request body.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// The detail of the 503 answered when a body URL cannot be signed (the cause, which names the
/// role and STS, is in the server log only).
pub const SIGNING_UNAVAILABLE: &str = "the server cannot sign object-store URLs now: its \
     temporary object-store credentials expired and refreshing them fails (the server log says why)";

/// The `{object_id}` path parameter (checked against the catalog's ID rules on lookup).
#[derive(Debug)]
pub struct ObjectId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ObjectId {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(path_problem)?;
        Ok(ObjectId(id))
    }
}

/// The `{object_id}` and `{access_id}` path parameters.
#[derive(Debug)]
pub struct AccessPath(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for AccessPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path((id, access)) =
            axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(path_problem)?;
        Ok(AccessPath(id, access))
    }
}

fn path_problem(rejection: PathRejection) -> Problem {
    Problem::invalid_id(format!(
        "the object ID in the path is not usable: {}",
        rejection.body_text()
    ))
}

/// Reads a JSON body of at most [`MAX_JSON_BODY`] bytes. An empty body is `T::default()` when
/// `allow_empty`; anything that is not the expected JSON is a 400 naming line, column and field.
pub async fn json_body<T: DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: Body,
    allow_empty: bool,
) -> Result<T, Problem> {
    if let Some(kind) = headers.get(header::CONTENT_TYPE) {
        let kind = kind.to_str().unwrap_or("");
        let essence = kind.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") && !essence.ends_with("+json") {
            return Err(Problem::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ::drs::types::ProblemCode::BadRequest,
                format!("the request body must be application/json, not {kind:?}"),
            ));
        }
    }
    let bytes = axum::body::to_bytes(body, MAX_JSON_BODY)
        .await
        .map_err(|_| {
            Problem::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                ::drs::types::ProblemCode::BadRequest,
                format!("the request body is larger than {MAX_JSON_BODY} bytes"),
            )
        })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        if allow_empty {
            return Ok(T::default());
        }
        return Err(Problem::bad_request(
            "this endpoint needs a JSON request body",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| Problem::bad_request(describe_json_error(&e)))
}

/// A serde_json error as a message that never echoes string values from the request (they may
/// be passports).
fn describe_json_error(e: &serde_json::Error) -> String {
    let message = e.to_string();
    match e.classify() {
        serde_json::error::Category::Data if message.contains("string \"") => format!(
            "malformed JSON body: a value has the wrong type or is not allowed at line {} column {}",
            e.line(),
            e.column()
        ),
        serde_json::error::Category::Data => format!("malformed JSON body: {message}"),
        _ => format!("malformed JSON body: {message}"),
    }
}
