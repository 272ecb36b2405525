//! Serving an encrypted body file: single byte ranges, strong ETags, `If-Range`.
//!
//! The body is served exactly as stored. A `Range: bytes=…` with one range gives `206`; a range
//! that does not overlap the body gives `416` with `Content-Range: bytes */SIZE`; a malformed
//! header or several ranges give `400` saying what is accepted. `If-Range` with the current ETag
//! keeps the range; any other validator (an old ETag, a date) gets the whole body with `200`,
//! so a resumed download never splices two different bodies.

use std::fs::File;
use std::io;
use std::num::NonZeroU64;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::task::JoinHandle;

use crate::catalog::Object;
use crate::metrics::Metrics;
use crate::problem::Problem;

/// Read size and frame size when streaming a body: large enough for few system calls and
/// blocking-pool handoffs and for TLS to send full records, small enough that a chunk is still
/// in the CPU cache when TLS encrypts it (256 KiB downloaded faster than 1 MiB in an A/B run).
const CHUNK: usize = 256 * 1024;

/// An inclusive byte range within a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
}

/// Parses a `Range` header value for a body of `size` bytes.
///
/// `Ok(None)`: serve everything (no header, or a unit other than `bytes`, which RFC 9110 says to
/// ignore).
pub fn parse_range(value: Option<&HeaderValue>, size: u64) -> Result<Option<ByteRange>, Problem> {
    let Some(value) = value else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| Problem::bad_request("the Range header is not ASCII"))?
        .trim();
    let Some((unit, spec)) = text.split_once('=') else {
        return Err(malformed(text));
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ok(None);
    }
    let spec = spec.trim();
    if spec.contains(',') {
        return Err(Problem::bad_request(format!(
            "Range {text:?} asks for several ranges; this server serves one range per request"
        )));
    }
    let (first, last) = spec.split_once('-').ok_or_else(|| malformed(text))?;
    let number = |s: &str| -> Result<u64, Problem> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed(text));
        }
        s.parse::<u64>().map_err(|_| malformed(text))
    };
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        let suffix = number(last)?;
        if suffix == 0 || size == 0 {
            return Err(Problem::range_not_satisfiable(text, size));
        }
        ByteRange {
            start: size.saturating_sub(suffix),
            end: size - 1,
        }
    } else {
        let start = number(first)?;
        let end = if last.is_empty() {
            u64::MAX
        } else {
            number(last)?
        };
        if end < start {
            return Err(malformed(text));
        }
        if start >= size {
            return Err(Problem::range_not_satisfiable(text, size));
        }
        ByteRange {
            start,
            end: end.min(size - 1),
        }
    };
    Ok(Some(range))
}

fn malformed(text: &str) -> Problem {
    Problem::bad_request(format!(
        "malformed Range header {text:?}; use bytes=START-END, bytes=START- or bytes=-SUFFIX"
    ))
}

/// Whether an `If-Range` header (if any) lets the range apply: only the body's current strong
/// ETag does.
fn if_range_allows(headers: &HeaderMap, etag: &str) -> bool {
    match headers.get(header::IF_RANGE) {
        None => true,
        Some(value) => value.as_bytes() == etag.as_bytes(),
    }
}

