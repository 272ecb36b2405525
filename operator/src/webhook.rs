//! The mutating admission webhook: an axum [`router`] around [`inject::mutate`], the HTTPS
//! server ([`serve_tls`]) and the health/metrics server ([`health_router`]).
//!
//! Events: a pod being admitted has no UID (and often no name, only `generateName`), so an Event
//! cannot reference it. Events go to the pod's controlling owner when it has one (the Job of a
//! TESK executor, which `kubectl describe job` shows), else to the `Crypt4ghPolicy` that was
//! applied. Dry-run requests emit no Events (`sideEffects: None`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::ResourceExt;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::annotations;
use crate::denial::Denial;
use crate::effective::{EffectivePolicy, OperatorDefaults};
use crate::inject;
use crate::metrics::{Metrics, Outcome};
use crate::policy::Crypt4ghPolicy;
use crate::tls::ReloadingResolver;

/// Path of the pod mutation endpoint.
pub const MUTATE_PATH: &str = "/mutate-pods";

/// Where the webhook finds `Crypt4ghPolicy` objects.
pub trait PolicySource: Send + Sync + 'static {
    /// The policy `name` in `namespace`, if it exists.
    fn lookup(&self, namespace: &str, name: &str) -> Option<Arc<Crypt4ghPolicy>>;
}

impl PolicySource for Store<Crypt4ghPolicy> {
    fn lookup(&self, namespace: &str, name: &str) -> Option<Arc<Crypt4ghPolicy>> {
        self.get(&ObjectRef::new(name).within(namespace))
    }
}

/// Policies loaded once from a YAML file (`--policy-file`): for running the webhook without an
/// API server (benchmarks, local experiments).
#[derive(Debug, Default)]
pub struct StaticPolicies(BTreeMap<(String, String), Arc<Crypt4ghPolicy>>);

impl StaticPolicies {
    /// Parses one or more `Crypt4ghPolicy` YAML documents; each must have a name and namespace.
    ///
    /// # Errors
    ///
    /// A message naming the document that does not parse or lacks a name or namespace.
    pub fn from_yaml(yaml: &str) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for (n, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
            let value = <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc)
                .map_err(|e| format!("document {n}: {e}"))?;
            if value.is_null() {
                continue;
            }
            let policy: Crypt4ghPolicy = serde_yaml_ng::from_value(value)
                .map_err(|e| format!("document {n} is not a Crypt4ghPolicy: {e}"))?;
            let (Some(name), Some(ns)) = (policy.metadata.name.clone(), policy.namespace()) else {
                return Err(format!(
                    "document {n}: metadata.name and metadata.namespace are required"
                ));
            };
            map.insert((ns, name), Arc::new(policy));
        }
        Ok(Self(map))
    }
}

impl PolicySource for StaticPolicies {
    fn lookup(&self, namespace: &str, name: &str) -> Option<Arc<Crypt4ghPolicy>> {
        self.0
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

/// Shared state of the webhook handlers.
#[derive(Clone)]
pub struct WebhookState {
    /// Where policies come from.
    pub policies: Arc<dyn PolicySource>,
    /// Operator-wide defaults.
    pub defaults: Arc<OperatorDefaults>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Event recorder (absent without an API server).
    pub recorder: Option<Recorder>,
}

/// The webhook's routes: `POST /mutate-pods`.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route(MUTATE_PATH, post(mutate_handler))
        .with_state(state)
}

/// Parses the body with `serde_json` directly (axum's `Json` also tracks the path of every field
/// for its error messages); rejections as with `Json`: 415 without a JSON content type
/// (`application/json` or `application/*+json`), 400 for a body that is not an AdmissionReview.
async fn mutate_handler(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| {
            v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
        });
    if !json {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected a request with `Content-Type: application/json`",
        )
            .into_response();
    }
    let count_error = || {
        state
            .metrics
            .admissions
            .get_or_create(&Outcome { result: "error" })
            .inc();
    };
    let review: AdmissionReview<Pod> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            count_error();
            return (
                StatusCode::BAD_REQUEST,
                format!("the body is not an AdmissionReview: {e}"),
            )
                .into_response();
        }
    };
    let req: AdmissionRequest<Pod> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            count_error();
            return review_response(
                StatusCode::BAD_REQUEST,
                AdmissionResponse::invalid(format!("not an AdmissionReview request: {e}")),
            );
        }
    };
    let (response, result) = admit(&state, &req);
    let reply = review_response(StatusCode::OK, response);
    state
        .metrics
        .admissions
        .get_or_create(&Outcome { result })
        .inc();
    state
        .metrics
        .admission_seconds
        .observe(started.elapsed().as_secs_f64());
    reply
}

