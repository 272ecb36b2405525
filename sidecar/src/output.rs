//! Writing one input in its mode: a Crypt4GH file (`encrypted`), decrypted content
//! (`plaintext`), or plaintext into a FIFO (`stream`); and the in-place header swap for a body
//! already present.
//!
//! Regular files are written to `.NAME.part` (registered with [`Cleanup`] before creation),
//! fsynced, and renamed to the final name only after the body stream ended without error — the
//! body reader reports a size or checksum mismatch as an error at its end — so a final name
//! always holds verified content.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use c4gh::authenticate::SegmentAuthenticator;
use c4gh::header::OpenedHeader;
use drs::BodyReader;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt, BufWriter};

use crate::atomic;
use crate::cleanup::Cleanup;

/// Size of the copy buffer between the network and the file.
const COPY_BUF: usize = 256 * 1024;

/// Why writing an output failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// Reading the body (network, checksum, decryption) failed.
    #[error("{0}")]
    Body(#[source] io::Error),
    /// Writing the destination failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file written.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The plaintext exceeds the configured limit.
    #[error(
        "plaintext exceeds C4GH_MAX_PLAINTEXT_BYTES ({limit} bytes); use mode \"encrypted\" or raise the policy's plaintext limit"
    )]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The existing file's header could not be read.
    #[error("existing file {path} is not a Crypt4GH file: {source}")]
    Existing {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: c4gh::Error,
    },
    /// The header does not open with the key, or its body cannot be decrypted.
    #[error("{0}")]
    Crypt4gh(#[source] c4gh::Error),
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |source| OutputError::Write {
        path: path.to_owned(),
        source,
    }
}

/// Creates the parent directories of `path`.
pub async fn create_parent(path: &Path) -> Result<(), OutputError> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(write_err(dir))?;
    }
    Ok(())
}

/// A file being written as `.NAME.part` beside its final name. Dropping it without
/// [`PartFile::commit`] removes the `.part` file (so a cancelled fetch leaves nothing).
#[derive(Debug)]
pub struct PartFile {
    dest: PathBuf,
    part: PathBuf,
    file: Option<BufWriter<tokio::fs::File>>,
    cleanup: Arc<Cleanup>,
    kept: bool,
}

