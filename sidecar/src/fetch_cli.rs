//! `c4gh-sidecar fetch`: the fetch machinery as a plain command outside Kubernetes.
//!
//! `c4gh-sidecar fetch drs://host/A drs://host/B -o a.c4gh -o b.c4gh` fetches both (bounded
//! concurrency) with headers re-encrypted for a fresh ephemeral key (`--key-out FILE` keeps it,
//! written once the first object is in place) or for your key (`--sk FILE`); `--decrypt` writes
//! plaintext instead. A progress bar is drawn when
//! stderr is a terminal. Outputs appear under their final names only when verified; a failed
//! `encrypted` body stays as a hidden partial that running the same command again continues
//! ([`crate::resume`]). Returns the number of failed objects.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use zeroize::Zeroizing;

use crate::cleanup::Cleanup;
use crate::cli::FetchArgs;
use crate::fetch::{FetchError, Fetcher};
use crate::inputs::{Input, Mode};
use crate::key::EphemeralKey;
use crate::telemetry::Metrics;

/// Why `fetch` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchCliError {
    /// Outputs do not match the URIs.
    #[error("{0}")]
    Usage(String),
    /// The secret key file could not be read.
    #[error("cannot read the secret key {path}: {source}")]
    SecretKey {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: c4gh::Error,
    },
    /// The ephemeral key could not be written to --key-out.
    #[error(transparent)]
    KeyOut(#[from] crate::key::KeyError),
    /// The DRS client could not be configured.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// Runs `fetch`; returns how many objects failed (each failure is logged with its reason).
pub async fn fetch(args: FetchArgs, cleanup: Arc<Cleanup>) -> Result<usize, FetchCliError> {
    let outputs = output_paths(&args)?;
    let mode = if args.decrypt {
        Mode::Plaintext
    } else {
        Mode::Encrypted
    };
    let key = match &args.sk {
        Some(path) => {
            let passphrase = args.passphrase.clone();
            let secret = c4gh::SecretKey::read_file(path, move || {
                passphrase.map(|p| Zeroizing::new(p.0.as_bytes().to_vec()))
            })
            .map_err(|source| FetchCliError::SecretKey {
                path: path.clone(),
                source,
            })?;
            EphemeralKey::from_secret(secret)
        }
        None => {
            let key = EphemeralKey::generate();
            match (&args.key_out, args.decrypt) {
                (Some(path), _) => check_key_out(path)?,
                (None, false) => {
                    return Err(FetchCliError::Usage(
                        "an encrypted copy for an ephemeral key that nobody keeps cannot be opened: \
                         pass --decrypt, --sk YOUR_KEY or --key-out FILE"
                            .into(),
                    ));
                }
                (None, true) => {}
            }
            key
        }
    };
    let key = Arc::new(key);
    let fetcher = Arc::new(
        Fetcher::new(
            &args.drs,
            Arc::clone(&key),
            Arc::clone(&cleanup),
            Arc::new(Metrics::new()),
        )
        .await?,
    );
    let bars =
        MultiProgress::with_draw_target(if std::io::stderr().is_terminal() && !args.no_progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
    let style = ProgressStyle::with_template(
        "{prefix:30!} {bar:30} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {eta:>4}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    let semaphore = Arc::new(Semaphore::new(usize::from(args.drs.concurrency)));
    let mut tasks = JoinSet::new();
    for (url, path) in args.urls.iter().zip(outputs) {
        let input = Input {
            url: url.clone(),
            path,
            mode,
        };
        let bar = bars.add(ProgressBar::new(0).with_style(style.clone()));
        bar.set_prefix(url.clone());
        let (fetcher, semaphore) = (Arc::clone(&fetcher), Arc::clone(&semaphore));
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let result = fetcher
                .fetch_sized(&input, &|total| bar.set_length(total), &|n| bar.inc(n))
                .await;
            bar.finish_and_clear();
            (input, result)
        });
    }
    let mut failed = 0;
    // The ephemeral key is written once the first output needs it: a run in which every
    // fetch fails leaves no key file (and an existing one from an earlier run untouched).
    let mut key_out = args.key_out.as_deref().filter(|_| args.sk.is_none());
    while let Some(joined) = tasks.join_next().await {
        let Ok((input, result)) = joined else {
            failed += 1;
            continue;
        };
        match result {
            Ok(fetched) => {
                if let Some(path) = key_out.take() {
                    key.write_secret(path, 0o400)?;
                    tracing::info!(path = %path.display(), "ephemeral key written");
                }
                tracing::info!(
                    url = %input.url,
                    path = %input.path.display(),
                    bytes = fetched.bytes,
                    "fetched"
                );
            }
            Err(e) => {
                failed += 1;
                tracing::error!(url = %input.url, path = %input.path.display(), error = %e, "fetch failed");
            }
        }
    }
    Ok(failed)
}

/// Refuses a `--key-out` path whose directory does not exist, before anything is fetched (the
/// key itself is written after the first successful fetch).
fn check_key_out(path: &Path) -> Result<(), FetchCliError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if dir.is_dir() {
        Ok(())
    } else {
        Err(FetchCliError::Usage(format!(
            "--key-out {}: the directory {} does not exist; create it or choose another path",
            path.display(),
            dir.display()
        )))
    }
}

/// One output path per URI: the `-o` list, or `--output-dir` joined with the object id.
fn output_paths(args: &FetchArgs) -> Result<Vec<PathBuf>, FetchCliError> {
    if let Some(dir) = &args.output_dir {
        return args
            .urls
            .iter()
            .map(|url| {
                let id = url
                    .rsplit(['/', ':'])
                    .next()
                    .filter(|id| !id.is_empty() && *id != "." && *id != "..")
                    .ok_or_else(|| {
                        FetchCliError::Usage(format!(
                            "cannot name an output file after {url}; use -o"
                        ))
                    })?;
                let name = if args.decrypt {
                    id.to_owned()
                } else {
                    format!("{id}.c4gh")
                };
                Ok(dir.join(name))
            })
            .collect();
    }
    if args.outputs.len() != args.urls.len() {
        return Err(FetchCliError::Usage(format!(
            "{} URIs but {} -o outputs: give one -o FILE per URI, or --output-dir DIR",
            args.urls.len(),
            args.outputs.len()
        )));
    }
    Ok(args.outputs.clone())
}
