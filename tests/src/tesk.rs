//! The real TESK on the tests' node, for `tests/tests/tesk_node.rs`: the Java TES API
//! `tesk-api` (751d482, built by `cargo xtask setup` into the cache) runs as a host process with
//! the cluster admin's kubeconfig and creates, per task, TESK's ConfigMap and taskmaster Job; the
//! taskmaster (tesk-core a50995a, unmodified, in the `tesk-taskmaster` image of `cargo xtask
//! images`) runs in that Job's pod on the node with its own ServiceAccount and creates the
//! executor Jobs.
//!
//! The node has no pod network (its CNI is `loopback` only, see [`crate::node`]), so what a CNI
//! and kube-proxy would give TESK's pods is supplied by a MutatingAdmissionPolicy of the test
//! ([`POD_NETWORK_POLICY`]) for the pods of namespaces labelled [`POD_NETWORK_LABEL`]: the host
//! network (the sidecar reaches the DRS server on 127.0.0.1) and the apiserver's loopback
//! address in `KUBERNETES_SERVICE_HOST/PORT` (the taskmaster's in-cluster configuration). It
//! touches nothing else; TESK's objects are otherwise as TESK makes them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolume, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{Value, json};

use c4gh_contract::annotations as keys;

use crate::Error;
use crate::cluster::{DRS_AUDIENCE, DrsPod};
use crate::control_plane::free_port;
use crate::node::{self, Node};
use crate::process::Supervised;

/// The ServiceAccount tesk-api gives the taskmaster (`tesk.api.taskmaster.service-account-name`).
pub const TASKMASTER_ACCOUNT: &str = "taskmaster";
/// The label selecting the namespaces whose pods get the host network (see the module docs).
pub const POD_NETWORK_LABEL: &str = "c4gh-e2e.dev/pod-network";
/// The MutatingAdmissionPolicy (and its binding) standing in for the pod network.
pub const POD_NETWORK_POLICY: &str = "c4gh-e2e-pod-network";
/// TESK's base path of the TES API.
pub const TES_BASE: &str = "/ga4gh/tes/v1";

/// The tesk-api jar `cargo xtask setup` builds (`tests/tesk/build.sh`).
pub fn api_jar() -> PathBuf {
    testkit::cache_dir().join("tesk").join("tesk-api.jar")
}

/// A running tesk-api process; dropping it stops it.
#[derive(Debug)]
pub struct TeskApi {
    process: Supervised,
    port: u16,
}

/// The TES states in which a task stays.
pub const FINAL_STATES: &[&str] = &["COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"];

/// How long `SYSTEM_ERROR` must last before [`TeskApi::wait_final`] counts it as final. tesk-api
/// derives the state from the taskmaster Job (`TesKubernetesConverter::extractStateFromK8sJobs`)
/// and falls through to `SYSTEM_ERROR` while a just-created Job has neither an active pod nor a
/// result yet: a fresh machine's CI run saw that 3.5 s after the POST, before the Job controller
/// made the pod.
pub const SYSTEM_ERROR_SETTLES: Duration = Duration::from_secs(15);

impl TeskApi {
    /// Starts tesk-api on 127.0.0.1 for tasks in `namespace`, with the taskmaster and filer
    /// images of `cargo xtask images`, executor and filer retries off (`EXECUTOR_BACKOFF_LIMIT`
    /// and `FILER_BACKOFF_LIMIT` 0, as the taskmaster reads them), and waits until it serves
    /// `GET /ga4gh/tes/v1/service-info`.
    pub async fn start(node: &Node, namespace: &str) -> Result<Self, Error> {
        Self::start_with(node, namespace, &[]).await
    }

