//! The project's images on a real node (kubelet, containerd, runc). Every scenario that needs the
//! node runs in this one test, one after another, because only one kubelet can run on a machine;
//! each scenario's outcome is reported, and the test fails naming every scenario that failed.
//! Then the node is dropped and the host is checked for leftovers.

// Assertion helpers outside #[test] functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use c4gh_contract::pod::{GATE_CONTAINER, SIDECAR_CONTAINER};
use c4gh_e2e::cluster::{self, DrsPod, KeyWatch};
use c4gh_e2e::node::{self, Node};
use c4gh_e2e::operator::ensure_namespace;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const TASKS: &str = "tasks";
/// Large enough that a fetch is still running when the test interferes.
const BIG: usize = 96 * 1024 * 1024;

/// A pod of the task image on the host network that prints who it runs as and the reference
/// tool's version, then exits 0.
async fn plain_task_pod(node: &Node, client: &Client) -> anyhow::Result<()> {
    ensure_namespace(client, "plain").await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "plain");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "hello"},
        "spec": {
            "hostNetwork": true,
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
            "containers": [{
                "name": "task",
                "image": node::image("c4gh-task"),
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", "id -u; crypt4gh --version"]
            }]
        }
    }))?;
    cluster::create_pod(client, "plain", &pod).await?;
    let pod = node::wait_for_phase(
        node,
        client,
        "plain",
        "hello",
        &["Succeeded", "Failed"],
        Duration::from_secs(120),
    )
    .await?;
    let logs = pods.logs("hello", &LogParams::default()).await?;
    ensure!(
        phase(&pod) == "Succeeded",
        "plain pod ended {}: {logs}\n{}",
        phase(&pod),
        node.log_tails(30)
    );
    ensure!(logs.starts_with("1000\n"), "runs as UID 1000: {logs}");
    ensure!(logs.contains("version 1.8.6"), "{logs}");
    Ok(())
}

fn phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// What the host saw of one pod's key file while the pod ran.
#[derive(Debug, Default)]
struct Observed {
    seen: bool,
    on_tmpfs: bool,
    mode_owner: Option<(u32, u32, u32)>,
    other_uid_denied: Option<bool>,
    task_exited: Option<f64>,
    gone_at: Option<f64>,
}

