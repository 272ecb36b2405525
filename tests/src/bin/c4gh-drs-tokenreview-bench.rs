//! `cargo xtask bench drs`: runs the `c4gh-drs-server` load generator (the release
//! `examples/bench` given as `ARGS[1]`, with `ARGS[2..]` passed on) with a real TokenReview setup:
//! a local control plane (etcd + kube-apiserver), a ServiceAccount for the server bound to
//! `system:auth-delegator`, and a pod (never scheduled) whose ServiceAccount token is bound to it
//! (TokenRequest API, audience `c4gh-bench`). The tokens go to a 0700 directory on a tmpfs
//! (`/dev/shm`), named by `C4GH_BENCH_TOKENREVIEW_DIR`, removed afterwards with the control plane.
//!
//! The driver only prepares; the measuring is the release load generator's.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: failures abort the run

use std::process::Command;

use c4gh_e2e::{ControlPlane, Options};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

async fn create<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: kube::Resource
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + k8s_openapi::serde::Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap()
}

async fn token(client: &Client, ns: &str, account: &str, spec: serde_json::Value) -> String {
    let request: TokenRequest = serde_json::from_value(json!({ "spec": spec })).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token
        .unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((bench, rest)) = args.split_first() else {
        anyhow::bail!("usage: c4gh-drs-tokenreview-bench BENCH_BINARY [BENCH_ARGS…]");
    };
    let plane = ControlPlane::start(Options::default()).await?;
    let client = plane.client().await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    create(&namespaces, json!({"metadata": {"name": "bench"}})).await;
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), "bench");
    for name in ["drs-server", "task"] {
        create(&accounts, json!({"metadata": {"name": name}})).await;
    }
    create(
        &Api::<ClusterRoleBinding>::all(client.clone()),
        json!({
            "metadata": {"name": "bench-drs-server-auth-delegator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
            "subjects": [{"kind": "ServiceAccount", "name": "drs-server", "namespace": "bench"}]
        }),
    )
    .await;
    let pod: Pod = create(
        &Api::<Pod>::namespaced(client.clone(), "bench"),
        json!({
            "metadata": {"name": "task"},
            "spec": {"serviceAccountName": "task", "automountServiceAccountToken": false,
                "containers": [{"name": "task", "image": "busybox"}]}
        }),
    )
    .await;
    let uid = pod.metadata.uid.unwrap();
    let reviewer = token(
        &client,
        "bench",
        "drs-server",
        json!({"audiences": ["https://kubernetes.default.svc.cluster.local"], "expirationSeconds": 3600}),
    )
    .await;
    let pod_token = token(
        &client,
        "bench",
        "task",
        json!({"audiences": ["c4gh-bench"], "expirationSeconds": 3600,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "task", "uid": uid}}),
    )
    .await;
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("c4gh-tokenreview-bench-")
            .tempdir_in(shm)?
    } else {
        tempfile::tempdir()?
    };
    std::fs::write(dir.path().join("api-server"), plane.server())?;
    std::fs::write(dir.path().join("ca.pem"), plane.ca().cert_pem())?;
    std::fs::write(dir.path().join("reviewer-token"), reviewer)?;
    std::fs::write(dir.path().join("pod-token"), pod_token)?;
    let status = Command::new(bench)
        .args(rest)
        .env("C4GH_BENCH_TOKENREVIEW_DIR", dir.path())
        .status()?;
    drop(dir);
    drop(plane);
    if !status.success() {
        anyhow::bail!("{bench} failed: {status}");
    }
    Ok(())
}
