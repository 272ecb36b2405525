//! X25519 key pairs and the Crypt4GH key file formats, exactly as the reference Python
//! implementation (PyPI `crypt4gh` 1.8) reads and writes them.
//!
//! - Public key: `-----BEGIN CRYPT4GH PUBLIC KEY-----`, base64 of the 32 raw bytes, `-----END …`.
//! - Private key: PEM (`CRYPT4GH PRIVATE KEY`; `CRYPT4GH ENCRYPTED PRIVATE KEY` is accepted too)
//!   around `c4gh-v1` followed by u16-big-endian length-prefixed strings: the KDF name (`scrypt`,
//!   `bcrypt`, `pbkdf2_hmac_sha256` or `none`), the KDF options (rounds u32 big-endian ‖ salt,
//!   absent for `none`), the cipher (`chacha20_poly1305` or `none`), the key blob (nonce ‖
//!   ciphertext ‖ tag of the 32-byte key, or the raw key) and an optional comment.
//!
//! Secret material lives in types that zeroize on drop, never derive `Clone`, and print
//! `[secret key elided]` from `Debug`. Key files are written atomically (`.part`, then rename)
//! with mode 0400 unless told otherwise.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use x25519_dalek::StaticSecret;
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::{self, Aead, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};

/// Magic bytes opening a Crypt4GH private key blob.
const MAGIC: &[u8] = b"c4gh-v1";
/// Magic bytes opening an OpenSSH private key blob (recognised only to give a clear error).
const OPENSSH_MAGIC: &[u8] = b"openssh-key-v1\0";
/// Salt length the reference implementation uses for every KDF.
const SALT_LEN: usize = 16;
/// The PEM label the reference implementation writes for private keys.
const PRIVATE_LABEL: &str = "CRYPT4GH PRIVATE KEY";
/// The PEM label for public keys.
const PUBLIC_LABEL: &str = "CRYPT4GH PUBLIC KEY";
/// Mode of secret key files unless the caller asks for another.
pub const SECRET_KEY_FILE_MODE: u32 = 0o400;
/// Most bcrypt rounds accepted from a key file (the reference writes 100): bounds the work a
/// hostile key file can cause.
const MAX_BCRYPT_ROUNDS: u32 = 100_000;
/// Most PBKDF2 iterations accepted from a key file (the reference writes 100 000).
const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;
/// Largest key file accepted (a Crypt4GH key file is a few hundred bytes).
const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

/// An X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// The key with these 32 bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        PublicKey(bytes)
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The Crypt4GH PEM public key file content (with a final newline).
    pub fn to_pem(&self) -> String {
        format!(
            "-----BEGIN {PUBLIC_LABEL}-----\n{}\n-----END {PUBLIC_LABEL}-----\n",
            BASE64.encode(self.0)
        )
    }

    /// Parses a public key given as any of: the Crypt4GH PEM file content, base64 of that file
    /// (what `X-C4GH-Public-Key` and `Htsget-Context-Public-Key` carry), or base64 of the 32 raw
    /// bytes. Surrounding whitespace is ignored.
    pub fn from_pem(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.starts_with("-----BEGIN") {
            return Self::from_pem_file(text);
        }
        let compact: String = text.split_whitespace().collect();
        let decoded = BASE64.decode(compact.as_bytes()).map_err(|e| {
            Error::invalid_key(format!("public key is neither PEM nor base64 ({e})"))
        })?;
        if let Ok(raw) = <[u8; KEY_LEN]>::try_from(decoded.as_slice()) {
            return Ok(PublicKey(raw));
        }
        match std::str::from_utf8(&decoded) {
            Ok(inner) if inner.trim_start().starts_with("-----BEGIN") => {
                Self::from_pem_file(inner.trim())
            }
            _ => Err(Error::invalid_key(format!(
                "base64 public key decodes to {} bytes: expected 32 raw bytes or a Crypt4GH PEM public key",
                decoded.len()
            ))),
        }
    }

    fn from_pem_file(text: &str) -> Result<Self> {
        let (label, body) = pem_decode(text)?;
        if !label.contains("CRYPT4GH") || label.contains("PRIVATE") {
            return Err(Error::invalid_key(format!(
                "expected a Crypt4GH public key (\"-----BEGIN {PUBLIC_LABEL}-----\"), found \"{label}\""
            )));
        }
        let raw = <[u8; KEY_LEN]>::try_from(body.as_slice()).map_err(|_| {
            Error::invalid_key(format!(
                "public key holds {} bytes, expected 32",
                body.len()
            ))
        })?;
        Ok(PublicKey(raw))
    }

    /// Reads a Crypt4GH public key file.
    pub fn read_file(path: &Path) -> Result<Self> {
        let text = read_key_text(path)?;
        Self::from_pem(&text).map_err(|e| with_path(e, path))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", BASE64.encode(self.0))
    }
}

