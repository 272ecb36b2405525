//! Credentials for DRS requests: bearer tokens and GA4GH passports, as secret types.
//!
//! Neither type derives `Debug`, `Clone` or `Serialize`; `Debug` prints `[secret elided]`, the
//! bytes are zeroized on drop, and the `Authorization` header built from a token is marked
//! sensitive so HTTP-level logging does not print it. A token *file* is re-read on every
//! request, so rotated projected ServiceAccount tokens are picked up without a restart.
//!
//! ```
//! use drs::auth::BearerToken;
//!
//! let t = BearerToken::new("eyJhbGciOi.secret.sig").unwrap();
//! assert_eq!(format!("{t:?}"), "BearerToken([secret elided])");
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use reqwest::header::HeaderValue;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};

/// Largest token or passports file read, in bytes.
pub const MAX_CREDENTIAL_FILE: u64 = 1 << 20;

/// A bearer token. Printable ASCII, no spaces; surrounding whitespace (a trailing newline in a
/// mounted Secret) is trimmed.
pub struct BearerToken(Zeroizing<String>);

impl BearerToken {
    /// Validates and wraps a token.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the token is empty or has characters not allowed in a header.
    pub fn new(token: impl Into<String>) -> Result<Self> {
        let mut raw: String = token.into();
        let trimmed = raw.trim();
        let valid = !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_graphic());
        let tok = if valid {
            Ok(Self(Zeroizing::new(trimmed.to_owned())))
        } else {
            Err(Error::Config {
                what: "the bearer token is empty or contains spaces/control characters; \
                       the token file must hold one token"
                    .into(),
            })
        };
        raw.zeroize();
        tok
    }

    /// Reads a token from a file (at most [`MAX_CREDENTIAL_FILE`] bytes).
    ///
    /// # Errors
    ///
    /// [`Error::CredentialFile`] when unreadable, [`Error::Config`] when not a token.
    pub async fn from_file(path: &Path) -> Result<Self> {
        let bytes = read_capped(path, "bearer token").await?;
        let s = String::from_utf8(bytes.to_vec()).map_err(|_| Error::Config {
            what: format!("bearer token file {} is not UTF-8", path.display()),
        })?;
        Self::new(s)
    }

    /// The token text. Only for building the `Authorization` header.
    pub fn secret_str(&self) -> &str {
        &self.0
    }

    /// `Authorization: Bearer …` value, marked sensitive.
    pub(crate) fn header_value(&self) -> Result<HeaderValue> {
        let text = Zeroizing::new(format!("Bearer {}", self.secret_str()));
        let mut v = HeaderValue::from_str(&text).map_err(|_| Error::Config {
            what: "the bearer token cannot be sent in an HTTP header".into(),
        })?;
        v.set_sensitive(true);
        Ok(v)
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([secret elided])")
    }
}

/// Where the bearer token comes from.
#[derive(Debug, Default)]
#[non_exhaustive]
pub enum Auth {
    /// No `Authorization` header.
    #[default]
    None,
    /// A fixed token.
    Token(BearerToken),
    /// A file re-read for every request (Kubernetes Secret or projected ServiceAccount token).
    TokenFile(PathBuf),
}

impl Auth {
    /// The token for the next request, if any.
    pub(crate) async fn current(&self) -> Result<Option<BearerTokenRef<'_>>> {
        match self {
            Auth::None => Ok(None),
            Auth::Token(t) => Ok(Some(BearerTokenRef::Borrowed(t))),
            Auth::TokenFile(p) => Ok(Some(BearerTokenRef::Owned(
                BearerToken::from_file(p).await?,
            ))),
        }
    }
}

/// A token borrowed from [`Auth::Token`] or freshly read from [`Auth::TokenFile`].
pub(crate) enum BearerTokenRef<'a> {
    Borrowed(&'a BearerToken),
    Owned(BearerToken),
}

impl BearerTokenRef<'_> {
    pub(crate) fn get(&self) -> &BearerToken {
        match self {
            BearerTokenRef::Borrowed(t) => t,
            BearerTokenRef::Owned(t) => t,
        }
    }
}

/// GA4GH passport JWTs, sent in POST bodies.
pub struct Passports(Vec<Zeroizing<String>>);

impl Passports {
    /// Wraps passport JWTs.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an empty list or an empty passport.
    pub fn new(passports: Vec<String>) -> Result<Self> {
        let wrapped: Vec<Zeroizing<String>> = passports.into_iter().map(Zeroizing::new).collect();
        if wrapped.is_empty() || wrapped.iter().any(|p| p.trim().is_empty()) {
            return Err(Error::Config {
                what: "the passports list is empty or holds an empty passport".into(),
            });
        }
        Ok(Self(wrapped))
    }

