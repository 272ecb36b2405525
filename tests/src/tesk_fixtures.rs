//! The operator's TESK fixtures (`operator/tests/fixtures/tesk/`), captured from the real TESK:
//! [`capture`] posts the TES tasks of [`SCENARIOS`] to the real `tesk-api` ([`TeskApi`]) in a
//! namespace the operator does not watch (no `c4gh.dev/tesk` label, no policy, no operator at
//! all), lets the real taskmaster run on the node, and reads back everything TESK created for
//! each task: the task ConfigMap, the taskmaster Job, the task PVC, the inputs filer, executor
//! and outputs filer Jobs, and the executor pods the Job controller made from them.
//!
//! [`normalise`] makes the objects comparable between runs: server-set fields (`uid`,
//! `resourceVersion`, `creationTimestamp`, `managedFields`, `generation`, `status`) go, the
//! random task id becomes the scenario's fixed id (also inside `JSON_INPUT.gz`, which is
//! re-compressed), UIDs become fixed ones, the pods' generated name suffixes and token volume
//! names become `00000`, what controllers add after creation (the PVC's binding, the pod's
//! node) goes, and so does the one stand-in of the tests' node (the host network and the
//! apiserver address, see [`crate::tesk`]). [`check`] compares a capture with the committed
//! fixtures; [`write`] replaces them.
//!
//! `tests/tests/tesk_fixtures.rs` runs both; regenerate with [`UPDATE_ENV`]`=1`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, VolumeMount};
use kube::api::{DynamicObject, ListParams};
use kube::core::ApiResource;
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::node::{self, Node};
use crate::tesk::{self, TeskApi};
use crate::workspace;

/// The namespace of the capture: TESK's objects there reach no webhook of the operator.
pub const NAMESPACE: &str = "tasks";

/// Set to `1` to rewrite the committed fixtures from the capture instead of comparing.
pub const UPDATE_ENV: &str = "C4GH_UPDATE_FIXTURES";

/// The command that regenerates the fixtures (for failure messages and docs).
pub const REGENERATE: &str =
    "C4GH_UPDATE_FIXTURES=1 cargo test -p c4gh-e2e --test tesk_fixtures, then review the diff";

/// The key of TESK's task input in the task ConfigMap's `binaryData`.
const GZIP_KEY: &str = "JSON_INPUT.gz";

/// A URL on loopback where nothing listens (the discard port): a filer that tries it fails at
/// once, and nothing leaves the machine.
const NOWHERE: &str = "127.0.0.1:9";

/// One TES task to capture.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Its fixtures' directory under [`fixtures_dir`].
    pub dir: &'static str,
    /// The fixed task id that replaces the random one.
    pub id: &'static str,
    /// The state `GET /tasks/{id}` ends in.
    pub final_state: &'static str,
    /// The TES task (`POST /ga4gh/tes/v1/tasks` body).
    pub task: fn() -> Value,
}

/// The captured TES tasks.
///
/// - `drs`: what the operator adapts: two `drs://` inputs next to an `http://` one, a DIRECTORY
///   output, `volumes`, CPU and RAM, two executors (the second with `env`, `workdir`, `stdin`,
///   `stdout`). Unadapted, TESK's inputs filer fails on its first input (nothing listens
///   there; it would fail on `drs://` next with `UnknownProtocol`), so the taskmaster creates
///   no executor: ConfigMap, taskmaster Job, PVC and inputs filer Job.
/// - `files`: the same executor shapes with an inline (`content`) input the filer can write
///   and a `volumes` entry, so the executors run: everything above plus the executor Jobs,
///   their pods and the outputs filer Job (which then fails to upload, to nowhere).
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        dir: "drs",
        id: "task-1a2b3c4d",
        final_state: "SYSTEM_ERROR",
        task: drs_task,
    },
    Scenario {
        dir: "files",
        id: "task-2b3c4d5e",
        final_state: "SYSTEM_ERROR",
        task: files_task,
    },
];

