//! `c4gh-exec`: the wrapper the operator puts in front of a task container's explicit
//! `command`. It does two things, each asked for on its command line:
//!
//! - `--notice FILE` (every wrapped task container): run the command as the wrapper's child
//!   rather than in its place, and when it ends write the container's exit status into FILE
//!   (the format of `c4gh_contract::exits`: a decimal line, written under a temporary name and
//!   renamed), then exit with that status: the command's exit code, or 128 + the signal number
//!   when a signal ended it (what the kubelet reports either way). The sidecar reads FILE and
//!   destroys the task's key at once instead of at the kubelet's SIGTERM, which comes after its
//!   next relist. While the command runs, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2
//!   sent to the wrapper are forwarded to it; as PID 1 of its container the wrapper also reaps
//!   the orphans reparented to it (like `tini`).
//! - `--verdict FILE` (TESK executors, whose TES user sees only the executor container's log):
//!   the `c4gh-gate` init container writes FILE once the sidecar is done. When its first line
//!   is exactly `ready` the command runs. Anything else (`failed` and the reason, a missing or
//!   unreadable file, a file beyond [`MAX_VERDICT_BYTES`]) prints the reason on stderr and exits
//!   [`REFUSED`] (writing that status as the notice): the command never runs with an input that
//!   is missing or was not verified.
//!
//! Without `--notice` the wrapper replaces itself with COMMAND (`execvp`: same PID,
//! environment, stdio and exit status as without the wrapper). The command and its arguments
//! are taken as they are (the container's `command` and `args` follow `--`), and looked up in
//! `PATH` as the container runtime would.
//!
//! `c4gh-exec --refuse MESSAGE` prints MESSAGE on stderr and exits [`REFUSED`]: the TESK webhook
//! runs this (in the sidecar image) in place of every executor of a task the policy refuses.
//!
//! The wrapper must run in arbitrary task images (no shell, any libc or none), so it uses only
//! the standard library and `nix`'s safe system calls, and is linked statically (`cargo xtask
//! images`). It writes only to stderr: Kubernetes' container log, which TESK reports as the
//! executor's stdout, carries both streams, so printing to both would show every line twice.

use std::ffi::{CString, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use nix::errno::Errno;
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawnp};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

/// The first line of a verdict that lets the command run.
const READY: &str = "ready";
/// Exit status when the command is not run.
const REFUSED: u8 = 1;
/// Exit status when the command cannot be started (as a shell reports it).
const NOT_STARTED: u8 = 127;
/// Largest verdict file read; a longer one is not a verdict the gate wrote.
const MAX_VERDICT_BYTES: u64 = 64 * 1024;
/// The signals forwarded to the command.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Mode {
    /// Run `command`: only if `verdict` says `ready` (when given); as a child writing `notice`
    /// when it ends (when given), else in the wrapper's place.
    Run {
        /// The gate's verdict file.
        verdict: Option<PathBuf>,
        /// The exit notice to write.
        notice: Option<PathBuf>,
        /// The command and its arguments.
        command: Vec<OsString>,
    },
    /// Print the message and exit [`REFUSED`].
    Refuse(String),
}

const USAGE: &str = "usage: c4gh-exec [--notice FILE] [--verdict FILE] -- COMMAND [ARGS...] | c4gh-exec --refuse MESSAGE";

