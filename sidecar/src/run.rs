//! Pod mode (`c4gh-sidecar run`): harden, make the key, fetch, report, wait, destroy.
//!
//! Order of events, each visible in `status.json`:
//! 1. hardening ([`crate::harden`]) and signal handlers, before any key exists;
//! 2. the ephemeral key is generated and `ephemeral.sec`/`ephemeral.pub` written (phase
//!    `Starting`);
//! 3. the input list is parsed and every destination checked against the allowed roots (phase
//!    `Fetching`; a bad list or path fails that input / the whole run with the reason);
//! 4. inputs are fetched with bounded concurrency; `Ready` when all are in place, else `Failed`,
//!    and a summary (objects, bytes, seconds) is logged;
//! 5. wait for the task's end ([`crate::exits`]: every task container runs behind `c4gh-exec`
//!    and its exit notice says it ended for good) or SIGTERM/SIGINT, whichever comes first —
//!    either may also arrive during 2–4: in-flight fetches are dropped (cancellation-safe: every
//!    file is registered with [`Cleanup`] before it is created);
//! 6. `ephemeral.sec` is overwritten and unlinked and the key zeroized (dropped) at once: the
//!    outputs need no input key, so however long their encryption takes, the key does not
//!    outlive the task; after the task's end the sidecar then waits for SIGTERM/SIGINT (the
//!    metrics stay served);
//! 7. the declared outputs ([`crate::seal`]) are replaced by their Crypt4GH encryption (the
//!    task's containers have exited: the kubelet signals a native sidecar after them); a
//!    failure makes the exit code 1 with the reason in the termination log;
//! 8. teardown: remove `ephemeral.pub` and `status.json`, `.part` files, plaintext outputs and
//!    FIFOs, exit 0. [`final_sweep`] repeats the file removal after the runtime has stopped,
//!    catching files whose creation was still in flight in the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::cleanup::Cleanup;
use crate::cli::RunArgs;
use crate::exits::ExitWatch;
use crate::fetch::{Feeder, FetchError, Fetcher};
use crate::harden;
use crate::inputs::{self, Input};
use crate::key::{self, EphemeralKey, SECRET_KEY_FILE};
use crate::roots::Roots;
use crate::status::{FLUSH_INTERVAL, InputState, Phase, Status, StatusError, StatusWriter};
use crate::telemetry::{self, KeyLabels, Metrics};

/// Why `run` could not even start (after these, the process exits non-zero and the kubelet
/// restarts it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Hardening failed; no key was created.
    #[error(transparent)]
    Harden(#[from] harden::HardenError),
    /// The key directory is unusable.
    #[error("key directory {path}: {source}")]
    KeyDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the key failed.
    #[error(transparent)]
    Key(#[from] key::KeyError),
    /// Writing the status file failed.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// The signal handlers could not be installed.
    #[error("cannot install SIGTERM/SIGINT handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// The metrics listener could not be bound.
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What a run did, for the final log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Inputs in place.
    pub done: usize,
    /// Inputs that failed.
    pub failed: usize,
    /// Body bytes written (encrypted and plaintext outputs).
    pub bytes: u64,
    /// Files removed at teardown.
    pub removed: usize,
    /// Whether the key file was shredded.
    pub key_shredded: bool,
    /// Whether some declared output could not be encrypted at SIGTERM (the exit code is then 1
    /// and the termination log says why).
    pub outputs_failed: bool,
    /// Whether the key was destroyed because the task ended, before any signal.
    pub key_destroyed_at_task_end: bool,
}

/// What ended the wait for the task.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGTERM or SIGINT.
    Signal,
    /// Every task container ended for good (their exit notices).
    TaskEnded,
}

