//! Partial `encrypted` bodies that a later run can trust and continue.
//!
//! While an `encrypted` input downloads, `.NAME.part` holds header ‖ body prefix and, when the
//! server named the body's strong validator up front (the ETag in the header response:
//! `X-C4GH-Content-ETag`, SDA's `SDA-Content-ETag`), `.NAME.resume.json` records what the
//! prefix belongs to: URI, server, object id, size, sha-256, ETag and header length (no key
//! material). A run that ends without the body (a failure after the retry budget, SIGKILL,
//! a pod restart) leaves both; the next run with the same destination continues the body with
//! `Range`/`If-Range` when
//!
//! 1. the record matches the object as the server describes it now (id, size, sha-256, ETag,
//!    URI and server) and the new header has the recorded length, and
//! 2. every complete segment of the prefix authenticates with the data key of the **new**
//!    header (a rerun has a new ephemeral key, but the re-encrypted header carries the same
//!    data key), while the prefix is hashed to seed the whole-body checksums.
//!
//! The prefix is cut back to whole segments (a torn last write is fetched again). Anything
//! else — no record, a changed validator, a prefix that fails authentication — discards the
//! partial with a log line saying why, and the body is fetched from byte 0. The final name is
//! written only by the rename after the whole body verified, as without resume.
//!
//! `plaintext` inputs are not resumed across runs: their checksums describe the encrypted body,
//! which is not on disk, and plaintext carries no authentication tag, so a plaintext prefix left
//! by an earlier run cannot be re-verified.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use c4gh::header::OpenedHeader;
use drs::types::DrsObject;
use drs::{BodyExpectation, BodyHashes, ResumeFrom};
use serde::{Deserialize, Serialize};

use crate::atomic;

/// Version of the `.NAME.resume.json` format.
const FORMAT: u32 = 1;
/// Permission bits of the record.
const RECORD_MODE: u32 = 0o600;

/// What a partial body belongs to (the content of `.NAME.resume.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialRecord {
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// The input's `drs://` URI.
    pub url: String,
    /// `host[:port]` of the server.
    pub server: String,
    /// DRS object id.
    pub object: String,
    /// Body size.
    pub size: u64,
    /// The object's sha-256 of the body, if it lists one.
    pub sha256: Option<String>,
    /// Strong ETag of the body.
    pub etag: String,
    /// Length of the Crypt4GH header before the body in `.NAME.part`.
    pub header_len: usize,
}

impl PartialRecord {
    /// The record for downloading `object` from `server` with `expect` (from the header
    /// response) and a header of `header_len` bytes; `None` when the server named no strong
    /// ETag, so a later run could not tell whether the body is still the same.
    pub fn new(
        url: &str,
        server: &str,
        object: &DrsObject,
        expect: &BodyExpectation,
        header_len: usize,
    ) -> Option<Self> {
        let etag = expect.etag.as_deref().filter(|t| !t.starts_with("W/"))?;
        Some(PartialRecord {
            format: FORMAT,
            url: url.to_owned(),
            server: server.to_ascii_lowercase(),
            object: object.id.clone(),
            size: object.size,
            sha256: expect.sha256().map(str::to_owned),
            etag: etag.to_owned(),
            header_len,
        })
    }

    /// Writes the record beside `dest` (atomically, mode 0600).
    pub fn write(&self, dest: &Path) -> io::Result<()> {
        let json = serde_json::to_vec(self).map_err(io::Error::other)?;
        atomic::write(&record_path(dest), &json, RECORD_MODE)
    }

    /// The record beside `dest`: `Ok(None)` when there is none.
    ///
    /// # Errors
    ///
    /// When it cannot be read or parsed (the caller discards the partial).
    pub fn read(dest: &Path) -> Result<Option<Self>, String> {
        let bytes = match std::fs::read(record_path(dest)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read the resume record: {e}")),
        };
        let record: PartialRecord = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the resume record is not valid: {e}"))?;
        if record.format != FORMAT {
            return Err(format!(
                "the resume record has format {}, this sidecar writes {FORMAT}",
                record.format
            ));
        }
        Ok(Some(record))
    }

    /// Why a partial described by `self` cannot continue into `now`; `None` when it can.
    pub fn mismatch(&self, now: &PartialRecord) -> Option<String> {
        let differs = |what: &str, was: &dyn std::fmt::Display, is: &dyn std::fmt::Display| {
            Some(format!("the {what} changed ({was} → {is})"))
        };
        let none = || "none".to_owned();
        if self.etag != now.etag {
            differs("body's ETag (validator)", &self.etag, &now.etag)
        } else if self.size != now.size {
            differs("body size", &self.size, &now.size)
        } else if self.sha256 != now.sha256 {
            differs(
                "body's sha-256",
                &self.sha256.clone().unwrap_or_else(none),
                &now.sha256.clone().unwrap_or_else(none),
            )
        } else if self.object != now.object {
            differs("object id", &self.object, &now.object)
        } else if self.url != now.url || self.server != now.server {
            differs("input URI", &self.url, &now.url)
        } else if self.header_len != now.header_len {
            differs("header length", &self.header_len, &now.header_len)
        } else {
            None
        }
    }
}

/// `.NAME.resume.json` beside `dest`.
pub fn record_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.resume.json"))
}

/// Removes the partial of `dest` (`.NAME.part` and its record); missing files are fine.
pub fn discard(dest: &Path) {
    let _ = atomic::remove_if_exists(&atomic::part_path(dest));
    let _ = atomic::remove_if_exists(&record_path(dest));
}

