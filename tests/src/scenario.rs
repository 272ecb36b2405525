//! The whole flow on the real node, narrated: `cargo xtask demo`.
//!
//! 1. a node (`crate::node`: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
//!    containerd, kubelet) on loopback, the project's images imported;
//! 2. the operator installed with `kubectl apply -k` (`manifests/overlays/local-node`), the DRS
//!    server running from its image with two objects encrypted from random data, a namespace
//!    with a `Crypt4ghPolicy` using projected, audience-bound ServiceAccount tokens;
//! 3. an opted-in task pod created through the apiserver: its injected spec, `kubectl get pod`
//!    as it progresses, the key file on the node's tmpfs while it runs, the task's output (the
//!    reference `crypt4gh` decrypting with only `C4GH_SECRET_KEY`, SHA-256 checked), the key
//!    gone after the task exits;
//! 4. a pod naming an object the server lacks: `Failed`, with the gate's termination message;
//! 5. teardown, and the host checked for leftovers.
//!
//! Every step is checked; a failed check is an error naming what differed. The same pieces are
//! tested by `tests/tests/node.rs`.

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

use c4gh_contract::pod::{GATE_CONTAINER, OWN_VOLUME_PREFIX, SIDECAR_CONTAINER};
use c4gh_contract::{annotations, env};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;

use crate::cluster::{self, DrsPod, KeyWatch};
use crate::node::{self, Node};
use crate::{Error, manifests};

/// Namespace of the task pods.
pub const NAMESPACE: &str = "tasks";

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(Error::Unexpected(what()))
    }
}