    /// Reads a JSON list of passport strings from a file.
    ///
    /// # Errors
    ///
    /// [`Error::CredentialFile`] when unreadable, [`Error::Config`] when not a JSON string list.
    pub async fn from_file(path: &Path) -> Result<Self> {
        let bytes = read_capped(path, "passports").await?;
        let list: Vec<String> = serde_json::from_slice(&bytes).map_err(|e| Error::Config {
            // Only the position: serde's message can quote the (secret) content.
            what: format!(
                "passports file {} must be a JSON list of JWT strings (error at line {}, column {})",
                path.display(),
                e.line(),
                e.column()
            ),
        })?;
        Self::new(list)
    }

    /// Number of passports.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false (the constructor rejects empty lists); present for API completeness.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// JSON body `{field: [passports…], …extra}`, zeroized on drop.
    pub(crate) fn body(
        &self,
        field: &str,
        extra: &[(&str, serde_json::Value)],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let mut map = serde_json::Map::new();
        for (k, v) in extra {
            map.insert((*k).to_owned(), v.clone());
        }
        let list: Vec<&str> = self.0.iter().map(|p| p.as_str()).collect();
        map.insert(field.to_owned(), serde_json::Value::from(list));
        let body =
            serde_json::to_vec(&serde_json::Value::Object(map)).map_err(|e| Error::Config {
                what: format!("cannot encode passports: {e}"),
            })?;
        Ok(Zeroizing::new(body))
    }
}

impl fmt::Debug for Passports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Passports([{} secret(s) elided])", self.0.len())
    }
}

async fn read_capped(path: &Path, what: &'static str) -> Result<Zeroizing<Vec<u8>>> {
    use tokio::io::AsyncReadExt;
    let err = |source| Error::CredentialFile {
        what,
        path: path.to_owned(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(err)?;
    let mut buf = Zeroizing::new(Vec::new());
    file.take(MAX_CREDENTIAL_FILE + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(err)?;
    if buf.len() as u64 > MAX_CREDENTIAL_FILE {
        return Err(Error::Config {
            what: format!(
                "{what} file {} is larger than {MAX_CREDENTIAL_FILE} bytes",
                path.display()
            ),
        });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_validation_and_debug() {
        let t = BearerToken::new("  abc.def-ghi_jkl~\n").unwrap();
        assert_eq!(t.secret_str(), "abc.def-ghi_jkl~");
        assert!(!format!("{t:?}").contains("abc"));
        let v = t.header_value().unwrap();
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("abc"), "{v:?}");
        for bad in ["", "  \n", "a b", "a\u{7f}b", "tök"] {
            assert!(BearerToken::new(bad).is_err(), "{bad:?}");
        }
        let e = BearerToken::new("a b").unwrap_err().to_string();
        assert!(
            !e.contains("a b"),
            "the rejected token must not be echoed: {e}"
        );
    }

    #[tokio::test]
    async fn token_file_is_reread_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let auth = Auth::TokenFile(path.clone());
        assert_eq!(
            auth.current().await.unwrap().unwrap().get().secret_str(),
            "first"
        );
        std::fs::write(&path, "second").unwrap();
        assert_eq!(
            auth.current().await.unwrap().unwrap().get().secret_str(),
            "second"
        );
        std::fs::remove_file(&path).unwrap();
        let e = auth.current().await.err().unwrap();
        assert!(matches!(e, Error::CredentialFile { .. }), "{e}");
        assert!(e.to_string().contains("bearer token"), "{e}");
        std::fs::write(&path, vec![b'a'; MAX_CREDENTIAL_FILE as usize + 1]).unwrap();
        assert!(matches!(
            auth.current().await.err().unwrap(),
            Error::Config { .. }
        ));
    }

    #[tokio::test]
    async fn passports_file_and_body() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, r#"["eyJ.a.b", "eyJ.c.d"]"#).unwrap();
        let p = Passports::from_file(&path).await.unwrap();
        assert_eq!(p.len(), 2);
        assert!(!format!("{p:?}").contains("eyJ"));
        let body = p.body("tokens", &[("expand", true.into())]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"expand": true, "tokens": ["eyJ.a.b", "eyJ.c.d"]})
        );
        std::fs::write(&path, r#""eyJ.secret.sig""#).unwrap();
        let e = Passports::from_file(&path).await.unwrap_err();
        assert!(matches!(e, Error::Config { .. }));
        assert!(!e.to_string().contains("secret"), "{e}");
        std::fs::write(&path, "[]").unwrap();
        assert!(Passports::from_file(&path).await.is_err());
    }
}
