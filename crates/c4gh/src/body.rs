//! The Crypt4GH body: 64 KiB plaintext segments, each sealed with ChaCha20-IETF-Poly1305 under the
//! data key as `nonce (12) ‖ ciphertext ‖ tag (16)` with a fresh random nonce.
//!
//! [`Encryptor`] (a `Write`) and [`Decryptor`] (a `Read`, and a `Seek` when the input seeks) stream
//! with one segment of buffer, so memory does not depend on file size. The decryptor applies the
//! edit list (even and odd length), tries several data keys, and reports which segment failed.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;

use zeroize::Zeroizing;

use crate::crypto::{self, Aead, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};

/// Plaintext bytes per segment.
pub const SEGMENT_SIZE: usize = 65_536;
/// Bytes a segment adds to its plaintext (nonce and tag).
pub const SEGMENT_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Encrypted bytes of a full segment.
pub const CIPHER_SEGMENT_SIZE: usize = SEGMENT_SIZE + SEGMENT_OVERHEAD;

/// The symmetric key of a file's body. Zeroized on drop; `Debug` prints nothing secret.
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl DataKey {
    /// A fresh random data key.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        crypto::fill_random(key.as_mut());
        DataKey(key)
    }

    /// The data key with these bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let key = Zeroizing::new(bytes);
        DataKey(key)
    }

    /// The 32 secret bytes. Never log them.
    pub fn secret_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// The key bytes are held in `Zeroizing`, which zeroizes them on drop.
impl zeroize::ZeroizeOnDrop for DataKey {}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([secret key elided])")
    }
}

/// Encrypted size of `plaintext_len` bytes of body: `P + 28·⌈P/65536⌉`.
pub fn encrypted_len(plaintext_len: u64) -> u64 {
    plaintext_len + SEGMENT_OVERHEAD as u64 * plaintext_len.div_ceil(SEGMENT_SIZE as u64)
}

/// Plaintext size of an encrypted body of `body_len` bytes, or `None` if no valid body has that
/// length (a final fragment shorter than 28 bytes).
pub fn plaintext_len(body_len: u64) -> Option<u64> {
    let full = body_len / CIPHER_SEGMENT_SIZE as u64;
    let rest = body_len % CIPHER_SEGMENT_SIZE as u64;
    let tail = match rest {
        0 => 0,
        r if r < SEGMENT_OVERHEAD as u64 => return None,
        r => r - SEGMENT_OVERHEAD as u64,
    };
    Some(full * SEGMENT_SIZE as u64 + tail)
}

/// The plaintext ranges an edit list keeps: alternating discard and keep lengths; an odd-length
/// list keeps everything after its last discard. `None` keeps everything.
pub(crate) fn keep_ranges(edit_list: Option<&[u64]>) -> Vec<Range<u64>> {
    let Some(list) = edit_list else {
        return std::iter::once(0..u64::MAX).collect();
    };
    let mut ranges = Vec::with_capacity(list.len() / 2 + 1);
    let mut pos = 0u64;
    for pair in list.chunks(2) {
        let start = pos.saturating_add(pair[0]);
        match pair.get(1) {
            Some(&keep) => {
                let end = start.saturating_add(keep);
                if keep > 0 {
                    ranges.push(start..end);
                }
                pos = end;
            }
            None => ranges.push(start..u64::MAX),
        }
    }
    ranges
}

/// The edit list that keeps only the visible bytes `[start, start + len)` (to the end when `len`
/// is `None`) of what `edit_list` keeps: how a byte range is applied to a file, with or without
/// an edit list of its own, without decrypting the segments outside it.
pub fn restrict_edit_list(edit_list: Option<&[u64]>, start: u64, len: Option<u64>) -> Vec<u64> {
    let want_end = len.map_or(u64::MAX, |l| start.saturating_add(l));
    let mut list = Vec::new();
    let mut pos = 0u64;
    let mut visible = 0u64;
    for r in keep_ranges(edit_list) {
        let v_start = visible;
        let v_end = visible.saturating_add(r.end - r.start);
        let (s, e) = (start.max(v_start), want_end.min(v_end));
        if s < e {
            let abs_start = r.start + (s - v_start);
            list.push(abs_start - pos);
            if e == u64::MAX {
                return list;
            }
            let abs_end = r.start + (e - v_start);
            list.push(abs_end - abs_start);
            pos = abs_end;
        }
        visible = v_end;
        if visible >= want_end {
            break;
        }
    }
    list
}

