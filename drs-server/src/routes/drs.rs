//! GA4GH DRS 1.5: service-info, objects, access, OPTIONS and the bulk forms.
//!
//! Every object has two `https` access methods: `crypt4gh-header` (its access URL returns the
//! header re-encrypted for the key in `X-C4GH-Public-Key`) and `crypt4gh-body` (the unchanged
//! encrypted body, with Range). `size` and the `sha-256` checksum describe the encrypted body.
//! Bulk requests naming more than `max_bulk` items get 413. Callers authenticate with a bearer
//! token or, when passport issuers are configured, with `passports` in POST bodies; a passport
//! holder's `crypt4gh-body` access URL carries a short-lived body token in its `headers`
//! ([`crate::body_token`]). With an object store ([`crate::store`]) the `crypt4gh-body` access
//! URL is a short-lived pre-signed URL of the store instead, with no headers.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use drs::types::{
    AccessMethod, AccessType, AccessUrl, AuthType, Authorizations, BODY_ACCESS_ID,
    BulkAccessRequest, BulkAccessResponse, BulkAccessUrl, BulkObjectRequest, BulkObjectResponse,
    BulkOptionsResponse, Checksum, Crypt4ghServiceExt, DrsObject, DrsServiceExt, HEADER_ACCESS_ID,
    Organization, PostObjectBody, ServiceInfo, ServiceType, Summary, Unresolved,
};

use super::{AccessPath, ObjectId, SIGNING_UNAVAILABLE, json_body};
use crate::catalog::{MAX_HEADER_BYTES, Object};
use crate::problem::Problem;
use crate::state::AppState;

type AppResult = Result<Response, Problem>;

/// Routes relative to `/ga4gh/drs/v1`.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/service-info", get(service_info))
        .route("/objects", post(bulk_objects).options(bulk_options))
        .route("/objects/access", post(bulk_access))
        .route(
            "/objects/{object_id}",
            get(get_object).post(post_object).options(options_object),
        )
        .route(
            "/objects/{object_id}/access/{access_id}",
            get(get_access).post(post_access),
        )
}

async fn service_info(State(state): State<Arc<AppState>>, headers: HeaderMap) -> AppResult {
    let base = state.base_url(&headers)?;
    let info = ServiceInfo {
        id: state.settings.service_id.clone(),
        name: state.settings.service_name.clone(),
        r#type: ServiceType {
            group: "org.ga4gh".into(),
            artifact: "drs".into(),
            version: "1.5.0".into(),
        },
        description: Some(
            "DRS server for Crypt4GH objects: headers are re-encrypted for the requester's \
             public key (X-C4GH-Public-Key), bodies are served unchanged."
                .into(),
        ),
        organization: Some(Organization {
            name: state.settings.service_name.clone(),
            url: base,
        }),
        contact_url: None,
        documentation_url: None,
        created_at: None,
        updated_at: None,
        environment: None,
        version: env!("CARGO_PKG_VERSION").into(),
        drs: Some(DrsServiceExt {
            max_bulk_request_length: Some(state.settings.max_bulk as u64),
            object_count: Some(state.catalog.len() as u64),
            total_object_size: None,
        }),
        crypt4gh: Some(Crypt4ghServiceExt {
            max_header_bytes: Some(MAX_HEADER_BYTES),
            sda_compatible: true,
            ..Crypt4ghServiceExt::default()
        }),
    };
    Ok(Json(info).into_response())
}

fn authorizations(state: &AppState, id: Option<&str>) -> Authorizations {
    Authorizations {
        drs_object_id: id.map(str::to_owned),
        supported_types: if state.auth.passport_issuers().is_empty() {
            vec![AuthType::BearerAuth]
        } else {
            vec![AuthType::BearerAuth, AuthType::PassportAuth]
        },
        passport_auth_issuers: state.auth.passport_issuers(),
        bearer_auth_issuers: state
            .auth
            .jwt_issuer()
            .map(|i| vec![i.to_owned()])
            .unwrap_or_default(),
    }
}