fn drs_task() -> Value {
    let image = node::image("c4gh-task");
    json!({
        "name": "align",
        "inputs": [
            {"name": "ref", "url": format!("http://{NOWHERE}/ref.fa"), "path": "/data/ref/ref.fa", "type": "FILE"},
            {"name": "bam", "url": "drs://drs.example.org/obj-1", "path": "/data/in/sample.bam.c4gh", "type": "FILE"},
            {"name": "reads", "url": "drs://drs.example.org/obj-2", "path": "/data/stream/reads.fq", "type": "FILE"}
        ],
        "outputs": [{"name": "out", "url": format!("ftp://{NOWHERE}/out"), "path": "/data/out", "type": "DIRECTORY"}],
        "volumes": ["/data/out"],
        "resources": {"cpu_cores": 1, "ram_gb": 1.0},
        "executors": [
            {"image": image, "command": ["/bin/sh", "-c", "ls /data/in"]},
            {"image": image, "command": ["sha256sum", "-"],
             "stdin": "/data/in/sample.bam.c4gh", "stdout": "/data/out/sum.txt",
             "workdir": "/data/out", "env": {"LC_ALL": "C"}}
        ]
    })
}

fn files_task() -> Value {
    let image = node::image("c4gh-task");
    json!({
        "name": "count",
        "inputs": [{"name": "sample", "content": "ACGT\n", "path": "/data/in/sample.txt", "type": "FILE"}],
        "outputs": [{"name": "count", "url": format!("ftp://{NOWHERE}/count.txt"), "path": "/data/out/count.txt", "type": "FILE"}],
        "volumes": ["/work"],
        "executors": [
            {"image": image, "command": ["sha256sum", "/data/in/sample.txt"]},
            {"image": image, "command": ["wc", "-c"],
             "stdin": "/data/in/sample.txt", "stdout": "/data/out/count.txt",
             "workdir": "/data/out", "env": {"LC_ALL": "C"}}
        ]
    })
}

/// Where the fixtures live: `operator/tests/fixtures/tesk/`.
pub fn fixtures_dir() -> PathBuf {
    workspace::root()
        .join("operator")
        .join("tests")
        .join("fixtures")
        .join("tesk")
}

/// The committed fixture `path` (relative to [`fixtures_dir`], e.g. `drs/configmap.json`)
/// without its `metadata.namespace`, for a test to create it in a namespace of its own.
///
/// # Errors
///
/// The file is missing or not JSON.
pub fn load(path: &str) -> anyhow::Result<Value> {
    let file = fixtures_dir().join(path);
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let mut value: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("namespace");
    }
    Ok(value)
}

/// The mount at `path` of the first container of `job`'s pod template: where the taskmaster
/// put a directory of the task PVC.
pub fn first_container_mount(job: &Job, path: &str) -> Option<VolumeMount> {
    job.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .volume_mounts
        .as_ref()?
        .iter()
        .find(|m| m.mount_path == path)
        .cloned()
}

/// A capture: file path (relative to [`fixtures_dir`]) → normalised object.
pub type Captured = BTreeMap<PathBuf, Value>;

/// Runs every scenario on `node` (see the module docs) and returns the normalised objects.
///
/// # Errors
///
/// tesk-api or the taskmaster missing or failing, a task ending in another state than its
/// scenario's, or an object TESK created that [`normalise`] does not know.
pub async fn capture(node: &Node) -> anyhow::Result<Captured> {
    let client = node.client().await?;
    tesk::taskmaster_namespace(node, &client, NAMESPACE, &[]).await?;
    let volumes = tempfile::Builder::new()
        .prefix("c4gh-e2e-tesk-fixtures-")
        .tempdir()?;
    for path in tesk::task_volumes(&client, volumes.path(), SCENARIOS.len()).await? {
        // TESK's filer runs as UID 100; hostPath volumes get no fsGroup.
        use std::os::unix::fs::PermissionsExt;
        for n in 0..4 {
            let sub = path.join(format!("dir{n}"));
            std::fs::create_dir_all(&sub)?;
            std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o777))?;
        }
    }
    let api = TeskApi::start(node, NAMESPACE).await?;
    let mut captured = Captured::new();
    for scenario in SCENARIOS {
        let (status, body) = api.request("POST", "/tasks", Some(&(scenario.task)()))?;
        ensure!(
            status == 200,
            "POST /tasks ({}): HTTP {status}: {body}\ntesk-api:\n{}",
            scenario.dir,
            api.log_tail(30)
        );
        let id = serde_json::from_str::<Value>(&body)?["id"]
            .as_str()
            .context("POST /tasks returned no id")?
            .to_owned();
        let done = api.wait_final(&id, Duration::from_secs(300)).await?;
        let objects = objects_of(&client, &id).await?;
        ensure!(
            done["state"] == scenario.final_state,
            "task {id} ({}) should end {}: {}\nobjects: {:?}\n{}",
            scenario.dir,
            scenario.final_state,
            serde_json::to_string_pretty(&done)?,
            objects
                .iter()
                .map(|o| format!("{} {}", o["kind"], o["metadata"]["name"]))
                .collect::<Vec<_>>(),
            node.log_tails(20)
        );
        captured.extend(normalise(scenario, &id, objects)?);
    }
    drop(api);
    Ok(captured)
}

