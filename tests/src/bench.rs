//! Pod admission latency through the real apiserver, with the operator's webhook in the path
//! (opted-in pods) and without it (the same pods without the opt-in label, which the webhook's
//! objectSelector excludes). Client-side wall time of each `create`, sequential.

use std::time::{Duration, Instant};

use c4gh_contract::annotations;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::json;

use crate::operator::{Operator, OperatorOptions, ensure_namespace};
use crate::{ControlPlane, Error, Options, manifests, workspace};

/// Latency percentiles of one series.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

/// Both series.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLatency {
    /// Pods the webhook mutates.
    pub with_webhook: Percentiles,
    /// Pods the webhook never sees.
    pub without_webhook: Percentiles,
    /// Pods created per series.
    pub pods: usize,
}

const NAMESPACE: &str = "bench";
const WARMUP: usize = 20;

/// Starts a control plane and the operator, then creates `pods` pods of each kind (after a
/// warm-up of 20 each) and returns the latency percentiles.
pub async fn admission_latency(pods: usize) -> Result<AdmissionLatency, Error> {
    let plane = ControlPlane::start(Options::default()).await?;
    let client = plane.client().await?;
    manifests::apply(&plane, &workspace::root().join("manifests").join("base"))?;
    let operator = Operator::start(&plane, &OperatorOptions::default()).await?;
    ensure_namespace(&client, NAMESPACE).await?;
    let gvk = GroupVersionKind::gvk("c4gh.dev", "v1alpha1", "Crypt4ghPolicy");
    let resource = ApiResource::from_gvk(&gvk);
    let mut policy = DynamicObject::new("default", &resource).within(NAMESPACE);
    policy.data = json!({"spec": {"allowedHosts": ["drs.example.org"]}});
    Api::<DynamicObject>::namespaced_with(client.clone(), NAMESPACE, &resource)
        .create(&PostParams::default(), &policy)
        .await?;
    // Wait until the operator's policy cache has it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while create(&client, "probe", true).await.is_err() {
        if Instant::now() >= deadline {
            return Err(Error::Unexpected(format!(
                "the webhook never admitted a pod\n{}",
                operator.log_tail(20)
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let without_webhook = series(&client, "plain", false, pods).await?;
    let with_webhook = series(&client, "opted", true, pods).await?;
    drop(operator);
    drop(plane);
    Ok(AdmissionLatency {
        with_webhook,
        without_webhook,
        pods,
    })
}

async fn series(
    client: &Client,
    prefix: &str,
    opted_in: bool,
    n: usize,
) -> Result<Percentiles, Error> {
    for i in 0..WARMUP {
        create(client, &format!("{prefix}-warmup-{i}"), opted_in).await?;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        create(client, &format!("{prefix}-{i}"), opted_in).await?;
        samples.push(start.elapsed());
    }
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 * q).ceil() as usize).saturating_sub(1);
        samples.get(index).copied().unwrap_or_default()
    };
    Ok(Percentiles {
        p50: at(0.50),
        p99: at(0.99),
    })
}

async fn create(client: &Client, name: &str, opted_in: bool) -> Result<(), Error> {
    let labels = if opted_in {
        json!({"c4gh.dev/inject": "enabled"})
    } else {
        json!({})
    };
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"c4gh.dev/inputs": r#"[{"url": "drs://drs.example.org/obj-1", "path": "/data/in/a.c4gh"}]"#}
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "task", "image": "ubuntu:24.04", "command": ["true"],
                "volumeMounts": [{"name": "data", "mountPath": "/data/in"}]
            }],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    }))
    .map_err(|err| Error::Unexpected(format!("building pod {name}: {err}")))?;
    let created = Api::<Pod>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &pod)
        .await?;
    let injected = created.metadata.annotations.is_some_and(|a| {
        a.get(annotations::STATUS)
            .is_some_and(|s| s == annotations::STATUS_INJECTED)
    });
    if injected != opted_in {
        return Err(Error::Unexpected(format!(
            "pod {name}: injected={injected}, expected {opted_in}"
        )));
    }
    Ok(())
}
