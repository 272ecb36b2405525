//! Authenticating a Crypt4GH body without decrypting it.
//!
//! A body segment is `nonce (12) ‖ ciphertext ‖ tag (16)`, sealed with ChaCha20-IETF-Poly1305.
//! Its tag is Poly1305 over the ciphertext (padded, then the lengths), keyed with the first 32
//! bytes of ChaCha20 block 0 under the data key and the segment's nonce (RFC 8439 §2.8).
//! Checking it needs no decryption, so [`SegmentAuthenticator`] does just that: it is the check
//! [`crate::body::Decryptor`] makes before releasing a segment, at about a third of its cost,
//! and it takes the body in pieces of any size (the buffers a download receives) without
//! copying them. It holds back the last 16 bytes it has seen of a segment (the tag, if the body
//! ends there), so memory is a few dozen bytes per data key.
//!
//! ```
//! use c4gh::authenticate::SegmentAuthenticator;
//! use c4gh::body::Encryptor;
//! use c4gh::DataKey;
//!
//! # fn main() -> Result<(), c4gh::Error> {
//! let key = DataKey::generate();
//! let mut body = Vec::new();
//! let mut enc = Encryptor::new(&mut body, &key);
//! std::io::Write::write_all(&mut enc, &[7u8; 200_000])?;
//! enc.finish()?;
//!
//! let keys = [key];
//! let mut auth = SegmentAuthenticator::new(&keys)?;
//! for piece in body.chunks(16_384) {
//!     auth.update(piece)?;
//! }
//! assert_eq!(auth.finish()?, 4);
//!
//! // A flipped bit anywhere is found, and the segment named.
//! body[100_000] ^= 1;
//! let mut auth = SegmentAuthenticator::new(&keys)?;
//! let err = auth.update(&body).unwrap_err();
//! assert!(matches!(err, c4gh::Error::SegmentAuthentication { segment: 1, .. }));
//! # Ok(())
//! # }
//! ```

use crate::body::{CIPHER_SEGMENT_SIZE, DataKey, SEGMENT_OVERHEAD};
use crate::crypto::{NONCE_LEN, TAG_LEN, TagCheck};
use crate::error::{Error, Result};

/// Checks every segment's tag of a body fed in pieces, under any of the header's data keys
/// (a segment passes when one of them verifies it, as in decryption).
///
/// [`SegmentAuthenticator::update`] fails at the first segment that does not authenticate;
/// [`SegmentAuthenticator::finish`] checks the last (shorter) segment and rejects a body that
/// ends in a fragment shorter than a segment can be. The errors are the decryptor's:
/// [`Error::SegmentAuthentication`] and [`Error::TruncatedBody`]. After an error the
/// authenticator must not be used further.
pub struct SegmentAuthenticator {
    /// One tag checker per data key, all fed the same ciphertext.
    checks: Vec<TagCheck>,
    /// Index of the current segment.
    segment: u64,
    /// Bytes of the current segment seen so far.
    pos: usize,
    nonce: [u8; NONCE_LEN],
    /// The last bytes of the current segment seen, not yet fed: its tag if it ends here.
    held: [u8; TAG_LEN],
    held_len: usize,
}