impl PartFile {
    /// Creates the parent directories and `.NAME.part` with permission bits `mode` (minus the
    /// umask), registering the part file with `cleanup` first.
    pub async fn create(
        dest: &Path,
        mode: u32,
        cleanup: Arc<Cleanup>,
    ) -> Result<Self, OutputError> {
        create_parent(dest).await?;
        let part = atomic::part_path(dest);
        cleanup.register(&part);
        let opened = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&part)
            .await;
        Self::opened(dest, part, opened, cleanup)
    }

    /// The part file `part` of `dest` once opening it ended as `opened`; on an error, `part` is
    /// no longer `cleanup`'s to remove (it was not made, or was not this run's).
    fn opened(
        dest: &Path,
        part: PathBuf,
        opened: io::Result<tokio::fs::File>,
        cleanup: Arc<Cleanup>,
    ) -> Result<Self, OutputError> {
        match opened {
            Ok(file) => Ok(PartFile {
                dest: dest.to_owned(),
                part,
                file: Some(BufWriter::with_capacity(COPY_BUF, file)),
                cleanup,
                kept: false,
            }),
            Err(e) => {
                cleanup.forget(&part);
                Err(write_err(&part)(e))
            }
        }
    }

    /// Continues the existing `.NAME.part` of `dest`: cuts it to `keep` bytes (the verified
    /// header and body prefix), writes `header` over its start (a new header of the same length)
    /// and positions the writer at the end. Registers it with `cleanup` like
    /// [`PartFile::create`].
    pub async fn reopen(
        dest: &Path,
        keep: u64,
        header: &[u8],
        cleanup: Arc<Cleanup>,
    ) -> Result<Self, OutputError> {
        let part = atomic::part_path(dest);
        cleanup.register(&part);
        let opened = async {
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .open(&part)
                .await?;
            file.set_len(keep).await?;
            file.write_all(header).await?;
            file.flush().await?;
            file.seek(io::SeekFrom::Start(keep)).await?;
            Ok(file)
        }
        .await;
        Self::opened(dest, part, opened, cleanup)
    }

    /// Leaves the `.part` file on disk for a later run to resume. With `sweep` it stays
    /// registered with the [`Cleanup`] (pod mode removes it at a graceful shutdown; only a
    /// killed sidecar leaves it for its restart); without, it outlives the process.
    pub fn keep(mut self, sweep: bool) {
        self.kept = true;
        if !sweep {
            self.cleanup.forget(&self.part);
        }
    }

    /// The writer (for sinks that write themselves).
    pub fn writer(&mut self) -> Result<&mut BufWriter<tokio::fs::File>, OutputError> {
        let part = &self.part;
        self.file.as_mut().ok_or_else(|| OutputError::Write {
            path: part.clone(),
            source: io::Error::other("file already closed"),
        })
    }

    /// Appends `bytes`.
    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), OutputError> {
        let part = self.part.clone();
        self.writer()?
            .write_all(bytes)
            .await
            .map_err(write_err(&part))
    }

    /// Copies `reader` to the end of the file (see [`copy`]).
    pub async fn copy_from<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        reader: &mut R,
        limit: Option<u64>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, OutputError> {
        let part = self.part.clone();
        copy(reader, self.writer()?, &part, limit, progress).await
    }

    /// Path of the `.part` file.
    pub fn part_path(&self) -> &Path {
        &self.part
    }

    /// Takes the file (what was written so far flushed) for a blocking writer; finish with
    /// [`PartFile::commit_synced`]. Dropping the `PartFile` still removes the `.part` file.
    pub async fn take_file(&mut self) -> Result<std::fs::File, OutputError> {
        let part = self.part.clone();
        self.writer()?.flush().await.map_err(write_err(&part))?;
        let file = self.file.take().ok_or_else(|| OutputError::Write {
            path: self.part.clone(),
            source: io::Error::other("file already closed"),
        })?;
        Ok(file.into_inner().into_std().await)
    }

    /// Renames a file taken with [`PartFile::take_file`], written and fsynced by its writer, to
    /// its final name.
    pub async fn commit_synced(self, file: std::fs::File) -> Result<(), OutputError> {
        drop(file);
        tokio::fs::rename(&self.part, &self.dest)
            .await
            .map_err(write_err(&self.dest))?;
        self.cleanup.forget(&self.part);
        let _ = atomic::sync_dir(&self.dest);
        Ok(())
    }

    /// Flushes, fsyncs and renames the file to its final name.
    pub async fn commit(mut self) -> Result<(), OutputError> {
        let part = self.part.clone();
        let mut file = self.file.take().ok_or_else(|| OutputError::Write {
            path: part.clone(),
            source: io::Error::other("file already closed"),
        })?;
        let result = async {
            file.flush().await.map_err(write_err(&part))?;
            file.get_ref().sync_all().await.map_err(write_err(&part))?;
            drop(file);
            tokio::fs::rename(&part, &self.dest)
                .await
                .map_err(write_err(&self.dest))
        }
        .await;
        if result.is_ok() {
            self.cleanup.forget(&part);
            let _ = atomic::sync_dir(&self.dest);
        }
        result
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.kept && self.cleanup.contains(&self.part) {
            drop(self.file.take());
            let _ = std::fs::remove_file(&self.part);
            self.cleanup.forget(&self.part);
        }
    }
}