/// Every ConfigMap, Job, PVC and executor pod of task `id` in [`NAMESPACE`], with `apiVersion`
/// and `kind` (which list items lack).
async fn objects_of(client: &Client, id: &str) -> anyhow::Result<Vec<Value>> {
    let kinds = [
        ApiResource::erase::<ConfigMap>(&()),
        ApiResource::erase::<Job>(&()),
        ApiResource::erase::<PersistentVolumeClaim>(&()),
        ApiResource::erase::<Pod>(&()),
    ];
    let prefix = format!("{id}-");
    let mut out = Vec::new();
    for resource in kinds {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &resource);
        for item in api.list(&ListParams::default()).await?.items {
            let mut value = serde_json::to_value(&item)?;
            value["apiVersion"] = json!(resource.api_version);
            value["kind"] = json!(resource.kind);
            let name = value["metadata"]["name"].as_str().unwrap_or_default();
            let owner = if resource.kind == "Pod" {
                value["metadata"]["labels"]["job-name"]
                    .as_str()
                    .unwrap_or_default()
            } else {
                name
            };
            let ours = owner == id || owner.starts_with(&prefix);
            // The filers' pods are TESK's code, not objects TESK writes; the executor pods are
            // what the pod webhook sees.
            let executor_pod = resource.kind != "Pod" || owner.contains("-ex-");
            if ours && executor_pod {
                out.push(value);
            }
        }
    }
    Ok(out)
}

/// The fixture file of a captured object of task `id`, by TESK's naming.
fn file_name(kind: &str, owner: &str, id: &str) -> Option<String> {
    let rest = owner.strip_prefix(id)?;
    Some(match (kind, rest) {
        ("ConfigMap", "") => "configmap.json".to_owned(),
        ("Job", "") => "taskmaster.job.json".to_owned(),
        ("Job", "-inputs-filer") => "inputs-filer.job.json".to_owned(),
        ("Job", "-outputs-filer") => "outputs-filer.job.json".to_owned(),
        ("PersistentVolumeClaim", "-pvc") => "pvc.json".to_owned(),
        ("Job", ex) if ex.starts_with("-ex-") => format!("{}.job.json", &ex[1..]),
        ("Pod", ex) if ex.starts_with("-ex-") => format!("{}.pod.json", &ex[1..]),
        _ => return None,
    })
}

