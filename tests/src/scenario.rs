//! The whole flow, end to end, shared by the test suite and `cargo xtask demo`:
//!
//! 1. a local control plane (etcd + kube-apiserver), the CRDs and `manifests/base` applied by
//!    server-side apply, the operator running as a local process with its webhook registered
//!    by URL and its self-managed CA;
//! 2. a DRS server (`c4gh-drs-server`, in process, TLS) serving objects encrypted from random
//!    plaintext; a namespace with a `Crypt4ghPolicy` allowing it (CA bundle ConfigMap, bearer
//!    token Secret);
//! 3. an opted-in task pod created through the apiserver; the stored pod shows the injection;
//! 4. the pod runner executes the stored spec: sidecar until its startupProbe passes, gate, then
//!    a task process that decrypts every input with the reference Python `crypt4gh` using only
//!    `C4GH_SECRET_KEY` and checks SHA-256 against the originals; then SIGTERM to the sidecar,
//!    which must exit 0 having destroyed the key;
//! 5. a second pod naming an object the server does not have: the gate fails with the reason.
//!
//! Every step is checked; a failed check is an error naming what differed. `narrate` receives
//! one readable line per step (the demo prints them, the tests keep them quiet).

use std::time::{Duration, Instant};

use c4gh_contract::status::STATUS_FILE;
use c4gh_contract::{annotations, env, pod};
use drs_server::testing::TestServer;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::operator::{Operator, OperatorOptions, ensure_namespace};
use crate::runner::{PodRunner, terminate};
use crate::{ControlPlane, Error, Options, manifests, workspace};

/// Namespace of the task pods.
pub const NAMESPACE: &str = "tasks";

/// The reference tool's decryption as the task runs it: each argument pair is (file, expected
/// SHA-256 of its plaintext); only `C4GH_SECRET_KEY` tells `crypt4gh` which key to use.
const TASK_SCRIPT: &str = r#"
import hashlib, os, subprocess, sys
ok = True
for path, want in zip(sys.argv[1::2], sys.argv[2::2]):
    with open(path, "rb") as f:
        out = subprocess.run(["crypt4gh", "decrypt"], stdin=f, capture_output=True)
    if out.returncode != 0:
        print(f"{path}: crypt4gh decrypt failed: {out.stderr.decode().strip()}")
        ok = False
        continue
    got = hashlib.sha256(out.stdout).hexdigest()
    verdict = "matches the original" if got == want else f"DIFFERS from the original {want}"
    print(f"{os.path.basename(path)}: {len(out.stdout)} bytes decrypted, sha256 {got} {verdict}")
    ok = ok and got == want
sys.exit(0 if ok else 1)
"#;

/// What the flow observed, for further assertions.
#[derive(Debug)]
pub struct Report {
    /// Names of the stored pod's init containers, in order.
    pub init_containers: Vec<String>,
    /// The task's output (one line per input).
    pub task_output: String,
    /// Whether the key volume was on tmpfs.
    pub key_on_tmpfs: bool,
    /// The gate's termination message for the pod whose input does not exist.
    pub failed_gate_message: String,
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(Error::Unexpected(what()))
    }
}