/// Copies `reader` to `writer` in bounded chunks, reporting each chunk's size to `progress` and
/// stopping with [`OutputError::TooLarge`] once more than `limit` bytes were read.
pub async fn copy<R, W>(
    reader: &mut R,
    writer: &mut W,
    path: &Path,
    limit: Option<u64>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, OutputError>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; COPY_BUF];
    let mut total: u64 = 0;
    loop {
        let n = reader.read(&mut buf).await.map_err(OutputError::Body)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        if let Some(limit) = limit.filter(|l| total > *l) {
            return Err(OutputError::TooLarge { limit });
        }
        writer.write_all(&buf[..n]).await.map_err(write_err(path))?;
        progress(n as u64);
    }
}

/// Checks every segment tag of an `encrypted` body with the header's data keys
/// ([`c4gh::authenticate`]: Poly1305 over the ciphertext, no decryption) on the download's
/// receiving task, right after the body is hashed and while each received buffer is still in
/// cache. A segment that fails is [`OutputError::Crypt4gh`] (the body is corrupt, whatever
/// the checksums say): the download stops and the caller drops the `.part` file.
pub struct SegmentCheck(Option<SegmentAuthenticator>);

impl SegmentCheck {
    /// A check with the data keys of `opened`.
    ///
    /// # Errors
    ///
    /// [`OutputError::Crypt4gh`] when the header holds no data key.
    pub fn new(opened: &OpenedHeader) -> Result<Self, OutputError> {
        SegmentAuthenticator::new(&opened.data_keys)
            .map(|a| SegmentCheck(Some(a)))
            .map_err(OutputError::Crypt4gh)
    }
}

impl drs::BodyInspector for SegmentCheck {
    type Error = OutputError;

    fn inspect(&mut self, data: &[u8]) -> Result<(), OutputError> {
        match &mut self.0 {
            Some(auth) => auth.update(data).map_err(OutputError::Crypt4gh),
            None => Err(finished_twice()),
        }
    }

    fn finish(&mut self) -> Result<(), OutputError> {
        match self.0.take() {
            Some(auth) => auth.finish().map(drop).map_err(OutputError::Crypt4gh),
            None => Err(finished_twice()),
        }
    }
}

fn finished_twice() -> OutputError {
    OutputError::Body(io::Error::other(
        "segment check used after the body was complete",
    ))
}

/// Blocking writer of an `encrypted` body (checked by a [`SegmentCheck`] on the receiving
/// task): writes every received batch to `file` with one vectored write (no copy in user
/// space) and fsyncs once at the end. Returns the file and the body bytes written. Runs on the
/// pipeline's blocking thread.
pub fn write_body(
    body: &mut BodyReader,
    mut file: std::fs::File,
    part: &Path,
) -> Result<(std::fs::File, u64), OutputError> {
    let mut bytes = 0u64;
    while let Some(batch) = body.next_batch().map_err(OutputError::Body)? {
        drs::write_all_vectored(&mut file, &batch).map_err(write_err(part))?;
        bytes += batch.iter().map(|c| c.len() as u64).sum::<u64>();
    }
    file.sync_all().map_err(write_err(part))?;
    Ok((file, bytes))
}

/// Threads decrypting a `plaintext` body (the pipeline's blocking thread and one more).
const DECRYPT_THREADS: usize = 2;