/// The DRS object for `object` as seen from `base`.
fn drs_object(base: &str, object: &Object) -> DrsObject {
    let record = &object.record;
    let authority = base.split_once("://").map_or(base, |(_, rest)| rest);
    let method = |access_id: &str| AccessMethod {
        r#type: AccessType::Https,
        access_url: None,
        access_id: Some(access_id.to_owned()),
        cloud: None,
        region: None,
        // `available` and `authorizations` are optional in DRS 1.5 and rejected by the 1.2.0
        // schemas that DRS tooling still validates against; OPTIONS gives the authorizations.
        available: None,
        authorizations: None,
    };
    DrsObject {
        id: record.id.clone(),
        name: record.name.clone(),
        self_uri: format!("drs://{authority}/{}", record.id),
        size: record.body.size,
        created_time: record.created_time.clone(),
        updated_time: None,
        version: None,
        mime_type: record.mime_type.clone(),
        checksums: vec![Checksum {
            checksum: record.body.sha256.clone(),
            r#type: "sha-256".into(),
        }],
        access_methods: vec![method(HEADER_ACCESS_ID), method(BODY_ACCESS_ID)],
        contents: Vec::new(),
        description: Some(record.description.clone().unwrap_or_else(|| {
            format!(
                "Crypt4GH object: the header is re-encrypted per recipient (access_id \
                 crypt4gh-header), the body is served unchanged (crypt4gh-body); size and \
                 checksums describe the encrypted body. Plaintext: {} bytes, sha-256 {}.",
                record.plaintext.size, record.plaintext.sha256
            )
        })),
        aliases: Vec::new(),
    }
}

async fn get_object(
    State(state): State<Arc<AppState>>,
    ObjectId(id): ObjectId,
    headers: HeaderMap,
) -> AppResult {
    object_response(&state, &id, &headers, &[]).await
}

async fn post_object(
    State(state): State<Arc<AppState>>,
    ObjectId(id): ObjectId,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let request: PostObjectBody = json_body(&headers, body, true).await?;
    object_response(&state, &id, &headers, &request.passports).await
}

async fn object_response(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    passports: &[String],
) -> AppResult {
    let principal = state.authenticate_with(headers, passports).await?;
    let object = state.readable(id, &principal)?;
    let base = state.base_url(headers)?;
    Ok(Json(drs_object(&base, &object)).into_response())
}

async fn options_object(State(state): State<Arc<AppState>>, ObjectId(id): ObjectId) -> AppResult {
    state.find(&id)?;
    Ok(Json(authorizations(&state, Some(&id))).into_response())
}

/// The access URL of `access_id` on `id`: for the body with an object store, a pre-signed URL
/// of the store (a credential until it expires: never logged).
///
/// # Errors
///
/// 404 for an unknown access ID; 503 when the store's credentials expired unrefreshed.
fn access_url(
    state: &AppState,
    base: &str,
    id: &str,
    access_id: &str,
) -> Result<AccessUrl, Problem> {
    let path = match access_id {
        HEADER_ACCESS_ID => "header",
        BODY_ACCESS_ID => {
            if let Some(store) = &state.settings.body_store {
                let url = store.signed_get(id).map_err(|err| {
                    tracing::error!(object = %id, error = %err, "cannot sign a body URL");
                    Problem::unavailable(SIGNING_UNAVAILABLE, 30)
                })?;
                return Ok(AccessUrl {
                    url: url.into(),
                    headers: Vec::new(),
                });
            }
            "body"
        }
        _ => return Err(Problem::access_not_found(id, access_id)),
    };
    Ok(AccessUrl {
        url: format!("{base}/c4gh/v1/objects/{id}/{path}"),
        headers: Vec::new(),
    })
}

async fn get_access(
    State(state): State<Arc<AppState>>,
    AccessPath(id, access_id): AccessPath,
    headers: HeaderMap,
) -> AppResult {
    access_response(&state, &id, &access_id, &headers, &[]).await
}

async fn post_access(
    State(state): State<Arc<AppState>>,
    AccessPath(id, access_id): AccessPath,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let request: PostObjectBody = json_body(&headers, body, true).await?;
    access_response(&state, &id, &access_id, &headers, &request.passports).await
}