    /// [`TeskApi::start`], with `environment` for the taskmaster besides the retry limits (as
    /// TESK's chart sets it: `tesk.api.taskmaster.environment.KEY=VALUE`, e.g.
    /// `NETRC_SECRET_NAME`, which the taskmaster mounts into its filer pods).
    pub async fn start_with(
        node: &Node,
        namespace: &str,
        environment: &[(&str, &str)],
    ) -> Result<Self, Error> {
        let jar = api_jar();
        if !jar.is_file() {
            return Err(Error::Missing {
                what: "tesk-api (TESK's Java TES API)".into(),
                path: jar,
                fix: "cargo xtask setup".into(),
            });
        }
        let port = free_port()?;
        let image = format!("{}/tesk-taskmaster", node::IMAGE_REGISTRY);
        let mut command = Command::new("java");
        command
            .env("KUBECONFIG", node.plane().kubeconfig())
            .arg("-Xmx384m")
            .arg("-jar")
            .arg(&jar)
            .args([
                "--server.address=127.0.0.1".to_owned(),
                format!("--server.port={port}"),
                format!("--tesk.api.k8s.namespace={namespace}"),
                format!("--tesk.api.taskmaster.image-name={image}"),
                format!("--tesk.api.taskmaster.image-version={}", node::IMAGE_TAG),
                // TESK's filer, which the taskmaster runs when a task has inputs or outputs
                // (the operator takes the `drs://` inputs away from it).
                format!(
                    "--tesk.api.taskmaster.filer-image-name={}/tesk-filer",
                    node::IMAGE_REGISTRY
                ),
                format!(
                    "--tesk.api.taskmaster.filer-image-version={}",
                    node::IMAGE_TAG
                ),
                format!("--tesk.api.taskmaster.service-account-name={TASKMASTER_ACCOUNT}"),
                "--tesk.api.taskmaster.environment.EXECUTOR_BACKOFF_LIMIT=0".to_owned(),
                "--tesk.api.taskmaster.environment.FILER_BACKOFF_LIMIT=0".to_owned(),
            ])
            .args(
                environment
                    .iter()
                    .map(|(key, value)| format!("--tesk.api.taskmaster.environment.{key}={value}")),
            );
        let log = node.plane().dir().join("tesk-api.log");
        let mut process = Supervised::spawn("tesk-api", command, &log)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = process.try_exit_status()? {
                return Err(Error::Exited {
                    name: "tesk-api".into(),
                    status: status.to_string(),
                    log_tail: process.log_tail(40),
                });
            }
            if let Ok((200, _)) = http(port, "GET", &format!("{TES_BASE}/service-info"), None) {
                return Ok(Self { process, port });
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "tesk-api to serve http://127.0.0.1:{port}{TES_BASE}/service-info"
                    ),
                    log_tail: process.log_tail(40),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// `METHOD /ga4gh/tes/v1{path}` with an optional JSON body: the status and the body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), Error> {
        http(self.port, method, &format!("{TES_BASE}{path}"), body)
    }

