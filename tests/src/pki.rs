//! Certificates for the local control plane, from the shared test CA ([`testkit::tls`]) and
//! written as PEM files where the control-plane binaries read them.
//!
//! One CA signs the apiserver's serving certificate, the admin client certificate (group
//! `system:masters`), the controller-manager's client certificate and any serving certificate a
//! test needs (for example the DRS server's). Nothing here is ever written outside the test's
//! temporary directory.

use std::fs;
use std::path::{Path, PathBuf};

use testkit::tls::{Issued, TestCa};

use crate::Error;

/// A certificate authority that issues leaf certificates as files.
#[derive(Debug)]
pub struct Ca {
    ca: TestCa,
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
        Ok(Ca {
            ca: TestCa::new(name)?,
        })
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> String {
        self.ca.cert_pem()
    }

    /// Writes the CA certificate to `path`.
    pub fn write_cert(&self, path: &Path) -> Result<PathBuf, Error> {
        write(path, &self.cert_pem())?;
        Ok(path.to_owned())
    }

    /// Issues a serving certificate for `sans` (DNS names or IP addresses), written as
    /// `dir/name.crt` and `dir/name.key`.
    pub fn issue_server(&self, dir: &Path, name: &str, sans: &[&str]) -> Result<CertFiles, Error> {
        write_pair(dir, name, &self.ca.issue_server(sans)?)
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
        write_pair(dir, name, &self.ca.issue_client(user, group)?)
    }
}

/// Writes a fresh ECDSA P-256 key pair for service-account token signing: the private key (PEM,
/// PKCS#8) to `dir/name.key` and the public key (PEM) to `dir/name.pub`.
pub fn write_signing_key(dir: &Path, name: &str) -> Result<CertFiles, Error> {
    let (private, public) = testkit::tls::signing_key()?;
    let files = CertFiles {
        cert: dir.join(format!("{name}.pub")),
        key: dir.join(format!("{name}.key")),
    };
    write(&files.key, &private)?;
    write(&files.cert, &public)?;
    Ok(files)
}

fn write_pair(dir: &Path, name: &str, issued: &Issued) -> Result<CertFiles, Error> {
    let files = CertFiles {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    write(&files.cert, &issued.cert_pem)?;
    write(&files.key, &issued.key_pem)?;
    Ok(files)
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    fs::write(path, contents).map_err(|source| Error::Io {
        context: format!("writing {}", path.display()),
        source,
    })
}
