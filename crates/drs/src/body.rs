//! Streaming body download: Range resume, `If-Range`/ETag sameness, idle timeouts, length and
//! sha-256 checks, progress; and [`Client::fetch_to_file`], which writes header ‖ body to
//! `<dest>.part` and renames it into place only when everything checked out.
//!
//! Two ways to consume a body: [`Client::download_body`] writes into an `AsyncWrite` on the
//! calling task; [`Client::download_body_blocking`] is a pipeline — the network task only
//! receives (TLS, HTTP) and hands ~1 MiB batches of the received buffers (no copy) through a
//! bounded channel to a consumer on a blocking thread, which writes (and authenticates or
//! decrypts) them with a [`BodyReader`]; the network task hashes what it hands over, and runs
//! a [`BodyInspector`] over it when given one
//! ([`Client::download_body_blocking_inspected`]), while each buffer is still in cache.
//! Receiving, hashing and inspecting on one core, writing (or decrypting) on the other.
//!
//! What the checks mean (see `docs/drs-crypt4gh.md` §4): the DRS object's `size` and checksums
//! (`sha-256`, and `sha-512`, `sha-1`, `md5` when listed) describe the **encrypted body** (the
//! file without its header). A checksum catches what Crypt4GH's per-segment MACs cannot:
//! dropped, reordered or duplicated segments.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use md5::Md5;
use reqwest::header::{CONTENT_RANGE, ETAG, HeaderValue, IF_RANGE, RANGE};
use reqwest::{Method, StatusCode};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::client::{Client, FetchedHeader, Req, RetryReason, Target};
use crate::error::{Error, Result};
use crate::flavour::{ClientPublicKey, HeaderFlavour};
use crate::resolve::ObjectRef;
use crate::types::{DrsObject, redact_url};

/// How often an expired signed body URL is renewed at the access endpoint without the download
/// making progress in between (a store that calls every fresh URL expired has a clock problem).
pub const MAX_URL_RENEWALS: u32 = 3;

/// How often a header + body fetch starts over (fresh DRS object, header and body) because
/// the body changed underneath it or failed its length or checksum check.
pub const MAX_BODY_RESTARTS: u32 = 3;
/// Cap on resumes of one body download (each must make progress).
pub const MAX_RESUMES: u32 = 1000;
/// Bodies with less than this left to fetch use the API client (see
/// [`crate::ClientConfig::http1_bodies`]).
pub(crate) const SMALL_BODY_BYTES: u64 = 1 << 20;
/// Bytes the network task collects before handing a batch to a blocking consumer.
pub const PIPELINE_BATCH_BYTES: usize = 1 << 20;
/// Batches queued between the network task and a blocking consumer (memory bound: this many
/// batches plus the one being filled and the one being consumed).
pub const PIPELINE_DEPTH: usize = 4;

/// A checksum algorithm the client computes over a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChecksumKind {
    /// SHA-256 (`sha-256`), always computed.
    Sha256,
    /// SHA-512 (`sha-512`).
    Sha512,
    /// SHA-1 (`sha-1`).
    Sha1,
    /// MD5 (`md5`).
    Md5,
}

impl ChecksumKind {
    /// The kind a DRS checksum `type` names (IANA hash names, case-insensitive; `sha256`,
    /// `sha1` and `md-5` are accepted too), or `None` for types the client cannot compute
    /// (`etag`, `crc32c`, `trunc512`, …).
    pub fn from_drs(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "sha-256" | "sha256" => Some(Self::Sha256),
            "sha-512" | "sha512" => Some(Self::Sha512),
            "sha-1" | "sha1" => Some(Self::Sha1),
            "md5" | "md-5" => Some(Self::Md5),
            _ => None,
        }
    }

    /// The DRS name (`sha-256`, `sha-512`, `sha-1`, `md5`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha-256",
            Self::Sha512 => "sha-512",
            Self::Sha1 => "sha-1",
            Self::Md5 => "md5",
        }
    }
}

/// A checksum the body must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedChecksum {
    /// The algorithm.
    pub kind: ChecksumKind,
    /// Lower-case hex digest.
    pub hex: String,
}

/// What the body must be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyExpectation {
    /// Length in bytes (the DRS object's `size`).
    pub size: Option<u64>,
    /// The checksums to verify (every listed type the client can compute).
    pub checksums: Vec<ExpectedChecksum>,
    /// Checksum types the object lists that the client cannot compute (not verified).
    pub unusable: Vec<String>,
    /// Strong ETag the body must have (from the header response), if known.
    pub etag: Option<String>,
}

impl BodyExpectation {
    /// Size and every computable checksum from a DRS object, ETag from a fetched header.
    pub fn for_object(object: &DrsObject, header: Option<&FetchedHeader>) -> Self {
        let mut checksums = Vec::new();
        let mut unusable = Vec::new();
        for c in &object.checksums {
            match ChecksumKind::from_drs(&c.r#type) {
                Some(kind) => checksums.push(ExpectedChecksum {
                    kind,
                    hex: c.checksum.trim().to_ascii_lowercase(),
                }),
                None => unusable.push(crate::error::sanitize(&c.r#type, 40)),
            }
        }
        Self {
            size: Some(object.size),
            checksums,
            unusable,
            etag: header.and_then(|h| h.content_etag.clone()),
        }
    }

    /// The expected sha-256, if listed.
    pub fn sha256(&self) -> Option<&str> {
        self.checksums
            .iter()
            .find(|c| c.kind == ChecksumKind::Sha256)
            .map(|c| c.hex.as_str())
    }
}

/// Incremental digests of a body: sha-256 always, the other kinds when a
/// [`BodyExpectation`] lists them. Seed one with a partial body's bytes to resume it (see
/// [`ResumeFrom`]).
#[derive(Clone)]
pub struct BodyHashes {
    sha256: Sha256,
    sha512: Option<Sha512>,
    sha1: Option<Sha1>,
    md5: Option<Md5>,
}

impl std::fmt::Debug for BodyHashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyHashes")
            .field("sha512", &self.sha512.is_some())
            .field("sha1", &self.sha1.is_some())
            .field("md5", &self.md5.is_some())
            .finish_non_exhaustive()
    }
}

