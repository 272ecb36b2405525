//! `add`: encrypt a plain file for the server's key and register it in the catalog, with the
//! body in the catalog directory ([`add_file`]) or uploaded to an object store
//! ([`add_to_store`]).
//!
//! Writes `ID.c4gh-header` and `ID.c4gh-body` through `.part` files renamed into place, then
//! `ID.json` the same way, so an interrupted `add` leaves no record and the catalog never lists
//! a half-written object. Object IDs are immutable: `add` refuses an existing ID. Two SHA-256 checksums are computed while streaming (memory use does
//! not grow with the file): `plaintext.sha256` of the input file and `body.sha256` of the
//! encrypted body as served (the DRS `sha-256` checksum and the body's ETag).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use c4gh::DataKey;
use c4gh::body::Encryptor;
use c4gh::keys::{PublicKey, SecretKey};
use sha2::{Digest as _, Sha256};

use tokio::sync::mpsc;

use crate::catalog::{self, CatalogError, Digest, ObjectPaths, ObjectRecord};
use crate::store::{MAX_PARTS, MIN_PART_BYTES, S3Store, StoreError};

/// What to register besides the data.
#[derive(Debug, Clone)]
pub struct AddOptions {
    /// The object ID.
    pub id: String,
    /// File name reported in the DRS object (default: the input's file name).
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Media type of the plaintext.
    pub mime_type: Option<String>,
    /// The dataset the object belongs to.
    pub dataset: Option<String>,
    /// Reader patterns (see [`ObjectRecord::readers`]).
    pub readers: Vec<String>,
}

/// Why `add` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddError {
    /// The ID is not acceptable.
    #[error(transparent)]
    Id(#[from] CatalogError),
    /// An object with this ID exists (object IDs are immutable: add changed data under a new ID).
    #[error(
        "object {id:?} already exists in {dir}; object IDs are immutable, add the data under a new ID"
    )]
    Exists {
        /// The ID.
        id: String,
        /// The catalog directory.
        dir: PathBuf,
    },
    /// No reader patterns were given.
    #[error(
        "object {0:?} would have no readers; give at least one --reader (`*` = any authenticated caller)"
    )]
    NoReaders(String),
    /// Reading the input or writing the catalog failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The object store refused or failed the upload.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Encryption failed.
    #[error("encrypting {path}: {source}")]
    Crypt4gh {
        /// The input file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: c4gh::Error,
    },
}

struct Hashing<T> {
    inner: T,
    hash: Sha256,
    len: u64,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            len: 0,
        }
    }

    fn digest(self) -> (T, Digest) {
        let digest = Digest {
            size: self.len,
            sha256: hex::encode(self.hash.finalize()),
        };
        (self.inner, digest)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn part(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// Writes `bytes` to `path` via `path.part`, fsync and rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), AddError> {
    let tmp = part(path);
    let io = |what| {
        let path = path.to_owned();
        move |source| AddError::Io { what, path, source }
    };
    let mut file = File::create(&tmp).map_err(io("creating"))?;
    file.write_all(bytes).map_err(io("writing"))?;
    file.sync_all().map_err(io("syncing"))?;
    std::fs::rename(&tmp, path).map_err(io("renaming into place"))
}

/// Checks what `add` needs before it writes anything: a valid, unused ID and some readers.
fn check_new(dir: &Path, options: &AddOptions) -> Result<ObjectPaths, AddError> {
    catalog::validate_id(&options.id)?;
    if options.readers.is_empty() {
        return Err(AddError::NoReaders(options.id.clone()));
    }
    let paths = ObjectPaths::new(dir, &options.id);
    if paths.record.exists() {
        return Err(AddError::Exists {
            id: options.id.clone(),
            dir: dir.to_owned(),
        });
    }
    Ok(paths)
}

/// A fresh header for `server_key` and its data key.
fn new_header(server_key: &PublicKey, input: &Path) -> Result<(Vec<u8>, DataKey), AddError> {
    let data_key = DataKey::generate();
    let writer = SecretKey::generate();
    let header =
        c4gh::header::build(&writer, &[*server_key], &[&data_key], None).map_err(|source| {
            AddError::Crypt4gh {
                path: input.to_owned(),
                source,
            }
        })?;
    Ok((header, data_key))
}

/// Encrypts `input` with `data_key` into `sink`, hashing both sides as they stream.
fn encrypt_into<W: Write>(
    input: &Path,
    data_key: &DataKey,
    sink: W,
) -> Result<(W, Digest, Digest), AddError> {
    let plain = File::open(input).map_err(|source| AddError::Io {
        what: "opening",
        path: input.to_owned(),
        source,
    })?;
    let mut reader = Hashing::new(BufReader::with_capacity(1 << 20, plain));
    let mut encryptor = Encryptor::new(Hashing::new(sink), data_key);
    let written = encryptor
        .copy_from(&mut reader)
        .and_then(|_| encryptor.finish())
        .map_err(|source| AddError::Crypt4gh {
            path: input.to_owned(),
            source,
        })?;
    let (_, plaintext) = reader.digest();
    let (sink, body) = written.digest();
    Ok((sink, plaintext, body))
}

/// The record of a new object.
fn new_record(
    options: &AddOptions,
    input: &Path,
    plaintext: Digest,
    body: Digest,
    store_etag: Option<String>,
) -> ObjectRecord {
    ObjectRecord {
        id: options.id.clone(),
        name: options
            .name
            .clone()
            .or_else(|| input.file_name().map(|n| n.to_string_lossy().into_owned())),
        description: options.description.clone(),
        mime_type: options.mime_type.clone(),
        dataset: options.dataset.clone(),
        created_time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        plaintext,
        body,
        readers: options.readers.clone(),
        store_etag,
    }
}

/// Writes the header, then the record (last, so a listed object is complete).
fn register(paths: &ObjectPaths, header: &[u8], record: &ObjectRecord) -> Result<(), AddError> {
    write_atomically(&paths.header, header)?;
    let mut json = serde_json::to_vec_pretty(record).map_err(|e| AddError::Io {
        what: "encoding",
        path: paths.record.clone(),
        source: io::Error::other(e),
    })?;
    json.push(b'\n');
    write_atomically(&paths.record, &json)
}

/// Encrypts `input` for `server_key` and registers it in the catalog at `dir`.
pub fn add_file(
    dir: &Path,
    server_key: &PublicKey,
    input: &Path,
    options: &AddOptions,
) -> Result<ObjectRecord, AddError> {
    let paths = check_new(dir, options)?;
    let (header, data_key) = new_header(server_key, input)?;
    let body_tmp = part(&paths.body);
    let body_file = File::create(&body_tmp).map_err(|source| AddError::Io {
        what: "creating",
        path: body_tmp.clone(),
        source,
    })?;
    let encrypted = encrypt_into(
        input,
        &data_key,
        BufWriter::with_capacity(1 << 20, body_file),
    );
    let (buffered, plaintext, body) = match encrypted {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&body_tmp);
            return Err(e);
        }
    };
    let finish = buffered
        .into_inner()
        .map_err(io::IntoInnerError::into_error)
        .and_then(|file| file.sync_all());
    if let Err(source) = finish {
        let _ = std::fs::remove_file(&body_tmp);
        return Err(AddError::Io {
            what: "writing",
            path: body_tmp,
            source,
        });
    }
    std::fs::rename(&body_tmp, &paths.body).map_err(|source| AddError::Io {
        what: "renaming into place",
        path: paths.body.clone(),
        source,
    })?;
    let record = new_record(options, input, plaintext, body, None);
    register(&paths, &header, &record)?;
    Ok(record)
}

