//! The deployed TESK, unmodified, on the real node: a TES task with a `drs://` input posted to
//! the real Java `tesk-api` (built from its snapshot by `cargo xtask setup`) becomes TESK's
//! ConfigMap and taskmaster Job; the operator's TESK webhook adapts the ConfigMap; the real
//! taskmaster (tesk-core a50995a, in its image) runs in the Job's pod and creates the executor
//! Job; the Job controller's pod gets the sidecar from the pods webhook; the sidecar fetches the
//! input from the DRS server; the executor (the task image) computes the SHA-256 of the
//! decrypted input; and `GET /ga4gh/tes/v1/tasks/{id}?view=FULL` reports `COMPLETE` with that
//! checksum in the executor's stdout. See `c4gh_e2e::tesk` for the one stand-in (the pod
//! network).

// Assertion helpers outside #[test] functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use c4gh_contract::annotations as keys;
use c4gh_e2e::cluster::{self, DrsPod};
use c4gh_e2e::node::{self, Node};
use c4gh_e2e::tesk::{self, TeskApi};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::{Value, json};

/// TESK's namespace.
const NS: &str = "tesk";
/// The TES states in which a task stays.
const FINAL: &[&str] = &["COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"];

/// How long `SYSTEM_ERROR` must last before it counts as final. tesk-api derives the state from
/// the taskmaster Job (`TesKubernetesConverter::extractStateFromK8sJobs`) and falls through to
/// `SYSTEM_ERROR` while a just-created Job has neither an active pod nor a result yet: a fresh
/// machine's CI run saw that 3.5 s after the POST, before the Job controller made the pod.
const SYSTEM_ERROR_SETTLES: Duration = Duration::from_secs(15);