/// Polls the key file of `pod` until the pod is terminal; `act` runs once, when the key first
/// appears (to interfere with the fetch).
async fn watch_pod<F, Fut>(
    node: &Node,
    client: &Client,
    namespace: &str,
    name: &str,
    act: F,
) -> anyhow::Result<(Pod, Observed)>
where
    F: FnOnce(Pod) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    use std::os::unix::fs::MetadataExt;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut observed = Observed::default();
    let mut act = Some(act);
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut watch: Option<KeyWatch> = None;
    loop {
        let Some(pod) = pods.get_opt(name).await? else {
            return Ok((Pod::default(), observed));
        };
        if watch.is_none() && !uid(&pod).is_empty() {
            watch = Some(KeyWatch::new(node, &uid(&pod)));
        }
        if let Some(watch) = &watch {
            let key = watch.key_file();
            if let Ok(meta) = std::fs::metadata(&key) {
                if !observed.seen {
                    observed.seen = true;
                    observed.on_tmpfs = watch.on_tmpfs();
                    observed.mode_owner = Some((meta.mode() & 0o777, meta.uid(), meta.gid()));
                    observed.other_uid_denied = Some(other_uid_cannot_read(&key));
                    if let Some(act) = act.take() {
                        act(pod.clone()).await?;
                    }
                }
            } else if observed.seen && observed.gone_at.is_none() {
                observed.gone_at = Some(cluster::now());
            }
            // The latest attempt's stamp (a restarted container writes its own).
            if let Some(exited) = watch.task_exited() {
                observed.task_exited = Some(exited);
            }
        }
        if matches!(phase(&pod).as_str(), "Succeeded" | "Failed") {
            return Ok((pod, observed));
        }
        ensure!(
            Instant::now() < deadline,
            "pod {namespace}/{name} still {} after 240 s: {}\n{}",
            phase(&pod),
            serde_json::to_string(&pod.status).unwrap_or_default(),
            node.log_tails(20)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A process with another UID and without the pod's fsGroup cannot read the key file.
fn other_uid_cannot_read(key: &Path) -> bool {
    Command::new("setpriv")
        .args(["--reuid=2000", "--regid=2000", "--clear-groups", "cat"])
        .arg(key)
        .output()
        .is_ok_and(|out| {
            !out.status.success()
                && String::from_utf8_lossy(&out.stderr).contains("Permission denied")
        })
}

async fn container_logs(client: &Client, namespace: &str, pod: &str, container: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.logs(
        pod,
        &LogParams {
            container: Some(container.to_owned()),
            ..LogParams::default()
        },
    )
    .await
    .unwrap_or_else(|err| format!("(no logs: {err})"))
}

/// The injected pod runs: native sidecar (no startup probe), the gate, the task decrypting
/// with the reference tool under another UID reading the key through fsGroup behind
/// `c4gh-exec`, whose exit notice destroys the key within [`EARLY_BOUND`] of the task's exit
/// (before the kubelet's SIGTERM), `Succeeded`.
async fn injected_pod_succeeds(node: &Node, client: &Client, drs: &DrsPod) -> anyhow::Result<()> {
    let inputs: Vec<(&str, &str)> = ["sample-reads", "sample-index"]
        .iter()
        .map(|id| (*id, drs.objects[*id].as_str()))
        .collect();
    let pod = cluster::task_pod("task-ok", drs, &inputs)?;
    let created = cluster::create_pod(client, TASKS, &pod).await?;
    let spec = created.spec.clone().context("stored pod has no spec")?;
    let init = spec.init_containers.clone().unwrap_or_default();
    ensure!(
        init.len() >= 2
            && init[0].name == SIDECAR_CONTAINER
            && init[0].restart_policy.as_deref() == Some("Always")
            && init[0].startup_probe.is_none()
            && init[1].name == GATE_CONTAINER,
        "injected: native sidecar without a startup probe, then the gate: {:?}",
        init.iter().map(|c| &c.name).collect::<Vec<_>>()
    );
    let (pod, observed) = watch_pod(node, client, TASKS, "task-ok", |_| async { Ok(()) }).await?;
    let task_log = container_logs(client, TASKS, "task-ok", "task").await;
    let sidecar_log = container_logs(client, TASKS, "task-ok", SIDECAR_CONTAINER).await;
    ensure!(
        phase(&pod) == "Succeeded",
        "pod ended {}: task: {task_log}\nsidecar: {sidecar_log}\nstatus: {}",
        phase(&pod),
        serde_json::to_string(&pod.status).unwrap_or_default()
    );
    ensure!(
        task_log.matches("matches the original").count() == 2,
        "{task_log}"
    );
    ensure!(observed.seen, "the key file never appeared on the node");
    ensure!(observed.on_tmpfs, "the key volume is not a tmpfs mount");
    let (mode, owner, group) = observed.mode_owner.unwrap_or_default();
    ensure!(
        mode == 0o440 && owner == 65532 && group == 65532,
        "key file mode {mode:o} owner {owner}:{group}, want 440 65532:65532"
    );
    ensure!(
        task_log.contains("task uid=1000 groups=[1000, 65532]"),
        "the task runs as 1000 with the fsGroup: {task_log}"
    );
    ensure!(
        observed.other_uid_denied == Some(true),
        "UID 2000 without the group could read the key"
    );
    let lag = key_lag(&observed)?;
    eprintln!("key gone {lag:.3} s after the task exited (wrapped: exit notice)");
    ensure!(
        (0.0..=EARLY_BOUND).contains(&lag),
        "the key was gone {lag:.3} s after the task exited, not within {EARLY_BOUND} s"
    );
    ensure!(
        spec.containers[0]
            .command
            .as_ref()
            .and_then(|c| c.first())
            .map(String::as_str)
            == Some(c4gh_contract::pod::EXEC_PATH),
        "the task's command runs behind c4gh-exec: {:?}",
        spec.containers[0].command
    );
    ensure_destroyed_at_task_end(&sidecar_log, "task=0")?;
    Ok(())
}

/// How soon after the task's exit stamp a wrapped task's key must be gone (the exit notice
/// path; the kubelet's SIGTERM path took 0.85 s at p50 and up to 2.7 s).
const EARLY_BOUND: f64 = 0.5;

/// Seconds from the (last) task exit stamp to the key's disappearance.
fn key_lag(observed: &Observed) -> anyhow::Result<f64> {
    match (observed.task_exited, observed.gone_at) {
        (Some(exited), Some(gone)) => Ok(gone - exited),
        (exited, gone) => bail!("task exit {exited:?} / key gone {gone:?} not both observed"),
    }
}

/// The sidecar's log says the exit notices (with `statuses`) destroyed the key, then SIGTERM
/// came.
fn ensure_destroyed_at_task_end(sidecar_log: &str, statuses: &str) -> anyhow::Result<()> {
    let ended = sidecar_log.find("task containers ended; destroying the key");
    let signal = sidecar_log.find("signal received; the key was destroyed when the task ended");
    ensure!(
        matches!((ended, signal), (Some(e), Some(s)) if e < s),
        "the sidecar destroys the key at the task's end, then gets SIGTERM: {sidecar_log}"
    );
    ensure!(
        sidecar_log.contains(&format!("exit_statuses={statuses}"))
            || sidecar_log.contains(&format!("\"exit_statuses\":\"{statuses}\"")),
        "exit statuses {statuses}: {sidecar_log}"
    );
    ensure!(
        sidecar_log.contains("key_shredded=true") || sidecar_log.contains("\"key_shredded\":true"),
        "the sidecar reports the key shredded: {sidecar_log}"
    );
    Ok(())
}

/// A task container without an explicit `command` (the image's entrypoint runs its `args`)
/// cannot be wrapped: the key is destroyed at the kubelet's SIGTERM, as before the wrapper.
async fn unwrapped_task_keeps_the_sigterm_path(
    node: &Node,
    client: &Client,
    drs: &DrsPod,
) -> anyhow::Result<()> {
    let mut pod = cluster::pod_running("task-unwrapped", Some((drs, &["sample-index"])), "true")?;
    let task = &mut pod.spec.as_mut().context("spec")?.containers[0];
    task.args = task.command.take();
    let created = cluster::create_pod(client, TASKS, &pod).await?;
    let spec = created.spec.clone().context("stored pod has no spec")?;
    ensure!(
        spec.containers[0].command.is_none(),
        "a container without a command got one: {:?}",
        spec.containers[0].command
    );
    let (pod, observed) =
        watch_pod(node, client, TASKS, "task-unwrapped", |_| async { Ok(()) }).await?;
    let sidecar_log = container_logs(client, TASKS, "task-unwrapped", SIDECAR_CONTAINER).await;
    ensure!(
        phase(&pod) == "Succeeded",
        "pod ended {}: {sidecar_log}",
        phase(&pod)
    );
    let lag = key_lag(&observed)?;
    eprintln!("key gone {lag:.3} s after the unwrapped task exited (SIGTERM)");
    ensure!(
        (0.0..=10.0).contains(&lag),
        "the key was gone {lag:.3} s after the task exited"
    );
    for needle in [
        "has no explicit command",
        "signal received; destroying the key",
    ] {
        ensure!(sidecar_log.contains(needle), "{needle}: {sidecar_log}");
    }
    ensure!(
        !sidecar_log.contains("task containers ended"),
        "an unwrapped task ended the key early: {sidecar_log}"
    );
    Ok(())
}

/// Under `restartPolicy: OnFailure` a failed first attempt does not destroy the key: the
/// kubelet's retry decrypts its input with it, and its success destroys the key at once.
async fn on_failure_retry_still_has_the_key(
    node: &Node,
    client: &Client,
    drs: &DrsPod,
) -> anyhow::Result<()> {
    let script = "if [ -e /data/out/attempt ]; then \
                  crypt4gh decrypt < /data/in/sample-index.c4gh > /dev/null \
                  && echo 'retry: decrypted with the key'; \
                  else touch /data/out/attempt; echo 'first attempt fails'; false; fi";
    let mut pod = cluster::pod_running("task-retried", Some((drs, &["sample-index"])), script)?;
    pod.spec.as_mut().context("spec")?.restart_policy = Some("OnFailure".to_owned());
    cluster::create_pod(client, TASKS, &pod).await?;
    let (pod, observed) =
        watch_pod(node, client, TASKS, "task-retried", |_| async { Ok(()) }).await?;
    let task_log = container_logs(client, TASKS, "task-retried", "task").await;
    let sidecar_log = container_logs(client, TASKS, "task-retried", SIDECAR_CONTAINER).await;
    let restarts = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.iter().find(|c| c.name == "task"))
        .map_or(0, |c| c.restart_count);
    ensure!(
        phase(&pod) == "Succeeded" && restarts >= 1,
        "pod ended {} after {restarts} restarts: task: {task_log}\nsidecar: {sidecar_log}",
        phase(&pod)
    );
    ensure!(
        task_log.contains("retry: decrypted with the key"),
        "the retry could not use the key: {task_log}"
    );
    let lag = key_lag(&observed)?;
    eprintln!("key gone {lag:.3} s after the retried task exited");
    ensure!(
        (0.0..=EARLY_BOUND).contains(&lag),
        "the key was gone {lag:.3} s after the retry exited, not within {EARLY_BOUND} s"
    );
    ensure_destroyed_at_task_end(&sidecar_log, "task=0")?;
    ensure!(
        sidecar_log.matches("key destroyed").count() == 1,
        "the key was destroyed once: {sidecar_log}"
    );
    Ok(())
}

/// A TESK-shaped Job (scheduled by kube-scheduler, pods by the Job controller) completes with
/// the injected sidecar.
async fn tesk_job_completes(node: &Node, client: &Client, drs: &DrsPod) -> anyhow::Result<()> {
    let id = "sample-index";
    let pod = cluster::task_pod("unused", drs, &[(id, drs.objects[id].as_str())])?;
    let mut template = serde_json::to_value(&pod)?;
    template["metadata"]
        .as_object_mut()
        .context("metadata")?
        .remove("name");
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "task-1-ex-00", "labels": {"job-type": "executor", "taskmaster-name": "task-1"}},
        "spec": {"backoffLimit": 0, "template": template}
    }))?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), TASKS);
    jobs.create(&PostParams::default(), &job).await?;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let job = jobs.get("task-1-ex-00").await?;
        let status = job.status.unwrap_or_default();
        if status.succeeded == Some(1) {
            return Ok(());
        }
        if status.failed.unwrap_or(0) > 0 || Instant::now() >= deadline {
            let pods: Api<Pod> = Api::namespaced(client.clone(), TASKS);
            let list = pods
                .list(&ListParams::default().labels("job-name=task-1-ex-00"))
                .await?;
            bail!(
                "Job did not succeed: {:?}; pods: {}\n{}",
                status,
                serde_json::to_string(&list.items.iter().map(|p| &p.status).collect::<Vec<_>>())
                    .unwrap_or_default(),
                node.log_tails(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// An input the DRS server does not have: the pod ends `Failed` and the gate's termination
/// message, in the pod status, names it.
async fn failing_input_fails_pod(node: &Node, client: &Client, drs: &DrsPod) -> anyhow::Result<()> {
    let pod = cluster::task_pod("task-missing", drs, &[("no-such-object", "0")])?;
    cluster::create_pod(client, TASKS, &pod).await?;
    let pod = node::wait_for_phase(
        node,
        client,
        TASKS,
        "task-missing",
        &["Succeeded", "Failed"],
        Duration::from_secs(180),
    )
    .await?;
    ensure!(phase(&pod) == "Failed", "pod ended {}", phase(&pod));
    let message = pod
        .status
        .and_then(|s| s.init_container_statuses)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == GATE_CONTAINER)
        .and_then(|c| c.state)
        .and_then(|s| s.terminated)
        .and_then(|t| t.message)
        .unwrap_or_default();
    eprintln!("gate termination message: {message}");
    ensure!(
        message.contains("no-such-object"),
        "the gate's termination message names the input: {message:?}"
    );
    // kubectl c4gh status reads the same message back, once the kubelet stopped the sidecar.
    wait_until(node, client, "task-missing", "sidecar exited", |p| {
        exited(p, SIDECAR_CONTAINER)
    })
    .await?;
    let (code, out) = plugin(node, &["status", "task-missing", "-n", TASKS])?;
    ensure!(code == 1, "status of a failed pod: exit {code}: {out}");
    ensure!(
        out.starts_with("pod tasks/task-missing: Failed (Crypt4ghPolicy default)\n"),
        "{out}"
    );
    ensure!(out.contains("c4gh-gate     exited 1 Error"), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("no-such-object"))
        .unwrap_or_default();
    ensure!(line.trim_start().starts_with("Failed"), "{out}");
    ensure!(out.contains("error: 404 from "), "{out}");
    ensure!(
        out.contains("key: destroyed: the sidecar overwrote and unlinked it and exited 0"),
        "{out}"
    );
    ensure!(
        out.contains(&format!(
            "✘ the gate failed the pod: {}",
            message.lines().next().unwrap_or_default()
        )),
        "{out}"
    );
    Ok(())
}

/// What the host saw of the key files around the SIGKILL.
struct Replaced {
    /// The dead sidecar's public key, and the one the restarted sidecar wrote.
    public_keys: (String, String),
    /// The new secret key file differs from the old one.
    secret_differs: bool,
    /// Read through a descriptor the host opened on the old key file before the kill: its
    /// length, its link count and whether every byte is zero once the new sidecar has started.
    old_inode: (usize, u64, bool),
    /// Files on the key volume still holding the old key's encoded secret.
    holding_old_secret: Vec<String>,
}

/// Kills the pod's sidecar with SIGKILL (it cannot clean up), then waits until the kubelet's
/// restarted sidecar has written its own key; reports what became of the dead one's.
async fn kill_sidecar_and_watch_its_key(
    node: &Node,
    pod: &Pod,
    dir: &Path,
) -> anyhow::Result<Replaced> {
    use std::io::{Read, Seek};
    use std::os::unix::fs::MetadataExt;
    let secret_path = dir.join(c4gh_contract::pod::SECRET_KEY_FILE);
    let public_path = dir.join(c4gh_contract::pod::PUBLIC_KEY_FILE);
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    // Held across the kill: shredding overwrites this inode in place, unlinking alone would
    // leave the old key readable through it.
    let mut old_file = std::fs::File::open(&secret_path)?;
    let mut old_secret = String::new();
    old_file.read_to_string(&mut old_secret)?;
    let old_public = read(&public_path);
    ensure!(
        old_secret.contains("PRIVATE KEY") && !old_public.is_empty(),
        "the key files were not complete when the host read them"
    );
    // The pod status may not name the container yet; containerd's labels do.
    let filter = format!(
        "labels.\"io.kubernetes.pod.uid\"=={},labels.\"io.kubernetes.container.name\"=={SIDECAR_CONTAINER}",
        uid(pod)
    );
    let ids = node.ctr(&["containers", "list", "--quiet", &filter])?;
    let id = ids
        .lines()
        .next()
        .context("containerd has no sidecar container")?;
    node.ctr(&["tasks", "kill", "--signal", "SIGKILL", id.trim()])?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let new_public = loop {
        let public = read(&public_path);
        if !public.is_empty() && public != old_public && secret_path.exists() {
            break public;
        }
        ensure!(
            Instant::now() < deadline,
            "no new key 120 s after the SIGKILL\n{}",
            node.log_tails(20)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let links = old_file.metadata()?.nlink();
    old_file.rewind()?;
    let mut old_bytes = Vec::new();
    old_file.read_to_end(&mut old_bytes)?;
    // The base64 lines of the old key file encode its secret.
    let secret_lines: Vec<&str> = old_secret
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 8)
        .collect();
    let mut holding_old_secret = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            let text =
                String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned();
            if secret_lines.iter().any(|l| text.contains(l)) {
                holding_old_secret.push(path.display().to_string());
            }
        }
    }
    Ok(Replaced {
        public_keys: (old_public, new_public),
        secret_differs: read(&secret_path) != old_secret,
        old_inode: (
            old_bytes.len(),
            links,
            !old_bytes.is_empty() && old_bytes.iter().all(|&b| b == 0),
        ),
        holding_old_secret,
    })
}

/// The sidecar killed with SIGKILL while it fetches: the kubelet restarts it, the new one
/// shreds the key the dead one left (zeros written over the same inode, then unlinked: seen
/// through a descriptor the host held open), makes a new key, fetches again and the pod
/// succeeds.
async fn sidecar_killed_mid_fetch_recovers(
    node: &Node,
    client: &Client,
    drs: &DrsPod,
) -> anyhow::Result<()> {
    let pod = cluster::task_pod("task-killed", drs, &[("big", drs.objects["big"].as_str())])?;
    let created = cluster::create_pod(client, TASKS, &pod).await?;
    let dir = KeyWatch::new(node, &uid(&created)).dir;
    let replaced = std::sync::Mutex::new(None);
    let (dir_ref, replaced_ref) = (&dir, &replaced);
    let (pod, _) = watch_pod(node, client, TASKS, "task-killed", move |pod| async move {
        let seen = kill_sidecar_and_watch_its_key(node, &pod, dir_ref).await?;
        *replaced_ref.lock().unwrap() = Some(seen);
        Ok(())
    })
    .await?;
    let replaced = replaced
        .into_inner()
        .unwrap()
        .context("the key never appeared, so the sidecar was not killed")?;
    let (old_public, new_public) = &replaced.public_keys;
    ensure!(
        old_public != new_public && replaced.secret_differs,
        "the restarted sidecar reused the dead one's key"
    );
    let (length, links, zeroed) = replaced.old_inode;
    ensure!(
        links == 0 && zeroed,
        "the dead sidecar's key file was not shredded by the new one: {length} bytes, \
         {links} links, all zero: {zeroed}"
    );
    ensure!(
        replaced.holding_old_secret.is_empty(),
        "files on the key volume still hold the old secret: {:?}",
        replaced.holding_old_secret
    );
    let task_log = container_logs(client, TASKS, "task-killed", "task").await;
    let restarts = pod
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref())
        .and_then(|c| c.iter().find(|c| c.name == SIDECAR_CONTAINER))
        .map_or(0, |c| c.restart_count);
    ensure!(
        phase(&pod) == "Succeeded",
        "pod ended {} (sidecar restarts {restarts}): {task_log}",
        phase(&pod)
    );
    ensure!(
        restarts >= 1,
        "the kubelet restarted the sidecar ({restarts})"
    );
    ensure!(task_log.contains("matches the original"), "{task_log}");
    Ok(())
}

