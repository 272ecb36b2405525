//! A throw-away TLS certificate authority for tests, and the rustls configurations built from it.
//!
//! One [`TestCa`] issues serving certificates (DNS names or IP addresses, e.g. `localhost` and
//! `127.0.0.1`) and client certificates; [`server_config`] and [`client_config`] turn them into
//! rustls configurations (ring provider, safe default protocol versions) for a loopback HTTPS
//! server and a client that trusts only the CA. Keys live in memory (and in a test's temporary
//! directory when a test writes them); nothing here touches a persistent location.
//!
//! ```
//! let ca = testkit::tls::TestCa::new("doc test CA").unwrap();
//! let leaf = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
//! let server = testkit::tls::server_config(&leaf).unwrap();
//! let client = testkit::tls::client_config(&ca.cert_pem()).unwrap();
//! assert!(server.alpn_protocols.is_empty() && client.alpn_protocols.is_empty());
//! ```

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use zeroize::Zeroizing;

/// Why a certificate or a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Certificate or key generation failed.
    #[error("generating a test certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("building a test TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// A PEM certificate could not be parsed.
    #[error("parsing a PEM certificate: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
}

/// A self-signed CA that issues server and client certificates.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestCa { [secret key elided] }")
    }
}

/// An issued certificate with its private key.
pub struct Issued {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The certificate (DER).
    pub cert_der: CertificateDer<'static>,
    /// The private key (PEM, PKCS#8), zeroized on drop.
    pub key_pem: Zeroizing<String>,
    key_der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// The private key (DER, PKCS#8) for rustls.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.to_vec()))
    }
}

impl TestCa {
    /// A new CA with common name `name`.
    ///
    /// # Errors
    ///
    /// [`TlsError::Certificate`] when key or certificate generation fails.
    pub fn new(name: &str) -> Result<Self, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(name, None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(TestCa { issuer })
    }

    /// The CA certificate (PEM) clients trust.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A serving certificate for `names` (DNS names or IP addresses).
    ///
    /// # Errors
    ///
    /// [`TlsError::Certificate`] when a name is invalid or signing fails.
    pub fn issue_server(&self, names: &[&str]) -> Result<Issued, TlsError> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name = dn("test server", None);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(&params)
    }

    /// A client certificate with common name `user` and organisation `group` (Kubernetes reads
    /// them as the user name and group).
    ///
    /// # Errors
    ///
    /// [`TlsError::Certificate`] when signing fails.
    pub fn issue_client(&self, user: &str, group: Option<&str>) -> Result<Issued, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(user, group);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(&params)
    }

    fn issue(&self, params: &CertificateParams) -> Result<Issued, TlsError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: Zeroizing::new(key.serialize_pem()),
            key_der: Zeroizing::new(key.serialize_der()),
        })
    }
}

/// A fresh ECDSA P-256 key pair (e.g. for service-account token signing): the private key (PEM,
/// PKCS#8) and the public key (PEM).
///
/// # Errors
///
/// [`TlsError::Certificate`] when key generation fails.
pub fn signing_key() -> Result<(Zeroizing<String>, String), TlsError> {
    let key = KeyPair::generate()?;
    Ok((Zeroizing::new(key.serialize_pem()), key.public_key_pem()))
}

/// A rustls server configuration presenting `leaf` (no client authentication, no ALPN).
///
/// # Errors
///
/// [`TlsError::Rustls`] when rustls refuses the certificate or key.
pub fn server_config(leaf: &Issued) -> Result<ServerConfig, TlsError> {
    Ok(
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.cert_der.clone()], leaf.key_der())?,
    )
}

/// The root store holding every certificate of the PEM bundle `ca_pem`.
///
/// # Errors
///
/// [`TlsError::Pem`] or [`TlsError::Rustls`] when a certificate cannot be parsed or added.
pub fn root_store(ca_pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    Ok(roots)
}

/// A rustls client configuration trusting only the certificates in `ca_pem`.
///
/// # Errors
///
/// As [`root_store`], and [`TlsError::Rustls`] when rustls refuses the configuration.
pub fn client_config(ca_pem: &str) -> Result<ClientConfig, TlsError> {
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(root_store(ca_pem)?)
            .with_no_client_auth(),
    )
}

fn dn(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn issued_certificates_chain_to_the_ca() {
        let ca = TestCa::new("unit test CA").unwrap();
        let leaf = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
        assert!(leaf.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(format!("{leaf:?}").contains("cert_pem"));
        assert!(!format!("{leaf:?}").contains("PRIVATE KEY"));
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
        assert_eq!(root_store(&ca.cert_pem()).unwrap().len(), 1);
        server_config(&leaf).unwrap();
        client_config(&ca.cert_pem()).unwrap();
        let client = ca.issue_client("admin", Some("system:masters")).unwrap();
        assert_ne!(client.cert_pem, leaf.cert_pem);
    }
}
