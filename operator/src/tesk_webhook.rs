//! The TESK webhook: admits the creation of TESK's task ConfigMaps and moves their `drs://`
//! inputs onto the executor pods ([`crate::tesk::adapt_task`]), so TESK needs no change.
//!
//! TESK's API creates, per task, a ConfigMap named after the task (`task-…`) holding the
//! taskmaster's input, then the taskmaster Job that mounts it and runs `taskmaster -f
//! /jsoninput/JSON_INPUT.gz`. The webhook rewrites that input at CREATE:
//!
//! 1. find it: `binaryData["JSON_INPUT.gz"]` (gzip of the JSON, what TESK writes: base64 on the
//!    wire) or `data["JSON_INPUT"]` (plain JSON, which the taskmaster also reads with `-f`);
//!    `data["JSON_INPUT.gz"]` is refused (the taskmaster would try to gunzip text);
//! 2. decompress with a bound ([`MAX_TASK_JSON_BYTES`]: a gzip bomb is refused, not inflated);
//! 3. a task without `drs://` inputs passes unchanged, before any policy lookup;
//! 4. take the namespace's `Crypt4ghPolicy` `default` (TESK objects carry no annotation of
//!    ours), run [`adapt_task`], and check every executor the way pod admission will: the pod
//!    the taskmaster will create from the executor Job (its template plus the task PVC mounted
//!    at every `volumes`/input/output directory, as the taskmaster does) goes through
//!    [`inject::mutate`]; a [`Denial`] denies the ConfigMap, so the TES task is refused at
//!    creation with the reason, instead of failing later in the filer or at pod admission;
//! 5. answer with a JSON patch replacing the task input (re-gzipped) and adding
//!    `c4gh.dev/status: adapted` and `c4gh.dev/applied-policy`.
//!
//! The taskmaster Job's `json-input` annotation is left alone: it holds the TES task as the
//! user submitted it, which TESK's API returns for `GET /tasks/{id}`; the taskmaster never reads
//! it. Re-invocation finds no `drs://` inputs and changes nothing. Dry-run requests behave the
//! same (no side effects).

use std::io::{Read, Write};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaimVolumeSource, Pod, PodSpec, Volume, VolumeMount,
};
use kube::api::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use serde_json::{Map, Value};

use crate::admission::{self, EffectivePolicies, Lookup};
use crate::annotations;
use crate::denial::Denial;
use crate::inject;
use crate::metrics::Outcome as MetricOutcome;
use crate::tesk::{TeskError, adapt_task, has_drs_inputs};
use crate::tesk_outputs;
use crate::webhook::{WebhookState, review_response};
use c4gh_contract::pod;

/// Path of the TESK ConfigMap mutation endpoint.
pub const MUTATE_PATH: &str = "/mutate-tesk";

/// `binaryData` key of TESK's gzip-compressed taskmaster input.
pub const GZIP_KEY: &str = "JSON_INPUT.gz";

/// `data` key of an uncompressed taskmaster input.
pub const PLAIN_KEY: &str = "JSON_INPUT";

/// Largest decompressed task JSON accepted (16 MiB). A ConfigMap holds at most 1 MiB, and task
/// JSON compresses about tenfold; anything beyond this bound is a gzip bomb.
pub const MAX_TASK_JSON_BYTES: u64 = 16 << 20;

/// Largest AdmissionReview body accepted (a 1 MiB ConfigMap is ~1.4 MiB in base64).
pub const MAX_REVIEW_BYTES: usize = 4 << 20;

/// Name TESK's taskmaster gives the task PVC volume in executor pods.
pub const TASK_VOLUME: &str = "task-volume";

/// Why a TESK task ConfigMap is denied. Every message names the object and says what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TeskDenial {
    /// The `binaryData` value is not base64 (the API server never sends this; direct callers
    /// might).
    #[error("{what} is not valid base64 ({error}); it must hold the gzip-compressed task JSON")]
    Base64 {
        /// The object and key.
        what: String,
        /// The decoder's message.
        error: String,
    },
    /// The value is not gzip data.
    #[error("{what} is not gzip data ({error}); TESK stores the gzip-compressed task JSON there")]
    Gzip {
        /// The object and key.
        what: String,
        /// The decoder's message.
        error: String,
    },
    /// The value decompresses beyond [`MAX_TASK_JSON_BYTES`].
    #[error(
        "{what} decompresses to more than {limit} bytes (the limit for a TESK task JSON); refusing it as a possible gzip bomb"
    )]
    TooLarge {
        /// The object and key.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The (decompressed) value is not JSON.
    #[error("{what} is not JSON ({error}); TESK writes the taskmaster's input JSON there")]
    Json {
        /// The object and key.
        what: String,
        /// The parser's message.
        error: String,
    },
    /// `data["JSON_INPUT.gz"]`: text where the taskmaster expects gzip bytes.
    #[error(
        "{what} is text, but the taskmaster gunzips JSON_INPUT.gz; store the gzip bytes in binaryData[JSON_INPUT.gz] (as TESK does) or plain JSON in data[JSON_INPUT]"
    )]
    TextGzip {
        /// The object and key.
        what: String,
    },
    /// The task document cannot be adapted.
    #[error("TES task {task}: {source}")]
    Task {
        /// The task id (ConfigMap name).
        task: String,
        /// Why.
        source: TeskError,
    },
    /// The namespace has no policy.
    #[error(
        "TES task {task} has drs:// inputs, but namespace {namespace:?} has no Crypt4ghPolicy {name:?}; ask the cluster operator to create one (see manifests/samples/)"
    )]
    NoPolicy {
        /// The task id.
        task: String,
        /// The namespace.
        namespace: String,
        /// The policy name looked up.
        name: String,
    },
    /// The namespace's policy is invalid.
    #[error(
        "TES task {task}: Crypt4ghPolicy {name:?} in namespace {namespace:?} is invalid: {problems}; ask the cluster operator to fix it (kubectl describe crypt4ghpolicy {name} -n {namespace})"
    )]
    InvalidPolicy {
        /// The task id.
        task: String,
        /// The namespace.
        namespace: String,
        /// The policy name.
        name: String,
        /// Its problems, `; `-separated.
        problems: String,
    },
    /// A task from a tesk-api before 2023-01-24 (the task JSON in the taskmaster's environment)
    /// whose outputs the policy wants encrypted: that era's outputs filer mounts no task
    /// ConfigMap, so the seal step would have no output list and the outputs would leave in
    /// plaintext.
    #[error(
        "TES task {task}: the namespace's Crypt4ghPolicy encrypts outputs for recipients, but this TESK API passes the task to its taskmaster in the JSON_INPUT environment variable (tesk-api before 2023-01-24, such as v1.1), where outputs cannot be encrypted before TESK's filer uploads them; ask the cluster operator to upgrade tesk-api (560fd03 or later)"
    )]
    EnvOutputs {
        /// The task id (taskmaster Job name).
        task: String,
    },
    /// An executor pod would be denied by pod admission.
    #[error(
        "TES task {task}, executor {executor}: {denial} (inputs are numbered as in the TES task)"
    )]
    Policy {
        /// The task id.
        task: String,
        /// Position of the executor.
        executor: usize,
        /// The pod admission's reason, with input numbers of the TES task.
        denial: Box<Denial>,
    },
}

impl TeskDenial {
    /// Whether the denial is about the TES task itself (its inputs, the namespace's policy), so
    /// that the TES user must learn it: such a task is refused ([`Outcome::Refused`]) rather
    /// than denied. A ConfigMap whose task input cannot even be read is denied.
    pub fn reaches_the_tes_user(&self) -> bool {
        matches!(
            self,
            TeskDenial::Task { .. }
                | TeskDenial::NoPolicy { .. }
                | TeskDenial::InvalidPolicy { .. }
                | TeskDenial::Policy { .. }
                | TeskDenial::EnvOutputs { .. }
        )
    }
}

