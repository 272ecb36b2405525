//! Outputs leave encrypted: each declared output file (and each regular file under a declared
//! directory) is replaced by its Crypt4GH encryption for the output's recipients.
//!
//! Per file `DIR/NAME`, so that no state of an interruption leaves plaintext under the output's
//! name:
//! 1. rename `NAME` to `.NAME.c4gh-plain` (the output's name is now absent, so an uploader that
//!    runs after a killed encryption finds the output missing and fails);
//! 2. encrypt `.NAME.c4gh-plain` into `.NAME.c4gh-part` (created exclusively, mode of the
//!    original), streaming through [`c4gh::parallel::encrypt_parallel`] on up to 4 lanes with a
//!    bounded buffer pool, so memory does not grow with the file; a helper thread runs
//!    `fdatasync` after every [`WRITEBACK_BYTES`] written, so the disk writes out the
//!    ciphertext while the rest is encrypted, and a last `fdatasync` once all of it is written
//!    makes the whole file (data and size) durable before step 3;
//! 3. rename `.NAME.c4gh-part` to `NAME`, fsync the directory, unlink `.NAME.c4gh-plain`, fsync
//!    the directory again.
//!
//! A later run that finds `.NAME.c4gh-plain` without `NAME` resumes at step 2 (the sidecar or
//! the seal container killed and restarted). A file that cannot be encrypted (disk full, I/O
//! error, not a regular file) fails the whole sealing with the reason, and its plaintext and
//! partial ciphertext are removed: never a plaintext output left for an uploader. Symbolic
//! links, FIFOs, sockets and devices under an output are refused and removed too (an uploader
//! would follow a link to plaintext elsewhere). An output path that does not exist is reported
//! as absent, not as a failure (the uploader decides whether a missing output fails the task).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use c4gh::{DataKey, PublicKey, SecretKey};
use c4gh_contract::OutputEntry;
use c4gh_contract::pod::{SEAL_PART_SUFFIX, SEAL_PLAIN_SUFFIX};

use crate::atomic::{remove_if_exists, sync_dir};
use crate::cli::{OutputArgs, SealArgs};

/// Files with fewer bytes than this are encrypted on one lane.
const PARALLEL_MIN_BYTES: u64 = 4 << 20;
/// Most lanes one file gets by default.
const DEFAULT_MAX_THREADS: usize = 4;
/// Ciphertext written between two background `fdatasync`s (see the module docs).
pub const WRITEBACK_BYTES: u64 = 64 << 20;

/// Writes to a file and, after every [`WRITEBACK_BYTES`], asks a helper thread to `fdatasync`
/// it, so that writeback overlaps the encryption instead of following it. The durability
/// guarantee comes from the caller's last `fdatasync`; the background ones only shorten it.
struct Writeback<'a> {
    file: &'a File,
    since_sync: u64,
    wake: Option<std::sync::mpsc::SyncSender<()>>,
    helper: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl<'a> Writeback<'a> {
    fn new(file: &'a File) -> io::Result<Self> {
        let synced = file.try_clone()?;
        // Capacity 1: a request made while a sync runs is kept, further ones are dropped (the
        // next sync covers them).
        let (wake, requests) = std::sync::mpsc::sync_channel::<()>(1);
        let helper = std::thread::Builder::new()
            .name("seal-writeback".into())
            .spawn(move || {
                while requests.recv().is_ok() {
                    // The clone shares the open file description: an error reported here is
                    // not reported again to the last fdatasync, so it is returned.
                    synced.sync_data()?;
                }
                Ok(())
            })?;
        Ok(Writeback {
            file,
            since_sync: 0,
            wake: Some(wake),
            helper: Some(helper),
        })
    }

    /// Stops the helper; its first error, if any.
    fn finish(&mut self) -> io::Result<()> {
        drop(self.wake.take());
        match self.helper.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the writeback thread panicked")),
            None => Ok(()),
        }
    }
}

