//! Static bearer tokens from a file.
//!
//! The file is a JSON list of `{"subject": "alice", "token": "…"}`. Only the SHA-256 of each token
//! is kept after loading (the token strings are zeroized), so the server holds no token in memory
//! and a lookup compares digests, not secrets.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::secret::SecretString;

/// Shortest accepted static token.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why the token file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("reading the token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a JSON list of `{subject, token}` (the parser's message never quotes
    /// token values).
    #[error(
        "the token file {path} is not a JSON list of {{\"subject\", \"token\"}} objects: {detail}"
    )]
    Format {
        /// The file.
        path: PathBuf,
        /// Where it fails.
        detail: String,
    },
    /// An entry is unusable.
    #[error("the token file {path}, entry {index} (subject {subject:?}): {reason}")]
    Entry {
        /// The file.
        path: PathBuf,
        /// Zero-based position in the list.
        index: usize,
        /// The entry's subject.
        subject: String,
        /// What is wrong.
        reason: &'static str,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    subject: String,
    token: SecretField,
}

/// A token string read from the file; zeroized on drop.
struct SecretField(SecretString);

impl<'de> Deserialize<'de> for SecretField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| SecretField(SecretString::new(s)))
    }
}

/// Static bearer tokens, kept as SHA-256 digests mapped to their subject.
#[derive(Default)]
pub struct StaticTokens {
    by_digest: HashMap<[u8; 32], String>,
}

impl std::fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticTokens")
            .field("count", &self.by_digest.len())
            .finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl StaticTokens {
    /// Loads the token file at `path`.
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| TokenFileError::Io {
            path: path.to_owned(),
            source,
        })?);
        let entries: Vec<Entry> =
            serde_json::from_slice(&bytes).map_err(|e| TokenFileError::Format {
                path: path.to_owned(),
                detail: format!(
                    "line {} column {}: {}",
                    e.line(),
                    e.column(),
                    e.classify_name()
                ),
            })?;
        let mut tokens = StaticTokens::default();
        for (index, entry) in entries.into_iter().enumerate() {
            let fail = |reason| TokenFileError::Entry {
                path: path.to_owned(),
                index,
                subject: entry.subject.clone(),
                reason,
            };
            if entry.subject.trim().is_empty() {
                return Err(fail("the subject is empty"));
            }
            if entry.token.0.expose().len() < MIN_TOKEN_LEN {
                return Err(fail("the token is shorter than 16 characters"));
            }
            if tokens
                .by_digest
                .insert(digest(entry.token.0.expose()), entry.subject.clone())
                .is_some()
            {
                return Err(fail("the same token is listed twice"));
            }
        }
        Ok(tokens)
    }

    /// Adds one token for `subject` (used by tests and embedders).
    pub fn insert(&mut self, subject: impl Into<String>, token: &SecretString) {
        self.by_digest
            .insert(digest(token.expose()), subject.into());
    }

    /// The subject of `token`, if it is one of the static tokens.
    pub fn subject(&self, token: &str) -> Option<&str> {
        self.by_digest.get(&digest(token)).map(String::as_str)
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "invalid JSON syntax",
            serde_json::error::Category::Data => {
                "expected a list of objects with exactly the string fields subject and token"
            }
            serde_json::error::Category::Eof => "unexpected end of file",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_and_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        std::fs::write(
            &path,
            r#"[{"subject":"alice","token":"alice-token-0123456789"}]"#,
        )
        .unwrap();
        let tokens = StaticTokens::load(&path).unwrap();
        assert_eq!(tokens.subject("alice-token-0123456789"), Some("alice"));
        assert_eq!(tokens.subject("alice-token-012345678"), None);
        assert!(!format!("{tokens:?}").contains("alice-token"));
    }

    #[test]
    fn errors_never_quote_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        for text in [
            r#"[{"subject":"a","token":"short-secret"}]"#,
            r#"[{"subject":"a","token":"long-enough-secret-1","extra":1}]"#,
            r#"[{"subject":"a","token":"long-enough-secret-1"#,
            r#"[{"subject":"a","token":"long-enough-secret-1"},{"subject":"b","token":"long-enough-secret-1"}]"#,
        ] {
            std::fs::write(&path, text).unwrap();
            let err = StaticTokens::load(&path).unwrap_err().to_string();
            assert!(!err.contains("secret"), "{err}");
        }
    }
}
