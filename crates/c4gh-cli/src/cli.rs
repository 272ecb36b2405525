//! The command line: the reference tool's verbs and flags (`--sk`, `--recipient_pk`,
//! `--sender_pk`, `--range`, `--header`, `--trim`, `--header-only`; keygen `--sk`, `--pk`,
//! `--nocrypt`, `-C`, `-f`) and environment variables.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// Examples shown after `c4gh --help`.
const EXAMPLES: &str = "\
EXAMPLES:
  c4gh keygen --sk alice.sec --pk alice.pub
  c4gh encrypt --sk alice.sec --recipient_pk bob.pub < reads.bam > reads.bam.c4gh
  c4gh decrypt --sk bob.sec < reads.bam.c4gh > reads.bam
  c4gh decrypt --sk bob.sec --range 1000000-2000000 < reads.bam.c4gh > part.bam
  c4gh reencrypt --sk bob.sec --recipient_pk carol.pub --trim < reads.bam.c4gh > for-carol.c4gh

ENVIRONMENT:
  C4GH_SECRET_KEY   default for --sk
  C4GH_PUBLIC_KEY   keygen: the public key file to write
  C4GH_PASSPHRASE   passphrase of an encrypted secret key instead of the prompt (insecure)
  C4GH_THREADS      default for --threads";

/// The command-line definition (for completions and man pages).
pub fn command() -> clap::Command {
    Cli::command()
}

/// Utility for the GA4GH Crypt4GH format, reading from stdin and writing to stdout.
// No `Debug`: it holds the passphrase.
#[derive(Parser)]
#[command(
    name = "c4gh",
    version,
    disable_version_flag = true,
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Print the version and exit.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    version: Option<bool>,

    /// Passphrase of the secret key (insecure; for tests and automation only). Without it the
    /// passphrase is asked on the terminal when the key is encrypted.
    #[arg(
        long,
        env = "C4GH_PASSPHRASE",
        hide = true,
        hide_env_values = true,
        global = true
    )]
    pub passphrase: Option<String>,

    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Encrypt stdin for one or more recipients.
    Encrypt(EncryptArgs),
    /// Decrypt stdin.
    Decrypt(DecryptArgs),
    /// Replace the edit list by a byte range, keeping only the segments it needs.
    Rearrange(RearrangeArgs),
    /// Re-encrypt the header for other recipients; the body is copied unchanged.
    Reencrypt(ReencryptArgs),
    /// Create a key pair (as crypt4gh-keygen).
    Keygen(KeygenArgs),
}

/// Options of encrypt.
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// Writer's private key; without it (and without C4GH_SECRET_KEY) a throw-away key is used.
    #[arg(long = "sk", env = "C4GH_SECRET_KEY", value_name = "PATH")]
    pub sk: Option<PathBuf>,
    /// Recipient's public key (repeatable).
    #[arg(long = "recipient_pk", value_name = "PATH", required = true)]
    pub recipient_pk: Vec<PathBuf>,
    /// Encrypt only this byte range of the input: START-END (END excluded), START- or START.
    #[arg(long, value_name = "START-END")]
    pub range: Option<ByteRange>,
    /// Write the header to this file instead of stdout (the body still goes to stdout).
    #[arg(long, value_name = "PATH")]
    pub header: Option<PathBuf>,
    /// Encrypt on this many threads (0 = every core). Default: up to 4 (one per core) unless
    /// stdin is a regular file of less than 4 MiB.
    #[arg(long, env = "C4GH_THREADS", value_name = "N")]
    pub threads: Option<usize>,
}

/// Options of decrypt.
#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// Reader's private key.
    #[arg(long = "sk", env = "C4GH_SECRET_KEY", value_name = "PATH")]
    pub sk: Option<PathBuf>,
    /// Accept only header packets written by this public key.
    #[arg(long = "sender_pk", value_name = "PATH")]
    pub sender_pk: Option<PathBuf>,
    /// Output only this byte range of the plaintext: START-END (END excluded), START- or START.
    #[arg(long, value_name = "START-END")]
    pub range: Option<ByteRange>,
    /// Decrypt on this many threads (0 = every core). Default: up to 4 (one per core) unless
    /// stdin is a regular file of less than 4 MiB.
    #[arg(long, env = "C4GH_THREADS", value_name = "N")]
    pub threads: Option<usize>,
}

/// Options of rearrange.
#[derive(Debug, Args)]
pub struct RearrangeArgs {
    /// Reader's private key (the new header is sealed for its public key).
    #[arg(long = "sk", env = "C4GH_SECRET_KEY", value_name = "PATH")]
    pub sk: Option<PathBuf>,
    /// The byte range to keep: START-END (END excluded), START- or START.
    #[arg(long, value_name = "START-END", required = true)]
    pub range: ByteRange,
}

