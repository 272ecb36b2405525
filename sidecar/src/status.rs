//! The status file `status.json` on the key volume: what the startup probe and the gate read.
//!
//! Format (contract with the operator and the gate):
//! `{"phase": "Starting"|"Fetching"|"Ready"|"Failed", "message": "…", "inputs": [{"url", "path",
//! "mode", "state": "Pending"|"Fetching"|"Done"|"Failed", "bytes": N, "error": "…"?}],
//! "updated": "RFC3339"}`, written atomically (`.status.json.part`, rename) with mode 0444.
//!
//! Writes are coalesced: a change of the phase is written at once (so `Ready` and `Failed`
//! reach the probe and the gate without delay), while per-input changes (state, byte counts)
//! only mark the document dirty once a flusher runs ([`StatusWriter::spawn_flusher`]), which
//! writes the latest document at most every [`FLUSH_INTERVAL`]. Every write holds the lock
//! and writes the current document, so the file never goes back to an older state. The
//! file lives on the memory-backed key volume: the rename gives readers atomicity, the fsync
//! costs next to nothing there and keeps the same guarantee on a disk-backed directory.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::inputs::{Input, Mode};

/// Name of the status file in the key directory.
pub const STATUS_FILE: &str = "status.json";
/// Longest delay of a per-input change once a flusher runs (phase changes are immediate).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// The sidecar's overall phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Hardening the process and generating the key; nothing fetched yet.
    Starting,
    /// The key exists; inputs are being fetched.
    Fetching,
    /// Every input is in place.
    Ready,
    /// At least one input failed; the gate fails the pod.
    Failed,
}

/// The state of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputState {
    /// Not started (waiting for a concurrency slot).
    Pending,
    /// Being fetched.
    Fetching,
    /// In place and verified (for `stream`: the FIFO exists and the header opened).
    Done,
    /// Failed; see `error`.
    Failed,
}

/// One input's entry in the status file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputStatus {
    /// The `drs://` URI.
    pub url: String,
    /// The destination path.
    pub path: PathBuf,
    /// The delivery mode.
    pub mode: Mode,
    /// Where it stands.
    pub state: InputState,
    /// Bytes written so far (for `stream`: bytes streamed so far).
    pub bytes: u64,
    /// The specific error when `state` is `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole status document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Overall phase.
    pub phase: Phase,
    /// A human-readable summary (on `Failed`: the reason the gate reports).
    pub message: String,
    /// One entry per input, in list order.
    pub inputs: Vec<InputStatus>,
    /// When this document was written (RFC 3339, UTC).
    pub updated: String,
}

impl Status {
    /// The initial document: `Starting`, every input `Pending`.
    pub fn starting(inputs: &[Input]) -> Self {
        Status {
            phase: Phase::Starting,
            message: "generating the ephemeral key".into(),
            inputs: inputs
                .iter()
                .map(|i| InputStatus {
                    url: i.url.clone(),
                    path: i.path.clone(),
                    mode: i.mode,
                    state: InputState::Pending,
                    bytes: 0,
                    error: None,
                })
                .collect(),
            updated: now(),
        }
    }

