//! The TESK adapter: TESK's filer rejects `drs://` URLs (`UnknownProtocol`), so the `drs://`
//! inputs of a TES task are moved out of the filer's way and onto the executor pods, where the
//! webhook injects the sidecar that fetches them.
//!
//! TESK's taskmaster reads the task from `JSON_INPUT` (`{executors: [Job manifests], inputs,
//! outputs, volumes, resources}`). [`adapt_task`] rewrites that document:
//! - `drs://` entries leave `inputs` (the filer never sees them);
//! - the directories of `encrypted` ones join `volumes`, so the taskmaster mounts the task PVC
//!   there in every executor (the sidecar then writes into the same PVC subPath);
//! - every executor Job's pod template gets the opt-in label, the `c4gh.dev/inputs` annotation
//!   (each input with its explicit mode) and `c4gh.dev/tes-task`.
//!
//! Modes: a TES `streamable: true` input becomes `stream` when the policy allows it; every other
//! input gets the policy's `defaultMode`. `plaintext`/`stream` inputs live in a memory-backed
//! volume the webhook adds, so their directories are not added to `volumes`.
//!
//! [`crate::tesk_webhook`] calls this at admission of TESK's task ConfigMap.

use serde_json::{Map, Value, json};

use crate::annotations;
use crate::effective::EffectivePolicy;
use c4gh_contract::Mode;

/// Why a TES task cannot be adapted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TeskError {
    /// The document does not have TESK's shape.
    #[error("TESK task JSON: {0}")]
    Shape(String),
    /// A `drs://` input of type DIRECTORY (DRS bundles are not supported).
    #[error(
        "TES input {index} ({url}) is a DIRECTORY; DRS bundles are not supported, list each file as a FILE input"
    )]
    Directory {
        /// Position in `inputs`.
        index: usize,
        /// The URL.
        url: String,
    },
    /// A `drs://` input with inline `content` or without a path.
    #[error("TES input {index} ({url}) needs an absolute `path` and no `content`")]
    BadInput {
        /// Position in `inputs`.
        index: usize,
        /// The URL.
        url: String,
    },
}

/// The result of [`adapt_task`].
#[derive(Debug, Clone, PartialEq)]
pub struct Adapted {
    /// The rewritten `JSON_INPUT` document.
    pub task: Value,
    /// For each entry of the `c4gh.dev/inputs` annotation, its position in the task's original
    /// `inputs` (so messages can name the input the TES user wrote).
    pub tes_index: Vec<usize>,
}

/// Whether the document lists at least one `drs://` input (anything else: `false`).
pub fn has_drs_inputs(task: &Value) -> bool {
    task.get("inputs")
        .and_then(Value::as_array)
        .is_some_and(|inputs| inputs.iter().any(|i| drs_url(i).is_some()))
}

fn drs_url(input: &Value) -> Option<&str> {
    input
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("drs://"))
}

/// Rewrites a TESK `JSON_INPUT` document (see the module docs) for `policy`'s modes. Returns
/// `None` when the task has no `drs://` input (nothing to change), so running it on its own
/// output changes nothing.
///
/// # Errors
///
/// [`TeskError`] when the document is not TESK-shaped or a `drs://` input cannot be served.
pub fn adapt_task(
    task_id: &str,
    task: &Value,
    policy: &EffectivePolicy,
) -> Result<Option<Adapted>, TeskError> {
    let obj = task
        .as_object()
        .ok_or_else(|| TeskError::Shape("not a JSON object".to_owned()))?;
    let inputs = match obj.get("inputs") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(TeskError::Shape("`inputs` is not a list".to_owned())),
    };
    let mut kept = Vec::new();
    let mut moved = Vec::new();
    let mut tes_index = Vec::new();
    let mut encrypted_dirs = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        let Some(url) = drs_url(input) else {
            kept.push(input.clone());
            continue;
        };
        if input.get("type").and_then(Value::as_str) == Some("DIRECTORY") {
            return Err(TeskError::Directory {
                index,
                url: url.to_owned(),
            });
        }
        let path = input
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !path.starts_with('/') || input.get("content").is_some_and(|c| !c.is_null()) {
            return Err(TeskError::BadInput {
                index,
                url: url.to_owned(),
            });
        }
        let streamable = input.get("streamable").and_then(Value::as_bool) == Some(true);
        let mode = if streamable && policy.allowed_modes.contains(&Mode::Stream) {
            Mode::Stream
        } else {
            policy.default_mode
        };
        if mode == Mode::Encrypted {
            encrypted_dirs.push(crate::inputs::parent_dir(path).to_owned());
        }
        moved.push(json!({"url": url, "path": path, "mode": mode.as_str()}));
        tes_index.push(index);
    }
    if moved.is_empty() {
        return Ok(None);
    }
    let mut out = obj.clone();
    out.insert("inputs".to_owned(), Value::Array(kept));
    let mut volumes: Vec<Value> = match out.get("volumes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(v)) => v.clone(),
        Some(_) => return Err(TeskError::Shape("`volumes` is not a list".to_owned())),
    };
    for dir in encrypted_dirs {
        if !volumes.iter().any(|v| v.as_str() == Some(dir.as_str())) {
            volumes.push(json!(dir));
        }
    }
    out.insert("volumes".to_owned(), Value::Array(volumes));
    let inputs_json = serde_json::to_string(&moved).unwrap_or_else(|_| "[]".to_owned());
    let executors = out
        .get_mut("executors")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| TeskError::Shape("`executors` is missing or not a list".to_owned()))?;
    if executors.is_empty() {
        return Err(TeskError::Shape(
            "`executors` is empty, so nothing would read the drs:// inputs".to_owned(),
        ));
    }
    for (n, job) in executors.iter_mut().enumerate() {
        let template = job
            .pointer_mut("/spec/template")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| TeskError::Shape(format!("executor {n} has no spec.template")))?;
        let meta = object_entry(template, "metadata")
            .ok_or_else(|| TeskError::Shape(format!("executor {n}: metadata is not an object")))?;
        for (map, key, value) in [
            (
                "labels",
                annotations::INJECT_LABEL,
                annotations::INJECT_ENABLED,
            ),
            ("annotations", annotations::INPUTS, inputs_json.as_str()),
            ("annotations", annotations::TES_TASK, task_id),
        ] {
            object_entry(meta, map)
                .ok_or_else(|| {
                    TeskError::Shape(format!("executor {n}: metadata.{map} is not an object"))
                })?
                .insert(key.to_owned(), json!(value));
        }
    }
    Ok(Some(Adapted {
        task: Value::Object(out),
        tes_index,
    }))
}