impl BodyHashes {
    /// Hashers for sha-256 and every kind `expect` lists.
    pub fn new(expect: &BodyExpectation) -> Self {
        let wants = |k| expect.checksums.iter().any(|c| c.kind == k);
        BodyHashes {
            sha256: Sha256::new(),
            sha512: wants(ChecksumKind::Sha512).then(Sha512::new),
            sha1: wants(ChecksumKind::Sha1).then(Sha1::new),
            md5: wants(ChecksumKind::Md5).then(Md5::new),
        }
    }

    /// Hashes the next body bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.sha256.update(data);
        if let Some(h) = &mut self.sha512 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha1 {
            h.update(data);
        }
        if let Some(h) = &mut self.md5 {
            h.update(data);
        }
    }

    fn finish(self) -> Digests {
        let mut others = Vec::new();
        if let Some(h) = self.sha512 {
            others.push((ChecksumKind::Sha512, hex(&h.finalize())));
        }
        if let Some(h) = self.sha1 {
            others.push((ChecksumKind::Sha1, hex(&h.finalize())));
        }
        if let Some(h) = self.md5 {
            others.push((ChecksumKind::Md5, hex(&h.finalize())));
        }
        Digests {
            sha256: hex(&self.sha256.finalize()),
            others,
        }
    }
}

/// Finished digests.
struct Digests {
    sha256: String,
    others: Vec<(ChecksumKind, String)>,
}

impl Digests {
    fn get(&self, kind: ChecksumKind) -> Option<&str> {
        if kind == ChecksumKind::Sha256 {
            return Some(&self.sha256);
        }
        self.others
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_str())
    }
}

/// Where a download continues: a verified partial body of `offset` bytes with strong ETag
/// `etag`, whose bytes were hashed into `hashes` (made with [`BodyHashes::new`] for the same
/// expectation). The download asks for `bytes=offset-` with `If-Range: etag`; the consumer
/// receives only the bytes after `offset`, and the checksums cover the whole body.
#[derive(Debug, Clone)]
pub struct ResumeFrom {
    /// Body bytes already in place.
    pub offset: u64,
    /// Strong ETag of the body those bytes came from.
    pub etag: String,
    /// Digests of those bytes.
    pub hashes: BodyHashes,
}

/// Progress of a body download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Body bytes written so far.
    pub done: u64,
    /// Expected total, if known.
    pub total: Option<u64>,
}

/// Progress callback.
pub type ProgressFn<'a> = &'a (dyn Fn(Progress) + Send + Sync);

/// What a finished body download was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyReport {
    /// Bytes written.
    pub bytes: u64,
    /// The body's ETag, if the server sent one.
    pub etag: Option<String>,
    /// Lower-case hex sha-256 of the bytes written.
    pub sha256: String,
    /// How many times the download resumed after a dropped connection or stall.
    pub resumes: u32,
    /// Whether at least one checksum was checked against the object's checksums.
    pub checksum_verified: bool,
    /// The checksum kinds that were checked (and matched).
    pub verified: Vec<ChecksumKind>,
    /// Checksum types the object listed that could not be checked.
    pub unverified: Vec<String>,
}

/// What [`Client::fetch_to_file`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchReport {
    /// The DRS object as last fetched (re-fetched after a restart).
    pub object: DrsObject,
    /// The final file.
    pub path: PathBuf,
    /// Length of the header written before the body.
    pub header_bytes: u64,
    /// The body download.
    pub body: BodyReport,
    /// Restarts because the body changed (new ETag) during the fetch.
    pub restarts: u32,
}

/// How often a body download retries responses that make no sense (a `206` for the wrong
/// range, a `Content-Length` that contradicts the object's size, an unexpected status): such a
/// response is a corrupted or misbehaving hop as often as a broken server.
pub const MAX_INVALID_BODY_RESPONSES: u32 = 1;

/// Why a body pass stopped early; the download resumes from `done`.
enum Interrupted {
    /// No bytes for `Timeouts::idle`.
    Idle,
    /// Fewer than `Timeouts::min_rate` bytes in a `Timeouts::rate_window` (a trickling server).
    TooSlow,
    /// The connection failed or closed before the end.
    Dropped(String),
    /// The response contradicted the request or the object (length, range, status).
    Invalid(Error),
    /// A signed URL's lifetime ended (the store's error code and message): renew it.
    Expired(String),
}

impl Client {
    /// Streams the body at `target` into `sink`, resuming with `Range`/`If-Range` after dropped
    /// connections and stalls (each resume must follow progress; at most
    /// [`RetryPolicy::max_attempts`](crate::RetryPolicy) failures in a row), and checks length,
    /// ETag and sha-256. Hashing and writing run on the calling task; for large bodies prefer
    /// [`Client::download_body_blocking`].
    ///
    /// A body whose ETag changes mid-download cannot be continued in a stream: that is
    /// [`Error::BodyChanged`]; [`Client::fetch_to_file`] restarts in that case.
    ///
    /// # Errors
    ///
    /// [`Error::Length`], [`Error::Checksum`], [`Error::BodyChanged`], [`Error::Timeout`],
    /// [`Error::Transport`], [`Error::Write`], status errors.
    pub async fn download_body<W: AsyncWrite + Unpin + Send>(
        &self,
        object_id: &str,
        target: &Target,
        expect: &BodyExpectation,
        sink: &mut W,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<BodyReport> {
        let mut writer = AsyncSink {
            sink,
            hasher: BodyHashes::new(expect),
            object: object_id,
        };
        let st = self
            .download_into(object_id, target, expect, None, &mut writer, progress)
            .await?;
        writer.sink.flush().await.map_err(|source| Error::Write {
            object: object_id.to_owned(),
            path: PathBuf::new(),
            source,
        })?;
        let hashed = st.done;
        verify(object_id, expect, st, hashed, writer.hasher.finish())
    }

    /// Downloads the body like [`Client::download_body`], as a pipeline: this task receives and
    /// hands the received buffers in batches of about [`PIPELINE_BATCH_BYTES`] through a
    /// channel of [`PIPELINE_DEPTH`] batches to `consume`, which runs on a blocking thread and
    /// reads the body from a [`BodyReader`] (this task hashes what it hands over). Memory stays
    /// bounded whatever the body size.
    ///
    /// When `consume` returns `Ok` before the end, the rest of the body is still read and hashed
    /// (and discarded), so the checksum always covers the whole body. When the download fails or
    /// is cancelled, the reader returns an error to `consume` instead of a clean end, so a
    /// consumer never mistakes a cut-off body for a complete one.
    ///
    /// # Errors
    ///
    /// [`PipelineError::Consumer`] with `consume`'s error when it failed (unless the download
    /// failed first); otherwise [`PipelineError::Download`] with the errors of
    /// [`Client::download_body`].
    pub async fn download_body_blocking<T, E, F>(
        &self,
        object_id: &str,
        target: &Target,
        expect: &BodyExpectation,
        progress: Option<ProgressFn<'_>>,
        consume: F,
    ) -> std::result::Result<(BodyReport, T), PipelineError<E>>
    where
        F: FnOnce(&mut BodyReader) -> std::result::Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        self.download_body_blocking_from(object_id, target, expect, None, progress, consume)
            .await
    }

