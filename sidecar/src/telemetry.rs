//! Logging (`tracing`, JSON or text on stderr) and Prometheus metrics (`prometheus-client`,
//! served at `/metrics` when `C4GH_METRICS_ADDR` is set).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global `tracing` subscriber writing to stderr. `RUST_LOG` refines the level
/// (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    if let Err(e) = result {
        eprintln!("c4gh-sidecar: logging already initialised: {e}");
    }
}

/// Labels of the per-object counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    /// `encrypted`, `plaintext` or `stream`.
    pub mode: String,
    /// `ok` or `error`.
    pub result: String,
}

/// Labels of the retry counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    /// Why ([`drs::RetryReason::as_str`]: `transport`, `response_body`, `integrity`, …).
    pub reason: String,
}

/// Labels of the key destruction counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabels {
    /// What destroyed it: `task_exit` (the task containers' exit notices) or `signal`.
    pub trigger: String,
}

/// The sidecar's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Objects finished, by mode and result.
    pub objects: Family<ObjectLabels, Counter>,
    /// Body bytes received from DRS.
    pub bytes: Counter,
    /// Fetches in progress.
    pub in_flight: Gauge,
    /// Seconds per object fetch.
    pub fetch_seconds: Histogram,
    /// 1 once every input is in place.
    pub ready: Gauge,
    /// Retries of transient failures, by reason.
    pub retries: Family<RetryLabels, Counter>,
    /// Keys destroyed, by trigger.
    pub key_destroyed: Family<KeyLabels, Counter>,
    retry_sum: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("c4gh_sidecar");
        let objects = Family::<ObjectLabels, Counter>::default();
        let bytes = Counter::default();
        let in_flight = Gauge::default();
        let fetch_seconds = Histogram::new(exponential_buckets(0.01, 4.0, 10));
        let ready = Gauge::default();
        let retries = Family::<RetryLabels, Counter>::default();
        let key_destroyed = Family::<KeyLabels, Counter>::default();
        registry.register(
            "objects",
            "Objects fetched, by mode and result",
            objects.clone(),
        );
        registry.register("body_bytes", "Body bytes received from DRS", bytes.clone());
        registry.register(
            "fetches_in_flight",
            "Fetches in progress",
            in_flight.clone(),
        );
        registry.register(
            "fetch_seconds",
            "Seconds per object fetch",
            fetch_seconds.clone(),
        );
        registry.register("ready", "1 once every input is in place", ready.clone());
        registry.register(
            "retries",
            "Retries of transient failures, by reason",
            retries.clone(),
        );
        registry.register(
            "key_destroyed",
            "Ephemeral keys destroyed, by trigger (task_exit: the task containers' exit notices; signal: SIGTERM/SIGINT)",
            key_destroyed.clone(),
        );
        Metrics {
            registry,
            objects,
            bytes,
            in_flight,
            fetch_seconds,
            ready,
            retries,
            key_destroyed,
            retry_sum: AtomicU64::new(0),
        }
    }

    /// Counts one retry.
    pub fn retry(&self, reason: drs::RetryReason) {
        self.retries
            .get_or_create(&RetryLabels {
                reason: reason.as_str().to_owned(),
            })
            .inc();
        self.retry_sum.fetch_add(1, Ordering::Relaxed);
    }

    /// Retries counted so far, all reasons together.
    pub fn retries_total(&self) -> u64 {
        self.retry_sum.load(Ordering::Relaxed)
    }

    /// Records one finished object.
    pub fn object_done(&self, mode: &str, ok: bool, seconds: f64) {
        self.objects
            .get_or_create(&ObjectLabels {
                mode: mode.to_owned(),
                result: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
        self.fetch_seconds.observe(seconds);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `GET /metrics` on `addr` until the process ends. Returns the bound address.
pub async fn serve_metrics(metrics: Arc<Metrics>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::warn!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters() {
        let m = Metrics::new();
        m.object_done("encrypted", true, 0.5);
        m.bytes.inc_by(42);
        let text = m.encode();
        assert!(
            text.contains(r#"c4gh_sidecar_objects_total{mode="encrypted",result="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains("c4gh_sidecar_body_bytes_total 42"), "{text}");
        m.retry(drs::RetryReason::ResponseBody);
        m.retry(drs::RetryReason::ResponseBody);
        m.retry(drs::RetryReason::Integrity);
        let text = m.encode();
        assert!(
            text.contains(r#"c4gh_sidecar_retries_total{reason="response_body"} 2"#),
            "{text}"
        );
        assert_eq!(m.retries_total(), 3);
    }
}