/// Normalises the objects TESK created for task `id` (see the module docs) into the
/// scenario's fixture files; the ConfigMap's task input also goes, decoded, into
/// `JSON_INPUT.json`.
///
/// # Errors
///
/// An object whose name is not one of TESK's, or a task input that is not gzip of JSON.
pub fn normalise(scenario: &Scenario, id: &str, objects: Vec<Value>) -> anyhow::Result<Captured> {
    let dir = Path::new(scenario.dir);
    let mut named = BTreeMap::new();
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let owner = if kind == "Pod" {
            object["metadata"]["labels"]["job-name"].as_str()
        } else {
            object["metadata"]["name"].as_str()
        }
        .unwrap_or_default()
        .to_owned();
        let file = file_name(&kind, &owner, id)
            .with_context(|| format!("TESK created {kind} {owner}, which no fixture is for"))?;
        ensure!(
            named.insert(file.clone(), object).is_none(),
            "two objects for {file} (a retried Job?)"
        );
    }
    // Fixed UIDs, in file order.
    let mut replace: Vec<(String, String)> = vec![(id.to_owned(), scenario.id.to_owned())];
    let base = SCENARIOS
        .iter()
        .position(|s| s.id == scenario.id)
        .unwrap_or_default()
        * 100;
    for (n, object) in named.values().enumerate() {
        if let Some(uid) = object["metadata"]["uid"].as_str() {
            replace.push((
                uid.to_owned(),
                format!("00000000-0000-4000-8000-{:012}", base + n + 1),
            ));
        }
    }
    let mut out = Captured::new();
    for (file, mut object) in named {
        strip(&mut object, &mut replace);
        if object["kind"] == "ConfigMap" {
            let b64 = object["binaryData"][GZIP_KEY]
                .as_str()
                .with_context(|| format!("ConfigMap {id} has no binaryData[{GZIP_KEY}]"))?;
            let mut text = String::new();
            MultiGzDecoder::new(&STANDARD.decode(b64)?[..])
                .read_to_string(&mut text)
                .with_context(|| format!("ConfigMap {id}: {GZIP_KEY} is not gzip of UTF-8"))?;
            let text = text.replace(id, scenario.id);
            let input: Value = serde_json::from_str(&text)
                .with_context(|| format!("ConfigMap {id}: {GZIP_KEY} is not JSON"))?;
            out.insert(dir.join("JSON_INPUT.json"), input);
            object["binaryData"][GZIP_KEY] = json!(STANDARD.encode(gzip(text.as_bytes())?));
        }
        replace_strings(&mut object, &replace);
        out.insert(dir.join(file), object);
    }
    Ok(out)
}

/// Removes the server-set and controller-set fields and the node's stand-in; records the
/// pod's generated names in `replace`.
fn strip(object: &mut Value, replace: &mut Vec<(String, String)>) {
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
    }
    if let Some(meta) = object["metadata"].as_object_mut() {
        for key in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
            "selfLink",
        ] {
            meta.remove(key);
        }
    }
    match kind.as_str() {
        "PersistentVolumeClaim" => {
            // The PV controller's binding, after TESK created the claim.
            if let Some(spec) = object["spec"].as_object_mut() {
                spec.remove("volumeName");
            }
            let meta = &mut object["metadata"];
            let empty = meta["annotations"].as_object_mut().is_some_and(|notes| {
                notes.retain(|k, _| {
                    !k.starts_with("pv.kubernetes.io/") && !k.starts_with("volume.")
                });
                notes.is_empty()
            });
            if empty && let Some(m) = meta.as_object_mut() {
                m.remove("annotations");
            }
        }
        "Pod" => {
            let generate = object["metadata"]["generateName"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if let Some(name) = object["metadata"]["name"].as_str() {
                replace.push((name.to_owned(), format!("{generate}00000")));
            }
            for volume in object["spec"]["volumes"].as_array().into_iter().flatten() {
                if let Some(name) = volume["name"].as_str()
                    && let Some(rest) = name.strip_prefix("kube-api-access-")
                    && rest != "00000"
                {
                    replace.push((name.to_owned(), "kube-api-access-00000".to_owned()));
                }
            }
            let spec = &mut object["spec"];
            if let Some(s) = spec.as_object_mut() {
                // The scheduler's binding.
                s.remove("nodeName");
                // The node's pod-network stand-in (crate::tesk::POD_NETWORK_POLICY).
                if s.get("hostNetwork") == Some(&json!(true)) {
                    s.remove("hostNetwork");
                }
                if s.get("dnsPolicy") == Some(&json!("ClusterFirstWithHostNet")) {
                    s.insert("dnsPolicy".into(), json!("ClusterFirst"));
                }
            }
            for container in spec["containers"].as_array_mut().into_iter().flatten() {
                let Some(c) = container.as_object_mut() else {
                    continue;
                };
                if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
                    env.retain(|e| {
                        !matches!(
                            e["name"].as_str(),
                            Some("KUBERNETES_SERVICE_HOST" | "KUBERNETES_SERVICE_PORT")
                        )
                    });
                    if env.is_empty() {
                        c.remove("env");
                    }
                }
            }
        }
        _ => {}
    }
}