/// The object under `key`, created when absent or `null` (TESK's Python client writes unset
/// fields as `null`); `None` when it holds something else.
fn object_entry<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    let slot = map.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effective::OperatorDefaults;
    use crate::policy::Crypt4ghPolicySpec;
    use crate::tesk_fixtures::{DRS_ID, drs_task, files_task};

    fn policy(modes: &[Mode], default: Mode) -> EffectivePolicy {
        let spec = Crypt4ghPolicySpec {
            allowed_hosts: vec!["drs.example.org".into()],
            allowed_modes: Some(modes.to_vec()),
            default_mode: Some(default),
            max_plaintext_bytes: Some(1 << 20),
            ..Default::default()
        };
        EffectivePolicy::from_spec("default", &spec, &OperatorDefaults::default()).unwrap()
    }

    fn encrypted_and_stream() -> EffectivePolicy {
        policy(&[Mode::Encrypted, Mode::Stream], Mode::Encrypted)
    }

    /// The captured `drs` task (inputs: `http://` ref, `drs://` obj-1, `drs://` obj-2) with
    /// its third input marked `streamable`. Derived: Java tesk-api rejects `streamable` (its
    /// `TesInput` has no such field), so no captured task carries it.
    fn task() -> Value {
        let mut t = drs_task();
        t["inputs"][2]["streamable"] = json!(true);
        t
    }

    /// `job` without the keys [`adapt_task`] adds to its pod template.
    fn without_ours(job: &Value) -> Value {
        let mut job = job.clone();
        let meta = &mut job["spec"]["template"]["metadata"];
        for (map, key) in [
            ("labels", annotations::INJECT_LABEL),
            ("annotations", annotations::INPUTS),
            ("annotations", annotations::TES_TASK),
        ] {
            let empty = meta[map].as_object_mut().is_some_and(|m| {
                m.remove(key);
                m.is_empty()
            });
            if empty && let Some(o) = meta.as_object_mut() {
                o.remove(map);
            }
        }
        job
    }

    #[test]
    fn drs_inputs_move_to_executor_pods() {
        let adapted = adapt_task(DRS_ID, &task(), &encrypted_and_stream())
            .unwrap()
            .unwrap();
        let out = adapted.task;
        assert_eq!(adapted.tes_index, vec![1, 2]);
        assert_eq!(
            out["inputs"],
            json!([{"name": "ref", "url": "http://127.0.0.1:9/ref.fa", "path": "/data/ref/ref.fa", "type": "FILE"}])
        );
        // Only the encrypted input's directory goes onto the PVC; the stream input gets a
        // memory-backed volume from the webhook.
        assert_eq!(out["volumes"], json!(["/data/out", "/data/in"]));
        let expected_inputs = r#"[{"mode":"encrypted","path":"/data/in/sample.bam.c4gh","url":"drs://drs.example.org/obj-1"},{"mode":"stream","path":"/data/stream/reads.fq","url":"drs://drs.example.org/obj-2"}]"#;
        for n in 0..2 {
            let meta = &out["executors"][n]["spec"]["template"]["metadata"];
            assert_eq!(meta["labels"]["c4gh.dev/inject"], "enabled");
            assert_eq!(meta["annotations"]["c4gh.dev/inputs"], expected_inputs);
            assert_eq!(meta["annotations"]["c4gh.dev/tes-task"], DRS_ID);
            // Everything tesk-api wrote stays: the Job's labels (the taskmaster finds the task
            // name there), the template's name, the containers.
            assert_eq!(
                without_ours(&out["executors"][n]),
                task()["executors"][n],
                "executor {n}"
            );
        }
        assert_eq!(out["outputs"], task()["outputs"]);
        assert_eq!(out["resources"], task()["resources"]);
        // Adapting the result again changes nothing (no drs:// inputs left).
        assert!(!has_drs_inputs(&out));
        assert_eq!(
            adapt_task(DRS_ID, &out, &encrypted_and_stream()).unwrap(),
            None
        );
    }

    #[test]
    fn modes_follow_the_policy() {
        // As captured (nothing streamable): both inputs get the default mode.
        let out = adapt_task(DRS_ID, &drs_task(), &encrypted_and_stream())
            .unwrap()
            .unwrap()
            .task;
        assert_eq!(
            out["volumes"],
            json!(["/data/out", "/data/in", "/data/stream"])
        );
        // Stream not allowed: streamable is a hint, the input gets the default mode and its
        // directory goes onto the PVC.
        let only_encrypted = policy(&[Mode::Encrypted], Mode::Encrypted);
        let out = adapt_task("t", &task(), &only_encrypted)
            .unwrap()
            .unwrap()
            .task;
        assert_eq!(
            out["volumes"],
            json!(["/data/out", "/data/in", "/data/stream"])
        );
        let ann =
            out["executors"][0]["spec"]["template"]["metadata"]["annotations"]["c4gh.dev/inputs"]
                .as_str()
                .unwrap();
        assert!(!ann.contains(r#""mode":"stream""#), "{ann}");
        assert_eq!(ann.matches(r#""mode":"encrypted""#).count(), 2, "{ann}");
        // Plaintext by default: nothing goes onto the PVC.
        let plaintext = policy(&[Mode::Plaintext], Mode::Plaintext);
        let out = adapt_task("t", &task(), &plaintext).unwrap().unwrap().task;
        assert_eq!(out["volumes"], json!(["/data/out"]));
    }

    #[test]
    fn null_metadata_from_the_python_client() {
        // Derived: TESK's Python API (unmerged PR #207, not among the peers) serializes
        // executor Jobs with `to_dict()`, so unset fields are null.
        let mut t = task();
        t["executors"][0]["spec"]["template"]["metadata"] =
            json!({"labels": null, "annotations": null, "name": null});
        t["executors"][1]["spec"]["template"]["metadata"] = Value::Null;
        let out = adapt_task("t", &t, &encrypted_and_stream())
            .unwrap()
            .unwrap()
            .task;
        for n in 0..2 {
            let meta = &out["executors"][n]["spec"]["template"]["metadata"];
            assert_eq!(meta["labels"]["c4gh.dev/inject"], "enabled", "executor {n}");
            assert_eq!(
                meta["annotations"]["c4gh.dev/tes-task"], "t",
                "executor {n}"
            );
        }
    }

    #[test]
    fn tasks_without_drs_are_untouched() {
        // The captured `files` task: an inline input, no drs://.
        let mut t = files_task();
        assert!(!has_drs_inputs(&t));
        assert_eq!(adapt_task("t", &t, &encrypted_and_stream()).unwrap(), None);
        t["inputs"] = Value::Null;
        assert_eq!(adapt_task("t", &t, &encrypted_and_stream()).unwrap(), None);
    }

    #[test]
    fn rejects_what_cannot_be_served() {
        let p = encrypted_and_stream();
        let mut t = task();
        t["inputs"][1]["type"] = json!("DIRECTORY");
        assert_eq!(
            adapt_task("t", &t, &p).unwrap_err().to_string(),
            "TES input 1 (drs://drs.example.org/obj-1) is a DIRECTORY; DRS bundles are not supported, list each file as a FILE input"
        );
        let mut t = task();
        t["inputs"][1]["content"] = json!("inline");
        assert_eq!(
            adapt_task("t", &t, &p).unwrap_err().to_string(),
            "TES input 1 (drs://drs.example.org/obj-1) needs an absolute `path` and no `content`"
        );
        assert_eq!(
            adapt_task("t", &json!([]), &p).unwrap_err().to_string(),
            "TESK task JSON: not a JSON object"
        );
        let mut t = task();
        t["executors"] = json!({});
        assert_eq!(
            adapt_task("t", &t, &p).unwrap_err().to_string(),
            "TESK task JSON: `executors` is missing or not a list"
        );
        t["executors"] = json!([]);
        assert_eq!(
            adapt_task("t", &t, &p).unwrap_err().to_string(),
            "TESK task JSON: `executors` is empty, so nothing would read the drs:// inputs"
        );
        let mut t = task();
        t["executors"][1]["spec"]["template"]["metadata"] = json!({"labels": []});
        assert_eq!(
            adapt_task("t", &t, &p).unwrap_err().to_string(),
            "TESK task JSON: executor 1: metadata.labels is not an object"
        );
    }
}