/// The response for a GET/HEAD of `object`'s body with the request's `headers`.
pub async fn serve(
    object: &Object,
    headers: &HeaderMap,
    metrics: Arc<Metrics>,
) -> Result<Response, Problem> {
    let size = object.record.body.size;
    let range = if if_range_allows(headers, &object.etag) {
        parse_range(headers.get(header::RANGE), size)?
    } else {
        None
    };
    let (status, start, len) = match range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.start, r.end - r.start + 1),
        None => (StatusCode::OK, 0, size),
    };
    let path = object.body_path.clone();
    let file = tokio::task::spawn_blocking(move || open_for_streaming(&path, start, len))
        .await
        .map_err(|e| Problem::internal(format!("opening a body file: {e}")))?
        .map_err(|e| Problem::internal(format!("opening {}: {e}", object.body_path.display())))?;
    let stream = chunks(file, start, len).map(move |chunk| {
        if let Ok(bytes) = &chunk {
            metrics.body_bytes.inc_by(bytes.len() as u64);
        }
        chunk
    });
    let mut response = (status, Body::from_stream(stream)).into_response();
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(etag) = HeaderValue::try_from(object.etag.as_str()) {
        out.insert(header::ETAG, etag);
    }
    if let Some(r) = range
        && let Ok(value) = HeaderValue::try_from(format!("bytes {}-{}/{size}", r.start, r.end))
    {
        out.insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

/// Opens the body file and tells the kernel that `[start, start + len)` will be read
/// sequentially (a larger readahead window when the file is not in the page cache). The advice
/// is only a hint: a file system that refuses it is served all the same.
fn open_for_streaming(path: &Path, start: u64, len: u64) -> io::Result<File> {
    let file = File::open(path)?;
    let _ = rustix::fs::fadvise(
        &file,
        start,
        NonZeroU64::new(len),
        rustix::fs::Advice::Sequential,
    );
    Ok(file)
}

/// The body as a stream of [`CHUNK`]-sized frames. Each chunk is read by a blocking-pool task
/// with `pread` straight into the frame's buffer (no intermediate copy, no zero-filling), and
/// the next chunk is read while the current one is being sent, so at most two chunks per
/// response are in memory and disk reads overlap the network. The kernel is asked to read
/// [`READ_AHEAD`] bytes beyond the chunk being read into the page cache (`WILLNEED`), so a cold
/// file keeps the disk busy.
fn chunks(file: File, start: u64, len: u64) -> impl Stream<Item = io::Result<Bytes>> {
    struct State {
        file: Arc<File>,
        offset: u64,
        end: u64,
        advised: u64,
        pending: Option<JoinHandle<io::Result<Bytes>>>,
    }
    impl State {
        fn read_next(&mut self) {
            let want = (self.end - self.offset).min(CHUNK as u64);
            let next = self.offset + want;
            let ahead_end = next.saturating_add(READ_AHEAD).min(self.end);
            let ahead = self.advised.max(next)..ahead_end;
            self.advised = self.advised.max(ahead_end);
            self.pending = (want > 0).then(|| {
                let file = Arc::clone(&self.file);
                let offset = self.offset;
                tokio::task::spawn_blocking(move || read_at(&file, offset, want as usize, ahead))
            });
            self.offset = next;
        }
    }
    let mut state = State {
        file: Arc::new(file),
        offset: start,
        end: start.saturating_add(len),
        advised: start,
        pending: None,
    };
    state.read_next();
    futures_util::stream::unfold(state, |mut state| async move {
        let pending = state.pending.take()?;
        let chunk = pending.await.unwrap_or_else(|e| Err(io::Error::other(e)));
        if chunk.is_ok() {
            state.read_next();
        }
        Some((chunk, state))
    })
}

/// How far beyond the chunk being read the kernel is asked to read ahead (8 MiB, into the page
/// cache, not this process's memory).
const READ_AHEAD: u64 = 8 << 20;

/// Reads exactly `want` bytes at `offset` into a new buffer, after asking the kernel to start
/// reading `ahead` into the page cache (a hint: errors are ignored).
fn read_at(file: &File, offset: u64, want: usize, ahead: Range<u64>) -> io::Result<Bytes> {
    if let Some(len) = NonZeroU64::new(ahead.end.saturating_sub(ahead.start)) {
        let _ = rustix::fs::fadvise(file, ahead.start, Some(len), rustix::fs::Advice::WillNeed);
    }
    let mut buf = Vec::with_capacity(want);
    while buf.len() < want {
        let at = offset + buf.len() as u64;
        let read = rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the body file is shorter than its record says",
            ));
        }
    }
    buf.truncate(want);
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = Result<Option<(u64, u64)>, u16>;

    fn parse(value: &str, size: u64) -> Outcome {
        parse_range(Some(&HeaderValue::from_str(value).unwrap()), size)
            .map(|r| r.map(|r| (r.start, r.end)))
            .map_err(|p| p.status().as_u16())
    }

    #[test]
    fn ranges() {
        let cases: &[(&str, u64, Outcome)] = &[
            ("bytes=0-0", 10, Ok(Some((0, 0)))),
            ("bytes=0-9", 10, Ok(Some((0, 9)))),
            ("bytes=0-100", 10, Ok(Some((0, 9)))),
            ("bytes=5-", 10, Ok(Some((5, 9)))),
            ("bytes=-3", 10, Ok(Some((7, 9)))),
            ("bytes=-30", 10, Ok(Some((0, 9)))),
            ("Bytes = 2-3", 10, Ok(Some((2, 3)))),
            ("bytes=10-", 10, Err(416)),
            ("bytes=10-20", 10, Err(416)),
            ("bytes=-0", 10, Err(416)),
            ("bytes=0-", 0, Err(416)),
            ("bytes=-1", 0, Err(416)),
            ("bytes=5-4", 10, Err(400)),
            ("bytes=a-b", 10, Err(400)),
            ("bytes=+1-2", 10, Err(400)),
            ("bytes=1", 10, Err(400)),
            ("bytes", 10, Err(400)),
            ("bytes=0-1,3-4", 10, Err(400)),
            ("bytes=99999999999999999999-", 10, Err(400)),
            ("items=0-1", 10, Ok(None)),
        ];
        for (value, size, want) in cases {
            assert_eq!(&parse(value, *size), want, "{value} of {size}");
        }
    }
}