/// Parses the arguments after the program name.
fn parse(args: Vec<OsString>) -> Result<Mode, String> {
    let mut args = args.into_iter().peekable();
    if args.peek().and_then(|a| a.to_str()) == Some("--refuse") {
        let message: Vec<String> = args
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        if message.is_empty() {
            return Err(format!("--refuse needs a message; {USAGE}"));
        }
        return Ok(Mode::Refuse(message.join(" ")));
    }
    let (mut verdict, mut notice) = (None, None);
    loop {
        let Some(arg) = args.next() else {
            return Err(format!("expected -- before the command; {USAGE}"));
        };
        let slot = match arg.to_str() {
            Some("--") => break,
            Some("--verdict") => &mut verdict,
            Some("--notice") => &mut notice,
            _ => return Err(format!("unexpected {}; {USAGE}", arg.to_string_lossy())),
        };
        let name = arg.to_string_lossy().into_owned();
        let value = args
            .next()
            .filter(|v| v.to_str() != Some("--"))
            .map(PathBuf::from)
            .ok_or_else(|| format!("{name} needs a file; {USAGE}"))?;
        if slot.replace(value).is_some() {
            return Err(format!("{name} given twice; {USAGE}"));
        }
    }
    let command: Vec<OsString> = args.collect();
    if command.is_empty() {
        return Err(format!("no command after --; {USAGE}"));
    }
    Ok(Mode::Run {
        verdict,
        notice,
        command,
    })
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

/// The temporary name `notice` is written under: `.NAME.part` beside it, which readers skip.
fn part_path(notice: &Path) -> PathBuf {
    let name = notice
        .file_name()
        .map_or_else(|| "notice".into(), |n| n.to_string_lossy().into_owned());
    notice.with_file_name(format!(".{name}.part"))
}

/// Writes `status` into `notice` atomically (temporary file, mode 0644 whatever the umask, so
/// that a sidecar under another UID reads it, then rename).
fn write_notice(notice: &Path, status: u8) -> std::io::Result<()> {
    let part = part_path(notice);
    std::fs::write(&part, format!("{status}\n"))?;
    std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&part, notice)
}

/// Writes the notice, or says why it could not (the key then lives until the kubelet stops
/// the sidecar, as without the wrapper).
fn report(notice: Option<&Path>, status: u8) -> u8 {
    if let Some(notice) = notice
        && let Err(e) = write_notice(notice, status)
    {
        say(&format!(
            "c4gh-exec: cannot write the exit notice {} ({e}); the task's key is destroyed when the kubelet stops the pod's sidecar",
            notice.display()
        ));
    }
    status
}

/// The exit status a container reports for `status`; `None` for a stop or continue.
fn exit_status(status: WaitStatus) -> Option<u8> {
    match status {
        WaitStatus::Exited(_, code) => Some(u8::try_from(code & 0xff).unwrap_or(u8::MAX)),
        WaitStatus::Signaled(_, signal, _) => {
            Some(u8::try_from(128 + signal as i32).unwrap_or(u8::MAX))
        }
        _ => None,
    }
}

