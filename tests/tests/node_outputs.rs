//! Outputs leave encrypted, on the real node (kubelet, containerd, runc, the project's images):
//! a task writes outputs onto a volume, and what remains there once the pod has ended is what an
//! uploader would find. The volumes are `hostPath` directories the test made (the kubelet
//! removes an `emptyDir` with its pod), so the test reads them from the host afterwards.
//!
//! Scenarios, one after another on one node (one kubelet per machine):
//! - a plain pod's declared file and directory are Crypt4GH on the volume, and the reference
//!   `crypt4gh` decrypts them with the submitter's secret key to the bytes the task wrote;
//! - an output without a recipient is denied at admission with the webhook's message;
//! - a full disk (a 4 MiB tmpfs the test mounts, unmounted at the end) fails the encryption:
//!   the sidecar exits 1 with the reason in its termination message, no plaintext and no
//!   partial file remain;
//! - TESK's flow with objects the test makes (the real TESK chain is being brought up
//!   separately): the task ConfigMap gets the output list, the outputs filer Job gets the seal
//!   step, and what the filer copies to the store is Crypt4GH for the policy's default
//!   recipient;
//! - the sidecar SIGKILLed while it encrypts a 1 GiB output: the output's name is absent (an
//!   uploader finds nothing), the plaintext only under its hidden `.NAME.c4gh-plain` name.

// Assertion helpers outside #[test] functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use c4gh_contract::pod::SIDECAR_CONTAINER;
use c4gh_e2e::cluster;
use c4gh_e2e::node::{self, Node};
use c4gh_e2e::operator::ensure_namespace;
use c4gh_e2e::reference::Submitter;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const NS: &str = "outputs";
/// The task's UID (the sidecar runs as the pod's runAsUser).
const TASK_UID: u32 = 1000;

/// A directory the task's UID owns, for a hostPath volume.
fn task_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(path)?;
    std::os::unix::fs::chown(path, Some(TASK_UID), Some(TASK_UID))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Every name under `dir`, relative, sorted (hidden ones included).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// An opted-in pod running `script` (sh) as UID 1000 with `host` mounted at `/data/out`.
fn output_pod(name: &str, host: &Path, outputs: &Value, script: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": {"c4gh.dev/inject": "enabled"},
            "annotations": {"c4gh.dev/outputs": outputs.to_string()},
        },
        "spec": {
            "hostNetwork": true,
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "securityContext": {"runAsUser": TASK_UID, "runAsGroup": TASK_UID},
            "volumes": [{"name": "out", "hostPath": {"path": host, "type": "Directory"}}],
            "containers": [{
                "name": "task",
                "image": node::image("c4gh-task"),
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "out", "mountPath": "/data/out"}],
            }]
        }
    }))?)
}

/// The sidecar's terminated state once the pod has ended.
async fn ended(
    node: &Node,
    client: &Client,
    name: &str,
) -> anyhow::Result<(String, ContainerStateTerminated)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let pod = pods.get(name).await?;
        let status = pod.status.clone().unwrap_or_default();
        let phase = status.phase.clone().unwrap_or_default();
        let sidecar = status
            .init_container_statuses
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.name == SIDECAR_CONTAINER)
            .and_then(|c| c.state)
            .and_then(|s| s.terminated);
        if let (true, Some(t)) = (phase == "Succeeded" || phase == "Failed", sidecar) {
            return Ok((phase, t));
        }
        if Instant::now() >= deadline {
            bail!(
                "pod {name} did not end with a terminated sidecar: {}\n{}",
                serde_json::to_string(&pod.status).unwrap_or_default(),
                node.log_tails(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Python writing `n` deterministic bytes to `path` (the same as [`pattern`]).
fn write_pattern(path: &str, n: usize) -> String {
    format!(
        "python3 -c 'import sys; open(sys.argv[1], \"wb\").write(bytes((i * 7 + 3) % 256 for i in range({n})))' {path}"
    )
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + 3) % 256) as u8).collect()
}

