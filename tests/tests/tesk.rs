//! The TESK adapter through a real kube-apiserver: the task ConfigMap the real tesk-api wrote
//! (captured, `operator/tests/fixtures/tesk/`, see its README) created in a namespace labelled
//! `c4gh.dev/tesk=enabled` is stored adapted (its `drs://` inputs moved onto the executor pod template); the executor Job built
//! from the adapted manifest, with the task PVC mounts TESK's taskmaster adds, gets a pod that
//! the real Job controller creates and the webhook injects; a task fetching from a host outside
//! the policy is stored refused (its executor replaced by one printing the webhook's reason);
//! ConfigMaps outside the opt-in never reach the operator. The taskmaster Job of a tesk-api
//! before 2023-01-24, whose task JSON is in its `JSON_INPUT` variable (derived from the captured
//! taskmaster Job: that era's tesk-api is not among the peers), is adapted or refused in place.

// Assertion helpers outside #[test] functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use c4gh_contract::{annotations as keys, env as contract_env, pod};
use c4gh_e2e::operator::{Operator, OperatorOptions, WEBHOOK_CONFIG};
use c4gh_e2e::{ControlPlane, Options, manifests, tesk_fixtures, workspace};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{Value, json};

/// Opted-in namespace.
const NS: &str = "tesk";
/// Namespace without the opt-in label.
const OFF: &str = "tesk-off";
/// The task id of the captured `drs` task.
const TASK: &str = "task-1a2b3c4d";
/// The DRS host of the captured `drs` task.
const DRS_HOST: &str = "drs.example.org";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    MultiGzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

/// A TESK object captured from the real TESK (`operator/tests/fixtures/tesk/PATH`, see its
/// README), without its namespace.
fn captured(path: &str) -> Value {
    tesk_fixtures::load(path).unwrap()
}

/// The captured `drs` task's taskmaster input.
fn drs_input() -> Value {
    captured("drs/JSON_INPUT.json")
}

/// The captured task ConfigMap of `dir`, named `name` and carrying `input`.
fn task_config_map(dir: &str, name: &str, input: &Value) -> ConfigMap {
    let mut cm: ConfigMap =
        serde_json::from_value(captured(&format!("{dir}/configmap.json"))).unwrap();
    cm.metadata.name = Some(name.to_owned());
    cm.binary_data = Some(
        [(
            "JSON_INPUT.gz".to_owned(),
            ByteString(gzip(input.to_string().as_bytes())),
        )]
        .into(),
    );
    cm
}

fn stored_input(cm: &ConfigMap) -> Value {
    let gz = &cm.binary_data.as_ref().unwrap()["JSON_INPUT.gz"].0;
    serde_json::from_slice(&gunzip(gz)).unwrap()
}

/// The mounts TESK's taskmaster adds to the first executor container: the task PVC at every
/// `volumes` entry and every input/output directory, `subPath dirN`, in that order.
fn with_taskmaster_mounts(task: &str, input: &Value, mut job: Value) -> Value {
    let mut dirs: Vec<String> = Vec::new();
    let mut push = |d: String| {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    };
    for v in input["volumes"].as_array().unwrap() {
        push(v.as_str().unwrap().to_owned());
    }
    for io in input["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .chain(input["outputs"].as_array().unwrap())
    {
        let path = io["path"].as_str().unwrap();
        if io["type"] == "DIRECTORY" {
            push(path.to_owned());
        } else {
            push(path[..path.rfind('/').unwrap()].to_owned());
        }
    }
    let mounts: Vec<Value> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| json!({"name": "task-volume", "mountPath": d, "subPath": format!("dir{i}")}))
        .collect();
    let spec = &mut job["spec"]["template"]["spec"];
    spec["containers"][0]["volumeMounts"] = Value::Array(mounts);
    spec["volumes"] = json!([{"name": "task-volume",
                              "persistentVolumeClaim": {"claimName": format!("{task}-pvc")}}]);
    job
}