/// Runs `kubectl c4gh ARGS` against the node's apiserver; prints the command and its output
/// (docs/operator.md quotes it).
fn plugin(node: &Node, args: &[&str]) -> anyhow::Result<(i32, String)> {
    let bin = c4gh_e2e::workspace::binary("kubectl-c4gh", "kubectl-c4gh")?;
    let output = Command::new(bin)
        .arg("--kubeconfig")
        .arg(node.plane().kubeconfig())
        .args(args)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!(
        "$ kubectl c4gh {}\n{stdout}{}(exit status {})\n",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr),
        output.status.code().unwrap_or(-1)
    );
    Ok((output.status.code().unwrap_or(-1), stdout))
}

/// Polls pod `name` until `done` holds for it.
async fn wait_until(
    node: &Node,
    client: &Client,
    name: &str,
    what: &str,
    done: impl Fn(&Pod) -> bool,
) -> anyhow::Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), TASKS);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let pod = pods.get(name).await?;
        if done(&pod) {
            return Ok(pod);
        }
        ensure!(
            Instant::now() < deadline,
            "pod {name}: {what} not within 180 s: {}\n{}",
            serde_json::to_string(&pod.status).unwrap_or_default(),
            node.log_tails(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The state of container `name` (init or task) of `pod`.
fn state(pod: &Pod, name: &str) -> Option<k8s_openapi::api::core::v1::ContainerState> {
    let status = pod.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find(|c| c.name == name)
        .and_then(|c| c.state.clone())
}

fn running(pod: &Pod, name: &str) -> bool {
    state(pod, name).is_some_and(|s| s.running.is_some())
}

fn exited(pod: &Pod, name: &str) -> bool {
    state(pod, name).is_some_and(|s| s.terminated.is_some())
}

/// Deletes pod `name` and waits until it is gone.
async fn delete_and_wait(client: &Client, name: &str) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), TASKS);
    pods.delete(name, &DeleteParams::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while pods.get_opt(name).await?.is_some() {
        ensure!(Instant::now() < deadline, "pod {name} not deleted in 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// `kubectl c4gh status` on pods the kubelet runs: one whose task waits (inputs in place, key
/// held), then the same after its task ended (key destroyed), and one whose only input is on a
/// server that accepts connections and never answers (the gate still waiting).
async fn plugin_status_reads_real_pods(
    node: &Node,
    client: &Client,
    drs: &DrsPod,
) -> anyhow::Result<()> {
    // A task that runs until the host creates /data/out/go in its volume.
    let pod = cluster::pod_running(
        "task-held",
        Some((drs, &["sample-reads"])),
        "while [ ! -e /data/out/go ]; do sleep 0.1; done",
    )?;
    let created = cluster::create_pod(client, TASKS, &pod).await?;
    let watch = KeyWatch::new(node, &uid(&created));
    wait_until(node, client, "task-held", "task running", |p| {
        running(p, "task")
    })
    .await?;
    let (code, out) = plugin(node, &["status", "task-held", "-n", TASKS])?;
    ensure!(code == 0, "status of a running task: exit {code}: {out}");
    ensure!(
        out.starts_with("pod tasks/task-held: Running (Crypt4ghPolicy default)\n"),
        "{out}"
    );
    ensure!(out.contains("c4gh-gate     exited 0 Completed"), "{out}");
    // The bytes the real sidecar reported in status.json on the node.
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(watch.dir.join("status.json"))?)?;
    let bytes = status["inputs"][0]["bytes"].as_u64().unwrap_or_default();
    let line = out
        .lines()
        .find(|l| l.contains("sample-reads.c4gh"))
        .unwrap_or_default();
    ensure!(
        line.trim_start().starts_with("Done")
            && line.contains(&format!(
                "{:.1} MiB  {} -> /data/in/sample-reads.c4gh (encrypted)",
                bytes as f64 / 1024.0 / 1024.0,
                drs.uri("sample-reads")
            )),
        "input line {line:?} (status.json: {bytes} bytes): {out}"
    );
    ensure!(
        out.contains("key: held by the running sidecar at /c4gh/key/ephemeral.sec"),
        "{out}"
    );
    ensure!(
        out.ends_with("✔ every input is in place; the task containers may run\n"),
        "{out}"
    );
    std::fs::write(watch.out_dir.join("go"), b"")?;
    wait_until(node, client, "task-held", "sidecar exited", |p| {
        phase(p) == "Succeeded" && exited(p, SIDECAR_CONTAINER)
    })
    .await?;
    let (code, out) = plugin(node, &["status", "task-held", "-n", TASKS])?;
    ensure!(code == 0, "status of a finished task: exit {code}: {out}");
    ensure!(
        out.contains(": Succeeded (Crypt4ghPolicy default)"),
        "{out}"
    );
    ensure!(
        out.contains("key: destroyed: the sidecar overwrote and unlinked it and exited 0"),
        "{out}"
    );
    delete_and_wait(client, "task-held").await?;

    // A DRS server that accepts connections and never answers; the policy allows it too.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let silent_authority = silent.local_addr()?.to_string();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let resource = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "c4gh.dev",
        "v1alpha1",
        "Crypt4ghPolicy",
    ));
    let policies: Api<kube::core::DynamicObject> =
        Api::namespaced_with(client.clone(), TASKS, &resource);
    policies
        .patch(
            "default",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"spec": {"allowedHosts": [drs.authority, silent_authority]}}),
            ),
        )
        .await?;
    let mut pod = cluster::pod_running("task-stuck", Some((drs, &["stalled"])), "true")?;
    let url = format!("drs://{silent_authority}/stalled");
    pod.metadata.annotations = Some(
        [(
            c4gh_contract::annotations::INPUTS.to_owned(),
            json!([{"url": url, "path": "/data/in/stalled.c4gh"}]).to_string(),
        )]
        .into(),
    );
    // The operator's policy cache follows the patch within moments.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match cluster::create_pod(client, TASKS, &pod).await {
            Ok(_) => break,
            Err(err)
                if Instant::now() < deadline && err.to_string().contains(&silent_authority) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
    wait_until(node, client, "task-stuck", "gate running", |p| {
        running(p, GATE_CONTAINER)
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, out) = plugin(node, &["status", "task-stuck", "-n", TASKS])?;
    holder.abort();
    delete_and_wait(client, "task-stuck").await?;
    ensure!(code == 1, "status of a waiting pod: exit {code}: {out}");
    ensure!(
        out.starts_with("pod tasks/task-stuck: Pending (Crypt4ghPolicy default)\n"),
        "{out}"
    );
    ensure!(out.contains("c4gh-gate     running for "), "{out}");
    ensure!(
        out.contains(&format!(
            "?                 ?  {url} -> /data/in/stalled.c4gh (encrypted)"
        )),
        "{out}"
    );
    ensure!(
        out.contains("‼ waiting for inputs: the gate is running for "),
        "{out}"
    );
    Ok(())
}

