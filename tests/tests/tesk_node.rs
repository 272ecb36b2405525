//! The deployed TESK, unmodified, on the real node: a TES task with a `drs://` input posted to
//! the real Java `tesk-api` (built from its snapshot by `cargo xtask setup`) becomes TESK's
//! ConfigMap and taskmaster Job; the operator's TESK webhook adapts the ConfigMap; the real
//! taskmaster (tesk-core a50995a, in its image) runs in the Job's pod and creates the executor
//! Job; the Job controller's pod gets the sidecar from the pods webhook; the sidecar fetches the
//! input from the DRS server; the executor (the task image) computes the SHA-256 of the
//! decrypted input; and `GET /ga4gh/tes/v1/tasks/{id}?view=FULL` reports `COMPLETE` with that
//! checksum in the executor's stdout. Then what the TES user sees when it goes wrong: a task
//! outside the policy and a task whose object the DRS server lacks both end `EXECUTOR_ERROR`
//! with the reason in the executor's log; and with `encrypted` inputs on the task PVC, a second
//! executor on the same input makes the DRS server send a header only. See `c4gh_e2e::tesk`
//! for the one stand-in (the pod network).

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
    let done = api.wait_final(&id, Duration::from_secs(300)).await?;
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

/// Posts `task` to tesk-api and returns the task id.
fn post_task(api: &TeskApi, task: &Value) -> anyhow::Result<String> {
    let (status, body) = api.request("POST", "/tasks", Some(task))?;
    ensure!(
        status == 200,
        "POST /tasks: HTTP {status}: {body}\ntesk-api:\n{}",
        api.log_tail(30)
    );
    Ok(serde_json::from_str::<Value>(&body)?["id"]
        .as_str()
        .context("POST /tasks returned no id")?
        .to_owned())
}

/// The stored task ConfigMap's `c4gh.dev/status`.
async fn config_map_status(client: &Client, id: &str) -> anyhow::Result<String> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let stored = config_maps.get(id).await?;
    Ok(stored
        .metadata
        .annotations
        .unwrap_or_default()
        .get(keys::STATUS)
        .cloned()
        .unwrap_or_default())
}

/// Waits for the task's end and checks what the TES user sees in `view=FULL`: the task failed
/// and the first executor's log (`logs[0].logs[0].stdout`, the executor container's log) holds
/// every one of `needles`.
async fn ends_with_reason(
    client: &Client,
    api: &TeskApi,
    id: &str,
    needles: &[&str],
) -> anyhow::Result<Value> {
    let done = api.wait_final(id, Duration::from_secs(300)).await?;
    let state = done["state"].as_str().unwrap_or_default();
    let log = done["logs"][0]["logs"][0]["stdout"]
        .as_str()
        .unwrap_or_default();
    let missing: Vec<&&str> = needles.iter().filter(|n| !log.contains(**n)).collect();
    if !matches!(state, "EXECUTOR_ERROR" | "SYSTEM_ERROR") || !missing.is_empty() {
        bail!(
            "task {id} should fail with a reason naming {missing:?}; it ended {state}: {}\npods:\n{}",
            serde_json::to_string_pretty(&done)?,
            pods_of(client, id).await
        );
    }
    eprintln!("task {id} ended {state}; the executor's log:\n{log}");
    Ok(done)
}

/// A task naming a DRS host outside the policy is accepted by tesk-api, stored refused, and
/// ends failed with the policy's reason in its executor's log: which task, executor and input,
/// which rule, and what to do. Nothing of it is injected or fetched.
async fn refused_task_says_why(client: &Client, api: &TeskApi) -> anyhow::Result<()> {
    let task = json!({
        "name": "refused",
        "inputs": [{"url": "drs://drs.evil.example/x", "path": "/data/in/x", "type": "FILE"}],
        "executors": [{"image": node::image("c4gh-task"), "command": ["touch", "/tmp/ran"]}]
    });
    let id = post_task(api, &task)?;
    ensure!(
        config_map_status(client, &id).await? == keys::STATUS_REFUSED,
        "the ConfigMap of task {id} is stored refused"
    );
    ends_with_reason(
        client,
        api,
        &id,
        &[
            &format!("TES task {id}, executor 0: input 0 (drs://drs.evil.example/x)"),
            "host \"drs.evil.example\" is not allowed by Crypt4ghPolicy \"default\"",
            "ask the cluster operator to add the host to spec.allowedHosts",
            "no command ran",
        ],
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let executors = pods
        .list(&ListParams::default().labels(&format!("job-name={id}-ex-00")))
        .await?;
    ensure!(
        !executors.items.is_empty()
            && executors.items.iter().all(|p| {
                p.metadata
                    .annotations
                    .as_ref()
                    .is_none_or(|a| !a.contains_key(keys::STATUS))
            }),
        "the refused executor ran, without the sidecar: {}",
        pods_of(client, &id).await
    );
    Ok(())
}

/// A task whose input the DRS server does not have is adapted and injected as usual; the fetch
/// fails, the executor's command does not run, and its log names the input and the fix.
async fn failed_fetch_says_why(client: &Client, api: &TeskApi, drs: &DrsPod) -> anyhow::Result<()> {
    let url = drs.uri("no-such-object");
    let task = json!({
        "name": "missing",
        "inputs": [{"url": url, "path": "/data/in/missing.bam", "type": "FILE"}],
        "executors": [{"image": node::image("c4gh-task"),
                       "command": ["sha256sum", "/data/in/missing.bam"]}]
    });
    let id = post_task(api, &task)?;
    ensure!(
        config_map_status(client, &id).await? == keys::STATUS_ADAPTED,
        "the ConfigMap of task {id} is stored adapted"
    );
    let done = ends_with_reason(
        client,
        api,
        &id,
        &[
            "its command did not run",
            &format!("{url} -> /data/in/missing.bam"),
            "no such object on this server; check the id in the drs:// URI",
        ],
    )
    .await?;
    ensure!(
        done["logs"][0]["logs"][0]["exit_code"] == json!(1),
        "the wrapper's exit code: {}",
        done["logs"][0]["logs"][0]
    );
    Ok(())
}

/// A counter of the DRS server's `/metrics` (OpenMetrics text), 0 when absent.
async fn drs_counter(drs: &DrsPod, name: &str) -> anyhow::Result<f64> {
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(drs.ca_pem.as_bytes())?)
        .build()?;
    let text = client
        .get(format!("https://{}/metrics", drs.authority))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum())
}