/// What [`mutate`] decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Not a TESK task ConfigMap (no task input key): allowed unchanged.
    NotTesk,
    /// A TESK task without `drs://` inputs (or already adapted): allowed unchanged.
    Unchanged,
    /// The adapted ConfigMap (the whole object).
    Adapted(Value),
    /// A task the policy refuses, admitted so that its executors tell the TES user why: the
    /// ConfigMap with every executor replaced by `c4gh-exec --refuse REASON` in the sidecar
    /// image, the `drs://` inputs removed, and `c4gh.dev/status: refused` plus
    /// `c4gh.dev/refusal` (the reason). Counted as a denial.
    Refused {
        /// The rewritten object (the whole ConfigMap, or the taskmaster Job of a tesk-api
        /// before 2023-01-24).
        object: Value,
        /// Why.
        reason: TeskDenial,
    },
}

/// Where the task input sits in the ConfigMap.
#[derive(Clone, Copy)]
enum Stored<'a> {
    /// `binaryData[JSON_INPUT.gz]`, base64 of gzip.
    Gzip(&'a str),
    /// `data[JSON_INPUT]`, plain JSON.
    Plain(&'a str),
}

/// Decides about one ConfigMap (as JSON) created in `namespace`: see the module docs.
///
/// # Errors
///
/// A [`TeskDenial`] for malformed task input, a task TESK-with-drs cannot run, or inputs that
/// break the namespace's policy.
pub fn mutate(
    config_map: &Value,
    namespace: &str,
    policies: &EffectivePolicies,
) -> Result<Outcome, TeskDenial> {
    let name = config_map
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let what = |field: &str, key: &str| format!("ConfigMap {namespace}/{name} {field}[{key}]");
    let string = |field: &str, key: &str| {
        config_map
            .get(field)
            .and_then(|m| m.get(key))
            .map(|v| v.as_str().unwrap_or_default())
    };
    let stored = if let Some(v) = string("binaryData", GZIP_KEY) {
        Stored::Gzip(v)
    } else if let Some(v) = string("data", PLAIN_KEY) {
        Stored::Plain(v)
    } else if string("data", GZIP_KEY).is_some() {
        return Err(TeskDenial::TextGzip {
            what: what("data", GZIP_KEY),
        });
    } else {
        return Ok(Outcome::NotTesk);
    };
    let task: Value = match stored {
        Stored::Gzip(b64) => {
            let what = what("binaryData", GZIP_KEY);
            let gz = STANDARD.decode(b64).map_err(|e| TeskDenial::Base64 {
                what: what.clone(),
                error: e.to_string(),
            })?;
            let json = gunzip(&gz, MAX_TASK_JSON_BYTES, &what)?;
            serde_json::from_slice(&json).map_err(|e| TeskDenial::Json {
                what,
                error: e.to_string(),
            })?
        }
        Stored::Plain(text) => serde_json::from_str(text).map_err(|e| TeskDenial::Json {
            what: what("data", PLAIN_KEY),
            error: e.to_string(),
        })?,
    };
    match decide(config_map, &task, stored, name, namespace, policies) {
        Err(denial) if denial.reaches_the_tes_user() => {
            refuse(config_map, &task, stored, denial, namespace, policies)
        }
        decided => decided,
    }
}

/// The decision about a parsed task (see the module docs); a denial is returned as such, and
/// [`mutate`] turns those the TES user must see into a refused task.
fn decide(
    config_map: &Value,
    task: &Value,
    stored: Stored<'_>,
    name: &str,
    namespace: &str,
    policies: &EffectivePolicies,
) -> Result<Outcome, TeskDenial> {
    let has_outputs = task
        .get("outputs")
        .and_then(Value::as_array)
        .is_some_and(|o| !o.is_empty());
    if !has_drs_inputs(task) && !has_outputs {
        return Ok(Outcome::Unchanged);
    }
    let policy_name = annotations::DEFAULT_POLICY_NAME;
    if !has_drs_inputs(task) {
        // Outputs only: encrypted when the policy names output recipients; without a (valid)
        // policy the task runs as TESK would run it.
        let Lookup::Valid { effective, .. } = policies.lookup(namespace, policy_name) else {
            return Ok(Outcome::Unchanged);
        };
        return Ok(match tesk_outputs::output_list(task, &effective) {
            Some(list) => Outcome::Adapted(with_outputs(config_map.clone(), list, policy_name)),
            None => Outcome::Unchanged,
        });
    }
    let effective = match policies.lookup(namespace, policy_name) {
        Lookup::Missing => {
            return Err(TeskDenial::NoPolicy {
                task: name.to_owned(),
                namespace: namespace.to_owned(),
                name: policy_name.to_owned(),
            });
        }
        Lookup::Invalid { problems, .. } => {
            return Err(TeskDenial::InvalidPolicy {
                task: name.to_owned(),
                namespace: namespace.to_owned(),
                name: policy_name.to_owned(),
                problems: problems.to_string(),
            });
        }
        Lookup::Valid { effective, .. } => effective,
    };
    let task_error = |source| TeskDenial::Task {
        task: name.to_owned(),
        source,
    };
    let outputs = tesk_outputs::output_list(task, &effective);
    let Some(adapted) = adapt_task(name, task, &effective).map_err(task_error)? else {
        return Ok(match outputs {
            Some(list) => Outcome::Adapted(with_outputs(config_map.clone(), list, policy_name)),
            None => Outcome::Unchanged,
        });
    };
    let executors = adapted
        .task
        .get("executors")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    for executor in 0..executors {
        let pod = executor_pod(&adapted.task, executor, name);
        inject::mutate(&pod, &effective).map_err(|denial| TeskDenial::Policy {
            task: name.to_owned(),
            executor,
            denial: Box::new(renumber(denial, &adapted.tes_index)),
        })?;
    }
    let json = serde_json::to_string(&adapted.task).map_err(|e| {
        task_error(TeskError::Shape(format!(
            "cannot serialize the adapted task: {e}"
        )))
    })?;
    let mut out = store_task(config_map.clone(), stored, json);
    annotate(
        &mut out,
        &[
            (annotations::STATUS, annotations::STATUS_ADAPTED),
            (annotations::APPLIED_POLICY, policy_name),
        ],
    );
    Ok(Outcome::Adapted(match outputs {
        Some(list) => with_outputs(out, list, policy_name),
        None => out,
    }))
}

/// The text every executor of a refused task prints (and `c4gh.dev/refusal` holds).
pub fn refusal_message(denial: &TeskDenial) -> String {
    format!(
        "c4gh: this TES task was refused before it ran, by the namespace's Crypt4ghPolicy: {denial}. Nothing was fetched and no command ran; resubmit the task once the input or the policy is fixed (ask the data steward or the cluster operator named in the reason)."
    )
}

/// Refuses the task: see [`Outcome::Refused`]. A task whose executors cannot be rewritten
/// (not TESK's shape) is denied with `denial` instead.
fn refuse(
    config_map: &Value,
    task: &Value,
    stored: Stored<'_>,
    denial: TeskDenial,
    namespace: &str,
    policies: &EffectivePolicies,
) -> Result<Outcome, TeskDenial> {
    let policy_name = annotations::DEFAULT_POLICY_NAME;
    let (image, pull_policy, applied) = match policies.lookup(namespace, policy_name) {
        Lookup::Valid { effective, .. } => (
            effective.image.clone(),
            effective.image_pull_policy.clone(),
            true,
        ),
        _ => (policies.defaults().sidecar_image.clone(), None, false),
    };
    let message = refusal_message(&denial);
    let Some(refused) = refused_task(task, &image, pull_policy.as_deref(), &message) else {
        return Err(denial);
    };
    let Ok(json) = serde_json::to_string(&refused) else {
        return Err(denial);
    };
    let mut out = store_task(config_map.clone(), stored, json);
    let mut notes = vec![
        (annotations::STATUS, annotations::STATUS_REFUSED),
        (annotations::REFUSAL, message.as_str()),
    ];
    if applied {
        notes.push((annotations::APPLIED_POLICY, policy_name));
    }
    annotate(&mut out, &notes);
    Ok(Outcome::Refused {
        object: out,
        reason: denial,
    })
}

/// `task` with its `drs://` inputs removed and every container of every executor replaced by
/// `c4gh-exec --refuse MESSAGE` in `image` (resources, name and mounts kept: the taskmaster
/// reads `resources` and adds the task PVC). The pod templates lose the opt-in label and the
/// inputs annotation, so the executor pods are not injected. `None` when the executors are not
/// TESK's shape.
fn refused_task(
    task: &Value,
    image: &str,
    pull_policy: Option<&str>,
    message: &str,
) -> Option<Value> {
    let mut out = task.as_object()?.clone();
    if let Some(Value::Array(inputs)) = out.get_mut("inputs") {
        inputs.retain(|i| {
            !i.get("url")
                .and_then(Value::as_str)
                .is_some_and(|u| u.starts_with("drs://"))
        });
    }
    let executors = out.get_mut("executors")?.as_array_mut()?;
    if executors.is_empty() {
        return None;
    }
    for job in executors.iter_mut() {
        let template = job.pointer_mut("/spec/template")?.as_object_mut()?;
        if let Some(meta) = template.get_mut("metadata").and_then(Value::as_object_mut) {
            if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
                labels.remove(annotations::INJECT_LABEL);
            }
            if let Some(notes) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                notes.remove(annotations::INPUTS);
            }
        }
        let containers = template
            .get_mut("spec")?
            .get_mut("containers")?
            .as_array_mut()?;
        if containers.is_empty() {
            return None;
        }
        for container in containers.iter_mut() {
            let c = container.as_object_mut()?;
            for key in [
                "args",
                "env",
                "envFrom",
                "env_from",
                "workingDir",
                "working_dir",
                "imagePullPolicy",
                "image_pull_policy",
                "stdin",
                "stdinOnce",
                "stdin_once",
                "tty",
            ] {
                c.remove(key);
            }
            c.insert("image".to_owned(), Value::String(image.to_owned()));
            c.insert(
                "command".to_owned(),
                serde_json::json!([pod::EXEC_IN_SIDECAR_IMAGE, "--refuse", message]),
            );
            if let Some(pull) = pull_policy {
                c.insert("imagePullPolicy".to_owned(), Value::String(pull.to_owned()));
            }
        }
    }
    Some(Value::Object(out))
}

