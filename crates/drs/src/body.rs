//! Streaming body download: Range resume, `If-Range`/ETag sameness, idle timeouts, length and
//! sha-256 checks, progress; and [`Client::fetch_to_file`], which writes header ‖ body to
//! `<dest>.part` and renames it into place only when everything checked out.
//!
//! What the checks mean (see `docs/drs-crypt4gh.md` §4): the DRS object's `size` and `sha-256`
//! describe the **encrypted body** (the file without its header). The sha-256 catches what
//! Crypt4GH's per-segment MACs cannot: dropped, reordered or duplicated segments.

use std::path::{Path, PathBuf};
use std::time::Instant;

use reqwest::header::{CONTENT_RANGE, ETAG, HeaderValue, IF_RANGE, RANGE};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::client::{Client, FetchedHeader, Req, Target};
use crate::error::{Error, Result};
use crate::flavour::{ClientPublicKey, HeaderFlavour};
use crate::resolve::ObjectRef;
use crate::types::{DrsObject, redact_url};

/// How often a header + body fetch restarts because the body changed underneath it.
pub const MAX_BODY_RESTARTS: u32 = 3;
/// Cap on resumes of one body download (each must make progress).
pub const MAX_RESUMES: u32 = 1000;

/// What the body must be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyExpectation {
    /// Length in bytes (the DRS object's `size`).
    pub size: Option<u64>,
    /// Lower-case hex sha-256 of the body.
    pub sha256: Option<String>,
    /// Strong ETag the body must have (from the header response), if known.
    pub etag: Option<String>,
}

impl BodyExpectation {
    /// Size and sha-256 from a DRS object, ETag from a fetched header.
    pub fn for_object(object: &DrsObject, header: Option<&FetchedHeader>) -> Self {
        Self {
            size: Some(object.size),
            sha256: object.checksum("sha-256").map(str::to_ascii_lowercase),
            etag: header.and_then(|h| h.content_etag.clone()),
        }
    }
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
    /// Whether the sha-256 was checked against the object's checksum.
    pub checksum_verified: bool,
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

/// Why a body pass stopped early; the download resumes from `done`.
enum Interrupted {
    /// No bytes for `Timeouts::idle`.
    Idle,
    /// Fewer than `Timeouts::min_rate` bytes in a `Timeouts::rate_window` (a trickling server).
    TooSlow,
    /// The connection failed or closed before the end.
    Dropped(String),
}

impl Client {
    /// Streams the body at `target` into `sink`, resuming with `Range`/`If-Range` after dropped
    /// connections and stalls (each resume must follow progress; at most
    /// [`RetryPolicy::max_attempts`](crate::RetryPolicy) failures in a row), and checks length,
    /// ETag and sha-256.
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
        let mut state = State {
            done: 0,
            hasher: Sha256::new(),
            etag: expect.etag.clone(),
            resumes: 0,
            failures: 0,
        };
        let url = redact_url(target.url.as_str());
        loop {
            match self
                .body_pass(object_id, target, expect, sink, progress, &mut state)
                .await?
            {
                None => break,
                Some(why) => {
                    state.failures += 1;
                    if state.failures >= self.cfg.retry.max_attempts || state.resumes >= MAX_RESUMES
                    {
                        let timeout = |what, after| Error::Timeout {
                            object: object_id.to_owned(),
                            url: url.clone(),
                            what,
                            after,
                            attempts: state.failures,
                        };
                        return Err(match why {
                            Interrupted::Idle => {
                                timeout("body data (idle)", self.cfg.timeouts.idle)
                            }
                            Interrupted::TooSlow => timeout(
                                "body data (below the minimum rate)",
                                self.cfg.timeouts.rate_window,
                            ),
                            Interrupted::Dropped(detail) => Error::Length {
                                object: object_id.to_owned(),
                                url,
                                expected: expect.size.unwrap_or(state.done),
                                detail: format!(
                                    "gave up after {} interrupted attempts at byte {}: {detail}",
                                    state.failures, state.done
                                ),
                            },
                        });
                    }
                    if state.etag.is_none() && state.done > 0 {
                        return Err(Error::BodyChanged {
                            object: object_id.to_owned(),
                            before: "(no ETag: cannot resume safely)".into(),
                            after: "(unknown)".into(),
                        });
                    }
                    state.resumes += 1;
                    tracing::info!(
                        object = object_id,
                        at = state.done,
                        reason = why.describe(),
                        "resuming body download"
                    );
                    tokio::time::sleep(self.cfg.retry.backoff(state.failures - 1)).await;
                }
            }
        }
        sink.flush().await.map_err(|source| Error::Write {
            object: object_id.to_owned(),
            path: PathBuf::new(),
            source,
        })?;
        let sha256 = hex(&state.hasher.finalize());
        if let Some(want) = &expect.sha256
            && !want.eq_ignore_ascii_case(&sha256)
        {
            return Err(Error::Checksum {
                object: object_id.to_owned(),
                kind: "sha-256".into(),
                expected: want.clone(),
                actual: sha256,
            });
        }
        Ok(BodyReport {
            bytes: state.done,
            etag: state.etag,
            sha256,
            resumes: state.resumes,
            checksum_verified: expect.sha256.is_some(),
        })
    }

