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
            if observed.task_exited.is_none() {
                observed.task_exited = watch.task_exited();
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

/// The injected pod runs: native sidecar with its startup probe, the gate, the task decrypting
/// with the reference tool under another UID reading the key through fsGroup, SIGTERM after the
/// task destroying the key, `Succeeded`.
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
            && init[0].startup_probe.is_some()
            && init[1].name == GATE_CONTAINER,
        "injected: native sidecar with a startup probe, then the gate: {:?}",
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
    let (exited, gone) = (observed.task_exited, observed.gone_at);
    let lag = match (exited, gone) {
        (Some(exited), Some(gone)) => gone - exited,
        _ => bail!("task exit {exited:?} / key gone {gone:?} not both observed"),
    };
    eprintln!("key gone {lag:.2} s after the task exited");
    ensure!(
        lag <= 2.0,
        "the key was gone only {lag:.2} s after the task exited"
    );
    ensure!(
        sidecar_log.contains("key_shredded=true") || sidecar_log.contains("\"key_shredded\":true"),
        "the sidecar reports the key shredded: {sidecar_log}"
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
    Ok(())
}

/// The sidecar killed with SIGKILL while it fetches: the kubelet restarts it, the new one
/// shreds what the dead one left, fetches again and the pod succeeds.
async fn sidecar_killed_mid_fetch_recovers(
    node: &Node,
    client: &Client,
    drs: &DrsPod,
) -> anyhow::Result<()> {
    let pod = cluster::task_pod("task-killed", drs, &[("big", drs.objects["big"].as_str())])?;
    cluster::create_pod(client, TASKS, &pod).await?;
    let (pod, _) = watch_pod(node, client, TASKS, "task-killed", |pod| async move {
        // The pod status may not name the container yet; containerd's labels do.
        let filter = format!(
            "labels.\"io.kubernetes.pod.uid\"=={},labels.\"io.kubernetes.container.name\"=={SIDECAR_CONTAINER}",
            uid(&pod)
        );
        let ids = node.ctr(&["containers", "list", "--quiet", &filter])?;
        let id = ids.lines().next().context("containerd has no sidecar container")?;
        node.ctr(&["tasks", "kill", "--signal", "SIGKILL", id.trim()])?;
        Ok(())
    })
    .await?;
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