    /// [`Client::download_body_blocking`] continuing a verified partial body (`resume`): the
    /// request asks for the rest with `Range`/`If-Range`, `consume` receives only the bytes
    /// after [`ResumeFrom::offset`] ([`BodyReader::offset`] says where it starts), and the
    /// report's checksums and byte count cover the whole body. A server that answers with the
    /// whole body (`200`) has its first `offset` bytes skipped; one whose ETag differs gives
    /// [`Error::BodyChanged`] (start over without `resume`).
    ///
    /// # Errors
    ///
    /// As [`Client::download_body_blocking`].
    pub async fn download_body_blocking_from<T, E, F>(
        &self,
        object_id: &str,
        target: &Target,
        expect: &BodyExpectation,
        resume: Option<ResumeFrom>,
        progress: Option<ProgressFn<'_>>,
        consume: F,
    ) -> std::result::Result<(BodyReport, T), PipelineError<E>>
    where
        F: FnOnce(&mut BodyReader) -> std::result::Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let inspector = NoInspection(std::marker::PhantomData);
        self.download_body_blocking_inspected(
            object_id, target, expect, resume, inspector, progress, consume,
        )
        .await
    }

    /// [`Client::download_body_blocking_from`] with `inspector` run on this task over every
    /// body byte, in order, right after hashing it — while the received buffer is still in the
    /// CPU's cache (checking Crypt4GH segment tags costs least there). The consumer receives
    /// only bytes the inspector accepted. When the inspector rejects the body (in
    /// [`BodyInspector::inspect`], or in [`BodyInspector::finish`] once the body is complete),
    /// the download stops, the consumer's reader reports a failed download, and the result is
    /// [`PipelineError::Consumer`] with the inspector's error.
    ///
    /// # Errors
    ///
    /// As [`Client::download_body_blocking`], and the inspector's rejection.
    #[allow(clippy::too_many_arguments)]
    pub async fn download_body_blocking_inspected<T, E, F, I>(
        &self,
        object_id: &str,
        target: &Target,
        expect: &BodyExpectation,
        resume: Option<ResumeFrom>,
        inspector: I,
        progress: Option<ProgressFn<'_>>,
        consume: F,
    ) -> std::result::Result<(BodyReport, T), PipelineError<E>>
    where
        F: FnOnce(&mut BodyReader) -> std::result::Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        I: BodyInspector<Error = E>,
    {
        let (tx, rx) = mpsc::channel(PIPELINE_DEPTH);
        let (offset, hashes, start) = match resume {
            Some(r) => (r.offset, r.hashes, Some((r.offset, r.etag))),
            None => (0, BodyHashes::new(expect), None),
        };
        let consumer = tokio::task::spawn_blocking(move || {
            let mut reader = BodyReader::new(rx, offset);
            let result = consume(&mut reader);
            let drained = match &result {
                Ok(_) => reader.drain(),
                Err(_) => Ok(()),
            };
            (result, drained, reader.bytes)
        });
        let mut sink = ChannelSink {
            tx,
            batch: Vec::new(),
            len: 0,
            consumer_gone: false,
            object: object_id,
            hasher: hashes,
            inspector,
            rejected: None,
        };
        let downloaded = match self
            .download_into(object_id, target, expect, start, &mut sink, progress)
            .await
        {
            Ok(st) => sink.finish_inspection().await.map(|()| st),
            Err(e) => Err(e),
        };
        let consumer_gone = sink.consumer_gone;
        let end = if downloaded.is_ok() {
            Msg::End
        } else {
            Msg::Failed
        };
        let _ = sink.tx.send(end).await;
        let ChannelSink {
            tx,
            hasher,
            rejected,
            ..
        } = sink;
        drop(tx);
        let digests = hasher.finish();
        let (consumed, drained, hashed) = consumer.await.map_err(|e| {
            PipelineError::Download(Error::Write {
                object: object_id.to_owned(),
                path: PathBuf::new(),
                source: io::Error::other(format!("the body consumer did not finish: {e}")),
            })
        })?;
        if let Some(e) = rejected {
            return Err(PipelineError::Consumer(e));
        }
        let st = match (downloaded, consumed) {
            (Err(e), _) if !consumer_gone => return Err(PipelineError::Download(e)),
            (_, Err(e)) => return Err(PipelineError::Consumer(e)),
            (Err(e), Ok(_)) => return Err(PipelineError::Download(e)),
            (Ok(st), Ok(value)) => (st, value),
        };
        drained.map_err(|source| {
            PipelineError::Download(Error::Write {
                object: object_id.to_owned(),
                path: PathBuf::new(),
                source,
            })
        })?;
        let (st, value) = st;
        verify(object_id, expect, st, hashed, digests)
            .map(|report| (report, value))
            .map_err(PipelineError::Download)
    }

    /// The resume loop shared by both forms; returns the final state. Gives up when
    /// [`RetryPolicy::max_elapsed`](crate::RetryPolicy) passes without progress (or
    /// `max_attempts` failures in a row, or more than [`MAX_INVALID_BODY_RESPONSES`]
    /// contradictory responses).
    async fn download_into<S: PassSink>(
        &self,
        object_id: &str,
        target: &Target,
        expect: &BodyExpectation,
        start: Option<(u64, String)>,
        sink: &mut S,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<Finished> {
        let (done, etag) = match start {
            Some((offset, etag)) => (offset, Some(etag)),
            None => (0, expect.etag.clone()),
        };
        let mut state = State {
            done,
            etag,
            resumes: 0,
            failures: 0,
            invalid: 0,
            stalled_since: Instant::now(),
        };
        let url = redact_url(target.url.as_str());
        let policy = &self.cfg.retry;
        let mut target = std::borrow::Cow::Borrowed(target);
        // Renewals of an expired signed URL since the last progress, and where that was.
        let (mut renewals, mut renewed_at) = (0u32, state.done);
        loop {
            let pass = self
                .body_pass(object_id, &target, expect, sink, progress, &mut state)
                .await;
            sink.end_pass().await?;
            let why = match pass? {
                None => break,
                Some(why) => why,
            };
            if let Interrupted::Expired(code) = why {
                if state.done > renewed_at {
                    (renewals, renewed_at) = (0, state.done);
                }
                renewals += 1;
                let renew = target
                    .renew
                    .clone()
                    .filter(|_| renewals <= MAX_URL_RENEWALS);
                let Some((obj, access_id)) = renew else {
                    return Err(Error::SignedUrlRefused {
                        object: object_id.to_owned(),
                        host: crate::error::authority_of(&target.url),
                        status: 403,
                        url,
                        hint: crate::error::signed_url_hint(403, &code),
                        code,
                    });
                };
                tracing::info!(
                    object = object_id,
                    url = %url,
                    at = state.done,
                    "the signed body URL expired; asking the access endpoint for a new one"
                );
                let renewed = self
                    .target(&obj, crate::flavour::Locator::AccessId(access_id))
                    .await?;
                target = std::borrow::Cow::Owned(renewed);
                continue;
            }
            state.failures += 1;
            let reason = if let Interrupted::Invalid(_) = why {
                state.invalid += 1;
                RetryReason::InvalidResponse
            } else {
                RetryReason::BodyResume
            };
            let wait = policy
                .next_wait(
                    state.stalled_since,
                    state.failures,
                    policy.backoff(state.failures - 1),
                )
                .filter(|_| {
                    state.resumes < MAX_RESUMES && state.invalid <= MAX_INVALID_BODY_RESPONSES
                });
            let Some(wait) = wait else {
                let timeout = |what, after| Error::Timeout {
                    object: object_id.to_owned(),
                    url: url.clone(),
                    what,
                    after,
                    attempts: state.failures,
                };
                return Err(match why {
                    Interrupted::Idle => timeout("body data (idle)", self.cfg.timeouts.idle),
                    Interrupted::TooSlow => timeout(
                        "body data (below the minimum rate)",
                        self.cfg.timeouts.rate_window,
                    ),
                    Interrupted::Dropped(detail) => Error::Interrupted {
                        object: object_id.to_owned(),
                        url,
                        attempts: state.failures,
                        at: state.done,
                        expected: expect.size.unwrap_or(state.done),
                        detail,
                    },
                    Interrupted::Invalid(e) => e,
                    Interrupted::Expired(detail) => Error::Interrupted {
                        object: object_id.to_owned(),
                        url,
                        attempts: state.failures,
                        at: state.done,
                        expected: expect.size.unwrap_or(state.done),
                        detail,
                    },
                });
            };
            if state.etag.is_none() && state.done > 0 {
                return Err(Error::BodyChanged {
                    object: object_id.to_owned(),
                    before: "(no ETag: cannot resume safely)".into(),
                    after: "(unknown)".into(),
                });
            }
            state.resumes += 1;
            self.retried(reason, &url, state.failures, wait, &why.describe());
            tokio::time::sleep(wait).await;
        }
        Ok(Finished {
            done: state.done,
            etag: state.etag,
            resumes: state.resumes,
        })
    }

    /// One request; `Ok(None)` when the body is complete.
    async fn body_pass<S: PassSink>(
        &self,
        object_id: &str,
        target: &Target,
        expect: &BodyExpectation,
        sink: &mut S,
        progress: Option<ProgressFn<'_>>,
        st: &mut State,
    ) -> Result<Option<Interrupted>> {
        let url = redact_url(target.url.as_str());
        let length_err = |detail: String| Error::Length {
            object: object_id.to_owned(),
            url: url.clone(),
            expected: expect.size.unwrap_or(0),
            detail,
        };
        if expect.size == Some(st.done) && st.done > 0 {
            return Ok(None);
        }
        let mut req = Req::new(Method::GET, target.url.clone(), object_id);
        req.headers = target.headers.clone();
        req.credentials = target.credentials;
        // A small body rides the API client's (HTTP/2, when offered) connections like a header
        // does, rather than opening a bulk connection of its own.
        req.body_download = expect
            .size
            .is_none_or(|size| size.saturating_sub(st.done) >= SMALL_BODY_BYTES);
        if st.done > 0 {
            let range = HeaderValue::from_str(&format!("bytes={}-", st.done))
                .map_err(|_| length_err("cannot build Range header".into()))?;
            req.headers.insert(RANGE, range);
            if let Some(tag) = st
                .etag
                .as_deref()
                .filter(|t| !t.starts_with("W/"))
                .and_then(|t| HeaderValue::from_str(t).ok())
            {
                req.headers.insert(IF_RANGE, tag);
            }
        }
        let resp = self.send(&req).await?;
        // A URL on another host with no headers of its own is a signed URL (an object store):
        // its refusals are S3 XML, and an expired one is renewed, not fatal.
        let signed = !target.credentials && target.headers.is_empty();
        if signed && matches!(resp.status().as_u16(), 400 | 403 | 404) {
            let status = resp.status().as_u16();
            let text = tokio::time::timeout(
                self.cfg.timeouts.response,
                crate::client::read_limited(resp, 16 * 1024),
            )
            .await;
            let code = match text {
                Ok(Ok(Some(bytes))) => {
                    crate::error::s3_error_code(&String::from_utf8_lossy(&bytes))
                }
                _ => String::new(),
            };
            // S3 answers 403 for an expired signature and 400 `ExpiredToken` for a URL signed
            // with temporary credentials that have expired since (SeaweedFS: 403
            // `InvalidAccessKeyId`, the session being gone): once the URL's own lifetime is
            // over, any refusal is worth a new URL (bounded by MAX_URL_RENEWALS).
            let lapsed = crate::error::signed_url_expiry(&target.url)
                .is_some_and(|t| t <= std::time::SystemTime::now());
            if matches!(status, 400 | 403) && (crate::error::is_expiry(&code) || lapsed) {
                return Ok(Some(Interrupted::Expired(code)));
            }
            return Err(Error::SignedUrlRefused {
                object: object_id.to_owned(),
                host: crate::error::authority_of(&target.url),
                status,
                url,
                hint: crate::error::signed_url_hint(status, &code),
                code,
            });
        }
        let resp = self.check(resp, object_id).await?;
        let status = resp.status();
        let resp_etag = resp
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match (&st.etag, &resp_etag) {
            (Some(want), Some(got)) if want != got => {
                return Err(Error::BodyChanged {
                    object: object_id.to_owned(),
                    before: want.clone(),
                    after: got.clone(),
                });
            }
            (None, Some(got)) if !got.starts_with("W/") => st.etag = Some(got.clone()),
            _ => {}
        }
        let mut skip = 0u64;
        let declared = resp.content_length();
        match status {
            StatusCode::PARTIAL_CONTENT => {
                let cr = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_content_range)
                    .ok_or_else(|| length_err("206 without a valid Content-Range".into()));
                let cr = match cr {
                    Ok(cr) => cr,
                    Err(e) => return Ok(Some(Interrupted::Invalid(e))),
                };
                if cr.start != st.done {
                    return Ok(Some(Interrupted::Invalid(length_err(format!(
                        "asked for bytes from {}, server sent from {}",
                        st.done, cr.start
                    )))));
                }
                if let (Some(size), Some(total)) = (expect.size, cr.total)
                    && size != total
                {
                    return Ok(Some(Interrupted::Invalid(length_err(format!(
                        "server says the body is {total} bytes"
                    )))));
                }
                if let Some(n) = declared
                    && n != cr.end + 1 - cr.start
                {
                    return Ok(Some(Interrupted::Invalid(length_err(format!(
                        "Content-Length {n} disagrees with Content-Range {}-{}",
                        cr.start, cr.end
                    )))));
                }
            }
            StatusCode::OK => {
                if let (Some(size), Some(n)) = (expect.size, declared)
                    && n != size
                {
                    return Ok(Some(Interrupted::Invalid(length_err(format!(
                        "server sent Content-Length {n}"
                    )))));
                }
                // A 200 on a resume: the server ignored the range (same ETag, or none) — skip
                // what we have.
                skip = st.done;
            }
            other => {
                return Ok(Some(Interrupted::Invalid(Error::BadResponse {
                    object: object_id.to_owned(),
                    url,
                    detail: format!("unexpected status {} for a body request", other.as_u16()),
                })));
            }
        }
        let mut resp = resp;
        let before = st.done;
        let mut window_start = Instant::now();
        let mut window_bytes = 0u64;
        loop {
            let chunk = match tokio::time::timeout(self.cfg.timeouts.idle, resp.chunk()).await {
                Err(_) => {
                    st.note_progress(before, self.cfg.timeouts.min_rate);
                    return Ok(Some(Interrupted::Idle));
                }
                Ok(Err(e)) => {
                    st.note_progress(before, self.cfg.timeouts.min_rate);
                    return Ok(Some(Interrupted::Dropped(format!(
                        "connection error: {}",
                        e.without_url()
                    ))));
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => c,
            };
            let mut data = chunk;
            if skip > 0 {
                let n = usize::try_from(skip.min(data.len() as u64)).unwrap_or(data.len());
                data.advance(n);
                skip -= n as u64;
            }
            if data.is_empty() {
                continue;
            }
            let len = data.len() as u64;
            let new_done = st.done + len;
            if let Some(size) = expect.size
                && new_done > size
            {
                st.note_progress(before, self.cfg.timeouts.min_rate);
                return Ok(Some(Interrupted::Invalid(length_err(format!(
                    "server sent more than {size} bytes"
                )))));
            }
            sink.put(data).await?;
            st.done = new_done;
            window_bytes += len;
            if window_start.elapsed() >= self.cfg.timeouts.rate_window {
                if window_bytes < self.cfg.timeouts.min_rate {
                    // Not progress: a trickling server must not reset the failure count.
                    return Ok(Some(Interrupted::TooSlow));
                }
                window_start = Instant::now();
                window_bytes = 0;
            }
            if let Some(cb) = progress {
                cb(Progress {
                    done: st.done,
                    total: expect.size,
                });
            }
        }
        st.note_progress(before, self.cfg.timeouts.min_rate);
        match expect.size {
            Some(size) if st.done < size => Ok(Some(Interrupted::Dropped(format!(
                "connection closed at byte {} of {size}",
                st.done
            )))),
            _ => Ok(None),
        }
    }

    /// Fetches the header re-encrypted for `key` and the body, writes header ‖ body to
    /// `<dest>.part`, verifies, `fsync`s and renames to `dest`. If the body changes during the
    /// fetch it starts over with a fresh DRS object and header (at most [`MAX_BODY_RESTARTS`]
    /// times). On failure the `.part` file is removed; `dest` is never left half-written.
    ///
    /// # Errors
    ///
    /// Everything [`Client::fetch_header`] and [`Client::download_body`] return, and
    /// [`Error::Write`] for file errors.
    pub async fn fetch_to_file(
        &self,
        flavour: &dyn HeaderFlavour,
        obj: &ObjectRef,
        object: &DrsObject,
        key: &ClientPublicKey,
        dest: &Path,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<FetchReport> {
        let part = part_path(dest);
        let result = self
            .fetch_to_part(flavour, obj, object, key, dest, &part, progress)
            .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&part).await;
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_to_part(
        &self,
        flavour: &dyn HeaderFlavour,
        obj: &ObjectRef,
        object: &DrsObject,
        key: &ClientPublicKey,
        dest: &Path,
        part: &Path,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<FetchReport> {
        let write_err = |path: &Path| {
            let path = path.to_owned();
            let object = object.id.clone();
            move |source| Error::Write {
                object,
                path,
                source,
            }
        };
        let started = Instant::now();
        let mut restarts = 0;
        let mut refreshed: Option<DrsObject> = None;
        loop {
            let object = refreshed.as_ref().unwrap_or(object);
            let header = self.fetch_header(flavour, obj, object, key).await?;
            let target = self.target(obj, flavour.body_locator(obj, object)?).await?;
            let expect = BodyExpectation::for_object(object, Some(&header));
            let mut file = std::fs::File::create(part).map_err(write_err(part))?;
            file.write_all(&header.bytes).map_err(write_err(part))?;
            let body = self
                .download_body_blocking(&object.id, &target, &expect, progress, move |body| {
                    body.copy_to(&mut file)?;
                    file.sync_all()
                })
                .await;
            match body {
                Ok((body, ())) => {
                    tokio::fs::rename(part, dest)
                        .await
                        .map_err(write_err(dest))?;
                    tracing::info!(
                        object = %object.id,
                        bytes = body.bytes,
                        resumes = body.resumes,
                        restarts,
                        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                        "fetched"
                    );
                    return Ok(FetchReport {
                        object: object.clone(),
                        path: dest.to_owned(),
                        header_bytes: header.bytes.len() as u64,
                        body,
                        restarts,
                    });
                }
                Err(PipelineError::Consumer(source)) => return Err(write_err(part)(source)),
                Err(PipelineError::Download(e))
                    if e.is_corruption() && restarts < MAX_BODY_RESTARTS =>
                {
                    restarts += 1;
                    self.retried(
                        RetryReason::Integrity,
                        &redact_url(target.url.as_str()),
                        restarts,
                        Duration::ZERO,
                        &e.to_string(),
                    );
                    refreshed = Some(self.object(obj).await?);
                }
                Err(PipelineError::Download(e)) => return Err(e),
            }
        }
    }
}

impl Interrupted {
    fn describe(&self) -> String {
        match self {
            Interrupted::Idle => "idle".into(),
            Interrupted::TooSlow => "below the minimum rate".into(),
            Interrupted::Dropped(d) => d.clone(),
            Interrupted::Invalid(e) => e.to_string(),
            Interrupted::Expired(code) => format!("the signed URL expired ({code})"),
        }
    }
}

struct State {
    done: u64,
    etag: Option<String>,
    resumes: u32,
    /// Failed passes since the last progress.
    failures: u32,
    /// Contradictory responses in the whole download.
    invalid: u32,
    /// When the last progress was made (the retry budget runs from here).
    stalled_since: Instant,
}

/// What the resume loop ends with.
#[derive(Debug, Clone)]
struct Finished {
    done: u64,
    etag: Option<String>,
    resumes: u32,
}

/// Checks that `hashed` bytes with `digests` are the whole body the loop received and that
/// every expected checksum matches.
fn verify(
    object_id: &str,
    expect: &BodyExpectation,
    st: Finished,
    hashed: u64,
    digests: Digests,
) -> Result<BodyReport> {
    if hashed != st.done {
        return Err(Error::Write {
            object: object_id.to_owned(),
            path: PathBuf::new(),
            source: io::Error::other(format!(
                "the consumer saw {hashed} of {} body bytes",
                st.done
            )),
        });
    }
    let mut verified = Vec::new();
    for want in &expect.checksums {
        let actual = digests.get(want.kind).unwrap_or_default();
        if !want.hex.eq_ignore_ascii_case(actual) {
            return Err(Error::Checksum {
                object: object_id.to_owned(),
                kind: want.kind.name().into(),
                expected: want.hex.clone(),
                actual: actual.to_owned(),
            });
        }
        if !verified.contains(&want.kind) {
            verified.push(want.kind);
        }
    }
    Ok(BodyReport {
        bytes: st.done,
        etag: st.etag,
        sha256: digests.sha256,
        resumes: st.resumes,
        checksum_verified: !verified.is_empty(),
        verified,
        unverified: expect.unusable.clone(),
    })
}

impl Error {
    /// Whether this error says the bytes received were not the object's (checksum or length
    /// mismatch, a body that changed underneath): fetching the object, header and body again
    /// may succeed. Connection failures are retried inside the client already.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Checksum { .. } | Error::Length { .. } | Error::BodyChanged { .. }
        )
    }
}

