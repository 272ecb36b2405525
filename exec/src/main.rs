//! `c4gh-exec`: the wrapper the operator puts in front of a TESK executor's command, so that a
//! reason for not running reaches the TES user through the one channel TESK reports: the
//! executor container's log (`GET /tasks/{id}?view=FULL`, `logs[].logs[].stdout`).
//!
//! Two modes:
//!
//! - `c4gh-exec --verdict FILE -- COMMAND [ARGS...]`: the `c4gh-gate` init container of an
//!   injected TESK executor pod writes FILE once the sidecar is done. When its first line is
//!   exactly `ready`, the wrapper replaces itself with COMMAND (`execvp`: same PID, environment,
//!   stdio and exit status as without the wrapper). Anything else (`failed` and the reason, a
//!   missing or unreadable file, a file beyond [`MAX_VERDICT_BYTES`]) prints the reason on
//!   stderr and exits [`REFUSED`]: the command never runs with an input that is missing or was
//!   not verified.
//! - `c4gh-exec --refuse MESSAGE`: prints MESSAGE on stderr and exits [`REFUSED`]. The TESK
//!   webhook runs this (in the sidecar image) in place of every executor of a task the policy
//!   refuses.
//!
//! The wrapper must run in arbitrary task images (no shell, any libc or none), so it uses only
//! the standard library and is linked statically (`cargo xtask images`). It writes only to
//! stderr: Kubernetes' container log, which TESK reports as the executor's stdout, carries both
//! streams, so printing to both would show every line twice.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The first line of a verdict that lets the command run.
const READY: &str = "ready";
/// Exit status when the command is not run.
const REFUSED: u8 = 1;
/// Exit status when the command cannot be started (as a shell reports it).
const NOT_STARTED: u8 = 127;
/// Largest verdict file read; a longer one is not a verdict the gate wrote.
const MAX_VERDICT_BYTES: u64 = 64 * 1024;

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Mode {
    /// Run `command` if the verdict in `verdict` says `ready`.
    Run {
        /// The gate's verdict file.
        verdict: PathBuf,
        /// The command and its arguments.
        command: Vec<OsString>,
    },
    /// Print the message and exit [`REFUSED`].
    Refuse(String),
}

const USAGE: &str =
    "usage: c4gh-exec --verdict FILE -- COMMAND [ARGS...] | c4gh-exec --refuse MESSAGE";

/// Parses the arguments after the program name.
fn parse(args: Vec<OsString>) -> Result<Mode, String> {
    let mut args = args.into_iter();
    match args.next().as_ref().and_then(|a| a.to_str()) {
        Some("--refuse") => {
            let message: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
            if message.is_empty() {
                return Err(format!("--refuse needs a message; {USAGE}"));
            }
            Ok(Mode::Refuse(message.join(" ")))
        }
        Some("--verdict") => {
            let verdict = args
                .next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("--verdict needs a file; {USAGE}"))?;
            if args.next().as_ref().and_then(|a| a.to_str()) != Some("--") {
                return Err(format!("expected -- after the verdict file; {USAGE}"));
            }
            let command: Vec<OsString> = args.collect();
            if command.is_empty() {
                return Err(format!("no command after --; {USAGE}"));
            }
            Ok(Mode::Run { verdict, command })
        }
        _ => Err(USAGE.to_owned()),
    }
}

