//! Pod start-up on the real node (`cargo xtask bench e2e`): for each series, pods created one
//! after another, each timed from `create` to the first moment the apiserver shows its task
//! container running; with the sidecar and 1, 10 and 100 small inputs, and the same pod without
//! the sidecar (not opted in). For every pod with the sidecar also the time from the task's exit
//! (its own timestamp, written as its last act) to the key file's disappearance on the node's
//! tmpfs (polled every 10 ms from the host). The task's command is explicit, so it runs behind
//! `c4gh-exec`, whose exit notice ends the key; the SIGTERM the kubelet sends later shows in the
//! breakdown.
//!
//! Each pod also yields a timeline ([`Breakdown`]): the task shell's own start and exit stamps,
//! and the moments the sidecar's and the gate's log lines reached the container runtime (the
//! CRI log timestamps, read through the API before the pod is deleted), so that a report says
//! where the start-up overhead and the key-removal lag go.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, LogParams};
use kube::{Api, Client};

use crate::Error;
use crate::cluster::{self, DrsPod, KeyWatch};
use crate::node::Node;
use c4gh_contract::pod::{GATE_CONTAINER, SIDECAR_CONTAINER};

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

/// A log line that marks a step.
struct Mark {
    container: &'static str,
    /// A substring of the line; the empty string matches the first line, i.e. the process's
    /// first output.
    needle: &'static str,
    label: &'static str,
    /// Whether the last matching line counts rather than the first.
    last: bool,
}

const fn mark(container: &'static str, needle: &'static str, label: &'static str) -> Mark {
    Mark {
        container,
        needle,
        label,
        last: false,
    }
}

/// The steps read from the sidecar's and the gate's logs.
const LOG_MARKS: [Mark; 12] = [
    mark(SIDECAR_CONTAINER, "", "sidecar: first log line"),
    mark(
        SIDECAR_CONTAINER,
        "ephemeral key written",
        "sidecar: key written",
    ),
    mark(
        SIDECAR_CONTAINER,
        "fetching inputs",
        "sidecar: fetching inputs",
    ),
    mark(
        SIDECAR_CONTAINER,
        "server flavour",
        "sidecar: flavour detected",
    ),
    mark(
        SIDECAR_CONTAINER,
        "input in place",
        "sidecar: first input in place",
    ),
    Mark {
        last: true,
        ..mark(
            SIDECAR_CONTAINER,
            "input in place",
            "sidecar: last input in place",
        )
    },
    mark(
        SIDECAR_CONTAINER,
        "fetch summary",
        "sidecar: inputs fetched",
    ),
    mark(GATE_CONTAINER, "", "gate: first log line"),
    mark(GATE_CONTAINER, "inputs ready", "gate: ready, exiting"),
    mark(
        SIDECAR_CONTAINER,
        "task containers ended",
        "sidecar: exit notice seen",
    ),
    mark(
        SIDECAR_CONTAINER,
        "signal received",
        "sidecar: SIGTERM received",
    ),
    mark(SIDECAR_CONTAINER, "key destroyed", "sidecar: key destroyed"),
];
/// The marks timed from the task's exit rather than from `create`.
const AFTER_EXIT: [&str; 4] = [
    "sidecar: exit notice seen",
    "sidecar: SIGTERM received",
    "sidecar: key destroyed",
    "key file gone (host)",
];

/// Where the time of one series goes: per step, seconds since `create` (start-up steps) or
/// since the task's exit (teardown steps), over the pods of the series.
#[derive(Debug, Clone, Default)]
pub struct Breakdown {
    /// Start-up steps in the order of their medians.
    pub startup: Vec<Series>,
    /// Teardown steps (after the task's exit) in the order of their medians.
    pub teardown: Vec<Series>,
}

/// One pod's timeline: (label, seconds since the epoch).
type Marks = Vec<(String, f64)>;

impl Breakdown {
    fn of(runs: &[PodRun]) -> Self {
        let mut startup: Vec<(String, Vec<f64>)> = Vec::new();
        let mut teardown: Vec<(String, Vec<f64>)> = Vec::new();
        for run in runs {
            for (label, at) in &run.marks {
                let (base, into) = if AFTER_EXIT.contains(&label.as_str()) {
                    match run.exited {
                        Some(exited) => (exited, &mut teardown),
                        None => continue,
                    }
                } else {
                    (run.created, &mut startup)
                };
                match into.iter_mut().find(|(l, _)| l == label) {
                    Some((_, samples)) => samples.push(at - base),
                    None => into.push((label.clone(), vec![at - base])),
                }
            }
        }
        let finish = |steps: Vec<(String, Vec<f64>)>| {
            let mut out: Vec<Series> = steps
                .into_iter()
                .map(|(label, samples)| series(&label, samples))
                .collect();
            out.sort_by(|a, b| a.p50.total_cmp(&b.p50));
            out
        };
        Breakdown {
            startup: finish(startup),
            teardown: finish(teardown),
        }
    }

