//! The primitives Crypt4GH is built from: ChaCha20-IETF-Poly1305 (OpenSSL's libcrypto through
//! the `openssl` crate), X25519 (`x25519-dalek`), BLAKE2b-512 key exchange (`blake2`, libsodium
//! `crypto_kx` compatible) and the operating system's random number generator (`ring`).
//!
//! [`TagCheck`] checks a segment's tag without decrypting it: Poly1305 over the ciphertext with
//! the one-time key from ChaCha20 block 0, exactly the check ChaCha20-Poly1305's opening makes
//! before it releases plaintext (RFC 8439, §2.6 and §2.8), at a third of the cost.
//!
//! Why OpenSSL: on the project's machines it is the fastest ChaCha20-Poly1305 measured (it picks
//! AVX-512, AVX2 or SSSE3 code at run time), well ahead of `ring`, AWS-LC, libsodium and
//! RustCrypto; the figures and the reasoning are in docs/c4gh-cli.md, "Choice of cipher
//! implementation".

use blake2::{Blake2b512, Digest};
use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;
use openssl::error::ErrorStack;
use openssl::md_ctx::MdCtx;
use openssl::pkey::{Id, PKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};

/// Length of a ChaCha20-IETF-Poly1305 nonce.
pub(crate) const NONCE_LEN: usize = 12;
/// Length of a Poly1305 tag.
pub(crate) const TAG_LEN: usize = 16;
/// Length of a ChaCha20-Poly1305 key, an X25519 key, and a Crypt4GH data key.
pub(crate) const KEY_LEN: usize = 32;

/// Fills `buf` with random bytes from the operating system.
///
/// # Panics
///
/// Panics when the operating system's random number generator fails; there is no safe way to
/// continue producing keys or nonces without it.
pub(crate) fn fill_random(buf: &mut [u8]) {
    #[allow(clippy::expect_used)]
    SystemRandom::new()
        .fill(buf)
        .expect("the operating system's random number generator failed");
}

/// The error for a failure of the cipher library itself (not of authentication).
fn backend_error(what: &str, e: &ErrorStack) -> Error {
    Error::Cipher {
        reason: format!("{what}: {e}"),
    }
}

/// A ChaCha20-IETF-Poly1305 key ready for sealing and opening.
///
/// Holds one OpenSSL cipher context, created on first use and re-armed with each nonce, so a
/// segment costs no allocation or key setup. The context and the key copy are wiped on drop
/// (OpenSSL clears its contexts when it frees them). Not `Sync`: each thread uses its own.
pub(crate) struct Aead {
    key: Zeroizing<[u8; KEY_LEN]>,
    /// The context and whether it was last set up for sealing.
    ctx: Option<(CipherCtx, bool)>,
}

