//! The verbs. Each reads stdin and writes stdout like the reference tool; errors carry what
//! went wrong and what to do.

use std::fs::{self, File};
use std::io::{self, IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use c4gh::body::{CIPHER_SEGMENT_SIZE, DataKey, Decryptor, restrict_edit_list};
use c4gh::header::{self, EncryptedHeader};
use c4gh::keys::{self, PublicKey, SecretKey};
use zeroize::Zeroizing;

use crate::cli::{
    Cli, Command, DecryptArgs, EncryptArgs, KeygenArgs, RearrangeArgs, ReencryptArgs,
};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let passphrase = cli.passphrase.map(Zeroizing::new);
    let pass = Passphrase(passphrase);
    match cli.command {
        Command::Encrypt(args) => encrypt(args, &pass),
        Command::Decrypt(args) => decrypt(args, &pass),
        Command::Rearrange(args) => rearrange(args, &pass),
        Command::Reencrypt(args) => reencrypt(args, &pass),
        Command::Keygen(args) => keygen(args, &pass),
    }
}

/// Whether the error is a closed stdout (`c4gh decrypt | head`): the reference exits quietly.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || matches!(cause.downcast_ref::<c4gh::Error>(), Some(c4gh::Error::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Where the passphrase comes from: `C4GH_PASSPHRASE`, else the terminal.
struct Passphrase(Option<Zeroizing<String>>);

impl Passphrase {
    /// The passphrase for `path`, asked only when needed.
    fn for_key(&self, path: &Path) -> Option<Zeroizing<Vec<u8>>> {
        if let Some(p) = &self.0 {
            eprintln!("Warning: Using a passphrase in an environment variable is insecure");
            return Some(Zeroizing::new(p.as_bytes().to_vec()));
        }
        let prompt = format!("Passphrase for {}: ", path.display());
        rpassword::prompt_password(prompt)
            .ok()
            .map(|p| Zeroizing::new(Zeroizing::new(p).as_bytes().to_vec()))
    }
}

fn expand_home(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => std::env::home_dir().map_or_else(|| path.to_path_buf(), |home| home.join(rest)),
        Err(_) => path.to_path_buf(),
    }
}

fn load_secret(path: Option<&Path>, pass: &Passphrase) -> Result<SecretKey> {
    let path =
        path.ok_or_else(|| anyhow!("no secret key: pass --sk PATH or set C4GH_SECRET_KEY"))?;
    let path = expand_home(path);
    if !path.exists() {
        bail!("secret key {} not found", path.display());
    }
    SecretKey::read_file(&path, || pass.for_key(&path))
        .with_context(|| format!("loading secret key {}", path.display()))
}

fn load_public(path: &Path) -> Result<PublicKey> {
    let path = expand_home(path);
    PublicKey::read_file(&path).with_context(|| format!("loading public key {}", path.display()))
}

fn load_recipients(paths: &[PathBuf]) -> Result<Vec<PublicKey>> {
    paths.iter().map(|p| load_public(p)).collect()
}

/// stdin as a file, so a redirected file can be seeked.
fn stdin() -> Result<File> {
    let fd = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stdin")?;
    Ok(File::from(fd))
}

/// stdout as a file: unbuffered, whole segments per write.
fn stdout() -> Result<File> {
    let fd = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stdout")?;
    Ok(File::from(fd))
}

fn read_header(input: &mut File) -> Result<Vec<u8>> {
    header::read_header(input).context("reading the Crypt4GH header from stdin")
}

/// Most threads the default uses: beyond this the single reading and writing end, not the
/// cipher, limits throughput, and the reorder window (two ~1 MiB buffers per thread) stays
/// below 16 MiB of memory whatever the machine.
const DEFAULT_MAX_THREADS: usize = 4;
/// Regular-file inputs with fewer bytes left than this are handled on one thread by default.
const PARALLEL_MIN_BYTES: u64 = 4 << 20;

/// The thread count for `--threads` (`Some`, 0 = every core) or the default: one thread per
/// core up to [`DEFAULT_MAX_THREADS`], like `pigz`, except for a regular file with less than
/// [`PARALLEL_MIN_BYTES`] left, which is not worth starting threads for. A pipe or other
/// stream of unknown length gets the threads; one shorter than a batch (1 MiB) is handled on
/// the calling thread anyway.
fn threads_for(requested: Option<usize>, input: &mut File) -> usize {
    if let Some(n) = requested {
        return n;
    }
    let small_file = input.metadata().ok().is_some_and(|m| {
        m.file_type().is_file()
            && input
                .stream_position()
                .is_ok_and(|pos| m.len().saturating_sub(pos) < PARALLEL_MIN_BYTES)
    });
    if small_file {
        return 1;
    }
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(DEFAULT_MAX_THREADS)
}

