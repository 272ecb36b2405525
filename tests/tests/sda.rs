//! `c4gh-sidecar fetch` against the real NeIC SDA v2 download service (tag `sda-svc-3.4.3`,
//! built by `cargo xtask setup` from `../shared/peers/sda/`), with PostgreSQL, SDA's reencrypt
//! service and every client inside a network namespace that has only `lo` (`c4gh_e2e::sda`).
//! Results are checked byte for byte against the reference Python `crypt4gh`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use c4gh_e2e::sda::{AUTHORITY, ArchivedFile, OWNER, Sda, wait_for};
use c4gh_e2e::workspace;

const DATASET: &str = "EGAD00000000001";

fn sidecar() -> PathBuf {
    workspace::binary("c4gh-sidecar", "c4gh-sidecar").unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `c4gh-sidecar fetch ARGS --token-file TOKEN --ca-bundle CA --drs-allow-port --no-progress`,
/// inside the namespace.
fn fetch_cmd(sda: &Sda, token: &Path, args: &[&str]) -> Command {
    let mut c = sda.command(sidecar());
    c.arg("fetch")
        .args(args)
        .arg("--token-file")
        .arg(token)
        .arg("--ca-bundle")
        .arg(&sda.ca)
        .args(["--drs-allow-port", "--no-progress"])
        .env("RUST_LOG", "info")
        .current_dir(sda.dir());
    c
}

fn fetch(sda: &Sda, token: &Path, args: &[&str]) -> Output {
    fetch_cmd(sda, token, args).output().unwrap()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "fetch failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "fetch unexpectedly succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn body_of(path: &Path, file: &ArchivedFile) -> Vec<u8> {
    let bytes = fs::read(path).unwrap();
    let header_len = bytes.len() - usize::try_from(file.body_len).unwrap();
    bytes[header_len..].to_vec()
}

#[test]
fn both_modes_both_key_headers_and_sda_errors() {
    let mut sda = Sda::start().unwrap();
    let plain = data(3 * 65536 + 12345, 1);
    let file = sda.archive(DATASET, "samples/a.bam.c4gh", &plain).unwrap();
    let token = sda.token_file(OWNER, true).unwrap();
    let out = sda.dir().join("out");
    fs::create_dir_all(&out).unwrap();
    let p = |name: &str| out.join(name).to_string_lossy().into_owned();

    // Flavour detected from the server (`/service-info`), file named by dataset and path;
    // `encrypted` mode: the header re-encrypted (X-C4GH-Public-Key) for the ephemeral key.
    let r = fetch(
        &sda,
        &token,
        &[
            &file.drs_uri(),
            "-o",
            &p("auto.c4gh"),
            "--key-out",
            &p("auto.sec"),
        ],
    );
    ok(&r);
    assert!(String::from_utf8_lossy(&r.stderr).contains("sda-v2"));
    assert_eq!(
        testkit::reference::decrypt(&out.join("auto.c4gh"), &out.join("auto.sec")).unwrap(),
        plain
    );
    let body = fs::read(&file.body).unwrap();
    assert_eq!(body_of(&out.join("auto.c4gh"), &file), body);

    // `plaintext` mode with the flavour given explicitly.
    ok(&fetch(
        &sda,
        &token,
        &[
            &file.drs_uri(),
            "-o",
            &p("plain.bin"),
            "--decrypt",
            "--flavour",
            "sda-v2",
        ],
    ));
    assert_eq!(fs::read(out.join("plain.bin")).unwrap(), plain);

    // The htsget-style key header (`Htsget-Context-Public-Key`), with the file reached through a
    // compact identifier whose prefix maps onto SDA's DRS route for the dataset.
    let map = format!(r#"{{"sda": "https://{AUTHORITY}/objects/{DATASET}/{{id}}"}}"#);
    let key_header = format!("{AUTHORITY}=key-header:https://{AUTHORITY}/files/{{id}}/header");
    ok(&fetch(
        &sda,
        &token,
        &[
            "drs://sda:samples%2Fa.bam.c4gh",
            "-o",
            &p("hts.c4gh"),
            "--key-out",
            &p("hts.sec"),
            "--prefix-map",
            &map,
            "--server-flavour",
            &key_header,
        ],
    ));
    assert_eq!(
        testkit::reference::decrypt(&out.join("hts.c4gh"), &out.join("hts.sec")).unwrap(),
        plain
    );

    // A wrong flavour names the fix.
    let e = failed(&fetch(
        &sda,
        &token,
        &[
            &file.drs_uri(),
            "-o",
            &p("wrong.bin"),
            "--decrypt",
            "--server-flavour",
            &format!("{AUTHORITY}=crypt4gh-drs"),
        ],
    ));
    assert!(
        e.contains(&format!("--server-flavour {AUTHORITY}=sda-v2")),
        "{e}"
    );
    // A bare file id (SDA's self_uri form) cannot be resolved: the message shows the form.
    let e = failed(&fetch(
        &sda,
        &token,
        &[
            &format!("drs://{AUTHORITY}/{}", file.stable_id),
            "-o",
            &p("bare.bin"),
            "--decrypt",
        ],
    ));
    assert!(e.contains("DATASET_ID/FILE_PATH"), "{e}");

    // 401: a token signed by a key the service does not trust.
    let untrusted = sda.token_file(OWNER, false).unwrap();
    let e = failed(&fetch(
        &sda,
        &untrusted,
        &[&file.drs_uri(), "-o", &p("401.bin"), "--decrypt"],
    ));
    assert!(e.contains("401"), "{e}");
    assert!(
        e.contains("Missing, invalid, or expired bearer token"),
        "{e}"
    );
    // 403: a valid token of a user who owns nothing in the dataset.
    let bob = sda.token_file("bob@example.org", true).unwrap();
    let e = failed(&fetch(
        &sda,
        &bob,
        &[&file.drs_uri(), "-o", &p("403.bin"), "--decrypt"],
    ));
    assert!(e.contains("403") && e.contains("SDA v2 answers 403"), "{e}");
    // An unknown path: SDA answers 403 as well (no existence leak); the message says so.
    let e = failed(&fetch(
        &sda,
        &token,
        &[
            &format!("drs://{AUTHORITY}/{DATASET}/samples/nope.c4gh"),
            "-o",
            &p("unknown.bin"),
            "--decrypt",
        ],
    ));
    assert!(e.contains("403") && e.contains("does not exist"), "{e}");
    for name in ["wrong.bin", "bare.bin", "401.bin", "403.bin", "unknown.bin"] {
        assert!(!out.join(name).exists(), "{name} left behind");
    }
}

/// Size of the file in the resume tests; the loopback is rate-limited so the body takes seconds.
const RESUME_BYTES: usize = 24 << 20;

/// Throttles `lo` inside the namespace (the namespace goes away with the test).
fn throttle(sda: &Sda) {
    sda.run(Command::new("tc").args([
        "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "64mbit", "burst", "256kb", "latency",
        "400ms",
    ]))
    .unwrap();
}

/// Waits until the partial output has at least `bytes`.
fn wait_for_partial(dest: &Path, bytes: u64) {
    let part = dest.with_file_name(format!(
        ".{}.part",
        dest.file_name().unwrap().to_string_lossy()
    ));
    wait_for("the partial body", Duration::from_secs(60), || {
        fs::metadata(&part).is_ok_and(|m| m.len() >= bytes)
    })
    .unwrap();
}

#[test]
fn resumes_after_the_connection_is_cut_mid_body() {
    let mut sda = Sda::start().unwrap();
    let plain = data(RESUME_BYTES, 2);
    let file = sda.archive(DATASET, "big/cut.c4gh", &plain).unwrap();
    let token = sda.token_file(OWNER, true).unwrap();
    throttle(&sda);
    let dest = sda.dir().join("cut.c4gh");
    let sk = sda.dir().join("cut.sec");
    let child = fetch_cmd(
        &sda,
        &token,
        &[
            &file.drs_uri(),
            "-o",
            &dest.to_string_lossy(),
            "--key-out",
            &sk.to_string_lossy(),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_for_partial(&dest, 4 << 20);
    sda.run(Command::new("ss").args(["-K", "dst", "127.0.0.1", "dport", "=", ":8443"]))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    ok(&out);
    assert_eq!(testkit::reference::decrypt(&dest, &sk).unwrap(), plain);
    let statuses = content_statuses(&sda, &file);
    assert_eq!(statuses.first(), Some(&200), "{statuses:?}");
    assert!(
        statuses[1..].contains(&206) && !statuses[1..].contains(&200),
        "the body was not resumed with a range after the cut: {statuses:?}"
    );
}

#[test]
fn resumes_after_the_service_is_killed_and_down_for_30_seconds() {
    let mut sda = Sda::start().unwrap();
    let plain = data(RESUME_BYTES, 3);
    let file = sda.archive(DATASET, "big/restart.c4gh", &plain).unwrap();
    let token = sda.token_file(OWNER, true).unwrap();
    throttle(&sda);
    let dest = sda.dir().join("restart.bin");
    let child = fetch_cmd(
        &sda,
        &token,
        &[&file.drs_uri(), "-o", &dest.to_string_lossy(), "--decrypt"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_for_partial(&dest, 4 << 20);
    sda.kill_download().unwrap();
    thread::sleep(Duration::from_secs(30));
    sda.start_download().unwrap();
    let out = child.wait_with_output().unwrap();
    ok(&out);
    assert_eq!(fs::read(&dest).unwrap(), plain);
    // The killed instance never logged its cut request; the restarted one served a range.
    let statuses = content_statuses(&sda, &file);
    assert!(
        statuses.contains(&206) && !statuses.contains(&200),
        "the body was not resumed with a range after the restart: {statuses:?}"
    );
}

/// Bytes sent on `lo` inside the namespace so far (`/proc/net/dev` is per network namespace):
/// every byte between the sidecar, SDA and its database crosses it once.
fn lo_tx_bytes(sda: &Sda) -> u64 {
    let out = sda.run(Command::new("cat").arg("/proc/net/dev")).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("lo:"))
        .unwrap_or_else(|| panic!("no lo in /proc/net/dev:\n{text}"));
    line.split_whitespace().nth(8).unwrap().parse().unwrap()
}

/// The offset of the sidecar's "partial body from an earlier run verified … resuming" line.
fn resumed_offset(log: &str) -> Option<u64> {
    let line = log
        .lines()
        .find(|l| l.contains("from an earlier run verified"))?;
    let rest = &line[line.find("offset=")? + "offset=".len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn a_killed_fetch_continues_on_rerun_with_only_the_remainder_transferred() {
    let mut sda = Sda::start().unwrap();
    let plain = data(RESUME_BYTES, 4);
    let file = sda.archive(DATASET, "big/rerun.c4gh", &plain).unwrap();
    let token = sda.token_file(OWNER, true).unwrap();
    throttle(&sda);
    let dest = sda.dir().join("rerun.c4gh");
    let sk = sda.dir().join("rerun.sec");
    let (uri, d, k) = (
        file.drs_uri(),
        dest.to_string_lossy().into_owned(),
        sk.to_string_lossy().into_owned(),
    );
    let args = [uri.as_str(), "-o", &d, "--key-out", &k];
    let mut child = fetch_cmd(&sda, &token, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_partial(&dest, 8 << 20);
    child.kill().unwrap();
    let killed = child.wait_with_output().unwrap();
    assert!(!killed.status.success());
    assert!(
        !dest.exists() && !sk.exists(),
        "the killed run left a final file or a key"
    );

    let before = lo_tx_bytes(&sda);
    let out = fetch(&sda, &token, &args);
    let moved = lo_tx_bytes(&sda) - before;
    ok(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    let offset = resumed_offset(&log).unwrap_or_else(|| panic!("the rerun did not resume:\n{log}"));
    let segment = 65_564;
    assert!(offset + segment > 8 << 20, "resumed at {offset}");
    let remainder = file.body_len - offset;
    eprintln!(
        "rerun: kept {offset} of {} body bytes; {moved} bytes crossed lo for a remainder of {remainder}",
        file.body_len
    );
    assert!(
        moved >= remainder && moved < remainder + (2 << 20),
        "{moved} bytes crossed lo for a remainder of {remainder} (whole body {})",
        file.body_len
    );
    assert_eq!(testkit::reference::decrypt(&dest, &sk).unwrap(), plain);
    let statuses = content_statuses(&sda, &file);
    assert_eq!(statuses.last(), Some(&206), "{statuses:?}");
    let part = dest.with_file_name(".rerun.c4gh.part");
    assert!(!part.exists(), "partial left after success");
}

/// Statuses of the body (`/files/{id}/content`) requests in the service's access log, in order.
fn content_statuses(sda: &Sda, file: &ArchivedFile) -> Vec<u64> {
    let path = format!("/files/{}/content", file.stable_id);
    sda.download_log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["path"] == path.as_str())
        .filter_map(|v| v["status"].as_u64())
        .collect()
}

/// Peak resident memory of a running process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[test]
fn a_2_gib_body_is_fetched_with_flat_memory() {
    let started = Instant::now();
    let mut sda = Sda::start().unwrap();
    let size = 2u64 << 30;
    let file = sda.archive_zeros(DATASET, "big/2gib.c4gh", size).unwrap();
    let token = sda.token_file(OWNER, true).unwrap();
    let dest = sda.dir().join("2gib.c4gh");
    let sk = sda.dir().join("2gib.sec");
    let setup = started.elapsed();
    let mut child = fetch_cmd(
        &sda,
        &token,
        &[
            &file.drs_uri(),
            "-o",
            &dest.to_string_lossy(),
            "--key-out",
            &sk.to_string_lossy(),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let fetched = started.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "fetch failed:\n{stderr}");
    let meta = fs::metadata(&dest).unwrap();
    assert_eq!(meta.len(), file.body_len + file.header.len() as u64);
    // The sidecar checked the body's sha-256 against SDA's ARCHIVED checksum and authenticated
    // every segment; compare the bytes with the archived body here too (cmp is fast where this
    // debug build is not).
    let cmp = Command::new("cmp")
        .arg(format!("--ignore-initial={}:0", file.header.len()))
        .arg(&dest)
        .arg(&file.body)
        .output()
        .unwrap();
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stdout)
    );
    eprintln!(
        "2 GiB fetch: peak RSS {} MiB; setup {:.1} s, fetch {:.1} s, test wall time {:.1} s",
        peak / 1024,
        setup.as_secs_f64(),
        (fetched - setup).as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(peak > 0, "could not read the sidecar's memory");
    assert!(
        peak < 200 * 1024,
        "peak RSS {peak} KiB for a 2 GiB body: memory is not flat"
    );
}
