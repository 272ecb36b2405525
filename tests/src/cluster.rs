//! The project installed on the real node ([`crate::node::Node`]) the way a cluster operator
//! installs it, and the pieces the node scenarios share:
//!
//! - [`install_operator`]: `kubectl apply -k` of `manifests/overlays/local-node` (the shipped
//!   Deployment, ServiceAccount, RBAC and self-managed certificates, with the locally built
//!   images on the host network), plus the apiserver's loopback address, then waits for the
//!   Deployment's pod to be ready and the webhook to be published by URL;
//! - [`DrsPod`]: the DRS server from its image (host network, 127.0.0.1), objects encrypted from
//!   random data, verifying projected ServiceAccount tokens against the apiserver's issuer keys;
//! - [`task_pod`]: an opted-in task pod of the task image whose task decrypts every input with
//!   the reference `crypt4gh` using only `C4GH_SECRET_KEY` and checks SHA-256;
//! - [`KeyWatch`]: the key file on the node's tmpfs, watched from the host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use c4gh_contract::{annotations, pod};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use kube::api::{DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::control_plane::free_port;
use crate::node::{self, Node};
use crate::operator::ensure_namespace;
use crate::{Error, manifests, workspace};

/// The operator's webhook URL in `manifests/overlays/local-node`.
pub const WEBHOOK_URL: &str = "https://127.0.0.1:18443/mutate-pods";
/// The audience the DRS server accepts and the projected token names.
pub const DRS_AUDIENCE: &str = "c4gh-drs";
/// The apiserver's ServiceAccount issuer (`crate::control_plane`).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The ServiceAccount the task pods run as (the DRS objects name it as their reader).
pub const TASK_ACCOUNT: &str = "tes-task";

/// The reference tool's decryption as the task runs it: each argument pair is (file, expected
/// SHA-256 of its plaintext); only `C4GH_SECRET_KEY` tells `crypt4gh` which key to use. It
/// prints who it runs as and the key file's owner and mode first.
pub const TASK_SCRIPT: &str = r#"
import hashlib, os, subprocess, sys
key = os.environ["C4GH_SECRET_KEY"]
st = os.stat(key)
print(f"task uid={os.getuid()} groups={sorted(os.getgroups())} key={oct(st.st_mode & 0o777)} {st.st_uid}:{st.st_gid}")
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
sys.stdout.flush()
sys.exit(0 if ok else 1)
"#;

