//! The Crypt4GH endpoints: the header re-encrypted for the requester's key, and the unchanged
//! encrypted body; each under this project's paths and the SDA v2-compatible ones.
//!
//! - `GET /c4gh/v1/objects/{id}/header` and `GET /files/{id}/header`: the stored header
//!   re-encrypted, with a fresh writer key, for the key in `X-C4GH-Public-Key` or
//!   `Htsget-Context-Public-Key` (exactly one). `X-C4GH-Content-ETag` and `SDA-Content-ETag`
//!   carry the ETag of the body the header belongs to.
//! - `GET|HEAD /c4gh/v1/objects/{id}/body` and `/files/{id}/content`: the body, with Range and
//!   ETag (see [`crate::body`]), for a reader's bearer token or a body token of that object
//!   ([`crate::body_token`], minted for passport holders by the access endpoint); with an object
//!   store ([`crate::store`]), a `307` to a fresh pre-signed URL of the body instead.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use drs::types::{CONTENT_ETAG_HEADER, HEADER_MEDIA_TYPE, PostObjectBody};

use super::{ObjectId, SIGNING_UNAVAILABLE, json_body};
use crate::audit::{HeaderAudit, RequestId};
use crate::binding::BindingError;
use crate::problem::Problem;
use crate::state::{AppState, admits};
use crate::{body, body_token, crypt};

/// SDA v2's response header tying a header to its body.
pub const SDA_CONTENT_ETAG_HEADER: &str = "SDA-Content-ETag";

/// The routes.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/c4gh/v1/objects/{object_id}/header",
            get(header_handler).post(header_post),
        )
        .route("/c4gh/v1/objects/{object_id}/body", get(body_handler))
        .route("/files/{object_id}/header", get(header_handler))
        .route("/files/{object_id}/content", get(body_handler))
}

async fn header_handler(
    State(state): State<Arc<AppState>>,
    Extension(request_id): Extension<RequestId>,
    ObjectId(id): ObjectId,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    header_response(&state, &id, &headers, &request_id, &[]).await
}

/// `POST` form of the header request: a JSON body with `passports` authenticates a request
/// without a bearer token.
async fn header_post(
    State(state): State<Arc<AppState>>,
    Extension(request_id): Extension<RequestId>,
    ObjectId(id): ObjectId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    match json_body::<PostObjectBody>(&headers, body, true).await {
        Ok(request) => {
            header_response(&state, &id, &headers, &request_id, &request.passports).await
        }
        Err(problem) => {
            let outcome = Err(problem);
            HeaderAudit::new(&id, &request_id).finish(&state.metrics, &outcome);
            outcome
        }
    }
}

/// Issues or refuses the header, recording the decision in the audit trail.
async fn header_response(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    request_id: &RequestId,
    passports: &[String],
) -> Result<Response, Problem> {
    let mut audit = HeaderAudit::new(id, request_id);
    let outcome = issue_header(state, id, headers, passports, &mut audit).await;
    audit.finish(&state.metrics, &outcome);
    outcome
}

async fn issue_header(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    passports: &[String],
    audit: &mut HeaderAudit,
) -> Result<Response, Problem> {
    let recipient = crypt::requester_key(headers);
    let fingerprint = recipient.as_ref().ok().map(crypt::fingerprint);
    if let Some(fingerprint) = &fingerprint {
        audit.key(fingerprint.clone());
    }
    let principal = state
        .authenticate_with(headers, passports)
        .await
        .map_err(|err| audit.refuse(err.reason, err.problem))?;
    audit.principal(&principal);
    let object = state.find(id)?;
    audit.dataset(object.record.dataset.as_deref());
    admits(&object, &principal, &state.settings.dataset_readers).map_err(|p| {
        let reason = if principal.grants.is_some() {
            "no_grant"
        } else {
            "not_reader"
        };
        audit.refuse(reason, p)
    })?;
    let recipient = recipient?;
    if let (Some(bindings), Some(fingerprint)) = (&state.key_bindings, &fingerprint) {
        bindings
            .check(&principal, fingerprint)
            .map_err(|err| match err {
                BindingError::Full(_) => audit.refuse(
                    "key_binding_full",
                    Problem::unavailable(err.to_string(), 10),
                ),
                _ => audit.refuse("key_binding", Problem::key_not_bound(err.to_string())),
            })?;
    }
    let header_bytes = crypt::reencrypt(&object, &state.server_key, &recipient)?;
    state.metrics.reencryptions.inc();
    let mut response = header_bytes.into_response();
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(HEADER_MEDIA_TYPE),
    );
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(etag) = HeaderValue::try_from(object.etag.as_str()) {
        out.insert(CONTENT_ETAG_HEADER, etag.clone());
        out.insert(SDA_CONTENT_ETAG_HEADER, etag);
    }
    Ok(response)
}

async fn body_handler(
    State(state): State<Arc<AppState>>,
    ObjectId(id): ObjectId,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let object = match bearer(&headers).filter(|t| body_token::is_body_token(t)) {
        Some(token) => {
            let grant = state.body_tokens.verify(token, &id).map_err(|err| {
                state.metrics.count_auth_failure("body_token");
                Problem::unauthenticated(err.to_string(), true)
            })?;
            tracing::debug!(object = %id, holder = %grant.holder, "body token accepted");
            state.find(&id)?
        }
        None => {
            let principal = state.authenticate(&headers).await?;
            state.readable(&id, &principal)?
        }
    };
    if let Some(store) = &state.settings.body_store {
        // The body is in the object store: send the reader there with a fresh signed URL (a
        // client follows it without its credential, which is for this server only).
        let signed = store.signed_get(&object.record.id).map_err(|err| {
            tracing::error!(object = %object.record.id, error = %err, "cannot sign a body URL");
            Problem::unavailable(SIGNING_UNAVAILABLE, 30)
        })?;
        let url = HeaderValue::try_from(signed.as_str())
            .map_err(|e| Problem::internal(format!("a signed URL is not a header value: {e}")))?;
        let mut response = axum::http::StatusCode::TEMPORARY_REDIRECT.into_response();
        response.headers_mut().insert(header::LOCATION, url);
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(response);
    }
    body::serve(&object, &headers, Arc::clone(&state.metrics)).await
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
