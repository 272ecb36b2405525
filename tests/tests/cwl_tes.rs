//! The whole TESK chain on the real node, inputs and outputs: a TES task whose input is a
//! `drs://` URI and whose output goes to an FTP store, through the real Java `tesk-api` → the
//! real taskmaster (tesk-core a50995a, in its image) → TESK's task PVC (bound by the PV
//! controller to a hostPath PV the test made; the node has no provisioner) and its inputs filer
//! Job (the real filer image; the operator took the `drs://` input away from it) → the executor
//! Job, injected with the sidecar, which fetches the input from the DRS server → the executor
//! writes the SHA-256 of the decrypted input → the outputs filer Job, to which the operator
//! added the `c4gh-seal` step, uploads the output to the FTP store. The namespace's
//! `Crypt4ghPolicy` names the submitter as the outputs' default recipient, so what reaches the
//! store is Crypt4GH that the reference `crypt4gh decrypt` with the submitter's secret key turns
//! into exactly what the executor wrote.
//!
//! Two clients drive it: a TES `POST /tasks` with the input and output (TESK's own shape), and
//! `cwl-tes` 0.3.0 running `tests/cwl/sha256sum.cwl` with `--remote-storage-url` on the store,
//! which submits, polls until `COMPLETE` and collects the CWL output from the store. The stand-ins
//! are those of `tests/tests/tesk_node.rs` (the pod network) and cwl-tes' local placeholder for
//! the `drs://` location (cwltool checks that an input exists on the local disk).

// Assertion helpers outside #[test] functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use c4gh_e2e::cluster::{self, DrsPod};
use c4gh_e2e::ftp::{self, FtpStore};
use c4gh_e2e::node::{self, Node};
use c4gh_e2e::reference::Submitter;
use c4gh_e2e::tesk::{self, TeskApi};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

/// TESK's namespace.
const NS: &str = "tesk";
/// The store's loopback address (port 21, see `c4gh_e2e::ftp`).
const STORE_ADDRESS: &str = "127.0.0.21";
/// The Secret holding the store's `.netrc`, named to the taskmaster as `NETRC_SECRET_NAME`.
const NETRC_SECRET: &str = "tesk-netrc";
/// The DRS object both tasks read.
const OBJECT: &str = "sample-reads";
/// How long one task may take.
const TASK_TIMEOUT: Duration = Duration::from_secs(300);

/// The pods of task `id`'s Jobs with their status, and the PVC, for failure messages.
async fn task_objects(client: &Client, id: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let mut out = Vec::new();
    if let Ok(list) = pods.list(&ListParams::default()).await {
        for p in list.items {
            let name = p.metadata.name.clone().unwrap_or_default();
            if name.starts_with(id) {
                out.push(format!(
                    "pod {name}: {}",
                    serde_json::to_string(&p.status).unwrap_or_default()
                ));
            }
        }
    }
    if let Ok(list) = claims.list(&ListParams::default()).await {
        for c in list.items {
            out.push(format!(
                "pvc {}: {}",
                c.metadata.name.unwrap_or_default(),
                serde_json::to_string(&c.status).unwrap_or_default()
            ));
        }
    }
    out.join("\n")
}

/// What the chain should leave behind for task `id`: the filer Jobs done, with the seal step
/// in the outputs filer (the operator's TESK outputs webhook), and the task PVC bound to one of
/// the test's PVs (then deleted by the taskmaster).
async fn check_tesk_objects(client: &Client, id: &str) -> anyhow::Result<()> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    for (suffix, inits) in [
        ("inputs-filer", vec![]),
        ("outputs-filer", vec!["c4gh-seal"]),
    ] {
        let name = format!("{id}-{suffix}");
        let job = jobs
            .get(&name)
            .await
            .with_context(|| format!("TESK's {suffix} Job {name}"))?;
        ensure!(
            job.status.as_ref().and_then(|s| s.succeeded) == Some(1),
            "{name} succeeded: {:?}",
            job.status
        );
        let spec = job.spec.and_then(|s| s.template.spec).unwrap_or_default();
        let have: Vec<String> = spec
            .init_containers
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.name)
            .collect();
        ensure!(have == inits, "{name}'s init containers: {have:?}");
        let image = spec
            .containers
            .first()
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        ensure!(
            image == node::image("tesk-filer"),
            "{name} runs TESK's filer image: {image}"
        );
    }
    Ok(())
}

