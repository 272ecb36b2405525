//! The ephemeral key never leaves the key directory: not in logs (JSON and text, at trace level),
//! not in any other file, not in `Debug`; the bearer token is not logged either; and the running
//! sidecar is not dumpable.
//!
//! Dumpability is checked from outside, the way the kernel exposes it: for a non-dumpable process
//! `/proc/<pid>/environ` (like `mem`, `maps`, …) is owned by root instead of the process's user
//! (`task_dump_owner` in fs/proc/base.c). The sidecar runs as uid 65532 (the tests run as root)
//! so the two owners differ, and a control process under the same uid shows the file owned by
//! 65532 — proving the check can fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use c4gh::SecretKey;
use c4gh_sidecar::status::Phase;
use common::{RunEnv, Sidecar, files_under, pattern};
use nix::sys::signal::Signal;

const TASK_UID: u32 = 65532;

fn needles(key_file: &Path) -> Vec<(String, Vec<u8>)> {
    let pem = std::fs::read_to_string(key_file).unwrap();
    let secret = SecretKey::from_pem(&pem, None).unwrap();
    let raw = secret.secret_bytes().to_vec();
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = vec![
        ("raw".to_owned(), raw.clone()),
        ("hex".to_owned(), hex.clone().into_bytes()),
        ("HEX".to_owned(), hex.to_uppercase().into_bytes()),
        ("base64".to_owned(), b64.encode(&raw).into_bytes()),
        (
            "base64url".to_owned(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(&raw)
                .into_bytes(),
        ),
    ];
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        out.push(("PEM body".to_owned(), line.as_bytes().to_vec()));
    }
    // Debug-style byte lists, e.g. `[12, 200, …]`.
    out.push((
        "debug bytes".to_owned(),
        format!("{:?}", &raw[..8])
            .trim_end_matches(']')
            .as_bytes()
            .to_vec(),
    ));
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn assert_absent(what: &str, haystack: &[u8], needles: &[(String, Vec<u8>)]) {
    for (kind, needle) in needles {
        assert!(
            !contains(haystack, needle),
            "the key ({kind}) appears in {what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_stays_in_the_key_dir_and_process_is_not_dumpable() {
    let server = common::start_drs_server().await;
    let plaintext = pattern(90_000, 42);
    server.add("secret-test", &plaintext, &["*"]).unwrap();
    let work = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(work.path(), Some(TASK_UID), Some(TASK_UID)).unwrap();
    // The task uid cannot reach target/ when the checkout lives under a private directory (a
    // `mktemp -d` clone is 0700): run a copy from the work directory it owns.
    let program = work.path().join("c4gh-sidecar");
    std::fs::copy(common::sidecar_bin(), &program).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = work.path().join("data");
    for format in ["json", "text"] {
        let key_dir = work.path().join(format!("key-{format}"));
        let root = data.join(format);
        for dir in [&key_dir, &root] {
            std::fs::create_dir_all(dir).unwrap();
            std::os::unix::fs::chown(dir, Some(TASK_UID), Some(TASK_UID)).unwrap();
        }
        let env = RunEnv {
            inputs: format!(
                r#"[{{"url":"{}","path":"{}/a.c4gh"}},{{"url":"{}","path":"{}/b.bin","mode":"plaintext"}}]"#,
                server.drs_uri("secret-test"),
                root.display(),
                server.drs_uri("secret-test"),
                root.display()
            ),
            key_dir: key_dir.clone(),
            root: root.clone(),
            ca_pem: server.ca_pem(),
            token: Some(server.token().expose().to_owned()),
            allowed_host: server.server().local_addr().to_string(),
            extra: vec![
                ("RUST_LOG".into(), "trace".into()),
                ("C4GH_LOG_FORMAT".into(), format.into()),
            ],
        };
        let work_path = work.path().to_owned();
        let mut sidecar = Sidecar::start_program(&program, &env, work.path(), |c| {
            c.uid(TASK_UID).gid(TASK_UID).current_dir(&work_path);
        });
        let status = sidecar.wait_settled();
        assert_eq!(
            status.phase,
            Phase::Ready,
            "{status:?}\n{}",
            sidecar.log_text()
        );

        // Not dumpable: /proc/<pid>/environ belongs to root, not to the process's uid.
        let proc_dir = format!("/proc/{}", sidecar.pid());
        let owner = std::fs::metadata(format!("{proc_dir}/environ"))
            .unwrap()
            .uid();
        let process_uid = std::fs::metadata(&proc_dir).unwrap().uid();
        assert_eq!(
            owner, 0,
            "sidecar is dumpable: {proc_dir}/environ owned by {owner}"
        );
        let mut control = Command::new("sleep")
            .arg("30")
            .uid(TASK_UID)
            .gid(TASK_UID)
            .spawn()
            .unwrap();
        let control_owner = std::fs::metadata(format!("/proc/{}/environ", control.id()))
            .unwrap()
            .uid();
        control.kill().unwrap();
        control.wait().unwrap();
        assert_eq!(
            control_owner, TASK_UID,
            "control process: the check cannot tell"
        );
        let _ = process_uid;

        let key_file = key_dir.join("ephemeral.sec");
        let needles = needles(&key_file);
        let token = server.token().expose().as_bytes().to_vec();
        // Logs (trace level) hold neither the key nor the token.
        let log = sidecar.log_text();
        assert!(log.len() > 1000, "suspiciously short log: {log}");
        assert_absent(&format!("the {format} log"), log.as_bytes(), &needles);
        assert!(
            !contains(log.as_bytes(), &token),
            "the bearer token appears in the {format} log"
        );
        // No file outside the key directory holds the key.
        for file in files_under(work.path()) {
            if file.starts_with(&key_dir) {
                continue;
            }
            let bytes = std::fs::read(&file).unwrap();
            assert_absent(&file.display().to_string(), &bytes, &needles);
        }
        // The status file in the key directory does not hold it either.
        let status_bytes = std::fs::read(key_dir.join("status.json")).unwrap();
        assert_absent("status.json", &status_bytes, &needles);

        assert!(sidecar.signal_and_wait(Signal::SIGTERM).success());
        assert!(!key_file.exists());
        for file in files_under(work.path()) {
            let bytes = std::fs::read(&file).unwrap();
            assert_absent(
                &format!("{} after SIGTERM", file.display()),
                &bytes,
                &needles,
            );
        }
    }
}

#[test]
fn debug_output_elides_the_key() {
    let key = c4gh_sidecar::key::EphemeralKey::generate();
    let raw = key.secret().secret_bytes().to_vec();
    let debug = format!("{key:?} {:?}", key.secret());
    assert!(debug.contains("elided"), "{debug}");
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!debug.contains(&hex));
    assert!(!debug.contains(&format!("{:?}", &raw[..4]).trim_end_matches(']').to_owned()));
}