/// Why [`Client::download_body_blocking`] failed (exhaustive: a pipeline has two sides).
#[derive(Debug)]
pub enum PipelineError<E> {
    /// The download failed (status, transport, length, checksum …).
    Download(Error),
    /// The consumer failed.
    Consumer(E),
}

impl<E: std::fmt::Display> std::fmt::Display for PipelineError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PipelineError::Download(e) => e.fmt(f),
            PipelineError::Consumer(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for PipelineError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PipelineError::Download(e) => Some(e),
            PipelineError::Consumer(e) => Some(e),
        }
    }
}

/// Where a body pass puts the bytes it received.
trait PassSink: Send {
    /// Takes the next body bytes (already length-checked).
    fn put(&mut self, data: Bytes) -> impl Future<Output = Result<()>> + Send;
    /// Called after every pass, complete or interrupted.
    fn end_pass(&mut self) -> impl Future<Output = Result<()>> + Send;
}

/// Hashes and writes on the downloading task.
struct AsyncSink<'a, W> {
    sink: &'a mut W,
    hasher: BodyHashes,
    object: &'a str,
}

impl<W: AsyncWrite + Unpin + Send> PassSink for AsyncSink<'_, W> {
    async fn put(&mut self, data: Bytes) -> Result<()> {
        self.sink
            .write_all(&data)
            .await
            .map_err(|source| Error::Write {
                object: self.object.to_owned(),
                path: PathBuf::new(),
                source,
            })?;
        self.hasher.update(&data);
        Ok(())
    }

    async fn end_pass(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A message from the network task to a [`BodyReader`].
enum Msg {
    /// Received buffers, in order.
    Data(Vec<Bytes>),
    /// The download completed (length and ETag checked; the checksum is checked afterwards).
    End,
    /// The download failed.
    Failed,
}

/// Work done on every body byte on the receiving task, right after hashing: see
/// [`Client::download_body_blocking_inspected`].
pub trait BodyInspector: Send {
    /// Why the inspector rejects a body.
    type Error: Send + 'static;
    /// Inspects the next body bytes (those after [`ResumeFrom::offset`] when resuming).
    ///
    /// # Errors
    ///
    /// When the bytes so far are not an acceptable body; the download stops.
    fn inspect(&mut self, data: &[u8]) -> std::result::Result<(), Self::Error>;
    /// Called once, when the body is complete (its length checked, before the checksums are).
    ///
    /// # Errors
    ///
    /// When the complete body is not acceptable.
    fn finish(&mut self) -> std::result::Result<(), Self::Error>;
}

/// The inspector of a pipeline without one.
struct NoInspection<E>(std::marker::PhantomData<fn() -> E>);

impl<E: Send + 'static> BodyInspector for NoInspection<E> {
    type Error = E;

    fn inspect(&mut self, _: &[u8]) -> std::result::Result<(), E> {
        Ok(())
    }

    fn finish(&mut self) -> std::result::Result<(), E> {
        Ok(())
    }
}