/// Blocking writer of a `plaintext` body: decrypts it in batches on [`DECRYPT_THREADS`]
/// threads into `file`, stops once more than `limit` plaintext bytes would be written, and
/// fsyncs once at the end. Returns the file and the plaintext bytes written.
pub fn decrypt_body(
    body: &mut BodyReader,
    file: std::fs::File,
    part: &Path,
    opened: &OpenedHeader,
    limit: Option<u64>,
) -> Result<(std::fs::File, u64), OutputError> {
    let mut out = Limited {
        file,
        written: 0,
        limit,
        too_large: false,
        write_failed: false,
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(DECRYPT_THREADS);
    let result = c4gh::parallel::decrypt_parallel(
        body,
        &mut out,
        &opened.data_keys,
        opened.edit_list.as_deref(),
        threads,
    );
    match result {
        Ok(n) => {
            out.file.sync_all().map_err(write_err(part))?;
            Ok((out.file, n))
        }
        Err(_) if out.too_large => Err(OutputError::TooLarge {
            limit: limit.unwrap_or(0),
        }),
        Err(c4gh::Error::Io(source)) if out.write_failed => Err(OutputError::Write {
            path: part.to_owned(),
            source,
        }),
        Err(c4gh::Error::Io(source)) => Err(OutputError::Body(source)),
        Err(e) => Err(OutputError::Crypt4gh(e)),
    }
}

/// A file writer that refuses to go past a plaintext limit and remembers why it failed.
struct Limited {
    file: std::fs::File,
    written: u64,
    limit: Option<u64>,
    too_large: bool,
    write_failed: bool,
}

impl Write for Limited {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(limit) = self.limit
            && self.written + buf.len() as u64 > limit
        {
            self.too_large = true;
            return Err(io::Error::other("plaintext limit exceeded"));
        }
        let n = self
            .file
            .write(buf)
            .inspect_err(|_| self.write_failed = true)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush().inspect_err(|_| self.write_failed = true)
    }
}

/// Writes `prefix` then everything `body` yields to `path` through `.part`; renames only when the
/// body ended without error. Returns the bytes copied from `body`.
pub async fn write_file<R: AsyncRead + Unpin + ?Sized>(
    path: &Path,
    prefix: &[u8],
    body: &mut R,
    limit: Option<u64>,
    cleanup: Arc<Cleanup>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, OutputError> {
    let mut part = PartFile::create(path, 0o644, cleanup).await?;
    part.write_all(prefix).await?;
    let n = part.copy_from(body, limit, progress).await?;
    part.commit().await?;
    Ok(n)
}

/// What is on disk at an `encrypted`-mode destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingFile {
    /// Length of its Crypt4GH header.
    pub header_len: usize,
    /// Length of the body after the header.
    pub body_len: u64,
    /// Lower-case hex SHA-256 of the body.
    pub body_sha256: String,
}

/// Reads the header length of an existing Crypt4GH file and hashes its body. `None` when the
/// file does not exist.
pub async fn inspect_existing(path: &Path) -> Result<Option<ExistingFile>, OutputError> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(write_err(path)(e)),
    };
    let header = c4gh::header::read_header_async(&mut file)
        .await
        .map_err(|source| OutputError::Existing {
            path: path.to_owned(),
            source,
        })?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_BUF];
    let mut body_len = 0u64;
    loop {
        let n = file.read(&mut buf).await.map_err(write_err(path))?;
        if n == 0 {
            break;
        }
        body_len += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok(Some(ExistingFile {
        header_len: header.len(),
        body_len,
        body_sha256: hex(&hasher.finalize()),
    }))
}

