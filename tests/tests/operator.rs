//! The operator's admission webhook through a real kube-apiserver: manifests apply cleanly, opted-in
//! pods (plain and created by the Job controller from a TESK-shaped Job) are stored with the
//! injection, a policy-breaking pod is rejected with the webhook's message, and certificate
//! rotation shows in the real MutatingWebhookConfiguration while admission keeps working.

// Assertion helpers outside #[test] functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use c4gh_contract::{annotations as keys, env as contract_env, pod};
use c4gh_e2e::operator::{Operator, OperatorOptions, ensure_namespace, webhook_ca_bundle};
use c4gh_e2e::{ControlPlane, Options, manifests, tesk_fixtures, workspace};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::json;

const NS: &str = "tasks";

fn policy_api(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("c4gh.dev", "v1alpha1", "Crypt4ghPolicy");
    Api::namespaced_with(client.clone(), NS, &ApiResource::from_gvk(&gvk))
}

async fn create_policy(client: &Client) -> anyhow::Result<()> {
    let gvk = GroupVersionKind::gvk("c4gh.dev", "v1alpha1", "Crypt4ghPolicy");
    let mut policy = DynamicObject::new("default", &ApiResource::from_gvk(&gvk)).within(NS);
    policy.data = json!({"spec": {
        "allowedHosts": ["127.0.0.1:8443"],
        "allowPort": true,
    }});
    policy_api(client)
        .create(&PostParams::default(), &policy)
        .await?;
    Ok(())
}

fn opted_in_pod(name: &str, host: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": {"c4gh.dev/inject": "enabled"},
            "annotations": {"c4gh.dev/inputs": format!(
                r#"[{{"url": "drs://{host}/obj-1", "path": "/data/in/sample.bam.c4gh"}}]"#
            )}
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
    }))?)
}

fn env<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
    container
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