/// One step of the decoding state machine.
pub(crate) enum Step {
    /// Plaintext is ready in [`BodyDecoder::pending`].
    Output,
    /// The decoder needs bytes in [`BodyDecoder::input_buf`].
    NeedInput,
    /// The (visible) plaintext has ended.
    Done,
}

/// The I/O-free core shared by the sync, async and seekable decryptors.
pub(crate) struct BodyDecoder {
    keys: Vec<Aead>,
    last_key: usize,
    buf: Zeroizing<Vec<u8>>,
    /// Copy of the ciphertext while trying several data keys.
    spare: Vec<u8>,
    /// Bytes of the current segment read so far.
    filled: usize,
    /// Whether `buf` holds the decrypted segment `segment`.
    ready: bool,
    /// Plaintext length of the decrypted segment.
    plain_len: usize,
    /// Index of the segment being read or held.
    segment: u64,
    /// Bytes still to discard from the input (whole segments outside the edit list).
    skip: u64,
    /// Absolute plaintext offset of the next byte to consider.
    cursor: u64,
    ranges: Vec<Range<u64>>,
    range_idx: usize,
    /// Pending output within `buf`.
    out: Range<usize>,
    /// Visible (edited) plaintext bytes handed out so far.
    visible_pos: u64,
    done: bool,
}

impl BodyDecoder {
    pub(crate) fn new(keys: &[DataKey], edit_list: Option<&[u64]>) -> Result<Self> {
        if keys.is_empty() {
            return Err(Error::InvalidArgument {
                reason: "no data key to decrypt with".into(),
            });
        }
        Ok(BodyDecoder {
            keys: keys.iter().map(|k| Aead::new(k.secret_bytes())).collect(),
            last_key: 0,
            buf: Zeroizing::new(vec![0u8; CIPHER_SEGMENT_SIZE]),
            spare: Vec::new(),
            filled: 0,
            ready: false,
            plain_len: 0,
            segment: 0,
            skip: 0,
            cursor: 0,
            ranges: keep_ranges(edit_list),
            range_idx: 0,
            out: 0..0,
            visible_pos: 0,
            done: false,
        })
    }

    /// Advances the state machine.
    pub(crate) fn step(&mut self) -> Step {
        loop {
            if !self.out.is_empty() {
                return Step::Output;
            }
            if self.done {
                return Step::Done;
            }
            if self.skip > 0 {
                return Step::NeedInput;
            }
            if self.ready {
                if let Some(out) = self.next_slice() {
                    self.out = out;
                    continue;
                }
                self.ready = false;
                self.filled = 0;
                self.segment += 1;
            }
            // Where does the next kept byte lie?
            while self
                .ranges
                .get(self.range_idx)
                .is_some_and(|r| r.end <= self.cursor)
            {
                self.range_idx += 1;
            }
            let Some(range) = self.ranges.get(self.range_idx) else {
                self.done = true;
                return Step::Done;
            };
            self.cursor = self.cursor.max(range.start);
            let target = self.cursor / SEGMENT_SIZE as u64;
            if target > self.segment && self.filled == 0 {
                self.skip = (target - self.segment) * CIPHER_SEGMENT_SIZE as u64;
                self.segment = target;
            }
            return Step::NeedInput;
        }
    }

    /// The next kept slice of the decrypted segment, as a range of `buf`.
    fn next_slice(&mut self) -> Option<Range<usize>> {
        let seg_start = self.segment * SEGMENT_SIZE as u64;
        let seg_end = seg_start + self.plain_len as u64;
        while let Some(range) = self.ranges.get(self.range_idx) {
            if range.end <= self.cursor {
                self.range_idx += 1;
                continue;
            }
            let start = range.start.max(self.cursor);
            if start >= seg_end {
                self.cursor = self.cursor.max(seg_end);
                return None;
            }
            let end = range.end.min(seg_end);
            self.cursor = end;
            return Some(
                NONCE_LEN + (start - seg_start) as usize..NONCE_LEN + (end - seg_start) as usize,
            );
        }
        None
    }