/// Polls `GET /tasks/{id}?view=FULL` until the task is in a final state (`SYSTEM_ERROR` only
/// once it has lasted [`SYSTEM_ERROR_SETTLES`]).
async fn wait_final(api: &TeskApi, id: &str, timeout: Duration) -> anyhow::Result<Value> {
    let deadline = Instant::now() + timeout;
    let mut system_error_since: Option<Instant> = None;
    loop {
        let (status, body) = api.request("GET", &format!("/tasks/{id}?view=FULL"), None)?;
        ensure!(status == 200, "GET task {id}: HTTP {status}: {body}");
        let task: Value = serde_json::from_str(&body)?;
        let state = task["state"].as_str().unwrap_or_default();
        if state == "SYSTEM_ERROR" {
            if system_error_since.is_none() {
                eprintln!("task {id} reads SYSTEM_ERROR; final only if it lasts");
            }
            let since = *system_error_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= SYSTEM_ERROR_SETTLES {
                return Ok(task);
            }
        } else if FINAL.contains(&state) {
            return Ok(task);
        } else {
            system_error_since = None;
        }
        ensure!(
            Instant::now() < deadline,
            "task {id} still {state} after {} s: {body}\ntesk-api:\n{}",
            timeout.as_secs(),
            api.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What the pods of the task's Jobs ended as, for failure messages.
async fn pods_of(client: &Client, id: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let Ok(list) = pods.list(&ListParams::default()).await else {
        return "(pods not listed)".into();
    };
    list.items
        .iter()
        .filter(|p| {
            p.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(id))
        })
        .map(|p| {
            format!(
                "{}: {}",
                p.metadata.name.clone().unwrap_or_default(),
                serde_json::to_string(&p.status).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A TES task reading one `drs://` input ends `COMPLETE`, its executor's stdout holding the
/// SHA-256 of the input's plaintext.
async fn drs_task_completes(
    node: &Node,
    client: &Client,
    api: &TeskApi,
    drs: &DrsPod,
) -> anyhow::Result<()> {
    let task = json!({
        "name": "checksum",
        "inputs": [{
            "name": "reads",
            "url": drs.uri("sample-reads"),
            "path": "/data/in/sample-reads.bam",
            "type": "FILE"
        }],
        "executors": [{
            "image": node::image("c4gh-task"),
            "command": ["sha256sum", "/data/in/sample-reads.bam"]
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
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let stored = config_maps.get(&id).await?;
    let annotations = stored.metadata.annotations.clone().unwrap_or_default();
    ensure!(
        annotations.get(keys::STATUS).map(String::as_str) == Some(keys::STATUS_ADAPTED),
        "tesk-api's ConfigMap {id} is stored adapted: {annotations:?}"
    );
    let done = wait_final(api, &id, Duration::from_secs(300)).await?;
    let state = done["state"].as_str().unwrap_or_default();
    let want = &drs.objects["sample-reads"];
    let stdout = done["logs"][0]["logs"][0]["stdout"]
        .as_str()
        .unwrap_or_default();
    if state != "COMPLETE" {
        bail!(
            "task {id} ended {state}: {}\npods:\n{}\n{}",
            serde_json::to_string_pretty(&done)?,
            pods_of(client, &id).await,
            node.log_tails(20)
        );
    }
    ensure!(
        stdout.trim() == format!("{want}  /data/in/sample-reads.bam"),
        "the executor's stdout is the input's SHA-256 {want}: {stdout:?}"
    );
    ensure!(
        done["logs"][0]["logs"][0]["exit_code"] == json!(0),
        "executor exit code: {}",
        done["logs"][0]["logs"][0]
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let executors = pods
        .list(&ListParams::default().labels(&format!("job-name={id}-ex-00")))
        .await?;
    let injected = executors.items.iter().any(|p| {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(keys::STATUS))
            .is_some_and(|s| s == keys::STATUS_INJECTED)
    });
    ensure!(
        injected,
        "the executor pod was injected: {}",
        pods_of(client, &id).await
    );
    eprintln!("{}", serde_json::to_string_pretty(&done)?);
    Ok(())
}

/// A task naming a DRS host outside the policy is refused at `POST /tasks` (the webhook denies
/// TESK's ConfigMap) and nothing of it is started. What the TES client gets back is printed: Java
/// tesk-api answers 500 without the webhook's reason (docs/operator.md, "TESK").
async fn denied_task_is_refused(client: &Client, api: &TeskApi) -> anyhow::Result<()> {
    let task = json!({
        "name": "denied",
        "inputs": [{"url": "drs://drs.evil.example/x", "path": "/data/in/x", "type": "FILE"}],
        "executors": [{"image": node::image("c4gh-task"), "command": ["true"]}]
    });
    let (status, body) = api.request("POST", "/tasks", Some(&task))?;
    eprintln!("denied task: POST /tasks answered HTTP {status}: {body}");
    ensure!(
        status != 200,
        "a task outside the policy was accepted: {body}"
    );
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), NS);
    let started = jobs
        .list(&ListParams::default().labels("job-type=taskmaster"))
        .await?
        .items
        .into_iter()
        .filter_map(|j| j.metadata.annotations)
        .any(|a| a.get("tes-task-name").is_some_and(|n| n == "denied"));
    ensure!(!started, "a taskmaster Job was started for the denied task");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tesk_runs_a_drs_task_to_complete_on_the_real_node() -> anyhow::Result<()> {
    let started = Instant::now();
    let node = Node::start().await?;
    eprintln!("node Ready after {:.1} s", started.elapsed().as_secs_f64());
    let client = node.client().await?;
    let t = Instant::now();
    eprintln!("{}", cluster::install_operator(&node, &client).await?);
    let reader = format!("system:serviceaccount:{NS}:default");
    let drs =
        DrsPod::start_for(&node, &client, &reader, &[("sample-reads", 1_048_576 + 17)]).await?;
    tesk::tesk_namespace(
        &node,
        &client,
        NS,
        &drs,
        &json!({"allowedModes": ["plaintext"], "defaultMode": "plaintext", "maxPlaintextBytes": 4_194_304}),
    )
    .await?;
    let api = TeskApi::start(&node, NS).await?;
    eprintln!(
        "operator, DRS server, tesk-api up after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let mut outcome = drs_task_completes(&node, &client, &api, &drs).await;
    eprintln!("drs task: {:.1} s", t.elapsed().as_secs_f64());
    let denied = denied_task_is_refused(&client, &api).await;
    outcome = match (outcome, denied) {
        (Ok(()), other) => other,
        (Err(err), Ok(())) => Err(err),
        (Err(err), Err(also)) => Err(err.context(format!("and the denied task: {also:#}"))),
    };
    drop(api);
    drop(client);
    drop(node);
    outcome
}