/// Hashes (and inspects) received buffers and batches them into a channel. Doing this here,
/// on the receiving task, touches each buffer while it is still in cache and leaves the
/// consumer's thread to writing (or decrypting): the two halves of the work then run on
/// different cores.
struct ChannelSink<'a, I: BodyInspector> {
    tx: mpsc::Sender<Msg>,
    batch: Vec<Bytes>,
    len: usize,
    /// The consumer hung up (it failed or stopped reading).
    consumer_gone: bool,
    object: &'a str,
    hasher: BodyHashes,
    inspector: I,
    /// The inspector's verdict against the body.
    rejected: Option<I::Error>,
}

impl<I: BodyInspector> ChannelSink<'_, I> {
    /// The error that stops the download once the inspector rejected the body.
    fn reject(&mut self, e: I::Error) -> Error {
        self.rejected = Some(e);
        Error::Write {
            object: self.object.to_owned(),
            path: PathBuf::new(),
            source: io::Error::new(io::ErrorKind::InvalidData, "the body failed its inspection"),
        }
    }

    /// Flushes the last batch after the inspector accepted the complete body.
    async fn finish_inspection(&mut self) -> Result<()> {
        if let Err(e) = self.inspector.finish() {
            return Err(self.reject(e));
        }
        self.flush().await
    }

    async fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.len = 0;
        let batch = std::mem::take(&mut self.batch);
        if self.tx.send(Msg::Data(batch)).await.is_err() {
            self.consumer_gone = true;
            return Err(Error::Write {
                object: self.object.to_owned(),
                path: PathBuf::new(),
                source: io::Error::new(io::ErrorKind::BrokenPipe, "the body consumer stopped"),
            });
        }
        Ok(())
    }
}