    /// Plaintext ready to hand out.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.out.clone()]
    }

    /// Marks `n` bytes of [`BodyDecoder::pending`] as handed out.
    pub(crate) fn consume(&mut self, n: usize) {
        self.out.start += n.min(self.out.len());
        self.visible_pos += n as u64;
    }

    /// Where input bytes go next.
    pub(crate) fn input_buf(&mut self) -> &mut [u8] {
        if self.skip > 0 {
            let n = usize::try_from(self.skip)
                .unwrap_or(usize::MAX)
                .min(CIPHER_SEGMENT_SIZE);
            &mut self.buf[..n]
        } else {
            &mut self.buf[self.filled..]
        }
    }

    /// Records `n` bytes read into [`BodyDecoder::input_buf`].
    pub(crate) fn input(&mut self, n: usize) -> Result<()> {
        if self.skip > 0 {
            self.skip -= n as u64;
            return Ok(());
        }
        self.filled += n;
        if self.filled == CIPHER_SEGMENT_SIZE {
            self.decrypt(false)?;
        }
        Ok(())
    }

    /// Records the end of the input.
    pub(crate) fn input_eof(&mut self) -> Result<()> {
        if self.skip > 0 || self.filled == 0 {
            self.skip = 0;
            self.done = true;
            return Ok(());
        }
        self.decrypt(true)
    }

    fn decrypt(&mut self, at_eof: bool) -> Result<()> {
        let len = self.filled;
        if len < SEGMENT_OVERHEAD {
            return Err(Error::TruncatedBody {
                segment: self.segment,
                len,
            });
        }
        let n = self.keys.len();
        if n > 1 {
            // A failed open may leave the buffer modified: keep the ciphertext to retry.
            self.spare.clear();
            self.spare.extend_from_slice(&self.buf[..len]);
        }
        for i in 0..n {
            let k = (self.last_key + i) % n;
            if i > 0 {
                self.buf[..len].copy_from_slice(&self.spare[..len]);
            }
            if let Some(plain) = self.keys[k].open(&mut self.buf[..len])? {
                self.plain_len = plain.len();
                self.last_key = k;
                self.ready = true;
                return Ok(());
            }
        }
        Err(Error::SegmentAuthentication {
            segment: self.segment,
            len,
            is_last: at_eof,
        })
    }

    /// Plaintext bytes handed out so far.
    pub(crate) fn visible_pos(&self) -> u64 {
        self.visible_pos
    }

    /// Offset within the body of the next input byte.
    pub(crate) fn body_pos(&self) -> u64 {
        self.segment * CIPHER_SEGMENT_SIZE as u64 + self.filled as u64 - self.skip
    }

    /// Visible length of a body whose plaintext is `plain_len` bytes.
    pub(crate) fn visible_len(&self, plain_len: u64) -> u64 {
        self.ranges
            .iter()
            .map(|r| r.end.min(plain_len).saturating_sub(r.start))
            .sum()
    }

    /// Maps a visible offset to the absolute plaintext offset and the range holding it, or
    /// `None` when it lies after every kept range.
    fn locate(&self, visible: u64) -> Option<(u64, usize)> {
        let mut before = 0u64;
        for (i, r) in self.ranges.iter().enumerate() {
            let len = r.end - r.start;
            if visible < before.saturating_add(len) {
                return Some((r.start + (visible - before), i));
            }
            before = before.saturating_add(len);
        }
        None
    }

    /// Repositions at visible offset `visible`. Returns the body offset the input must be
    /// moved to, or `None` if the current input position serves.
    pub(crate) fn seek_visible(&mut self, visible: u64) -> Option<u64> {
        self.out = 0..0;
        self.visible_pos = visible;
        let Some((plain, idx)) = self.locate(visible) else {
            self.done = true;
            self.range_idx = self.ranges.len();
            return None;
        };
        self.done = false;
        self.range_idx = idx;
        self.cursor = plain;
        let target = plain / SEGMENT_SIZE as u64;
        if self.ready
            && target == self.segment
            && plain < target * SEGMENT_SIZE as u64 + self.plain_len as u64
        {
            return None;
        }
        self.ready = false;
        self.filled = 0;
        self.skip = 0;
        self.segment = target;
        Some(target * CIPHER_SEGMENT_SIZE as u64)
    }
}

