//! The catalog: Crypt4GH objects stored in one directory, each as three files.
//!
//! For an object with ID `ID` the directory holds
//!
//! - `ID.json` — the [`ObjectRecord`] (name, sizes, SHA-256 checksums, readers);
//! - `ID.c4gh-header` — the Crypt4GH header, encrypted for the server's key;
//! - `ID.c4gh-body` — the encrypted body (the Crypt4GH file after its header), served as is;
//!   with an object store ([`crate::store`], [`Bodies::Store`]) the body is in the bucket
//!   instead and the record names the store's ETag of it (`store_etag`).
//!
//! Keeping the header apart lets the server re-encrypt ~124 bytes per request and serve the body
//! unchanged. `ID.json` is written last (via `.part` and rename), so an object whose JSON exists is
//! complete. Objects are loaded at startup and, when a request names an ID not loaded yet, looked
//! up on disk, so `c4gh-drs-server add` works against a running server.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use c4gh::SecretKey;
use c4gh::header::{EncryptedHeader, OpenedHeader};

use serde::{Deserialize, Serialize};

/// Longest accepted object ID.
pub const MAX_ID_LEN: usize = 128;

/// Largest accepted stored header (many recipients plus an edit list).
pub const MAX_HEADER_BYTES: u64 = 64 * 1024;

/// Why the catalog or one of its objects could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// A file could not be read or listed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An object's JSON record is not valid.
    #[error("{path} is not a valid object record: {detail}")]
    Record {
        /// The record file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// An object ID is not acceptable.
    #[error("invalid object ID {id:?}: {reason}")]
    InvalidId {
        /// The rejected ID.
        id: String,
        /// Why.
        reason: &'static str,
    },
}

/// Size and SHA-256 of one representation of an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Digest {
    /// Length in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
}

/// The JSON record of one object (`ID.json`).
///
/// `plaintext` describes the decrypted data (what a reader ends up with, and the DRS `size` and
/// `sha-256` checksum); `body` describes the encrypted body file exactly as served by the body
/// endpoint (its SHA-256 is the body's ETag and lets a client verify a download before
/// decrypting).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectRecord {
    /// The object ID (must equal the file name stem).
    pub id: String,
    /// A file name for the object, e.g. `sample.bam`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Media type of the plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// The dataset the object belongs to (e.g. an EGA `EGAD…` ID or a dataset URL), recorded in
    /// the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// RFC 3339 time the object was added.
    pub created_time: String,
    /// The decrypted data.
    pub plaintext: Digest,
    /// The encrypted body as stored and served.
    pub body: Digest,
    /// Who may read the object: exact subjects, prefixes ending in `*`
    /// (`system:serviceaccount:lab:*`), or `*` for any authenticated subject.
    pub readers: Vec<String>,
    /// The object store's ETag of the body, when the body is in an object store (recorded by
    /// `add` at upload; it is the body's ETag then, since readers download from the store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_etag: Option<String>,
}

impl ObjectRecord {
    /// Whether `subject` matches one of the reader patterns.
    pub fn admits(&self, subject: &str) -> bool {
        self.readers
            .iter()
            .any(|pattern| subject_matches(pattern, subject))
    }
}

/// Whether `subject` matches a reader `pattern`: the exact subject, a prefix ending in `*`
/// (`system:serviceaccount:lab:*`: every ServiceAccount of namespace `lab`), or `*`.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => subject.starts_with(prefix),
        None => pattern == subject,
    }
}

/// Where the catalog's bodies are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Bodies {
    /// `ID.c4gh-body` in the catalog directory.
    #[default]
    Files,
    /// In an object store; each record names the store's ETag (`store_etag`).
    Store,
}

