//! The HTTP application: the router and the request middleware (span, metrics, problem bodies
//! for 405). The state the handlers share is [`crate::state`] (re-exported here).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, OriginalUri, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::Instrument;

use crate::audit::RequestId;
use crate::metrics::{RequestLabels, RouteLabels};
use crate::problem::{Problem, ProblemMarker};
use crate::routes;

pub use crate::state::{AppState, Settings};

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
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
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