/// Starts `program` with `args` as a child, looked up in `PATH` like `execvp`, with this
/// process's environment and descriptors, an empty signal mask and the default action for
/// SIGPIPE (which the Rust runtime ignores): what `std::process::Command` gives a child except
/// the mask, which it leaves as it is (and the forwarded signals are blocked here).
fn spawn(program: &OsString, args: &[OsString]) -> std::io::Result<Pid> {
    let c_string = |s: &std::ffi::OsStr| {
        CString::new(s.as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let argv = std::iter::once(program)
        .chain(args)
        .map(|a| c_string(a))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = std::env::vars_os()
        .map(|(key, value)| {
            let mut pair = key;
            pair.push("=");
            pair.push(value);
            c_string(&pair)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut attr = PosixSpawnAttr::init()?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
    )?;
    attr.set_sigmask(&SigSet::empty())?;
    let mut default = SigSet::empty();
    default.add(Signal::SIGPIPE);
    attr.set_sigdefault(&default)?;
    let actions = PosixSpawnFileActions::init()?;
    Ok(posix_spawnp(&argv[0], &actions, &attr, &argv, &envp)?)
}

/// Runs `command` as a child, forwarding [`FORWARDED`] to it and reaping every child that
/// ends (orphans too, when this is PID 1), until the command ends; returns its exit status,
/// `None` when it was lost (`SIGCHLD` ignored by whoever started the wrapper).
fn supervise(program: &OsString, args: &[OsString]) -> Result<Option<u8>, std::io::Error> {
    let mut signals = SigSet::empty();
    for signal in FORWARDED {
        signals.add(signal);
    }
    // Blocked before the child or any thread exists, so every forwarded signal waits for
    // `sigwait` below; the child gets an empty mask.
    signals.thread_block().map_err(std::io::Error::from)?;
    let pid = spawn(program, args)?;
    let forwarder = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                match signals.wait() {
                    // The child may be gone already; then there is no one to tell.
                    Ok(signal) => {
                        let _ = kill(pid, signal);
                    }
                    Err(Errno::EINTR) => {}
                    Err(_) => return,
                }
            }
        });
    if let Err(e) = forwarder {
        say(&format!(
            "c4gh-exec: cannot start the signal forwarder ({e}); signals sent to the container do not reach the command"
        ));
    }
    loop {
        match waitpid(None, None) {
            Ok(status) if status.pid() == Some(pid) => {
                if let Some(code) = exit_status(status) {
                    return Ok(Some(code));
                }
            }
            // An orphan reaped, or a stop reported.
            Ok(_) | Err(Errno::EINTR) => {}
            Err(Errno::ECHILD) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs the command behind the verdict and/or with a notice; returns the exit status.
fn run(verdict_file: Option<&Path>, notice: Option<&Path>, command: &[OsString]) -> u8 {
    if let Some(notice) = notice {
        // A restarted container has not ended: its earlier notice no longer holds.
        let _ = std::fs::remove_file(notice);
    }
    if let Some(path) = verdict_file
        && let Err(reason) = verdict(path)
    {
        say(&reason);
        return report(notice, REFUSED);
    }
    let Some((program, args)) = command.split_first() else {
        say(&format!("c4gh-exec: {USAGE}"));
        return report(notice, NOT_STARTED);
    };
    let cannot_run = |error: std::io::Error| {
        say(&format!(
            "c4gh-exec: cannot run {}: {error}",
            program.to_string_lossy()
        ));
    };
    if notice.is_none() {
        cannot_run(Command::new(program).args(args).exec());
        return NOT_STARTED;
    }
    match supervise(program, args) {
        Ok(Some(status)) => report(notice, status),
        Ok(None) => {
            say(&format!(
                "c4gh-exec: the exit status of {} was lost (SIGCHLD is ignored); no exit notice written",
                program.to_string_lossy()
            ));
            REFUSED
        }
        Err(e) => {
            cannot_run(e);
            report(notice, NOT_STARTED)
        }
    }
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
            verdict,
            notice,
            command,
        }) => ExitCode::from(run(verdict.as_deref(), notice.as_deref(), &command)),
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
                verdict: Some("/c4gh/exec/verdict".into()),
                notice: None,
                command: args(&["sh", "-c", "ls"]),
            })
        );
        assert_eq!(
            parse(args(&[
                "--notice",
                "/c4gh/exit/main",
                "--verdict",
                "/v",
                "--",
                "tool",
                "--",
                "--notice"
            ])),
            Ok(Mode::Run {
                verdict: Some("/v".into()),
                notice: Some("/c4gh/exit/main".into()),
                command: args(&["tool", "--", "--notice"]),
            }),
            "everything after the first -- is the command's"
        );
        assert_eq!(
            parse(args(&["--", "--refuse"])),
            Ok(Mode::Run {
                verdict: None,
                notice: None,
                command: args(&["--refuse"]),
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
            &["--verdict", "--", "sh"][..],
            &["--notice", "/a", "--notice", "/b", "--", "sh"][..],
            &["--notice", "/a", "--other", "--", "sh"][..],
        ] {
            assert!(parse(args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn statuses_are_what_the_kubelet_reports() {
        let pid = Pid::from_raw(7);
        assert_eq!(exit_status(WaitStatus::Exited(pid, 0)), Some(0));
        assert_eq!(exit_status(WaitStatus::Exited(pid, 3)), Some(3));
        assert_eq!(
            exit_status(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(
            exit_status(WaitStatus::Signaled(pid, Signal::SIGTERM, true)),
            Some(143)
        );
        assert_eq!(exit_status(WaitStatus::Stopped(pid, Signal::SIGSTOP)), None);
    }

    #[test]
    fn notices_are_renamed_into_place_readable_by_all() {
        let dir = std::env::temp_dir().join(format!("c4gh-exec-notice-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let notice = dir.join("main");
        assert_eq!(part_path(&notice), dir.join(".main.part"));
        write_notice(&notice, 143).unwrap();
        assert_eq!(std::fs::read_to_string(&notice).unwrap(), "143\n");
        let mode = std::fs::metadata(&notice).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert!(!part_path(&notice).exists());
        std::fs::remove_dir_all(&dir).unwrap();
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
