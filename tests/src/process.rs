//! Child processes that cannot outlive their owner.
//!
//! Each [`Supervised`] process runs in its own process group with stdout and stderr in a log file.
//! Dropping it sends `SIGTERM` to the whole group, waits a grace period, then sends `SIGKILL` —
//! also when the owning test panics, since drops run during unwinding.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::Error;

/// How long a process gets between `SIGTERM` and `SIGKILL` when it is dropped.
const GRACE: Duration = Duration::from_secs(5);

/// A running child process in its own process group, logging to a file.
#[derive(Debug)]
pub struct Supervised {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Supervised {
    /// Starts `command` in a new process group, with stdin closed and stdout/stderr appended to
    /// `log`. `name` identifies the process in errors.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Self, Error> {
        let out = File::create(log).map_err(|source| Error::Io {
            context: format!("creating log file {}", log.display()),
            source,
        })?;
        let err = out.try_clone().map_err(|source| Error::Io {
            context: format!("duplicating log file {}", log.display()),
            source,
        })?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Io {
                context: format!("starting {name} ({:?})", command.get_program()),
                source,
            })?;
        Ok(Supervised {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            exited: None,
        })
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of the log file holding stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The exit status if the process has exited, without blocking.
    pub fn try_exit_status(&mut self) -> Result<Option<ExitStatus>, Error> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().map_err(|source| Error::Io {
                context: format!("checking whether {} exited", self.name),
                source,
            })?;
        }
        Ok(self.exited)
    }

    /// Sends `signal` to the process group.
    pub fn signal(&self, signal: Signal) -> Result<(), Error> {
        let pgid = Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        killpg(pgid, signal).map_err(|errno| Error::Io {
            context: format!("sending {signal} to {}", self.name),
            source: errno.into(),
        })
    }

    /// Waits for the process to exit, up to `timeout`; `Ok(None)` when it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the whole process group: `SIGTERM`, then `SIGKILL` after [`GRACE`]. Returns the exit
    /// status of the leader.
    pub fn stop(&mut self) -> Result<ExitStatus, Error> {
        if let Some(status) = self.try_exit_status()? {
            // The leader is gone; make sure nothing else in its group survives it.
            let _ = self.signal(Signal::SIGKILL);
            return Ok(status);
        }
        let _ = self.signal(Signal::SIGTERM);
        if let Some(status) = self.wait_timeout(GRACE)? {
            let _ = self.signal(Signal::SIGKILL);
            return Ok(status);
        }
        let _ = self.signal(Signal::SIGKILL);
        let status = self.child.wait().map_err(|source| Error::Io {
            context: format!("waiting for {} after SIGKILL", self.name),
            source,
        })?;
        self.exited = Some(status);
        Ok(status)
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            eprintln!("stopping {}: {err}", self.name);
        }
    }
}