impl Write for Writeback<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (&*self.file).write(buf)?;
        self.since_sync += n as u64;
        if self.since_sync >= WRITEBACK_BYTES {
            self.since_sync = 0;
            if let Some(wake) = &self.wake {
                // Full: a sync is already asked for. Disconnected: the helper stopped on an
                // error, which `finish` returns.
                let _ = wake.try_send(());
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Writeback<'_> {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Why an output list cannot be used at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealConfigError {
    /// The JSON is not an output list.
    #[error("output list is not valid JSON ({0}); expected [{{\"path\": …, \"recipients\": […]}}]")]
    Json(#[from] serde_json::Error),
    /// An entry's path is not absolute.
    #[error("output {index} ({path:?}): the path must be absolute")]
    RelativePath {
        /// Position in the list.
        index: usize,
        /// The path.
        path: String,
    },
    /// An entry has no recipient.
    #[error("output {index} ({path}): no recipient; name at least one Crypt4GH public key")]
    NoRecipient {
        /// Position in the list.
        index: usize,
        /// The path.
        path: String,
    },
    /// A recipient is not a Crypt4GH public key.
    #[error("output {index} ({path}), recipient {recipient}: not a Crypt4GH public key ({reason})")]
    BadKey {
        /// Position in the list.
        index: usize,
        /// The path.
        path: String,
        /// Position of the recipient.
        recipient: usize,
        /// The parser's message.
        reason: String,
    },
}

/// One declared output, ready to seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The file or directory.
    pub path: PathBuf,
    /// Its recipients.
    pub recipients: Vec<PublicKey>,
}

/// Parses and checks an output list (JSON, as in `C4GH_OUTPUTS`).
///
/// # Errors
///
/// [`SealConfigError`] for malformed JSON, relative paths, entries without recipients and keys
/// that do not parse.
pub fn parse(json: &str) -> Result<Vec<Output>, SealConfigError> {
    OutputEntry::parse_list(json)?
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            if !entry.path.starts_with('/') {
                return Err(SealConfigError::RelativePath {
                    index,
                    path: entry.path,
                });
            }
            if entry.recipients.is_empty() {
                return Err(SealConfigError::NoRecipient {
                    index,
                    path: entry.path,
                });
            }
            let recipients = entry
                .recipients
                .iter()
                .enumerate()
                .map(|(recipient, key)| {
                    PublicKey::from_pem(key).map_err(|e| SealConfigError::BadKey {
                        index,
                        path: entry.path.clone(),
                        recipient,
                        reason: e.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Output {
                path: PathBuf::from(entry.path),
                recipients,
            })
        })
        .collect()
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// Replaced by its encryption: plaintext bytes read.
    Sealed(u64),
    /// The declared path does not exist.
    Absent,
    /// Could not be encrypted; the plaintext was removed.
    Failed(String),
}

/// The outcome of [`seal_all`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Every file looked at, in order, with what happened to it.
    pub files: Vec<(PathBuf, FileOutcome)>,
    /// Seconds spent.
    pub seconds: f64,
}

impl Report {
    /// Files sealed and their plaintext bytes.
    pub fn sealed(&self) -> (usize, u64) {
        self.files
            .iter()
            .filter_map(|(_, o)| match o {
                FileOutcome::Sealed(n) => Some(*n),
                _ => None,
            })
            .fold((0, 0), |(n, b), bytes| (n + 1, b + bytes))
    }

    /// The failures, as `path: reason`.
    pub fn failures(&self) -> Vec<String> {
        self.files
            .iter()
            .filter_map(|(p, o)| match o {
                FileOutcome::Failed(reason) => Some(format!("{}: {reason}", p.display())),
                _ => None,
            })
            .collect()
    }

    /// One line for logs and termination messages.
    pub fn summary(&self) -> String {
        let (sealed, bytes) = self.sealed();
        let absent = self
            .files
            .iter()
            .filter(|(_, o)| *o == FileOutcome::Absent)
            .count();
        let failures = self.failures();
        if failures.is_empty() {
            format!("outputs encrypted: {sealed} files, {bytes} bytes, {absent} absent")
        } else {
            format!(
                "output encryption failed for {} files (plaintext removed, nothing to upload): {}; {sealed} files encrypted",
                failures.len(),
                failures.join("; ")
            )
        }
    }
}

/// Seals every output (see the module docs) on `threads` lanes per file (0: the default, one per
/// core up to 4). Every file is attempted; the report says which failed.
pub fn seal_all(outputs: &[Output], threads: usize) -> Report {
    let started = Instant::now();
    let mut report = Report::default();
    for output in outputs {
        for (path, kind) in files_of(&output.path, &mut report) {
            let outcome = match kind {
                Kind::Regular => seal_file(&path, &output.recipients, threads),
                Kind::Resume => seal_from(&path, &plain_path(&path), &output.recipients, threads),
                Kind::Refused(what) => {
                    let removed = remove_if_exists(&path);
                    FileOutcome::Failed(match removed {
                        Ok(()) => format!("is {what}, not a regular file; removed it"),
                        Err(e) => format!("is {what}, not a regular file; cannot remove it: {e}"),
                    })
                }
            };
            match &outcome {
                FileOutcome::Failed(reason) => {
                    tracing::error!(path = %path.display(), reason, "output not encrypted");
                }
                FileOutcome::Sealed(bytes) => {
                    tracing::info!(path = %path.display(), bytes, "output encrypted");
                }
                FileOutcome::Absent => {}
            }
            report.files.push((path, outcome));
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report
}

enum Kind {
    Regular,
    /// Only `.NAME.c4gh-plain` exists: an earlier encryption was interrupted.
    Resume,
    Refused(&'static str),
}

/// The files to seal under `path` (the path itself when it is a file), depth-first in name
/// order. Stale `.c4gh-part` files are removed; `.NAME.c4gh-plain` without `NAME` resumes.
fn files_of(path: &Path, report: &mut Report) -> Vec<(PathBuf, Kind)> {
    let mut out = Vec::new();
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if fs::symlink_metadata(plain_path(path)).is_ok() {
                out.push((path.to_owned(), Kind::Resume));
            } else {
                report.files.push((path.to_owned(), FileOutcome::Absent));
            }
        }
        Err(e) => report
            .files
            .push((path.to_owned(), FileOutcome::Failed(e.to_string()))),
        Ok(meta) if meta.is_dir() => walk(path, &mut out, report),
        Ok(meta) => out.push((path.to_owned(), kind_of(&meta))),
    }
    out
}

fn kind_of(meta: &fs::Metadata) -> Kind {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() {
        Kind::Regular
    } else if t.is_symlink() {
        Kind::Refused("a symbolic link")
    } else if t.is_fifo() {
        Kind::Refused("a FIFO")
    } else if t.is_socket() {
        Kind::Refused("a socket")
    } else {
        Kind::Refused("a device")
    }
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, Kind)>, report: &mut Report) {
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd.collect::<Result<Vec<_>, _>>(),
        Err(e) => Err(e),
    };
    let mut entries = match entries {
        Ok(entries) => entries,
        Err(e) => {
            report.files.push((
                dir.to_owned(),
                FileOutcome::Failed(format!("cannot list the directory: {e}")),
            ));
            return;
        }
    };
    entries.sort_by_key(fs::DirEntry::file_name);
    let names: std::collections::BTreeSet<_> = entries.iter().map(|e| e.file_name()).collect();
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(base) = own_temp(&name, SEAL_PART_SUFFIX) {
            let _ = remove_if_exists(&path);
            tracing::warn!(path = %path.display(), output = base, "removed a partial encryption");
            continue;
        }
        if let Some(base) = own_temp(&name, SEAL_PLAIN_SUFFIX) {
            if !names.contains(std::ffi::OsStr::new(base)) {
                out.push((dir.join(base), Kind::Resume));
            }
            continue;
        }
        match entry.metadata() {
            Ok(meta) if meta.is_dir() => walk(&path, out, report),
            Ok(meta) => out.push((path, kind_of(&meta))),
            Err(e) => report
                .files
                .push((path, FileOutcome::Failed(e.to_string()))),
        }
    }
}

