//! `c4gh-drs-server`: a GA4GH DRS 1.5 server for Crypt4GH objects that re-encrypts each
//! object's header for the requester's public key and serves the encrypted body unchanged.
//!
//! The protocol is `docs/drs-crypt4gh.md`; operating the server is `docs/drs-server.md`.
//!
//! - [`catalog`]: objects stored as header + body + JSON record in one directory;
//! - [`store`]: bodies in an S3-compatible object store (pre-signed URLs, multipart upload);
//! - [`credentials`]: the object store's credentials (AWS chain, STS web identity, refresh);
//! - [`cli`]: the command line of the binary;
//! - [`admin`]: encrypt a plain file for the server key and register it;
//! - [`auth`]: static bearer tokens, JWTs (OIDC / Kubernetes ServiceAccount issuers),
//!   ServiceAccount tokens checked by the cluster's TokenReview API, GA4GH passports;
//! - [`audit`]: one structured event and one counted decision per header issued or refused;
//! - [`binding`]: optionally one recipient key per identity for its token's lifetime;
//! - [`body_token`]: short-lived body tokens in passport holders' body access URLs;
//! - [`app`]: the axum [`router`](app::router) (no sockets: drive it with `oneshot`) over the
//!   shared [`state`];
//! - [`server`]: TLS, connections and graceful shutdown: [`server::start`] for tests and
//!   embedding (ephemeral port, returns a handle), [`server::serve`] for the binary;
//! - [`testing`] (feature `test-support`): a throw-away CA and a ready server for other crates'
//!   tests.
//!
//! ```
//! use axum::body::Body;
//! use axum::http::{Request, StatusCode};
//! use drs_server::app::{AppState, Settings, router};
//! use drs_server::auth::Authenticator;
//! use drs_server::catalog::Catalog;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! let state = AppState::new(
//!     Catalog::open(dir.path()).unwrap(),
//!     c4gh::SecretKey::generate(),
//!     Authenticator::default(),
//!     Settings::default(),
//! );
//! let request = Request::get("/ga4gh/drs/v1/service-info")
//!     .header("host", "drs.example.org")
//!     .body(Body::empty())
//!     .unwrap();
//! let response = router(state).oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! # }
//! ```

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod binding;
pub mod body;
pub mod body_token;
pub mod catalog;
pub mod cli;
pub mod credentials;
pub mod crypt;
pub mod metrics;
pub mod problem;
pub mod routes;
pub mod secret;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod tls;

pub use app::{AppState, Settings, router};
pub use server::{Config, RunningServer, ServeError, serve, start};