/// How much of the body in `part` (header of `header_len` bytes first) can be kept: its whole
/// segments, or the whole body when it is all there. `None` when there is nothing to keep.
pub fn usable_prefix(part_len: u64, header_len: usize, size: u64) -> Option<u64> {
    let body = part_len.checked_sub(header_len as u64)?;
    let segment = c4gh::body::CIPHER_SEGMENT_SIZE as u64;
    let keep = if body >= size {
        size
    } else {
        body - body % segment
    };
    (keep > 0).then_some(keep)
}

/// Re-verifies the first `offset` body bytes of `part` (after `header_len` header bytes):
/// every segment must authenticate with `opened`'s data keys; the bytes are hashed for
/// `expect`'s checksums. Blocking: run it on a blocking thread.
///
/// # Errors
///
/// Why the prefix cannot be trusted (I/O, a segment that fails authentication).
pub fn verify_prefix(
    part: &Path,
    header_len: usize,
    offset: u64,
    etag: &str,
    opened: &OpenedHeader,
    expect: &BodyExpectation,
) -> Result<ResumeFrom, String> {
    let mut file = std::fs::File::open(part).map_err(|e| format!("cannot open it: {e}"))?;
    io::copy(&mut (&mut file).take(header_len as u64), &mut io::sink())
        .map_err(|e| format!("cannot read it: {e}"))?;
    let mut reader = Hashing {
        inner: file.take(offset),
        hashes: BodyHashes::new(expect),
        bytes: 0,
    };
    c4gh::parallel::decrypt_parallel(&mut reader, &mut io::sink(), &opened.data_keys, None, 2)
        .map_err(|e| {
            format!("the kept prefix fails authentication with the header's data key: {e}")
        })?;
    if reader.bytes != offset {
        return Err(format!(
            "the kept prefix has {} bytes, {offset} expected",
            reader.bytes
        ));
    }
    Ok(ResumeFrom {
        offset,
        etag: etag.to_owned(),
        hashes: reader.hashes,
    })
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hashes: BodyHashes,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hashes.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use c4gh::SecretKey;
    use c4gh::header::EncryptedHeader;

    const SEG: u64 = c4gh::body::CIPHER_SEGMENT_SIZE as u64;

    fn record() -> PartialRecord {
        PartialRecord {
            format: FORMAT,
            url: "drs://h/x".into(),
            server: "h".into(),
            object: "x".into(),
            size: 10 * SEG,
            sha256: Some("ab".into()),
            etag: "\"e1\"".into(),
            header_len: 124,
        }
    }

    #[test]
    fn prefix_is_cut_to_whole_segments() {
        assert_eq!(usable_prefix(100, 124, 10 * SEG), None);
        assert_eq!(usable_prefix(124 + SEG - 1, 124, 10 * SEG), None);
        assert_eq!(
            usable_prefix(124 + 3 * SEG + 7, 124, 10 * SEG),
            Some(3 * SEG)
        );
        assert_eq!(usable_prefix(124 + 500, 124, 500), Some(500));
    }

    #[test]
    fn record_round_trips_and_names_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.c4gh");
        assert_eq!(PartialRecord::read(&dest).unwrap(), None);
        record().write(&dest).unwrap();
        assert_eq!(record_path(&dest), dir.path().join(".a.c4gh.resume.json"));
        let back = PartialRecord::read(&dest).unwrap().unwrap();
        assert_eq!(back, record());
        assert_eq!(back.mismatch(&record()), None);
        let mut changed = record();
        changed.etag = "\"e2\"".into();
        assert!(back.mismatch(&changed).unwrap().contains("ETag"));
        let mut changed = record();
        changed.header_len = 200;
        assert!(back.mismatch(&changed).unwrap().contains("header length"));
        std::fs::write(record_path(&dest), b"{").unwrap();
        assert!(PartialRecord::read(&dest).is_err());
        discard(&dest);
        assert!(!record_path(&dest).exists());
    }

    #[test]
    fn prefix_verifies_with_a_reencrypted_header_and_fails_when_damaged() {
        let (writer, first, second) = (
            SecretKey::generate(),
            SecretKey::generate(),
            SecretKey::generate(),
        );
        let plain = vec![5u8; 4 * c4gh::body::SEGMENT_SIZE + 10];
        let mut file = Vec::new();
        c4gh::encrypt(&mut &plain[..], &mut file, &writer, &[first.public_key()]).unwrap();
        // A rerun's header: the same data key, for another recipient.
        let header =
            c4gh::header::reencrypt(&file[..124], &first, &[second.public_key()], true).unwrap();
        let opened = EncryptedHeader::parse(&header)
            .unwrap()
            .open(&[&second], None)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join(".a.part");
        let cut = 124 + 2 * SEG as usize + 99;
        std::fs::write(&part, &file[..cut]).unwrap();
        let offset = usable_prefix(cut as u64, 124, (file.len() - 124) as u64).unwrap();
        assert_eq!(offset, 2 * SEG);
        let expect = BodyExpectation::default();
        let resume = verify_prefix(&part, 124, offset, "\"e\"", &opened, &expect).unwrap();
        assert_eq!(resume.offset, offset);

        let mut damaged = file[..cut].to_vec();
        damaged[124 + SEG as usize + 40] ^= 1;
        std::fs::write(&part, &damaged).unwrap();
        let e = verify_prefix(&part, 124, offset, "\"e\"", &opened, &expect).unwrap_err();
        assert!(e.contains("authentication"), "{e}");

        let stranger = SecretKey::generate();
        let mut other = Vec::new();
        c4gh::encrypt(
            &mut &plain[..],
            &mut other,
            &writer,
            &[stranger.public_key()],
        )
        .unwrap();
        let foreign = EncryptedHeader::parse(&other[..124])
            .unwrap()
            .open(&[&stranger], None)
            .unwrap();
        std::fs::write(&part, &file[..cut]).unwrap();
        assert!(verify_prefix(&part, 124, offset, "\"e\"", &foreign, &expect).is_err());
    }
}