async fn namespace(client: &Client, name: &str, labels: Value) {
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

/// The policy `default` of [`NS`], allowing the captured task's DRS host.
async fn create_policy(client: &Client) {
    let gvk = GroupVersionKind::gvk("c4gh.dev", "v1alpha1", "Crypt4ghPolicy");
    let resource = ApiResource::from_gvk(&gvk);
    let mut policy = DynamicObject::new("default", &resource).within(NS);
    policy.data = json!({"spec": {"allowedHosts": [DRS_HOST]}});
    Api::<DynamicObject>::namespaced_with(client.clone(), NS, &resource)
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
}

fn metric(metrics: &str, result: &str) -> Option<String> {
    let prefix = format!("c4gh_operator_tesk_admissions_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tesk_task_config_maps_are_adapted_and_executor_pods_injected() -> anyhow::Result<()> {
    let plane = ControlPlane::start(Options {
        controller_manager: true,
        ..Options::default()
    })
    .await?;
    let client = plane.client().await?;
    let root = workspace::root().join("manifests");
    manifests::apply(&plane, &root.join("overlays").join("local-process"))?;
    let operator = Operator::start(&plane, &OperatorOptions::default()).await?;

    // Both webhooks are registered by URL on the operator's one server, with the caBundle.
    let config = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get(WEBHOOK_CONFIG)
        .await?;
    let webhooks = config.webhooks.unwrap();
    let origin = operator.webhook_url().trim_end_matches("/mutate-pods");
    assert_eq!(
        webhooks
            .iter()
            .map(|w| (w.name.as_str(), w.client_config.url.clone().unwrap()))
            .collect::<Vec<_>>(),
        vec![
            ("pods.c4gh.dev", format!("{origin}/mutate-pods")),
            ("tesk.c4gh.dev", format!("{origin}/mutate-tesk")),
            ("tesk-filer.c4gh.dev", format!("{origin}/mutate-tesk")),
        ]
    );
    let bundle = webhooks[0].client_config.ca_bundle.clone().unwrap();
    assert!(!bundle.0.is_empty());
    assert_eq!(webhooks[1].client_config.ca_bundle.as_ref(), Some(&bundle));

    namespace(&client, NS, json!({"c4gh.dev/tesk": "enabled"})).await;
    namespace(&client, OFF, json!({})).await;
    create_policy(&client).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);

    // The captured TES task: an http:// input and two drs:// inputs, two executors.
    let input = drs_input();
    let created: ConfigMap = serde_json::from_value(captured("drs/configmap.json"))?;
    // The policy reaches the operator's cache asynchronously: retry the first creation briefly.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match config_maps.create(&PostParams::default(), &created).await {
            Ok(_) => break,
            Err(err)
                if Instant::now() < deadline && err.to_string().contains("no Crypt4ghPolicy") =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!(
                "creating the task ConfigMap: {err}\n{}",
                operator.log_tail(30)
            ),
        }
    }

    // What the apiserver stored is the adapted task, compared in full.
    let stored = config_maps.get(TASK).await?;
    let inputs_annotation = format!(
        r#"[{{"mode":"encrypted","path":"/data/in/sample.bam.c4gh","url":"drs://{DRS_HOST}/obj-1"}},{{"mode":"encrypted","path":"/data/stream/reads.fq","url":"drs://{DRS_HOST}/obj-2"}}]"#
    );
    let mut expected = input.clone();
    expected["inputs"] = json!([input["inputs"][0]]);
    expected["volumes"] = json!(["/data/out", "/data/in", "/data/stream"]);
    for n in 0..2 {
        expected["executors"][n]["spec"]["template"]["metadata"] = json!({
            "name": format!("{TASK}-ex-0{n}"),
            "labels": {"c4gh.dev/inject": "enabled"},
            "annotations": {"c4gh.dev/inputs": inputs_annotation, "c4gh.dev/tes-task": TASK}
        });
    }
    let adapted = stored_input(&stored);
    assert_eq!(adapted, expected);
    let annotations = stored.metadata.annotations.clone().unwrap();
    assert_eq!(annotations[keys::STATUS], keys::STATUS_ADAPTED);
    assert_eq!(annotations[keys::APPLIED_POLICY], keys::DEFAULT_POLICY_NAME);
    assert_eq!(annotations["tes-task-name"], "align");
    assert_eq!(stored.metadata.labels, created.metadata.labels);

    // A task without drs:// inputs (the captured `files` task) is stored byte for byte as TESK
    // wrote it.
    let plain: ConfigMap = serde_json::from_value(captured("files/configmap.json"))?;
    let stored_plain = config_maps.create(&PostParams::default(), &plain).await?;
    assert_eq!(stored_plain.binary_data, plain.binary_data);
    assert_eq!(
        stored_plain.metadata.annotations,
        plain.metadata.annotations
    );
    // Neither an ordinary ConfigMap in the opted-in namespace nor a task ConfigMap in a
    // namespace without the label reaches the operator (the latter has no policy: had it been
    // sent, it would have been denied).
    let ordinary: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "task-settings"}, "data": {"threads": "4"}}),
    )?;
    config_maps
        .create(&PostParams::default(), &ordinary)
        .await?;
    let stored_off = Api::<ConfigMap>::namespaced(client.clone(), OFF)
        .create(&PostParams::default(), &created)
        .await?;
    assert_eq!(stored_off.binary_data, created.binary_data);
    let metrics = operator.metrics();
    assert_eq!(
        metric(&metrics, "adapted").as_deref(),
        Some("1"),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "unchanged").as_deref(),
        Some("1"),
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "skipped"), None, "{metrics}");

    // TESK's taskmaster creates the executor Job from the adapted manifest, adding the task PVC
    // mounts; the Job controller creates the pod; the pod webhook injects it.
    let job: Job = serde_json::from_value(with_taskmaster_mounts(
        TASK,
        &adapted,
        adapted["executors"][0].clone(),
    ))?;
    let in_mount = tesk_fixtures::first_container_mount(&job, "/data/in")
        .expect("the taskmaster mounts the drs:// input's directory from the PVC");
    Api::<Job>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &job)
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let deadline = Instant::now() + Duration::from_secs(120);
    let pod = loop {
        let list = pods
            .list(&ListParams::default().labels(&format!("job-name={TASK}-ex-00")))
            .await?;
        if let Some(pod) = list.items.into_iter().next() {
            break pod;
        }
        assert!(
            Instant::now() < deadline,
            "no pod for the executor Job within 120 s\n{}\n{}",
            plane.log_tails(20),
            operator.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let annotations = pod.metadata.annotations.clone().unwrap();
    assert_eq!(annotations[keys::STATUS], keys::STATUS_INJECTED);
    assert_eq!(annotations[keys::INPUTS], inputs_annotation);
    assert_eq!(annotations[keys::TES_TASK], TASK);
    let spec = pod.spec.unwrap();
    let init = spec.init_containers.unwrap();
    assert_eq!(
        (init[0].name.as_str(), init[0].restart_policy.as_deref()),
        (pod::SIDECAR_CONTAINER, Some("Always")),
        "native sidecar first"
    );
    assert_eq!(init[1].name, pod::GATE_CONTAINER);
    let env = init[0].env.clone().unwrap();
    let c4gh_inputs = env
        .iter()
        .find(|e| e.name == contract_env::INPUTS)
        .and_then(|e| e.value.clone())
        .unwrap();
    assert!(
        c4gh_inputs.contains(&format!("drs://{DRS_HOST}/obj-1")),
        "{c4gh_inputs}"
    );
    let sidecar_mount = init[0]
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.mount_path == "/data/in")
        .expect("the sidecar mounts the input directory");
    assert_eq!(
        (
            sidecar_mount.name.as_str(),
            sidecar_mount.sub_path.as_deref()
        ),
        ("task-volume", in_mount.sub_path.as_deref()),
        "the sidecar writes into the executor's PVC subPath"
    );
    let task_container = &spec.containers[0];
    assert!(
        task_container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.name == contract_env::SECRET_KEY)
    );

    // A task fetching from a host outside the policy is refused: stored with every executor
    // replaced by one printing the webhook's reason (TESK passes no admission message on), its
    // drs:// inputs removed, and nothing injected.
    let mut evil = input.clone();
    evil["inputs"][1]["url"] = json!("drs://drs.evil.example/x");
    let stored = config_maps
        .create(
            &PostParams::default(),
            &task_config_map("drs", "task-deadbeef", &evil),
        )
        .await
        .expect("a refused task is stored, to report the reason through its executors");
    let notes = stored.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        notes.get(keys::STATUS).map(String::as_str),
        Some(keys::STATUS_REFUSED)
    );
    let reason = format!(
        "TES task task-deadbeef, executor 0: input 1 (drs://drs.evil.example/x): host \"drs.evil.example\" is not allowed by Crypt4ghPolicy \"default\" (allowed: {DRS_HOST}); use an allowed DRS server or ask the cluster operator to add the host to spec.allowedHosts (inputs are numbered as in the TES task)"
    );
    let refusal = notes.get(keys::REFUSAL).cloned().unwrap_or_default();
    assert!(refusal.contains(&reason), "unexpected refusal: {refusal}");
    let refused = stored_input(&stored);
    assert_eq!(refused["inputs"], json!([input["inputs"][0]]));
    for n in 0..2 {
        let container = &refused["executors"][n]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["command"],
            json!([pod::EXEC_IN_SIDECAR_IMAGE, "--refuse", refusal]),
            "executor {n}"
        );
    }
    Ok(())
}

