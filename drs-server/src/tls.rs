//! TLS with rustls (ring provider): a certificate from PEM files, optionally re-read when the
//! files change (cert-manager renewals), or from PEM bytes (tests).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

/// Where the server certificate comes from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TlsConfig {
    /// PEM files. With `reload_interval`, their modification times are checked at that interval
    /// and a changed pair is loaded without a restart (a broken pair is logged and the old one
    /// kept).
    Files {
        /// Certificate chain (leaf first).
        cert: PathBuf,
        /// Private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
        /// How often to look for new files; `None` loads them once.
        reload_interval: Option<Duration>,
    },
    /// PEM bytes.
    Pem {
        /// Certificate chain (leaf first).
        cert_chain: Vec<u8>,
        /// Private key.
        key: Zeroizing<Vec<u8>>,
    },
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The certificate or key is not usable.
    #[error("TLS certificate/key: {0}")]
    Invalid(String),
}

/// Parses a PEM certificate chain and key into a rustls [`CertifiedKey`].
pub fn certified_key(cert_chain: &[u8], key: &[u8]) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_chain)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid(format!("the certificate file is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid(
            "the certificate file holds no CERTIFICATE block".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|_| TlsError::Invalid("the key file holds no usable private key".into()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| TlsError::Invalid(format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(certs, signer);
    certified
        .keys_match()
        .map_err(|e| TlsError::Invalid(format!("the key does not match the certificate: {e}")))?;
    Ok(certified)
}

#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|k| Arc::clone(&k))
    }
}

fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| TlsError::Io {
            path: path.to_owned(),
            source,
        })
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Builds the rustls server configuration (HTTP/2 and HTTP/1.1 via ALPN) and, for reloading
/// files, spawns the task that watches them (it ends when the runtime shuts down).
pub fn server_config(config: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let (key, reload) = match config {
        TlsConfig::Pem { cert_chain, key } => (certified_key(cert_chain, key)?, None),
        TlsConfig::Files {
            cert,
            key,
            reload_interval,
        } => (
            certified_key(&read(cert)?, &read(key)?)?,
            reload_interval.map(|i| (cert.clone(), key.clone(), i)),
        ),
    };
    let resolver = Arc::new(Resolver {
        current: RwLock::new(Arc::new(key)),
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if let Some((cert, key, interval)) = reload {
        tokio::spawn(watch(resolver, cert, key, interval));
    }
    Ok(Arc::new(server))
}

async fn watch(resolver: Arc<Resolver>, cert: PathBuf, key: PathBuf, interval: Duration) {
    let mut seen = (modified(&cert), modified(&key));
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now = (modified(&cert), modified(&key));
        if now == seen {
            continue;
        }
        seen = now;
        let loaded = read(&cert).and_then(|c| read(&key).and_then(|k| certified_key(&c, &k)));
        match loaded {
            Ok(new) => {
                if let Ok(mut current) = resolver.current.write() {
                    *current = Arc::new(new);
                }
                tracing::info!(cert = %cert.display(), "reloaded the TLS certificate");
            }
            Err(err) => {
                tracing::warn!(error = %err, "the changed TLS files are not usable; keeping the old certificate");
            }
        }
    }
}
