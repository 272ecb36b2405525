//! The status file `status.json` on the key volume: what the gate (and `probe`) reads.
//!
//! The document's shape is the pod contract's ([`c4gh_contract::status`]); this module writes it
//! atomically (`.status.json.part`, rename) with mode 0444.
//!
//! Writes are coalesced: a change of the phase is written at once (so `Ready` and `Failed`
//! reach the gate without delay), while per-input changes (state, byte counts)
//! only mark the document dirty once a flusher runs ([`StatusWriter::spawn_flusher`]), which
//! writes the latest document at most every [`FLUSH_INTERVAL`]. Every write holds the lock
//! and writes the current document, so the file never goes back to an older state. The
//! file lives on the memory-backed key volume: the rename gives readers atomicity, the fsync
//! costs next to nothing there and keeps the same guarantee on a disk-backed directory.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use crate::atomic;
use crate::inputs::Input;

pub use c4gh_contract::status::{
    InputState, InputStatus, Phase, STATUS_FILE, Status, StatusError, one_line,
};

/// Longest delay of a per-input change once a flusher runs (phase changes are immediate).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// The initial document: `Starting`, every input `Pending`.
pub fn starting(inputs: &[Input]) -> Status {
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
                checks: Vec::new(),
            })
            .collect(),
        updated: now(),
    }
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
        let writer = StatusWriter::create(dir.path(), starting(&sample())).unwrap();
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
        let mut status = starting(&sample());
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
        let writer =
            std::sync::Arc::new(StatusWriter::create(dir.path(), starting(&sample())).unwrap());
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
