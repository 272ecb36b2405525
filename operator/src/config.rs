//! The operator's configuration: one clap struct, every flag also an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, ValueEnum};

use crate::effective::DEFAULT_SIDECAR_IMAGE;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (in-cluster).
    Json,
}

/// Examples shown after `c4gh-operator --help`.
const EXAMPLES: &str = "\
EXAMPLES:
  In a cluster (the Deployment of manifests/base):
    kubectl apply -k manifests/overlays/self-managed-certs
  Outside the cluster, against any API server:
    c4gh-operator --kubeconfig ~/.kube/config --webhook-addr 127.0.0.1:8443 \\
        --health-addr 127.0.0.1:8080 --webhook-url https://127.0.0.1:8443/mutate-pods
  Then check the installation:
    kubectl c4gh doctor";

/// The command-line definition (for completions and man pages).
pub fn command() -> clap::Command {
    Config::command()
}

/// Kubernetes operator of crypt4gh-sidecar: the admission webhook that injects the sidecar into
/// opted-in TES task pods, the Crypt4ghPolicy controller and the webhook's certificates.
///
/// Kubernetes access: --kubeconfig (or KUBECONFIG), then ~/.kube/config, then the in-cluster
/// service account.
#[derive(Parser, Clone, Debug)]
#[command(name = "c4gh-operator", version, after_help = EXAMPLES)]
pub struct Config {
    /// HTTPS address of the admission webhook.
    #[arg(
        long,
        env = "C4GH_OPERATOR_WEBHOOK_ADDR",
        default_value = "0.0.0.0:8443"
    )]
    pub webhook_addr: SocketAddr,
    /// HTTP address of /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "C4GH_OPERATOR_HEALTH_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub health_addr: SocketAddr,
    /// Kubeconfig file (default: kube's inference).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the operator's certificate Secret and Lease (also excluded from injection).
    #[arg(long, env = "C4GH_OPERATOR_NAMESPACE", default_value = "c4gh-system")]
    pub namespace: String,
    /// Name of the Service in front of the webhook (serving certificate DNS names).
    #[arg(long, env = "C4GH_OPERATOR_SERVICE", default_value = "c4gh-operator")]
    pub service: String,
    /// Name of the MutatingWebhookConfiguration to publish caBundle into.
    #[arg(
        long,
        env = "C4GH_OPERATOR_WEBHOOK_CONFIG",
        default_value = "c4gh-operator"
    )]
    pub webhook_config: String,
    /// Run outside the cluster: write the MutatingWebhookConfiguration with this
    /// clientConfig.url (e.g. https://127.0.0.1:8443/mutate-pods; the TESK webhook gets the same
    /// origin with /mutate-tesk); the URL's host is added to the serving certificate.
    #[arg(long, env = "C4GH_OPERATOR_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Secret holding the self-managed CA and serving certificate.
    #[arg(
        long,
        env = "C4GH_OPERATOR_CERT_SECRET",
        default_value = "c4gh-operator-webhook-tls"
    )]
    pub cert_secret: String,
    /// Serve tls.crt and tls.key from this directory instead of managing certificates (e.g. a
    /// cert-manager Secret mounted as a volume); reloaded when they change.
    #[arg(long, env = "C4GH_OPERATOR_CERT_DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Lifetime of self-managed serving certificates (seconds); renewed with a third left.
    #[arg(long, env = "C4GH_OPERATOR_SERVING_CERT_SECONDS", default_value_t = 30 * 24 * 3600)]
    pub serving_cert_seconds: u64,
    /// Lifetime of the self-managed CA (seconds).
    #[arg(long, env = "C4GH_OPERATOR_CA_SECONDS", default_value_t = 5 * 365 * 24 * 3600)]
    pub ca_seconds: u64,
    /// Lease that elects the one replica writing certificates.
    #[arg(long, env = "C4GH_OPERATOR_LEASE", default_value = "c4gh-operator")]
    pub lease: String,
    /// Identity in the Lease (default: the pod name or the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Read policies from this YAML file instead of the API server (no Kubernetes access at all
    /// when --cert-dir is also given): for benchmarks and experiments.
    #[arg(long, env = "C4GH_OPERATOR_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,
    /// Default sidecar image (a policy's spec.sidecar.image overrides it).
    #[arg(long, env = "C4GH_OPERATOR_SIDECAR_IMAGE", default_value = DEFAULT_SIDECAR_IMAGE)]
    pub sidecar_image: String,
    /// Log format of injected sidecars (their C4GH_LOG_FORMAT).
    #[arg(long, env = "C4GH_OPERATOR_SIDECAR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub sidecar_log_format: LogFormat,
    /// Log format of the operator.
    #[arg(long, env = "C4GH_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Seconds to drain open connections on SIGTERM.
    #[arg(long, env = "C4GH_OPERATOR_SHUTDOWN_SECONDS", default_value_t = 15)]
    pub shutdown_seconds: u64,
}

impl Config {
    /// DNS names and IPs of the self-managed serving certificate: the Service's names and, in
    /// URL mode, the URL's host.
    pub fn serving_names(&self) -> Vec<String> {
        let (svc, ns) = (&self.service, &self.namespace);
        let mut names = vec![
            format!("{svc}.{ns}.svc"),
            svc.clone(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc.cluster.local"),
        ];
        if let Some(host) = self.webhook_url.as_deref().and_then(url_host) {
            names.insert(0, host);
        }
        names
    }
}

/// The host of an `https://host[:port]/path` URL (brackets of IPv6 literals removed).
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            url_host("https://127.0.0.1:8443/mutate-pods").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(url_host("https://[::1]:8443/x").as_deref(), Some("::1"));
        assert_eq!(
            url_host("https://op.example/x").as_deref(),
            Some("op.example")
        );
        assert_eq!(url_host("http://op.example/x"), None);
    }
}