/// Skips `n` bytes of `input`: seeks when it is a file, reads otherwise.
fn skip(input: &mut File, n: u64) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    if input.seek(SeekFrom::Current(i64::try_from(n)?)).is_ok() {
        return Ok(());
    }
    io::copy(&mut Read::take(&mut *input, n), &mut io::sink()).context("skipping input")?;
    Ok(())
}

fn encrypt(args: EncryptArgs, pass: &Passphrase) -> Result<()> {
    let writer = match &args.sk {
        Some(path) => load_secret(Some(path), pass)?,
        None => SecretKey::generate(),
    };
    let recipients = load_recipients(&args.recipient_pk)?;
    let key = DataKey::generate();
    let header = header::build(&writer, &recipients, &[&key], None)?;
    let mut input = stdin()?;
    let mut out = stdout()?;
    let header_file = match &args.header {
        Some(path) => {
            let part = part_path(path);
            let mut f = File::create(&part)
                .with_context(|| format!("creating header file {}", part.display()))?;
            f.write_all(&header)
                .with_context(|| format!("writing header file {}", part.display()))?;
            Some((part, path.clone()))
        }
        None => {
            out.write_all(&header).context("writing to stdout")?;
            None
        }
    };
    let result = (|| -> Result<()> {
        if let Some(range) = args.range {
            skip(&mut input, range.start)?;
        }
        let threads = threads_for(args.threads, &mut input);
        match args.range.and_then(|r| r.len) {
            Some(len) => c4gh::parallel::encrypt_parallel(
                &mut Read::take(&mut input, len),
                &mut out,
                &key,
                threads,
            )?,
            None => c4gh::parallel::encrypt_parallel(&mut input, &mut out, &key, threads)?,
        };
        Ok(())
    })();
    if let Some((part, path)) = header_file {
        match &result {
            Ok(()) => fs::rename(&part, &path)
                .with_context(|| format!("renaming {} to {}", part.display(), path.display()))?,
            Err(_) => {
                let _ = fs::remove_file(&part);
            }
        }
    }
    result
}

fn part_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".part");
    path.with_file_name(name)
}

fn decrypt(args: DecryptArgs, pass: &Passphrase) -> Result<()> {
    let sender = args.sender_pk.as_deref().map(load_public).transpose()?;
    let sk = load_secret(args.sk.as_deref(), pass)?;
    let mut input = stdin()?;
    let header = read_header(&mut input)?;
    let opened = EncryptedHeader::parse(&header)?.open(&[&sk], sender.as_ref())?;
    let edit_list = match args.range {
        Some(r) => Some(restrict_edit_list(
            opened.edit_list.as_deref(),
            r.start,
            r.len,
        )),
        None => opened.edit_list,
    };
    let mut out = stdout()?;
    let threads = threads_for(args.threads, &mut input);
    if threads == 1 {
        Decryptor::new(&mut input, &opened.data_keys, edit_list.as_deref())?.copy_to(&mut out)?;
    } else {
        c4gh::parallel::decrypt_parallel(
            &mut input,
            &mut out,
            &opened.data_keys,
            edit_list.as_deref(),
            threads,
        )?;
    }
    Ok(())
}

fn rearrange(args: RearrangeArgs, pass: &Passphrase) -> Result<()> {
    let sk = load_secret(args.sk.as_deref(), pass)?;
    let mut input = stdin()?;
    let header = read_header(&mut input)?;
    let (new_header, segments) = header::rearrange(&header, &sk, args.range.start, args.range.len)?;
    let mut out = stdout()?;
    out.write_all(&new_header)?;
    skip(
        &mut input,
        segments.start.saturating_mul(CIPHER_SEGMENT_SIZE as u64),
    )?;
    let mut buf = vec![0u8; CIPHER_SEGMENT_SIZE];
    for _ in segments {
        let n = read_up_to(&mut input, &mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        if n < buf.len() {
            break;
        }
    }
    Ok(())
}

fn read_up_to(input: &mut File, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("reading stdin"),
        }
    }
    Ok(got)
}

fn reencrypt(args: ReencryptArgs, pass: &Passphrase) -> Result<()> {
    let sk = load_secret(args.sk.as_deref(), pass)?;
    let recipients = load_recipients(&args.recipient_pk)?;
    let mut input = stdin()?;
    let header = read_header(&mut input)?;
    let new_header = header::reencrypt_with(&header, &[&sk], &sk, &recipients, args.trim)?;
    let mut out = stdout()?;
    out.write_all(&new_header)?;
    if !args.header_only {
        io::copy(&mut input, &mut out).context("copying the body")?;
    }
    Ok(())
}

