//! `c4gh-sidecar`: an ephemeral Crypt4GH key for one TES task pod, the task's inputs fetched from
//! DRS into the volumes the task reads, and nothing usable left behind when the task ends.
//!
//! Subcommands (see `c4gh-sidecar --help` and `docs/sidecar.md`):
//! - `run`: pod mode — harden the process, generate the key, fetch every input, report readiness
//!   in `status.json`, wait, and destroy the key when the task's containers have ended (their
//!   exit notices) or on SIGTERM/SIGINT, whichever comes first;
//! - `gate`: the init container the task containers wait behind;
//! - `probe`: a one-shot check that the key exists and the sidecar has left `Starting` (for
//!   hand-written probes and pods injected by earlier operators; the operator injects none);
//! - `seal`: replace output files by their Crypt4GH encryption for the outputs' recipients
//!   (what `run` does at SIGTERM; an init container of TESK's outputs filer);
//! - `fetch`: the same fetch machinery as a plain CLI outside Kubernetes.
//!
//! ```
//! use c4gh_sidecar::inputs::{self, Mode};
//!
//! let list = inputs::parse(r#"[{"url": "drs://drs.example.org/EGAF1", "path": "/data/a.c4gh"}]"#)
//!     .unwrap();
//! assert_eq!(list[0].mode, Mode::Encrypted);
//! ```

pub mod atomic;
pub mod cleanup;
pub mod cli;
pub mod exits;
pub mod fetch;
pub mod fetch_cli;
pub mod gate;
pub mod harden;
pub mod inputs;
pub mod key;
pub mod output;
pub mod resume;
pub mod roots;
pub mod run;
pub mod seal;
pub mod status;
pub mod telemetry;