/// `NAME` for `.NAME{suffix}`.
fn own_temp<'a>(name: &'a str, suffix: &str) -> Option<&'a str> {
    name.strip_prefix('.')?
        .strip_suffix(suffix)
        .filter(|b| !b.is_empty())
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}{suffix}"))
}

/// `.NAME.c4gh-plain` beside `path`.
pub fn plain_path(path: &Path) -> PathBuf {
    sibling(path, SEAL_PLAIN_SUFFIX)
}

/// `.NAME.c4gh-part` beside `path`.
pub fn seal_part_path(path: &Path) -> PathBuf {
    sibling(path, SEAL_PART_SUFFIX)
}

/// Seals one regular file in place (steps 1–3 of the module docs).
pub fn seal_file(path: &Path, recipients: &[PublicKey], threads: usize) -> FileOutcome {
    let plain = plain_path(path);
    if let Err(e) = fs::rename(path, &plain).and_then(|()| sync_dir(path)) {
        return FileOutcome::Failed(format!("cannot move it aside for encryption: {e}"));
    }
    seal_from(path, &plain, recipients, threads)
}

/// Encrypts `plain` into `path` (steps 2–3); on failure removes both the partial ciphertext
/// and the plaintext.
fn seal_from(path: &Path, plain: &Path, recipients: &[PublicKey], threads: usize) -> FileOutcome {
    let part = seal_part_path(path);
    match encrypt_to(plain, &part, path, recipients, threads) {
        Ok(bytes) => match remove_if_exists(plain).and_then(|()| sync_dir(path)) {
            Ok(()) => FileOutcome::Sealed(bytes),
            Err(e) => FileOutcome::Failed(format!(
                "encrypted, but cannot remove its plaintext {}: {e}",
                plain.display()
            )),
        },
        Err(reason) => {
            let _ = remove_if_exists(&part);
            let removed = remove_if_exists(plain);
            let _ = sync_dir(path);
            FileOutcome::Failed(match removed {
                Ok(()) => reason,
                Err(e) => format!("{reason}; cannot remove its plaintext either: {e}"),
            })
        }
    }
}