/// Installs the operator with `kubectl apply -k` (see the module documentation) and waits until
/// its pod is ready and its webhook is published at [`WEBHOOK_URL`] with a `caBundle`.
pub async fn install_operator(node: &Node, client: &Client) -> Result<String, Error> {
    let overlay = workspace::root()
        .join("manifests")
        .join("overlays")
        .join("local-node");
    let dir = tempfile::Builder::new()
        .prefix("c4gh-e2e-kustomize-")
        .tempdir()
        .map_err(|source| Error::Io {
            context: "creating a kustomization directory".into(),
            source,
        })?;
    let port = node
        .plane()
        .server()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    // kustomize takes bases by relative path only.
    let up = "../".repeat(dir.path().components().count().saturating_sub(1));
    let overlay = PathBuf::from(up).join(overlay.strip_prefix("/").unwrap_or(&overlay));
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- {overlay}
patches:
- target: {{kind: Deployment, name: c4gh-operator}}
  patch: |-
    - op: add
      path: /spec/template/spec/containers/0/env/-
      value: {{name: KUBERNETES_SERVICE_HOST, value: \"127.0.0.1\"}}
    - op: add
      path: /spec/template/spec/containers/0/env/-
      value: {{name: KUBERNETES_SERVICE_PORT, value: \"{port}\"}}
",
        overlay = overlay.display()
    );
    write(&dir.path().join("kustomization.yaml"), &kustomization)?;
    let report = manifests::apply(node.plane(), dir.path())?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "c4gh-system");
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=c4gh-operator"))
            .await?;
        let ready = list.items.iter().any(pod_ready);
        let published = configs
            .get_opt("c4gh-operator")
            .await?
            .and_then(|c| c.webhooks)
            .and_then(|w| w.into_iter().next())
            .is_some_and(|w| {
                w.client_config.url.as_deref() == Some(WEBHOOK_URL)
                    && w.client_config.ca_bundle.is_some_and(|b| !b.0.is_empty())
            });
        if ready && published {
            return Ok(report);
        }
        if Instant::now() >= deadline {
            let phases: Vec<String> = list
                .items
                .iter()
                .map(|p| {
                    format!(
                        "{}: {}",
                        p.metadata.name.clone().unwrap_or_default(),
                        serde_json::to_string(&p.status).unwrap_or_default()
                    )
                })
                .collect();
            return Err(Error::Timeout {
                what: format!(
                    "the operator pod to be ready (ready: {ready}) and to publish {WEBHOOK_URL} \
                     (published: {published}); pods: {}",
                    phases.join("\n")
                ),
                log_tail: node.log_tails(20),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether the pod's `Ready` condition is true.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The DRS server running from its image in namespace `drs` (see the module documentation).
#[derive(Debug)]
pub struct DrsPod {
    /// `127.0.0.1:PORT`.
    pub authority: String,
    /// The CA that signed the server's certificate (PEM).
    pub ca_pem: String,
    /// Object ID → SHA-256 of its plaintext.
    pub objects: BTreeMap<String, String>,
    catalog: TempDir,
}

impl DrsPod {
    /// Encrypts `objects` (ID, size) of random data into a catalog on the node, readable by the
    /// task ServiceAccount of `task_namespace`, and starts the server's pod; returns when it
    /// accepts connections.
    pub async fn start(
        node: &Node,
        client: &Client,
        task_namespace: &str,
        objects: &[(&str, usize)],
    ) -> Result<Self, Error> {
        let reader = format!("system:serviceaccount:{task_namespace}:{TASK_ACCOUNT}");
        Self::start_for(node, client, &reader, objects).await
    }

    /// Like [`DrsPod::start`], with `reader` (a token subject such as
    /// `system:serviceaccount:NS:NAME`) the one principal allowed to read every object.
    pub async fn start_for(
        node: &Node,
        client: &Client,
        reader: &str,
        objects: &[(&str, usize)],
    ) -> Result<Self, Error> {
        ensure_namespace(client, "drs").await?;
        let catalog = tempfile::Builder::new()
            .prefix("c4gh-e2e-drs-catalog-")
            .tempdir()
            .map_err(|source| Error::Io {
                context: "creating the DRS catalog directory".into(),
                source,
            })?;
        set_mode(catalog.path(), 0o755)?;
        let key = c4gh::keys::SecretKey::generate();
        let plain = tempfile::Builder::new()
            .prefix("c4gh-e2e-drs-plain-")
            .tempdir_in(shm_or_tmp())
            .map_err(|source| Error::Io {
                context: "creating a scratch directory".into(),
                source,
            })?;
        let mut digests = BTreeMap::new();
        for (id, size) in objects {
            let mut data = vec![0u8; *size];
            rand::thread_rng().fill_bytes(&mut data);
            let input = plain.path().join(id);
            std::fs::write(&input, &data).map_err(|source| Error::Io {
                context: format!("writing {}", input.display()),
                source,
            })?;
            drs_server::admin::add_file(
                catalog.path(),
                &key.public_key(),
                &input,
                &drs_server::admin::AddOptions {
                    id: (*id).to_owned(),
                    name: None,
                    description: None,
                    mime_type: None,
                    readers: vec![reader.to_owned()],
                    dataset: None,
                },
            )
            .map_err(|err| Error::Unexpected(format!("adding {id} to the catalog: {err}")))?;
            digests.insert((*id).to_owned(), hex(&Sha256::digest(&data)));
        }
        drop(plain);
        chmod_tree(catalog.path())?;

        let port = free_port()?;
        let authority = format!("127.0.0.1:{port}");
        let pki = node.plane().dir().join("pki");
        let tls =
            node.plane()
                .ca()
                .issue_server(&pki, "drs-server", &["127.0.0.1", "localhost"])?;
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| Error::Io {
                context: format!("reading {}", path.display()),
                source,
            })
        };
        let request = http::Request::get("/openid/v1/jwks").body(Vec::new())?;
        let jwks = client.request_text(request).await?;
        let server_key = key
            .to_pem(None, None)
            .map_err(|err| Error::Unexpected(format!("encoding the DRS server key: {err}")))?;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), "drs");
        let mut secret = Secret::default();
        secret.metadata.name = Some("drs-server".into());
        secret.data = Some(
            [
                (
                    "server.sec".to_owned(),
                    ByteString(server_key.as_bytes().to_vec()),
                ),
                ("tls.crt".to_owned(), ByteString(read(&tls.cert)?)),
                ("tls.key".to_owned(), ByteString(read(&tls.key)?)),
            ]
            .into(),
        );
        secrets.create(&PostParams::default(), &secret).await?;
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "drs");
        let mut jwks_cm = ConfigMap::default();
        jwks_cm.metadata.name = Some("apiserver-jwks".into());
        jwks_cm.data = Some([("jwks.json".to_owned(), jwks)].into());
        config_maps.create(&PostParams::default(), &jwks_cm).await?;

        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "drs-server", "labels": {"app": "drs-server"}},
            "spec": {
                "hostNetwork": true,
                "dnsPolicy": "ClusterFirstWithHostNet",
                "automountServiceAccountToken": false,
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532},
                "containers": [{
                    "name": "drs",
                    "image": node::image("c4gh-drs-server"),
                    "imagePullPolicy": "Never",
                    "args": [
                        "serve",
                        format!("--listen={authority}"),
                        "--catalog=/catalog",
                        "--secret-key=/secrets/server.sec",
                        "--tls-cert=/secrets/tls.crt",
                        "--tls-key=/secrets/tls.key",
                        format!("--oidc-issuer={ISSUER}"),
                        format!("--oidc-audience={DRS_AUDIENCE}"),
                        "--jwks-file=/jwks/jwks.json",
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": false,
                        "readOnlyRootFilesystem": true,
                        "capabilities": {"drop": ["ALL"]}
                    },
                    "volumeMounts": [
                        {"name": "catalog", "mountPath": "/catalog", "readOnly": true},
                        {"name": "secrets", "mountPath": "/secrets", "readOnly": true},
                        {"name": "jwks", "mountPath": "/jwks", "readOnly": true}
                    ]
                }],
                "volumes": [
                    {"name": "catalog", "hostPath": {"path": catalog.path(), "type": "Directory"}},
                    {"name": "secrets", "secret": {"secretName": "drs-server", "defaultMode": 0o440}},
                    {"name": "jwks", "configMap": {"name": "apiserver-jwks"}}
                ]
            }
        }))
        .map_err(|err| Error::Unexpected(format!("building the DRS pod: {err}")))?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "drs");
        pods.create(&PostParams::default(), &pod).await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                let status = pods
                    .get_opt("drs-server")
                    .await?
                    .and_then(|p| p.status)
                    .map(|s| serde_json::to_string(&s).unwrap_or_default())
                    .unwrap_or_default();
                return Err(Error::Timeout {
                    what: format!("the DRS server pod to listen on {authority} (status {status})"),
                    log_tail: node.log_tails(20),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(DrsPod {
            authority,
            ca_pem: node.plane().ca().cert_pem(),
            objects: digests,
            catalog,
        })
    }

    /// `drs://127.0.0.1:PORT/ID`.
    pub fn uri(&self, id: &str) -> String {
        format!("drs://{}/{id}", self.authority)
    }

    /// The catalog directory on the node.
    pub fn catalog(&self) -> &Path {
        self.catalog.path()
    }
}