/// A key-derivation function protecting a private key file with a passphrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kdf {
    /// scrypt with N = 2^14, r = 8, p = 1 (the reference's default).
    Scrypt,
    /// bcrypt-pbkdf with the given number of rounds (the reference uses 100).
    Bcrypt {
        /// Rounds.
        rounds: u32,
    },
    /// PBKDF2-HMAC-SHA256 with the given number of iterations (the reference uses 100 000).
    Pbkdf2HmacSha256 {
        /// Iterations.
        rounds: u32,
    },
}

impl Kdf {
    /// bcrypt with the reference's 100 rounds.
    pub const BCRYPT: Kdf = Kdf::Bcrypt { rounds: 100 };
    /// PBKDF2-HMAC-SHA256 with the reference's 100 000 iterations.
    pub const PBKDF2_HMAC_SHA256: Kdf = Kdf::Pbkdf2HmacSha256 { rounds: 100_000 };

    /// The name written in key files.
    pub fn name(&self) -> &'static str {
        match self {
            Kdf::Scrypt => "scrypt",
            Kdf::Bcrypt { .. } => "bcrypt",
            Kdf::Pbkdf2HmacSha256 { .. } => "pbkdf2_hmac_sha256",
        }
    }

    fn rounds(&self) -> u32 {
        match self {
            Kdf::Scrypt => 0,
            Kdf::Bcrypt { rounds } | Kdf::Pbkdf2HmacSha256 { rounds } => *rounds,
        }
    }

    fn from_name(name: &[u8], rounds: u32) -> Result<Self> {
        match name {
            b"scrypt" => Ok(Kdf::Scrypt),
            b"bcrypt" => Ok(Kdf::Bcrypt { rounds }),
            b"pbkdf2_hmac_sha256" => Ok(Kdf::Pbkdf2HmacSha256 { rounds }),
            other => Err(Error::invalid_key(format!(
                "unsupported KDF {:?} in private key (supported: scrypt, bcrypt, pbkdf2_hmac_sha256, none)",
                String::from_utf8_lossy(other)
            ))),
        }
    }

    /// Derives the 32-byte key-file encryption key.
    fn derive(&self, passphrase: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>> {
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        match self {
            Kdf::Scrypt => {
                let params = scrypt::Params::new(14, 8, 1, KEY_LEN)
                    .map_err(|e| Error::invalid_key(format!("scrypt parameters: {e}")))?;
                scrypt::scrypt(passphrase, salt, &params, out.as_mut())
                    .map_err(|e| Error::invalid_key(format!("scrypt: {e}")))?;
            }
            Kdf::Bcrypt { rounds } => {
                if *rounds > MAX_BCRYPT_ROUNDS {
                    return Err(Error::invalid_key(format!(
                        "bcrypt with {rounds} rounds exceeds the limit of {MAX_BCRYPT_ROUNDS}"
                    )));
                }
                bcrypt_pbkdf::bcrypt_pbkdf(passphrase, salt, *rounds, out.as_mut()).map_err(
                    |e| Error::invalid_key(format!("bcrypt KDF ({rounds} rounds): {e}")),
                )?;
            }
            Kdf::Pbkdf2HmacSha256 { rounds } => {
                if *rounds == 0 || *rounds > MAX_PBKDF2_ROUNDS {
                    return Err(Error::invalid_key(format!(
                        "pbkdf2_hmac_sha256 with {rounds} rounds (allowed: 1 to {MAX_PBKDF2_ROUNDS})"
                    )));
                }
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(passphrase, salt, *rounds, out.as_mut());
            }
        }
        Ok(out)
    }
}

/// An X25519 secret key. Zeroized on drop; `Debug` prints only the public half.
pub struct SecretKey {
    secret: StaticSecret,
    public: PublicKey,
}