fn encrypt_to(
    plain: &Path,
    part: &Path,
    path: &Path,
    recipients: &[PublicKey],
    threads: usize,
) -> Result<u64, String> {
    let started = Instant::now();
    let input = File::open(plain).map_err(|e| format!("cannot open it: {e}"))?;
    let meta = input
        .metadata()
        .map_err(|e| format!("cannot stat it: {e}"))?;
    let mode = meta.permissions().mode() & 0o666;
    remove_if_exists(part).map_err(|e| format!("cannot remove a stale {}: {e}", part.display()))?;
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(part)
        .map_err(|e| format!("cannot create {}: {e}", part.display()))?;
    // The umask applies to `mode` at creation; the ciphertext gets the plaintext's bits exactly
    // (an uploader such as TESK's filer, UID 100, may need the write bit the task gave it), and
    // its owner when the sealer may give it (root in TESK's outputs filer; an unprivileged
    // sidecar keeps its own files, which it owns already or cannot hand over).
    out.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", part.display()))?;
    if let Err(e) = std::os::unix::fs::fchown(&out, Some(meta.uid()), Some(meta.gid())) {
        tracing::debug!(path = %path.display(), error = %e, "ciphertext keeps the sealer's owner");
    }
    let writer = SecretKey::generate();
    let key = DataKey::generate();
    let header = c4gh::header::build(&writer, recipients, &[&key], None)
        .map_err(|e| format!("cannot build the Crypt4GH header: {e}"))?;
    let threads = match threads {
        0 if meta.len() < PARALLEL_MIN_BYTES => 1,
        0 => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(DEFAULT_MAX_THREADS),
        n => n,
    };
    let write_err = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", part.display());
    out.write_all(&header).map_err(|e| write_err(&e))?;
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut writeback = Writeback::new(&out).map_err(|e| write_err(&e))?;
    let mut writer_buf = io::BufWriter::with_capacity(1 << 20, &mut writeback);
    let bytes = c4gh::parallel::encrypt_parallel(&mut reader, &mut writer_buf, &key, threads)
        .map_err(|e| format!("cannot encrypt it: {e}"))?;
    writer_buf.flush().map_err(|e| write_err(&e))?;
    drop(writer_buf);
    let encrypted = started.elapsed();
    writeback.finish().map_err(|e| write_err(&e))?;
    drop(writeback);
    out.sync_data().map_err(|e| write_err(&e))?;
    drop(out);
    tracing::debug!(
        path = %path.display(),
        encrypt_seconds = encrypted.as_secs_f64(),
        sync_seconds = (started.elapsed() - encrypted).as_secs_f64(),
        "ciphertext written and synced"
    );
    if bytes != meta.len() {
        return Err(format!(
            "it changed while being encrypted ({} bytes before, {bytes} read)",
            meta.len()
        ));
    }
    fs::rename(part, path)
        .and_then(|()| sync_dir(path))
        .map_err(|e| format!("cannot rename {} to it: {e}", part.display()))?;
    Ok(bytes)
}