impl std::fmt::Debug for SegmentAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentAuthenticator")
            .field("keys", &self.checks.len())
            .field("segment", &self.segment)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl SegmentAuthenticator {
    /// An authenticator for a body sealed with one of `keys`, starting at its first segment.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `keys` is empty.
    pub fn new(keys: &[DataKey]) -> Result<Self> {
        if keys.is_empty() {
            return Err(Error::InvalidArgument {
                reason: "no data key to authenticate with".into(),
            });
        }
        Ok(SegmentAuthenticator {
            checks: keys
                .iter()
                .map(|k| TagCheck::new(k.secret_bytes()))
                .collect(),
            segment: 0,
            pos: 0,
            nonce: [0; NONCE_LEN],
            held: [0; TAG_LEN],
            held_len: 0,
        })
    }

    /// Segments authenticated so far.
    pub fn segments(&self) -> u64 {
        self.segment
    }

    /// Feeds the next body bytes.
    ///
    /// # Errors
    ///
    /// [`Error::SegmentAuthentication`] for a full segment whose tag does not verify;
    /// [`Error::Cipher`] when OpenSSL fails.
    pub fn update(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            if self.pos < NONCE_LEN {
                let n = (NONCE_LEN - self.pos).min(data.len());
                self.nonce[self.pos..self.pos + n].copy_from_slice(&data[..n]);
                self.pos += n;
                data = &data[n..];
                if self.pos == NONCE_LEN {
                    for check in &mut self.checks {
                        check.start(&self.nonce)?;
                    }
                }
                continue;
            }
            let take = (CIPHER_SEGMENT_SIZE - self.pos).min(data.len());
            let (now, rest) = data.split_at(take);
            self.absorb(now)?;
            self.pos += take;
            data = rest;
            if self.pos == CIPHER_SEGMENT_SIZE {
                self.close(false)?;
            }
        }
        Ok(())
    }

    /// Checks the last segment; returns the number of segments authenticated.
    ///
    /// # Errors
    ///
    /// [`Error::SegmentAuthentication`] when the last segment's tag does not verify,
    /// [`Error::TruncatedBody`] when the body ends in a fragment of fewer than 28 bytes.
    pub fn finish(mut self) -> Result<u64> {
        match self.pos {
            0 => {}
            len if len < SEGMENT_OVERHEAD => {
                return Err(Error::TruncatedBody {
                    segment: self.segment,
                    len,
                });
            }
            _ => self.close(true)?,
        }
        Ok(self.segment)
    }

    /// Takes ciphertext-or-tag bytes of the current segment: feeds all but the last
    /// [`TAG_LEN`] bytes seen, which are held back.
    fn absorb(&mut self, now: &[u8]) -> Result<()> {
        if now.len() >= TAG_LEN {
            let (feed, keep) = now.split_at(now.len() - TAG_LEN);
            let held = self.held_len;
            self.feed_held(held)?;
            self.feed(feed)?;
            self.held.copy_from_slice(keep);
            self.held_len = TAG_LEN;
            return Ok(());
        }
        let over = (self.held_len + now.len()).saturating_sub(TAG_LEN);
        self.feed_held(over)?;
        self.held.copy_within(over..self.held_len, 0);
        self.held_len -= over;
        self.held[self.held_len..self.held_len + now.len()].copy_from_slice(now);
        self.held_len += now.len();
        Ok(())
    }

    /// Feeds the first `n` held-back bytes.
    fn feed_held(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let held = self.held;
        self.feed(&held[..n])
    }

    fn feed(&mut self, ciphertext: &[u8]) -> Result<()> {
        if ciphertext.is_empty() {
            return Ok(());
        }
        for check in &mut self.checks {
            check.update(ciphertext)?;
        }
        Ok(())
    }

    /// Verifies the current segment (its held-back bytes are the tag) and moves to the next.
    fn close(&mut self, is_last: bool) -> Result<()> {
        let mut ok = false;
        for check in &mut self.checks {
            // Every key is tried (no early exit), so the time does not say which one matched.
            ok |= check.verify(&self.held[..self.held_len])?;
        }
        if !ok {
            return Err(Error::SegmentAuthentication {
                segment: self.segment,
                len: self.pos,
                is_last,
            });
        }
        self.segment += 1;
        self.pos = 0;
        self.held_len = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::body::{Decryptor, Encryptor};

    fn body(len: usize, key: &DataKey) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = Encryptor::new(&mut out, key);
        let plain: Vec<u8> = (0..len).map(|i| (i * 13 + 1) as u8).collect();
        enc.write_all(&plain).unwrap();
        enc.finish().unwrap();
        out
    }

    fn authenticate(body: &[u8], keys: &[DataKey], piece: usize) -> Result<u64> {
        let mut auth = SegmentAuthenticator::new(keys)?;
        for p in body.chunks(piece.max(1)) {
            auth.update(p)?;
        }
        auth.finish()
    }

    fn decrypt(body: &[u8], keys: &[DataKey]) -> Result<u64> {
        Decryptor::new(body, keys, None)?.copy_to(&mut std::io::sink())
    }

    /// Same verdict, and the same error, as decryption, for intact, flipped, truncated and
    /// extended bodies fed in pieces of every awkward size.
    #[test]
    fn agrees_with_the_decryptor() {
        let key = DataKey::generate();
        let keys = [DataKey::from_bytes(*key.secret_bytes())];
        for len in [0usize, 1, 65_535, 65_536, 65_537, 200_000] {
            let good = body(len, &key);
            let segments = len.div_ceil(65_536) as u64;
            for piece in [1usize, 11, 12, 13, 16, 17, 4096, 65_564, 65_565, 1 << 20] {
                assert_eq!(
                    authenticate(&good, &keys, piece).unwrap(),
                    segments,
                    "{len} B in {piece} B pieces"
                );
            }
            let mut cases: Vec<Vec<u8>> = Vec::new();
            for at in [0, 11, 12, 40, good.len() / 2, good.len().saturating_sub(1)] {
                if at < good.len() {
                    let mut bad = good.clone();
                    bad[at] ^= 0x80;
                    cases.push(bad);
                }
            }
            for cut in [1usize, 16, 27, 28, 29, 65_564] {
                if cut <= good.len() {
                    cases.push(good[..good.len() - cut].to_vec());
                }
            }
            cases.push([good.clone(), vec![0u8; 30]].concat());
            cases.push([good.clone(), vec![0u8; 5]].concat());
            for bad in cases {
                let want = decrypt(&bad, &keys).map_err(|e| e.to_string());
                for piece in [7usize, 4096, 1 << 20] {
                    let got = authenticate(&bad, &keys, piece).map_err(|e| e.to_string());
                    if let Ok(n) = &want {
                        assert_eq!(got.as_ref().ok(), Some(&(n.div_ceil(65_536))));
                    } else {
                        assert_eq!(got.as_ref().err(), want.as_ref().err(), "{len} B");
                    }
                }
            }
        }
    }

    #[test]
    fn any_of_several_keys_per_segment() {
        let (a, b) = (DataKey::generate(), DataKey::generate());
        let mixed = [&body(2 * 65_536, &a)[..], &body(10, &b)[..]].concat();
        let keys = [
            DataKey::from_bytes(*b.secret_bytes()),
            DataKey::from_bytes(*a.secret_bytes()),
        ];
        // Two segments under `a`, then one under `b`.
        assert_eq!(authenticate(&mixed, &keys, 5000).unwrap(), 3);
        let err = authenticate(&mixed, &keys[..1], 5000).unwrap_err();
        assert!(matches!(
            err,
            Error::SegmentAuthentication {
                segment: 0,
                len: CIPHER_SEGMENT_SIZE,
                is_last: false
            }
        ));
        assert!(SegmentAuthenticator::new(&[]).is_err());
    }
}