/// Reads the plaintext of a Crypt4GH body from `R` (positioned at the first body byte).
///
/// Implements [`Read`]; errors are `io::Error`s of kind `InvalidData` wrapping an [`Error`]
/// (recover it with [`Error::from_io`]). When `R` implements [`Seek`], so does the decryptor:
/// positions are plaintext offsets (after the edit list), and seeking reads only the segment
/// holding the target byte.
pub struct Decryptor<R> {
    inner: R,
    core: BodyDecoder,
    body_start: Option<u64>,
}

impl<R: Read> Decryptor<R> {
    /// A decryptor for the body in `inner` with the header's data keys and edit list.
    pub fn new(inner: R, keys: &[DataKey], edit_list: Option<&[u64]>) -> Result<Self> {
        Ok(Decryptor {
            inner,
            core: BodyDecoder::new(keys, edit_list)?,
            body_start: None,
        })
    }

    /// Writes all remaining plaintext to `out` without an intermediate copy; returns the bytes
    /// written.
    pub fn copy_to<W: Write>(&mut self, out: &mut W) -> Result<u64> {
        let mut total = 0u64;
        loop {
            match self.core.step() {
                Step::Output => {
                    let pending = self.core.pending();
                    let n = pending.len();
                    out.write_all(pending)?;
                    self.core.consume(n);
                    total += n as u64;
                }
                Step::NeedInput => self.fill()?,
                Step::Done => return Ok(total),
            }
        }
    }

    fn fill(&mut self) -> Result<()> {
        loop {
            match self.inner.read(self.core.input_buf()) {
                Ok(0) => return self.core.input_eof(),
                Ok(n) => return self.core.input(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for Decryptor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.core.step() {
                Step::Output => {
                    let pending = self.core.pending();
                    let n = pending.len().min(buf.len());
                    buf[..n].copy_from_slice(&pending[..n]);
                    self.core.consume(n);
                    return Ok(n);
                }
                Step::NeedInput => self.fill().map_err(Error::into_io)?,
                Step::Done => return Ok(0),
            }
        }
    }
}

impl<R: Read + Seek> Seek for Decryptor<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let body_start = match self.body_start {
            Some(start) => start,
            None => {
                let start = self.inner.stream_position()? - self.core.body_pos();
                self.body_start = Some(start);
                start
            }
        };
        let target = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.core.visible_pos().checked_add_signed(d),
            SeekFrom::End(d) => {
                let here = self.inner.stream_position()?;
                let end = self.inner.seek(SeekFrom::End(0))?;
                self.inner.seek(SeekFrom::Start(here))?;
                let plain = plaintext_len(end.saturating_sub(body_start)).ok_or_else(|| {
                    Error::TruncatedBody {
                        segment: (end - body_start) / CIPHER_SEGMENT_SIZE as u64,
                        len: ((end - body_start) % CIPHER_SEGMENT_SIZE as u64) as usize,
                    }
                    .into_io()
                })?;
                self.core.visible_len(plain).checked_add_signed(d)
            }
        };
        let target = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to a negative or overflowing position",
            )
        })?;
        if let Some(body_offset) = self.core.seek_visible(target) {
            self.inner.seek(SeekFrom::Start(body_start + body_offset))?;
        }
        Ok(target)
    }
}

impl<R> fmt::Debug for Decryptor<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decryptor")
            .field("segment", &self.core.segment)
            .field("position", &self.core.visible_pos)
            .finish_non_exhaustive()
    }
}

/// The I/O-free core of the encryptors: one segment of buffer.
pub(crate) struct BodyEncoder {
    aead: Aead,
    buf: Zeroizing<Vec<u8>>,
    plain_len: usize,
    sealed_len: usize,
}