/// Replaces the header of the existing file at `path` (whose header is `old_len` bytes) with
/// `header`: in place when the lengths are equal (one write + fsync), else by rewriting the file
/// through `.part`. Returns true when it was done in place.
pub async fn replace_header(
    path: &Path,
    old_len: usize,
    header: &[u8],
    cleanup: Arc<Cleanup>,
) -> Result<bool, OutputError> {
    if header.len() == old_len {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .await
            .map_err(write_err(path))?;
        file.write_all(header).await.map_err(write_err(path))?;
        file.flush().await.map_err(write_err(path))?;
        file.sync_all().await.map_err(write_err(path))?;
        return Ok(true);
    }
    let mut old = tokio::fs::File::open(path).await.map_err(write_err(path))?;
    old.seek(io::SeekFrom::Start(old_len as u64))
        .await
        .map_err(write_err(path))?;
    write_file(path, header, &mut old, None, cleanup, &|_| ()).await?;
    Ok(false)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use c4gh::SecretKey;

    #[tokio::test]
    async fn dropped_part_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let cleanup = Arc::new(Cleanup::new());
        let mut part = PartFile::create(&path, 0o640, Arc::clone(&cleanup))
            .await
            .unwrap();
        part.write_all(b"half").await.unwrap();
        assert!(atomic::part_path(&path).exists());
        drop(part);
        assert!(!atomic::part_path(&path).exists());
        assert!(!path.exists());
        assert_eq!(cleanup.sweep(), 0);
    }

    #[tokio::test]
    async fn failed_body_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out");
        let cleanup = Arc::new(Cleanup::new());
        let failing = tokio_test_reader(b"partial", io::ErrorKind::UnexpectedEof);
        let mut body = failing;
        let err = write_file(&path, b"H", &mut body, None, Arc::clone(&cleanup), &|_| ())
            .await
            .unwrap_err();
        assert!(matches!(err, OutputError::Body(_)), "{err}");
        assert!(!path.exists());
        assert!(!atomic::part_path(&path).exists());
        assert_eq!(cleanup.sweep(), 0);
    }

    #[tokio::test]
    async fn limit_is_enforced_without_leaving_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let data = vec![7u8; 1000];
        let err = write_file(
            &path,
            b"",
            &mut &data[..],
            Some(999),
            Arc::default(),
            &|_| (),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, OutputError::TooLarge { limit: 999 }), "{err}");
        assert!(!path.exists());
        let n = write_file(
            &path,
            b"",
            &mut &data[..],
            Some(1000),
            Arc::default(),
            &|_| (),
        )
        .await
        .unwrap();
        assert_eq!(n, 1000);
    }

    #[tokio::test]
    async fn header_swap_in_place_and_rewrite() {
        let writer = SecretKey::generate();
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        let plaintext = b"GATTACA".repeat(20_000);
        let mut file = Vec::new();
        c4gh::encrypt(&mut &plaintext[..], &mut file, &writer, &[a.public_key()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.c4gh");
        std::fs::write(&path, &file).unwrap();
        let existing = inspect_existing(&path).await.unwrap().unwrap();
        assert_eq!(existing.header_len, 124);
        assert_eq!(existing.body_len, file.len() as u64 - 124);
        assert_eq!(existing.body_sha256, hex(&Sha256::digest(&file[124..])));

        let for_b = c4gh::header::reencrypt(&file[..124], &a, &[b.public_key()], true).unwrap();
        assert!(
            replace_header(&path, 124, &for_b, Arc::default())
                .await
                .unwrap()
        );
        let mut out = Vec::new();
        c4gh::decrypt(&mut &std::fs::read(&path).unwrap()[..], &mut out, &[&b]).unwrap();
        assert_eq!(out, plaintext);

        let for_both =
            c4gh::header::reencrypt(&for_b, &b, &[a.public_key(), b.public_key()], true).unwrap();
        assert!(
            !replace_header(&path, 124, &for_both, Arc::default())
                .await
                .unwrap()
        );
        let mut out = Vec::new();
        c4gh::decrypt(&mut &std::fs::read(&path).unwrap()[..], &mut out, &[&a]).unwrap();
        assert_eq!(out, plaintext);
        assert!(!atomic::part_path(&path).exists());
    }

    #[test]
    fn limited_writer_stops_at_the_plaintext_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain");
        let mut out = Limited {
            file: std::fs::File::create(&path).unwrap(),
            written: 0,
            limit: Some(5),
            too_large: false,
            write_failed: false,
        };
        out.write_all(b"12345").unwrap();
        assert!(!out.too_large, "exactly the limit is allowed");
        assert!(out.write_all(b"6").is_err());
        assert!(out.too_large && !out.write_failed);
        assert_eq!(std::fs::read(&path).unwrap(), b"12345");
    }

    /// A reader yielding `data` and then failing with `kind`.
    fn tokio_test_reader(data: &'static [u8], kind: io::ErrorKind) -> impl AsyncRead + Unpin {
        data.chain(FailingReader(kind))
    }

    struct FailingReader(io::ErrorKind);

    impl AsyncRead for FailingReader {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Err(io::Error::new(self.0, "connection dropped")))
        }
    }
}
