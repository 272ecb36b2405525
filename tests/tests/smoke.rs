//! The local control plane works: objects are stored, the Job controller creates pods, and
//! nothing survives the harness.

// Assertion helpers outside #[test] functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use c4gh_e2e::{ControlPlane, Options};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};
use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_controller_creates_a_pending_pod_and_teardown_leaves_no_process() -> anyhow::Result<()>
{
    let plane = ControlPlane::start(Options {
        controller_manager: true,
        ..Options::default()
    })
    .await?;
    let client = plane.client().await?;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "smoke"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "smoke");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "task"},
        "data": {"json": "{\"inputs\": []}"}
    }))
    .unwrap();
    config_maps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let stored = config_maps.get("task").await.unwrap();
    assert_eq!(stored.data.unwrap()["json"], "{\"inputs\": []}");

    let jobs: Api<Job> = Api::namespaced(client.clone(), "smoke");
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "executor"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "task", "image": "busybox", "command": ["true"]}]
                }
            }
        }
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "smoke");
    let deadline = Instant::now() + Duration::from_secs(120);
    let pod = loop {
        let list = pods
            .list(&ListParams::default().labels("job-name=executor"))
            .await
            .unwrap();
        if let Some(pod) = list.items.into_iter().next() {
            break pod;
        }
        assert!(
            Instant::now() < deadline,
            "the Job controller created no pod for Job smoke/executor within 120 s\n{}",
            plane.log_tails(20)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Job", "executor")
    );
    assert_eq!(pod.spec.as_ref().unwrap().containers[0].name, "task");
    // No scheduler, no kubelet: the pod is stored and stays Pending.
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Pending"));

    let pids = plane.pids();
    assert_eq!(
        pids.len(),
        3,
        "etcd, kube-apiserver and kube-controller-manager"
    );
    let dir = plane.dir().to_owned();
    drop(client);
    drop(plane);
    for pid in pids {
        let pid = i32::try_from(pid).unwrap();
        assert!(
            kill(Pid::from_raw(pid), None).is_err(),
            "process {pid} still runs after the control plane was dropped"
        );
        let group = std::process::Command::new("pgrep")
            .args(["-g", &pid.to_string()])
            .output()
            .unwrap();
        assert!(
            group.stdout.is_empty(),
            "processes of group {pid} survived: {}",
            String::from_utf8_lossy(&group.stdout)
        );
    }
    assert!(!dir.exists(), "{} was not removed", dir.display());
    Ok(())
}