/// The AdmissionReview response, serialised straight to bytes with the patch as a base64 string
/// (the encoding of a Go `[]byte`); kube-core would write it as an array of numbers, four times
/// larger and slow.
pub(crate) fn review_response(status: StatusCode, mut response: AdmissionResponse) -> Response {
    let patch = response.patch.take();
    let review = ReviewOut {
        api_version: &response.types.api_version,
        kind: &response.types.kind,
        response: ResponseOut {
            response: &response,
            patch: patch.as_deref().map(Base64),
        },
    };
    match serde_json::to_vec(&review) {
        Ok(body) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not serialize the admission response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// An `AdmissionReview` carrying a response.
#[derive(serde::Serialize)]
struct ReviewOut<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    response: ResponseOut<'a>,
}

/// An [`AdmissionResponse`] (without its patch bytes) and the patch in base64.
#[derive(serde::Serialize)]
struct ResponseOut<'a> {
    #[serde(flatten)]
    response: &'a AdmissionResponse,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<Base64<'a>>,
}

/// Bytes serialised as a standard base64 string.
struct Base64<'a>(&'a [u8]);

impl serde::Serialize for Base64<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(self.0))
    }
}

/// Answers one admission request; returns the response and the outcome label.
pub fn admit(
    state: &WebhookState,
    req: &AdmissionRequest<Pod>,
) -> (AdmissionResponse, &'static str) {
    let response = AdmissionResponse::from(req);
    let Some(pod) = req
        .object
        .as_ref()
        .filter(|_| req.operation == Operation::Create)
    else {
        return (response, "skipped");
    };
    if !inject::should_inject(pod) {
        return (response, "skipped");
    }
    let namespace = req
        .namespace
        .clone()
        .or_else(|| pod.namespace())
        .unwrap_or_else(|| "default".to_owned());
    let policy_name = pod
        .annotations()
        .get(annotations::POLICY)
        .cloned()
        .unwrap_or_else(|| annotations::DEFAULT_POLICY_NAME.to_owned());
    let policy = state.policies.lookup(&namespace, &policy_name);
    let result = match &policy {
        None => Err(Denial::NoPolicy {
            namespace: namespace.clone(),
            name: policy_name.clone(),
        }),
        Some(p) => EffectivePolicy::from_spec(&policy_name, &p.spec, &state.defaults)
            .map_err(|problems| Denial::InvalidPolicy {
                namespace: namespace.clone(),
                name: policy_name.clone(),
                problems: problems.join("; "),
            })
            .and_then(|effective| inject::injection(pod, &effective)),
    };
    let pod_desc = pod
        .metadata
        .name
        .clone()
        .or_else(|| pod.metadata.generate_name.as_ref().map(|g| format!("{g}*")))
        .unwrap_or_default();
    match result {
        Ok(injection) => {
            let patch = injection.map(|i| i.patch(pod));
            tracing::info!(namespace, pod = pod_desc, policy = policy_name, "injected");
            emit(
                state,
                req,
                pod,
                policy.as_deref(),
                EventType::Normal,
                "Injected",
                format!("c4gh sidecar injected into pod {pod_desc} (policy {policy_name})"),
            );
            // `with_patch` sets the patch type; the bytes are the ones written by
            // `Injection::patch` (an empty patch when there is nothing to inject).
            match response.with_patch(json_patch::Patch::default()) {
                Ok(mut r) => {
                    if let Some(bytes) = patch {
                        r.patch = Some(bytes);
                    }
                    (r, "injected")
                }
                Err(e) => (
                    AdmissionResponse::from(req)
                        .deny(format!("internal error serializing the patch: {e}")),
                    "error",
                ),
            }
        }
        Err(denial) => {
            let message = denial.to_string();
            tracing::info!(namespace, pod = pod_desc, policy = policy_name, %message, "denied");
            emit(
                state,
                req,
                pod,
                policy.as_deref(),
                EventType::Warning,
                "Denied",
                format!("pod {pod_desc} denied: {message}"),
            );
            (response.deny(message), "denied")
        }
    }
}

