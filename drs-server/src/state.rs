//! The state every request handler shares ([`AppState`]: catalog, server key, authenticator,
//! metrics, [`Settings`]) and the lookups the routes have in common (authentication, readable
//! objects, the public base URL).

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use c4gh::keys::SecretKey;

use crate::auth::{AuthError, Authenticator, Principal};
use crate::binding::{DEFAULT_MAX_BINDINGS, KeyBindings};
use crate::body_token::BodyTokens;
use crate::catalog::{Catalog, CatalogError, Object, subject_matches};
use crate::metrics::Metrics;
use crate::problem::Problem;
use crate::store::S3Store;

/// Settings of the HTTP application that are not security material.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Public base URL (`https://drs.example.org`) used in `self_uri` and access URLs. When
    /// `None`, it is taken from each request's `Host` header and the listener's scheme.
    pub public_url: Option<String>,
    /// Whether the listener speaks TLS (the scheme used when `public_url` is `None`).
    pub tls: bool,
    /// Most IDs accepted in one bulk request; more → 413.
    pub max_bulk: usize,
    /// `id` of the service-info (reverse domain name).
    pub service_id: String,
    /// `name` of the service-info.
    pub service_name: String,
    /// Bind one recipient key per identity for its token's lifetime (see [`crate::binding`]).
    pub bind_keys: bool,
    /// Most identities bound at once.
    pub max_key_bindings: usize,
    /// How long a static token (no `exp`) stays bound to its first key.
    pub static_binding_ttl: Duration,
    /// Dataset readers: `(dataset, subject pattern)` pairs; a bearer-token caller whose subject
    /// matches the pattern (as in an object's readers, e.g. `system:serviceaccount:lab:*` for
    /// namespace `lab`) may read every object of the dataset, besides each object's own readers.
    pub dataset_readers: Vec<(String, String)>,
    /// Lifetime of the body tokens minted for passport holders (see [`crate::body_token`]).
    pub body_token_ttl: Duration,
    /// Where the bodies are when not in the catalog directory: the `crypt4gh-body` access URL
    /// is then a pre-signed URL of the store (see [`crate::store`]).
    pub body_store: Option<Arc<S3Store>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            public_url: None,
            tls: true,
            max_bulk: 100,
            service_id: "org.ga4gh.c4gh-drs-server".into(),
            service_name: "c4gh-drs-server".into(),
            bind_keys: false,
            max_key_bindings: DEFAULT_MAX_BINDINGS,
            static_binding_ttl: Duration::from_secs(12 * 3600),
            dataset_readers: Vec::new(),
            body_token_ttl: crate::body_token::DEFAULT_TTL,
            body_store: None,
        }
    }
}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct AppState {
    pub(crate) catalog: Catalog,
    pub(crate) server_key: SecretKey,
    pub(crate) auth: Authenticator,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) settings: Settings,
    pub(crate) key_bindings: Option<KeyBindings>,
    pub(crate) body_tokens: BodyTokens,
}

impl AppState {
    /// State serving `catalog` with the server's Crypt4GH `server_key`.
    pub fn new(
        catalog: Catalog,
        server_key: SecretKey,
        auth: Authenticator,
        settings: Settings,
    ) -> Arc<Self> {
        let key_bindings = settings
            .bind_keys
            .then(|| KeyBindings::new(settings.max_key_bindings, settings.static_binding_ttl));
        let body_tokens = BodyTokens::new(settings.body_token_ttl);
        Arc::new(AppState {
            body_tokens,
            catalog,
            server_key,
            auth,
            metrics: Metrics::with_store(settings.body_store.as_deref()),
            settings,
            key_bindings,
        })
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Authenticates the request's bearer token, counting failures.
    pub(crate) async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        self.authenticate_with(headers, &[]).await
    }

    /// Authenticates the bearer token or, without one, the POST body's `passports`, counting
    /// failures.
    pub(crate) async fn authenticate_with(
        &self,
        headers: &HeaderMap,
        passports: &[String],
    ) -> Result<Principal, AuthError> {
        self.auth
            .authenticate_with(headers, passports)
            .await
            .inspect_err(|err| self.metrics.count_auth_failure(err.reason))
    }

    /// Looks up object `id` and checks that `principal` may read it.
    pub(crate) fn readable(&self, id: &str, principal: &Principal) -> Result<Arc<Object>, Problem> {
        let object = self.find(id)?;
        admits(&object, principal, &self.settings.dataset_readers).inspect_err(|_| {
            tracing::info!(object = id, subject = %principal.subject, "access denied");
        })?;
        Ok(object)
    }

    /// Looks up object `id`.
    pub(crate) fn find(&self, id: &str) -> Result<Arc<Object>, Problem> {
        match self.catalog.get(id) {
            Ok(Some(object)) => Ok(object),
            Ok(None) => Err(Problem::object_not_found(id)),
            Err(CatalogError::InvalidId { id, reason }) => Err(Problem::invalid_id(format!(
                "invalid object ID {id:?}: {reason}"
            ))),
            Err(err) => Err(Problem::internal(err)),
        }
    }

    /// The public base URL for a request: the configured one, else from `Host`.
    pub(crate) fn base_url(&self, headers: &HeaderMap) -> Result<String, Problem> {
        if let Some(url) = &self.settings.public_url {
            return Ok(url.trim_end_matches('/').to_owned());
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.len() <= 255
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            })
            .ok_or_else(|| {
                Problem::bad_request("the request has no valid Host header to build URLs from")
            })?;
        let scheme = if self.settings.tls { "https" } else { "http" };
        Ok(format!("{scheme}://{host}"))
    }
}

/// Whether `principal` may read `object`: a passport holder by a visa granting the object's
/// dataset, anyone else by the object's readers or a dataset reader rule for its dataset.
pub(crate) fn admits(
    object: &Object,
    principal: &Principal,
    dataset_readers: &[(String, String)],
) -> Result<(), Problem> {
    let id = &object.record.id;
    let dataset = object.record.dataset.as_deref();
    match &principal.grants {
        Some(grants) if dataset.is_some_and(|d| grants.allows(d)) => Ok(()),
        Some(grants) => Err(Problem::no_grant(grants.refusal(id, dataset))),
        None if object.record.admits(&principal.subject) => Ok(()),
        None if dataset.is_some_and(|d| {
            dataset_readers
                .iter()
                .any(|(ds, pattern)| ds == d && subject_matches(pattern, &principal.subject))
        }) =>
        {
            Ok(())
        }
        None => Err(Problem::forbidden(id, &principal.subject)),
    }
}