/// The store's file behind `url` (`ftp://ADDRESS/PATH`).
fn stored(store: &FtpStore, url: &str) -> anyhow::Result<PathBuf> {
    let path = url
        .strip_prefix(&store.url(""))
        .with_context(|| format!("{url} is not on the store"))?;
    Ok(store.root().join(path.trim_start_matches('/')))
}

/// Checks that `file` in the store is Crypt4GH that the submitter's key decrypts to exactly
/// `want`.
fn sealed_for(alice: &Submitter, file: &Path, want: &str) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    ensure!(
        bytes.starts_with(b"crypt4gh"),
        "the store received plaintext at {}: {:?}",
        file.display(),
        String::from_utf8_lossy(&bytes[..bytes.len().min(120)])
    );
    let plain = alice.decrypt(file)?;
    ensure!(
        plain == want.as_bytes(),
        "{} decrypts to {:?}, not what the executor wrote ({want:?})",
        file.display(),
        String::from_utf8_lossy(&plain)
    );
    Ok(())
}

/// A TES task posted as TESK's users write them: a `drs://` input, an executor writing the
/// input's SHA-256 into a file, that file as an `ftp://` output.
async fn direct_task(
    client: &Client,
    api: &TeskApi,
    drs: &DrsPod,
    store: &FtpStore,
    alice: &Submitter,
) -> anyhow::Result<()> {
    let output = store.url("direct/sha256.txt");
    let task = json!({
        "name": "checksum-to-store",
        "inputs": [{
            "name": "reads",
            "url": drs.uri(OBJECT),
            "path": "/data/in/sample-reads.bam",
            "type": "FILE"
        }],
        "outputs": [{
            "name": "checksum",
            "url": output,
            "path": "/data/out/sha256.txt",
            "type": "FILE"
        }],
        "executors": [{
            "image": node::image("c4gh-task"),
            // TESK's filer (UID 100) opens outputs read-write: see tests/cwl/sha256sum.cwl.
            "command": ["sh", "-c", "umask 000 && sha256sum /data/in/sample-reads.bam > /data/out/sha256.txt"]
        }]
    });
    let (status, body) = api.request("POST", "/tasks", Some(&task))?;
    ensure!(
        status == 200,
        "POST /tasks: HTTP {status}: {body}\ntesk-api:\n{}",
        api.log_tail(30)
    );
    let id = serde_json::from_str::<Value>(&body)?["id"]
        .as_str()
        .context("POST /tasks returned no id")?
        .to_owned();
    eprintln!("TES task {id} created");
    let done = api.wait_final(&id, TASK_TIMEOUT).await?;
    let state = done["state"].as_str().unwrap_or_default();
    if state != "COMPLETE" {
        bail!(
            "task {id} ended {state}: {}\n{}\nstore:\n{}",
            serde_json::to_string_pretty(&done)?,
            task_objects(client, &id).await,
            store.log_tail(10)
        );
    }
    check_tesk_objects(client, &id).await?;
    let want = format!("{}  /data/in/sample-reads.bam\n", drs.objects[OBJECT]);
    sealed_for(alice, &stored(store, &output)?, &want)?;
    eprintln!(
        "direct task, GET /tasks/{id}?view=FULL:\n{}",
        serde_json::to_string_pretty(&done)?
    );
    Ok(())
}

/// Runs `command` to its end, at most `timeout`; kills it (by its PID) past that.
fn run_bounded(mut command: Command, timeout: Duration) -> anyhow::Result<std::process::Output> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting cwl-tes")?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => Ok(out?),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let out = rx.recv().context("cwl-tes' output")??;
            bail!(
                "cwl-tes ran longer than {} s; killed. stderr:\n{}",
                timeout.as_secs(),
                String::from_utf8_lossy(&out.stderr)
            )
        }
    }
}