/// Publishes an Event (in the background) about an admitted or denied pod; see the module docs
/// for what it references.
fn emit(
    state: &WebhookState,
    req: &AdmissionRequest<Pod>,
    pod: &Pod,
    policy: Option<&Crypt4ghPolicy>,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let Some(recorder) = state.recorder.clone() else {
        return;
    };
    if req.dry_run {
        return;
    }
    let namespace = req.namespace.clone().or_else(|| pod.namespace());
    let owner = pod
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| ObjectReference {
            api_version: Some(o.api_version.clone()),
            kind: Some(o.kind.clone()),
            name: Some(o.name.clone()),
            uid: Some(o.uid.clone()),
            namespace: namespace.clone(),
            ..ObjectReference::default()
        });
    let reference = owner.or_else(|| {
        policy.map(|p| ObjectReference {
            api_version: Some("c4gh.dev/v1alpha1".to_owned()),
            kind: Some("Crypt4ghPolicy".to_owned()),
            name: p.metadata.name.clone(),
            uid: p.metadata.uid.clone(),
            namespace: p.metadata.namespace.clone(),
            ..ObjectReference::default()
        })
    });
    let Some(reference) = reference else {
        return;
    };
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: "Admit".to_owned(),
        secondary: None,
    };
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, "could not publish event");
        }
    });
}

/// Readiness inputs of the health server.
#[derive(Clone)]
pub struct Health {
    /// The TLS resolver (ready once a certificate is loaded).
    pub resolver: Arc<ReloadingResolver>,
    /// Set once the policy cache has synced.
    pub policies_ready: Arc<AtomicBool>,
    /// Metrics to expose.
    pub metrics: Arc<Metrics>,
}

/// `/healthz` (process alive), `/readyz` (certificate loaded and policies synced), `/metrics`.
pub fn health_router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(h): State<Health>| async move {
                if !h.resolver.is_loaded() {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no serving certificate yet",
                    )
                } else if !h.policies_ready.load(Ordering::Relaxed) {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "policy cache not synced yet",
                    )
                } else {
                    (StatusCode::OK, "ok")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(h): State<Health>| async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    h.metrics.encode(),
                )
            }),
        )
        .with_state(health)
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then waits up to
/// `drain` for open connections to finish.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let acceptor = TlsAcceptor::from(config);
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let service = TowerToHyperService::new(app.clone());
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder.serve_connection(TokioIo::new(tls), service).into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("webhook connections drained"),
        () = tokio::time::sleep(drain) => tracing::warn!("webhook drain timed out; closing open connections"),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    fn state() -> WebhookState {
        WebhookState {
            policies: Arc::new(
                StaticPolicies::from_yaml(include_str!("../tests/golden/policy.yaml")).unwrap(),
            ),
            defaults: Arc::new(OperatorDefaults::default()),
            metrics: Arc::new(Metrics::new()),
            recorder: None,
        }
    }

    async fn post(content_type: &str, body: &str) -> (StatusCode, Vec<u8>) {
        let response = router(state())
            .oneshot(
                Request::post(MUTATE_PATH)
                    .header(header::CONTENT_TYPE, content_type)
                    .body(Body::from(body.to_owned()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body.to_vec())
    }

    #[tokio::test]
    async fn rejects_bodies_that_are_not_json_admission_reviews() {
        let (status, body) = post("text/plain", "{}").await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(
            String::from_utf8(body)
                .unwrap()
                .contains("application/json")
        );
        let (status, body) = post("application/json", "{not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            String::from_utf8(body)
                .unwrap()
                .starts_with("the body is not an AdmissionReview")
        );
    }

    #[tokio::test]
    async fn answers_with_a_base64_patch() {
        let pod: serde_json::Value = serde_yaml_ng::from_str::<Pod>(include_str!(
            "../tests/golden/tesk-executor.input.yaml"
        ))
        .map(|p| serde_json::to_value(p).unwrap())
        .unwrap();
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "tasks",
                "operation": "CREATE",
                "userInfo": {"username": "test"},
                "object": pod,
            }
        });
        let (status, body) = post("application/json; charset=utf-8", &review.to_string()).await;
        assert_eq!(status, StatusCode::OK);
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(answer["response"]["uid"], "u-1");
        assert_eq!(answer["response"]["allowed"], true);
        assert_eq!(answer["response"]["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(answer["response"]["patch"].as_str().unwrap())
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
        assert!(!patch.0.is_empty());
    }
}