fn keygen(args: KeygenArgs, pass: &Passphrase) -> Result<()> {
    let sk_path = expand_home(&args.sk);
    let pk_path = expand_home(&args.pk);
    let comment = args.comment.as_deref();
    let for_comment = comment.map(|c| format!(" (for {c})")).unwrap_or_default();
    if args.relock {
        println!("Relocking secret key {}{for_comment}.", sk_path.display());
        let key = SecretKey::read_file(&sk_path, || pass.for_key(&sk_path))
            .with_context(|| format!("loading secret key {}", sk_path.display()))?;
        let new = new_passphrase(&args, &sk_path, pass)?;
        let protection = new.as_ref().map(|p| (p.as_bytes(), args.kdf.kdf()));
        key.write_file(&sk_path, protection, comment, keys::SECRET_KEY_FILE_MODE)?;
        println!(
            "Your private key has been relocked in {}",
            sk_path.display()
        );
        return Ok(());
    }
    println!("Generating public/private Crypt4GH key pair{for_comment}.");
    let passphrase = new_passphrase(&args, &sk_path, pass)?;
    for path in [&pk_path, &sk_path] {
        if path.exists() && !args.force && !confirm_overwrite(path)? {
            println!("Ok. Fair enough. Exiting.");
            return Ok(());
        }
        if let Some(parent) = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && !p.exists())
        {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .with_context(|| format!("creating directory {}", parent.display()))?;
        }
    }
    let key = SecretKey::generate();
    let protection = passphrase.as_ref().map(|p| (p.as_bytes(), args.kdf.kdf()));
    key.write_file(&sk_path, protection, comment, keys::SECRET_KEY_FILE_MODE)
        .with_context(|| format!("writing secret key {}", sk_path.display()))?;
    keys::write_key_file(&pk_path, key.public_key().to_pem().as_bytes(), 0o644)
        .with_context(|| format!("writing public key {}", pk_path.display()))?;
    println!("Your private key has been saved in {}", sk_path.display());
    println!("Your public key has been saved in {}", pk_path.display());
    Ok(())
}

/// The passphrase protecting a new key file: none with `--nocrypt` or when empty,
/// `C4GH_PASSPHRASE` when set, else asked twice on the terminal.
fn new_passphrase(
    args: &KeygenArgs,
    sk_path: &Path,
    pass: &Passphrase,
) -> Result<Option<Zeroizing<String>>> {
    if args.nocrypt {
        return Ok(None);
    }
    let passphrase = match &pass.0 {
        Some(p) => p.clone(),
        None => {
            let first = Zeroizing::new(
                rpassword::prompt_password(format!(
                    "Enter passphrase for {} (empty for no passphrase): ",
                    sk_path.display()
                ))
                .context("reading the passphrase from the terminal (or set C4GH_PASSPHRASE, or use --nocrypt)")?,
            );
            let again = Zeroizing::new(
                rpassword::prompt_password(format!(
                    "Enter passphrase for {} (again): ",
                    sk_path.display()
                ))
                .context("reading the passphrase from the terminal")?,
            );
            if first != again {
                bail!("passphrases do not match");
            }
            first
        }
    };
    if passphrase.is_empty() {
        eprintln!("WARNING: The private key is not encrypted");
        return Ok(None);
    }
    Ok(Some(passphrase))
}

/// Asks whether to overwrite `path` (on a terminal; otherwise `-f` is required).
fn confirm_overwrite(path: &Path) -> Result<bool> {
    if !io::stdin().is_terminal() {
        bail!("{} already exists: use -f to overwrite it", path.display());
    }
    eprint!(
        "{} already exists. Do you want to overwrite it? (y/n) ",
        path.display()
    );
    let mut answer = String::new();
    io::stdin().read_line(&mut answer)?;
    Ok(answer.trim() == "y")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_threads_depend_on_what_stdin_is() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let default = cores.min(DEFAULT_MAX_THREADS);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("input");
        fs::write(&path, vec![0u8; PARALLEL_MIN_BYTES as usize]).unwrap();
        let mut file = File::open(&path).unwrap();
        assert_eq!(threads_for(None, &mut file), default, "a large file");
        assert_eq!(threads_for(Some(1), &mut file), 1, "--threads 1 stays");
        assert_eq!(threads_for(Some(7), &mut file), 7);
        assert_eq!(
            threads_for(Some(0), &mut file),
            0,
            "0 = every core, resolved by c4gh"
        );
        file.seek(SeekFrom::Start(1)).unwrap();
        assert_eq!(
            threads_for(None, &mut file),
            1,
            "less than the threshold left"
        );
        let (reader, _writer) = std::io::pipe().unwrap();
        let mut pipe = File::from(std::os::fd::OwnedFd::from(reader));
        assert_eq!(
            threads_for(None, &mut pipe),
            default,
            "a pipe of unknown length"
        );
    }
}