/// Runs the flow; see the module documentation.
pub async fn run(narrate: &dyn Fn(&str)) -> Result<Report, Error> {
    let sidecar_bin = workspace::binary("c4gh-sidecar", "c4gh-sidecar")?;
    workspace::binary("c4gh-operator", "c4gh-operator")?;

    narrate("Starting a local Kubernetes control plane (etcd + kube-apiserver on 127.0.0.1)…");
    let started = Instant::now();
    let plane = ControlPlane::start(Options::default()).await?;
    narrate(&format!(
        "  kube-apiserver ready at {} after {:.1} s",
        plane.server(),
        started.elapsed().as_secs_f64()
    ));
    let client = plane.client().await?;

    let base = workspace::root().join("manifests").join("base");
    narrate(&format!(
        "Applying {} by server-side apply:",
        base.display()
    ));
    for line in manifests::apply(&plane, &base)?.lines() {
        narrate(&format!("  {line}"));
    }

    narrate("Starting the operator (webhook registered by URL, certificates it manages itself)…");
    let operator = Operator::start(&plane, &OperatorOptions::default()).await?;
    narrate(&format!(
        "  MutatingWebhookConfiguration c4gh-operator → {} (caBundle from the operator's own CA)",
        operator.webhook_url()
    ));

    narrate("Starting a DRS server over TLS with two Crypt4GH objects made from random data…");
    let server = TestServer::start()
        .await
        .map_err(|err| Error::Unexpected(format!("starting the DRS server: {err}")))?;
    let mut originals = Vec::new();
    for (id, size) in [("sample-reads", 1_048_576 + 17), ("sample-index", 65_536)] {
        let mut data = vec![0u8; size];
        rand::thread_rng().fill_bytes(&mut data);
        server
            .add(id, &data, &["*"])
            .map_err(|err| Error::Unexpected(format!("adding {id} to the DRS server: {err}")))?;
        let digest = hex(&Sha256::digest(&data));
        narrate(&format!(
            "  {} ({size} bytes, sha256 {digest})",
            server.drs_uri(id)
        ));
        originals.push((id, digest));
    }
    let authority = server.server().local_addr().to_string();

    narrate(&format!(
        "Creating namespace {NAMESPACE} with a Crypt4ghPolicy allowing {authority} \
         (CA bundle ConfigMap, bearer-token Secret)…"
    ));
    ensure_namespace(&client, NAMESPACE).await?;
    create_policy_objects(&client, &server, &authority).await?;

    let inputs: Vec<serde_json::Value> = originals
        .iter()
        .map(|(id, _)| json!({"url": server.drs_uri(id), "path": format!("/data/in/{id}.c4gh")}))
        .collect();
    narrate("Creating an opted-in task pod through the apiserver…");
    let pod = create_pod(&client, "task-ok", &inputs, &operator).await?;
    let report_init = describe_injection(&pod, narrate)?;

    narrate(
        "Running the stored pod spec on this machine (volumes → directories, containers → processes):",
    );
    let runner = PodRunner::prepare(&client, &pod, &sidecar_bin).await?;
    let key_on_tmpfs = runner.memory_backed(pod::KEY_VOLUME);
    let key_dir = runner
        .volume_dir(pod::KEY_VOLUME)
        .ok_or_else(|| Error::Unexpected("no c4gh-key volume".into()))?
        .to_owned();
    narrate(&format!(
        "  key volume c4gh-key → {} ({})",
        key_dir.display(),
        if key_on_tmpfs {
            "tmpfs"
        } else {
            "NOT tmpfs: /dev/shm is unavailable here"
        }
    ));
    let mut sidecar = runner.start_sidecar(pod::SIDECAR_CONTAINER)?;
    runner
        .wait_startup_probe(
            pod::SIDECAR_CONTAINER,
            &mut sidecar,
            Duration::from_secs(120),
        )
        .await?;
    narrate("  c4gh-sidecar started; its startupProbe passed");
    let gate = runner
        .run_gate(pod::GATE_CONTAINER, Duration::from_secs(120))
        .await?;
    check(gate.status.success(), || {
        format!(
            "the gate failed ({}): {}\nsidecar log:\n{}",
            gate.status,
            gate.termination_message,
            sidecar.log_tail(30)
        )
    })?;
    let status = std::fs::read_to_string(key_dir.join(STATUS_FILE)).unwrap_or_default();
    narrate(&format!(
        "  c4gh-gate exited 0; status.json: {}",
        status.trim()
    ));

    let task_container = pod
        .spec
        .as_ref()
        .map(|s| s.containers[0].clone())
        .ok_or_else(|| Error::Unexpected("stored pod has no spec".into()))?;
    let mut args = vec!["-c".to_owned(), TASK_SCRIPT.to_owned()];
    for (id, digest) in &originals {
        let path = runner
            .host_path(&task_container, &format!("/data/in/{id}.c4gh"))
            .ok_or_else(|| {
                Error::Unexpected(format!("/data/in/{id}.c4gh is not mounted in the task"))
            })?;
        args.push(path.display().to_string());
        args.push(digest.clone());
    }
    let python = testkit::python_tool("python");
    let venv_bin = python
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    narrate("  task: reference Python crypt4gh decrypts each input with only C4GH_SECRET_KEY set:");
    let output = runner.run_task(
        &task_container.name,
        &python,
        &args,
        &format!("{venv_bin}:/usr/bin:/bin"),
    )?;
    let task_output = String::from_utf8_lossy(&output.stdout).into_owned();
    for line in task_output.lines() {
        narrate(&format!("    {line}"));
    }
    check(output.status.success(), || {
        format!(
            "the task failed ({}): {task_output}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;

    narrate("  task exited 0; sending SIGTERM to the sidecar as the kubelet would…");
    let key_file = key_dir.join(pod::SECRET_KEY_FILE);
    check(key_file.exists(), || {
        format!("{} missing before SIGTERM", key_file.display())
    })?;
    let exit = terminate(&mut sidecar, Duration::from_secs(10))?;
    check(exit.is_some_and(|s| s.success()), || {
        format!(
            "the sidecar did not exit 0 on SIGTERM ({exit:?}):\n{}",
            sidecar.log_tail(20)
        )
    })?;
    check(!key_file.exists(), || {
        format!(
            "{} still exists after the sidecar exited",
            key_file.display()
        )
    })?;
    narrate(&format!(
        "  sidecar exited 0; {} is gone (overwritten, unlinked)",
        key_file.display()
    ));

    narrate("A pod naming an object the DRS server does not have:");
    let missing =
        [json!({"url": server.drs_uri("no-such-object"), "path": "/data/in/missing.c4gh"})];
    let pod = create_pod(&client, "task-missing", &missing, &operator).await?;
    let runner = PodRunner::prepare(&client, &pod, &sidecar_bin).await?;
    let mut sidecar = runner.start_sidecar(pod::SIDECAR_CONTAINER)?;
    runner
        .wait_startup_probe(
            pod::SIDECAR_CONTAINER,
            &mut sidecar,
            Duration::from_secs(120),
        )
        .await?;
    let gate = runner
        .run_gate(pod::GATE_CONTAINER, Duration::from_secs(120))
        .await?;
    check(!gate.status.success(), || {
        "the gate succeeded although the fetch failed".into()
    })?;
    narrate(&format!(
        "  c4gh-gate failed ({}) with termination message: {}",
        gate.status,
        gate.termination_message.trim()
    ));
    let exit = terminate(&mut sidecar, Duration::from_secs(10))?;
    check(exit.is_some_and(|s| s.success()), || {
        format!("the sidecar of the failed pod did not exit 0 on SIGTERM ({exit:?})")
    })?;

    drop(server);
    drop(operator);
    drop(plane);
    narrate("Stopped the operator and the control plane; nothing is left running.");
    Ok(Report {
        init_containers: report_init,
        task_output,
        key_on_tmpfs,
        failed_gate_message: gate.termination_message,
    })
}

async fn create_policy_objects(
    client: &Client,
    server: &TestServer,
    authority: &str,
) -> Result<(), Error> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("drs-ca".into());
    cm.data = Some([("ca.crt".to_owned(), server.ca_pem())].into());
    config_maps.create(&PostParams::default(), &cm).await?;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let mut secret = Secret::default();
    secret.metadata.name = Some("drs-token".into());
    secret.data = Some(
        [(
            "token".to_owned(),
            ByteString(server.token().expose().as_bytes().to_vec()),
        )]
        .into(),
    );
    secrets.create(&PostParams::default(), &secret).await?;

    let gvk = GroupVersionKind::gvk("c4gh.dev", "v1alpha1", "Crypt4ghPolicy");
    let resource = ApiResource::from_gvk(&gvk);
    let mut policy = DynamicObject::new("default", &resource).within(NAMESPACE);
    policy.data = json!({"spec": {
        "allowedHosts": [authority],
        "allowPort": true,
        "caBundle": {"name": "drs-ca"},
        "auth": {"bearerTokenSecret": {"name": "drs-token"}},
    }});
    let policies: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &resource);
    policies.create(&PostParams::default(), &policy).await?;
    Ok(())
}

async fn create_pod(
    client: &Client,
    name: &str,
    inputs: &[serde_json::Value],
    operator: &Operator,
) -> Result<Pod, Error> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": {"c4gh.dev/inject": "enabled"},
            "annotations": {"c4gh.dev/inputs": serde_json::to_string(inputs).unwrap_or_default()}
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "task", "image": "python:3.12",
                "command": ["python", "decrypt-and-check.py"],
                "volumeMounts": [{"name": "data", "mountPath": "/data/in"}]
            }],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    }))
    .map_err(|err| Error::Unexpected(format!("building pod {name}: {err}")))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    // The policy reaches the operator's cache asynchronously.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => break,
            Err(err)
                if Instant::now() < deadline && err.to_string().contains("no Crypt4ghPolicy") =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => {
                return Err(Error::Unexpected(format!(
                    "creating pod {name}: {err}\noperator log:\n{}",
                    operator.log_tail(20)
                )));
            }
        }
    }
    Ok(pods.get(name).await?)
}

fn describe_injection(pod: &Pod, narrate: &dyn Fn(&str)) -> Result<Vec<String>, Error> {
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| Error::Unexpected("stored pod has no spec".into()))?;
    let init = spec.init_containers.clone().unwrap_or_default();
    let names: Vec<String> = init.iter().map(|c| c.name.clone()).collect();
    check(
        names.first().map(String::as_str) == Some(pod::SIDECAR_CONTAINER)
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
        if v.name.starts_with(pod::OWN_VOLUME_PREFIX) {
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