/// cwl-tes runs `tests/cwl/sha256sum.cwl` on the `drs://` input against tesk-api, with the
/// store as its remote storage; its CWL output names the file in the store, which decrypts to
/// the input's SHA-256 line.
async fn cwl_tes_workflow(
    client: &Client,
    api: &TeskApi,
    drs: &DrsPod,
    store: &FtpStore,
    alice: &Submitter,
    work: &Path,
) -> anyhow::Result<()> {
    let cwl_tes = ftp::cwl_tes_tool("cwl-tes")?;
    let dir = work.join("cwl");
    let home = work.join("cwl-home");
    for d in [&dir, &home] {
        std::fs::create_dir_all(d)?;
    }
    let netrc = home.join(".netrc");
    std::fs::write(&netrc, store.netrc().as_bytes())?;
    std::fs::set_permissions(&netrc, std::fs::Permissions::from_mode(0o600))?;
    let location = drs.uri(OBJECT);
    // cwltool looks for the input on the local disk first, at BASEDIR/LOCATION with `//`
    // collapsed; cwl-tes then passes the location through to TES unchanged.
    let placeholder = dir.join(location.replacen("//", "/", 1));
    std::fs::create_dir_all(placeholder.parent().context("placeholder parent")?)?;
    std::fs::write(
        &placeholder,
        b"placeholder: the data is at the DRS server\n",
    )?;
    let job = dir.join("job.json");
    std::fs::write(
        &job,
        json!({"reads": {"class": "File", "location": location}}).to_string(),
    )?;
    let workflow = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("cwl")
        .join("sha256sum.cwl");
    let mut command = Command::new(&cwl_tes);
    command
        .env("HOME", &home)
        .env("PYTHONWARNINGS", "ignore")
        .current_dir(&dir)
        .arg("--tes")
        .arg(api.url())
        .arg("--remote-storage-url")
        .arg(store.url("cwl"))
        .arg("--basedir")
        .arg(&dir)
        .arg("--outdir")
        .arg(work.join("cwl-out"))
        .arg(&workflow)
        .arg(&job);
    let t = Instant::now();
    let out = run_bounded(command, TASK_TIMEOUT)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "cwl-tes: {:.1} s, {}",
        t.elapsed().as_secs_f64(),
        out.status
    );
    let id = stderr
        .split_whitespace()
        .find(|w| w.starts_with("task-"))
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-'))
        .unwrap_or_default()
        .to_owned();
    if !out.status.success() {
        bail!(
            "cwl-tes failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}\n{}\nstore:\n{}",
            out.status,
            task_objects(client, &id).await,
            store.log_tail(20)
        );
    }
    let output: Value = serde_json::from_str(&stdout)
        .with_context(|| format!("cwl-tes' stdout is its CWL output: {stdout}\n{stderr}"))?;
    eprintln!(
        "cwl-tes CWL output:\n{}",
        serde_json::to_string_pretty(&output)?
    );
    ensure!(!id.is_empty(), "cwl-tes named no TES task id:\n{stderr}");
    let (status, body) = api.request("GET", &format!("/tasks/{id}?view=FULL"), None)?;
    ensure!(status == 200, "GET task {id}: HTTP {status}: {body}");
    let task: Value = serde_json::from_str(&body)?;
    ensure!(task["state"] == "COMPLETE", "task {id}: {}", task["state"]);
    ensure!(
        task["inputs"][0]["url"] == location.as_str(),
        "cwl-tes passed the drs:// URI to TES unchanged: {}",
        task["inputs"]
    );
    eprintln!(
        "cwl-tes task, GET /tasks/{id}?view=FULL:\n{}",
        serde_json::to_string_pretty(&task)?
    );
    check_tesk_objects(client, &id).await?;
    let checksum = &output["checksum"];
    let url = checksum["location"]
        .as_str()
        .context("the CWL output `checksum` has a location")?;
    // On the store (`ftp://…`), or where cwltool moved it from the store (`file://…`).
    let file = match url.strip_prefix("file://") {
        Some(local) => PathBuf::from(local),
        None => stored(store, url)?,
    };
    let size = std::fs::metadata(&file)?.len();
    ensure!(
        checksum["size"] == json!(size),
        "the CWL output's size is the file's ({size}): {checksum}"
    );
    let input_path = task["inputs"][0]["path"].as_str().unwrap_or_default();
    let want = format!("{}  {input_path}\n", drs.objects[OBJECT]);
    sealed_for(alice, &file, &want)?;
    let uploads = files_named(&store.root().join("cwl"), "sha256.txt");
    ensure!(
        !uploads.is_empty(),
        "TESK's filer uploaded no sha256.txt under the store's cwl/"
    );
    for upload in uploads {
        sealed_for(alice, &upload, &want)?;
    }
    Ok(())
}

