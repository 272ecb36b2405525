//! `status.json` on the key volume: the sidecar's progress report, read by the gate (and by
//! `c4gh-sidecar probe`).
//!
//! Shape: `{"phase": "Starting"|"Fetching"|"Ready"|"Failed", "message": "…", "inputs": [{"url",
//! "path", "mode", "state": "Pending"|"Fetching"|"Done"|"Failed", "bytes": N, "error": "…"?,
//! "checks": ["size", "sha-256", "segments", …]?}],
//! "updated": "RFC3339"}`. The sidecar writes it atomically (`.status.json.part`, rename) with
//! mode 0444, so a reader never sees a partial document.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Mode;

/// Name of the status file in the key directory.
pub const STATUS_FILE: &str = "status.json";

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
    /// Once `Done`: the checks the delivered bytes passed (`size`, `etag`, `sha-256`,
    /// `sha-512`, `sha-1`, `md5`, `segments` = every body segment authenticated with the
    /// header's data key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
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
    /// Reads a status file.
    ///
    /// # Errors
    ///
    /// [`StatusError::Io`] when the file cannot be read, [`StatusError::Json`] when it is not a
    /// status document.
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
