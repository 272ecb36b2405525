//! The `gate` and `probe` subcommands: read the status file the sidecar writes.
//!
//! - `probe` (the sidecar's startupProbe) succeeds once the key file exists and the phase is no
//!   longer `Starting`, so the pod proceeds to the gate even when a fetch fails.
//! - `gate` (an ordinary init container before the task containers) waits until the phase is
//!   `Ready` (exit 0) or `Failed` / the deadline passes (exit 1, one-line reason on stderr, so
//!   the pod fails with a readable message instead of hanging). Either way it leaves a
//!   termination message ([`c4gh_contract::termination`]): the headline (the reason on failure), then a
//!   summary of `status.json`, which `kubectl c4gh status` reads through the API.
//! - `gate --wrapper-dir DIR` (pods whose task containers have an explicit `command`): the
//!   command wrapper `c4gh-exec` is copied into DIR ([`install_wrapper`]) before the wait, so
//!   that the task containers' commands can run behind it (it tells the sidecar when they end);
//!   then the same wait and outcome as without it. If the copy fails, the gate fails the pod.
//! - `gate --exec-dir DIR` (TESK executor pods, whose TES user sees only the executor
//!   container's log): the wrapper is copied as with `--wrapper-dir`, and after the wait the
//!   verdict is written beside it ([`write_verdict`]: `ready`, or `failed` and the reason), and
//!   the gate exits 0 either way. The executor's command runs behind the wrapper, which runs it
//!   only on `ready` and otherwise prints the reason into the log TESK reports. If the copy or
//!   the verdict cannot be written, the gate fails the pod as without DIR.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::cli::{GateArgs, ProbeArgs};
use c4gh_contract::pod::{EXEC_BINARY, VERDICT_FAILED, VERDICT_FILE, VERDICT_READY};

use crate::key::SECRET_KEY_FILE;
use crate::status::{InputState, Phase, STATUS_FILE, Status, StatusError, one_line};
use c4gh_contract::termination::{self, Summary};

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The key exists and the phase is past `Starting`.
    Started(Phase),
    /// Not yet; the reason says what is missing.
    NotYet(String),
}

/// The startup probe: checks the key file and the status phase once.
pub fn probe(key_dir: &Path) -> ProbeOutcome {
    let key = key_dir.join(SECRET_KEY_FILE);
    if !key.exists() {
        return ProbeOutcome::NotYet(format!("no key file {} yet", key.display()));
    }
    match Status::read(&key_dir.join(STATUS_FILE)) {
        Ok(s) if s.phase == Phase::Starting => ProbeOutcome::NotYet("phase is Starting".into()),
        Ok(s) => ProbeOutcome::Started(s.phase),
        Err(e) => ProbeOutcome::NotYet(e.to_string()),
    }
}

/// How the gate ended when it did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub struct GateFailure {
    /// One line saying why, suitable for a termination message.
    pub reason: String,
    /// The last status document read, if any.
    pub status: Option<Status>,
}

/// Gate settings.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// The key directory holding `status.json`.
    pub key_dir: PathBuf,
    /// How long to wait for `Ready`.
    pub timeout: Duration,
    /// Longest time between two reads of the status file (inotify wakes the gate earlier).
    pub poll: Duration,
}

/// Watches `dir` for files renamed into it, written or removed; `None` (the gate then only
/// polls) when inotify is unavailable.
fn watch_dir(dir: &Path) -> Option<Arc<Inotify>> {
    let started = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).and_then(|i| {
        i.add_watch(
            dir,
            AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_DELETE,
        )?;
        Ok(i)
    });
    match started {
        Ok(watch) => Some(Arc::new(watch)),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "no inotify watch; polling only");
            None
        }
    }
}

/// Waits up to `limit` for a change in the watched directory (or just `limit` without a watch),
/// draining the queued events. The wait blocks a thread of the blocking pool.
async fn changed(watch: Option<&Arc<Inotify>>, limit: Duration) {
    let Some(watch) = watch.cloned() else {
        tokio::time::sleep(limit).await;
        return;
    };
    let waited = tokio::task::spawn_blocking(move || {
        let timeout = PollTimeout::try_from(limit).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(watch.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, timeout);
        // Non-blocking: drains what is queued, or fails with EAGAIN after a timeout.
        let _ = watch.read_events();
        ready.is_ok()
    })
    .await;
    if !matches!(waited, Ok(true)) {
        // poll failed: do not spin.
        tokio::time::sleep(limit).await;
    }
}