/// A hostPath PersistentVolume for the next task PVC the taskmaster creates (the node has no
/// provisioner), its `dirN` subPaths writable by the sidecar (hostPath volumes get no fsGroup).
async fn task_volume(client: &Client, dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for n in 0..4 {
        let sub = dir.join(format!("dir{n}"));
        std::fs::create_dir_all(&sub)?;
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o777))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let volumes: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(client.clone());
    let pv = serde_json::from_value(json!({
        "metadata": {"name": "tesk-task-volume"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": dir, "type": "Directory"}
        }
    }))?;
    volumes.create(&Default::default(), &pv).await?;
    Ok(())
}

/// With `encrypted` inputs (on the task PVC), a task with two executors on the same input: both
/// read the right plaintext, and the DRS server sends the body once (the second executor's
/// sidecar finds it on the PVC and fetches only a header for its own key).
async fn second_executor_fetches_headers_only(
    client: &Client,
    api: &TeskApi,
    drs: &DrsPod,
) -> anyhow::Result<()> {
    let gvk = kube::core::GroupVersionKind::gvk("c4gh.dev", "v1alpha1", "Crypt4ghPolicy");
    let resource = kube::core::ApiResource::from_gvk(&gvk);
    let policies: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), NS, &resource);
    policies
        .patch(
            "default",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {
                "allowedModes": ["encrypted", "plaintext"], "defaultMode": "encrypted"
            }})),
        )
        .await?;
    let volume = tempfile::Builder::new()
        .prefix("c4gh-e2e-tesk-pv-")
        .tempdir()?;
    task_volume(client, volume.path()).await?;
    // The operator's policy cache follows the patch within a second.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bodies = "c4gh_drs_body_bytes_total";
    let headers = "c4gh_drs_header_reencryptions_total";
    let (bytes_before, headers_before) = (
        drs_counter(drs, bodies).await?,
        drs_counter(drs, headers).await?,
    );
    let read = json!({"image": node::image("c4gh-task"),
                      "command": ["/bin/sh", "-c", "crypt4gh decrypt < /data/in/sample-reads.bam | sha256sum"]});
    let task = json!({
        "name": "twice",
        "inputs": [{"url": drs.uri("sample-reads"), "path": "/data/in/sample-reads.bam", "type": "FILE"}],
        "executors": [read, read]
    });
    let id = post_task(api, &task)?;
    let done = api.wait_final(&id, Duration::from_secs(300)).await?;
    let want = format!("{}  -", drs.objects["sample-reads"]);
    let outs: Vec<&str> = (0..2)
        .map(|n| {
            done["logs"][0]["logs"][n]["stdout"]
                .as_str()
                .unwrap_or_default()
                .trim()
        })
        .collect();
    if done["state"] != "COMPLETE" || outs != [want.as_str(), want.as_str()] {
        bail!(
            "task {id} should be COMPLETE with {want:?} from both executors: {}\npods:\n{}",
            serde_json::to_string_pretty(&done)?,
            pods_of(client, &id).await
        );
    }
    let body = drs_counter(drs, bodies).await? - bytes_before;
    let issued = drs_counter(drs, headers).await? - headers_before;
    eprintln!("two executors: {body} body bytes and {issued} headers served by the DRS server");
    // The object's Crypt4GH body: 1 MiB + 17 bytes of plaintext in 64 KiB segments of 28
    // bytes' overhead each.
    let plain = 1_048_576.0 + 17.0;
    let segments = (plain / 65_536.0_f64).ceil();
    ensure!(
        body == plain + segments * 28.0,
        "the body was sent once ({} bytes), not {body} bytes",
        plain + segments * 28.0
    );
    ensure!(issued == 2.0, "one header per executor, not {issued}");
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
    for (what, result) in [
        (
            "the refused task",
            refused_task_says_why(&client, &api).await,
        ),
        (
            "the failed fetch",
            failed_fetch_says_why(&client, &api, &drs).await,
        ),
        (
            "the two executors",
            second_executor_fetches_headers_only(&client, &api, &drs).await,
        ),
    ] {
        outcome = match (outcome, result) {
            (Ok(()), other) => other.map_err(|e| e.context(what)),
            (Err(err), Ok(())) => Err(err),
            (Err(err), Err(also)) => Err(err.context(format!("and {what}: {also:#}"))),
        };
    }
    drop(api);
    drop(client);
    drop(node);
    outcome
}
