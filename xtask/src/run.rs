//! Running child processes with readable failures.

use std::fmt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Why a task failed.
#[derive(Debug)]
pub enum Error {
    /// A command could not start or exited unsuccessfully.
    Command { line: String, detail: String },
    /// Anything else, already phrased for the user.
    Message(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Command { line, detail } => write!(f, "`{line}` {detail}"),
            Error::Message(msg) => f.write_str(msg),
        }
    }
}

/// A command line, echoed before it runs.
pub struct Cmd {
    inner: Command,
    line: String,
}

impl Cmd {
    /// A command running `program`.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        let program = program.into();
        let line = program.display().to_string();
        Cmd {
            inner: Command::new(program),
            line,
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        for arg in args {
            let arg = arg.as_ref();
            self.line.push(' ');
            self.line.push_str(&arg.to_string_lossy());
            self.inner.arg(arg);
        }
        self
    }

    /// Appends one argument.
    pub fn arg(self, arg: &str) -> Self {
        self.args([arg])
    }

    /// Appends one path argument.
    pub fn arg_path(self, path: &std::path::Path) -> Self {
        self.args([path.as_os_str()])
    }

    /// Sets an environment variable for the command.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.inner.env(key, value);
        self
    }

    /// Runs to completion and returns its standard output; a non-zero exit is an error carrying
    /// its standard error.
    pub fn output(mut self) -> Result<String, Error> {
        let out = self
            .inner
            .stdin(Stdio::null())
            .output()
            .map_err(|err| Error::Command {
                line: self.line.clone(),
                detail: format!("could not start: {err}"),
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::Command {
                line: self.line,
                detail: format!(
                    "failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            })
        }
    }

    /// Runs to completion with standard input closed; a non-zero exit is an error.
    pub fn run(mut self) -> Result<(), Error> {
        eprintln!("+ {}", self.line);
        let status = self
            .inner
            .stdin(Stdio::null())
            .status()
            .map_err(|err| Error::Command {
                line: self.line.clone(),
                detail: format!("could not start: {err}"),
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::Command {
                line: self.line,
                detail: format!("failed ({status})"),
            })
        }
    }
}