    /// One request; `Ok(None)` when the body is complete.
    async fn body_pass<W: AsyncWrite + Unpin + Send>(
        &self,
        object_id: &str,
        target: &Target,
        expect: &BodyExpectation,
        sink: &mut W,
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
                    .ok_or_else(|| length_err("206 without a valid Content-Range".into()))?;
                if cr.start != st.done {
                    return Err(length_err(format!(
                        "asked for bytes from {}, server sent from {}",
                        st.done, cr.start
                    )));
                }
                if let (Some(size), Some(total)) = (expect.size, cr.total)
                    && size != total
                {
                    return Err(length_err(format!("server says the body is {total} bytes")));
                }
                if let Some(n) = declared
                    && n != cr.end + 1 - cr.start
                {
                    return Err(length_err(format!(
                        "Content-Length {n} disagrees with Content-Range {}-{}",
                        cr.start, cr.end
                    )));
                }
            }
            StatusCode::OK => {
                if let (Some(size), Some(n)) = (expect.size, declared)
                    && n != size
                {
                    return Err(length_err(format!("server sent Content-Length {n}")));
                }
                // A 200 on a resume: the server ignored the range (same ETag, or none) — skip
                // what we have.
                skip = st.done;
            }
            other => {
                return Err(Error::BadResponse {
                    object: object_id.to_owned(),
                    url,
                    detail: format!("unexpected status {} for a body request", other.as_u16()),
                });
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
            let mut data = &chunk[..];
            if skip > 0 {
                let n = usize::try_from(skip.min(data.len() as u64)).unwrap_or(data.len());
                data = &data[n..];
                skip -= n as u64;
            }
            if data.is_empty() {
                continue;
            }
            let new_done = st.done + data.len() as u64;
            if let Some(size) = expect.size
                && new_done > size
            {
                return Err(length_err(format!("server sent more than {size} bytes")));
            }
            sink.write_all(data).await.map_err(|source| Error::Write {
                object: object_id.to_owned(),
                path: PathBuf::new(),
                source,
            })?;
            st.hasher.update(data);
            st.done = new_done;
            window_bytes += data.len() as u64;
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
            let file = tokio::fs::File::create(part)
                .await
                .map_err(write_err(part))?;
            let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, file);
            out.write_all(&header.bytes)
                .await
                .map_err(write_err(part))?;
            let body = self
                .download_body(&object.id, &target, &expect, &mut out, progress)
                .await;
            match body {
                Ok(body) => {
                    out.flush().await.map_err(write_err(part))?;
                    let file = out.into_inner();
                    file.sync_all().await.map_err(write_err(part))?;
                    drop(file);
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
                Err(Error::BodyChanged { before, after, .. }) if restarts < MAX_BODY_RESTARTS => {
                    restarts += 1;
                    tracing::warn!(object = %object.id, %before, %after, "body changed during fetch; starting over");
                    refreshed = Some(self.object(obj).await?);
                }
                Err(e) => return Err(e),
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
        }
    }
}

struct State {
    done: u64,
    hasher: Sha256,
    etag: Option<String>,
    resumes: u32,
    failures: u32,
}

impl State {
    /// Resets the failure streak when this pass moved forward by at least `min_progress` bytes
    /// (so a server that sends a few bytes and then stalls on every attempt still runs out of
    /// attempts).
    fn note_progress(&mut self, before: u64, min_progress: u64) {
        if self.done - before >= min_progress.max(1) {
            self.failures = 0;
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
}
