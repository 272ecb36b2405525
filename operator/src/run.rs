//! Wires the parts together: policy source, certificates, webhook and health servers, signals.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admission::{EffectivePolicies, PolicySource, StaticPolicies};
use crate::certs::{self, Lifetimes, Publish, SelfManaged};
use crate::config::{Config, LogFormat, url_host};
use crate::controller::{self, Context};
use crate::effective::OperatorDefaults;
use crate::metrics::Metrics;
use crate::serving::{self, Health};
use crate::tesk_webhook;
use crate::tls::{self, ReloadingResolver};
use crate::webhook::{self, WebhookState};

/// Errors that stop the operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A flag has an unusable value.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The Kubernetes client could not be configured.
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    /// The kubeconfig could not be read.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// A listener could not be bound, or a file read.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// TLS configuration.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Leader election could not start.
    #[error("lease {0}")]
    Lease(String),
}

async fn client(config: &Config) -> Result<kube::Client, RunError> {
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| RunError::Kubeconfig(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| RunError::Kubeconfig(e.to_string()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| RunError::Kubeconfig(e.to_string()))?,
    };
    Ok(kube::Client::try_from(kube_config)?)
}

/// Resolves on SIGTERM or SIGINT.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the operator until SIGTERM/SIGINT.
///
/// # Errors
///
/// [`RunError`] for bad flags, an unreachable/misconfigured API client, or a port in use.
pub async fn run(config: Config) -> Result<(), RunError> {
    if let Some(url) = &config.webhook_url
        && url_host(url).is_none()
    {
        return Err(RunError::Config(format!(
            "--webhook-url {url:?} must be an https:// URL with a host"
        )));
    }
    let metrics = Arc::new(Metrics::new());
    let resolver = Arc::new(ReloadingResolver::new());
    let defaults = Arc::new(OperatorDefaults {
        sidecar_image: config.sidecar_image.clone(),
        sidecar_log_format: match config.sidecar_log_format {
            LogFormat::Json => "json".to_owned(),
            LogFormat::Text => "text".to_owned(),
        },
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutdown requested");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let needs_api = config.policy_file.is_none() || config.cert_dir.is_none();
    let client = if needs_api {
        Some(client(&config).await?)
    } else {
        None
    };
    let policies_ready = Arc::new(AtomicBool::new(false));

    let policies: Arc<dyn PolicySource> = match (&config.policy_file, &client) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|source| RunError::Io {
                what: format!("reading --policy-file {}", path.display()),
                source,
            })?;
            let p = StaticPolicies::from_yaml(&text)
                .map_err(|e| RunError::Config(format!("--policy-file {}: {e}", path.display())))?;
            policies_ready.store(true, Ordering::Relaxed);
            Arc::new(p)
        }
        (None, Some(client)) => {
            let ctx = Arc::new(Context {
                client: client.clone(),
                defaults: defaults.clone(),
                metrics: metrics.clone(),
            });
            let (store, run) = controller::start(ctx, stopped(stop_rx.clone()));
            tokio::spawn(run);
            let ready_store = store.clone();
            let flag = policies_ready.clone();
            tokio::spawn(async move {
                // kube-runtime's readiness signal wakes only the task that polled it last, and
                // the controller polls the same signal, so a single wait can sleep forever.
                // Poll again every second; once the store is ready a new poll returns at once.
                loop {
                    let wait = ready_store.wait_until_ready();
                    match tokio::time::timeout(std::time::Duration::from_secs(1), wait).await {
                        Ok(Ok(())) => {
                            flag.store(true, Ordering::Relaxed);
                            tracing::info!("policy cache synced");
                            break;
                        }
                        Ok(Err(_)) => break,
                        Err(_elapsed) => {}
                    }
                }
            });
            Arc::new(store)
        }
        (None, None) => return Err(RunError::Config("no policy source".to_owned())),
    };

    match (&config.cert_dir, &client) {
        (Some(dir), _) => {
            tokio::spawn(certs::watch_files(
                dir.clone(),
                resolver.clone(),
                metrics.clone(),
                stop_rx.clone(),
            ));
        }
        (None, Some(client)) => {
            let mut builder = LeaseManagerBuilder::new(client.clone(), &config.lease)
                .with_namespace(&config.namespace)
                .with_duration(15)
                .with_grace(5);
            if let Some(id) = &config.identity {
                builder = builder.with_identity(id);
            }
            let lease = builder.build().await.map_err(|e| {
                RunError::Lease(format!("{}/{}: {e}", config.namespace, config.lease))
            })?;
            let (leader, _lease_task) = lease.watch().await;
            let manager = SelfManaged {
                client: client.clone(),
                namespace: config.namespace.clone(),
                secret_name: config.cert_secret.clone(),
                webhook_config_name: config.webhook_config.clone(),
                publish: config
                    .webhook_url
                    .clone()
                    .map_or(Publish::Service, Publish::Url),
                names: config.serving_names(),
                lifetimes: Lifetimes {
                    serving: Duration::from_secs(config.serving_cert_seconds),
                    ca: Duration::from_secs(config.ca_seconds),
                },
                resolver: resolver.clone(),
                metrics: metrics.clone(),
            };
            tokio::spawn(manager.run(leader, stop_rx.clone()));
        }
        (None, None) => return Err(RunError::Config("no certificate source".to_owned())),
    }

    let recorder = client.map(|c| {
        Recorder::new(
            c,
            Reporter {
                controller: "c4gh-operator".to_owned(),
                instance: config.identity.clone(),
            },
        )
    });
    let state = WebhookState {
        policies: Arc::new(EffectivePolicies::new(policies, defaults)),
        metrics: metrics.clone(),
        recorder,
    };
    let bind = |addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Io {
                what: format!("binding {addr}"),
                source,
            })
    };
    let webhook_listener = bind(config.webhook_addr).await?;
    let health_listener = bind(config.health_addr).await?;
    tracing::info!(webhook = %config.webhook_addr, health = %config.health_addr, "serving");
    let health = serving::health_router(Health {
        resolver: resolver.clone(),
        policies_ready,
        metrics,
    });
    let health_stop = stopped(stop_rx.clone());
    let health_task = tokio::spawn(async move {
        if let Err(e) = axum::serve(health_listener, health)
            .with_graceful_shutdown(health_stop)
            .await
        {
            tracing::warn!(error = %e, "health server failed");
        }
    });
    let tls_config = Arc::new(tls::server_config(resolver)?);
    serving::serve_tls(
        webhook_listener,
        tls_config,
        webhook::router(state.clone()).merge(tesk_webhook::router(state)),
        stopped(stop_rx),
        Duration::from_secs(config.shutdown_seconds),
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(2), health_task).await;
    tracing::info!("stopped");
    Ok(())
}
