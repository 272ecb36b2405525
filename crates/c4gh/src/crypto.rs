//! The primitives Crypt4GH is built from: ChaCha20-IETF-Poly1305 (`ring`), X25519
//! (`x25519-dalek`), BLAKE2b-512 key exchange (`blake2`, libsodium `crypto_kx` compatible) and
//! the operating system's random number generator.

use blake2::{Blake2b512, Digest};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::{Zeroize, Zeroizing};

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

/// A ChaCha20-IETF-Poly1305 key ready for sealing and opening.
pub(crate) struct Aead {
    key: LessSafeKey,
}

impl Aead {
    /// A cipher for a 32-byte key.
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
        // CHACHA20_POLY1305 takes exactly 32 bytes, which the array type guarantees.
        #[allow(clippy::expect_used)]
        let unbound =
            UnboundKey::new(&CHACHA20_POLY1305, key).expect("ChaCha20-Poly1305 key is 32 bytes");
        Aead {
            key: LessSafeKey::new(unbound),
        }
    }

    /// Encrypts `data` in place with `nonce` and returns the tag.
    pub(crate) fn seal(&self, nonce: [u8; NONCE_LEN], data: &mut [u8]) -> [u8; TAG_LEN] {
        // ring fails only for inputs longer than ChaCha20's 256 GiB block counter limit;
        // callers pass at most one 64 KiB segment or one header packet.
        #[allow(clippy::expect_used)]
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), data)
            .expect("ChaCha20-Poly1305 input is far below the size limit");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Decrypts `nonce ‖ ciphertext ‖ tag` in place; returns the plaintext (a prefix of
    /// `ciphertext`'s position) or `None` when authentication fails or the input is too short.
    pub(crate) fn open<'a>(&self, sealed: &'a mut [u8]) -> Option<&'a mut [u8]> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        self.key
            .open_in_place(nonce, Aad::empty(), rest)
            .ok()
            .map(|p| &mut p[..])
    }
}

/// Encrypts `plaintext` with a fresh random nonce and returns `nonce ‖ ciphertext ‖ tag`.
pub(crate) fn seal_with_random_nonce(key: &[u8; KEY_LEN], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = Aead::new(key).seal(nonce, &mut out[NONCE_LEN..]);
    out.extend_from_slice(&tag);
    out
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

    #[test]
    fn seal_then_open_round_trips_and_detects_tampering() {
        let key = [7u8; KEY_LEN];
        let sealed = seal_with_random_nonce(&key, b"hello");
        assert_eq!(sealed.len(), 5 + NONCE_LEN + TAG_LEN);
        let mut copy = sealed.clone();
        assert_eq!(
            Aead::new(&key).open(&mut copy).map(|p| p.to_vec()),
            Some(b"hello".to_vec())
        );
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(
                Aead::new(&key).open(&mut bad).is_none(),
                "flip at {i} undetected"
            );
        }
        assert!(Aead::new(&key).open(&mut [0u8; 27]).is_none());
    }
}
