//! The pod mutating admission webhook: an axum [`router`] around [`inject::mutate`]. Serving it
//! (TLS, health and metrics) is [`crate::serving`]; the policy lookup it shares with the TESK
//! webhook is [`crate::admission`].
//!
//! Events: a pod being admitted has no UID (and often no name, only `generateName`), so an Event
//! cannot reference it. Events go to the pod's controlling owner when it has one (the Job of a
//! TESK executor, which `kubectl describe job` shows), else to the `Crypt4ghPolicy` that was
//! applied. Dry-run requests emit no Events (`sideEffects: None`).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::ResourceExt;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::runtime::events::{Event, EventType, Recorder};

use crate::admission::{self, EffectivePolicies, Lookup};
use crate::annotations;
use crate::denial::Denial;
use crate::inject;
use crate::metrics::{Metrics, Outcome};
use crate::policy::Crypt4ghPolicy;

/// Path of the pod mutation endpoint.
pub const MUTATE_PATH: &str = "/mutate-pods";

/// Shared state of the webhook handlers (the pod webhook's and the TESK webhook's).
#[derive(Clone)]
pub struct WebhookState {
    /// Policies and their cached effective form.
    pub policies: Arc<EffectivePolicies>,
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
    let Some((pod, namespace)) = admission::created(req) else {
        return (response, "skipped");
    };
    if !inject::should_inject(pod) {
        return (response, "skipped");
    }
    let policy_name = pod
        .annotations()
        .get(annotations::POLICY)
        .cloned()
        .unwrap_or_else(|| annotations::DEFAULT_POLICY_NAME.to_owned());
    let policy = state.policies.lookup(&namespace, &policy_name);
    let result = match &policy {
        Lookup::Missing => Err(Denial::NoPolicy {
            namespace: namespace.clone(),
            name: policy_name.clone(),
        }),
        Lookup::Invalid { problems, .. } => Err(Denial::InvalidPolicy {
            namespace: namespace.clone(),
            name: policy_name.clone(),
            problems: problems.to_string(),
        }),
        Lookup::Valid { effective, .. } => inject::injection(pod, effective),
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
                policy.policy(),
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
                policy.policy(),
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::admission::StaticPolicies;
    use crate::effective::OperatorDefaults;

    fn state() -> WebhookState {
        WebhookState {
            policies: Arc::new(EffectivePolicies::new(
                Arc::new(
                    StaticPolicies::from_yaml(include_str!("../tests/golden/policy.yaml")).unwrap(),
                ),
                Arc::new(OperatorDefaults::default()),
            )),
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
