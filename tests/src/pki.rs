//! Certificates for the local control plane, generated at test time with `rcgen`.
//!
//! One CA signs the apiserver's serving certificate, the admin client certificate (group
//! `system:masters`), the controller-manager's client certificate and any serving certificate a
//! test needs (for example the DRS server's). Nothing here is ever written outside the test's
//! temporary directory.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::Error;

/// A certificate authority that issues leaf certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca { [secret key elided] }")
    }
}

/// PEM files of one issued certificate (or public key) and its private key.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate or public key (PEM).
    pub cert: PathBuf,
    /// The private key (PEM, PKCS#8).
    pub key: PathBuf,
}

impl Ca {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Result<Self, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(name, None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Ca { issuer })
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `path`.
    pub fn write_cert(&self, path: &Path) -> Result<PathBuf, Error> {
        write(path, &self.cert_pem())?;
        Ok(path.to_owned())
    }

    /// Issues a serving certificate for `sans` (DNS names or IP addresses), written as
    /// `dir/name.crt` and `dir/name.key`.
    pub fn issue_server(&self, dir: &Path, name: &str, sans: &[&str]) -> Result<CertFiles, Error> {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name = dn(name, None);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(dir, name, &params)
    }

    /// Issues a client certificate with common name `user` and organisation `group` (Kubernetes
    /// reads them as the user name and group), written as `dir/name.crt` and `dir/name.key`.
    pub fn issue_client(
        &self,
        dir: &Path,
        name: &str,
        user: &str,
        group: Option<&str>,
    ) -> Result<CertFiles, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(user, group);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(dir, name, &params)
    }

    fn issue(
        &self,
        dir: &Path,
        name: &str,
        params: &CertificateParams,
    ) -> Result<CertFiles, Error> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = CertFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        write(&files.cert, &cert.pem())?;
        write(&files.key, &key.serialize_pem())?;
        Ok(files)
    }
}

/// Writes a fresh ECDSA P-256 key pair for service-account token signing: the private key (PEM,
/// PKCS#8) to `dir/name.key` and the public key (PEM) to `dir/name.pub`.
pub fn write_signing_key(dir: &Path, name: &str) -> Result<CertFiles, Error> {
    let key = KeyPair::generate()?;
    let files = CertFiles {
        cert: dir.join(format!("{name}.pub")),
        key: dir.join(format!("{name}.key")),
    };
    write(&files.key, &key.serialize_pem())?;
    write(&files.cert, &key.public_key_pem())?;
    Ok(files)
}

fn dn(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    fs::write(path, contents).map_err(|source| Error::Io {
        context: format!("writing {}", path.display()),
        source,
    })
}