async fn outputs_are_crypt4gh_for_the_submitter(
    node: &Node,
    client: &Client,
    work: &Path,
    alice: &Submitter,
) -> anyhow::Result<()> {
    let host = work.join("ok");
    task_dir(&host)?;
    let outputs = json!([
        {"path": "/data/out/result.bin", "recipients": [alice.pub_pem]},
        {"path": "/data/out/calls", "recipients": [alice.pub_pem]},
    ]);
    // A later step of the task reads an earlier step's output: plaintext until the task ends.
    let script = format!(
        "{} && mkdir -p /data/out/calls/chr1 && echo variant > /data/out/calls/chr1/a.vcf && \
         : > /data/out/calls/empty && echo unlisted > /data/out/log.txt && \
         head -c 4 /data/out/result.bin | od -An -tx1",
        write_pattern("/data/out/result.bin", (3 << 20) + 5)
    );
    let pod = output_pod("outputs-ok", &host, &outputs, &script)?;
    let created = cluster::create_pod(client, NS, &pod).await?;
    let grace = created
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds);
    ensure!(
        grace == Some(1800),
        "terminationGracePeriodSeconds {grace:?}"
    );
    let (phase, sidecar) = ended(node, client, "outputs-ok").await?;
    let message = sidecar.message.clone().unwrap_or_default();
    eprintln!("sidecar: exit {} message {message:?}", sidecar.exit_code);
    ensure!(phase == "Succeeded", "pod ended {phase}");
    ensure!(
        sidecar.exit_code == 0 && message.starts_with("outputs encrypted: 3 files"),
        "sidecar exit {} message {message:?}",
        sidecar.exit_code
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let log = pods
        .logs(
            "outputs-ok",
            &kube::api::LogParams {
                container: Some("task".into()),
                ..Default::default()
            },
        )
        .await?;
    ensure!(
        log.contains("03 0a 11 18"),
        "the task read its plaintext: {log}"
    );
    ensure!(
        tree(&host)
            == [
                "calls",
                "calls/chr1",
                "calls/chr1/a.vcf",
                "calls/empty",
                "log.txt",
                "result.bin"
            ],
        "what remains: {:?}",
        tree(&host)
    );
    for (name, want) in [
        ("result.bin", pattern((3 << 20) + 5)),
        ("calls/chr1/a.vcf", b"variant\n".to_vec()),
        ("calls/empty", Vec::new()),
    ] {
        let file = host.join(name);
        let bytes = std::fs::read(&file)?;
        ensure!(bytes.starts_with(b"crypt4gh"), "{name} is not Crypt4GH");
        let plain = testkit::reference::decrypt(&file, &alice.sk)?;
        ensure!(
            plain == want,
            "{name} decrypts to {} bytes, not the task's {}",
            plain.len(),
            want.len()
        );
        let meta = std::fs::metadata(&file)?;
        ensure!(
            std::os::unix::fs::MetadataExt::uid(&meta) == TASK_UID,
            "{name} is owned by the task's user"
        );
    }
    ensure!(
        std::fs::read(host.join("log.txt"))? == b"unlisted\n",
        "an undeclared file is left as it is"
    );
    Ok(())
}

async fn missing_recipient_is_denied(client: &Client, work: &Path) -> anyhow::Result<()> {
    let pod = output_pod(
        "outputs-denied",
        work,
        &json!([{"path": "/data/out/result.bin"}]),
        "true",
    )?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let err = pods
        .create(&PostParams::default(), &pod)
        .await
        .err()
        .context("a pod whose output has no recipient was admitted")?;
    let message = err.to_string();
    eprintln!("denied: {message}");
    ensure!(
        message.contains(
            "output 0 (/data/out/result.bin) names no recipient and Crypt4ghPolicy \"default\" has no spec.outputs.defaultRecipients"
        ),
        "{message}"
    );
    Ok(())
}

