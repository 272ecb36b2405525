//! `kubectl c4gh` against a real kube-apiserver with the operator running: `check` gives the
//! webhook's decision before the object exists (allowed pod, denied pod with exactly the message
//! the apiserver returns, TESK task ConfigMaps offline and online, TESK's outputs filer Job with
//! its seal step; the TESK objects are captured from the real TESK), and `doctor` passes on a
//! healthy installation and fails on a broken caBundle and an invalid policy. `status` needs pods
//! a kubelet runs: it is tested on the real node (`tests/tests/node.rs`).
//!
//! Run with `--nocapture` to see every command's output (docs/operator.md quotes it).

// Assertion helpers outside #[test] functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use c4gh_e2e::operator::{Operator, OperatorOptions, WEBHOOK_CONFIG, ensure_namespace};
use c4gh_e2e::{ControlPlane, Options, manifests, tesk_fixtures, workspace};
use drs_server::testing::TestServer;
use flate2::Compression;
use flate2::write::GzEncoder;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{Value, json};

const NS: &str = "tasks";
const TESK_NS: &str = "tesk";

/// Runs the plugin; prints the command and its output (the docs quote them).
fn plugin(kubeconfig: &Path, args: &[&str]) -> (i32, String) {
    let bin = workspace::binary("kubectl-c4gh", "kubectl-c4gh").unwrap();
    let output = Command::new(bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!(
        "$ kubectl c4gh {}\n{stdout}{stderr}(exit {:?})\n",
        args.join(" "),
        output.status.code()
    );
    (output.status.code().unwrap_or(-1), stdout)
}

fn write_yaml(dir: &Path, name: &str, value: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
    path.display().to_string()
}

fn policy_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "c4gh.dev",
        "v1alpha1",
        "Crypt4ghPolicy",
    ))
}

async fn create_policy(client: &Client, ns: &str, name: &str, spec: Value) {
    let mut policy = DynamicObject::new(name, &policy_resource()).within(ns);
    policy.data = json!({ "spec": spec });
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &policy_resource())
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
}

fn task_pod(name: &str, inputs: &Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"c4gh.dev/inject": "enabled"},
            "annotations": {"c4gh.dev/inputs": inputs.to_string()}
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "task", "image": "python:3.12",
                "command": ["crypt4gh", "decrypt"],
                "volumeMounts": [{"name": "data", "mountPath": "/data/in"}]
            }],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    })
}

