//! Prometheus metrics of the operator (`/metrics` on the health port).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of an admission outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `injected`, `denied`, `skipped` (not opted in / not a pod create) or `error`.
    pub result: &'static str,
}

/// All metrics, registered in one [`Registry`].
#[derive(Debug)]
pub struct Metrics {
    /// Admission reviews answered, by outcome.
    pub admissions: Family<Outcome, Counter>,
    /// Time to answer one admission review (seconds).
    pub admission_seconds: Histogram,
    /// Serving certificates issued by this process.
    pub certificates_issued: Counter,
    /// Serving certificates loaded into the TLS server (initial load and reloads).
    pub certificate_reloads: Counter,
    /// Expiry of the served certificate (Unix seconds).
    pub serving_cert_expiry: Gauge,
    /// Policy reconciliations, by outcome (`ready`, `invalid`, `error`).
    pub reconciliations: Family<Outcome, Counter>,
    /// TESK task ConfigMaps reviewed, by outcome (`adapted`, `unchanged`, `denied`, `skipped`,
    /// `error`).
    pub tesk_admissions: Family<Outcome, Counter>,
    registry: Registry,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("c4gh_operator");
        let admissions = Family::<Outcome, Counter>::default();
        let admission_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let certificates_issued = Counter::default();
        let certificate_reloads = Counter::default();
        let serving_cert_expiry = Gauge::default();
        let reconciliations = Family::<Outcome, Counter>::default();
        let tesk_admissions = Family::<Outcome, Counter>::default();
        registry.register(
            "admissions",
            "Admission reviews answered",
            admissions.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to answer one admission review",
            admission_seconds.clone(),
        );
        registry.register(
            "certificates_issued",
            "Webhook serving certificates issued",
            certificates_issued.clone(),
        );
        registry.register(
            "certificate_reloads",
            "Serving certificates loaded into the TLS server",
            certificate_reloads.clone(),
        );
        registry.register(
            "serving_cert_expiry_timestamp_seconds",
            "Expiry of the served webhook certificate",
            serving_cert_expiry.clone(),
        );
        registry.register(
            "policy_reconciliations",
            "Crypt4ghPolicy reconciliations",
            reconciliations.clone(),
        );
        registry.register(
            "tesk_admissions",
            "TESK task ConfigMaps reviewed",
            tesk_admissions.clone(),
        );
        Self {
            admissions,
            admission_seconds,
            certificates_issued,
            certificate_reloads,
            serving_cert_expiry,
            reconciliations,
            tesk_admissions,
            registry,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