/// `config_map` with the task JSON `json` stored where it was read from (re-gzipped).
fn store_task(mut config_map: Value, stored: Stored<'_>, json: String) -> Value {
    let (field, key, value) = match stored {
        Stored::Gzip(_) => (
            "binaryData",
            GZIP_KEY,
            STANDARD.encode(gzip(json.as_bytes())),
        ),
        Stored::Plain(_) => ("data", PLAIN_KEY, json),
    };
    if let Some(map) = config_map.get_mut(field).and_then(Value::as_object_mut) {
        map.insert(key.to_owned(), Value::String(value));
    }
    config_map
}

/// Sets `notes` as annotations of `config_map`.
fn annotate(config_map: &mut Value, notes: &[(&str, &str)]) {
    let Some(obj) = config_map.as_object_mut() else {
        return;
    };
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let slot = meta.entry("annotations").or_insert(Value::Null);
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    if let Some(ann) = slot.as_object_mut() {
        for (key, value) in notes {
            ann.insert((*key).to_owned(), Value::String((*value).to_owned()));
        }
    }
}

/// `config_map` with the output list in `data[`[`tesk_outputs::OUTPUTS_KEY`]`]` (where the
/// outputs filer's seal step reads it) and the status annotations.
fn with_outputs(mut config_map: Value, list: String, policy_name: &str) -> Value {
    let Some(obj) = config_map.as_object_mut() else {
        return config_map;
    };
    let data = obj.entry("data").or_insert(Value::Null);
    if !data.is_object() {
        *data = Value::Object(Map::new());
    }
    if let Some(data) = data.as_object_mut() {
        data.insert(tesk_outputs::OUTPUTS_KEY.to_owned(), Value::String(list));
    }
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(meta) = meta.as_object_mut() {
        let slot = meta.entry("annotations").or_insert(Value::Null);
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        if let Some(ann) = slot.as_object_mut() {
            ann.insert(
                annotations::STATUS.to_owned(),
                Value::String(annotations::STATUS_ADAPTED.to_owned()),
            );
            ann.insert(
                annotations::APPLIED_POLICY.to_owned(),
                Value::String(policy_name.to_owned()),
            );
        }
    }
    config_map
}

/// Decides about a Job (as JSON) created in `namespace`: the taskmaster Job of a tesk-api
/// before 2023-01-24 has its task JSON decided like a task ConfigMap's ([`mutate_env_task`]);
/// TESK's outputs filer gets the seal step ([`tesk_outputs::seal_filer_job`]) when the
/// namespace has a valid policy; every other Job passes unchanged.
///
/// # Errors
///
/// A [`TeskDenial`] when an older taskmaster Job's task JSON is not JSON.
pub fn mutate_job(
    job: &Value,
    namespace: &str,
    policies: &EffectivePolicies,
) -> Result<Outcome, TeskDenial> {
    if let Some(task) = env_task(job) {
        return mutate_env_task(job, task, namespace, policies);
    }
    if !tesk_outputs::is_outputs_filer(job) {
        return Ok(Outcome::NotTesk);
    }
    let Lookup::Valid { effective, .. } =
        policies.lookup(namespace, annotations::DEFAULT_POLICY_NAME)
    else {
        return Ok(Outcome::Unchanged);
    };
    Ok(match tesk_outputs::seal_filer_job(job, &effective) {
        Some(sealed) => Outcome::Adapted(sealed),
        None => Outcome::Unchanged,
    })
}

/// Where a tesk-api before 2023-01-24 (tag `v1.1`) puts the task: the value of the
/// `JSON_INPUT` environment variable of the taskmaster Job's container.
#[derive(Clone, Copy)]
struct EnvTask<'a> {
    /// Index of the container.
    container: usize,
    /// Index of the variable in its `env`.
    entry: usize,
    /// The task JSON.
    json: &'a str,
}

/// The task in `job`'s environment when `job` is such a taskmaster Job: named `task-ID`, where
/// the filer and executor Jobs are `task-ID-…` (that era's filers carry the same variable, and
/// a TES executor may set one of that name).
fn env_task(job: &Value) -> Option<EnvTask<'_>> {
    let id = job
        .pointer("/metadata/name")?
        .as_str()?
        .strip_prefix("task-")?;
    if id.is_empty() || id.contains('-') {
        return None;
    }
    let containers = job.pointer("/spec/template/spec/containers")?.as_array()?;
    containers.iter().enumerate().find_map(|(container, c)| {
        let env = c.get("env")?.as_array()?;
        env.iter().enumerate().find_map(|(entry, var)| {
            if var.get("name")?.as_str()? != PLAIN_KEY {
                return None;
            }
            let json = var.get("value")?.as_str()?;
            Some(EnvTask {
                container,
                entry,
                json,
            })
        })
    })
}

