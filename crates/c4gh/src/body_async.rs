//! Tokio forms of the body streams: [`AsyncDecryptor`] (an `AsyncRead`) and [`AsyncEncryptor`]
//! (an `AsyncWrite`). Same state machines and the same one-segment buffer as the `std::io` forms.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::body::{BodyDecoder, BodyEncoder, DataKey, Step};
use crate::error::{Error, Result};

/// Reads the plaintext of a Crypt4GH body from an async reader positioned at the first body
/// byte. Errors are `io::Error`s of kind `InvalidData` wrapping an [`Error`] (see
/// [`Error::from_io`]).
pub struct AsyncDecryptor<R> {
    inner: R,
    core: BodyDecoder,
}

impl<R: AsyncRead + Unpin> AsyncDecryptor<R> {
    /// A decryptor for the body in `inner` with the header's data keys and edit list.
    pub fn new(inner: R, keys: &[DataKey], edit_list: Option<&[u64]>) -> Result<Self> {
        Ok(AsyncDecryptor {
            inner,
            core: BodyDecoder::new(keys, edit_list)?,
        })
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for AsyncDecryptor<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match this.core.step() {
                Step::Output => {
                    let pending = this.core.pending();
                    let n = pending.len().min(out.remaining());
                    out.put_slice(&pending[..n]);
                    this.core.consume(n);
                    return Poll::Ready(Ok(()));
                }
                Step::Done => return Poll::Ready(Ok(())),
                Step::NeedInput => {
                    let mut rb = ReadBuf::new(this.core.input_buf());
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
                    let n = rb.filled().len();
                    let result = if n == 0 {
                        this.core.input_eof()
                    } else {
                        this.core.input(n)
                    };
                    result.map_err(Error::into_io)?;
                }
            }
        }
    }
}

impl<R> fmt::Debug for AsyncDecryptor<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncDecryptor")
            .field("position", &self.core.visible_pos())
            .finish_non_exhaustive()
    }
}

/// Encrypts plaintext written to it into a Crypt4GH body written to an async writer.
/// `shutdown()` seals the final partial segment; without it that segment is lost.
pub struct AsyncEncryptor<W> {
    inner: W,
    core: BodyEncoder,
    /// Sealed bytes of the current segment not yet written (offset into the sealed segment).
    pending: Option<usize>,
}

impl<W: AsyncWrite + Unpin> AsyncEncryptor<W> {
    /// An encryptor writing the body sealed with `key` to `inner`.
    pub fn new(inner: W, key: &DataKey) -> Self {
        AsyncEncryptor {
            inner,
            core: BodyEncoder::new(key),
            pending: None,
        }
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// Writes out a sealed segment in progress.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(offset) = self.pending {
            let sealed_len = self.core.sealed_len();
            if offset == sealed_len {
                self.pending = None;
                self.core.reset();
                break;
            }
            let chunk = &self.core.sealed()[offset..];
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, chunk))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending = Some(offset + n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for AsyncEncryptor<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        let n = this.core.push(data);
        if this.core.is_full() {
            this.core.seal().map_err(Error::into_io)?;
            this.pending = Some(0);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if !this.core.is_empty() {
            this.core.seal().map_err(Error::into_io)?;
            this.pending = Some(0);
            ready!(this.poll_drain(cx))?;
        }
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<W> fmt::Debug for AsyncEncryptor<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncEncryptor").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn async_round_trip_with_small_writes() {
        let key = DataKey::generate();
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let mut enc = AsyncEncryptor::new(Vec::new(), &key);
        for chunk in plain.chunks(10_000) {
            enc.write_all(chunk).await.unwrap();
        }
        enc.shutdown().await.unwrap();
        let body = enc.into_inner();
        assert_eq!(
            body.len() as u64,
            crate::body::encrypted_len(plain.len() as u64)
        );
        let mut dec = AsyncDecryptor::new(&body[..], &[key], Some(&[5, 100_000])).unwrap();
        let mut out = Vec::new();
        dec.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, &plain[5..100_005]);
    }
}