impl BodyEncoder {
    pub(crate) fn new(key: &DataKey) -> Self {
        BodyEncoder {
            aead: Aead::new(key.secret_bytes()),
            buf: Zeroizing::new(vec![0u8; CIPHER_SEGMENT_SIZE]),
            plain_len: 0,
            sealed_len: 0,
        }
    }

    /// Copies plaintext in; returns how much was taken (0 only if `data` is empty or the segment
    /// is full and must be sealed first).
    pub(crate) fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(SEGMENT_SIZE - self.plain_len);
        self.buf[NONCE_LEN + self.plain_len..NONCE_LEN + self.plain_len + n]
            .copy_from_slice(&data[..n]);
        self.plain_len += n;
        n
    }

    pub(crate) fn is_full(&self) -> bool {
        self.plain_len == SEGMENT_SIZE
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.plain_len == 0
    }

    /// Seals the buffered plaintext with a fresh random nonce and returns the sealed segment.
    /// Call [`BodyEncoder::reset`] once it is written.
    pub(crate) fn seal(&mut self) -> Result<&[u8]> {
        let mut nonce = [0u8; NONCE_LEN];
        crypto::fill_random(&mut nonce);
        self.buf[..NONCE_LEN].copy_from_slice(&nonce);
        let end = NONCE_LEN + self.plain_len;
        let tag = self.aead.seal(nonce, &mut self.buf[NONCE_LEN..end])?;
        self.buf[end..end + TAG_LEN].copy_from_slice(&tag);
        self.sealed_len = end + TAG_LEN;
        Ok(self.sealed())
    }

    /// The segment last sealed.
    pub(crate) fn sealed(&self) -> &[u8] {
        &self.buf[..self.sealed_len]
    }

    /// Length of the segment last sealed.
    pub(crate) fn sealed_len(&self) -> usize {
        self.sealed_len
    }

    /// Empties the buffer after the sealed segment has been written.
    pub(crate) fn reset(&mut self) {
        self.plain_len = 0;
        self.sealed_len = 0;
    }
}

/// Encrypts plaintext written to it into a Crypt4GH body written to `W`.
///
/// Call [`Encryptor::finish`] at the end: it seals the final partial segment. Dropping the
/// encryptor without `finish` loses that segment (up to 64 KiB of plaintext).
pub struct Encryptor<W: Write> {
    inner: W,
    core: BodyEncoder,
}

impl<W: Write> Encryptor<W> {
    /// An encryptor writing the body sealed with `key` to `inner`.
    pub fn new(inner: W, key: &DataKey) -> Self {
        Encryptor {
            inner,
            core: BodyEncoder::new(key),
        }
    }

    /// Seals the last segment, flushes, and returns the inner writer.
    pub fn finish(mut self) -> Result<W> {
        if !self.core.is_empty() {
            self.inner.write_all(self.core.seal()?)?;
            self.core.reset();
        }
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// Reads `input` to its end and encrypts it; returns the plaintext bytes read.
    pub fn copy_from<R: Read>(&mut self, input: &mut R) -> Result<u64> {
        let mut total = 0u64;
        loop {
            let start = NONCE_LEN + self.core.plain_len;
            let got = match input.read(&mut self.core.buf[start..NONCE_LEN + SEGMENT_SIZE]) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Io(e)),
            };
            self.core.plain_len += got;
            total += got as u64;
            if self.core.is_full() {
                self.inner.write_all(self.core.seal()?)?;
                self.core.reset();
            }
        }
    }
}