    /// Reads a status file.
    pub fn read(path: &Path) -> Result<Status, StatusError> {
        let bytes = std::fs::read(path).map_err(|source| StatusError::Io {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| StatusError::Json {
            path: path.to_owned(),
            source,
        })
    }

    /// A one-line reason for a failure: the message plus the first failed input's error.
    pub fn failure_reason(&self) -> String {
        let failed: Vec<&InputStatus> = self
            .inputs
            .iter()
            .filter(|i| i.state == InputState::Failed)
            .collect();
        let mut reason = self.message.clone();
        if let Some(first) = failed.first() {
            reason = format!(
                "{reason}: {} -> {}: {}",
                first.url,
                first.path.display(),
                first.error.as_deref().unwrap_or("failed")
            );
            if failed.len() > 1 {
                reason.push_str(&format!(" (and {} more failed inputs)", failed.len() - 1));
            }
        }
        one_line(&reason)
    }
}

/// Collapses whitespace runs (newlines included) to one space and caps the length at 1 KiB, so the
/// reason fits a Kubernetes termination message.
pub fn one_line(text: &str) -> String {
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() > 1024 {
        let mut cut = 1021;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str("...");
    }
    line
}

/// Why the status file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// I/O on the status file failed.
    #[error("status file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The status file is not the expected JSON.
    #[error("status file {path} is not valid status JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// The current time in RFC 3339 (UTC, seconds).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Owns the status document and rewrites the file atomically: at once for phase changes,
/// coalesced for per-input changes while a flusher runs.
#[derive(Debug)]
pub struct StatusWriter {
    path: PathBuf,
    status: Mutex<Status>,
    /// Per-input changes wait for the flusher (set by [`StatusWriter::spawn_flusher`]).
    coalescing: AtomicBool,
    /// The file is older than the document.
    dirty: AtomicBool,
    wake: tokio::sync::Notify,
}

impl StatusWriter {
    /// Creates the writer and writes the initial document.
    pub fn create(key_dir: &Path, initial: Status) -> Result<Self, StatusError> {
        let writer = StatusWriter {
            path: key_dir.join(STATUS_FILE),
            status: Mutex::new(initial),
            coalescing: AtomicBool::new(false),
            dirty: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        };
        writer.update(|_| ())?;
        Ok(writer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `change` and rewrites the file now.
    pub fn update(&self, change: impl FnOnce(&mut Status)) -> Result<(), StatusError> {
        let mut status = self.lock();
        change(&mut status);
        self.write_locked(&mut status)
    }

    fn write_locked(&self, status: &mut Status) -> Result<(), StatusError> {
        self.dirty.store(false, Ordering::Release);
        status.updated = now();
        let json = serde_json::to_vec_pretty(&*status).map_err(|source| StatusError::Json {
            path: self.path.clone(),
            source,
        })?;
        atomic::write(&self.path, &json, 0o444).map_err(|source| StatusError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Updates one input's entry: written by the flusher within [`FLUSH_INTERVAL`] when one
    /// runs, else at once.
    pub fn input(
        &self,
        index: usize,
        change: impl FnOnce(&mut InputStatus),
    ) -> Result<(), StatusError> {
        let mut status = self.lock();
        if let Some(entry) = status.inputs.get_mut(index) {
            change(entry);
        }
        if self.coalescing.load(Ordering::Acquire) {
            self.dirty.store(true, Ordering::Release);
            drop(status);
            self.wake.notify_one();
            Ok(())
        } else {
            self.write_locked(&mut status)
        }
    }

    /// Writes the document if a per-input change is not on disk yet.
    pub fn flush(&self) -> Result<(), StatusError> {
        let mut status = self.lock();
        if self.dirty.load(Ordering::Acquire) {
            self.write_locked(&mut status)
        } else {
            Ok(())
        }
    }

    /// From now on per-input changes are coalesced: a task writes the latest document at most
    /// every `interval`. Abort the task (and await it) before removing the status file.
    pub fn spawn_flusher(
        self: &std::sync::Arc<Self>,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        self.coalescing.store(true, Ordering::Release);
        let writer = std::sync::Arc::clone(self);
        tokio::spawn(async move {
            loop {
                writer.wake.notified().await;
                tokio::time::sleep(interval).await;
                if let Err(e) = writer.flush() {
                    tracing::warn!(error = %e, "cannot write the status file");
                }
            }
        })
    }

    /// A copy of the current document.
    pub fn snapshot(&self) -> Status {
        self.lock().clone()
    }

    /// Path of the status file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Input> {
        crate::inputs::parse(
            r#"[{"url":"drs://h/1","path":"/d/a"},{"url":"drs://h/2","path":"/d/b","mode":"stream"}]"#,
        )
        .unwrap()
    }

    #[test]
    fn writes_contract_shape() {
        let dir = tempfile::tempdir().unwrap();
        let writer = StatusWriter::create(dir.path(), Status::starting(&sample())).unwrap();
        writer
            .input(1, |i| {
                i.state = InputState::Failed;
                i.error = Some("HTTP 404 for drs://h/2".into());
            })
            .unwrap();
        let value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("status.json")).unwrap())
                .unwrap();
        assert_eq!(value["phase"], "Starting");
        assert_eq!(value["inputs"][0]["state"], "Pending");
        assert_eq!(value["inputs"][0]["mode"], "encrypted");
        assert_eq!(value["inputs"][0]["bytes"], 0);
        assert!(value["inputs"][0].get("error").is_none());
        assert_eq!(value["inputs"][1]["state"], "Failed");
        assert_eq!(value["inputs"][1]["mode"], "stream");
        assert_eq!(value["inputs"][1]["error"], "HTTP 404 for drs://h/2");
        let updated = value["updated"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(updated).is_ok(), "{updated}");
        assert!(!dir.path().join(".status.json.part").exists());
        let back = Status::read(&dir.path().join("status.json")).unwrap();
        assert_eq!(back, writer.snapshot());
    }

    #[test]
    fn failure_reason_is_one_line_and_names_the_input() {
        let mut status = Status::starting(&sample());
        status.phase = Phase::Failed;
        status.message = "1 of 2 inputs failed".into();
        status.inputs[1].state = InputState::Failed;
        status.inputs[1].error = Some("checksum\nmismatch".into());
        assert_eq!(
            status.failure_reason(),
            "1 of 2 inputs failed: drs://h/2 -> /d/b: checksum mismatch"
        );
        let long = one_line(&"é".repeat(2000));
        assert!(
            long.len() <= 1024 && long.ends_with("..."),
            "{}",
            long.len()
        );
    }

    #[tokio::test]
    async fn coalesced_input_changes_are_written_and_phase_changes_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(STATUS_FILE);
        let writer = std::sync::Arc::new(
            StatusWriter::create(dir.path(), Status::starting(&sample())).unwrap(),
        );
        let flusher = writer.spawn_flusher(Duration::from_millis(400));
        let read = || Status::read(&file).unwrap();

        for n in 0..100 {
            writer.input(0, |i| i.bytes = n).unwrap();
        }
        writer.input(0, |i| i.state = InputState::Done).unwrap();
        assert_eq!(read().inputs[0].state, InputState::Pending, "coalesced");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while read().inputs[0].state != InputState::Done {
            assert!(std::time::Instant::now() < deadline, "never flushed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(read().inputs[0].bytes, 99);

        writer
            .input(1, |i| {
                i.state = InputState::Failed;
                i.error = Some("boom".into());
            })
            .unwrap();
        writer
            .update(|s| {
                s.phase = Phase::Failed;
                s.message = "1 of 2 inputs failed".into();
            })
            .unwrap();
        let now = read();
        assert_eq!(
            now.phase,
            Phase::Failed,
            "a phase change is written at once"
        );
        assert_eq!(
            now.inputs[1].state,
            InputState::Failed,
            "with the pending input change"
        );
        assert_eq!(now, writer.snapshot());

        flusher.abort();
        let _ = flusher.await;
        std::fs::remove_file(&file).unwrap();
        writer.input(0, |i| i.bytes = 1).unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!file.exists(), "no write after the flusher stopped");
    }
}