/// Every file called `name` under `dir`.
fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry.file_name() == name {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tesk_and_cwl_tes_store_crypt4gh_outputs_on_the_real_node() -> anyhow::Result<()> {
    let started = Instant::now();
    let work = tempfile::Builder::new()
        .prefix("c4gh-cwl-tes-")
        .tempdir_in("/var/tmp")?;
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))?;
    let alice = Submitter::keygen(work.path(), "alice")?;
    let cwl_tes = ftp::cwl_tes_tool("cwl-tes")?;
    let node = Node::start().await?;
    eprintln!("node Ready after {:.1} s", started.elapsed().as_secs_f64());
    let snapshot = node.snapshot();
    let client = node.client().await?;
    let t = Instant::now();
    eprintln!("{}", cluster::install_operator(&node, &client).await?);
    let reader = format!("system:serviceaccount:{NS}:default");
    let drs = DrsPod::start_for(&node, &client, &reader, &[(OBJECT, 1_048_576 + 17)]).await?;
    tesk::tesk_namespace(
        &node,
        &client,
        NS,
        &drs,
        &json!({
            "allowedModes": ["plaintext"], "defaultMode": "plaintext", "maxPlaintextBytes": 4_194_304,
            "outputs": {"defaultRecipients": [alice.pub_pem]}
        }),
    )
    .await?;
    tesk::task_volumes(&client, &work.path().join("volumes"), 3).await?;
    let store = FtpStore::start(work.path(), STORE_ADDRESS).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let mut secret = Secret::default();
    secret.metadata.name = Some(NETRC_SECRET.into());
    secret.string_data = Some([(".netrc".to_owned(), store.netrc().to_string())].into());
    secrets.create(&PostParams::default(), &secret).await?;
    let api = TeskApi::start_with(&node, NS, &[("NETRC_SECRET_NAME", NETRC_SECRET)]).await?;
    eprintln!(
        "operator, DRS server, PVs, FTP store, tesk-api up after {:.1} s ({})",
        t.elapsed().as_secs_f64(),
        cwl_tes.display()
    );
    let t = Instant::now();
    let mut failures = Vec::new();
    if let Err(err) = direct_task(&client, &api, &drs, &store, &alice).await {
        failures.push(format!("direct TES task: {err:#}"));
    }
    eprintln!("direct TES task: {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    if let Err(err) = cwl_tes_workflow(&client, &api, &drs, &store, &alice, work.path()).await {
        failures.push(format!("cwl-tes workflow: {err:#}"));
    }
    eprintln!("cwl-tes workflow: {:.1} s", t.elapsed().as_secs_f64());
    if !failures.is_empty() {
        failures.push(node.log_tails(20));
    }
    drop(api);
    drop(store);
    drop(client);
    drop(node);
    let leftovers = snapshot.leftovers();
    if !leftovers.is_empty() {
        failures.push(format!("teardown left:\n{}", leftovers.join("\n")));
    }
    eprintln!("total: {:.1} s", started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}