impl SecretKey {
    /// A fresh random key from the operating system's random number generator.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        crypto::fill_random(bytes.as_mut());
        Self::from_bytes(*bytes)
    }

    /// The key with these 32 bytes (as stored in key files; X25519 clamps them when used).
    pub fn from_bytes(mut bytes: [u8; KEY_LEN]) -> Self {
        let secret = StaticSecret::from(bytes);
        bytes.zeroize();
        let public = PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes());
        SecretKey { secret, public }
    }

    /// The public key of this secret key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// The 32 secret bytes. Handle with care: never log them.
    pub fn secret_bytes(&self) -> &[u8; KEY_LEN] {
        self.secret.as_bytes()
    }

    /// X25519 with a peer's public key.
    pub(crate) fn diffie_hellman(&self, peer: &PublicKey) -> Zeroizing<[u8; KEY_LEN]> {
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer.0));
        Zeroizing::new(shared.to_bytes())
    }

    /// Parses a Crypt4GH private key file. `passphrase` is needed only when the key is encrypted
    /// ([`Error::PassphraseRequired`] otherwise); a wrong one is [`Error::WrongPassphrase`].
    pub fn from_pem(text: &str, passphrase: Option<&[u8]>) -> Result<Self> {
        Self::from_pem_with(text, || passphrase.map(|p| Zeroizing::new(p.to_vec())))
    }

    /// Like [`SecretKey::from_pem`], but asks `passphrase` only when the key is encrypted (so a
    /// command-line tool prompts only when needed).
    pub fn from_pem_with<F>(text: &str, passphrase: F) -> Result<Self>
    where
        F: FnOnce() -> Option<Zeroizing<Vec<u8>>>,
    {
        let (label, blob) = pem_decode(text)?;
        let blob = Zeroizing::new(blob);
        if !label.contains("PRIVATE KEY") {
            return Err(Error::invalid_key(format!(
                "expected a Crypt4GH private key (\"-----BEGIN {PRIVATE_LABEL}-----\"), found \"{label}\""
            )));
        }
        if blob.starts_with(OPENSSH_MAGIC) {
            return Err(Error::invalid_key(
                "OpenSSH private keys are not supported; convert with `c4gh keygen` or use a Crypt4GH key",
            ));
        }
        let mut input = blob.strip_prefix(MAGIC).ok_or_else(|| {
            Error::invalid_key("not a Crypt4GH private key (missing \"c4gh-v1\" magic)")
        })?;
        let kdf_name = take_string(&mut input, "KDF name")?;
        let kdf = if kdf_name == b"none" {
            None
        } else {
            let options = take_string(&mut input, "KDF options")?;
            let (rounds, salt) = options
                .split_first_chunk::<4>()
                .ok_or_else(|| Error::invalid_key("KDF options shorter than 4 bytes"))?;
            Some((Kdf::from_name(kdf_name, u32::from_be_bytes(*rounds))?, salt))
        };
        let cipher = take_string(&mut input, "cipher name")?;
        let data = take_string(&mut input, "key data")?;
        match (cipher, kdf) {
            (b"none", _) => {
                let raw = <[u8; KEY_LEN]>::try_from(data).map_err(|_| {
                    Error::invalid_key(format!(
                        "unencrypted private key holds {} bytes, expected 32",
                        data.len()
                    ))
                })?;
                Ok(Self::from_bytes(raw))
            }
            (b"chacha20_poly1305", Some((kdf, salt))) => {
                if data.len() != NONCE_LEN + KEY_LEN + TAG_LEN {
                    return Err(Error::invalid_key(format!(
                        "encrypted private key blob holds {} bytes, expected {}",
                        data.len(),
                        NONCE_LEN + KEY_LEN + TAG_LEN
                    )));
                }
                let passphrase = passphrase().ok_or(Error::PassphraseRequired)?;
                let derived = kdf.derive(&passphrase, salt)?;
                let mut sealed = Zeroizing::new(data.to_vec());
                let plain = Aead::new(&derived)
                    .open(&mut sealed)?
                    .ok_or(Error::WrongPassphrase)?;
                let raw =
                    <[u8; KEY_LEN]>::try_from(&plain[..]).map_err(|_| Error::WrongPassphrase)?;
                Ok(Self::from_bytes(raw))
            }
            (b"chacha20_poly1305", None) => Err(Error::invalid_key(
                "private key is encrypted (chacha20_poly1305) but names no KDF",
            )),
            (other, _) => Err(Error::invalid_key(format!(
                "unsupported private key cipher {:?} (supported: chacha20_poly1305, none)",
                String::from_utf8_lossy(other)
            ))),
        }
    }

    /// Reads a Crypt4GH private key file; `passphrase` is asked only if the key is encrypted.
    pub fn read_file<F>(path: &Path, passphrase: F) -> Result<Self>
    where
        F: FnOnce() -> Option<Zeroizing<Vec<u8>>>,
    {
        let text = read_key_text(path)?;
        Self::from_pem_with(&text, passphrase).map_err(|e| with_path(e, path))
    }

    /// The Crypt4GH private key file content. With `protection` the key is encrypted with
    /// ChaCha20-Poly1305 under a key derived from the passphrase by the given KDF; without it the
    /// file is unencrypted (`none`/`none`, what `crypt4gh-keygen --nocrypt` writes). The comment is
    /// stored in clear text.
    pub fn to_pem(
        &self,
        protection: Option<(&[u8], Kdf)>,
        comment: Option<&str>,
    ) -> Result<Zeroizing<String>> {
        let mut blob = Zeroizing::new(Vec::with_capacity(160));
        blob.extend_from_slice(MAGIC);
        match protection {
            None => {
                put_string(&mut blob, b"none")?;
                put_string(&mut blob, b"none")?;
                put_string(&mut blob, self.secret_bytes())?;
            }
            Some((passphrase, kdf)) => {
                let mut salt = [0u8; SALT_LEN];
                crypto::fill_random(&mut salt);
                let derived = kdf.derive(passphrase, &salt)?;
                let sealed = crypto::seal_with_random_nonce(&derived, self.secret_bytes())?;
                let sealed = Zeroizing::new(sealed);
                let mut options = Vec::with_capacity(4 + SALT_LEN);
                options.extend_from_slice(&kdf.rounds().to_be_bytes());
                options.extend_from_slice(&salt);
                put_string(&mut blob, kdf.name().as_bytes())?;
                put_string(&mut blob, &options)?;
                put_string(&mut blob, b"chacha20_poly1305")?;
                put_string(&mut blob, &sealed)?;
            }
        }
        if let Some(comment) = comment {
            put_string(&mut blob, comment.as_bytes())?;
        }
        let encoded = Zeroizing::new(BASE64.encode(blob.as_slice()));
        Ok(Zeroizing::new(format!(
            "-----BEGIN {PRIVATE_LABEL}-----\n{}\n-----END {PRIVATE_LABEL}-----\n",
            encoded.as_str()
        )))
    }

    /// Writes this key as a private key file (see [`SecretKey::to_pem`]) atomically with `mode`
    /// (use [`SECRET_KEY_FILE_MODE`], 0400, unless the file must be group-readable).
    pub fn write_file(
        &self,
        path: &Path,
        protection: Option<(&[u8], Kdf)>,
        comment: Option<&str>,
        mode: u32,
    ) -> Result<()> {
        let pem = self.to_pem(protection, comment)?;
        write_key_file(path, pem.as_bytes(), mode)
    }
}

