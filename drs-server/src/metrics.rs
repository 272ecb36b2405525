//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::S3Store;

/// Labels of a request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route template, e.g. `/ga4gh/drs/v1/objects/{object_id}` (never the object ID).
    pub route: String,
    /// The HTTP method.
    pub method: String,
    /// The response status code.
    pub status: u16,
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route template.
    pub route: String,
}

/// Labels of the authentication failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The problem code, e.g. `TOKEN_EXPIRED`.
    pub reason: String,
}

/// Labels of the header decision counter (the audit trail's counterpart).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `issued` or `refused`.
    pub decision: String,
    /// `granted`, or why the header was refused (`not_reader`, `key_binding`, `expired`, …).
    pub reason: String,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route, method and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by route (until the response head; bodies stream afterwards).
    pub latency: Family<RouteLabels, Histogram>,
    /// Headers re-encrypted for a requester's key.
    pub reencryptions: Counter,
    /// Encrypted body bytes sent.
    pub body_bytes: Counter,
    /// Rejected authentications by reason.
    pub auth_failures: Family<ReasonLabels, Counter>,
    /// Header requests by decision and reason (see [`crate::audit`]).
    pub header_decisions: Family<DecisionLabels, Counter>,
}

impl Metrics {
    /// Registers every metric under the `c4gh_drs` prefix.
    pub fn new() -> Arc<Self> {
        Self::with_store(None)
    }

    /// As [`Metrics::new`], with the object store's credential metrics (see
    /// [`crate::credentials::CredentialProvider::register_metrics`]) when there is one.
    pub fn with_store(store: Option<&S3Store>) -> Arc<Self> {
        let mut registry = Registry::with_prefix("c4gh_drs");
        if let Some(store) = store {
            store.credentials().register_metrics(&mut registry);
        }
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests handled", requests.clone());
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head",
            latency.clone(),
        );
        let reencryptions = Counter::default();
        registry.register(
            "header_reencryptions",
            "Crypt4GH headers re-encrypted for a requester's public key",
            reencryptions.clone(),
        );
        let body_bytes = Counter::default();
        registry.register(
            "body_bytes",
            "Encrypted body bytes sent",
            body_bytes.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Rejected authentications",
            auth_failures.clone(),
        );
        let header_decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "header_decisions",
            "Crypt4GH header requests issued or refused, by reason",
            header_decisions.clone(),
        );
        Arc::new(Metrics {
            registry,
            requests,
            latency,
            reencryptions,
            body_bytes,
            auth_failures,
            header_decisions,
        })
    }

    /// Counts a rejected authentication (`c4gh_drs_auth_failures_total{reason}`) and logs it.
    pub fn count_auth_failure(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
        tracing::info!(reason, "authentication rejected");
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
