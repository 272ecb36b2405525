//! Pod start-up on the real node (`cargo xtask bench e2e`): for each series, pods created one
//! after another, each timed from `create` to the first moment the apiserver shows its task
//! container running; with the sidecar and 1, 10 and 100 small inputs, and the same pod without
//! the sidecar (not opted in). For every pod with the sidecar also the time from the task's exit
//! (its own timestamp, written as its last act) to the key file's disappearance on the node's
//! tmpfs (polled every 10 ms from the host).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use kube::{Api, Client};

use crate::Error;
use crate::cluster::{self, DrsPod, KeyWatch};
use crate::node::Node;

const NAMESPACE: &str = "bench";
/// Size of each small input.
const SMALL: usize = 1024;
/// The input counts with the sidecar (the default series).
pub const INPUT_COUNTS: [usize; 3] = [1, 10, 100];
/// Objects the DRS server serves: the largest input count allowed.
pub const MAX_INPUTS: usize = 100;

/// Percentiles of one series, in seconds.
#[derive(Debug, Clone)]
pub struct Series {
    /// What was measured.
    pub label: String,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
    /// Samples.
    pub n: usize,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct StartupReport {
    /// `create` → task container running, without the sidecar.
    pub without: Series,
    /// The same with the sidecar, per input count in the order asked for.
    pub with: Vec<(usize, Series)>,
    /// Task exit → key file gone, over every pod with the sidecar.
    pub key_gone: Series,
}

/// Starts the node, installs the operator and a DRS server with [`MAX_INPUTS`] small objects,
/// then runs `pods` pods per series: without the sidecar, then with it and each of `counts`
/// inputs (see the module documentation).
pub async fn startup(
    pods: usize,
    counts: &[usize],
    narrate: &dyn Fn(&str),
) -> Result<StartupReport, Error> {
    if let Some(count) = counts.iter().find(|&&c| c == 0 || c > MAX_INPUTS) {
        return Err(Error::Unexpected(format!(
            "input count {count}: each series needs 1 to {MAX_INPUTS} inputs"
        )));
    }
    let node = Node::start().await?;
    let client = node.client().await?;
    cluster::install_operator(&node, &client).await?;
    let ids: Vec<String> = (0..MAX_INPUTS).map(|i| format!("small-{i:03}")).collect();
    let objects: Vec<(&str, usize)> = ids.iter().map(|id| (id.as_str(), SMALL)).collect();
    let drs = DrsPod::start(&node, &client, NAMESPACE, &objects).await?;
    cluster::task_namespace(&client, NAMESPACE, &drs).await?;
    // One warm-up pod of each kind (first use of the images and the policy cache).
    run_pod(&node, &client, "warmup-plain", None).await?;
    let one: Vec<&str> = ids.iter().take(1).map(String::as_str).collect();
    run_pod(&node, &client, "warmup-sidecar", Some((&drs, &one))).await?;

    let mut without = Vec::new();
    for i in 0..pods {
        let (start, _) = run_pod(&node, &client, &format!("plain-{i}"), None).await?;
        without.push(start);
    }
    let without = series("without the sidecar", without);
    narrate(&line(&without));
    let mut with = Vec::new();
    let mut gone = Vec::new();
    for &count in counts {
        let inputs: Vec<&str> = ids.iter().take(count).map(String::as_str).collect();
        let mut samples = Vec::new();
        for i in 0..pods {
            let (start, lag) = run_pod(
                &node,
                &client,
                &format!("in{count}-{i}"),
                Some((&drs, &inputs)),
            )
            .await?;
            samples.push(start);
            gone.extend(lag);
        }
        let s = series(&format!("with the sidecar, {count} inputs"), samples);
        narrate(&line(&s));
        with.push((count, s));
    }
    let key_gone = series("task exit -> key file gone", gone);
    narrate(&line(&key_gone));
    drop(drs);
    drop(client);
    drop(node);
    Ok(StartupReport {
        without,
        with,
        key_gone,
    })
}

/// One line per series.
pub fn line(s: &Series) -> String {
    format!(
        "  {:<36} p50 {:.3} s  p99 {:.3} s  max {:.3} s  (n={})",
        s.label, s.p50, s.p99, s.max, s.n
    )
}

/// Creates one pod, returns (create → task running, task exit → key gone), waits for it to
/// succeed and deletes it.
async fn run_pod(
    node: &Node,
    client: &Client,
    name: &str,
    inputs: Option<(&DrsPod, &[&str])>,
) -> Result<(f64, Option<f64>), Error> {
    let pod = cluster::pod_running(name, inputs, "true")?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let started = Instant::now();
    let created = cluster::create_pod(client, NAMESPACE, &pod).await?;
    let watch = KeyWatch::new(node, created.metadata.uid.as_deref().unwrap_or_default());
    let deadline = started + Duration::from_secs(180);
    let mut running_after = None;
    let mut key_seen = false;
    let mut gone_at = None;
    let mut exited = None;
    loop {
        let current = pods.get(name).await?;
        // The kubelet removes the pod's volumes soon after it ends: read them while it runs.
        exited = exited.or_else(|| watch.task_exited());
        let status = current.status.clone().unwrap_or_default();
        if running_after.is_none() {
            let started_task = status
                .container_statuses
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|c| {
                    c.name == "task"
                        && c.state
                            .as_ref()
                            .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
                });
            if started_task {
                running_after = Some(started.elapsed().as_secs_f64());
            }
        }
        if inputs.is_some() {
            let exists = watch.key_file().exists();
            key_seen |= exists;
            if key_seen && !exists && gone_at.is_none() {
                gone_at = Some(cluster::now());
            }
        }
        let phase = status.phase.unwrap_or_default();
        if phase == "Failed" {
            return Err(Error::Unexpected(format!(
                "bench pod {name} failed: {}",
                serde_json::to_string(&current.status).unwrap_or_default()
            )));
        }
        if phase == "Succeeded" && (inputs.is_none() || gone_at.is_some() || !key_seen) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("bench pod {name} to succeed"),
                log_tail: node.log_tails(20),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lag = match (exited, gone_at) {
        (Some(exited), Some(gone)) => Some(gone - exited),
        _ => None,
    };
    if inputs.is_some() && lag.is_none() {
        return Err(Error::Unexpected(format!(
            "bench pod {name}: task exit or key removal not observed (key seen: {key_seen})"
        )));
    }
    pods.delete(name, &DeleteParams::default()).await?;
    let running_after = running_after.ok_or_else(|| {
        Error::Unexpected(format!(
            "bench pod {name}: task container never seen running"
        ))
    })?;
    Ok((running_after, lag))
}

fn series(label: &str, mut samples: Vec<f64>) -> Series {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let index = ((samples.len() as f64 * q).ceil() as usize).saturating_sub(1);
        samples.get(index).copied().unwrap_or_default()
    };
    Series {
        label: label.to_owned(),
        p50: at(0.50),
        p99: at(0.99),
        max: samples.last().copied().unwrap_or_default(),
        n: samples.len(),
    }
}