/// The secret is a `StaticSecret`, which zeroizes itself on drop.
impl zeroize::ZeroizeOnDrop for SecretKey {}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("secret", &format_args!("[secret key elided]"))
            .field("public", &self.public)
            .finish()
    }
}

/// Writes a key file atomically: the content goes to `<path>.part` created with `mode`, is
/// synced, and is renamed over `path`, so a reader never sees a half-written key.
pub fn write_key_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let part = part_path(path);
    match fs::remove_file(&part) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_at(e, "removing stale", &part)),
    }
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o7777)
            .open(&part)?;
        file.write_all(contents)?;
        file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
        file.sync_all()?;
        fs::rename(&part, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&part);
        return Err(io_at(e, "writing", path));
    }
    Ok(())
}

fn part_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".part");
    path.with_file_name(name)
}

fn io_at(e: std::io::Error, what: &str, path: &Path) -> Error {
    Error::Io(std::io::Error::new(
        e.kind(),
        format!("{what} {}: {e}", path.display()),
    ))
}

fn with_path(e: Error, path: &Path) -> Error {
    match e {
        Error::InvalidKey { reason } => Error::InvalidKey {
            reason: format!("{}: {reason}", path.display()),
        },
        other => other,
    }
}

fn read_key_text(path: &Path) -> Result<Zeroizing<String>> {
    let meta = fs::metadata(path).map_err(|e| io_at(e, "reading key file", path))?;
    if meta.len() > MAX_KEY_FILE_LEN {
        return Err(Error::invalid_key(format!(
            "{}: {} bytes is too large for a key file",
            path.display(),
            meta.len()
        )));
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(|e| io_at(e, "reading key file", path))?);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::invalid_key(format!("{}: key file is not text", path.display())))?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// Splits a PEM text into its label and decoded body, the way the reference does: blank lines
/// ignored, first line `-----BEGIN …`, last line `-----END …`, base64 between.
fn pem_decode(text: &str) -> Result<(String, Vec<u8>)> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let (first, rest) = lines
        .split_first()
        .ok_or_else(|| Error::invalid_key("empty key file"))?;
    let (last, middle) = rest
        .split_last()
        .ok_or_else(|| Error::invalid_key("not a PEM key: missing \"-----END\" line"))?;
    let label = first
        .strip_prefix("-----BEGIN ")
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or_else(|| Error::invalid_key("not a PEM key: missing \"-----BEGIN\" line"))?;
    if !last.starts_with("-----END ") {
        return Err(Error::invalid_key(
            "not a PEM key: missing \"-----END\" line",
        ));
    }
    let body: Zeroizing<String> = Zeroizing::new(middle.concat());
    let decoded = BASE64
        .decode(body.as_bytes())
        .map_err(|e| Error::invalid_key(format!("PEM body is not valid base64: {e}")))?;
    Ok((label.to_owned(), decoded))
}

