//! TLS for the webhook: a certificate resolver whose certificate can be replaced while the server
//! runs (rotation without restart), and the rustls server configuration (ring provider only).

use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Errors loading a certificate or building the TLS configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate chain PEM has no certificate or does not parse.
    #[error("serving certificate PEM is not usable: {0}")]
    Certificate(String),
    /// The private key PEM does not parse or has an unsupported type.
    #[error("serving key PEM is not usable: {0}")]
    Key(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Builds a [`CertifiedKey`] from a PEM chain and a PEM private key (PKCS#8, SEC1 or PKCS#1).
///
/// # Errors
///
/// [`TlsError::Certificate`] or [`TlsError::Key`] naming what is wrong.
pub fn certified_key(chain_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Certificate("no CERTIFICATE block".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
    let signing = ring::sign::any_supported_type(&key).map_err(|e| TlsError::Key(e.to_string()))?;
    Ok(CertifiedKey::new(chain, signing))
}

/// Serves whatever certificate was stored last; [`ReloadingResolver::set`] swaps it for new
/// handshakes while existing connections continue.
#[derive(Debug)]
pub struct ReloadingResolver {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl ReloadingResolver {
    /// A resolver with no certificate yet (handshakes fail until [`set`](Self::set)).
    pub fn new() -> Self {
        Self {
            current: RwLock::new(None),
        }
    }

    /// Replaces the served certificate.
    pub fn set(&self, key: CertifiedKey) {
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        *guard = Some(Arc::new(key));
    }

    /// Whether a certificate is loaded (readiness).
    pub fn is_loaded(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

impl Default for ReloadingResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The server configuration: TLS 1.2/1.3 with the ring provider, HTTP/2 and HTTP/1.1 via ALPN.
///
/// # Errors
///
/// [`TlsError::Config`] if rustls rejects the protocol versions (it does not for the defaults).
pub fn server_config(resolver: Arc<ReloadingResolver>) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
