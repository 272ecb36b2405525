//! The built `c4gh-exec` binary: a `ready` verdict runs the command in the wrapper's place
//! (its output and exit status), any other verdict prints the reason and never starts it, and
//! `--refuse` prints the message and exits 1. With `--notice` the command runs as a child:
//! its exit status (128 + the signal for a signal death) becomes the wrapper's and the notice's,
//! and signals sent to the wrapper reach it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use c4gh_contract::exits::parse_notice;

fn wrapper() -> Command {
    Command::new(env!("CARGO_BIN_EXE_c4gh-exec"))
}

#[test]
fn ready_runs_the_command_and_anything_else_refuses() {
    let dir = tempdir("run");
    let verdict = dir.join("verdict");
    let marker = dir.join("ran");
    let script = format!("echo hello; touch {}; exit 3", marker.display());
    let run = |verdict: &std::path::Path| {
        wrapper()
            .arg("--verdict")
            .arg(verdict)
            .args(["--", "/bin/sh", "-c", &script])
            .output()
            .unwrap()
    };

    std::fs::write(&verdict, "ready\n").unwrap();
    let out = run(&verdict);
    assert_eq!(out.status.code(), Some(3), "the command's exit status");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert!(out.stderr.is_empty());
    assert!(marker.exists());
    std::fs::remove_file(&marker).unwrap();

    let reason = "c4gh: input 0 (drs://h/x) -> /data/in/x was not fetched: 404; check the id in the drs:// URI";
    std::fs::write(&verdict, format!("failed\n{reason}\n")).unwrap();
    let out = run(&verdict);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), format!("{reason}\n"));
    assert!(out.stdout.is_empty());
    assert!(!marker.exists(), "the command ran after a failed verdict");

    let out = run(&dir.join("absent"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no verdict from the c4gh gate"));
    assert!(!marker.exists(), "the command ran without a verdict");

    std::fs::write(&verdict, "ready\n").unwrap();
    let out = wrapper()
        .arg("--verdict")
        .arg(&verdict)
        .args(["--", "/nonexistent/tool"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot run /nonexistent/tool"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refuse_prints_the_message_and_fails() {
    let out = wrapper()
        .args([
            "--refuse",
            "TES task task-1: input 0 is not allowed; ask the data steward",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "TES task task-1: input 0 is not allowed; ask the data steward\n"
    );
}

/// The status in the notice at `path`, read and parsed as the sidecar does.
fn notice(path: &Path) -> Option<u8> {
    parse_notice(&std::fs::read_to_string(path).ok()?)
}

#[test]
fn the_notice_holds_the_exit_status_the_wrapper_exits_with() {
    let dir = tempdir("notice");
    let file = dir.join("main");
    let run = |script: &str| {
        wrapper()
            .arg("--notice")
            .arg(&file)
            .args(["--", "/bin/sh", "-c", script, "sh", "an arg", ""])
            .output()
            .unwrap()
    };
    let out = run(r#"printf '%s|' "$@"; exit 3"#);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "an arg||",
        "arguments reach the command as they are"
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(notice(&file), Some(3));

    // An earlier notice is removed before the command starts (a restarted container).
    let out = run(&format!("test ! -e {}", file.display()));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(notice(&file), Some(0));

    let out = run("kill -KILL $$");
    assert_eq!(out.status.code(), Some(137), "128 + SIGKILL");
    assert_eq!(notice(&file), Some(137));

    let out = wrapper()
        .arg("--notice")
        .arg(&file)
        .args(["--", "/nonexistent/tool"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot run /nonexistent/tool"));
    assert_eq!(notice(&file), Some(127));

    let verdict = dir.join("verdict");
    std::fs::write(&verdict, "failed\nc4gh: input 0 failed\n").unwrap();
    let out = wrapper()
        .arg("--notice")
        .arg(&file)
        .arg("--verdict")
        .arg(&verdict)
        .args(["--", "/bin/sh", "-c", "echo ran"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "the command ran after a failed verdict"
    );
    assert_eq!(notice(&file), Some(1), "a refused command has ended too");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "temporary files left: {names:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts the wrapper with `--notice` around `script`, waits for the script's first line.
fn started(
    file: &Path,
    script: &str,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = wrapper()
        .arg("--notice")
        .arg(file)
        .args(["--", "/bin/sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    (child, out)
}

fn signal(child: &std::process::Child, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

fn wait(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the wrapper did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn signals_sent_to_the_wrapper_reach_the_command() {
    let dir = tempdir("signals");
    let file = dir.join("main");
    let script = "trap 'echo got USR1' USR1; trap 'echo got HUP' HUP; trap 'echo got TERM; exit 42' TERM; \
                  echo ready; while :; do sleep 0.02; done";
    let (mut child, mut out) = started(&file, script);
    for (name, expect) in [("USR1", "got USR1\n"), ("HUP", "got HUP\n")] {
        signal(&child, name);
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, expect);
        assert!(
            child.try_wait().unwrap().is_none(),
            "the wrapper ended on {name}"
        );
        assert!(!file.exists(), "a notice while the command runs");
    }
    signal(&child, "TERM");
    let status = wait(&mut child);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "got TERM\n");
    assert_eq!(
        status.code(),
        Some(42),
        "the command's own exit after SIGTERM"
    );
    assert_eq!(notice(&file), Some(42));

    // A command without a handler dies of the forwarded signal: 128 + SIGTERM.
    let (mut child, _out) = started(&file, "echo ready; exec sleep 30");
    signal(&child, "TERM");
    assert_eq!(wait(&mut child).code(), Some(143));
    assert_eq!(notice(&file), Some(143));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The command starts as a container runtime would start it: nothing blocked (the wrapper
/// blocks the forwarded signals for itself), SIGPIPE not ignored (the Rust runtime ignores it).
#[test]
fn the_command_starts_with_no_signal_blocked_and_sigpipe_default() {
    let dir = tempdir("mask");
    let out = wrapper()
        .arg("--notice")
        .arg(dir.join("main"))
        .args([
            "--",
            "/bin/grep",
            "-E",
            "^Sig(Blk|Ign)",
            "/proc/self/status",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let mask = |name: &str| {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(mask("SigBlk:"), 0, "{text}");
    assert_eq!(
        mask("SigIgn:") & (1 << (13 - 1)),
        0,
        "SIGPIPE ignored: {text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_wrapper_ends_with_the_command_not_with_its_background_processes() {
    let dir = tempdir("orphans");
    let file = dir.join("main");
    let began = Instant::now();
    let status = wrapper()
        .arg("--notice")
        .arg(&file)
        .args(["--", "/bin/sh", "-c", "sleep 30 & exit 5"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(5));
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(notice(&file), Some(5));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// As PID 1 of a PID namespace (a container's position) the wrapper reaps the orphans
/// reparented to it: a background process whose parent exited leaves no zombie behind.
#[test]
fn as_pid_1_the_wrapper_reaps_orphans() {
    let dir = tempdir("pid1");
    let file = dir.join("main");
    let script = "( /bin/sleep 0.1 & ); /bin/sleep 0.6; \
                  echo \"pid1=$(tr '\\0' ' ' < /proc/1/cmdline)\"; \
                  for f in /proc/[0-9]*/stat; do cut -d' ' -f2,3 \"$f\"; done";
    let out = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--mount-proc",
        ])
        .arg(env!("CARGO_BIN_EXE_c4gh-exec"))
        .arg("--notice")
        .arg(&file)
        .args(["--", "/bin/sh", "-c", script])
        .output()
        .expect("unshare (util-linux) runs the wrapper in a PID namespace");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("pid1=") && text.contains("c4gh-exec --notice"),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.ends_with(" Z")),
        "a zombie was left: {text}"
    );
    assert!(
        !text.contains("(sleep)"),
        "the orphan was not reaped: {text}"
    );
    assert_eq!(notice(&file), Some(0));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("c4gh-exec-it-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
