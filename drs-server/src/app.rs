//! The HTTP application: shared state, the router, and the request middleware (span, metrics,
//! problem bodies for 405).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use c4gh::keys::SecretKey;
use tracing::Instrument;

use crate::auth::{Authenticator, Principal};
use crate::catalog::{Catalog, Object};
use crate::metrics::{Metrics, ReasonLabels, RequestLabels, RouteLabels};
use crate::problem::{Problem, ProblemMarker};
use crate::routes;

/// Settings of the HTTP application that are not security material.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Public base URL (`https://drs.example.org`) used in `self_uri` and access URLs. When
    /// `None`, it is taken from each request's `Host` header and the listener's scheme.
    pub public_url: Option<String>,
    /// Whether the listener speaks TLS (the scheme used when `public_url` is `None`).
    pub tls: bool,
    /// Most IDs accepted in one bulk request; more → 413.
    pub max_bulk: usize,
    /// `id` of the service-info (reverse domain name).
    pub service_id: String,
    /// `name` of the service-info.
    pub service_name: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            public_url: None,
            tls: true,
            max_bulk: 100,
            service_id: "org.ga4gh.c4gh-drs-server".into(),
            service_name: "c4gh-drs-server".into(),
        }
    }
}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct AppState {
    pub(crate) catalog: Catalog,
    pub(crate) server_key: SecretKey,
    pub(crate) auth: Authenticator,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) settings: Settings,
}

impl AppState {
    /// State serving `catalog` with the server's Crypt4GH `server_key`.
    pub fn new(
        catalog: Catalog,
        server_key: SecretKey,
        auth: Authenticator,
        settings: Settings,
    ) -> Arc<Self> {
        Arc::new(AppState {
            catalog,
            server_key,
            auth,
            metrics: Metrics::new(),
            settings,
        })
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Authenticates the request, counting failures.
    pub(crate) async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Problem> {
        self.auth.authenticate(headers).await.map_err(|err| {
            self.metrics
                .auth_failures
                .get_or_create(&ReasonLabels {
                    reason: err.reason.to_owned(),
                })
                .inc();
            tracing::info!(reason = err.reason, "authentication rejected");
            err.problem
        })
    }

    /// Looks up object `id` and checks that `principal` may read it.
    pub(crate) fn readable(&self, id: &str, principal: &Principal) -> Result<Arc<Object>, Problem> {
        let object = self.find(id)?;
        if !object.record.admits(&principal.subject) {
            tracing::info!(object = id, subject = %principal.subject, "access denied");
            return Err(Problem::forbidden(id, &principal.subject));
        }
        Ok(object)
    }

    /// Looks up object `id`.
    pub(crate) fn find(&self, id: &str) -> Result<Arc<Object>, Problem> {
        match self.catalog.get(id) {
            Ok(Some(object)) => Ok(object),
            Ok(None) => Err(Problem::object_not_found(id)),
            Err(crate::catalog::CatalogError::InvalidId { id, reason }) => Err(
                Problem::invalid_id(format!("invalid object ID {id:?}: {reason}")),
            ),
            Err(err) => Err(Problem::internal(err)),
        }
    }

    /// The public base URL for a request: the configured one, else from `Host`.
    pub(crate) fn base_url(&self, headers: &HeaderMap) -> Result<String, Problem> {
        if let Some(url) = &self.settings.public_url {
            return Ok(url.trim_end_matches('/').to_owned());
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.len() <= 255
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            })
            .ok_or_else(|| {
                Problem::bad_request("the request has no valid Host header to build URLs from")
            })?;
        let scheme = if self.settings.tls { "https" } else { "http" };
        Ok(format!("{scheme}://{host}"))
    }
}

/// The application router. Serving (TLS, connections, shutdown) is separate: see
/// [`crate::server`]. Tests can drive it with `tower::ServiceExt::oneshot`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .nest("/ga4gh/drs/v1", routes::drs::router())
        .merge(routes::crypt4gh::router())
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), track))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn no_route(request: Request) -> Problem {
    Problem::no_route(request.uri().path())
}

/// Per request: a span (request id, method, route), a completion log line, metrics, and a
/// problem body for axum's bare 405 responses.
async fn track(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    // HTTP/2 carries the host in `:authority`, not in a Host header; nested routers see a
    // path-only URI, the original keeps the authority.
    let authority = request
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| request.uri().authority(), |o| o.0.authority())
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    if !request.headers().contains_key(header::HOST)
        && let Some(host) = authority
    {
        request.headers_mut().insert(header::HOST, host);
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let request_id = format!("{:016x}", rand::random::<u64>());
    let span = tracing::info_span!("request", id = %request_id, method = %method, route = %route);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && response.extensions().get::<ProblemMarker>().is_none()
    {
        let allow = response.headers().get(header::ALLOW).cloned();
        response = Problem::method_not_allowed(method.as_str(), &path, allow).into_response();
    }
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            method: method.to_string(),
            status,
        })
        .inc();
    state
        .metrics
        .latency
        .get_or_create(&RouteLabels { route })
        .observe(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            status,
            path = %path,
            latency_us = elapsed.as_micros() as u64,
            "request handled"
        );
    });
    if let Ok(value) = HeaderValue::try_from(request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