impl Aead {
    /// A cipher for a 32-byte key.
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
        Aead {
            key: Zeroizing::new(*key),
            ctx: None,
        }
    }

    /// The context set up for sealing (`seal`) or opening with `nonce`: the one of the last
    /// call re-armed with the nonce when it went the same way, else a new one.
    fn start(&mut self, seal: bool, nonce: &[u8]) -> Result<&mut CipherCtx> {
        let (mut ctx, fresh) = match self.ctx.take() {
            Some((ctx, s)) if s == seal => (ctx, false),
            _ => (
                CipherCtx::new().map_err(|e| backend_error("creating a cipher context", &e))?,
                true,
            ),
        };
        let (cipher, key) = if fresh {
            (Some(Cipher::chacha20_poly1305()), Some(&self.key[..]))
        } else {
            (None, None)
        };
        let started = if seal {
            ctx.encrypt_init(cipher, key, Some(nonce))
        } else {
            ctx.decrypt_init(cipher, key, Some(nonce))
        };
        started.map_err(|e| backend_error("setting up ChaCha20-Poly1305", &e))?;
        Ok(&mut self.ctx.insert((ctx, seal)).0)
    }

    /// Encrypts `data` in place with `nonce` and returns the tag.
    pub(crate) fn seal(
        &mut self,
        nonce: [u8; NONCE_LEN],
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN]> {
        let ctx = self.start(true, &nonce)?;
        let mut tag = [0u8; TAG_LEN];
        let len = data.len();
        ctx.cipher_update_inplace(data, len)
            .and_then(|_| ctx.cipher_final(&mut []))
            .and_then(|_| ctx.tag(&mut tag))
            .map_err(|e| backend_error("ChaCha20-Poly1305 sealing", &e))?;
        Ok(tag)
    }

    /// Decrypts `nonce ‖ ciphertext ‖ tag` in place; returns the plaintext (a prefix of
    /// `ciphertext`'s position), or `None` when authentication fails or the input is too short
    /// (then the bytes that would have been plaintext are zeroed: nothing unauthenticated is
    /// left behind).
    pub(crate) fn open<'a>(&mut self, sealed: &'a mut [u8]) -> Result<Option<&'a mut [u8]>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Ok(None);
        }
        let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
        let (data, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let ctx = self.start(false, nonce)?;
        let len = data.len();
        ctx.set_tag(tag)
            .and_then(|()| ctx.cipher_update_inplace(data, len))
            .map_err(|e| backend_error("ChaCha20-Poly1305 opening", &e))?;
        // The only way the final step fails is a tag mismatch.
        if ctx.cipher_final(&mut []).is_err() {
            data.zeroize();
            return Ok(None);
        }
        Ok(Some(data))
    }
}

/// Checks ChaCha20-IETF-Poly1305 tags of ciphertexts without decrypting them.
///
/// For each ciphertext: [`TagCheck::start`] with its nonce derives the Poly1305 one-time key
/// (the first 32 bytes of the ChaCha20 keystream block with counter 0, RFC 8439 §2.6),
/// [`TagCheck::update`] feeds ciphertext bytes in any pieces, and [`TagCheck::verify`] appends
/// the padding and the lengths (no associated data, RFC 8439 §2.8) and compares the tag in
/// constant time. A tag that verifies is exactly one that opening would accept. Holds one
/// ChaCha20 and one Poly1305 context of OpenSSL, re-armed for each ciphertext; the one-time key
/// is wiped after use and the contexts are cleared by OpenSSL when freed.
pub(crate) struct TagCheck {
    key: Zeroizing<[u8; KEY_LEN]>,
    keystream: Option<CipherCtx>,
    mac: Option<MdCtx>,
    ciphertext_len: u64,
}