/// Decides about the task in an older taskmaster Job as [`mutate`] does about a ConfigMap's,
/// writing the result back into the variable and the `c4gh.dev/…` annotations onto the Job.
/// Outputs the policy wants encrypted refuse the task ([`TeskDenial::EnvOutputs`]): that era's
/// outputs filer has no ConfigMap to read the output list from.
fn mutate_env_task(
    job: &Value,
    found: EnvTask<'_>,
    namespace: &str,
    policies: &EffectivePolicies,
) -> Result<Outcome, TeskDenial> {
    let name = job
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let task: Value = serde_json::from_str(found.json).map_err(|e| TeskDenial::Json {
        what: format!("Job {namespace}/{name} env {PLAIN_KEY}"),
        error: e.to_string(),
    })?;
    let as_config_map = serde_json::json!({
        "metadata": {"name": name},
        "data": {PLAIN_KEY: found.json},
    });
    let stored = Stored::Plain(found.json);
    let refuse_with = |denial| refuse(&as_config_map, &task, stored, denial, namespace, policies);
    let decided = match decide(&as_config_map, &task, stored, name, namespace, policies) {
        Err(denial) if denial.reaches_the_tes_user() => refuse_with(denial)?,
        decided => decided?,
    };
    let decided = match decided {
        Outcome::Adapted(adapted)
            if adapted
                .get("data")
                .and_then(|d| d.get(tesk_outputs::OUTPUTS_KEY))
                .is_some() =>
        {
            refuse_with(TeskDenial::EnvOutputs {
                task: name.to_owned(),
            })?
        }
        other => other,
    };
    Ok(match decided {
        Outcome::Adapted(adapted) => Outcome::Adapted(onto_job(job, found, &adapted)),
        Outcome::Refused { object, reason } => Outcome::Refused {
            object: onto_job(job, found, &object),
            reason,
        },
        other => other,
    })
}

/// `job` with the task JSON of `config_map` in the variable `found` names, and the
/// ConfigMap's annotations.
fn onto_job(job: &Value, found: EnvTask<'_>, config_map: &Value) -> Value {
    let mut out = job.clone();
    let slot = format!(
        "/spec/template/spec/containers/{}/env/{}/value",
        found.container, found.entry
    );
    if let (Some(json), Some(value)) = (
        config_map.pointer(&format!("/data/{PLAIN_KEY}")),
        out.pointer_mut(&slot),
    ) {
        *value = json.clone();
    }
    let notes: Vec<(&str, &str)> = config_map
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|a| {
            a.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    annotate(&mut out, &notes);
    out
}

/// Decompresses (every gzip member, as Python's `gzip.open` does) up to `limit` bytes.
fn gunzip(gz: &[u8], limit: u64, what: &str) -> Result<Vec<u8>, TeskDenial> {
    let mut out = Vec::new();
    MultiGzDecoder::new(gz)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| TeskDenial::Gzip {
            what: what.to_owned(),
            error: e.to_string(),
        })?;
    if out.len() as u64 > limit {
        return Err(TeskDenial::TooLarge {
            what: what.to_owned(),
            limit,
        });
    }
    Ok(out)
}

/// Gzip of `bytes` (default level, no name, mtime 0).
pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// The pod TESK's taskmaster will create for executor `n`, as far as admission looks at it:
/// the executor Job's pod template (labels, annotations, containers with their mounts,
/// volumes, process-namespace flags) plus the task PVC, which the taskmaster mounts into the
/// first container at every `volumes` entry and every input/output directory (`subPath dirN`).
/// Fields are read leniently (camelCase or the snake_case TESK's Python client writes).
fn executor_pod(task: &Value, n: usize, task_id: &str) -> Pod {
    let template = task
        .pointer(&format!("/executors/{n}/spec/template"))
        .unwrap_or(&Value::Null);
    let spec = template.get("spec").unwrap_or(&Value::Null);
    let field = |v: &Value, camel: &str, snake: &str| {
        v.get(camel)
            .filter(|x| !x.is_null())
            .or_else(|| v.get(snake))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let strings = |v: Value| -> Option<std::collections::BTreeMap<String, String>> {
        let map: std::collections::BTreeMap<String, String> = v
            .as_object()?
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect();
        Some(map)
    };
    let mut pod = Pod::default();
    let meta = template.get("metadata").unwrap_or(&Value::Null);
    pod.metadata.labels = strings(field(meta, "labels", "labels"));
    pod.metadata.annotations = strings(field(meta, "annotations", "annotations"));
    let mut containers: Vec<Container> = field(spec, "containers", "containers")
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| Container {
                    name: c
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    volume_mounts: serde_json::from_value(field(
                        c,
                        "volumeMounts",
                        "volume_mounts",
                    ))
                    .ok(),
                    ..Container::default()
                })
                .collect()
        })
        .unwrap_or_default();
    let mut volumes: Vec<Volume> = field(spec, "volumes", "volumes")
        .as_array()
        .map(|vs| {
            vs.iter()
                .filter_map(|v| serde_json::from_value(v.clone()).ok())
                .collect()
        })
        .unwrap_or_default();
    let dirs = taskmaster_dirs(task);
    if let (Some(first), false) = (containers.first_mut(), dirs.is_empty()) {
        let mounts = first.volume_mounts.get_or_insert_with(Vec::new);
        for (i, dir) in dirs.into_iter().enumerate() {
            if !mounts.iter().any(|m| m.mount_path == dir) {
                mounts.push(VolumeMount {
                    name: TASK_VOLUME.to_owned(),
                    mount_path: dir,
                    sub_path: Some(format!("dir{i}")),
                    ..VolumeMount::default()
                });
            }
        }
        volumes.push(Volume {
            name: TASK_VOLUME.to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: format!("{task_id}-pvc"),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    let flag = |camel: &str, snake: &str| field(spec, camel, snake).as_bool();
    pod.spec = Some(PodSpec {
        containers,
        volumes: Some(volumes),
        host_pid: flag("hostPID", "host_pid"),
        share_process_namespace: flag("shareProcessNamespace", "share_process_namespace"),
        ..PodSpec::default()
    });
    pod
}

/// The directories the taskmaster mounts from the task PVC, in its order without duplicates:
/// `volumes`, then each input's and output's directory (the path itself for DIRECTORY).
fn taskmaster_dirs(task: &Value) -> Vec<String> {
    let mut dirs: Vec<String> = Vec::new();
    let mut push = |d: &str| {
        if !d.is_empty() && !dirs.iter().any(|x| x == d) {
            dirs.push(d.to_owned());
        }
    };
    for v in task
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(d) = v.as_str() {
            push(d);
        }
    }
    for list in ["inputs", "outputs"] {
        for io in task
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let path = io.get("path").and_then(Value::as_str).unwrap_or_default();
            if io.get("type").and_then(Value::as_str) == Some("DIRECTORY") {
                push(path);
            } else if let Some(i) = path.rfind('/') {
                push(&path[..i]);
            }
        }
    }
    dirs
}

/// Replaces the position in the inputs annotation by the position in the TES task's `inputs`.
fn renumber(denial: Denial, tes_index: &[usize]) -> Denial {
    let map = |i: usize| tes_index.get(i).copied().unwrap_or(i);
    match denial {
        Denial::InvalidUrl { index, error } => Denial::InvalidUrl {
            index: map(index),
            error,
        },
        Denial::HostNotAllowed {
            index,
            url,
            host,
            policy,
            allowed,
        } => Denial::HostNotAllowed {
            index: map(index),
            url,
            host,
            policy,
            allowed,
        },
        Denial::UnknownPrefix {
            index,
            url,
            prefix,
            policy,
        } => Denial::UnknownPrefix {
            index: map(index),
            url,
            prefix,
            policy,
        },
        Denial::ModeNotAllowed {
            index,
            url,
            mode,
            allowed,
        } => Denial::ModeNotAllowed {
            index: map(index),
            url,
            mode,
            allowed,
        },
        Denial::InvalidPath { index, path, why } => Denial::InvalidPath {
            index: map(index),
            path,
            why,
        },
        Denial::DuplicatePath { index, path } => Denial::DuplicatePath {
            index: map(index),
            path,
        },
        Denial::PathOutsideMounts {
            index,
            path,
            policy,
        } => Denial::PathOutsideMounts {
            index: map(index),
            path,
            policy,
        },
        Denial::MountConflict {
            index,
            path,
            dir,
            mode,
            conflict,
        } => Denial::MountConflict {
            index: map(index),
            path,
            dir,
            mode,
            conflict,
        },
        other => other,
    }
}

/// The TESK webhook's routes: `POST /mutate-tesk` (request bodies up to [`MAX_REVIEW_BYTES`]).
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route(MUTATE_PATH, post(handler))
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .with_state(state)
}