impl<W: Write> Write for Encryptor<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.core.push(data);
        if self.core.is_full() {
            let sealed = self.core.seal().map_err(Error::into_io)?;
            self.inner.write_all(sealed)?;
            self.core.reset();
        }
        Ok(n)
    }

    /// Flushes the inner writer; a partial segment stays buffered (sealing it early would
    /// produce a short segment in the middle of the body).
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> fmt::Debug for Encryptor<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encryptor")
            .field("buffered", &self.core.plain_len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn encrypt(data: &[u8], key: &DataKey) -> Vec<u8> {
        let mut enc = Encryptor::new(Vec::new(), key);
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn decrypt(body: &[u8], key: DataKey, edit: Option<&[u64]>) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        Decryptor::new(body, &[key], edit)?.copy_to(&mut out)?;
        Ok(out)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn round_trips_at_segment_edges() {
        for len in [0, 1, 65_535, 65_536, 65_537, 3 * 65_536 + 5] {
            let key = DataKey::generate();
            let plain = data(len);
            let body = encrypt(&plain, &key);
            assert_eq!(body.len() as u64, encrypted_len(len as u64), "len {len}");
            assert_eq!(plaintext_len(body.len() as u64), Some(len as u64));
            assert_eq!(decrypt(&body, key, None).unwrap(), plain, "len {len}");
        }
    }

    #[test]
    fn edit_lists_even_and_odd() {
        let key = DataKey::generate();
        let plain = data(200_000);
        let body = encrypt(&plain, &key);
        let k = || DataKey::from_bytes(*key.secret_bytes());
        let even = decrypt(&body, k(), Some(&[10, 5, 70_000, 3])).unwrap();
        let mut want = plain[10..15].to_vec();
        want.extend_from_slice(&plain[70_015..70_018]);
        assert_eq!(even, want);
        let odd = decrypt(&body, k(), Some(&[10, 5, 140_000])).unwrap();
        let mut want = plain[10..15].to_vec();
        want.extend_from_slice(&plain[140_015..]);
        assert_eq!(odd, want);
        assert_eq!(decrypt(&body, k(), Some(&[])).unwrap(), b"");
        assert_eq!(decrypt(&body, k(), Some(&[0, 1_000_000])).unwrap(), plain);
        // A range over a file without and with an edit list.
        let ranged = restrict_edit_list(None, 70_000, Some(100));
        assert_eq!(
            decrypt(&body, k(), Some(&ranged)).unwrap(),
            &plain[70_000..70_100]
        );
        let ranged = restrict_edit_list(None, 199_990, None);
        assert_eq!(
            decrypt(&body, k(), Some(&ranged)).unwrap(),
            &plain[199_990..]
        );
        let ranged = restrict_edit_list(Some(&[10, 5, 140_000]), 3, Some(4));
        let mut want = plain[13..15].to_vec();
        want.extend_from_slice(&plain[140_015..140_017]);
        assert_eq!(decrypt(&body, k(), Some(&ranged)).unwrap(), want);
        assert_eq!(
            restrict_edit_list(Some(&[10, 5]), 5, None),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn seek_reads_only_what_is_needed() {
        let key = DataKey::generate();
        let plain = data(300_000);
        let body = encrypt(&plain, &key);
        let mut input = b"HEADER".to_vec();
        input.extend_from_slice(&body);
        let mut cursor = Cursor::new(input);
        cursor.set_position(6);
        let mut dec = Decryptor::new(cursor, &[key], None).unwrap();
        let mut buf = [0u8; 10];
        dec.seek(SeekFrom::Start(200_000)).unwrap();
        dec.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, &plain[200_000..200_010]);
        dec.seek(SeekFrom::Start(5)).unwrap();
        dec.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, &plain[5..15]);
        assert_eq!(dec.seek(SeekFrom::End(-10)).unwrap(), 299_990);
        let mut rest = Vec::new();
        dec.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, &plain[299_990..]);
        dec.seek(SeekFrom::Current(-20)).unwrap();
        dec.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, &plain[299_980..299_990]);
    }

    #[test]
    fn tampering_names_the_segment() {
        let key = DataKey::generate();
        let mut body = encrypt(&data(150_000), &key);
        body[CIPHER_SEGMENT_SIZE + 100] ^= 1;
        match decrypt(&body, key, None) {
            Err(Error::SegmentAuthentication { segment: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_fragment_is_reported() {
        let key = DataKey::generate();
        let body = encrypt(&data(70_000), &key);
        match decrypt(&body[..CIPHER_SEGMENT_SIZE + 10], key, None) {
            Err(Error::TruncatedBody {
                segment: 1,
                len: 10,
            }) => {}
            other => panic!("{other:?}"),
        }
    }
}