/// Creates namespace `namespace` for task pods: the task ServiceAccount, the DRS CA bundle
/// ConfigMap and a `Crypt4ghPolicy` allowing `drs` with projected, audience-bound tokens.
pub async fn task_namespace(client: &Client, namespace: &str, drs: &DrsPod) -> Result<(), Error> {
    ensure_namespace(client, namespace).await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let mut account = ServiceAccount::default();
    account.metadata.name = Some(TASK_ACCOUNT.into());
    accounts.create(&PostParams::default(), &account).await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("drs-ca".into());
    cm.data = Some([("ca.crt".to_owned(), drs.ca_pem.clone())].into());
    config_maps.create(&PostParams::default(), &cm).await?;
    let gvk = GroupVersionKind::gvk("c4gh.dev", "v1alpha1", "Crypt4ghPolicy");
    let resource = ApiResource::from_gvk(&gvk);
    let mut policy = DynamicObject::new("default", &resource).within(namespace);
    policy.data = json!({"spec": {
        "allowedHosts": [drs.authority],
        "allowPort": true,
        "caBundle": {"name": "drs-ca"},
        "auth": {"serviceAccountToken": {"audience": DRS_AUDIENCE}},
    }});
    let policies: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    policies.create(&PostParams::default(), &policy).await?;
    Ok(())
}

/// An opted-in task pod: the task image on the host network under UID 1000 (the sidecar keeps
/// its own UID), decrypting `inputs` (object ID, expected SHA-256) from `drs`, then writing the
/// time it exits to `/data/out/exited` (for [`KeyWatch`]).
pub fn task_pod(name: &str, drs: &DrsPod, inputs: &[(&str, &str)]) -> Result<Pod, Error> {
    let mut command = vec![
        "python3".to_owned(),
        "-c".to_owned(),
        TASK_SCRIPT.to_owned(),
    ];
    for (id, digest) in inputs {
        command.push(format!("/data/in/{id}.c4gh"));
        command.push((*digest).to_owned());
    }
    let ids: Vec<&str> = inputs.iter().map(|(id, _)| *id).collect();
    pod_running(name, Some((drs, &ids)), &shell_words(&command))
}

