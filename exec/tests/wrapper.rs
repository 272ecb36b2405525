//! The built `c4gh-exec` binary: a `ready` verdict runs the command in the wrapper's place
//! (its output and exit status), any other verdict prints the reason and never starts it, and
//! `--refuse` prints the message and exits 1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

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

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("c4gh-exec-it-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