/// A tmpfs mounted by the test, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(path)?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755,uid={TASK_UID},gid={TASK_UID}"),
            ])
            .arg("c4gh-outputs-test")
            .arg(path)
            .output()?;
        ensure!(out.status.success(), "mount tmpfs: {out:?}");
        Ok(SmallDisk(path.to_owned()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

async fn full_disk_fails_and_leaves_no_plaintext(
    node: &Node,
    client: &Client,
    work: &Path,
    alice: &Submitter,
) -> anyhow::Result<()> {
    let disk = SmallDisk::mount(&work.join("full"), "4m")?;
    let outputs = json!([{"path": "/data/out/result.bin", "recipients": [alice.pub_pem]}]);
    let script = write_pattern("/data/out/result.bin", 3 << 20);
    let pod = output_pod("outputs-full", &disk.0, &outputs, &script)?;
    cluster::create_pod(client, NS, &pod).await?;
    let (phase, sidecar) = ended(node, client, "outputs-full").await?;
    let message = sidecar.message.clone().unwrap_or_default();
    eprintln!(
        "full disk: pod {phase}, sidecar exit {} message {message:?}",
        sidecar.exit_code
    );
    ensure!(
        sidecar.exit_code == 1
            && message.starts_with("output encryption failed for 1 files (plaintext removed, nothing to upload): /data/out/result.bin:")
            && message.contains("No space left on device"),
        "sidecar exit {} message {message:?}",
        sidecar.exit_code
    );
    ensure!(
        tree(&disk.0).is_empty(),
        "left on the full disk: {:?}",
        tree(&disk.0)
    );
    Ok(())
}

async fn killed_encryption_leaves_no_output(
    node: &Node,
    client: &Client,
    work: &Path,
    alice: &Submitter,
) -> anyhow::Result<()> {
    let host = work.join("killed");
    task_dir(&host)?;
    let outputs = json!([{"path": "/data/out/big.bin", "recipients": [alice.pub_pem]}]);
    let script = "head -c 1073741824 /dev/urandom > /data/out/big.bin";
    let pod = output_pod("outputs-killed", &host, &outputs, script)?;
    let created = cluster::create_pod(client, NS, &pod).await?;
    let uid = created.metadata.uid.clone().unwrap_or_default();
    let part = host.join(".big.bin.c4gh-part");
    let deadline = Instant::now() + Duration::from_secs(180);
    while !part.exists() {
        ensure!(
            Instant::now() < deadline,
            "the encryption never started: {:?}",
            tree(&host)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let filter = format!(
        "labels.\"io.kubernetes.pod.uid\"=={uid},labels.\"io.kubernetes.container.name\"=={SIDECAR_CONTAINER}"
    );
    let ids = node.ctr(&["containers", "list", "--quiet", &filter])?;
    let id = ids
        .lines()
        .next()
        .context("containerd has no sidecar container")?;
    node.ctr(&["tasks", "kill", "--signal", "SIGKILL", id.trim()])?;
    let (phase, sidecar) = ended(node, client, "outputs-killed").await?;
    eprintln!("killed: pod {phase}, sidecar exit {}", sidecar.exit_code);
    ensure!(
        sidecar.exit_code == 137,
        "sidecar exit {}",
        sidecar.exit_code
    );
    let left = tree(&host);
    ensure!(
        !host.join("big.bin").exists(),
        "the output's name exists after a killed encryption: {left:?}"
    );
    ensure!(
        left.iter().all(|n| n.starts_with('.')),
        "only hidden files remain: {left:?}"
    );
    Ok(())
}

/// TESK's flow as its taskmaster runs it, with the objects made by the test: the task
/// ConfigMap (`JSON_INPUT.gz`), an executor writing the output onto the task volume, then the
/// outputs filer Job (the filer here copies the output into a "store" directory, as TESK's filer
/// uploads it). The operator adds the output list to the ConfigMap and the seal step to the
/// filer Job; the store receives Crypt4GH for the policy's default recipient.
async fn tesk_outputs_filer_uploads_crypt4gh(
    node: &Node,
    client: &Client,
    work: &Path,
    alice: &Submitter,
) -> anyhow::Result<()> {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    let ns = "tesk-out";
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": ns, "labels": {"c4gh.dev/tesk": "enabled"}}}),
            )?,
        )
        .await?;
    create_policy(client, ns, json!({"allowedHosts": ["drs.example.org"], "outputs": {"defaultRecipients": [alice.pub_pem]}})).await?;
    let (task_dir_host, store) = (work.join("tesk-task"), work.join("tesk-store"));
    task_dir(&task_dir_host)?;
    task_dir(&store)?;
    let task = json!({
        "inputs": [], "volumes": [],
        "outputs": [{"path": "/data/out/result.bin", "url": "file:///store/result.bin", "type": "FILE"}],
        "resources": {"disk_gb": 0.1},
        "executors": [{"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "task-0c4a11ed-ex-00", "labels": {"job-type": "executor", "taskmaster-name": "task-0c4a11ed"}},
            "spec": {"template": {"spec": {"containers": [{"name": "task-0c4a11ed-ex-00", "image": "x"}]}}}}]
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, task.to_string().as_bytes())?;
    let mut cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "task-0c4a11ed"}}))?;
    cm.binary_data = Some(
        [(
            "JSON_INPUT.gz".to_owned(),
            k8s_openapi::ByteString(gz.finish()?),
        )]
        .into(),
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    let stored = loop {
        let stored = cms.create(&PostParams::default(), &cm).await?;
        if stored
            .data
            .as_ref()
            .is_some_and(|d| d.contains_key("c4gh-outputs.json"))
        {
            break stored;
        }
        // The operator's policy cache may not have the new policy yet.
        cms.delete("task-0c4a11ed", &Default::default()).await?;
        ensure!(
            Instant::now() < deadline,
            "the ConfigMap never got the output list: {:?}",
            stored.data
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "output list: {}",
        stored.data.unwrap_or_default()["c4gh-outputs.json"]
    );
    let bytes = (1 << 20) + 9;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let job = |name: &str, containers: Value, volumes: Value| -> anyhow::Result<Job> {
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"metadata": {"name": name}, "spec": {
                "hostNetwork": true, "restartPolicy": "Never", "automountServiceAccountToken": false,
                "containers": containers, "volumes": volumes}}}
        }))?)
    };
    let task_volume =
        json!({"name": "task-volume", "hostPath": {"path": task_dir_host, "type": "Directory"}});
    jobs.create(&PostParams::default(), &job(
        "task-0c4a11ed-ex-00",
        json!([{"name": "task-0c4a11ed-ex-00", "image": node::image("c4gh-task"), "imagePullPolicy": "Never",
                "command": ["sh", "-c", write_pattern("/data/out/result.bin", bytes)],
                "volumeMounts": [{"name": "task-volume", "mountPath": "/data/out", "subPath": "dir0"}]}]),
        json!([task_volume]),
    )?).await?;
    wait_job(node, client, ns, "task-0c4a11ed-ex-00").await?;
    let filer = "task-0c4a11ed-outputs-filer";
    let created = jobs.create(&PostParams::default(), &job(
        filer,
        json!([{"name": "filer", "image": node::image("c4gh-task"), "imagePullPolicy": "Never",
                "command": ["sh", "-c", "cp /data/out/result.bin /store/result.bin"],
                "args": ["outputs", "/jsoninput/JSON_INPUT.gz"],
                "volumeMounts": [{"name": "jsoninput", "mountPath": "/jsoninput"},
                                 {"name": "task-volume", "mountPath": "/data/out", "subPath": "dir0"},
                                 {"name": "store", "mountPath": "/store"}]}]),
        json!([{"name": "jsoninput", "configMap": {"name": "task-0c4a11ed"}}, task_volume,
               {"name": "store", "hostPath": {"path": store, "type": "Directory"}}]),
    )?).await?;
    let inits: Vec<String> = created
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.init_containers)
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.name)
        .collect();
    ensure!(
        inits == ["c4gh-seal"],
        "the filer Job's init containers: {inits:?}"
    );
    wait_job(node, client, ns, filer).await?;
    let uploaded = store.join("result.bin");
    ensure!(
        std::fs::read(&uploaded)?.starts_with(b"crypt4gh"),
        "the store received plaintext"
    );
    let plain = testkit::reference::decrypt(&uploaded, &alice.sk)?;
    ensure!(
        plain == pattern(bytes),
        "the upload decrypts to {} bytes, not the task's",
        plain.len()
    );
    Ok(())
}

