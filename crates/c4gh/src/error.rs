//! The one error type of the crate. Every variant says what went wrong and, where it helps,
//! which object (packet, segment, key file) and what to do.

use std::io;

/// Everything that can go wrong reading or writing Crypt4GH keys and files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the underlying stream or file failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),

    /// The input does not start with the `crypt4gh` magic bytes.
    #[error("not a Crypt4GH file: the input does not start with the magic bytes \"crypt4gh\"")]
    NotCrypt4gh,

    /// The header declares a format version other than 1.
    #[error("unsupported Crypt4GH version {version} (only version 1 is supported)")]
    UnsupportedVersion {
        /// The version found in the header.
        version: u32,
    },

    /// The input ended inside the header.
    #[error(
        "truncated Crypt4GH header: the input ended after {got} of at least {needed} header bytes"
    )]
    TruncatedHeader {
        /// Bytes available.
        got: usize,
        /// Bytes the header needs at least.
        needed: usize,
    },

    /// The header is larger than this implementation accepts.
    #[error("Crypt4GH header too large: {len} bytes (limit {max})")]
    HeaderTooLarge {
        /// Declared or accumulated header length.
        len: u64,
        /// The limit.
        max: usize,
    },

    /// The header declares more packets than this implementation accepts (or none).
    #[error("Crypt4GH header declares {count} packets (allowed: 1 to {max})")]
    PacketCount {
        /// Declared packet count.
        count: u32,
        /// The limit.
        max: u32,
    },

    /// A header packet's length field is impossible.
    #[error("header packet {index} has an invalid length {len}")]
    PacketLength {
        /// Zero-based packet index.
        index: usize,
        /// The declared length (including the 4-byte length field).
        len: u32,
    },

    /// Bytes follow the last header packet where none were expected.
    #[error("{extra} unexpected bytes after the Crypt4GH header")]
    TrailingData {
        /// Number of extra bytes.
        extra: usize,
    },

    /// None of the secret keys opens any data-key packet of the header.
    #[error(
        "no header packet could be decrypted with the given secret key(s): the file was not \
         encrypted for this key (wrong key, or a header for another recipient)"
    )]
    NoMatchingKey,

    /// A packet opened but its content is invalid.
    #[error("header packet {index} is invalid: {reason}")]
    InvalidPacket {
        /// Zero-based packet index.
        index: usize,
        /// What is wrong.
        reason: String,
    },

    /// The packets that opened hold more than one edit list.
    #[error("the header holds more than one edit list for this key; such files are rejected")]
    MultipleEditLists,

    /// The sender's public key did not match the writer key of the packets.
    #[error("the header was not written by the expected sender public key")]
    UnexpectedSender,

    /// A body segment failed authentication.
    #[error(
        "segment {segment} (zero-based, {len} bytes) of the body failed authentication: {}",
        if *.is_last {
            "it is the last segment, so the file was truncated or tampered with"
        } else {
            "the file is corrupted or was tampered with"
        }
    )]
    SegmentAuthentication {
        /// Zero-based segment index.
        segment: u64,
        /// Encrypted length of the segment.
        len: usize,
        /// Whether this was the last segment of the input.
        is_last: bool,
    },

    /// The body ended with a fragment too short to be a segment.
    #[error(
        "truncated Crypt4GH body: segment {segment} (zero-based), the last, has only {len} bytes \
         (a segment holds at least 28)"
    )]
    TruncatedBody {
        /// Zero-based index of the fragment.
        segment: u64,
        /// Its length.
        len: usize,
    },

    /// A key file or key text could not be parsed.
    #[error("invalid key: {reason}")]
    InvalidKey {
        /// What is wrong.
        reason: String,
    },

    /// The private key is encrypted and no passphrase was given.
    #[error("the private key is encrypted: a passphrase is required (C4GH_PASSPHRASE or prompt)")]
    PassphraseRequired,

    /// The passphrase does not decrypt the private key.
    #[error("wrong passphrase: the private key could not be decrypted")]
    WrongPassphrase,

    /// The ChaCha20-Poly1305 library (OpenSSL's libcrypto) failed for a reason other than
    /// authentication: it is missing the cipher or out of memory.
    #[error(
        "the ChaCha20-Poly1305 implementation (OpenSSL libcrypto) failed: {reason}; check that \
         the installed libcrypto provides ChaCha20-Poly1305 (OPENSSL_CONF must not restrict it \
         to a provider without it, such as FIPS)"
    )]
    Cipher {
        /// What failed, with OpenSSL's error queue.
        reason: String,
    },

    /// An argument given by the caller is invalid.
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    pub(crate) fn invalid_key(reason: impl Into<String>) -> Self {
        Error::InvalidKey {
            reason: reason.into(),
        }
    }

    /// Converts into an `io::Error` for `Read`/`Write` implementations, keeping this error as
    /// the source (recover it with [`Error::from_io`]).
    pub(crate) fn into_io(self) -> io::Error {
        match self {
            Error::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }

    /// Recovers a Crypt4GH error that a `Read`/`Write` adapter of this crate wrapped in an
    /// `io::Error`; other I/O errors become [`Error::Io`].
    pub fn from_io(err: io::Error) -> Self {
        if !err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return Error::Io(err);
        }
        let kind = err.kind();
        match err.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(inner)) => *inner,
            Some(Err(other)) => Error::Io(io::Error::new(kind, other)),
            None => Error::Io(io::Error::from(kind)),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
