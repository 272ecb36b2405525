//! The operator (`c4gh-operator`) as a local process beside the control plane, its webhook
//! registered by URL (`--webhook-url https://127.0.0.1:PORT/mutate-pods`) with the CA the
//! operator manages itself: the operator writes the MutatingWebhookConfiguration's `caBundle`,
//! the apiserver calls it over TLS, exactly as in a cluster except for the Service hop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::control_plane::free_port;
use crate::process::Supervised;
use crate::{ControlPlane, Error, workspace};

/// Namespace of the operator's Secret and Lease.
pub const NAMESPACE: &str = "c4gh-system";
/// Name of the MutatingWebhookConfiguration the operator maintains.
pub const WEBHOOK_CONFIG: &str = "c4gh-operator";
/// How long the operator gets to publish its webhook.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// How to run the operator.
#[derive(Debug, Clone)]
pub struct OperatorOptions {
    /// `--serving-cert-seconds` (default: the operator's).
    pub serving_cert_seconds: Option<u64>,
    /// `--ca-seconds` (default: the operator's).
    pub ca_seconds: Option<u64>,
    /// `--sidecar-image`.
    pub sidecar_image: String,
}

impl Default for OperatorOptions {
    fn default() -> Self {
        OperatorOptions {
            serving_cert_seconds: None,
            ca_seconds: None,
            sidecar_image: "ghcr.io/c4gh/c4gh-sidecar:e2e".into(),
        }
    }
}

/// A running operator process. Dropping it stops it.
#[derive(Debug)]
pub struct Operator {
    process: Supervised,
    webhook_url: String,
    health_port: u16,
}

impl Operator {
    /// Starts `c4gh-operator` against `plane` and waits until its webhook is registered with a
    /// `caBundle` and its health endpoint answers. (Readiness, `/readyz`, is for tests to assert:
    /// see [`Operator::readyz`].)
    pub async fn start(plane: &ControlPlane, options: &OperatorOptions) -> Result<Self, Error> {
        let bin = workspace::binary("c4gh-operator", "c4gh-operator")?;
        let client = plane.client().await?;
        ensure_namespace(&client, NAMESPACE).await?;
        let webhook_port = free_port()?;
        let health_port = free_port()?;
        let webhook_url = format!("https://127.0.0.1:{webhook_port}/mutate-pods");
        let mut command = Command::new(bin);
        command
            .arg(format!("--kubeconfig={}", plane.kubeconfig().display()))
            .arg(format!("--webhook-addr=127.0.0.1:{webhook_port}"))
            .arg(format!("--health-addr=127.0.0.1:{health_port}"))
            .arg(format!("--webhook-url={webhook_url}"))
            .arg(format!("--namespace={NAMESPACE}"))
            .arg(format!("--sidecar-image={}", options.sidecar_image))
            .arg("--sidecar-log-format=text")
            .arg("--shutdown-seconds=1")
            .env(
                "RUST_LOG",
                std::env::var("C4GH_E2E_OPERATOR_LOG").unwrap_or_else(|_| "info".into()),
            );
        if let Some(seconds) = options.serving_cert_seconds {
            command.arg(format!("--serving-cert-seconds={seconds}"));
        }
        if let Some(seconds) = options.ca_seconds {
            command.arg(format!("--ca-seconds={seconds}"));
        }
        let log = plane
            .dir()
            .join(format!("c4gh-operator-{webhook_port}.log"));
        let process = Supervised::spawn("c4gh-operator", command, &log)?;
        let mut operator = Operator {
            process,
            webhook_url,
            health_port,
        };
        operator.wait_ready(&client).await?;
        Ok(operator)
    }

    /// The URL the apiserver calls.
    pub fn webhook_url(&self) -> &str {
        &self.webhook_url
    }

    /// The operator's answer to `GET /readyz` on its health port (status line, headers, body).
    pub fn readyz(&self) -> String {
        http_get(self.health_port, "/readyz")
    }

    /// The operator's answer to `GET /metrics` on its health port (status line, headers, body).
    pub fn metrics(&self) -> String {
        http_get(self.health_port, "/metrics")
    }

    /// The operator's log so far (last `lines` lines).
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    async fn wait_ready(&mut self, client: &Client) -> Result<(), Error> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.process.try_exit_status()? {
                return Err(Error::Exited {
                    name: "c4gh-operator".into(),
                    status: status.to_string(),
                    log_tail: self.process.log_tail(40),
                });
            }
            let published = webhook_ca_bundle(client).await?;
            let healthz = http_get(self.health_port, "/healthz");
            let ok = published
                .as_ref()
                .is_some_and(|(url, bundle)| *url == self.webhook_url && !bundle.is_empty());
            if ok && healthz.starts_with("HTTP/1.1 200") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "c4gh-operator to publish {WEBHOOK_CONFIG} with url {} and a caBundle \
                         (found: {:?}), and to answer /healthz (last answer: {healthz:?})",
                        self.webhook_url,
                        published.map(|(url, bundle)| (url, bundle.len())),
                    ),
                    log_tail: self.process.log_tail(40),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The first webhook's `clientConfig.url` and `caBundle` in the operator's
/// MutatingWebhookConfiguration, or `None` when it does not exist yet.
pub async fn webhook_ca_bundle(client: &Client) -> Result<Option<(String, Vec<u8>)>, Error> {
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let Some(config) = configs.get_opt(WEBHOOK_CONFIG).await? else {
        return Ok(None);
    };
    let Some(webhook) = config.webhooks.and_then(|w| w.into_iter().next()) else {
        return Ok(None);
    };
    let url = webhook.client_config.url.unwrap_or_default();
    let bundle = webhook
        .client_config
        .ca_bundle
        .map(|b| b.0)
        .unwrap_or_default();
    Ok(Some((url, bundle)))
}

/// Creates namespace `name` unless it exists.
pub async fn ensure_namespace(client: &Client, name: &str) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.to_owned());
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// `GET http://127.0.0.1:port/path`: the whole response (status line, headers, body), or the
/// connection error.
fn http_get(port: u16, path: &str) -> String {
    let mut stream = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(stream) => stream,
        Err(err) => return format!("connecting to 127.0.0.1:{port}: {err}"),
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if let Err(err) = stream.write_all(request.as_bytes()) {
        return format!("sending to 127.0.0.1:{port}: {err}");
    }
    let mut response = Vec::new();
    let _ = stream.take(64 * 1024).read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}