    /// The base URL of the TES API (`http://127.0.0.1:PORT`, what TES clients are given).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Polls `GET /tasks/{id}?view=FULL` until the task is in a final state ([`FINAL_STATES`];
    /// `SYSTEM_ERROR` only once it has lasted [`SYSTEM_ERROR_SETTLES`]) and returns the task.
    ///
    /// # Errors
    ///
    /// A non-200 answer, a body that is not JSON, or no final state within `timeout`.
    pub async fn wait_final(&self, id: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut system_error_since: Option<Instant> = None;
        loop {
            let (status, body) = self.request("GET", &format!("/tasks/{id}?view=FULL"), None)?;
            anyhow::ensure!(status == 200, "GET task {id}: HTTP {status}: {body}");
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
            } else if FINAL_STATES.contains(&state) {
                return Ok(task);
            } else {
                system_error_since = None;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "task {id} still {state} after {} s: {body}\ntesk-api:\n{}",
                timeout.as_secs(),
                self.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The last `lines` lines of tesk-api's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

/// One HTTP/1.0 exchange with 127.0.0.1:`port` (HTTP/1.0: the server closes the connection and
/// sends no chunked encoding).
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, String), Error> {
    let io = |context: String| move |source| Error::Io { context, source };
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(io(format!("connecting to 127.0.0.1:{port}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(io("setting a read timeout".into()))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(io(format!("sending {method} {path}")))?;
    let mut response = Vec::new();
    stream
        .take(16 * 1024 * 1024)
        .read_to_end(&mut response)
        .map_err(io(format!("reading the response to {method} {path}")))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            Error::Unexpected(format!("{method} {path}: not an HTTP response: {head:?}"))
        })?;
    Ok((status, body.to_owned()))
}

/// Creates TESK's namespace `namespace`: opted in to the operator's TESK adapter
/// (`c4gh.dev/tesk=enabled`) and to the pod-network stand-in, with the taskmaster's
/// ServiceAccount ([`taskmaster_namespace`]); the DRS CA bundle and a `Crypt4ghPolicy` `default`
/// allowing `drs` with `spec` merged over the base (hosts, CA, token audience).
pub async fn tesk_namespace(
    node: &Node,
    client: &Client,
    namespace: &str,
    drs: &DrsPod,
    spec: &Value,
) -> Result<(), Error> {
    taskmaster_namespace(
        node,
        client,
        namespace,
        &[(keys::TESK_NAMESPACE_LABEL, "enabled")],
    )
    .await?;
    let post = PostParams::default();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("drs-ca".into());
    cm.data = Some([("ca.crt".to_owned(), drs.ca_pem.clone())].into());
    config_maps.create(&post, &cm).await?;
    let gvk = GroupVersionKind::gvk("c4gh.dev", "v1alpha1", "Crypt4ghPolicy");
    let resource = ApiResource::from_gvk(&gvk);
    let mut merged = json!({
        "allowedHosts": [drs.authority],
        "allowPort": true,
        "caBundle": {"name": "drs-ca"},
        "auth": {"serviceAccountToken": {"audience": DRS_AUDIENCE}},
    });
    if let (Some(base), Some(extra)) = (merged.as_object_mut(), spec.as_object()) {
        for (key, value) in extra {
            base.insert(key.clone(), value.clone());
        }
    }
    let mut policy = DynamicObject::new("default", &resource).within(namespace);
    policy.data = json!({ "spec": merged });
    let policies: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    policies.create(&post, &policy).await?;
    Ok(())
}

/// Creates the namespace `namespace` with `labels` and the pod-network stand-in's label, and in
/// it the taskmaster's ServiceAccount with the rights TESK's chart gives it
/// (`taskmaster-rbac.yaml`: Jobs, pods and their logs, PVCs, ConfigMaps). Also installs the
/// pod-network policy (cluster-wide, once). Without [`keys::TESK_NAMESPACE_LABEL`] the operator
/// never sees the namespace's TESK objects.
pub async fn taskmaster_namespace(
    node: &Node,
    client: &Client,
    namespace: &str,
    labels: &[(&str, &str)],
) -> Result<(), Error> {
    pod_network_policy(node, client).await?;
    let mut all = serde_json::Map::new();
    all.insert(POD_NETWORK_LABEL.to_owned(), json!("true"));
    for (key, value) in labels {
        all.insert((*key).to_owned(), json!(value));
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = object(json!({"metadata": {"name": namespace, "labels": all}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let post = PostParams::default();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let account: ServiceAccount = object(json!({"metadata": {"name": TASKMASTER_ACCOUNT}}))?;
    accounts.create(&post, &account).await?;
    let roles: Api<Role> = Api::namespaced(client.clone(), namespace);
    let role: Role = object(json!({
        "metadata": {"name": TASKMASTER_ACCOUNT},
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "watch", "delete"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["create", "get", "list", "delete"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "delete"]},
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]}
        ]
    }))?;
    roles.create(&post, &role).await?;
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), namespace);
    let binding: RoleBinding = object(json!({
        "metadata": {"name": TASKMASTER_ACCOUNT},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": TASKMASTER_ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": TASKMASTER_ACCOUNT, "namespace": namespace}]
    }))?;
    bindings.create(&post, &binding).await?;
    Ok(())
}

/// `value` as a Kubernetes object of type `T`.
fn object<T: k8s_openapi::serde::de::DeserializeOwned>(value: Value) -> Result<T, Error> {
    serde_json::from_value(value)
        .map_err(|err| Error::Unexpected(format!("building a Kubernetes object: {err}")))
}