/// A pod deleted while its sidecar fetches leaves no key on the node.
async fn deleted_mid_fetch_leaves_no_key(
    node: &Node,
    client: &Client,
    drs: &DrsPod,
) -> anyhow::Result<()> {
    let pod = cluster::task_pod("task-deleted", drs, &[("big", drs.objects["big"].as_str())])?;
    let created = cluster::create_pod(client, TASKS, &pod).await?;
    let watch = KeyWatch::new(node, &uid(&created));
    let pods: Api<Pod> = Api::namespaced(client.clone(), TASKS);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !watch.key_file().exists() {
        ensure!(Instant::now() < deadline, "the key never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pods.delete("task-deleted", &DeleteParams::default())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while pods.get_opt("task-deleted").await?.is_some() {
        ensure!(
            Instant::now() < deadline,
            "the pod was not deleted in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        !watch.key_file().exists(),
        "{} exists after the pod was deleted",
        watch.key_file().display()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_run_on_a_real_node_and_teardown_leaves_nothing() -> anyhow::Result<()> {
    let started = Instant::now();
    let node = Node::start().await?;
    eprintln!("node Ready after {:.1} s", started.elapsed().as_secs_f64());
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
    record("plain task pod", plain_task_pod(&node, &client).await, t);
    let t = Instant::now();
    let setup = async {
        let report = cluster::install_operator(&node, &client).await?;
        eprintln!("{report}");
        let drs = DrsPod::start(
            &node,
            &client,
            TASKS,
            &[
                ("sample-reads", 1_048_576 + 17),
                ("sample-index", 65_536),
                ("big", BIG),
            ],
        )
        .await?;
        cluster::task_namespace(&client, TASKS, &drs).await?;
        Ok::<_, anyhow::Error>(drs)
    }
    .await;
    match setup {
        Err(err) => record(
            "operator from manifests, DRS server from its image",
            Err(err),
            t,
        ),
        Ok(drs) => {
            record(
                "operator from manifests, DRS server from its image",
                Ok(()),
                t,
            );
            let t = Instant::now();
            record(
                "injected pod succeeds",
                injected_pod_succeeds(&node, &client, &drs).await,
                t,
            );
            let t = Instant::now();
            record(
                "unwrapped task keeps the SIGTERM path",
                unwrapped_task_keeps_the_sigterm_path(&node, &client, &drs).await,
                t,
            );
            let t = Instant::now();
            record(
                "OnFailure retry still has the key",
                on_failure_retry_still_has_the_key(&node, &client, &drs).await,
                t,
            );
            let t = Instant::now();
            record(
                "TESK-shaped Job",
                tesk_job_completes(&node, &client, &drs).await,
                t,
            );
            let t = Instant::now();
            record(
                "failing input fails the pod",
                failing_input_fails_pod(&node, &client, &drs).await,
                t,
            );
            let t = Instant::now();
            record(
                "sidecar SIGKILLed mid-fetch recovers",
                sidecar_killed_mid_fetch_recovers(&node, &client, &drs).await,
                t,
            );
            let t = Instant::now();
            record(
                "kubectl c4gh status on real pods",
                plugin_status_reads_real_pods(&node, &client, &drs).await,
                t,
            );
            let t = Instant::now();
            record(
                "pod deleted mid-fetch leaves no key",
                deleted_mid_fetch_leaves_no_key(&node, &client, &drs).await,
                t,
            );
        }
    }
    drop(client);
    let t = Instant::now();
    drop(node);
    eprintln!("node torn down in {:.1} s", t.elapsed().as_secs_f64());
    let leftovers = snapshot.leftovers();
    if !leftovers.is_empty() {
        failures.push(format!("teardown left:\n{}", leftovers.join("\n")));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}