/// A task pod like [`task_pod`] running the shell command `script`; with `inputs` (the DRS
/// server and object IDs) it opts in to the sidecar, without it the webhook never sees it.
/// The shell writes its start and exit times (seconds since the epoch) to `/data/out/started`
/// and `/data/out/exited` ([`KeyWatch::task_started`], [`KeyWatch::task_exited`]).
pub fn pod_running(
    name: &str,
    inputs: Option<(&DrsPod, &[&str])>,
    script: &str,
) -> Result<Pod, Error> {
    let script = format!(
        "date +%s.%N > /data/out/started; {script}; status=$?; date +%s.%N > /data/out/exited; exit $status"
    );
    let mut pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "hostNetwork": true,
            "dnsPolicy": "ClusterFirstWithHostNet",
            "serviceAccountName": TASK_ACCOUNT,
            "automountServiceAccountToken": false,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 10,
            "containers": [{
                "name": "task",
                "image": node::image("c4gh-task"),
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": true},
                "volumeMounts": [
                    {"name": "data", "mountPath": "/data/in"},
                    {"name": "out", "mountPath": "/data/out"}
                ]
            }],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "out", "emptyDir": {}}]
        }
    }))
    .map_err(|err| Error::Unexpected(format!("building pod {name}: {err}")))?;
    if let Some((drs, ids)) = inputs {
        let annotation: Vec<Value> = ids
            .iter()
            .map(|id| json!({"url": drs.uri(id), "path": format!("/data/in/{id}.c4gh")}))
            .collect();
        pod.metadata.labels = Some(
            [(
                annotations::INJECT_LABEL.to_owned(),
                annotations::INJECT_ENABLED.to_owned(),
            )]
            .into(),
        );
        pod.metadata.annotations = Some(
            [(
                annotations::INPUTS.to_owned(),
                serde_json::to_string(&annotation).unwrap_or_default(),
            )]
            .into(),
        );
    }
    Ok(pod)
}

/// Creates `pod` in `namespace`, retrying while the operator's cache has not seen the policy yet.
pub async fn create_pod(client: &Client, namespace: &str, pod: &Pod) -> Result<Pod, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match pods.create(&PostParams::default(), pod).await {
            Ok(created) => return Ok(created),
            Err(err)
                if Instant::now() < deadline
                    && (err.to_string().contains("no Crypt4ghPolicy")
                        || err.to_string().contains("serviceaccount")) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => {
                return Err(Error::Unexpected(format!(
                    "creating pod {namespace}/{}: {err}",
                    pod.metadata.name.as_deref().unwrap_or_default()
                )));
            }
        }
    }
}

/// The key file of a pod on the node's tmpfs, watched from the host.
#[derive(Debug)]
pub struct KeyWatch {
    /// `KUBELET/pods/UID/volumes/kubernetes.io~empty-dir/c4gh-key`.
    pub dir: PathBuf,
    /// The data volume holding `exited` (the task's exit time).
    pub out_dir: PathBuf,
}

impl KeyWatch {
    /// The key volume of pod `uid` on `node`.
    pub fn new(node: &Node, uid: &str) -> Self {
        let volumes = node
            .kubelet_dir()
            .join("pods")
            .join(uid)
            .join("volumes")
            .join("kubernetes.io~empty-dir");
        KeyWatch {
            dir: volumes.join(pod::KEY_VOLUME),
            out_dir: volumes.join("out"),
        }
    }

    /// The key file.
    pub fn key_file(&self) -> PathBuf {
        self.dir.join(pod::SECRET_KEY_FILE)
    }

    /// Whether the key volume is a tmpfs mount.
    pub fn on_tmpfs(&self) -> bool {
        let dir = self.dir.display().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                fields.get(4) == Some(&dir.as_str())
                    && line
                        .split(" - ")
                        .nth(1)
                        .is_some_and(|rest| rest.starts_with("tmpfs "))
            })
    }

    /// The task's exit time (seconds since the epoch), once it wrote it.
    pub fn task_exited(&self) -> Option<f64> {
        self.stamp("exited")
    }

    /// The time the task's shell started (its first act), once it wrote it.
    pub fn task_started(&self) -> Option<f64> {
        self.stamp("started")
    }

    fn stamp(&self, name: &str) -> Option<f64> {
        std::fs::read_to_string(self.out_dir.join(name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

/// Seconds since the epoch, now.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shm_or_tmp() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

fn chmod_tree(dir: &Path) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        context: format!("reading {}", dir.display()),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            set_mode(&path, 0o755)?;
            chmod_tree(&path)?;
        } else {
            set_mode(&path, 0o644)?;
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        Error::Io {
            context: format!("setting the mode of {}", path.display()),
            source,
        }
    })
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|source| Error::Io {
        context: format!("writing {}", path.display()),
        source,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