/// The pod-network stand-in (module docs): a MutatingAdmissionPolicy and its binding for the
/// pods of namespaces labelled [`POD_NETWORK_LABEL`]. Idempotent.
async fn pod_network_policy(node: &Node, client: &Client) -> Result<(), Error> {
    let server = node.plane().server();
    let port = server.rsplit(':').next().unwrap_or_default();
    let policy_kind = GroupVersionKind::gvk(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingAdmissionPolicy",
    );
    let binding_kind = GroupVersionKind::gvk(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingAdmissionPolicyBinding",
    );
    let env = format!(
        "[Object.spec.containers.env{{name: \"KUBERNETES_SERVICE_HOST\", value: \"127.0.0.1\"}}, \
         Object.spec.containers.env{{name: \"KUBERNETES_SERVICE_PORT\", value: \"{port}\"}}]"
    );
    let expression = format!(
        "Object{{spec: Object.spec{{hostNetwork: true, dnsPolicy: \"ClusterFirstWithHostNet\", \
         containers: object.spec.containers.map(c, Object.spec.containers{{name: c.name, env: {env}}})}}}}"
    );
    let objects = [
        (
            policy_kind,
            json!({"spec": {
                "matchConstraints": {"resourceRules": [{
                    "apiGroups": [""], "apiVersions": ["v1"],
                    "operations": ["CREATE"], "resources": ["pods"]
                }]},
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "mutations": [{
                    "patchType": "ApplyConfiguration",
                    "applyConfiguration": {"expression": expression}
                }]
            }}),
        ),
        (
            binding_kind,
            json!({"spec": {
                "policyName": POD_NETWORK_POLICY,
                "matchResources": {"namespaceSelector": {"matchLabels": {POD_NETWORK_LABEL: "true"}}}
            }}),
        ),
    ];
    for (gvk, data) in objects {
        let resource = ApiResource::from_gvk(&gvk);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        if api.get_opt(POD_NETWORK_POLICY).await?.is_some() {
            continue;
        }
        let mut object = DynamicObject::new(POD_NETWORK_POLICY, &resource);
        object.data = data;
        api.create(&PostParams::default(), &object).await?;
    }
    Ok(())
}

/// The capacity of each PV [`task_volumes`] makes: more than any test task asks for (tesk-api
/// sends `resources.disk_gb`, 0.1 by default, and the taskmaster claims `<disk_gb>Gi`).
pub const TASK_VOLUME_CAPACITY: &str = "4Gi";

/// `count` PersistentVolumes for TESK's task PVCs, each a hostPath directory `dir/pv-N`
/// (mode 0777: TESK's filer runs as UID 100, the executors as their images' users). The node
/// has no provisioner; what the taskmaster asks for (`pvc.py`: `ReadWriteOnce`,
/// `<disk_gb>Gi`, no storage class unless `STORAGE_CLASS_NAME` is set, and the cluster has no
/// default class) binds to one of these through the PV controller. `Retain`: a released
/// volume is not reused, so each task gets a fresh one. The directories go with `dir`, the
/// objects with the control plane.
pub async fn task_volumes(
    client: &Client,
    dir: &std::path::Path,
    count: usize,
) -> Result<Vec<PathBuf>, Error> {
    use std::os::unix::fs::PermissionsExt;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let mut paths = Vec::with_capacity(count);
    for n in 0..count {
        let path = dir.join(format!("pv-{n}"));
        std::fs::create_dir_all(&path)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)))
            .map_err(|source| Error::Io {
                context: format!("creating {}", path.display()),
                source,
            })?;
        let volume: PersistentVolume = object(json!({
            "metadata": {"name": format!("c4gh-e2e-task-{n}")},
            "spec": {
                "capacity": {"storage": TASK_VOLUME_CAPACITY},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": path, "type": "Directory"}
            }
        }))?;
        volumes.create(&PostParams::default(), &volume).await?;
        paths.push(path);
    }
    Ok(paths)
}