/// Asserts the contract of docs/contracts: native sidecar first, gate second, key volume in
/// memory, task containers get the key read-only and `C4GH_SECRET_KEY`.
fn assert_injected(pod: &Pod) {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get(keys::STATUS).map(String::as_str),
        Some(keys::STATUS_INJECTED),
        "pod {name}: status annotation"
    );
    let spec = pod.spec.as_ref().unwrap();
    let init = spec
        .init_containers
        .as_ref()
        .expect("init containers injected");
    assert_eq!(
        init[0].name,
        pod::SIDECAR_CONTAINER,
        "pod {name}: sidecar first"
    );
    assert_eq!(
        init[0].restart_policy.as_deref(),
        Some("Always"),
        "native sidecar"
    );
    assert_eq!(init[0].args.as_deref(), Some(&["run".to_owned()][..]));
    assert!(
        init[0].startup_probe.is_none(),
        "no startupProbe: the gate starts as soon as the sidecar runs"
    );
    assert_eq!(init[1].args.as_deref(), Some(&["gate".to_owned()][..]));
    assert_eq!(init[1].restart_policy, None, "the gate runs to completion");
    assert_eq!(env(&init[0], contract_env::KEY_DIR), Some(pod::KEY_DIR));
    assert!(
        env(&init[0], contract_env::INPUTS).is_some_and(|v| v.contains("drs://127.0.0.1:8443/"))
    );
    let key_volume = spec
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == pod::KEY_VOLUME)
        .expect("key volume");
    let empty_dir = key_volume
        .empty_dir
        .as_ref()
        .expect("key volume is an emptyDir");
    assert_eq!(empty_dir.medium.as_deref(), Some("Memory"));
    assert!(
        empty_dir.size_limit.is_some(),
        "memory-backed emptyDir has a sizeLimit"
    );
    for container in &spec.containers {
        assert_eq!(
            env(container, contract_env::SECRET_KEY),
            Some(pod::SECRET_KEY_PATH),
            "task container {}",
            container.name
        );
        assert_eq!(env(container, "C4GH_PUBLIC_KEY"), None);
        let key_mount = container
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == pod::KEY_VOLUME)
            .expect("task container mounts the key");
        assert_eq!(
            key_mount.read_only,
            Some(true),
            "key is read-only in the task"
        );
    }
    for container in init {
        let sc = container
            .security_context
            .as_ref()
            .expect("securityContext");
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.run_as_non_root, Some(true));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_injects_denies_and_rotates_through_the_real_apiserver() -> anyhow::Result<()> {
    let plane = ControlPlane::start(Options {
        controller_manager: true,
        ..Options::default()
    })
    .await?;
    let client = plane.client().await?;

    // The CRDs and the manifests apply cleanly by server-side apply: the self-managed-certs
    // overlay (base included) and the local-process overlay. (The cert-manager overlay needs
    // cert-manager's CRDs, which this control plane does not have.)
    let root = workspace::root().join("manifests");
    let report = manifests::apply(&plane, &root.join("overlays").join("self-managed-certs"))?;
    for object in [
        "customresourcedefinition.apiextensions.k8s.io/crypt4ghpolicies.c4gh.dev",
        "deployment.apps/c4gh-operator",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/c4gh-operator",
    ] {
        assert!(
            report.contains(&format!("{object} serverside-applied")),
            "{report}"
        );
    }
    manifests::apply(&plane, &root.join("overlays").join("local-process"))?;

    // Short certificate lifetimes so that both serving and CA rotation happen during the test.
    let operator = Operator::start(
        &plane,
        &OperatorOptions {
            serving_cert_seconds: Some(6),
            ca_seconds: Some(30),
            ..OperatorOptions::default()
        },
    )
    .await?;
    let (url, first_bundle) = webhook_ca_bundle(&client).await?.unwrap();
    assert_eq!(url, operator.webhook_url());

    // The sample policies and Job apply cleanly too (in their own namespace).
    ensure_namespace(&client, "samples").await?;
    manifests::apply_in(&plane, &root.join("samples"), Some("samples"))?;

    ensure_namespace(&client, NS).await?;
    create_policy(&client).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);

    // The policy reaches the operator's cache asynchronously: retry the first admission briefly.
    let deadline = Instant::now() + Duration::from_secs(30);
    let created = loop {
        match pods
            .create(
                &PostParams::default(),
                &opted_in_pod("plain", "127.0.0.1:8443")?,
            )
            .await
        {
            Ok(pod) => break pod,
            Err(err)
                if Instant::now() < deadline && err.to_string().contains("no Crypt4ghPolicy") =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("creating an opted-in pod: {err}\n{}", operator.log_tail(30)),
        }
    };
    assert_injected(&created);
    let stored = pods.get("plain").await?;
    assert_injected(&stored);
    assert_eq!(stored.status.unwrap().phase.as_deref(), Some("Pending"));

    // TESK's executor Job as the real taskmaster created it (captured, `files/ex-00.job.json`:
    // the task PVC at /work, /data/in and /data/out, subPaths dir0..dir2), with the keys the
    // TESK adapter puts on its template (derived: nothing adapted the captured task): the Job
    // controller creates the pod, the webhook injects it, and the sidecar mounts the task PVC
    // with the same subPath as the executor.
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let mut job = tesk_fixtures::load("files/ex-00.job.json")?;
    // The apiserver's selector and labels come with each new Job.
    if let Some(spec) = job["spec"].as_object_mut() {
        spec.remove("selector");
    }
    let template = &mut job["spec"]["template"]["metadata"];
    template["labels"] = json!({"c4gh.dev/inject": "enabled"});
    template["annotations"] = json!({
        "c4gh.dev/inputs": r#"[{"url": "drs://127.0.0.1:8443/obj-1", "path": "/data/in/sample.bam.c4gh"}]"#,
        "c4gh.dev/tes-task": "task-2b3c4d5e"
    });
    let job: Job = serde_json::from_value(job)?;
    let executor_mount = tesk_fixtures::first_container_mount(&job, "/data/in")
        .expect("the taskmaster mounted /data/in from the task PVC");
    jobs.create(&PostParams::default(), &job).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let job_pod = loop {
        let list = pods
            .list(&ListParams::default().labels("job-name=task-2b3c4d5e-ex-00"))
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
    assert_injected(&job_pod);
    let sidecar = &job_pod
        .spec
        .as_ref()
        .unwrap()
        .init_containers
        .as_ref()
        .unwrap()[0];
    let mount = sidecar
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.mount_path == "/data/in")
        .expect("the sidecar mounts the input directory");
    assert_eq!(
        (mount.name.as_str(), mount.sub_path.as_deref()),
        ("task-volume", Some("dir1")),
        "same PVC and subPath as the executor"
    );
    assert_eq!(mount.sub_path, executor_mount.sub_path);

    // A pod that breaks the policy is rejected by the apiserver with the webhook's message.
    let err = pods
        .create(
            &PostParams::default(),
            &opted_in_pod("evil", "drs.evil.example")?,
        )
        .await
        .expect_err("a pod fetching from a host outside the policy must be rejected");
    let message = err.to_string();
    assert!(
        message.contains("admission webhook \"pods.c4gh.dev\" denied the request")
            && message.contains("\"drs.evil.example\" is not allowed by Crypt4ghPolicy"),
        "unexpected rejection: {message}"
    );
    assert!(
        pods.get_opt("evil").await?.is_none(),
        "the rejected pod was not stored"
    );

    // Rotation: the CA (30 s, renewed with three 6 s serving lifetimes left) is renewed, the
    // caBundle in the real MutatingWebhookConfiguration changes to hold old and new CA, and the
    // apiserver keeps admitting pods through the webhook across serving-certificate renewals.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut admitted = 0;
    let rotated_bundle = loop {
        let (_, bundle) = webhook_ca_bundle(&client).await?.unwrap();
        let pod = pods
            .create(
                &PostParams::default(),
                &opted_in_pod(&format!("rotation-{admitted}"), "127.0.0.1:8443")?,
            )
            .await
            .map_err(|err| {
                anyhow::anyhow!(
                    "admission failed during rotation: {err}\n{}",
                    operator.log_tail(30)
                )
            })?;
        assert_injected(&pod);
        admitted += 1;
        if bundle != first_bundle {
            break bundle;
        }
        assert!(
            Instant::now() < deadline,
            "caBundle did not change within 60 s\n{}",
            operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let text = String::from_utf8(rotated_bundle)?;
    assert_eq!(
        text.matches("BEGIN CERTIFICATE").count(),
        2,
        "during CA rotation the caBundle holds the old and the new CA"
    );
    assert!(text.contains(String::from_utf8(first_bundle)?.trim()));
    // Two more serving lifetimes under the new CA: admission still works.
    tokio::time::sleep(Duration::from_secs(13)).await;
    let pod = pods
        .create(
            &PostParams::default(),
            &opted_in_pod("after-rotation", "127.0.0.1:8443")?,
        )
        .await?;
    assert_injected(&pod);

    // By now the operator has a certificate and a synced policy cache: it must report ready
    // (its Deployment's readinessProbe uses /readyz).
    let readyz = operator.readyz();
    assert!(
        readyz.starts_with("HTTP/1.1 200"),
        "the operator serves admissions but /readyz says: {readyz}"
    );
    Ok(())
}