/// Kubernetes keeps at most 4096 bytes of a termination message.
const TERMINATION_MESSAGE_MAX: usize = 4096;

/// Seals the outputs `args` names (none: nothing to do, success) and writes the outcome to its
/// termination log. Returns whether every file was encrypted, and the one-line outcome.
pub fn seal_configured(args: &OutputArgs) -> (bool, String) {
    let json = match (&args.outputs, &args.outputs_file) {
        (Some(json), _) => Some(json.clone()),
        (None, Some(file)) => match fs::read_to_string(file) {
            Ok(json) => Some(json),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                let line = format!(
                    "cannot read the output list {}: {e}; nothing encrypted",
                    file.display()
                );
                write_termination(&args.termination_log, &line);
                return (false, line);
            }
        },
        (None, None) => None,
    };
    let outputs = match json.as_deref().map(parse).transpose() {
        Ok(None) => return (true, "no outputs declared".to_owned()),
        Ok(Some(outputs)) => outputs,
        Err(e) => {
            let line = format!("output list rejected, nothing encrypted: {e}");
            write_termination(&args.termination_log, &line);
            return (false, line);
        }
    };
    let report = seal_all(&outputs, args.seal_threads);
    let ok = report.failures().is_empty();
    let (files, bytes) = report.sealed();
    let line = report.summary();
    if ok {
        tracing::info!(files, bytes, seconds = report.seconds, "{line}");
    } else {
        tracing::error!(files, bytes, seconds = report.seconds, "{line}");
    }
    write_termination(&args.termination_log, &line);
    (ok, line)
}

/// The `seal` subcommand.
pub fn seal_main(args: &SealArgs) -> std::process::ExitCode {
    match seal_configured(&args.output) {
        (true, _) => std::process::ExitCode::SUCCESS,
        (false, _) => std::process::ExitCode::FAILURE,
    }
}