/// Options of reencrypt.
#[derive(Debug, Args)]
pub struct ReencryptArgs {
    /// Private key that opens the header; the new packets are written with it.
    #[arg(long = "sk", env = "C4GH_SECRET_KEY", value_name = "PATH")]
    pub sk: Option<PathBuf>,
    /// Recipient's public key (repeatable).
    #[arg(long = "recipient_pk", value_name = "PATH", required = true)]
    pub recipient_pk: Vec<PathBuf>,
    /// Keep only the header packets the key can decrypt.
    #[arg(short = 't', long)]
    pub trim: bool,
    /// The input is only a header: write only the new header.
    #[arg(long = "header-only")]
    pub header_only: bool,
}

/// Options of keygen.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Private key file to write.
    #[arg(
        long = "sk",
        env = "C4GH_SECRET_KEY",
        default_value = "~/.c4gh/key",
        value_name = "PATH"
    )]
    pub sk: PathBuf,
    /// Public key file to write.
    #[arg(
        long = "pk",
        env = "C4GH_PUBLIC_KEY",
        default_value = "~/.c4gh/key.pub",
        value_name = "PATH"
    )]
    pub pk: PathBuf,
    /// Do not encrypt the private key.
    #[arg(long)]
    pub nocrypt: bool,
    /// Comment stored in the private key file.
    #[arg(short = 'C', value_name = "COMMENT")]
    pub comment: Option<String>,
    /// Overwrite existing files without asking.
    #[arg(short = 'f')]
    pub force: bool,
    /// Re-lock the existing private key with a new passphrase instead of creating a key.
    #[arg(long)]
    pub relock: bool,
    /// Key-derivation function for the passphrase.
    #[arg(long, value_enum, default_value_t = KdfName::Scrypt)]
    pub kdf: KdfName,
}

/// KDF names as written in key files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KdfName {
    /// scrypt, N = 2^14, r = 8, p = 1 (the reference's choice).
    Scrypt,
    /// bcrypt-pbkdf, 100 rounds.
    Bcrypt,
    /// PBKDF2-HMAC-SHA256, 100 000 iterations.
    #[value(name = "pbkdf2_hmac_sha256")]
    Pbkdf2HmacSha256,
}

impl KdfName {
    /// The library's KDF with the reference's parameters.
    pub fn kdf(self) -> c4gh::keys::Kdf {
        match self {
            KdfName::Scrypt => c4gh::keys::Kdf::Scrypt,
            KdfName::Bcrypt => c4gh::keys::Kdf::BCRYPT,
            KdfName::Pbkdf2HmacSha256 => c4gh::keys::Kdf::PBKDF2_HMAC_SHA256,
        }
    }
}

/// A byte range `[start, start + len)`; `len` is `None` for "to the end".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Number of bytes, or `None` for all remaining.
    pub len: Option<u64>,
}

impl FromStr for ByteRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("invalid range {s:?}: expected START-END (END excluded), START- or START");
        let (start, end) = match s.split_once('-') {
            Some((start, "")) => (start, None),
            Some((start, end)) => (start, Some(end)),
            None => (s, None),
        };
        let start: u64 = start.parse().map_err(|_| bad())?;
        let len = match end {
            None => None,
            Some(end) => {
                let end: u64 = end.parse().map_err(|_| bad())?;
                if end <= start {
                    return Err(format!(
                        "invalid range {s:?}: END must be greater than START"
                    ));
                }
                Some(end - start)
            }
        };
        Ok(ByteRange { start, len })
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.len {
            Some(len) => write!(f, "{}-{}", self.start, self.start + len),
            None => write!(f, "{}-", self.start),
        }
    }
}

/// Lets the binary be installed under the name `crypt4gh-keygen` (a symlink): then the
/// arguments are those of `c4gh keygen`.
pub fn args_with_keygen_alias(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.collect();
    let is_keygen = args
        .first()
        .and_then(|a| {
            PathBuf::from(a)
                .file_name()
                .map(|n| n.to_string_lossy().ends_with("keygen"))
        })
        .unwrap_or(false);
    if is_keygen {
        args.insert(1, "keygen".into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse() {
        let r = |s: &str| s.parse::<ByteRange>();
        assert_eq!(
            r("0-10"),
            Ok(ByteRange {
                start: 0,
                len: Some(10)
            })
        );
        assert_eq!(
            r("5-"),
            Ok(ByteRange {
                start: 5,
                len: None
            })
        );
        assert_eq!(
            r("5"),
            Ok(ByteRange {
                start: 5,
                len: None
            })
        );
        assert!(r("5-5").is_err());
        assert!(r("9-5").is_err());
        assert!(r("a-5").is_err());
        assert!(r("-5").is_err());
        assert_eq!(r("3-9").unwrap().to_string(), "3-9");
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "c4gh",
            "encrypt",
            "--recipient_pk",
            "a",
            "--recipient_pk",
            "b",
        ])
        .unwrap();
        match cli.command {
            Command::Encrypt(args) => assert_eq!(args.recipient_pk.len(), 2),
            other => panic!("{other:?}"),
        }
        let args = args_with_keygen_alias(
            ["/usr/bin/crypt4gh-keygen", "--nocrypt"]
                .into_iter()
                .map(OsString::from),
        );
        assert!(matches!(
            Cli::try_parse_from(args).unwrap().command,
            Command::Keygen(_)
        ));
    }
}