    /// One line per step.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec!["    start-up, seconds after create:".to_owned()];
        out.extend(self.startup.iter().map(|s| format!("  {}", line(s))));
        if !self.teardown.is_empty() {
            out.push("    teardown, seconds after the task's exit:".to_owned());
            out.extend(self.teardown.iter().map(|s| format!("  {}", line(s))));
        }
        out
    }
}

/// What one pod measured.
struct PodRun {
    /// `create` → task container running (as the apiserver shows it).
    running_after: f64,
    /// Task exit → key file gone.
    lag: Option<f64>,
    /// `create`, seconds since the epoch.
    created: f64,
    /// The task's exit, seconds since the epoch.
    exited: Option<f64>,
    /// The timeline.
    marks: Marks,
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
    /// Where the time went without the sidecar, then per input count with it.
    pub breakdowns: Vec<(String, Breakdown)>,
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

    let mut runs = Vec::new();
    for i in 0..pods {
        runs.push(run_pod(&node, &client, &format!("plain-{i}"), None).await?);
    }
    let without = series(
        "without the sidecar",
        runs.iter().map(|r| r.running_after).collect(),
    );
    narrate(&line(&without));
    let mut breakdowns = vec![("without the sidecar".to_owned(), Breakdown::of(&runs))];
    let mut with = Vec::new();
    let mut gone = Vec::new();
    for &count in counts {
        let inputs: Vec<&str> = ids.iter().take(count).map(String::as_str).collect();
        let mut runs = Vec::new();
        for i in 0..pods {
            let run = run_pod(
                &node,
                &client,
                &format!("in{count}-{i}"),
                Some((&drs, &inputs)),
            )
            .await?;
            gone.extend(run.lag);
            runs.push(run);
        }
        let label = format!("with the sidecar, {count} inputs");
        let s = series(&label, runs.iter().map(|r| r.running_after).collect());
        narrate(&line(&s));
        with.push((count, s));
        breakdowns.push((label, Breakdown::of(&runs)));
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
        breakdowns,
    })
}

/// The marks of [`LOG_MARKS`] found in the logs of pod `name` (CRI timestamps: when the
/// runtime read the line).
async fn log_marks(pods: &Api<Pod>, name: &str) -> Marks {
    let mut marks = Marks::new();
    for container in [SIDECAR_CONTAINER, GATE_CONTAINER] {
        let params = LogParams {
            container: Some(container.to_owned()),
            timestamps: true,
            ..LogParams::default()
        };
        // A log that cannot be read gives no marks: the series themselves are still measured.
        let Ok(text) = pods.logs(name, &params).await else {
            continue;
        };
        for m in LOG_MARKS.iter().filter(|m| m.container == container) {
            let line = if m.last {
                text.lines().rev().find(|l| l.contains(m.needle))
            } else {
                text.lines().find(|l| l.contains(m.needle))
            };
            let found = line.and_then(|l| {
                let stamp = l.split(' ').next()?;
                let at: k8s_openapi::jiff::Timestamp = stamp.parse().ok()?;
                Some(at.as_nanosecond() as f64 / 1e9)
            });
            if let Some(at) = found {
                marks.push((m.label.to_owned(), at));
            }
        }
    }
    marks
}

/// One line per series.
pub fn line(s: &Series) -> String {
    format!(
        "  {:<36} p50 {:.3} s  p99 {:.3} s  max {:.3} s  (n={})",
        s.label, s.p50, s.p99, s.max, s.n
    )
}

/// Creates one pod, measures it (see [`PodRun`]), waits for it to succeed and deletes it.
async fn run_pod(
    node: &Node,
    client: &Client,
    name: &str,
    inputs: Option<(&DrsPod, &[&str])>,
) -> Result<PodRun, Error> {
    let pod = cluster::pod_running(name, inputs, "true")?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let created_at = cluster::now();
    let started = Instant::now();
    let created = cluster::create_pod(client, NAMESPACE, &pod).await?;
    let watch = KeyWatch::new(node, created.metadata.uid.as_deref().unwrap_or_default());
    let deadline = started + Duration::from_secs(180);
    let mut running_after = None;
    let mut key_seen = false;
    let mut gone_at = None;
    let mut exited = None;
    let mut task_started = None;
    let mut running_at = None;
    loop {
        let current = pods.get(name).await?;
        // The kubelet removes the pod's volumes soon after it ends: read them while it runs.
        exited = exited.or_else(|| watch.task_exited());
        task_started = task_started.or_else(|| watch.task_started());
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
                running_at = Some(cluster::now());
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
    let mut marks = if inputs.is_some() {
        log_marks(&pods, name).await
    } else {
        Marks::new()
    };
    let stamps = [
        ("task: shell started", task_started),
        ("task: running (apiserver)", running_at),
        ("key file gone (host)", gone_at),
    ];
    marks.extend(
        stamps
            .into_iter()
            .filter_map(|(label, at)| Some((label.to_owned(), at?))),
    );
    pods.delete(name, &DeleteParams::default()).await?;
    let running_after = running_after.ok_or_else(|| {
        Error::Unexpected(format!(
            "bench pod {name}: task container never seen running"
        ))
    })?;
    Ok(PodRun {
        running_after,
        lag,
        created: created_at,
        exited,
        marks,
    })
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