impl TagCheck {
    /// A checker for tags made with the 32-byte key `key`.
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
        TagCheck {
            key: Zeroizing::new(*key),
            keystream: None,
            mac: None,
            ciphertext_len: 0,
        }
    }

    /// Starts checking the ciphertext sealed with `nonce`.
    pub(crate) fn start(&mut self, nonce: &[u8; NONCE_LEN]) -> Result<()> {
        let fail = |e: ErrorStack| backend_error("deriving the Poly1305 key", &e);
        // OpenSSL's ChaCha20 IV: the 32-bit block counter (little-endian, here 0), then the nonce.
        let mut iv = [0u8; 16];
        iv[4..].copy_from_slice(nonce);
        let keystream = match &mut self.keystream {
            Some(ctx) => {
                ctx.encrypt_init(None, None, Some(&iv)).map_err(fail)?;
                ctx
            }
            None => {
                let mut ctx = CipherCtx::new().map_err(fail)?;
                ctx.encrypt_init(Some(Cipher::chacha20()), Some(&self.key[..]), Some(&iv))
                    .map_err(fail)?;
                self.keystream.insert(ctx)
            }
        };
        let mut one_time = Zeroizing::new([0u8; KEY_LEN]);
        keystream
            .cipher_update_inplace(&mut one_time[..], KEY_LEN)
            .map_err(fail)?;
        let pkey = PKey::private_key_from_raw_bytes(&one_time[..], Id::POLY1305).map_err(fail)?;
        let mac = match &mut self.mac {
            // OpenSSL 3.0 re-keys a finished Poly1305 context only after a reset: without
            // it the second tag comes out wrong (`tag_check_agrees_with_opening` catches it).
            Some(mac) => {
                mac.reset().map_err(fail)?;
                mac
            }
            None => self.mac.insert(MdCtx::new().map_err(fail)?),
        };
        mac.digest_sign_init::<openssl::pkey::Private>(None, &pkey)
            .map_err(fail)?;
        self.ciphertext_len = 0;
        Ok(())
    }

    fn mac(&mut self) -> Result<&mut MdCtx> {
        self.mac.as_mut().ok_or_else(|| Error::Cipher {
            reason: "Poly1305 used before it was started with a nonce".into(),
        })
    }

    /// Feeds the next ciphertext bytes.
    pub(crate) fn update(&mut self, ciphertext: &[u8]) -> Result<()> {
        self.mac()?
            .digest_sign_update(ciphertext)
            .map_err(|e| backend_error("Poly1305", &e))?;
        self.ciphertext_len += ciphertext.len() as u64;
        Ok(())
    }

    /// Whether `tag` is the tag of the ciphertext fed since [`TagCheck::start`].
    pub(crate) fn verify(&mut self, tag: &[u8]) -> Result<bool> {
        let len = self.ciphertext_len;
        let pad = (16 - (len % 16) as usize) % 16;
        // No associated data: its length (0) and the ciphertext's, 64-bit little-endian.
        let mut lengths = [0u8; 16];
        lengths[8..].copy_from_slice(&len.to_le_bytes());
        let mac = self.mac()?;
        let mut computed = [0u8; TAG_LEN];
        mac.digest_sign_update(&[0u8; 16][..pad])
            .and_then(|()| mac.digest_sign_update(&lengths))
            .and_then(|()| mac.digest_sign_final(Some(&mut computed)))
            .map_err(|e| backend_error("Poly1305", &e))?;
        Ok(tag.len() == TAG_LEN && openssl::memcmp::eq(&computed, tag))
    }
}