fn take_string<'a>(input: &mut &'a [u8], what: &str) -> Result<&'a [u8]> {
    let (len, rest) = input
        .split_first_chunk::<2>()
        .ok_or_else(|| Error::invalid_key(format!("private key ends before its {what}")))?;
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() < len {
        return Err(Error::invalid_key(format!(
            "private key ends inside its {what}"
        )));
    }
    let (value, rest) = rest.split_at(len);
    *input = rest;
    Ok(value)
}

fn put_string(out: &mut Vec<u8>, value: &[u8]) -> Result<()> {
    let len = u16::try_from(value.len()).map_err(|_| Error::InvalidArgument {
        reason: format!(
            "key file field of {} bytes is longer than 65535",
            value.len()
        ),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_pem_and_base64_forms_parse() {
        let sk = SecretKey::generate();
        let pk = sk.public_key();
        let pem = pk.to_pem();
        assert_eq!(PublicKey::from_pem(&pem).unwrap(), pk);
        assert_eq!(PublicKey::from_pem(&BASE64.encode(&pem)).unwrap(), pk);
        assert_eq!(
            PublicKey::from_pem(&BASE64.encode(pk.as_bytes())).unwrap(),
            pk
        );
        assert_eq!(PublicKey::from_pem(&format!("\n\n{pem}\n")).unwrap(), pk);
        assert!(PublicKey::from_pem("").is_err());
        assert!(PublicKey::from_pem(&BASE64.encode([1u8; 31])).is_err());
        assert!(
            PublicKey::from_pem(
                "-----BEGIN CRYPT4GH PUBLIC KEY-----\nAAAA\n-----END CRYPT4GH PUBLIC KEY-----"
            )
            .is_err()
        );
    }

    #[test]
    fn secret_key_round_trips_unencrypted_and_with_every_kdf() {
        let sk = SecretKey::generate();
        let pem = sk.to_pem(None, Some("alice")).unwrap();
        let back = SecretKey::from_pem(&pem, None).unwrap();
        assert_eq!(back.secret_bytes(), sk.secret_bytes());
        for kdf in [
            Kdf::Scrypt,
            Kdf::BCRYPT,
            Kdf::Pbkdf2HmacSha256 { rounds: 1000 },
        ] {
            let pem = sk.to_pem(Some((b"pass word", kdf)), None).unwrap();
            let back = SecretKey::from_pem(&pem, Some(b"pass word")).unwrap();
            assert_eq!(back.secret_bytes(), sk.secret_bytes(), "{kdf:?}");
            assert!(matches!(
                SecretKey::from_pem(&pem, Some(b"wrong")),
                Err(Error::WrongPassphrase)
            ));
            assert!(matches!(
                SecretKey::from_pem(&pem, None),
                Err(Error::PassphraseRequired)
            ));
        }
    }

    #[test]
    fn debug_elides_the_secret() {
        let sk = SecretKey::from_bytes([0x41; 32]);
        let text = format!("{sk:?}");
        assert!(text.contains("[secret key elided]"), "{text}");
        assert!(!text.contains("QUFB"), "{text}");
        assert!(!text.contains("65, 65"), "{text}");
    }

    #[test]
    fn key_file_is_written_atomically_with_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.sec");
        let sk = SecretKey::generate();
        sk.write_file(&path, None, None, SECRET_KEY_FILE_MODE)
            .unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        assert!(!part_path(&path).exists());
        let back = SecretKey::read_file(&path, || None).unwrap();
        assert_eq!(back.secret_bytes(), sk.secret_bytes());
        // Overwriting a 0400 file works (rename replaces it) and honours another mode.
        sk.write_file(&path, None, None, 0o440).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o440
        );
    }
}