/// Reads the verdict at `path`: `Ok(())` when the command may run, else the reason it may not.
fn verdict(path: &Path) -> Result<(), String> {
    let not_verified = |what: String| {
        format!(
            "c4gh: {what}, so the task's inputs were not verified and its command did not run; check the pod's c4gh-gate and c4gh-sidecar containers (kubectl c4gh status POD)"
        )
    };
    let file = std::fs::File::open(path).map_err(|e| {
        not_verified(format!(
            "no verdict from the c4gh gate at {} ({e})",
            path.display()
        ))
    })?;
    let mut text = String::new();
    file.take(MAX_VERDICT_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| {
            not_verified(format!(
                "the verdict {} is unreadable ({e})",
                path.display()
            ))
        })?;
    if text.len() as u64 > MAX_VERDICT_BYTES {
        return Err(not_verified(format!(
            "the verdict {} is longer than {MAX_VERDICT_BYTES} bytes",
            path.display()
        )));
    }
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    match first {
        READY => Ok(()),
        "failed" if !rest.trim().is_empty() => Err(rest.trim_end().to_owned()),
        _ => Err(not_verified(format!(
            "the verdict {} is neither `ready` nor `failed` with a reason",
            path.display()
        ))),
    }
}

fn say(message: &str) {
    let mut err = std::io::stderr().lock();
    // Nothing else can be done if stderr is gone.
    let _ = writeln!(err, "{message}");
    let _ = err.flush();
}

fn main() -> ExitCode {
    match parse(std::env::args_os().skip(1).collect()) {
        Err(usage) => {
            say(&format!("c4gh-exec: {usage}"));
            ExitCode::from(NOT_STARTED)
        }
        Ok(Mode::Refuse(message)) => {
            say(&message);
            ExitCode::from(REFUSED)
        }
        Ok(Mode::Run {
            verdict: path,
            command,
        }) => match verdict(&path) {
            Err(reason) => {
                say(&reason);
                ExitCode::from(REFUSED)
            }
            Ok(()) => {
                let Some((program, args)) = command.split_first() else {
                    say(&format!("c4gh-exec: {USAGE}"));
                    return ExitCode::from(NOT_STARTED);
                };
                let error = Command::new(program).args(args).exec();
                say(&format!(
                    "c4gh-exec: cannot run {}: {error}",
                    program.to_string_lossy()
                ));
                ExitCode::from(NOT_STARTED)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_both_modes_and_rejects_the_rest() {
        assert_eq!(
            parse(args(&[
                "--verdict",
                "/c4gh/exec/verdict",
                "--",
                "sh",
                "-c",
                "ls"
            ])),
            Ok(Mode::Run {
                verdict: "/c4gh/exec/verdict".into(),
                command: args(&["sh", "-c", "ls"]),
            })
        );
        assert_eq!(
            parse(args(&["--refuse", "TES task t: no"])),
            Ok(Mode::Refuse("TES task t: no".into()))
        );
        for bad in [
            &[][..],
            &["sh"][..],
            &["--refuse"][..],
            &["--verdict"][..],
            &["--verdict", "/v", "sh"][..],
            &["--verdict", "/v", "--"][..],
        ] {
            assert!(parse(args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_a_ready_verdict_lets_the_command_run() {
        let dir = std::env::temp_dir().join(format!("c4gh-exec-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("verdict");
        let missing = verdict(&file).unwrap_err();
        assert!(
            missing.starts_with("c4gh: no verdict from the c4gh gate at"),
            "{missing}"
        );
        assert!(missing.contains("its command did not run"), "{missing}");
        std::fs::write(&file, "ready\n").unwrap();
        assert_eq!(verdict(&file), Ok(()));
        std::fs::write(
            &file,
            "failed\nc4gh: input 0 (drs://h/x) failed: 404; check the id\n",
        )
        .unwrap();
        assert_eq!(
            verdict(&file),
            Err("c4gh: input 0 (drs://h/x) failed: 404; check the id".into())
        );
        for odd in ["", "readyish\n", "failed\n", "Ready\n"] {
            std::fs::write(&file, odd).unwrap();
            let reason = verdict(&file).unwrap_err();
            assert!(
                reason.contains("neither `ready` nor `failed`"),
                "{odd:?}: {reason}"
            );
        }
        std::fs::write(&file, "x".repeat(MAX_VERDICT_BYTES as usize + 1)).unwrap();
        assert!(verdict(&file).unwrap_err().contains("longer than"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