/// Waits until the sidecar reports `Ready` (Ok) or `Failed`, or the deadline passes (Err).
pub async fn gate(config: &GateConfig) -> Result<Status, GateFailure> {
    let path = config.key_dir.join(STATUS_FILE);
    let start = Instant::now();
    let watch = watch_dir(&config.key_dir);
    let mut last: Result<Status, StatusError>;
    loop {
        last = Status::read(&path);
        match &last {
            Ok(s) if s.phase == Phase::Ready => return Ok(s.clone()),
            Ok(s) if s.phase == Phase::Failed => {
                return Err(GateFailure {
                    reason: format!("c4gh-sidecar failed: {}", s.failure_reason()),
                    status: Some(s.clone()),
                });
            }
            _ => {}
        }
        if start.elapsed() >= config.timeout {
            break;
        }
        changed(
            watch.as_ref(),
            config
                .poll
                .min(config.timeout.saturating_sub(start.elapsed())),
        )
        .await;
    }
    let progress = match &last {
        Ok(s) => {
            let done = s
                .inputs
                .iter()
                .filter(|i| i.state == InputState::Done)
                .count();
            format!(
                "phase {:?}, {done} of {} inputs done: {}",
                s.phase,
                s.inputs.len(),
                s.message
            )
        }
        Err(e) => e.to_string(),
    };
    Err(GateFailure {
        reason: one_line(&format!(
            "timed out after {}s waiting for the c4gh sidecar ({progress}); raise C4GH_GATE_TIMEOUT or check the sidecar's logs",
            config.timeout.as_secs()
        )),
        status: last.ok(),
    })
}

/// Writes the termination message: `headline`, then the summary of `status` when there is one
/// (best effort; the caller also prints the headline).
pub fn write_termination_log(
    path: &Path,
    headline: &str,
    status: Option<&Status>,
) -> std::io::Result<()> {
    let text = match status {
        Some(s) => termination::message(headline, &Summary::of(s)),
        None => format!("{headline}\n"),
    };
    std::fs::write(path, text)
}

fn write_or_warn(path: &Path, headline: &str, status: Option<&Status>) {
    if let Err(e) = write_termination_log(path, headline, status) {
        tracing::warn!(
            path = %path.display(),
            error = %e,
            "cannot write the termination log"
        );
    }
}

/// The text of the verdict file: [`VERDICT_READY`], or [`VERDICT_FAILED`] and the reason,
/// which names the inputs and what to do.
pub fn verdict_text(outcome: &Result<Status, GateFailure>) -> String {
    match outcome {
        Ok(_) => format!("{VERDICT_READY}\n"),
        Err(failure) => format!(
            "{VERDICT_FAILED}\nc4gh: the task's inputs are not in place, so its command did not run: {}\n",
            failure.reason
        ),
    }
}

/// Names the file an I/O error is about.
fn named(what: &str, path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Copies the wrapper `binary` into `dir` (mode 0755) under a temporary name and renames it,
/// so a task container never runs half a wrapper.
///
/// # Errors
///
/// The I/O error, naming the file.
pub fn install_wrapper(dir: &Path, binary: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = dir.join(EXEC_BINARY);
    let part = dir.join(format!(".{EXEC_BINARY}.part"));
    std::fs::copy(binary, &part).map_err(|e| named("copying the wrapper to", &part, e))?;
    std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| named("making executable", &part, e))?;
    std::fs::rename(&part, &wrapper).map_err(|e| named("renaming", &part, e))
}

/// Writes `dir/verdict` (mode 0444) under a temporary name and renames it, so the wrapper
/// never reads half a verdict.
///
/// # Errors
///
/// The I/O error, naming the file.
pub fn write_verdict(dir: &Path, verdict: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let file = dir.join(VERDICT_FILE);
    let part = dir.join(format!(".{VERDICT_FILE}.part"));
    std::fs::write(&part, verdict).map_err(|e| named("writing", &part, e))?;
    std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o444))
        .map_err(|e| named("setting the mode of", &part, e))?;
    std::fs::rename(&part, &file).map_err(|e| named("renaming", &part, e))
}

/// The wrapper binary to copy: `explicit`, else `c4gh-exec` next to the running program.
fn exec_binary(explicit: Option<&Path>) -> std::io::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .map_or_else(|| PathBuf::from(EXEC_BINARY), |d| d.join(EXEC_BINARY)))
}