/// One loaded object: its record, the stored header and where its body is.
#[derive(Debug)]
pub struct Object {
    /// The JSON record.
    pub record: ObjectRecord,
    /// The Crypt4GH header encrypted for the server's key.
    pub header: Vec<u8>,
    /// Path of the encrypted body (unused when the body is in an object store).
    pub body_path: PathBuf,
    /// The strong ETag of the body: `"sha256-<hex of the body's SHA-256>"` for a body file, the
    /// store's ETag for a body in an object store.
    pub etag: String,
    /// The header opened with the server's key, filled by the first header request (see
    /// [`Object::opened_header`]). Secret: the data keys zeroize on drop and `Debug` elides them.
    opened: OnceLock<OpenedHeader>,
}

impl Object {
    /// The stored header opened with `server_key`: its data keys and edit list. The first call
    /// pays the X25519 agreement that opens the packets; later calls reuse the result, so a
    /// re-encryption needs only the fresh writer key and its agreement with the recipient.
    pub fn opened_header(&self, server_key: &SecretKey) -> Result<&OpenedHeader, c4gh::Error> {
        if let Some(opened) = self.opened.get() {
            return Ok(opened);
        }
        let opened = EncryptedHeader::parse(&self.header)?.open(&[server_key], None)?;
        Ok(self.opened.get_or_init(|| opened))
    }
}