fn write_termination(path: &Path, line: &str) {
    let mut end = line.len().min(TERMINATION_MESSAGE_MAX);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    if let Err(e) = fs::write(path, &line[..end]) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the termination log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipient() -> (SecretKey, Vec<PublicKey>) {
        let sk = SecretKey::generate();
        let pk = sk.public_key();
        (sk, vec![pk])
    }

    fn decrypt(path: &Path, sk: &SecretKey) -> Vec<u8> {
        let mut out = Vec::new();
        c4gh::decrypt(&mut File::open(path).unwrap(), &mut out, &[sk]).unwrap();
        out
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn files_and_directories_are_replaced_by_their_encryption() {
        let dir = tempfile::tempdir().unwrap();
        let (sk, pks) = recipient();
        let file = dir.path().join("a.vcf");
        let big: Vec<u8> = (0..(5 << 20) + 7).map(|i| (i % 251) as u8).collect();
        fs::write(&file, &big).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();
        let sub = dir.path().join("d/e");
        fs::create_dir_all(&sub).unwrap();
        fs::write(sub.join("x"), b"x").unwrap();
        fs::write(dir.path().join("d/empty"), b"").unwrap();
        let outputs = vec![
            Output {
                path: file.clone(),
                recipients: pks.clone(),
            },
            Output {
                path: dir.path().join("d"),
                recipients: pks.clone(),
            },
            Output {
                path: dir.path().join("missing"),
                recipients: pks,
            },
        ];
        let report = seal_all(&outputs, 0);
        assert_eq!(report.failures(), Vec::<String>::new());
        assert_eq!(report.sealed(), (3, big.len() as u64 + 1));
        assert!(
            report.summary().contains("1 absent"),
            "{}",
            report.summary()
        );
        assert_eq!(decrypt(&file, &sk), big);
        assert_eq!(decrypt(&sub.join("x"), &sk), b"x");
        assert_eq!(decrypt(&dir.path().join("d/empty"), &sk), b"");
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666, "the plaintext's mode, whatever the umask");
        assert_eq!(names(dir.path()), ["a.vcf", "d"]);
        assert_eq!(names(&dir.path().join("d")), ["e", "empty"]);
    }

    #[test]
    fn an_interrupted_encryption_resumes_from_the_plaintext_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (sk, pks) = recipient();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        fs::write(plain_path(&out.join("r.bam")), b"results").unwrap();
        fs::write(seal_part_path(&out.join("r.bam")), b"crypt4gh partial").unwrap();
        let report = seal_all(
            &[Output {
                path: out.clone(),
                recipients: pks,
            }],
            1,
        );
        assert_eq!(report.sealed(), (1, 7), "{report:?}");
        assert_eq!(decrypt(&out.join("r.bam"), &sk), b"results");
        assert_eq!(names(&out), ["r.bam"]);
    }

    #[test]
    fn links_and_fifos_are_refused_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (_, pks) = recipient();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        fs::write(dir.path().join("secret"), b"plain").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), out.join("link")).unwrap();
        nix::unistd::mkfifo(&out.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let report = seal_all(
            &[Output {
                path: out.clone(),
                recipients: pks,
            }],
            0,
        );
        let failures = report.failures();
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures[0].contains("is a FIFO"), "{failures:?}");
        assert!(failures[1].contains("is a symbolic link"), "{failures:?}");
        assert!(
            report
                .summary()
                .starts_with("output encryption failed for 2 files")
        );
        assert_eq!(names(&out), Vec::<String>::new());
    }

    #[test]
    fn a_failed_encryption_leaves_no_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let (_, pks) = recipient();
        let file = dir.path().join("r.txt");
        fs::write(&file, b"results").unwrap();
        // The part file's name is taken by a directory: creating it fails like a full disk.
        fs::create_dir(seal_part_path(&file)).unwrap();
        fs::write(seal_part_path(&file).join("x"), b"").unwrap();
        let report = seal_all(
            &[Output {
                path: file.clone(),
                recipients: pks,
            }],
            0,
        );
        assert_eq!(report.failures().len(), 1, "{report:?}");
        assert!(!file.exists());
        assert!(!plain_path(&file).exists());
    }

    #[test]
    fn lists_are_checked() {
        let pk = SecretKey::generate().public_key().to_pem();
        let good = format!(
            r#"[{{"path": "/o", "recipients": [{}]}}]"#,
            serde_json::json!(pk)
        );
        assert_eq!(parse(&good).unwrap()[0].recipients.len(), 1);
        for (json, want) in [
            (
                r#"[{"path": "o", "recipients": ["x"]}]"#,
                "must be absolute",
            ),
            (r#"[{"path": "/o"}]"#, "no recipient"),
            (
                r#"[{"path": "/o", "recipients": ["bm9wZQ=="]}]"#,
                "recipient 0: not a Crypt4GH public key",
            ),
            (r#"{"path": "/o"}"#, "not valid JSON"),
        ] {
            let err = parse(json).unwrap_err().to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn writeback_syncs_in_the_background_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = File::create(&path).unwrap();
        let mut writeback = Writeback::new(&file).unwrap();
        let block = vec![7u8; 1 << 20];
        // Past two writeback points, then a tail.
        let total = 2 * WRITEBACK_BYTES + 12_345;
        let mut written = 0u64;
        while written < total {
            let n = block.len().min((total - written) as usize);
            writeback.write_all(&block[..n]).unwrap();
            written += n as u64;
        }
        writeback.finish().unwrap();
        drop(writeback);
        file.sync_data().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), total);
    }
}