/// Replaces every `from` by `to` in every string and key of `value`, longest `from` first (a
/// pod's generated name contains the task id).
fn replace_strings(value: &mut Value, replace: &[(String, String)]) {
    let mut replace = replace.to_vec();
    replace.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    swap_all(value, &replace);
}

fn swap_all(value: &mut Value, replace: &[(String, String)]) {
    let swap = |s: &str| {
        replace
            .iter()
            .fold(s.to_owned(), |acc, (from, to)| acc.replace(from, to))
    };
    match value {
        Value::String(s) => *s = swap(s),
        Value::Array(items) => items.iter_mut().for_each(|v| swap_all(v, replace)),
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (key, mut v) in old {
                swap_all(&mut v, replace);
                map.insert(swap(&key), v);
            }
        }
        _ => {}
    }
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// `value` as compared: a ConfigMap's `binaryData[JSON_INPUT.gz]` decoded (compressors differ
/// in their bytes, not in what they hold).
fn comparable(value: &Value) -> Value {
    let mut out = value.clone();
    if let Some(b64) = value["binaryData"][GZIP_KEY].as_str() {
        let mut text = String::new();
        let decoded = STANDARD
            .decode(b64)
            .ok()
            .and_then(|gz| MultiGzDecoder::new(&gz[..]).read_to_string(&mut text).ok())
            .and_then(|_| serde_json::from_str::<Value>(&text).ok());
        out["binaryData"][GZIP_KEY] = decoded.unwrap_or_else(|| json!({"undecodable": b64}));
    }
    out
}

/// The committed fixture files (`*.json` under the scenarios' directories).
fn committed() -> anyhow::Result<Captured> {
    let root = fixtures_dir();
    let mut out = Captured::new();
    for scenario in SCENARIOS {
        let dir = root.join(scenario.dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let value = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not JSON", path.display()))?;
                let rel = path.strip_prefix(&root)?.to_owned();
                out.insert(rel, value);
            }
        }
    }
    Ok(out)
}

/// Compares `captured` with the committed fixtures.
///
/// # Errors
///
/// Which files are missing, extra or different (with the first differing field of each), and
/// how to regenerate them.
pub fn check(captured: &Captured) -> anyhow::Result<()> {
    let committed = committed()?;
    let mut problems = Vec::new();
    for (path, value) in captured {
        match committed.get(path) {
            None => problems.push(format!("{}: not committed", path.display())),
            Some(old) => {
                if let Some(at) = first_difference(&comparable(old), &comparable(value), "") {
                    problems.push(format!("{}: differs at {at}", path.display()));
                }
            }
        }
    }
    for path in committed.keys().filter(|p| !captured.contains_key(*p)) {
        problems.push(format!(
            "{}: committed, but TESK no longer creates it",
            path.display()
        ));
    }
    if !problems.is_empty() {
        bail!(
            "the TESK fixtures in {} are not what the real tesk-api and taskmaster create now:\n  {}\nIf TESK (../shared/peers/tesk) or the capture changed on purpose, regenerate them: {REGENERATE}",
            fixtures_dir().display(),
            problems.join("\n  ")
        );
    }
    Ok(())
}

/// The JSON pointer of the first difference between `a` and `b`, with both values there.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys()) {
                let here = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (x.get(key), y.get(key)) {
                    (Some(p), Some(q)) => {
                        if let Some(d) = first_difference(p, q, &here) {
                            return Some(d);
                        }
                    }
                    (p, q) => return Some(format!("{here}: committed {p:?}, captured {q:?}")),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{at}/{i}"))),
        _ if a == b => None,
        _ => Some(format!("{at}: committed {a}, captured {b}")),
    }
}

