//! The ephemeral key files on the key volume and their destruction.
//!
//! - `ephemeral.sec`: the secret key as an unencrypted Crypt4GH private key file (the
//!   `crypt4gh-keygen --nocrypt` format), mode 0440 so the pod's `fsGroup` can read it, written
//!   atomically.
//! - `ephemeral.pub`: the public key (Crypt4GH PEM), mode 0444.
//!
//! Destruction makes the file writable for its owner, overwrites it with zeros, fsyncs and
//! unlinks it; the in-memory key is zeroized when the [`EphemeralKey`] is dropped.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use c4gh::keys::{PublicKey, SecretKey};

use crate::atomic;

pub use c4gh_contract::pod::{PUBLIC_KEY_FILE, SECRET_KEY_FILE};

/// Why writing or destroying a key file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// I/O on a key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The key could not be encoded.
    #[error("cannot encode the ephemeral key: {source}")]
    Encode {
        /// The encoding error.
        #[source]
        source: c4gh::Error,
    },
}

/// Mode of `ephemeral.sec`: owner and group (the pod's `fsGroup`) may read.
pub const SECRET_KEY_MODE: u32 = 0o440;

/// The task's ephemeral X25519 key. Not `Clone`, no derived `Debug`; the secret is zeroized when
/// this is dropped (by [`c4gh::keys::SecretKey`]).
pub struct EphemeralKey {
    secret: SecretKey,
}

impl std::fmt::Debug for EphemeralKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EphemeralKey")
            .field("secret", &format_args!("[secret elided]"))
            .field("public", &self.secret.public_key())
            .finish()
    }
}

impl EphemeralKey {
    /// Generates a fresh key from the OS random source.
    pub fn generate() -> Self {
        EphemeralKey {
            secret: SecretKey::generate(),
        }
    }

    /// Wraps an existing key (the `fetch --sk` case).
    pub fn from_secret(secret: SecretKey) -> Self {
        EphemeralKey { secret }
    }

    /// The secret key, for opening headers.
    pub fn secret(&self) -> &SecretKey {
        &self.secret
    }

    /// The public key sent to DRS servers.
    pub fn public(&self) -> PublicKey {
        self.secret.public_key()
    }

    /// Writes `ephemeral.sec` (unencrypted Crypt4GH private key, mode 0440) and `ephemeral.pub`
    /// (0444) into `dir`, each atomically.
    pub fn write_files(&self, dir: &Path) -> Result<(), KeyError> {
        let public = dir.join(PUBLIC_KEY_FILE);
        atomic::write(&public, self.public().to_pem().as_bytes(), 0o444).map_err(|source| {
            KeyError::Io {
                path: public,
                source,
            }
        })?;
        self.write_secret(&dir.join(SECRET_KEY_FILE), SECRET_KEY_MODE)
    }

    /// Writes the secret key file alone, atomically, with `mode`.
    pub fn write_secret(&self, path: &Path, mode: u32) -> Result<(), KeyError> {
        let pem = self
            .secret
            .to_pem(None, Some("c4gh-sidecar ephemeral key"))
            .map_err(|source| KeyError::Encode { source })?;
        atomic::write(path, pem.as_bytes(), mode).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

/// Overwrites `path` with zeros, fsyncs and unlinks it. Returns false when there was no file.
pub fn shred(path: &Path) -> Result<bool, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(e)),
    };
    if meta.is_file() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        let mut file = OpenOptions::new().write(true).open(path).map_err(io)?;
        let zeros = vec![0u8; usize::try_from(meta.len()).unwrap_or(0)];
        file.write_all(&zeros).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    std::fs::remove_file(path).map_err(io)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_reference_format_and_shreds() {
        let dir = tempfile::tempdir().unwrap();
        let key = EphemeralKey::generate();
        key.write_files(dir.path()).unwrap();
        let sec = dir.path().join(SECRET_KEY_FILE);
        let mode = std::fs::metadata(&sec).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o440);
        let text = std::fs::read_to_string(&sec).unwrap();
        assert!(
            text.starts_with("-----BEGIN CRYPT4GH PRIVATE KEY-----"),
            "{text}"
        );
        let back = SecretKey::from_pem(&text, None).unwrap();
        assert_eq!(back.public_key(), key.public());
        let public = std::fs::read_to_string(dir.path().join(PUBLIC_KEY_FILE)).unwrap();
        assert_eq!(PublicKey::from_pem(&public).unwrap(), key.public());
        let debug = format!("{key:?}");
        assert!(debug.contains("[secret elided]"), "{debug}");
        assert!(shred(&sec).unwrap());
        assert!(!sec.exists());
        assert!(!shred(&sec).unwrap());
    }
}