impl<I: BodyInspector> PassSink for ChannelSink<'_, I> {
    async fn put(&mut self, data: Bytes) -> Result<()> {
        self.hasher.update(&data);
        if let Err(e) = self.inspector.inspect(&data) {
            return Err(self.reject(e));
        }
        self.len += data.len();
        self.batch.push(data);
        if self.len >= PIPELINE_BATCH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn end_pass(&mut self) -> Result<()> {
        self.flush().await
    }
}

/// The consumer's side of [`Client::download_body_blocking`]: the body in order, as
/// [`Read`] or as the received buffers themselves ([`BodyReader::next_chunk`],
/// [`BodyReader::copy_to`], which write without copying). The receiving task has hashed
/// everything it hands out.
///
/// Its methods block; use it only on a blocking thread (the consumer closure runs on one).
/// After the last byte it reports the end (`Ok(0)` / `None`) only when the download completed;
/// a failed or cancelled download is an error.
pub struct BodyReader {
    rx: mpsc::Receiver<Msg>,
    pending: VecDeque<Bytes>,
    /// Body bytes so far, including a resumed prefix.
    bytes: u64,
    /// Where this reader's bytes start in the body (a resumed prefix).
    offset: u64,
    ended: bool,
}

impl std::fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyReader")
            .field("bytes", &self.bytes)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl BodyReader {
    fn new(rx: mpsc::Receiver<Msg>, offset: u64) -> Self {
        BodyReader {
            rx,
            pending: VecDeque::new(),
            bytes: offset,
            offset,
            ended: false,
        }
    }

    /// Body bytes handed out so far (plus the resumed prefix, see [`BodyReader::offset`]).
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// The body offset of the first byte this reader hands out (0 unless resumed).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next batch of received buffers (about [`PIPELINE_BATCH_BYTES`]), in order;
    /// `None` at the end of a complete body.
    ///
    /// # Errors
    ///
    /// When the download failed or was cancelled.
    pub fn next_batch(&mut self) -> io::Result<Option<Vec<Bytes>>> {
        if !self.fill()? {
            return Ok(None);
        }
        let batch: Vec<Bytes> = self.pending.drain(..).collect();
        for chunk in &batch {
            self.take(chunk);
        }
        Ok(Some(batch))
    }

    /// Waits until buffers are pending; `false` at the end of a complete body.
    fn fill(&mut self) -> io::Result<bool> {
        while self.pending.is_empty() {
            if self.ended {
                return Ok(false);
            }
            match self.rx.blocking_recv() {
                Some(Msg::Data(batch)) => self.pending.extend(batch),
                Some(Msg::End) => self.ended = true,
                Some(Msg::Failed) => {
                    return Err(io::Error::other("the body download failed"));
                }
                None => return Err(io::Error::other("the body download was cancelled")),
            }
        }
        Ok(true)
    }

    fn take(&mut self, chunk: &Bytes) {
        self.bytes += chunk.len() as u64;
    }

    /// The next received buffer; `None` at the end of a complete body.
    ///
    /// # Errors
    ///
    /// When the download failed or was cancelled.
    pub fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        if !self.fill()? {
            return Ok(None);
        }
        let chunk = self.pending.pop_front().unwrap_or_default();
        self.take(&chunk);
        Ok(Some(chunk))
    }

    /// Writes the rest of the body to `out` with one vectored write per batch (no copy in user
    /// space); returns the bytes written.
    ///
    /// # Errors
    ///
    /// When the download failed or was cancelled, or writing failed.
    pub fn copy_to<W: Write + ?Sized>(&mut self, out: &mut W) -> io::Result<u64> {
        let mut written = 0u64;
        while let Some(batch) = self.next_batch()? {
            written += batch.iter().map(|c| c.len() as u64).sum::<u64>();
            write_all_vectored(out, &batch)?;
        }
        Ok(written)
    }

    /// Reads and hashes the rest of the body without keeping it.
    fn drain(&mut self) -> io::Result<()> {
        while let Some(chunk) = self.next_chunk()? {
            drop(chunk);
        }
        Ok(())
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || !self.fill()? {
            return Ok(0);
        }
        let Some(front) = self.pending.front_mut() else {
            return Ok(0);
        };
        let n = front.len().min(buf.len());
        buf[..n].copy_from_slice(&front[..n]);
        front.advance(n);
        if front.is_empty() {
            self.pending.pop_front();
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Writes every byte of `chunks` with vectored writes (no copy in user space).
///
/// # Errors
///
/// The writer's errors; [`io::ErrorKind::WriteZero`] when it accepts no more bytes.
pub fn write_all_vectored<W: Write + ?Sized>(out: &mut W, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| IoSlice::new(c))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match out.write_vectored(rest) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the file accepted no more bytes",
                ));
            }
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl State {
    /// Resets the failure streak when this pass moved forward by at least `min_progress` bytes
    /// (so a server that sends a few bytes and then stalls on every attempt still runs out of
    /// attempts).
    fn note_progress(&mut self, before: u64, min_progress: u64) {
        if self.done - before >= min_progress.max(1) {
            self.failures = 0;
            self.stalled_since = Instant::now();
        }
    }
}