async fn handler(
    State(state): State<WebhookState>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Response {
    let count = |result| {
        state
            .metrics
            .tesk_admissions
            .get_or_create(&MetricOutcome { result })
            .inc();
    };
    let req: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            count("error");
            return review_response(
                StatusCode::BAD_REQUEST,
                AdmissionResponse::invalid(format!("not an AdmissionReview request: {e}")),
            );
        }
    };
    let started = Instant::now();
    let worker_state = state.clone();
    let worker_req = req.clone();
    // Decompressing and parsing a task may take milliseconds: keep it off the async workers
    // that answer pod admissions.
    let decided = tokio::task::spawn_blocking(move || admit(&worker_state, &worker_req)).await;
    let (response, result) = decided.unwrap_or_else(|e| {
        (
            AdmissionResponse::from(&req).deny(format!("internal error: {e}")),
            "error",
        )
    });
    count(result);
    tracing::debug!(elapsed = ?started.elapsed(), result, "TESK admission");
    review_response(StatusCode::OK, response)
}

/// Answers one admission request; returns the response and the outcome label.
pub fn admit(
    state: &WebhookState,
    req: &AdmissionRequest<DynamicObject>,
) -> (AdmissionResponse, &'static str) {
    let response = AdmissionResponse::from(req);
    let Some((object, namespace)) = admission::created(req) else {
        return (response, "skipped");
    };
    let before = serde_json::to_value(object).unwrap_or_default();
    let name = object.metadata.name.clone().unwrap_or_default();
    let decided = if req.kind.kind == "Job" {
        mutate_job(&before, &namespace, &state.policies)
    } else {
        mutate(&before, &namespace, &state.policies)
    };
    match decided {
        Ok(Outcome::NotTesk) => (response, "skipped"),
        Ok(Outcome::Unchanged) => (response, "unchanged"),
        Ok(Outcome::Adapted(after)) => {
            tracing::info!(
                namespace,
                kind = req.kind.kind,
                object = name,
                "TESK task adapted"
            );
            match response.with_patch(json_patch::diff(&before, &after)) {
                Ok(r) => (r, "adapted"),
                Err(e) => (
                    AdmissionResponse::from(req)
                        .deny(format!("internal error serializing the patch: {e}")),
                    "error",
                ),
            }
        }
        Ok(Outcome::Refused { object, reason }) => {
            let message = reason.to_string();
            tracing::info!(
                namespace,
                kind = req.kind.kind,
                object = name,
                %message,
                "TESK task refused: admitted with executors that print the reason"
            );
            match response.with_patch(json_patch::diff(&before, &object)) {
                Ok(r) => (r, "denied"),
                Err(e) => (
                    AdmissionResponse::from(req)
                        .deny(format!("internal error serializing the patch: {e}")),
                    "error",
                ),
            }
        }
        Err(denial) => {
            let message = denial.to_string();
            tracing::info!(namespace, kind = req.kind.kind, object = name, %message, "TESK task denied");
            (response.deny(message), "denied")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use serde_json::json;
    use tower::ServiceExt;

    use super::*;
    use crate::admission::StaticPolicies;
    use crate::effective::OperatorDefaults;
    use crate::metrics::Metrics;
    use crate::tesk_fixtures::{
        DRS_ID, FILES_ID, drs_config_map, drs_task, drs_taskmaster, files_config_map,
        files_executor_job, files_inputs_filer, files_outputs_filer, files_task, with_task,
    };

    const POLICIES: &str = r#"
apiVersion: c4gh.dev/v1alpha1
kind: Crypt4ghPolicy
metadata: {name: default, namespace: tasks}
spec:
  allowedHosts: [drs.example.org]
  allowedModes: [encrypted, stream]
---
apiVersion: c4gh.dev/v1alpha1
kind: Crypt4ghPolicy
metadata: {name: default, namespace: broken}
spec:
  allowedHosts: []
"#;

    fn policies() -> EffectivePolicies {
        EffectivePolicies::new(
            Arc::new(StaticPolicies::from_yaml(POLICIES).unwrap()),
            Arc::new(OperatorDefaults::default()),
        )
    }

    /// The taskmaster input of the `drs` capture: inputs `http://` ref (0), `drs://` obj-1 (1)
    /// at `/data/in`, `drs://` obj-2 (2) at `/data/stream`; a DIRECTORY output `/data/out`,
    /// `volumes: [/data/out]`, two executors.
    fn task() -> Value {
        drs_task()
    }

    /// The captured `drs` ConfigMap carrying `task` (an edit of the captured task).
    fn config_map(task: &Value) -> Value {
        with_task(&drs_config_map(), task)
    }

    fn gzip_b64(bytes: &[u8]) -> String {
        STANDARD.encode(gzip(bytes))
    }

    fn run(cm: &Value, namespace: &str) -> Result<Outcome, TeskDenial> {
        mutate(cm, namespace, &policies())
    }

    fn stored_task(cm: &Value) -> Value {
        let b64 = cm["binaryData"][GZIP_KEY].as_str().unwrap();
        let json = gunzip(&STANDARD.decode(b64).unwrap(), MAX_TASK_JSON_BYTES, "t").unwrap();
        serde_json::from_slice(&json).unwrap()
    }

    fn denial(cm: &Value, namespace: &str) -> String {
        run(cm, namespace).unwrap_err().to_string()
    }

    /// The reason of a refused task (admitted with executors printing it).
    fn refusal(cm: &Value, namespace: &str) -> String {
        match run(cm, namespace) {
            Ok(Outcome::Refused { reason, .. }) => reason.to_string(),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn the_captured_config_map_holds_the_captured_task() {
        assert_eq!(stored_task(&drs_config_map()), drs_task());
        assert_eq!(stored_task(&files_config_map()), files_task());
    }

    #[test]
    fn gzip_round_trip_adapts_and_is_idempotent() {
        let before = drs_config_map();
        let Outcome::Adapted(after) = run(&before, "tasks").unwrap() else {
            panic!("not adapted")
        };
        let mut expected = task();
        expected["inputs"] = json!([task()["inputs"][0]]);
        expected["volumes"] = json!(["/data/out", "/data/in", "/data/stream"]);
        for n in 0..2 {
            expected["executors"][n]["spec"]["template"]["metadata"] = json!({
                "name": format!("{DRS_ID}-ex-0{n}"),
                "labels": {"c4gh.dev/inject": "enabled"},
                "annotations": {
                    "c4gh.dev/inputs": r#"[{"mode":"encrypted","path":"/data/in/sample.bam.c4gh","url":"drs://drs.example.org/obj-1"},{"mode":"encrypted","path":"/data/stream/reads.fq","url":"drs://drs.example.org/obj-2"}]"#,
                    "c4gh.dev/tes-task": DRS_ID
                }
            });
        }
        assert_eq!(stored_task(&after), expected);
        assert_eq!(
            after["metadata"]["annotations"],
            json!({"tes-task-name": "align", "c4gh.dev/status": "adapted", "c4gh.dev/applied-policy": "default"})
        );
        // Everything else is untouched.
        let mut rest = after.clone();
        rest["binaryData"] = before["binaryData"].clone();
        rest["metadata"]["annotations"] = before["metadata"]["annotations"].clone();
        assert_eq!(rest, before);
        // The patch the webhook sends turns the request's object into `after`.
        let patch = json_patch::diff(&before, &after);
        let mut patched = before.clone();
        json_patch::patch(&mut patched, &patch).unwrap();
        assert_eq!(patched, after);
        // A second invocation (reinvocationPolicy: IfNeeded) changes nothing.
        assert_eq!(run(&after, "tasks").unwrap(), Outcome::Unchanged);
    }

    #[test]
    fn plain_json_in_data_is_adapted_in_place() {
        // Derived: no TESK API writes `data["JSON_INPUT"]`; the taskmaster would read it with -f.
        let mut cm = drs_config_map();
        cm.as_object_mut().unwrap().remove("binaryData");
        cm["data"] = json!({PLAIN_KEY: task().to_string()});
        let Outcome::Adapted(after) = run(&cm, "tasks").unwrap() else {
            panic!("not adapted")
        };
        let stored: Value =
            serde_json::from_str(after["data"][PLAIN_KEY].as_str().unwrap()).unwrap();
        let from_gzip = match run(&drs_config_map(), "tasks").unwrap() {
            Outcome::Adapted(a) => stored_task(&a),
            other => panic!("{other:?}"),
        };
        assert_eq!(stored, from_gzip);
        assert!(after.get("binaryData").is_none());
        assert_eq!(run(&after, "tasks").unwrap(), Outcome::Unchanged);
    }

    #[test]
    fn tasks_without_drs_and_other_config_maps_pass_unchanged() {
        // The captured `files` task: no drs://, an output. No policy lookup for the inputs
        // either: namespace "elsewhere" has none.
        assert_eq!(
            run(&files_config_map(), "elsewhere").unwrap(),
            Outcome::Unchanged
        );
        // The policy of "tasks" names no output recipients.
        assert_eq!(
            run(&files_config_map(), "tasks").unwrap(),
            Outcome::Unchanged
        );
        let ordinary = json!({"metadata": {"name": "task-settings"}, "data": {"a": "b"}});
        assert_eq!(run(&ordinary, "tasks").unwrap(), Outcome::NotTesk);
    }

    #[test]
    fn gzip_bomb_is_refused_without_inflating_it() {
        // 17 MiB of zeros compress to ~17 KiB.
        let bomb = vec![0u8; (MAX_TASK_JSON_BYTES + (1 << 20)) as usize];
        let mut cm = drs_config_map();
        cm["binaryData"][GZIP_KEY] = json!(gzip_b64(&bomb));
        assert!(cm["binaryData"][GZIP_KEY].as_str().unwrap().len() < 64 << 10);
        assert_eq!(
            denial(&cm, "tasks"),
            "ConfigMap tasks/task-1a2b3c4d binaryData[JSON_INPUT.gz] decompresses to more than 16777216 bytes (the limit for a TESK task JSON); refusing it as a possible gzip bomb"
        );
        // The bound is exact.
        let gz = gzip(&[b' '; 100]);
        assert_eq!(gunzip(&gz, 100, "x").unwrap().len(), 100);
        assert!(matches!(
            gunzip(&gz, 99, "x"),
            Err(TeskDenial::TooLarge { .. })
        ));
    }

    #[test]
    fn concatenated_gzip_members_are_read_like_python_does() {
        let text = task().to_string();
        let (a, b) = text.split_at(text.len() / 2);
        let mut two = gzip(a.as_bytes());
        two.extend(gzip(b.as_bytes()));
        let mut cm = drs_config_map();
        cm["binaryData"][GZIP_KEY] = json!(STANDARD.encode(two));
        assert!(matches!(run(&cm, "tasks").unwrap(), Outcome::Adapted(_)));
    }

    #[test]
    fn malformed_task_input() {
        let mut cm = drs_config_map();
        cm["binaryData"][GZIP_KEY] = json!("not base64!");
        assert_eq!(
            denial(&cm, "tasks"),
            "ConfigMap tasks/task-1a2b3c4d binaryData[JSON_INPUT.gz] is not valid base64 (Invalid symbol 32, offset 3.); it must hold the gzip-compressed task JSON"
        );
        cm["binaryData"][GZIP_KEY] = json!(STANDARD.encode(task().to_string()));
        assert_eq!(
            denial(&cm, "tasks"),
            "ConfigMap tasks/task-1a2b3c4d binaryData[JSON_INPUT.gz] is not gzip data (invalid gzip header); TESK stores the gzip-compressed task JSON there"
        );
        cm["binaryData"][GZIP_KEY] = json!(gzip_b64(b"{\"inputs\": [drs"));
        assert_eq!(
            denial(&cm, "tasks"),
            "ConfigMap tasks/task-1a2b3c4d binaryData[JSON_INPUT.gz] is not JSON (expected value at line 1 column 13); TESK writes the taskmaster's input JSON there"
        );
        let mut text = drs_config_map();
        text.as_object_mut().unwrap().remove("binaryData");
        text["data"] = json!({GZIP_KEY: "H4sI..."});
        assert_eq!(
            denial(&text, "tasks"),
            "ConfigMap tasks/task-1a2b3c4d data[JSON_INPUT.gz] is text, but the taskmaster gunzips JSON_INPUT.gz; store the gzip bytes in binaryData[JSON_INPUT.gz] (as TESK does) or plain JSON in data[JSON_INPUT]"
        );
        let mut plain = text.clone();
        plain["data"] = json!({PLAIN_KEY: "{"});
        assert_eq!(
            denial(&plain, "tasks"),
            "ConfigMap tasks/task-1a2b3c4d data[JSON_INPUT] is not JSON (EOF while parsing an object at line 1 column 1); TESK writes the taskmaster's input JSON there"
        );
        let mut t = task();
        t["inputs"][1]["type"] = json!("DIRECTORY");
        assert_eq!(
            refusal(&config_map(&t), "tasks"),
            "TES task task-1a2b3c4d: TES input 1 (drs://drs.example.org/obj-1) is a DIRECTORY; DRS bundles are not supported, list each file as a FILE input"
        );
    }

    #[test]
    fn policy_denials_say_what_to_fix() {
        let mut t = task();
        t["inputs"].as_array_mut().unwrap().push(
            json!({"url": "drs://drs.evil.example/x", "path": "/data/in/x.c4gh", "type": "FILE"}),
        );
        assert_eq!(
            refusal(&config_map(&t), "tasks"),
            "TES task task-1a2b3c4d, executor 0: input 3 (drs://drs.evil.example/x): host \"drs.evil.example\" is not allowed by Crypt4ghPolicy \"default\" (allowed: drs.example.org); use an allowed DRS server or ask the cluster operator to add the host to spec.allowedHosts (inputs are numbered as in the TES task)"
        );
        assert_eq!(
            refusal(&drs_config_map(), "elsewhere"),
            "TES task task-1a2b3c4d has drs:// inputs, but namespace \"elsewhere\" has no Crypt4ghPolicy \"default\"; ask the cluster operator to create one (see manifests/samples/)"
        );
        assert_eq!(
            refusal(&drs_config_map(), "broken"),
            "TES task task-1a2b3c4d: Crypt4ghPolicy \"default\" in namespace \"broken\" is invalid: spec.allowedHosts is empty; list the DRS hosts pods may use; ask the cluster operator to fix it (kubectl describe crypt4ghpolicy default -n broken)"
        );
        // Derived (Java tesk-api rejects `streamable`): a streamable input where the
        // taskmaster mounts the PVC (the output directory): the FIFO's memory-backed volume
        // cannot go there.
        let mut t = task();
        t["inputs"][1]["path"] = json!("/data/out/reads.fq");
        t["inputs"][1]["streamable"] = json!(true);
        assert_eq!(
            refusal(&config_map(&t), "tasks"),
            "TES task task-1a2b3c4d, executor 0: input 1: path \"/data/out/reads.fq\" needs a memory-backed volume at \"/data/out\" (stream inputs never touch disk), but volume \"task-volume\" is already mounted there; put stream inputs in a directory of their own (inputs are numbered as in the TES task)"
        );
        let mut t = task();
        t["executors"][0]["spec"]["template"]["spec"]["shareProcessNamespace"] = json!(true);
        assert_eq!(
            refusal(&config_map(&t), "tasks"),
            "TES task task-1a2b3c4d, executor 0: the pod sets spec.shareProcessNamespace: true, which lets task containers see the c4gh-sidecar's processes (ephemeral key, DRS credentials); remove spec.shareProcessNamespace from pods that read Crypt4GH inputs (inputs are numbered as in the TES task)"
        );
    }

    #[test]
    fn python_client_shapes_are_read() {
        // Derived: TESK's Python API (unmerged PR #207, not among the peers) writes executor
        // Jobs with the client's `to_dict()`: snake_case keys, nulls for unset fields, numbers
        // for quantities.
        let mut t = task();
        t["executors"][0]["spec"]["template"] = json!({
            "metadata": {"labels": null, "annotations": null, "name": null},
            "spec": {"containers": [{"name": "ex", "image": "ubuntu", "volume_mounts": null,
                                     "resources": {"requests": {"cpu": 1.0}}}],
                     "restart_policy": "Never", "share_process_namespace": null}
        });
        let Outcome::Adapted(after) = run(&config_map(&t), "tasks").unwrap() else {
            panic!("not adapted")
        };
        let meta = &stored_task(&after)["executors"][0]["spec"]["template"]["metadata"];
        assert_eq!(meta["labels"]["c4gh.dev/inject"], "enabled");
        t["executors"][0]["spec"]["template"]["spec"]["share_process_namespace"] = json!(true);
        assert!(matches!(
            run(&config_map(&t), "tasks"),
            Ok(Outcome::Refused {
                reason: TeskDenial::Policy { .. },
                ..
            })
        ));
    }

    /// A refused task keeps TESK's shape, but each executor runs `c4gh-exec --refuse` in the
    /// sidecar image and prints the reason; nothing of it is injected or fetched.
    #[test]
    fn refused_tasks_run_executors_that_print_the_reason() {
        let mut t = task();
        t["inputs"][1]["url"] = json!("drs://drs.evil.example/x");
        let before = config_map(&t);
        let Ok(Outcome::Refused {
            object: refused,
            reason,
        }) = run(&before, "tasks")
        else {
            panic!("not refused")
        };
        let message = refusal_message(&reason);
        assert_eq!(
            message,
            "c4gh: this TES task was refused before it ran, by the namespace's Crypt4ghPolicy: TES task task-1a2b3c4d, executor 0: input 1 (drs://drs.evil.example/x): host \"drs.evil.example\" is not allowed by Crypt4ghPolicy \"default\" (allowed: drs.example.org); use an allowed DRS server or ask the cluster operator to add the host to spec.allowedHosts (inputs are numbered as in the TES task). Nothing was fetched and no command ran; resubmit the task once the input or the policy is fixed (ask the data steward or the cluster operator named in the reason)."
        );
        assert_eq!(
            refused["metadata"]["annotations"],
            json!({"tes-task-name": "align", "c4gh.dev/status": "refused",
                   "c4gh.dev/refusal": message, "c4gh.dev/applied-policy": "default"})
        );
        let stored = stored_task(&refused);
        assert_eq!(
            stored["inputs"],
            json!([t["inputs"][0]]),
            "no drs:// input for the filer"
        );
        assert_eq!(stored["outputs"], t["outputs"]);
        for n in 0..2 {
            let template = &stored["executors"][n]["spec"]["template"];
            assert_eq!(
                template["metadata"], t["executors"][n]["spec"]["template"]["metadata"],
                "executor {n}: not opted in"
            );
            let original = &t["executors"][n]["spec"]["template"]["spec"]["containers"][0];
            // Executor 1 sets env and workingDir in the capture; they go with the command.
            assert_eq!(
                template["spec"]["containers"][0],
                json!({"name": format!("{DRS_ID}-ex-0{n}"),
                       "image": OperatorDefaults::default().sidecar_image,
                       "command": ["/usr/local/bin/c4gh-exec", "--refuse", message],
                       "resources": original["resources"]}),
                "executor {n}"
            );
            assert_eq!(
                stored["executors"][n]["metadata"], t["executors"][n]["metadata"],
                "the taskmaster still finds the task name and executor number"
            );
        }
        assert!(
            t["executors"][1]["spec"]["template"]["spec"]["containers"][0]
                .get("workingDir")
                .is_some(),
            "the capture's executor 1 has a workdir"
        );
        // Without a policy the reason says so, and the operator's sidecar image is used.
        let Ok(Outcome::Refused {
            object: elsewhere,
            reason,
        }) = run(&before, "elsewhere")
        else {
            panic!("not refused")
        };
        assert!(matches!(reason, TeskDenial::NoPolicy { .. }));
        assert_eq!(
            elsewhere["metadata"]["annotations"].get("c4gh.dev/applied-policy"),
            None
        );
        // A task TESK could not have written (no executors) is denied, not refused.
        let mut odd = t.clone();
        odd["executors"] = json!([]);
        assert!(matches!(
            run(&config_map(&odd), "tasks"),
            Err(TeskDenial::Task { .. })
        ));
    }

    /// The taskmaster Job of a tesk-api before 2023-01-24 (tag `v1.1`): the task JSON in the
    /// container's `JSON_INPUT` variable, no task ConfigMap. Derived from the captured
    /// taskmaster Job (that era's tesk-api is not among the peers): without the `jsoninput`
    /// volume and `-f /jsoninput/JSON_INPUT.gz`, with the variable (`KubernetesObjectsSupplier`
    /// of v1.1 sets it in the template's `env`).
    fn env_taskmaster(task: &Value) -> Value {
        let mut job = drs_taskmaster();
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
        let args = container["args"].as_array_mut().unwrap();
        assert_eq!(args[..2], [json!("-f"), json!("/jsoninput/JSON_INPUT.gz")]);
        args.drain(..2);
        container["env"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": PLAIN_KEY, "value": task.to_string()}));
        job
    }

    /// The task JSON in an [`env_taskmaster`] Job.
    fn env_json(job: &Value) -> Value {
        let env = job["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap();
        let var = env.iter().find(|e| e["name"] == PLAIN_KEY).unwrap();
        serde_json::from_str(var["value"].as_str().unwrap()).unwrap()
    }

    #[test]
    fn the_captured_jobs_are_recognised() {
        // tesk-api's taskmaster Job (task in the ConfigMap), the taskmaster's inputs filer and
        // executor Jobs: not the operator's business.
        for job in [drs_taskmaster(), files_inputs_filer(), files_executor_job()] {
            assert_eq!(
                mutate_job(&job, "tasks", &policies()),
                Ok(Outcome::NotTesk),
                "{}",
                job["metadata"]["name"]
            );
        }
        assert!(tesk_outputs::is_outputs_filer(&files_outputs_filer()));
        // TESK's outputs filer gets the seal step wherever a valid policy is (without an output
        // list in the ConfigMap the step exits 0 at once), and runs as TESK made it elsewhere.
        let Ok(Outcome::Adapted(sealed)) = mutate_job(&files_outputs_filer(), "tasks", &policies())
        else {
            panic!("the outputs filer is not sealed");
        };
        assert_eq!(
            sealed["spec"]["template"]["spec"]["initContainers"][0]["name"],
            pod::SEAL_CONTAINER
        );
        assert_eq!(
            mutate_job(&files_outputs_filer(), "elsewhere", &policies()),
            Ok(Outcome::Unchanged)
        );
    }

    #[test]
    fn an_older_tesk_apis_taskmaster_job_has_its_task_adapted_in_place() {
        let job = env_taskmaster(&task());
        let Ok(Outcome::Adapted(adapted)) = mutate_job(&job, "tasks", &policies()) else {
            panic!("not adapted: {:?}", mutate_job(&job, "tasks", &policies()));
        };
        let Ok(Outcome::Adapted(cm)) = run(&drs_config_map(), "tasks") else {
            panic!("the ConfigMap is not adapted");
        };
        assert_eq!(
            env_json(&adapted),
            stored_task(&cm),
            "the same adaptation as a task ConfigMap's"
        );
        let env = &adapted["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(
            env[0],
            job["spec"]["template"]["spec"]["containers"][0]["env"][0]
        );
        assert_eq!(
            adapted["metadata"]["annotations"][annotations::STATUS],
            annotations::STATUS_ADAPTED
        );
        assert_eq!(adapted["metadata"]["labels"], job["metadata"]["labels"]);

        // That era's inputs filer carries the variable too; it is not a taskmaster.
        let mut filer = job.clone();
        filer["metadata"]["name"] = json!("task-1a2b3c4d-inputs-filer");
        assert_eq!(
            mutate_job(&filer, "tasks", &policies()),
            Ok(Outcome::NotTesk)
        );
        // Nor is an executor Job whose TES executor sets a variable of that name.
        let mut executor = files_executor_job();
        executor["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": PLAIN_KEY, "value": "text"}]);
        assert_eq!(
            mutate_job(&executor, "tasks", &policies()),
            Ok(Outcome::NotTesk)
        );
        // A task without drs:// inputs (the `files` capture), in a namespace without output
        // recipients, is left alone.
        assert_eq!(
            mutate_job(&env_taskmaster(&files_task()), "tasks", &policies()),
            Ok(Outcome::Unchanged)
        );
    }

    #[test]
    fn an_older_tesk_apis_task_that_breaks_the_policy_is_refused_with_the_reason() {
        let mut evil = task();
        evil["inputs"][1]["url"] = json!("drs://drs.evil.example/x");
        let Ok(Outcome::Refused { object, reason }) =
            mutate_job(&env_taskmaster(&evil), "tasks", &policies())
        else {
            panic!("not refused");
        };
        assert!(
            reason
                .to_string()
                .contains(r#"host "drs.evil.example" is not allowed"#),
            "{reason}"
        );
        let container =
            &env_json(&object)["executors"][0]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["command"],
            json!([
                pod::EXEC_IN_SIDECAR_IMAGE,
                "--refuse",
                refusal_message(&reason)
            ])
        );
        assert_eq!(
            object["metadata"]["annotations"][annotations::STATUS],
            annotations::STATUS_REFUSED
        );

        let mut broken = env_taskmaster(&task());
        let env = broken["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap();
        let last = env.len() - 1;
        env[last]["value"] = json!("{not json");
        let error = mutate_job(&broken, "tasks", &policies())
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("Job tasks/task-1a2b3c4d env JSON_INPUT is not JSON ("),
            "{error}"
        );
    }

    #[test]
    fn an_older_tesk_apis_task_whose_outputs_must_be_encrypted_is_refused() {
        let key = crate::outputs::canonical_key(&c4gh::SecretKey::generate().public_key().to_pem())
            .unwrap();
        let policy = json!({
            "apiVersion": "c4gh.dev/v1alpha1", "kind": "Crypt4ghPolicy",
            "metadata": {"name": "default", "namespace": "sealed"},
            "spec": {"allowedHosts": ["drs.example.org"],
                     "outputs": {"requiredRecipients": [key]}}
        });
        let policies = EffectivePolicies::new(
            Arc::new(StaticPolicies::from_yaml(&policy.to_string()).unwrap()),
            Arc::new(OperatorDefaults::default()),
        );
        // The `drs` capture, and the `files` capture (outputs only).
        for task in [task(), files_task()] {
            let decided = mutate_job(&env_taskmaster(&task), "sealed", &policies);
            let Ok(Outcome::Refused { reason, .. }) = decided else {
                panic!("not refused: {decided:?}");
            };
            assert_eq!(
                reason,
                TeskDenial::EnvOutputs {
                    task: "task-1a2b3c4d".into()
                }
            );
            assert!(reason.to_string().contains("upgrade tesk-api"), "{reason}");
        }
    }

    #[test]
    fn taskmaster_mounts() {
        let mut t = task();
        t["volumes"] = json!(["/data/in", "/scratch"]);
        assert_eq!(
            taskmaster_dirs(&t),
            vec![
                "/data/in",
                "/scratch",
                "/data/ref",
                "/data/stream",
                "/data/out"
            ]
        );
        let pod = executor_pod(&t, 0, DRS_ID);
        let spec = pod.spec.unwrap();
        let mounts = spec.containers[0].volume_mounts.clone().unwrap();
        assert_eq!(
            mounts
                .iter()
                .map(|m| (m.mount_path.as_str(), m.sub_path.as_deref().unwrap()))
                .collect::<Vec<_>>(),
            vec![
                ("/data/in", "dir0"),
                ("/scratch", "dir1"),
                ("/data/ref", "dir2"),
                ("/data/stream", "dir3"),
                ("/data/out", "dir4")
            ]
        );
        let pvc = spec.volumes.unwrap()[0]
            .persistent_volume_claim
            .clone()
            .unwrap();
        assert_eq!(pvc.claim_name, "task-1a2b3c4d-pvc");
    }

    /// The pod admission checks the executor pod as the real taskmaster makes it: the mounts
    /// and the PVC [`executor_pod`] predicts are those of the captured executor Job.
    #[test]
    fn the_predicted_executor_pod_is_the_real_taskmasters() {
        let pod = executor_pod(&files_task(), 0, FILES_ID);
        let spec = pod.spec.unwrap();
        let predicted = serde_json::to_value(spec.containers[0].volume_mounts.clone()).unwrap();
        let job = files_executor_job();
        let real = &job["spec"]["template"]["spec"];
        assert_eq!(predicted, real["containers"][0]["volumeMounts"]);
        assert_eq!(
            serde_json::to_value(spec.volumes).unwrap(),
            real["volumes"],
            "the task PVC"
        );
    }

    fn state() -> WebhookState {
        WebhookState {
            policies: Arc::new(policies()),
            metrics: Arc::new(Metrics::new()),
            recorder: None,
        }
    }

    async fn post(state: WebhookState, operation: &str, object: &Value) -> Value {
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
                "resource": {"group": "", "version": "v1", "resource": "configmaps"},
                "namespace": "tasks",
                "operation": operation,
                "userInfo": {"username": "system:serviceaccount:tesk:taskmaster"},
                "object": object,
                "oldObject": null,
                "dryRun": false
            }
        });
        let response = router(state)
            .oneshot(
                Request::post(MUTATE_PATH)
                    .header("content-type", "application/json")
                    .body(Body::from(review.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice::<Value>(&body).unwrap()["response"].clone()
    }

    #[tokio::test]
    async fn over_http_adapt_deny_and_skip() {
        let state = state();
        let before = drs_config_map();
        let response = post(state.clone(), "CREATE", &before).await;
        assert_eq!(response["allowed"], true);
        assert_eq!(response["patchType"], "JSONPatch");
        let patch: json_patch::Patch = serde_json::from_slice(
            &STANDARD
                .decode(response["patch"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        let mut patched = before.clone();
        json_patch::patch(&mut patched, &patch).unwrap();
        let Outcome::Adapted(expected) = run(&before, "tasks").unwrap() else {
            panic!("not adapted")
        };
        assert_eq!(stored_task(&patched), stored_task(&expected));

        let mut t = task();
        t["inputs"][1]["url"] = json!("drs://drs.evil.example/x");
        let response = post(state.clone(), "CREATE", &config_map(&t)).await;
        assert_eq!(response["allowed"], true, "refused tasks are admitted");
        assert_eq!(response["patchType"], "JSONPatch");
        // A ConfigMap whose task input cannot be read is still denied.
        let mut unreadable = config_map(&t);
        unreadable["binaryData"][GZIP_KEY] = json!("not base64!");
        let response = post(state.clone(), "CREATE", &unreadable).await;
        assert_eq!(response["allowed"], false);
        assert!(
            response["status"]["message"]
                .as_str()
                .unwrap()
                .contains("is not valid base64")
        );

        let response = post(state.clone(), "UPDATE", &config_map(&t)).await;
        assert_eq!(response["allowed"], true);
        assert!(response.get("patch").is_none());

        let metrics = state.metrics.encode();
        for line in [
            "c4gh_operator_tesk_admissions_total{result=\"adapted\"} 1",
            "c4gh_operator_tesk_admissions_total{result=\"denied\"} 2",
            "c4gh_operator_tesk_admissions_total{result=\"skipped\"} 1",
        ] {
            assert!(metrics.contains(line), "{line} missing in\n{metrics}");
        }
    }
}