/// A tesk-api before 2023-01-24 (tag `v1.1`) writes no task ConfigMap: the task JSON travels in
/// the taskmaster Job's `JSON_INPUT` variable. The apiserver sends that Job to the operator (the
/// inputs filer Job of that era, which carries the variable too, it does not), which stores the
/// task adapted in place, or refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_tesk_apis_taskmaster_job_is_adapted_in_its_environment() -> anyhow::Result<()> {
    let plane = ControlPlane::start(Options::default()).await?;
    let client = plane.client().await?;
    let root = workspace::root().join("manifests");
    manifests::apply(&plane, &root.join("overlays").join("local-process"))?;
    let operator = Operator::start(&plane, &OperatorOptions::default()).await?;
    namespace(&client, NS, json!({"c4gh.dev/tesk": "enabled"})).await;
    create_policy(&client).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);

    // That era's taskmaster Job, derived from the captured one: no `jsoninput` volume and no
    // `-f /jsoninput/JSON_INPUT.gz`; the task JSON in the `JSON_INPUT` variable.
    let taskmaster = |name: &str, input: &Value| -> Job {
        let mut job = captured("drs/taskmaster.job.json");
        job["metadata"]["name"] = json!(name);
        let spec = &mut job["spec"]["template"]["spec"];
        spec["volumes"]
            .as_array_mut()
            .unwrap()
            .retain(|v| v["name"] != "jsoninput");
        let container = &mut spec["containers"][0];
        container["volumeMounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["name"] != "jsoninput");
        container["args"].as_array_mut().unwrap().drain(..2);
        container["env"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "JSON_INPUT", "value": input.to_string()}));
        // The Job controller's selector and labels come with the new object.
        job["spec"].as_object_mut().unwrap().remove("selector");
        job["spec"]["template"]["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("labels");
        serde_json::from_value(job).unwrap()
    };
    let in_env = |job: &Job| -> Value {
        let spec = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let env = spec.containers[0].env.as_ref().unwrap();
        let var = env.iter().find(|e| e.name == "JSON_INPUT").unwrap();
        serde_json::from_str(var.value.as_deref().unwrap()).unwrap()
    };

    let input = drs_input();
    // The policy reaches the operator's cache asynchronously: retry the first creation briefly.
    let deadline = Instant::now() + Duration::from_secs(30);
    let stored = loop {
        let stored = jobs
            .create(&PostParams::default(), &taskmaster(TASK, &input))
            .await?;
        let status = stored
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(keys::STATUS).cloned());
        if status.as_deref() == Some(keys::STATUS_ADAPTED) || Instant::now() >= deadline {
            break stored;
        }
        // Background propagation: no garbage collector runs here to lift an orphan finalizer.
        jobs.delete(TASK, &DeleteParams::background()).await?;
        while jobs.get_opt(TASK).await?.is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let adapted = in_env(&stored);
    assert_eq!(
        adapted["inputs"],
        json!([input["inputs"][0]]),
        "the drs:// inputs left the filer's list\n{}",
        operator.log_tail(20)
    );
    let template = &adapted["executors"][0]["spec"]["template"]["metadata"];
    assert_eq!(template["labels"]["c4gh.dev/inject"], "enabled");
    assert!(
        template["annotations"][keys::INPUTS]
            .as_str()
            .unwrap()
            .contains(&format!("drs://{DRS_HOST}/obj-1"))
    );

    // That era's inputs filer Job carries the variable too, and is stored as written.
    let filer = taskmaster(&format!("{TASK}-inputs-filer"), &input);
    let stored_filer = jobs.create(&PostParams::default(), &filer).await?;
    assert_eq!(in_env(&stored_filer), input);
    assert_eq!(
        stored_filer.metadata.annotations, filer.metadata.annotations,
        "nothing of the operator's"
    );

    // A host outside the policy: stored refused, the executor printing the reason.
    let mut evil = input.clone();
    evil["inputs"][1]["url"] = json!("drs://drs.evil.example/x");
    let refused = jobs
        .create(&PostParams::default(), &taskmaster("task-deadbeef", &evil))
        .await?;
    let notes = refused.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        notes.get(keys::STATUS).map(String::as_str),
        Some(keys::STATUS_REFUSED)
    );
    let container = &in_env(&refused)["executors"][0]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["command"][0], pod::EXEC_IN_SIDECAR_IMAGE);
    assert!(
        container["command"][2]
            .as_str()
            .unwrap()
            .contains("drs.evil.example"),
        "{container}"
    );
    Ok(())
}