async fn access_response(
    state: &AppState,
    id: &str,
    access_id: &str,
    headers: &HeaderMap,
    passports: &[String],
) -> AppResult {
    let principal = state.authenticate_with(headers, passports).await?;
    state.readable(id, &principal)?;
    let base = state.base_url(headers)?;
    let mut url = access_url(state, &base, id, access_id)?;
    url.headers = body_headers(state, &principal, id, access_id);
    let mut response = Json(url).into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// The headers of a body access URL for a passport holder: a body token (see
/// [`crate::body_token`]), since the body endpoint is a `GET` that carries no passports. Other
/// callers send their own bearer token. A signed object-store URL needs no header (and must get
/// none: it goes to another host).
fn body_headers(
    state: &AppState,
    principal: &crate::auth::Principal,
    id: &str,
    access_id: &str,
) -> Vec<String> {
    if access_id != BODY_ACCESS_ID
        || principal.grants.is_none()
        || state.settings.body_store.is_some()
    {
        return Vec::new();
    }
    let token = state
        .body_tokens
        .mint(id, &principal.subject, principal.expires_at);
    vec![format!("Authorization: Bearer {token}")]
}

/// Groups per-ID failures by status code for the `unresolved_drs_objects` list.
#[derive(Default)]
struct Unresolveds(BTreeMap<u16, Vec<String>>);

impl Unresolveds {
    fn add(&mut self, problem: &Problem, id: &str) {
        self.0
            .entry(problem.status().as_u16())
            .or_default()
            .push(id.to_owned());
    }

    fn count(&self) -> usize {
        self.0.values().map(Vec::len).sum()
    }

    fn into_list(self) -> Vec<Unresolved> {
        self.0
            .into_iter()
            .map(|(error_code, object_ids)| Unresolved {
                error_code,
                object_ids,
            })
            .collect()
    }
}

/// Resolves each ID with `resolve`, sorting the answers into resolved items and unresolved IDs
/// grouped by status.
fn resolve_each<T>(
    ids: &[String],
    mut resolve: impl FnMut(&str) -> Result<T, Problem>,
) -> (Vec<T>, Unresolveds) {
    let mut resolved = Vec::new();
    let mut unresolved = Unresolveds::default();
    for id in ids {
        match resolve(id) {
            Ok(item) => resolved.push(item),
            Err(problem) => unresolved.add(&problem, id),
        }
    }
    (resolved, unresolved)
}

/// The `summary` block of a bulk response.
fn summary(requested: usize, resolved: usize, unresolved: &Unresolveds) -> Option<Summary> {
    Some(Summary {
        requested: requested as u64,
        resolved: resolved as u64,
        unresolved: unresolved.count() as u64,
    })
}

fn check_bulk_len(state: &AppState, requested: usize) -> Result<(), Problem> {
    if requested > state.settings.max_bulk {
        return Err(Problem::bulk_too_large(requested, state.settings.max_bulk));
    }
    if requested == 0 {
        return Err(Problem::bad_request("the bulk request names no object IDs"));
    }
    Ok(())
}

async fn bulk_objects(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let request: BulkObjectRequest = json_body(&headers, body, false).await?;
    check_bulk_len(&state, request.bulk_object_ids.len())?;
    let principal = state
        .authenticate_with(&headers, &request.passports)
        .await?;
    let base = state.base_url(&headers)?;
    let (resolved, unresolved) = resolve_each(&request.bulk_object_ids, |id| {
        state
            .readable(id, &principal)
            .map(|object| drs_object(&base, &object))
    });
    let response = BulkObjectResponse {
        summary: summary(request.bulk_object_ids.len(), resolved.len(), &unresolved),
        unresolved_drs_objects: unresolved.into_list(),
        resolved_drs_object: resolved,
    };
    Ok(Json(response).into_response())
}

async fn bulk_options(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let request: BulkObjectRequest = json_body(&headers, body, false).await?;
    check_bulk_len(&state, request.bulk_object_ids.len())?;
    let (resolved, unresolved) = resolve_each(&request.bulk_object_ids, |id| {
        state.find(id).map(|_| authorizations(&state, Some(id)))
    });
    let response = BulkOptionsResponse {
        summary: summary(request.bulk_object_ids.len(), resolved.len(), &unresolved),
        unresolved_drs_objects: unresolved.into_list(),
        resolved_drs_object: resolved,
    };
    Ok(Json(response).into_response())
}

async fn bulk_access(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let request: BulkAccessRequest = json_body(&headers, body, false).await?;
    let items: usize = request
        .bulk_object_access_ids
        .iter()
        .map(|o| o.bulk_access_ids.len().max(1))
        .sum();
    check_bulk_len(&state, items)?;
    let principal = state
        .authenticate_with(&headers, &request.passports)
        .await?;
    let base = state.base_url(&headers)?;
    let mut resolved = Vec::new();
    let mut unresolved = Unresolveds::default();
    for entry in &request.bulk_object_access_ids {
        let id = &entry.bulk_object_id;
        if let Err(problem) = state.readable(id, &principal) {
            unresolved.add(&problem, id);
            continue;
        }
        if entry.bulk_access_ids.is_empty() {
            unresolved.add(&Problem::bad_request("no access IDs"), id);
        }
        for access_id in &entry.bulk_access_ids {
            match access_url(&state, &base, id, access_id) {
                Ok(url) => resolved.push(BulkAccessUrl {
                    drs_object_id: Some(id.clone()),
                    drs_access_id: Some(access_id.clone()),
                    url: url.url,
                    headers: body_headers(&state, &principal, id, access_id),
                }),
                Err(problem) => unresolved.add(&problem, id),
            }
        }
    }
    let response = BulkAccessResponse {
        summary: summary(
            request.bulk_object_access_ids.len(),
            resolved.len(),
            &unresolved,
        ),
        unresolved_drs_objects: unresolved.into_list(),
        resolved_drs_object_access_urls: resolved,
    };
    let mut response = Json(response).into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}