/// Encrypts `plaintext` with a fresh random nonce and returns `nonce ‖ ciphertext ‖ tag`.
pub(crate) fn seal_with_random_nonce(key: &[u8; KEY_LEN], plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = Aead::new(key).seal(nonce, &mut out[NONCE_LEN..])?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// The Crypt4GH header-packet shared key: the first 32 bytes of
/// `BLAKE2b-512(X25519(sk, peer) ‖ reader_pk ‖ writer_pk)` (libsodium `crypto_kx`, reader as
/// client `rx`, writer as server `tx`).
pub(crate) fn shared_key(
    dh: &[u8; KEY_LEN],
    reader_pk: &[u8; KEY_LEN],
    writer_pk: &[u8; KEY_LEN],
) -> Zeroizing<[u8; KEY_LEN]> {
    let mut hasher = Blake2b512::new();
    hasher.update(dh);
    hasher.update(reader_pk);
    hasher.update(writer_pk);
    let mut digest = hasher.finalize();
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&digest[..KEY_LEN]);
    digest.as_mut_slice().zeroize();
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::aead::AeadInPlace;
    use chacha20poly1305::{ChaCha20Poly1305, KeyInit};

    #[test]
    fn seal_then_open_round_trips_and_detects_tampering() {
        let key = [7u8; KEY_LEN];
        let sealed = seal_with_random_nonce(&key, b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + NONCE_LEN + TAG_LEN);
        let mut copy = sealed.clone();
        assert_eq!(
            Aead::new(&key).open(&mut copy).unwrap().map(|p| p.to_vec()),
            Some(b"hello".to_vec())
        );
        let mut aead = Aead::new(&key);
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(
                aead.open(&mut bad).unwrap().is_none(),
                "flip at {i} undetected"
            );
            assert_eq!(bad[NONCE_LEN..NONCE_LEN + 5], [0u8; 5], "plaintext wiped");
        }
        assert!(aead.open(&mut [0u8; 27]).unwrap().is_none());
        let mut copy = sealed.clone();
        assert!(
            aead.open(&mut copy).unwrap().is_some(),
            "a context that saw failures still opens"
        );
    }

    /// A tag check accepts exactly the tags opening accepts: every length around the vector
    /// widths and the Poly1305 block, ciphertext fed in uneven pieces, one checker reused, and
    /// every single-bit flip of ciphertext or tag rejected.
    #[test]
    fn tag_check_agrees_with_opening() {
        let key = [0x5Au8; KEY_LEN];
        let mut aead = Aead::new(&key);
        let mut check = TagCheck::new(&key);
        for (i, len) in [
            0usize, 1, 15, 16, 17, 63, 64, 65, 1000, 4096, 65_535, 65_536,
        ]
        .into_iter()
        .enumerate()
        {
            let mut nonce = [0u8; NONCE_LEN];
            nonce[0] = i as u8;
            nonce[7] = 0x3C;
            let mut ct: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
            let tag = aead.seal(nonce, &mut ct).unwrap();
            let verify = |check: &mut TagCheck, ct: &[u8], tag: &[u8]| {
                check.start(&nonce).unwrap();
                for piece in ct.chunks(1 + len / 3) {
                    check.update(piece).unwrap();
                }
                check.verify(tag).unwrap()
            };
            assert!(verify(&mut check, &ct, &tag), "genuine tag of {len} bytes");
            for bit in [0, 7, 8 * len.saturating_sub(1)] {
                if len == 0 {
                    break;
                }
                let mut bad = ct.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(
                    !verify(&mut check, &bad, &tag),
                    "flipped ciphertext bit {bit}"
                );
            }
            for bit in 0..8 * TAG_LEN {
                let mut bad = tag;
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(!verify(&mut check, &ct, &bad), "flipped tag bit {bit}");
            }
            let mut other = TagCheck::new(&[1u8; KEY_LEN]);
            assert!(!verify(&mut other, &ct, &tag), "another key");
        }
    }

    /// The same bytes as an independent implementation (RustCrypto), for one reused context
    /// switching between sealing and opening, at lengths around the vector widths.
    #[test]
    fn matches_an_independent_implementation() {
        let key = [0x42u8; KEY_LEN];
        let reference = ChaCha20Poly1305::new(&key.into());
        let mut aead = Aead::new(&key);
        for (i, len) in [
            0usize, 1, 63, 64, 65, 255, 256, 511, 512, 1000, 4096, 65_536,
        ]
        .into_iter()
        .enumerate()
        {
            let plain: Vec<u8> = (0..len).map(|j| (j * 31 + i) as u8).collect();
            let mut nonce = [0u8; NONCE_LEN];
            nonce[0] = i as u8;
            nonce[11] = 0xA5;
            let mut ours = plain.clone();
            let tag = aead.seal(nonce, &mut ours).unwrap();
            let mut theirs = plain.clone();
            let their_tag = reference
                .encrypt_in_place_detached(&nonce.into(), b"", &mut theirs)
                .unwrap();
            assert!(ours == theirs, "ciphertext of {len} bytes");
            assert_eq!(tag[..], their_tag[..], "tag of {len} bytes");
            let mut sealed = nonce.to_vec();
            sealed.extend_from_slice(&theirs);
            sealed.extend_from_slice(&their_tag);
            let opened = aead.open(&mut sealed).unwrap().map(|p| p.to_vec());
            assert!(opened.as_deref() == Some(&plain[..]), "open of {len} bytes");
        }
    }
}