/// Creates `pod`, retrying while the policy has not reached the operator's cache yet.
async fn create(client: &Client, pod: &Value) -> Result<Pod, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let pod: Pod = serde_json::from_value(pod.clone()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match pods.create(&PostParams::default(), &pod).await {
            Err(kube::Error::Api(e))
                if e.message.contains("has no Crypt4ghPolicy") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A TESK object captured from the real TESK (`operator/tests/fixtures/tesk/PATH`, see its
/// README), without its namespace.
fn captured(path: &str) -> Value {
    tesk_fixtures::load(path).unwrap()
}

/// The task ConfigMap tesk-api wrote for the captured `drs` task (inputs: `http://` ref, then
/// `drs://drs.example.org/obj-1` and `obj-2`; two executors), named `task`; with `evil`, its
/// input 1 is fetched from a host no policy allows (an edit).
fn tesk_config_map(task: &str, evil: bool) -> ConfigMap {
    let mut cm: ConfigMap = serde_json::from_value(captured("drs/configmap.json")).unwrap();
    cm.metadata.name = Some(task.to_owned());
    if evil {
        let mut input = captured("drs/JSON_INPUT.json");
        input["inputs"][1]["url"] = json!("drs://drs.evil.example/x");
        cm.binary_data = Some(
            [(
                "JSON_INPUT.gz".to_owned(),
                ByteString(gzip(input.to_string().as_bytes())),
            )]
            .into(),
        );
    }
    cm
}

#[tokio::test]
async fn check_and_doctor_on_a_real_apiserver() {
    workspace::binary("c4gh-operator", "c4gh-operator").unwrap();
    workspace::binary("kubectl-c4gh", "kubectl-c4gh").unwrap();
    let plane = ControlPlane::start(Options::default()).await.unwrap();
    let kubeconfig = plane.kubeconfig().to_owned();
    let client = plane.client().await.unwrap();
    manifests::apply(&plane, &workspace::root().join("manifests").join("base")).unwrap();
    let operator = Operator::start(&plane, &OperatorOptions::default())
        .await
        .unwrap();
    let files = tempfile::tempdir().unwrap();

    // A DRS server and a policy allowing it (CA bundle and bearer token as in a real namespace).
    let server = TestServer::start().await.unwrap();
    server
        .add("sample-reads", &vec![7u8; 300_000], &["*"])
        .unwrap();
    let authority = server.server().local_addr().to_string();
    ensure_namespace(&client, NS).await.unwrap();
    let mut ca = ConfigMap::default();
    ca.metadata.name = Some("drs-ca".into());
    ca.data = Some([("ca.crt".to_owned(), server.ca_pem())].into());
    Api::<ConfigMap>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &ca)
        .await
        .unwrap();
    let mut token = Secret::default();
    token.metadata.name = Some("drs-token".into());
    token.data = Some(
        [(
            "token".to_owned(),
            ByteString(server.token().expose().as_bytes().to_vec()),
        )]
        .into(),
    );
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &token)
        .await
        .unwrap();
    let spec = json!({
        "allowedHosts": [authority],
        "allowPort": true,
        "caBundle": {"name": "drs-ca"},
        "auth": {"bearerTokenSecret": {"name": "drs-token"}},
    });
    create_policy(&client, NS, "default", spec.clone()).await;

    // check: an allowed pod. The plugin's summary names what the apiserver then stores.
    let inputs =
        json!([{"url": server.drs_uri("sample-reads"), "path": "/data/in/sample-reads.c4gh"}]);
    let allowed = task_pod("task-ok", &inputs);
    let file = write_yaml(files.path(), "task-ok.yaml", &allowed);
    let (code, out) = plugin(&kubeconfig, &["check", "-f", &file, "-n", NS]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(
            "✔ admitted: pod task-ok in namespace tasks would get the crypt4gh sidecar"
        ),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "1. {} -> /data/in/sample-reads.c4gh (encrypted)",
            server.drs_uri("sample-reads")
        )),
        "{out}"
    );
    // The operator of the harness runs with --sidecar-log-format text and its own image.
    let (code, yaml) = plugin(
        &kubeconfig,
        &[
            "check",
            "-f",
            &file,
            "-n",
            NS,
            "-o",
            "yaml",
            "--sidecar-log-format",
            "text",
            "--sidecar-image",
            &OperatorOptions::default().sidecar_image,
        ],
    );
    assert_eq!(code, 0);
    let predicted: Pod = serde_yaml_from(&yaml);
    let stored = create(&client, &allowed).await.unwrap();
    let names = |p: &Pod| -> Vec<String> {
        p.spec
            .as_ref()
            .unwrap()
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect()
    };
    assert_eq!(names(&predicted), names(&stored));
    let images = |p: &Pod| -> Vec<Option<String>> {
        p.spec
            .as_ref()
            .unwrap()
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.image.clone())
            .collect()
    };
    assert_eq!(images(&predicted), images(&stored));
    let env = |p: &Pod| {
        p.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0]
            .env
            .clone()
    };
    assert_eq!(
        env(&predicted),
        env(&stored),
        "the plugin predicts the sidecar's environment"
    );

    // check: a denied pod gets exactly the apiserver's message.
    let evil = task_pod(
        "task-evil",
        &json!([{"url": "drs://drs.evil.example/x", "path": "/data/in/x.c4gh"}]),
    );
    let file = write_yaml(files.path(), "task-evil.yaml", &evil);
    let (code, out) = plugin(&kubeconfig, &["check", "-f", &file, "-n", NS]);
    assert_eq!(code, 1, "{out}");
    let Err(kube::Error::Api(refused)) = create(&client, &evil).await else {
        panic!("the apiserver admitted a pod with a disallowed host");
    };
    assert_eq!(out, format!("✘ denied\n{}\n", refused.message));

    // check: TESK task ConfigMaps, offline (policy from a file) and against the apiserver.
    let policy_file = write_yaml(
        files.path(),
        "policy.yaml",
        &json!({
            "apiVersion": "c4gh.dev/v1alpha1", "kind": "Crypt4ghPolicy",
            "metadata": {"name": "default"}, "spec": {"allowedHosts": ["drs.example.org"]}
        }),
    );
    let tesk_ok = tesk_config_map("task-0001", false);
    let file = write_yaml(
        files.path(),
        "tesk-ok.yaml",
        &serde_json::to_value(&tesk_ok).unwrap(),
    );
    let (code, out) = plugin(
        &kubeconfig,
        &[
            "check",
            "-f",
            &file,
            "-n",
            TESK_NS,
            "--policy",
            &policy_file,
        ],
    );
    assert_eq!(code, 0, "{out}");
    for executor in 0..2 {
        assert!(
            out.contains(&format!(
                "executor {executor}: the sidecar fetches 2 input(s)\n    drs://drs.example.org/obj-1 -> /data/in/sample.bam.c4gh (encrypted)\n    drs://drs.example.org/obj-2 -> /data/stream/reads.fq (encrypted)\n"
            )),
            "{out}"
        );
    }
    assert!(out.contains("inputs left for TESK's filer: 1"), "{out}");
    ensure_namespace(&client, TESK_NS).await.unwrap();
    Api::<Namespace>::all(client.clone())
        .patch(
            TESK_NS,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"c4gh.dev/tesk": "enabled"}}})),
        )
        .await
        .unwrap();
    create_policy(
        &client,
        TESK_NS,
        "default",
        json!({"allowedHosts": ["drs.example.org"]}),
    )
    .await;
    let tesk_evil = tesk_config_map("task-0002", true);
    let file = write_yaml(
        files.path(),
        "tesk-evil.yaml",
        &serde_json::to_value(&tesk_evil).unwrap(),
    );
    let (code, out) = plugin(&kubeconfig, &["check", "-f", &file, "-n", TESK_NS]);
    assert_eq!(code, 1, "{out}");
    // The apiserver stores the task refused (TESK would not pass a denial's text on to the TES
    // user; the executors print it), with the reason check printed.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), TESK_NS);
    let deadline = Instant::now() + Duration::from_secs(30);
    let refusal = loop {
        let stored = config_maps
            .create(&PostParams::default(), &tesk_evil)
            .await
            .expect("the apiserver stores a refused TESK task");
        let notes = stored.metadata.annotations.unwrap_or_default();
        assert_eq!(
            notes.get("c4gh.dev/status").map(String::as_str),
            Some("refused"),
            "{notes:?}"
        );
        let refusal = notes.get("c4gh.dev/refusal").cloned().unwrap_or_default();
        if refusal.contains("has no Crypt4ghPolicy") && Instant::now() < deadline {
            // The operator's policy cache has not seen the policy yet.
            config_maps
                .delete("task-0002", &Default::default())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        break refusal;
    };
    assert_eq!(
        out,
        format!(
            "✘ denied\nwebhook \"tesk.c4gh.dev\" refused the TES task: it is admitted so that TESK runs, in place of each executor, one that prints this reason (TESK passes no admission message on to the TES user):\n{refusal}\n"
        )
    );

    // check: TESK's outputs filer Job (captured from the real taskmaster) gets the seal step
    // from the TESK Job webhook, and that is what the apiserver stores.
    let mut filer = captured("files/outputs-filer.job.json");
    // The apiserver's selector and labels come with each new Job.
    filer["spec"].as_object_mut().unwrap().remove("selector");
    for meta in ["/metadata", "/spec/template/metadata"] {
        filer
            .pointer_mut(meta)
            .and_then(Value::as_object_mut)
            .unwrap()
            .remove("labels");
    }
    let file = write_yaml(files.path(), "outputs-filer.yaml", &filer);
    let (code, out) = plugin(&kubeconfig, &["check", "-f", &file, "-n", TESK_NS]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(
            "✔ admitted: TESK's outputs filer Job tesk/task-2b3c4d5e-outputs-filer would be changed (webhook tesk-filer.c4gh.dev)\n  + init container c4gh-seal ("
        ),
        "{out}"
    );
    let stored = Api::<Job>::namespaced(client.clone(), TESK_NS)
        .create(
            &PostParams::default(),
            &serde_json::from_value(filer).unwrap(),
        )
        .await
        .unwrap();
    let inits: Vec<String> = stored
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.init_containers)
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(inits, ["c4gh-seal"], "what check predicted is stored");

    // doctor: healthy.
    let (code, out) = plugin(&kubeconfig, &["doctor"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("✔ CRD crypt4ghpolicies.c4gh.dev is established"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "✔ the webhook at {} presents a certificate the caBundle verifies for 127.0.0.1",
            operator.webhook_url()
        )),
        "{out}"
    );
    assert!(
        out.contains("✔ Crypt4ghPolicy tasks/default is Ready"),
        "{out}"
    );
    assert!(!out.contains('✘'), "{out}");

    // doctor: an invalid policy, then a caBundle from another CA. The operator would republish
    // its own caBundle at once, so it is stopped first: the API server could not reach it
    // either way, and doctor names both problems.
    let invalid: Value = serde_yaml_ng_value(
        &std::fs::read_to_string(workspace::root().join("manifests/samples/invalid-policy.yaml"))
            .unwrap(),
    );
    create_policy(&client, NS, "broken", invalid["spec"].clone()).await;
    let policies: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &policy_resource());
    let deadline = Instant::now() + Duration::from_secs(30);
    while policies
        .get("broken")
        .await
        .unwrap()
        .data
        .pointer("/status/conditions/0")
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the controller never wrote the invalid policy's status"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let webhook_url = operator.webhook_url().to_owned();
    drop(operator);
    let other_ca = c4gh_e2e::pki::Ca::new("not the operator's CA")
        .unwrap()
        .cert_pem();
    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let mut config = webhooks.get(WEBHOOK_CONFIG).await.unwrap();
    for webhook in config.webhooks.iter_mut().flatten() {
        webhook.client_config.ca_bundle = Some(ByteString(other_ca.clone().into_bytes()));
    }
    webhooks
        .replace(WEBHOOK_CONFIG, &PostParams::default(), &config)
        .await
        .unwrap();
    let (code, out) = plugin(&kubeconfig, &["doctor"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "✘ webhook {webhook_url}: cannot connect to 127.0.0.1:"
        )),
        "{out}"
    );
    assert!(out.contains("✘ the serving certificate in Secret c4gh-system/c4gh-operator-webhook-tls does not verify against the caBundle for 127.0.0.1"), "{out}");
    assert!(
        out.contains("✘ Crypt4ghPolicy tasks/broken is not Ready (Invalid)"),
        "{out}"
    );
    assert!(
        out.ends_with("Status check results are ✘ (3 failed)\n"),
        "{out}"
    );
    drop(server);
    drop(plane);
}

fn serde_yaml_from(yaml: &str) -> Pod {
    serde_json::from_value(serde_yaml_ng_value(yaml)).unwrap()
}

fn serde_yaml_ng_value(yaml: &str) -> Value {
    serde_yaml_ng::from_str(yaml).unwrap()
}