/// Runs the flow; see the module documentation. `narrate` receives one readable line per step.
pub async fn run(narrate: &dyn Fn(&str)) -> Result<(), Error> {
    narrate(
        "Starting a node: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd and kubelet on 127.0.0.1…",
    );
    let started = Instant::now();
    let node = Node::start().await?;
    narrate(&format!(
        "  node {} Ready after {:.1} s; images imported: {}",
        node::NODE_NAME,
        started.elapsed().as_secs_f64(),
        node::IMAGES
            .iter()
            .map(|name| node::image(name))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let snapshot = node.snapshot();
    let client = node.client().await?;

    narrate(
        "Installing the operator: kubectl apply --server-side -k manifests/overlays/local-node",
    );
    for line in cluster::install_operator(&node, &client).await?.lines() {
        narrate(&format!("  {line}"));
    }
    narrate(&format!(
        "  operator pod ready; MutatingWebhookConfiguration c4gh-operator → {}",
        cluster::WEBHOOK_URL
    ));

    narrate("Starting the DRS server from its image with two objects made from random data…");
    let drs = DrsPod::start(
        &node,
        &client,
        NAMESPACE,
        &[("sample-reads", 1_048_576 + 17), ("sample-index", 65_536)],
    )
    .await?;
    for (id, digest) in &drs.objects {
        narrate(&format!("  {} (sha256 {digest})", drs.uri(id)));
    }
    narrate(&format!(
        "Namespace {NAMESPACE}: ServiceAccount {}, Crypt4ghPolicy allowing {} with projected \
         ServiceAccount tokens (audience {})",
        cluster::TASK_ACCOUNT,
        drs.authority,
        cluster::DRS_AUDIENCE
    ));
    cluster::task_namespace(&client, NAMESPACE, &drs).await?;

    let inputs: Vec<(&str, &str)> = drs
        .objects
        .iter()
        .map(|(id, digest)| (id.as_str(), digest.as_str()))
        .collect();
    narrate("Creating an opted-in task pod through the apiserver…");
    let pod = cluster::task_pod("task-ok", &drs, &inputs)?;
    let created = cluster::create_pod(&client, NAMESPACE, &pod).await?;
    describe_injection(&created, narrate)?;
    let watch = KeyWatch::new(&node, created.metadata.uid.as_deref().unwrap_or_default());
    let pod = follow(&node, &client, "task-ok", &watch, narrate).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let task_log = pods
        .logs(
            "task-ok",
            &LogParams {
                container: Some("task".into()),
                ..LogParams::default()
            },
        )
        .await?;
    narrate("  the task's output (kubectl logs task-ok -c task):");
    for line in task_log.lines() {
        narrate(&format!("    {line}"));
    }
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    check(
        phase == "Succeeded" && task_log.matches("matches the original").count() == 2,
        || format!("task pod ended {phase}: {task_log}"),
    )?;

    narrate("A pod naming an object the DRS server does not have:");
    let missing = cluster::task_pod("task-missing", &drs, &[("no-such-object", "0")])?;
    cluster::create_pod(&client, NAMESPACE, &missing).await?;
    let pod = node::wait_for_phase(
        &node,
        &client,
        NAMESPACE,
        "task-missing",
        &["Succeeded", "Failed"],
        Duration::from_secs(180),
    )
    .await?;
    let status = pod.status.unwrap_or_default();
    let message = status
        .init_container_statuses
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == GATE_CONTAINER)
        .and_then(|c| c.state)
        .and_then(|s| s.terminated)
        .and_then(|t| t.message)
        .unwrap_or_default();
    narrate(&format!(
        "  phase {}; the gate's termination message in the pod status: {}",
        status.phase.unwrap_or_default(),
        message.trim()
    ));

    drop(drs);
    drop(client);
    drop(node);
    let leftovers = snapshot.leftovers();
    check(leftovers.is_empty(), || {
        format!("the node left state behind: {}", leftovers.join("; "))
    })?;
    narrate("Stopped everything; no process, mount, cgroup, directory or changed sysctl is left.");
    Ok(())
}

/// Prints `kubectl get pod NAME` whenever its line changes and the key file's life on the node,
/// until the pod ends.
async fn follow(
    node: &Node,
    client: &kube::Client,
    name: &str,
    watch: &KeyWatch,
    narrate: &dyn Fn(&str),
) -> Result<Pod, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let started = Instant::now();
    let mut last = String::new();
    let mut key_seen = false;
    let mut gone_at = None;
    let mut exited = None;
    let mut last_kubectl = None;
    narrate(&format!("  kubectl get pod {name} -n {NAMESPACE}:"));
    loop {
        // The kubelet removes the pod's volumes soon after it ends: read them while it runs.
        exited = exited.or_else(|| watch.task_exited());
        // kubectl twice a second; the key file every 20 ms.
        if last_kubectl.is_none_or(|at: Instant| at.elapsed() >= Duration::from_millis(500)) {
            last_kubectl = Some(Instant::now());
            let output = Command::new(manifests::kubectl())
                .arg(format!(
                    "--kubeconfig={}",
                    node.plane().kubeconfig().display()
                ))
                .args(["get", "pod", name, "-n", NAMESPACE, "--no-headers"])
                .output()
                .map_err(|source| Error::Io {
                    context: "running kubectl get pod".into(),
                    source,
                })?;
            let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if line != last {
                narrate(&format!(
                    "    {:>5.1} s  {line}",
                    started.elapsed().as_secs_f64()
                ));
                last = line;
            }
        }
        let key = watch.key_file();
        match std::fs::metadata(&key) {
            Ok(meta) if !key_seen => {
                key_seen = true;
                narrate(&format!(
                    "    key {} on the node: mode {:o}, owner {}:{}, {}",
                    key.display(),
                    meta.mode() & 0o777,
                    meta.uid(),
                    meta.gid(),
                    if watch.on_tmpfs() {
                        "tmpfs"
                    } else {
                        "NOT tmpfs"
                    }
                ));
            }
            Err(_) if key_seen && gone_at.is_none() => gone_at = Some(cluster::now()),
            _ => {}
        }
        let pod = pods.get(name).await?;
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            match (exited, gone_at) {
                (Some(exited), Some(gone)) => narrate(&format!(
                    "    the key file was gone {:.2} s after the task exited (c4gh-exec's exit \
                     notice told the sidecar, which overwrote and unlinked it)",
                    gone - exited
                )),
                _ => {
                    return Err(Error::Unexpected(format!(
                        "the key's removal was not observed (seen: {key_seen})"
                    )));
                }
            }
            return Ok(pod);
        }
        if started.elapsed() > Duration::from_secs(240) {
            return Err(Error::Timeout {
                what: format!("pod {name} to end"),
                log_tail: node.log_tails(20),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn describe_injection(pod: &Pod, narrate: &dyn Fn(&str)) -> Result<Vec<String>, Error> {
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| Error::Unexpected("stored pod has no spec".into()))?;
    let init = spec.init_containers.clone().unwrap_or_default();
    let names: Vec<String> = init.iter().map(|c| c.name.clone()).collect();
    check(
        names.first().map(String::as_str) == Some(SIDECAR_CONTAINER)
            && init[0].restart_policy.as_deref() == Some("Always"),
        || format!("the stored pod has no native sidecar first: init containers {names:?}"),
    )?;
    let status = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::STATUS))
        .cloned()
        .unwrap_or_default();
    narrate(&format!(
        "  stored pod {}: c4gh.dev/status={status}",
        pod.metadata.name.as_deref().unwrap_or("?")
    ));
    for c in &init {
        narrate(&format!(
            "    initContainer {} (args {:?}, restartPolicy {})",
            c.name,
            c.args.clone().unwrap_or_default(),
            c.restart_policy.as_deref().unwrap_or("-")
        ));
    }
    for v in spec.volumes.as_deref().unwrap_or_default() {
        if v.name.starts_with(OWN_VOLUME_PREFIX) {
            let kind = if let Some(e) = &v.empty_dir {
                format!(
                    "emptyDir medium={} sizeLimit={}",
                    e.medium.as_deref().unwrap_or("-"),
                    e.size_limit.as_ref().map_or("-", |q| q.0.as_str())
                )
            } else if v.secret.is_some() {
                "secret".to_owned()
            } else if v.config_map.is_some() {
                "configMap".to_owned()
            } else {
                "other".to_owned()
            };
            narrate(&format!("    volume {} ({kind})", v.name));
        }
    }
    for c in &spec.containers {
        let key = c
            .env
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|e| e.name == env::SECRET_KEY)
            .and_then(|e| e.value.clone())
            .unwrap_or_default();
        narrate(&format!(
            "    task container {}: C4GH_SECRET_KEY={key}",
            c.name
        ));
    }
    Ok(names)
}