/// Checks an object ID: 1–128 characters from `A-Z a-z 0-9 . _ ~ : -`, not starting with `.`.
pub fn validate_id(id: &str) -> Result<(), CatalogError> {
    let invalid = |reason| CatalogError::InvalidId {
        id: id.chars().take(MAX_ID_LEN + 8).collect(),
        reason,
    };
    if id.is_empty() {
        return Err(invalid("it is empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(invalid("it is longer than 128 characters"));
    }
    if id.starts_with('.') {
        return Err(invalid("it starts with '.'"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b':' | b'-'))
    {
        return Err(invalid(
            "only letters, digits and . _ ~ : - are allowed in object IDs",
        ));
    }
    Ok(())
}

/// File names of one object inside the catalog directory.
#[derive(Debug, Clone)]
pub struct ObjectPaths {
    /// `ID.json`.
    pub record: PathBuf,
    /// `ID.c4gh-header`.
    pub header: PathBuf,
    /// `ID.c4gh-body`.
    pub body: PathBuf,
}

impl ObjectPaths {
    /// The paths of object `id` in `dir` (the ID must be valid).
    pub fn new(dir: &Path, id: &str) -> Self {
        ObjectPaths {
            record: dir.join(format!("{id}.json")),
            header: dir.join(format!("{id}.c4gh-header")),
            body: dir.join(format!("{id}.c4gh-body")),
        }
    }
}

/// The objects this server serves.
#[derive(Debug)]
pub struct Catalog {
    dir: PathBuf,
    bodies: Bodies,
    objects: RwLock<HashMap<String, Arc<Object>>>,
}

impl Catalog {
    /// Loads every `*.json` record in `dir`. Any invalid object fails the whole load, naming the
    /// file, so a broken catalog is noticed at startup.
    pub fn open(dir: &Path) -> Result<Self, CatalogError> {
        Self::open_with(dir, Bodies::Files)
    }

    /// Like [`Catalog::open`], with the bodies where `bodies` says.
    pub fn open_with(dir: &Path, bodies: Bodies) -> Result<Self, CatalogError> {
        let io_err = |source| CatalogError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut objects = HashMap::new();
        for entry in std::fs::read_dir(dir).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if id.starts_with('.') {
                continue;
            }
            validate_id(id)?;
            let object = load_object(dir, id, bodies)?;
            objects.insert(id.to_owned(), Arc::new(object));
        }
        Ok(Catalog {
            dir: dir.to_owned(),
            bodies,
            objects: RwLock::new(objects),
        })
    }

    /// The catalog directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of loaded objects.
    pub fn len(&self) -> usize {
        self.objects.read().map(|o| o.len()).unwrap_or(0)
    }

    /// Whether no object is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The object with `id` (which must be valid), loading it from disk if it was added after
    /// startup. `Ok(None)` when it does not exist.
    pub fn get(&self, id: &str) -> Result<Option<Arc<Object>>, CatalogError> {
        validate_id(id)?;
        if let Some(object) = self.objects.read().ok().and_then(|o| o.get(id).cloned()) {
            return Ok(Some(object));
        }
        let paths = ObjectPaths::new(&self.dir, id);
        if !paths.record.is_file() {
            return Ok(None);
        }
        let object = Arc::new(load_object(&self.dir, id, self.bodies)?);
        if let Ok(mut objects) = self.objects.write() {
            objects.insert(id.to_owned(), Arc::clone(&object));
        }
        Ok(Some(object))
    }
}

fn load_object(dir: &Path, id: &str, bodies: Bodies) -> Result<Object, CatalogError> {
    let paths = ObjectPaths::new(dir, id);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CatalogError::Io { path, source }
    };
    let bad = |detail: String| CatalogError::Record {
        path: paths.record.clone(),
        detail,
    };
    let json = std::fs::read(&paths.record).map_err(io(&paths.record))?;
    let record: ObjectRecord = serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))?;
    if record.id != id {
        return Err(bad(format!(
            "its id {:?} differs from the file name {id:?}",
            record.id
        )));
    }
    for (what, digest) in [("plaintext", &record.plaintext), ("body", &record.body)] {
        if digest.sha256.len() != 64 || !digest.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!("{what}.sha256 is not 64 hex digits")));
        }
    }
    let header_len = std::fs::metadata(&paths.header)
        .map_err(io(&paths.header))?
        .len();
    if header_len > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "its header {} is {header_len} bytes, more than the {MAX_HEADER_BYTES} accepted",
            paths.header.display()
        )));
    }
    let header = std::fs::read(&paths.header).map_err(io(&paths.header))?;
    if bodies == Bodies::Store {
        let etag =
            record
                .store_etag
                .clone()
                .filter(|e| !e.is_empty() && !e.starts_with("W/") && e.is_ascii())
                .ok_or_else(|| {
                    bad("it has no store_etag, but this server serves bodies from an object store; \
                     add the object with the object-store flags (--s3-bucket ...)"
                    .into())
                })?;
        return Ok(Object {
            record,
            header,
            body_path: paths.body,
            etag,
            opened: OnceLock::new(),
        });
    }
    let body_len = std::fs::metadata(&paths.body)
        .map_err(io(&paths.body))?
        .len();
    if body_len != record.body.size {
        return Err(bad(format!(
            "body.size is {} but {} is {body_len} bytes",
            record.body.size,
            paths.body.display()
        )));
    }
    let etag = format!("\"sha256-{}\"", record.body.sha256.to_ascii_lowercase());
    Ok(Object {
        record,
        header,
        body_path: paths.body,
        etag,
        opened: OnceLock::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in [
            "a",
            "HG00096.bam",
            "ega:EGAF0001",
            "x_y-z~1",
            &"a".repeat(128),
        ] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "..",
            "a/b",
            "a b",
            "é",
            "a%2Fb",
            &"a".repeat(129),
        ] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reader_patterns() {
        let record = ObjectRecord {
            id: "x".into(),
            name: None,
            description: None,
            mime_type: None,
            dataset: None,
            created_time: "2026-01-01T00:00:00Z".into(),
            plaintext: Digest {
                size: 0,
                sha256: "0".repeat(64),
            },
            body: Digest {
                size: 0,
                sha256: "0".repeat(64),
            },
            readers: vec!["alice".into(), "system:serviceaccount:lab:*".into()],
            store_etag: None,
        };
        assert!(record.admits("alice"));
        assert!(!record.admits("alice2"));
        assert!(record.admits("system:serviceaccount:lab:worker"));
        assert!(!record.admits("system:serviceaccount:other:worker"));
        let any = ObjectRecord {
            readers: vec!["*".into()],
            ..record
        };
        assert!(any.admits("anyone"));
    }
}