/// Collects the encrypted body into parts of `part_size` bytes and hands each full part to the
/// uploader (blocking while the uploader is one part behind, so memory stays bounded).
struct PartSender {
    part: Vec<u8>,
    part_size: usize,
    tx: mpsc::Sender<io::Result<Vec<u8>>>,
}

impl PartSender {
    fn send(&mut self) -> io::Result<()> {
        let part = std::mem::replace(&mut self.part, Vec::with_capacity(self.part_size));
        self.tx
            .blocking_send(Ok(part))
            .map_err(|_| io::Error::other("the upload stopped"))
    }
}

impl Write for PartSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.part_size - self.part.len());
        self.part.extend_from_slice(&buf[..n]);
        if self.part.len() == self.part_size {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The part size for a body of about `size` bytes: [`MIN_PART_BYTES`], or more when the body
/// would need more than [`MAX_PARTS`] parts (rounded up to a MiB).
fn part_size(size: u64) -> usize {
    let needed = size.div_ceil(MAX_PARTS - 16).div_ceil(1 << 20) << 20;
    usize::try_from(needed)
        .unwrap_or(usize::MAX)
        .max(MIN_PART_BYTES)
}

/// Like [`add_file`] with the body uploaded to `store` (a streaming multipart upload: the
/// encrypted body is never on local disk, and memory holds about three parts) instead of
/// written to the catalog directory. The record names the store's ETag of the body.
pub async fn add_to_store(
    dir: &Path,
    server_key: &PublicKey,
    input: &Path,
    options: &AddOptions,
    store: &S3Store,
) -> Result<ObjectRecord, AddError> {
    let paths = check_new(dir, options)?;
    let (header, data_key) = new_header(server_key, input)?;
    let size = std::fs::metadata(input)
        .map_err(|source| AddError::Io {
            what: "opening",
            path: input.to_owned(),
            source,
        })?
        .len();
    let part_size = part_size(size + size / 64 + (1 << 20));
    let (tx, rx) = mpsc::channel(1);
    let input_owned = input.to_owned();
    let encrypting = tokio::task::spawn_blocking(move || {
        let sink = PartSender {
            part: Vec::with_capacity(part_size),
            part_size,
            tx: tx.clone(),
        };
        let result = encrypt_into(&input_owned, &data_key, sink).and_then(|(mut sink, p, b)| {
            if !sink.part.is_empty() || b.size == 0 {
                sink.send().map_err(|source| AddError::Io {
                    what: "uploading",
                    path: input_owned.clone(),
                    source,
                })?;
            }
            Ok((p, b))
        });
        if result.is_err() {
            let _ = tx.blocking_send(Err(io::Error::other("encryption failed")));
        }
        result
    });
    let uploaded = store.upload(&options.id, rx).await;
    let encrypted = encrypting.await.map_err(|e| AddError::Io {
        what: "encrypting",
        path: input.to_owned(),
        source: io::Error::other(e),
    })?;
    // Each side stops when the other fails: report the failure that came first.
    let (plaintext, body, etag) = match (encrypted, uploaded) {
        (Ok((plaintext, body)), Ok(etag)) => (plaintext, body, etag),
        (Err(e), Err(StoreError::Source { .. }) | Ok(_)) => return Err(e),
        (_, Err(e)) => return Err(e.into()),
    };
    let record = new_record(options, input, plaintext, body, Some(etag));
    register(&paths, &header, &record)?;
    Ok(record)
}
