//! Serving the router: TCP listener, TLS handshakes, HTTP/1.1 and HTTP/2 connections, a
//! connection limit, slow-client timeouts, and graceful shutdown with a deadline.
//!
//! [`start`] binds and returns a [`RunningServer`] handle (its address, its state, and
//! [`RunningServer::shutdown`]) — what tests use, on `127.0.0.1:0`. [`serve`] runs until a
//! shutdown future completes — what the binary uses with SIGTERM/SIGINT.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use c4gh::keys::SecretKey;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;

use crate::app::{AppState, Settings, router};
use crate::auth::Authenticator;
use crate::auth::jwt::{JwtConfig, JwtError, JwtVerifier};
use crate::auth::passport::{PassportConfig, PassportVerifier};
use crate::auth::tokenreview::{ReviewError, TokenReviewConfig, TokenReviewer};
use crate::auth::tokens::StaticTokens;
use crate::catalog::{Bodies, Catalog, CatalogError};
use crate::tls::{TlsConfig, TlsError, server_config};

/// Everything needed to run a server.
#[derive(Debug)]
pub struct Config {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// The catalog directory.
    pub catalog_dir: PathBuf,
    /// The server's Crypt4GH secret key (headers in the catalog are encrypted for it).
    pub server_key: SecretKey,
    /// TLS; `None` serves plain HTTP (development only; the CLI names it
    /// `--insecure-plain-http`).
    pub tls: Option<TlsConfig>,
    /// Accepted static bearer tokens.
    pub tokens: StaticTokens,
    /// Accepted JWTs, if any.
    pub jwt: Option<JwtConfig>,
    /// Trusted GA4GH passport brokers and visa issuers, if any.
    pub passports: Option<PassportConfig>,
    /// Kubernetes ServiceAccount tokens checked by the cluster's TokenReview API, if wanted.
    pub token_review: Option<TokenReviewConfig>,
    /// Public URL, bulk limit, service-info names.
    pub settings: Settings,
    /// How long shutdown waits for in-flight requests before closing connections.
    pub shutdown_timeout: Duration,
    /// Most simultaneous connections; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Deadline for a TLS handshake and for a request head (slow clients are dropped).
    pub client_timeout: Duration,
}

impl Config {
    /// A configuration with defaults: `127.0.0.1:0`, no tokens, no JWT, bulk limit 100,
    /// 10 s shutdown timeout, 1024 connections, 30 s client timeout.
    pub fn new(catalog_dir: PathBuf, server_key: SecretKey, tls: Option<TlsConfig>) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            catalog_dir,
            server_key,
            tls,
            tokens: StaticTokens::default(),
            jwt: None,
            passports: None,
            token_review: None,
            settings: Settings::default(),
            shutdown_timeout: Duration::from_secs(10),
            max_connections: 1024,
            client_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The catalog could not be loaded.
    #[error("loading the catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The JWT verifier could not be set up.
    #[error("setting up JWT verification: {0}")]
    Jwt(#[from] JwtError),
    /// The TokenReview client could not be set up.
    #[error("setting up TokenReview: {0}")]
    TokenReview(#[from] ReviewError),
    /// The listen address could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server task panicked or was cancelled.
    #[error("the server task failed: {0}")]
    Task(String),
}

/// A server running in the background.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    tls: bool,
    state: Arc<AppState>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT` (or `http://` without TLS).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The DRS base URL, `{base_url}/ga4gh/drs/v1`.
    pub fn drs_url(&self) -> String {
        format!("{}/ga4gh/drs/v1", self.base_url())
    }

    /// The application state (catalog, metrics).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Stops accepting connections, lets in-flight requests finish (up to the shutdown
    /// timeout), and returns when the server has stopped.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let _ = self.stop.send(true);
        self.task.await.map_err(|e| ServeError::Task(e.to_string()))
    }
}

/// Loads the catalog, binds the listener and starts serving in the background.
pub async fn start(config: Config) -> Result<RunningServer, ServeError> {
    let Config {
        listen,
        catalog_dir,
        server_key,
        tls,
        tokens,
        jwt,
        passports,
        token_review,
        mut settings,
        shutdown_timeout,
        max_connections,
        client_timeout,
    } = config;
    let bodies = if settings.body_store.is_some() {
        Bodies::Store
    } else {
        Bodies::Files
    };
    let catalog = Catalog::open_with(&catalog_dir, bodies)?;
    let jwt = jwt.map(JwtVerifier::new).transpose()?;
    let passports = passports.map(PassportVerifier::new).transpose()?;
    let reviewer = token_review.map(TokenReviewer::new).transpose()?;
    let acceptor = tls
        .as_ref()
        .map(server_config)
        .transpose()?
        .map(TlsAcceptor::from);
    settings.tls = acceptor.is_some();
    let objects = catalog.len();
    let state = AppState::new(
        catalog,
        server_key,
        Authenticator::new(tokens, jwt)
            .with_passports(passports)
            .with_token_review(reviewer),
        settings,
    );
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: listen,
        source,
    })?;
    tracing::info!(%addr, tls = acceptor.is_some(), objects, "c4gh-drs-server listening");
    let (stop, stopped) = watch::channel(false);
    let limits = Limits {
        shutdown_timeout,
        max_connections: max_connections.max(1),
        client_timeout,
    };
    let app = router(Arc::clone(&state));
    let task = tokio::spawn(accept_loop(listener, acceptor, app, stopped, limits));
    Ok(RunningServer {
        addr,
        tls: tls.is_some(),
        state,
        stop,
        task,
    })
}

/// Runs the server until `shutdown` completes, then shuts down gracefully.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let server = start(config).await?;
    shutdown.await;
    tracing::info!("shutting down");
    server.shutdown().await
}

struct Limits {
    shutdown_timeout: Duration,
    max_connections: usize,
    client_timeout: Duration,
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    app: Router,
    mut stopped: watch::Receiver<bool>,
    limits: Limits,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.client_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = stopped.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let service = TowerToHyperService::new(app.clone());
        let handshake_timeout = limits.client_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let io = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => Either::Left(tls),
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => Either::Right(stream),
            };
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            if let Err(err) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout_s = limits.shutdown_timeout.as_secs_f64(),
            "in-flight requests did not finish before the shutdown timeout; closing them"
        );
    }
}