/// Runs pod mode until SIGTERM/SIGINT. `cleanup` outlives the call so that [`final_sweep`] can
/// run after the runtime stopped.
pub async fn run(args: RunArgs, cleanup: Arc<Cleanup>) -> Result<Summary, RunError> {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "c4gh-sidecar starting");
    harden::harden()?;
    let mut shutdown = Shutdown::install()?;
    let key_dir = args.key_dir.clone();
    std::fs::create_dir_all(&key_dir).map_err(|source| RunError::KeyDir {
        path: key_dir.clone(),
        source,
    })?;
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = args.metrics_addr {
        let bound = telemetry::serve_metrics(Arc::clone(&metrics), addr)
            .await
            .map_err(|source| RunError::Metrics { addr, source })?;
        tracing::info!(addr = %bound, "serving metrics at /metrics");
    }

    remove_key_files(&key_dir);
    let key = Arc::new(EphemeralKey::generate());
    let key_file = key_dir.join(SECRET_KEY_FILE);
    cleanup.register(&crate::atomic::part_path(&key_file));
    let written = key.write_files(&key_dir);
    cleanup.forget(&crate::atomic::part_path(&key_file));
    written?;
    tracing::info!(key_dir = %key_dir.display(), "ephemeral key written");

    let parsed = inputs::load(args.inputs.as_deref(), args.inputs_file.as_deref());
    let outputs_rejected = args
        .output
        .outputs
        .as_deref()
        .and_then(|json| crate::seal::parse(json).err());
    let list: Vec<Input> = parsed.as_ref().map(Clone::clone).unwrap_or_default();
    let status = Arc::new(StatusWriter::create(
        &key_dir,
        crate::status::starting(&list),
    )?);
    let flusher = status.spawn_flusher(FLUSH_INTERVAL);
    let mut feeders = JoinSet::new();
    let mut summary = Summary::default();

    let work = async {
        if let Some(e) = outputs_rejected {
            tracing::error!(error = %e, "output list rejected");
            status.update(|s| {
                s.phase = Phase::Failed;
                s.message = format!("output list rejected: {e}");
            })?;
            return Ok(());
        }
        match parsed {
            Err(e) => {
                tracing::error!(error = %e, "input list rejected");
                status.update(|s| {
                    s.phase = Phase::Failed;
                    s.message = format!("input list rejected: {e}");
                })?;
            }
            Ok(list) => {
                fetch_all(
                    &args,
                    &list,
                    &key,
                    &status,
                    &metrics,
                    &cleanup,
                    &mut feeders,
                    &mut summary,
                )
                .await?;
            }
        }
        Ok::<(), RunError>(())
    };
    let mut exits = exit_watch(&args);
    let task_end = async {
        match exits.as_mut() {
            Some(watch) => watch.ended().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(task_end);
    let early = tokio::select! {
        result = work => { result?; None }
        signal = shutdown.recv() => {
            tracing::warn!(signal, "signal received during fetch; cancelling");
            Some(Stop::Signal)
        }
        statuses = &mut task_end => {
            tracing::warn!(
                exit_statuses = %statuses_text(&statuses),
                "task containers ended during fetch; cancelling"
            );
            Some(Stop::TaskEnded)
        }
    };
    let stop = match early {
        Some(stop) => stop,
        None => tokio::select! {
            signal = shutdown.recv() => {
                tracing::info!(signal, "signal received; destroying the key");
                Stop::Signal
            }
            statuses = &mut task_end => {
                tracing::info!(
                    exit_statuses = %statuses_text(&statuses),
                    "task containers ended; destroying the key"
                );
                Stop::TaskEnded
            }
        },
    };
    feeders.abort_all();
    while feeders.join_next().await.is_some() {}
    summary.key_shredded = match key::shred(&key_file) {
        Ok(shredded) => shredded,
        Err(e) => {
            tracing::error!(error = %e, "cannot shred the key file");
            false
        }
    };
    drop(key);
    let trigger = match stop {
        Stop::Signal => "signal",
        Stop::TaskEnded => "task_exit",
    };
    metrics
        .key_destroyed
        .get_or_create(&KeyLabels {
            trigger: trigger.to_owned(),
        })
        .inc();
    tracing::info!(
        key_shredded = summary.key_shredded,
        trigger,
        "key destroyed"
    );
    if stop == Stop::TaskEnded {
        summary.key_destroyed_at_task_end = true;
        let signal = shutdown.recv().await;
        tracing::info!(
            signal,
            "signal received; the key was destroyed when the task ended"
        );
    }
    if args.output.outputs.is_some() || args.output.outputs_file.is_some() {
        let output = args.output.clone();
        summary.outputs_failed = match tokio::task::spawn_blocking(move || {
            crate::seal::seal_configured(&output)
        })
        .await
        {
            Ok((ok, _)) => !ok,
            Err(e) => {
                tracing::error!(error = %e, "output encryption did not finish");
                true
            }
        };
    }
    flusher.abort();
    let _ = flusher.await;
    remove_key_files(&key_dir);
    summary.removed = cleanup.sweep();
    tracing::info!(
        removed_files = summary.removed,
        key_shredded = summary.key_shredded,
        "teardown complete"
    );
    Ok(summary)
}

/// The watch on the task containers' exit notices, or `None` (the key then waits for SIGTERM)
/// with the reason logged.
fn exit_watch(args: &RunArgs) -> Option<ExitWatch> {
    let listed = args
        .task_containers
        .as_deref()
        .map(c4gh_contract::exits::TaskContainer::parse_list);
    let watch = match listed {
        None => Err(format!(
            "{} is not set (a pod injected by an earlier operator)",
            c4gh_contract::env::TASK_CONTAINERS
        )),
        Some(Err(e)) => Err(format!(
            "{} is not a task container list: {e}",
            c4gh_contract::env::TASK_CONTAINERS
        )),
        Some(Ok(containers)) => ExitWatch::new(&args.exit_dir, containers),
    };
    match watch {
        Ok(watch) => {
            let names: Vec<&str> = watch.containers().iter().map(|c| c.name.as_str()).collect();
            tracing::info!(
                dir = %args.exit_dir.display(),
                containers = %names.join(","),
                "watching the task containers' exit notices; the key is destroyed when the task ends"
            );
            Some(watch)
        }
        Err(reason) => {
            tracing::info!(reason, "the key is destroyed at SIGTERM");
            None
        }
    }
}

/// `name=status,…` for the log.
fn statuses_text(statuses: &[(String, u8)]) -> String {
    statuses
        .iter()
        .map(|(name, status)| format!("{name}={status}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Shreds a key file left by an earlier run and removes its public key and status file, so that
/// neither the probe nor the gate reads a stale status.
fn remove_key_files(key_dir: &Path) {
    if let Err(e) = key::shred(&key_dir.join(SECRET_KEY_FILE)) {
        tracing::error!(error = %e, "cannot shred the key file");
    }
    for name in [key::PUBLIC_KEY_FILE, crate::status::STATUS_FILE] {
        let path = key_dir.join(name);
        if let Err(e) = crate::atomic::remove_if_exists(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove");
        }
    }
}

/// Removes what [`run`] registered, once more, after the runtime stopped; shreds the key file
/// if it is still there.
pub fn final_sweep(cleanup: &Cleanup, key_dir: &Path) -> usize {
    let _ = key::shred(&key_dir.join(SECRET_KEY_FILE));
    cleanup.sweep()
}

#[allow(clippy::too_many_arguments)]
async fn fetch_all(
    args: &RunArgs,
    list: &[Input],
    key: &Arc<EphemeralKey>,
    status: &Arc<StatusWriter>,
    metrics: &Arc<Metrics>,
    cleanup: &Arc<Cleanup>,
    feeders: &mut JoinSet<()>,
    summary: &mut Summary,
) -> Result<(), RunError> {
    let started = Instant::now();
    let any_host = args.drs.allowed_hosts.iter().all(|h| h.trim().is_empty());
    if any_host && !args.allow_any_host {
        let reason = "C4GH_ALLOWED_HOSTS is empty, so no DRS host may be contacted; set it to the \
                      DRS hosts the inputs come from (host[:port], comma-separated), or set \
                      C4GH_ALLOW_ANY_HOST=true (--allow-any-host) for development";
        tracing::error!(reason, "cannot fetch");
        status.update(|s| {
            s.phase = Phase::Failed;
            s.message = format!("sidecar configuration rejected: {reason}");
        })?;
        return Ok(());
    }
    let roots = if args.input_roots.is_empty() {
        Roots::from_own_mounts(&[args.key_dir.as_path()])
    } else {
        Roots::explicit(args.input_roots.clone())
    };
    let fetcher = match roots {
        Ok(roots) => {
            tracing::info!(roots = ?roots.as_slice(), inputs = list.len(), "fetching inputs");
            Fetcher::new(
                &args.drs,
                Arc::clone(key),
                Arc::clone(cleanup),
                Arc::clone(metrics),
            )
            .await
            .map(|f| (f.remove_plaintext_on_shutdown(), roots))
        }
        Err(e) => Err(FetchError::Config {
            reason: format!("cannot determine the input roots: {e}"),
        }),
    };
    let (fetcher, roots) = match fetcher {
        Ok(pair) => pair,
        Err(e) => {
            tracing::error!(error = %e, "cannot fetch");
            status.update(|s| {
                s.phase = Phase::Failed;
                s.message = format!("sidecar configuration rejected: {e}");
            })?;
            return Ok(());
        }
    };
    if any_host {
        tracing::warn!(
            "C4GH_ALLOWED_HOSTS is empty and C4GH_ALLOW_ANY_HOST is set: any DRS host may be contacted"
        );
    }
    status.update(|s| {
        s.phase = Phase::Fetching;
        s.message = format!("fetching {} inputs", list.len());
    })?;
    let fetcher = Arc::new(fetcher);
    let semaphore = Arc::new(Semaphore::new(usize::from(args.drs.concurrency)));
    let mut tasks = JoinSet::new();
    for (index, input) in list.iter().cloned().enumerate() {
        if let Err(e) = roots.check(&input.path) {
            fail_input(status, index, &input, &e.to_string())?;
            continue;
        }
        let (fetcher, status, semaphore) = (
            Arc::clone(&fetcher),
            Arc::clone(status),
            Arc::clone(&semaphore),
        );
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let _ = status.input(index, |i| i.state = InputState::Fetching);
            let progress = |n: u64| {
                let _ = status.input(index, |i| i.bytes += n);
            };
            let progress = Throttled::new(&progress);
            let result = fetcher.fetch(&input, &|n| progress.add(n)).await;
            progress.flush();
            (index, input, result)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let Ok((index, input, result)) = joined else {
            continue;
        };
        match result {
            Ok(fetched) => {
                summary.bytes += fetched.bytes;
                status.input(index, |i| {
                    i.state = InputState::Done;
                    i.bytes = fetched.bytes;
                    i.checks.clone_from(&fetched.checks);
                })?;
                if let Some(feeder) = fetched.feeder {
                    spawn_feeder(feeders, feeder, Arc::clone(status), index);
                }
            }
            Err(e) => fail_input(status, index, &input, &e.to_string())?,
        }
    }
    let snapshot = status.snapshot();
    summary.done = count(&snapshot, InputState::Done);
    summary.failed = count(&snapshot, InputState::Failed);
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        objects = summary.done,
        failed = summary.failed,
        bytes = summary.bytes,
        seconds,
        "fetch summary"
    );
    status.update(|s| {
        if summary.failed == 0 {
            s.phase = Phase::Ready;
            s.message = format!("{} inputs ready", summary.done);
        } else {
            s.phase = Phase::Failed;
            s.message = format!("{} of {} inputs failed", summary.failed, s.inputs.len());
        }
    })?;
    if summary.failed == 0 {
        metrics.ready.set(1);
    }
    Ok(())
}

fn count(status: &Status, state: InputState) -> usize {
    status.inputs.iter().filter(|i| i.state == state).count()
}

fn fail_input(
    status: &StatusWriter,
    index: usize,
    input: &Input,
    error: &str,
) -> Result<(), StatusError> {
    tracing::error!(url = %input.url, path = %input.path.display(), error, "input failed");
    status.input(index, |i| {
        i.state = InputState::Failed;
        i.error = Some(error.to_owned());
    })
}

fn spawn_feeder(
    feeders: &mut JoinSet<()>,
    feeder: Feeder,
    status: Arc<StatusWriter>,
    index: usize,
) {
    feeders.spawn(async move {
        feeder
            .serve(&|n| {
                let _ = status.input(index, |i| i.bytes += n);
            })
            .await;
    });
}

/// Batches progress updates so the status file is rewritten at most every 4 MiB.
struct Throttled<'a> {
    sink: &'a (dyn Fn(u64) + Sync),
    pending: std::sync::atomic::AtomicU64,
}

impl<'a> Throttled<'a> {
    const STEP: u64 = 4 << 20;

    fn new(sink: &'a (dyn Fn(u64) + Sync)) -> Self {
        Throttled {
            sink,
            pending: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn add(&self, n: u64) {
        use std::sync::atomic::Ordering;
        let total = self.pending.fetch_add(n, Ordering::Relaxed) + n;
        if total >= Self::STEP {
            let taken = self.pending.swap(0, Ordering::Relaxed);
            (self.sink)(taken);
        }
    }

    fn flush(&self) {
        let taken = self.pending.swap(0, std::sync::atomic::Ordering::Relaxed);
        if taken > 0 {
            (self.sink)(taken);
        }
    }
}

/// SIGTERM and SIGINT.
struct Shutdown {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn install() -> Result<Self, RunError> {
        Ok(Shutdown {
            term: signal(SignalKind::terminate()).map_err(RunError::Signals)?,
            int: signal(SignalKind::interrupt()).map_err(RunError::Signals)?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