async fn wait_job(node: &Node, client: &Client, ns: &str, name: &str) -> anyhow::Result<()> {
    use k8s_openapi::api::batch::v1::Job;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let status = jobs.get(name).await?.status.unwrap_or_default();
        if status.succeeded == Some(1) {
            return Ok(());
        }
        if status.failed.unwrap_or(0) > 0 || Instant::now() >= deadline {
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            let list = pods
                .list(&kube::api::ListParams::default().labels(&format!("job-name={name}")))
                .await?;
            bail!(
                "Job {name} did not succeed: {status:?}; pods: {}\n{}",
                serde_json::to_string(&list.items.iter().map(|p| &p.status).collect::<Vec<_>>())
                    .unwrap_or_default(),
                node.log_tails(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn create_policy(client: &Client, ns: &str, spec: Value) -> anyhow::Result<()> {
    let gvk = GroupVersionKind::gvk("c4gh.dev", "v1alpha1", "Crypt4ghPolicy");
    let resource = ApiResource::from_gvk(&gvk);
    let mut policy = DynamicObject::new("default", &resource).within(ns);
    policy.data = json!({ "spec": spec });
    let policies: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    policies.create(&PostParams::default(), &policy).await?;
    Ok(())
}

async fn policy(client: &Client) -> anyhow::Result<()> {
    ensure_namespace(client, NS).await?;
    let gvk = GroupVersionKind::gvk("c4gh.dev", "v1alpha1", "Crypt4ghPolicy");
    let resource = ApiResource::from_gvk(&gvk);
    let mut policy = DynamicObject::new("default", &resource).within(NS);
    policy.data = json!({"spec": {"allowedHosts": ["drs.example.org"]}});
    let policies: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &resource);
    policies.create(&PostParams::default(), &policy).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_leave_the_pod_encrypted_on_a_real_node() -> anyhow::Result<()> {
    let work = tempfile::Builder::new()
        .prefix("c4gh-outputs-")
        .tempdir_in("/var/tmp")?;
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))?;
    let alice = Submitter::keygen(work.path(), "alice")?;
    let node = Node::start().await?;
    let snapshot = node.snapshot();
    let client = node.client().await?;
    let mut failures = Vec::new();
    let mut record = |name: &str, outcome: anyhow::Result<()>, since: Instant| {
        let seconds = since.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => eprintln!("ok   {name} ({seconds:.1} s)"),
            Err(err) => {
                eprintln!("FAIL {name} ({seconds:.1} s): {err:#}");
                failures.push(format!("{name}: {err:#}"));
            }
        }
    };
    let t = Instant::now();
    let setup = async {
        eprintln!("{}", cluster::install_operator(&node, &client).await?);
        policy(&client).await
    }
    .await;
    let ready = setup.is_ok();
    record("operator from manifests, policy", setup, t);
    if ready {
        let t = Instant::now();
        record(
            "outputs are Crypt4GH for the submitter",
            outputs_are_crypt4gh_for_the_submitter(&node, &client, work.path(), &alice).await,
            t,
        );
        let t = Instant::now();
        record(
            "missing recipient denied at admission",
            missing_recipient_is_denied(&client, work.path()).await,
            t,
        );
        let t = Instant::now();
        record(
            "full disk fails, no plaintext left",
            full_disk_fails_and_leaves_no_plaintext(&node, &client, work.path(), &alice).await,
            t,
        );
        let t = Instant::now();
        record(
            "TESK-shaped outputs filer uploads Crypt4GH",
            tesk_outputs_filer_uploads_crypt4gh(&node, &client, work.path(), &alice).await,
            t,
        );
        let t = Instant::now();
        record(
            "killed encryption leaves no output",
            killed_encryption_leaves_no_output(&node, &client, work.path(), &alice).await,
            t,
        );
    }
    drop(client);
    drop(node);
    let leftovers = snapshot.leftovers();
    if !leftovers.is_empty() {
        failures.push(format!("teardown left:\n{}", leftovers.join("\n")));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}