/// Replaces the committed fixtures by `captured` (stale `*.json` files of the scenarios'
/// directories are removed; the README stays).
///
/// # Errors
///
/// A file that cannot be written or removed.
pub fn write(captured: &Captured) -> anyhow::Result<()> {
    let root = fixtures_dir();
    for path in committed()?.keys() {
        if !captured.contains_key(path) {
            std::fs::remove_file(root.join(path))?;
        }
    }
    for (path, value) in captured {
        let full = root.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&full, format!("{}\n", serde_json::to_string_pretty(value)?))
            .with_context(|| format!("writing {}", full.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_random_task_id_and_uids_are_replaced_everywhere() {
        let id = "task-9f8e7d6c";
        let text = format!(r#"{{"executors":[{{"metadata":{{"name":"{id}-ex-00"}}}}]}}"#);
        let objects = vec![
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": id, "uid": "u-cm", "resourceVersion": "7"},
                   "binaryData": {GZIP_KEY: STANDARD.encode(gzip(text.as_bytes()).unwrap())}}),
            json!({"apiVersion": "batch/v1", "kind": "Job",
                   "metadata": {"name": format!("{id}-ex-00"), "uid": "u-job",
                                "labels": {"taskmaster-name": id}},
                   "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-job"}}},
                   "status": {"active": 1}}),
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": format!("{id}-ex-00-q7w2z"), "generateName": format!("{id}-ex-00-"),
                                "uid": "u-pod", "labels": {"job-name": format!("{id}-ex-00")},
                                "ownerReferences": [{"kind": "Job", "uid": "u-job"}]},
                   "spec": {"nodeName": "localhost", "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet",
                            "volumes": [{"name": "kube-api-access-x9k2m"}],
                            "containers": [{"name": "c", "env": [{"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"}],
                                            "volumeMounts": [{"name": "kube-api-access-x9k2m"}]}]}}),
        ];
        let out = normalise(&SCENARIOS[0], id, objects).unwrap();
        let files: Vec<_> = out.keys().map(|p| p.display().to_string()).collect();
        assert_eq!(
            files,
            [
                "drs/JSON_INPUT.json",
                "drs/configmap.json",
                "drs/ex-00.job.json",
                "drs/ex-00.pod.json"
            ]
        );
        assert_eq!(
            out[Path::new("drs/JSON_INPUT.json")],
            json!({"executors": [{"metadata": {"name": "task-1a2b3c4d-ex-00"}}]})
        );
        assert_eq!(
            comparable(&out[Path::new("drs/configmap.json")]),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "task-1a2b3c4d"},
                   "binaryData": {GZIP_KEY: {"executors": [{"metadata": {"name": "task-1a2b3c4d-ex-00"}}]}}})
        );
        let job_uid = "00000000-0000-4000-8000-000000000002";
        assert_eq!(
            out[Path::new("drs/ex-00.job.json")],
            json!({"apiVersion": "batch/v1", "kind": "Job",
                   "metadata": {"name": "task-1a2b3c4d-ex-00", "labels": {"taskmaster-name": "task-1a2b3c4d"}},
                   "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": job_uid}}}})
        );
        assert_eq!(
            out[Path::new("drs/ex-00.pod.json")],
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "task-1a2b3c4d-ex-00-00000", "generateName": "task-1a2b3c4d-ex-00-",
                                "labels": {"job-name": "task-1a2b3c4d-ex-00"},
                                "ownerReferences": [{"kind": "Job", "uid": job_uid}]},
                   "spec": {"dnsPolicy": "ClusterFirst", "volumes": [{"name": "kube-api-access-00000"}],
                            "containers": [{"name": "c", "volumeMounts": [{"name": "kube-api-access-00000"}]}]}})
        );
        let stranger = json!({"kind": "Job", "metadata": {"name": format!("{id}-cleanup")}});
        assert!(normalise(&SCENARIOS[0], id, vec![stranger]).is_err());
    }

    #[test]
    fn differences_are_located() {
        let a = json!({"spec": {"containers": [{"args": ["inputs"]}]}});
        let b = json!({"spec": {"containers": [{"args": ["outputs"]}]}});
        assert_eq!(
            first_difference(&a, &b, ""),
            Some(r#"/spec/containers/0/args/0: committed "inputs", captured "outputs""#.into())
        );
        assert_eq!(first_difference(&a, &a, ""), None);
    }
}