/// `<dest>.part` beside `dest`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

struct ContentRange {
    start: u64,
    end: u64,
    total: Option<u64>,
}

/// `bytes a-b/total` or `bytes a-b/*`.
fn parse_content_range(v: &str) -> Option<ContentRange> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end: u64 = b.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    if end < start || total.is_some_and(|t| end >= t) {
        return None;
    }
    Some(ContentRange { start, end, total })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        let ok = parse_content_range("bytes 10-19/100").unwrap();
        assert_eq!((ok.start, ok.end, ok.total), (10, 19, Some(100)));
        assert_eq!(parse_content_range("bytes 0-0/*").unwrap().total, None);
        for bad in [
            "",
            "bytes",
            "bytes 10-5/100",
            "bytes 0-100/100",
            "items 0-1/2",
            "bytes a-b/c",
            "bytes 0-1/x",
        ] {
            assert!(parse_content_range(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn part_path_is_beside_dest() {
        assert_eq!(
            part_path(Path::new("/data/in/x.c4gh")),
            PathBuf::from("/data/in/x.c4gh.part")
        );
    }

    fn chunks(parts: &[&'static [u8]]) -> Msg {
        Msg::Data(parts.iter().map(|p| Bytes::from_static(p)).collect())
    }

    #[test]
    fn reader_hands_out_everything_in_order() {
        let (tx, rx) = mpsc::channel(8);
        tx.try_send(chunks(&[b"abc", b"", b"defg"])).unwrap();
        tx.try_send(chunks(&[b"hij"])).unwrap();
        tx.try_send(Msg::End).unwrap();
        let mut reader = BodyReader::new(rx, 0);
        let mut first = [0u8; 2];
        assert_eq!(reader.read(&mut first).unwrap(), 2);
        assert_eq!(&first, b"ab");
        assert_eq!(
            reader.next_chunk().unwrap().unwrap(),
            Bytes::from_static(b"c")
        );
        let mut out = Vec::new();
        assert_eq!(reader.copy_to(&mut out).unwrap(), 7);
        assert_eq!(out, b"defghij");
        assert_eq!(reader.read(&mut first).unwrap(), 0, "clean end");
        assert_eq!(reader.bytes_read(), 10);
    }

    #[test]
    fn reader_never_reports_a_failed_or_cancelled_download_as_the_end() {
        let (tx, rx) = mpsc::channel(8);
        tx.try_send(chunks(&[b"abc"])).unwrap();
        tx.try_send(Msg::Failed).unwrap();
        let mut out = Vec::new();
        let e = BodyReader::new(rx, 0).copy_to(&mut out).unwrap_err();
        assert_eq!(out, b"abc");
        assert!(e.to_string().contains("failed"), "{e}");

        let (tx, rx) = mpsc::channel(8);
        tx.try_send(chunks(&[b"abc"])).unwrap();
        drop(tx);
        let mut reader = BodyReader::new(rx, 0);
        let mut buf = [0u8; 8];
        assert_eq!(reader.read(&mut buf).unwrap(), 3);
        let e = reader.read(&mut buf).unwrap_err();
        assert!(e.to_string().contains("cancelled"), "{e}");
    }

    #[test]
    fn drain_reads_what_an_early_consumer_left() {
        let (tx, rx) = mpsc::channel(8);
        tx.try_send(chunks(&[b"abc", b"def"])).unwrap();
        tx.try_send(Msg::End).unwrap();
        let mut reader = BodyReader::new(rx, 0);
        let mut one = [0u8; 1];
        reader.read_exact(&mut one).unwrap();
        reader.drain().unwrap();
        assert_eq!(reader.bytes_read(), 6);
    }

    #[test]
    fn hashes_cover_every_listed_kind() {
        let expect = BodyExpectation {
            checksums: vec![ExpectedChecksum {
                kind: ChecksumKind::Md5,
                hex: String::new(),
            }],
            ..BodyExpectation::default()
        };
        let mut h = BodyHashes::new(&expect);
        h.update(b"abc");
        let d = h.finish();
        assert_eq!(d.sha256, hex(&Sha256::digest(b"abc")));
        assert_eq!(
            d.get(ChecksumKind::Md5),
            Some("900150983cd24fb0d6963f7d28e17f72")
        );
        assert_eq!(d.get(ChecksumKind::Sha1), None);
        assert_eq!(
            ChecksumKind::from_drs(" SHA256 "),
            Some(ChecksumKind::Sha256)
        );
        assert_eq!(ChecksumKind::from_drs("sha-2r6"), None);
    }

    /// A writer that takes at most 2 bytes per call, to exercise partial vectored writes.
    struct Stingy(Vec<u8>);

    impl Write for Stingy {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(2);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn vectored_writes_survive_partial_writes() {
        let parts = [
            Bytes::from_static(b"hello "),
            Bytes::new(),
            Bytes::from_static(b"wor"),
            Bytes::from_static(b"ld"),
        ];
        let mut out = Stingy(Vec::new());
        write_all_vectored(&mut out, &parts).unwrap();
        assert_eq!(out.0, b"hello world");
    }
}
