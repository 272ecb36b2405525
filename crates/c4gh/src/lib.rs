//! The GA4GH Crypt4GH v1 file format, implemented on OpenSSL's libcrypto (ChaCha20-Poly1305, with
//! its run-time choice of AVX-512, AVX2 or SSSE3 code), `x25519-dalek` and `blake2`, and tested
//! against the reference Python implementation. Building needs OpenSSL's headers and
//! `pkg-config` (Debian `libssl-dev`); binaries need `libcrypto.so.3` at run time unless linked
//! statically (`OPENSSL_STATIC=1`, as the musl images do).
//!
//! A Crypt4GH file is a small header holding the body's data key sealed for one or more X25519
//! public keys, followed by the body in 64 KiB ChaCha20-Poly1305 segments.
//!
//! - [`keys`]: [`SecretKey`] and [`PublicKey`], key files (`c4gh-v1` private keys with scrypt,
//!   bcrypt, PBKDF2 or no encryption; PEM public keys; base64 forms servers exchange).
//! - [`header`]: bounded parsing ([`header::EncryptedHeader`], [`header::header_len`],
//!   [`header::read_header`]), opening with several keys, [`header::build`] for several
//!   recipients, and [`header::reencrypt`] — re-sealing a header for a client's public key with a
//!   fresh writer key, the operation a data server performs per request.
//! - [`body`]: streaming [`body::Encryptor`] (`Write`) and [`body::Decryptor`] (`Read`, and `Seek`
//!   by plaintext offset), edit lists, several data keys; [`body_async`] has the tokio forms;
//!   [`parallel`] decrypts on several cores with bounded memory; [`authenticate`] checks every
//!   segment's tag without decrypting (for bodies kept encrypted).
//! - [`encrypt`] and [`decrypt`] tie header and body together for whole streams.
//!
//! Memory use is one segment per stream, whatever the file size. Secret keys and data keys
//! zeroize on drop, print `[secret key elided]` from `Debug`, and are not `Clone`.
//!
//! ```
//! use c4gh::keys::{PublicKey, SecretKey};
//!
//! # fn main() -> Result<(), c4gh::Error> {
//! let alice = SecretKey::generate();
//! let bob = SecretKey::generate();
//!
//! // Alice encrypts for Bob.
//! let plaintext = b"ACGT".repeat(40_000);
//! let mut file = Vec::new();
//! c4gh::encrypt(&mut &plaintext[..], &mut file, &alice, &[bob.public_key()])?;
//!
//! // A server holding Bob's key re-encrypts the header for a task's ephemeral key; the body
//! // is served unchanged.
//! let task = SecretKey::generate();
//! let header_len = c4gh::header::read_header(&mut &file[..])?.len();
//! let new_header = c4gh::header::reencrypt(&file[..header_len], &bob, &[task.public_key()], true)?;
//! let mut reencrypted = new_header;
//! reencrypted.extend_from_slice(&file[header_len..]);
//!
//! // The task decrypts; public keys travel as PEM or base64.
//! let pem = task.public_key().to_pem();
//! assert_eq!(PublicKey::from_pem(&pem)?, task.public_key());
//! let mut out = Vec::new();
//! c4gh::decrypt(&mut &reencrypted[..], &mut out, &[&task])?;
//! assert_eq!(out, plaintext);
//!
//! // Random access: open the header, then seek by plaintext offset.
//! use std::io::{Read, Seek, SeekFrom};
//! let mut input = std::io::Cursor::new(&reencrypted);
//! let header = c4gh::header::read_header(&mut input)?;
//! let opened = c4gh::header::EncryptedHeader::parse(&header)?.open(&[&task], None)?;
//! let mut body = c4gh::body::Decryptor::new(input, &opened.data_keys, opened.edit_list.as_deref())?;
//! body.seek(SeekFrom::Start(100_000)).map_err(c4gh::Error::from_io)?;
//! let mut four = [0u8; 4];
//! body.read_exact(&mut four).map_err(c4gh::Error::from_io)?;
//! assert_eq!(&four, b"ACGT");
//! # Ok(())
//! # }
//! ```

pub mod authenticate;
pub mod body;
pub mod body_async;
mod crypto;
mod error;
pub mod header;
pub mod keys;
pub mod parallel;

use std::io::{Read, Write};

pub use body::DataKey;
pub use error::{Error, Result};
pub use keys::{PublicKey, SecretKey};

/// Encrypts `input` to its end for `recipients` (header written by `writer`) into `output` with
/// a fresh data key. Returns the plaintext bytes read.
pub fn encrypt<R: Read, W: Write>(
    input: &mut R,
    output: &mut W,
    writer: &SecretKey,
    recipients: &[PublicKey],
) -> Result<u64> {
    let key = DataKey::generate();
    let header = header::build(writer, recipients, &[&key], None)?;
    output.write_all(&header)?;
    let mut enc = body::Encryptor::new(output, &key);
    let n = enc.copy_from(input)?;
    enc.finish()?;
    Ok(n)
}

/// Decrypts a whole Crypt4GH stream with any of `keys` into `output`, applying its edit list.
/// Returns the plaintext bytes written.
pub fn decrypt<R: Read, W: Write>(
    input: &mut R,
    output: &mut W,
    keys: &[&SecretKey],
) -> Result<u64> {
    let header = header::read_header(input)?;
    let opened = header::EncryptedHeader::parse(&header)?.open(keys, None)?;
    let mut dec = body::Decryptor::new(input, &opened.data_keys, opened.edit_list.as_deref())?;
    dec.copy_to(output)
}