/// The `probe` subcommand: exit 0 when started, else 1 with the reason on stderr.
pub fn probe_main(args: &ProbeArgs) -> ExitCode {
    match probe(&args.key_dir) {
        ProbeOutcome::Started(_) => ExitCode::SUCCESS,
        ProbeOutcome::NotYet(reason) => {
            eprintln!("c4gh-sidecar probe: not started: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// The `gate` subcommand: exit 0 on `Ready`; else print the reason on stderr and exit 1. The
/// termination log gets the headline and the summary either way.
pub async fn gate_main(args: &GateArgs) -> ExitCode {
    let config = GateConfig {
        key_dir: args.key_dir.clone(),
        timeout: Duration::from_secs(args.timeout),
        poll: Duration::from_millis(args.poll_ms.max(1)),
    };
    // Before the wait, so that the copy overlaps the fetch.
    if let Some(dir) = args.exec_dir.as_ref().or(args.wrapper_dir.as_ref()) {
        let installed = exec_binary(args.exec_binary.as_deref())
            .and_then(|binary| install_wrapper(dir, &binary));
        if let Err(e) = installed {
            let reason = format!(
                "c4gh-gate cannot put the command wrapper into {} ({e}); the task does not run",
                dir.display()
            );
            write_or_warn(&args.termination_log, &reason, None);
            eprintln!("{reason}");
            return ExitCode::FAILURE;
        }
    }
    tracing::info!(key_dir = %config.key_dir.display(), "waiting for the sidecar's inputs");
    let outcome = gate(&config).await;
    if let Some(dir) = &args.exec_dir {
        let written = write_verdict(dir, &verdict_text(&outcome));
        match written {
            Ok(()) => {
                let headline = match &outcome {
                    Ok(status) => format!("c4gh: {} inputs ready", status.inputs.len()),
                    Err(failure) => failure.reason.clone(),
                };
                let status = match &outcome {
                    Ok(status) => Some(status),
                    Err(failure) => failure.status.as_ref(),
                };
                write_or_warn(&args.termination_log, &headline, status);
                if outcome.is_err() {
                    eprintln!("{headline}");
                    tracing::warn!(
                        reason = headline,
                        "inputs not in place; the executor's wrapper reports it and does not run the command"
                    );
                }
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                let reason = format!(
                    "c4gh-gate cannot hand its verdict to the executor ({e}); the task does not run"
                );
                write_or_warn(&args.termination_log, &reason, None);
                eprintln!("{reason}");
                return ExitCode::FAILURE;
            }
        }
    }
    match outcome {
        Ok(status) => {
            tracing::info!(
                inputs = status.inputs.len(),
                "inputs ready; the task may start"
            );
            let headline = format!("c4gh: {} inputs ready", status.inputs.len());
            write_or_warn(&args.termination_log, &headline, Some(&status));
            ExitCode::SUCCESS
        }
        Err(failure) => {
            write_or_warn(
                &args.termination_log,
                &failure.reason,
                failure.status.as_ref(),
            );
            eprintln!("{}", failure.reason);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::StatusWriter;

    fn setup(dir: &Path) -> StatusWriter {
        let inputs = crate::inputs::parse(r#"[{"url":"drs://h/1","path":"/d/a"}]"#).unwrap();
        StatusWriter::create(dir, crate::status::starting(&inputs)).unwrap()
    }

    fn config(dir: &Path, timeout_ms: u64) -> GateConfig {
        GateConfig {
            key_dir: dir.to_owned(),
            timeout: Duration::from_millis(timeout_ms),
            poll: Duration::from_millis(10),
        }
    }

    #[test]
    fn probe_needs_key_and_phase() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(probe(dir.path()), ProbeOutcome::NotYet(r) if r.contains("no key file")));
        let writer = setup(dir.path());
        std::fs::write(dir.path().join(SECRET_KEY_FILE), b"k").unwrap();
        assert_eq!(
            probe(dir.path()),
            ProbeOutcome::NotYet("phase is Starting".into())
        );
        writer.update(|s| s.phase = Phase::Failed).unwrap();
        assert_eq!(probe(dir.path()), ProbeOutcome::Started(Phase::Failed));
    }

    #[tokio::test]
    async fn gate_passes_on_ready_written_later() {
        let dir = tempfile::tempdir().unwrap();
        let writer = setup(dir.path());
        let handle = tokio::spawn({
            let config = config(dir.path(), 5000);
            async move { gate(&config).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.update(|s| s.phase = Phase::Ready).unwrap();
        assert_eq!(handle.await.unwrap().unwrap().phase, Phase::Ready);
    }

    #[tokio::test]
    async fn gate_sees_ready_at_once_through_inotify() {
        let dir = tempfile::tempdir().unwrap();
        let writer = setup(dir.path());
        let config = GateConfig {
            key_dir: dir.path().to_owned(),
            timeout: Duration::from_secs(60),
            poll: Duration::from_secs(60),
        };
        let handle = tokio::spawn(async move { gate(&config).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let written = Instant::now();
        writer.update(|s| s.phase = Phase::Ready).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("the gate waited for its 60 s poll instead of the inotify event")
            .unwrap()
            .unwrap();
        assert_eq!(status.phase, Phase::Ready);
        assert!(
            written.elapsed() < Duration::from_secs(1),
            "{:?}",
            written.elapsed()
        );
    }

    #[tokio::test]
    async fn gate_fails_with_the_input_error() {
        let dir = tempfile::tempdir().unwrap();
        let writer = setup(dir.path());
        writer
            .update(|s| {
                s.phase = Phase::Failed;
                s.message = "1 of 1 inputs failed".into();
                s.inputs[0].state = InputState::Failed;
                s.inputs[0].error = Some("DRS server answered 404".into());
            })
            .unwrap();
        let err = gate(&config(dir.path(), 5000)).await.unwrap_err();
        assert_eq!(
            err.reason,
            "c4gh-sidecar failed: 1 of 1 inputs failed: drs://h/1 -> /d/a: DRS server answered 404"
        );
    }

    #[tokio::test]
    async fn verdict_is_ready_or_failed_with_the_reason_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let writer = setup(dir.path());
        writer
            .update(|s| {
                s.phase = Phase::Failed;
                s.message = "1 of 1 inputs failed".into();
                s.inputs[0].state = InputState::Failed;
                s.inputs[0].error = Some("404; check the id in the drs:// URI".into());
            })
            .unwrap();
        let failed = gate(&config(dir.path(), 5000)).await;
        assert_eq!(
            verdict_text(&failed),
            "failed\nc4gh: the task's inputs are not in place, so its command did not run: c4gh-sidecar failed: 1 of 1 inputs failed: drs://h/1 -> /d/a: 404; check the id in the drs:// URI\n"
        );
        writer.update(|s| s.phase = Phase::Ready).unwrap();
        let ready = gate(&config(dir.path(), 5000)).await;
        assert_eq!(verdict_text(&ready), "ready\n");

        let exec = tempfile::tempdir().unwrap();
        let binary = dir.path().join("fake-exec");
        std::fs::write(&binary, b"#!wrapper").unwrap();
        install_wrapper(exec.path(), &binary).unwrap();
        write_verdict(exec.path(), &verdict_text(&failed)).unwrap();
        write_verdict(exec.path(), &verdict_text(&ready)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let wrapper = exec.path().join(EXEC_BINARY);
        assert_eq!(std::fs::read(&wrapper).unwrap(), b"#!wrapper");
        assert_eq!(
            std::fs::metadata(&wrapper).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(
            std::fs::read_to_string(exec.path().join(VERDICT_FILE)).unwrap(),
            "ready\n"
        );
        let mut names: Vec<_> = std::fs::read_dir(exec.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [EXEC_BINARY, VERDICT_FILE],
            "no temporary files left"
        );
        let err = install_wrapper(exec.path(), &dir.path().join("absent")).unwrap_err();
        assert!(err.to_string().contains("copying the wrapper to"), "{err}");
    }

    #[tokio::test]
    async fn gate_times_out_with_progress_or_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = gate(&config(dir.path(), 30)).await.unwrap_err();
        assert!(
            err.reason.starts_with("timed out after 0s"),
            "{}",
            err.reason
        );
        assert!(err.reason.contains("status.json"), "{}", err.reason);
        let _writer = setup(dir.path());
        let err = gate(&config(dir.path(), 30)).await.unwrap_err();
        assert!(
            err.reason.contains("phase Starting, 0 of 1 inputs done"),
            "{}",
            err.reason
        );
    }
}
