//! The TESK adapter: TESK's filer rejects `drs://` URLs (`UnknownProtocol`), so the `drs://`
//! inputs of a TES task are moved out of the filer's way and onto the executor pods, where the
//! webhook injects the sidecar that fetches them.
//!
//! TESK's taskmaster reads the task from `JSON_INPUT` (`{executors: [Job manifests], inputs,
//! outputs, volumes, resources}`). [`adapt_task`] rewrites that document:
//! - `drs://` entries leave `inputs` (the filer never sees them);
//! - their directories join `volumes`, so every executor still mounts the task PVC there;
//! - every executor Job's pod template gets the opt-in label, the `c4gh.dev/inputs` annotation
//!   and `c4gh.dev/tes-task`.
//!
//! A TES `streamable: true` input becomes mode `stream`; other inputs use the policy's default.

use serde_json::{Map, Value, json};

use crate::annotations;

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

/// Rewrites a TESK `JSON_INPUT` document (see the module docs). Returns `None` when the task has
/// no `drs://` input (nothing to change).
///
/// # Errors
///
/// [`TeskError`] when the document is not TESK-shaped or a `drs://` input cannot be served.
pub fn adapt_task(task_id: &str, task: &Value) -> Result<Option<Value>, TeskError> {
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
    for (index, input) in inputs.iter().enumerate() {
        let url = input.get("url").and_then(Value::as_str).unwrap_or_default();
        if !url.starts_with("drs://") {
            kept.push(input.clone());
            continue;
        }
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
        let mut entry = json!({"url": url, "path": path});
        if input.get("streamable").and_then(Value::as_bool) == Some(true) {
            entry["mode"] = json!("stream");
        }
        moved.push(entry);
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
    for m in &moved {
        let path = m["path"].as_str().unwrap_or_default();
        let dir = crate::inputs::parent_dir(path);
        if !volumes.iter().any(|v| v.as_str() == Some(dir)) {
            volumes.push(json!(dir));
        }
    }
    out.insert("volumes".to_owned(), Value::Array(volumes));
    let inputs_json = serde_json::to_string(&moved).unwrap_or_else(|_| "[]".to_owned());
    let executors = out
        .get_mut("executors")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| TeskError::Shape("`executors` is missing or not a list".to_owned()))?;
    for (n, job) in executors.iter_mut().enumerate() {
        let meta = job
            .pointer_mut("/spec/template")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| TeskError::Shape(format!("executor {n} has no spec.template")))?
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        let meta = meta
            .as_object_mut()
            .ok_or_else(|| TeskError::Shape(format!("executor {n}: metadata is not an object")))?;
        insert(
            meta,
            "labels",
            annotations::INJECT_LABEL,
            annotations::INJECT_ENABLED,
        )
        .map_err(|e| TeskError::Shape(format!("executor {n}: {e}")))?;
        insert(meta, "annotations", annotations::INPUTS, &inputs_json)
            .map_err(|e| TeskError::Shape(format!("executor {n}: {e}")))?;
        insert(meta, "annotations", annotations::TES_TASK, task_id)
            .map_err(|e| TeskError::Shape(format!("executor {n}: {e}")))?;
    }
    Ok(Some(Value::Object(out)))
}

fn insert(meta: &mut Map<String, Value>, map: &str, key: &str, value: &str) -> Result<(), String> {
    meta.entry(map)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| format!("metadata.{map} is not an object"))?
        .insert(key.to_owned(), json!(value));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> Value {
        json!({
            "executors": [
                {"apiVersion": "batch/v1", "kind": "Job",
                 "metadata": {"name": "task-1a2b3c4d-ex-00", "labels": {"job-type": "executor", "taskmaster-name": "task-1a2b3c4d"}},
                 "spec": {"template": {"metadata": {"labels": {"executor-no": "0"}},
                          "spec": {"containers": [{"name": "task-1a2b3c4d-ex-00", "image": "ubuntu"}], "restartPolicy": "Never"}}}},
                {"apiVersion": "batch/v1", "kind": "Job",
                 "metadata": {"name": "task-1a2b3c4d-ex-01"},
                 "spec": {"template": {"spec": {"containers": [{"name": "ex1", "image": "ubuntu"}]}}}}
            ],
            "inputs": [
                {"url": "drs://drs.example.org/obj-1", "path": "/data/in/sample.bam.c4gh", "type": "FILE"},
                {"url": "https://example.org/ref.fa", "path": "/data/ref/ref.fa", "type": "FILE"},
                {"url": "drs://drs.example.org/obj-2", "path": "/data/in/reads.fq", "type": "FILE", "streamable": true}
            ],
            "outputs": [{"url": "s3://bucket/out", "path": "/data/out", "type": "DIRECTORY"}],
            "volumes": ["/data/out"],
            "resources": {"disk_gb": 10}
        })
    }

    #[test]
    fn drs_inputs_move_to_executor_pods() {
        let out = adapt_task("task-1a2b3c4d", &task()).unwrap().unwrap();
        assert_eq!(
            out["inputs"],
            json!([{"url": "https://example.org/ref.fa", "path": "/data/ref/ref.fa", "type": "FILE"}])
        );
        assert_eq!(out["volumes"], json!(["/data/out", "/data/in"]));
        let expected_inputs = r#"[{"path":"/data/in/sample.bam.c4gh","url":"drs://drs.example.org/obj-1"},{"mode":"stream","path":"/data/in/reads.fq","url":"drs://drs.example.org/obj-2"}]"#;
        for n in 0..2 {
            let meta = &out["executors"][n]["spec"]["template"]["metadata"];
            assert_eq!(meta["labels"]["c4gh.dev/inject"], "enabled");
            assert_eq!(meta["annotations"]["c4gh.dev/inputs"], expected_inputs);
            assert_eq!(meta["annotations"]["c4gh.dev/tes-task"], "task-1a2b3c4d");
        }
        assert_eq!(
            out["executors"][0]["spec"]["template"]["metadata"]["labels"]["executor-no"],
            "0"
        );
        assert_eq!(out["outputs"], task()["outputs"]);
        // Adapting the result again changes nothing (no drs:// inputs left).
        assert_eq!(adapt_task("task-1a2b3c4d", &out).unwrap(), None);
    }

    #[test]
    fn tasks_without_drs_are_untouched() {
        let mut t = task();
        t["inputs"] = json!([{"url": "ftp://x/y", "path": "/data/y"}]);
        assert_eq!(adapt_task("t", &t).unwrap(), None);
    }

    #[test]
    fn rejects_what_cannot_be_served() {
        let mut t = task();
        t["inputs"][0]["type"] = json!("DIRECTORY");
        assert_eq!(
            adapt_task("t", &t).unwrap_err().to_string(),
            "TES input 0 (drs://drs.example.org/obj-1) is a DIRECTORY; DRS bundles are not supported, list each file as a FILE input"
        );
        let mut t = task();
        t["inputs"][0]["content"] = json!("inline");
        assert_eq!(
            adapt_task("t", &t).unwrap_err().to_string(),
            "TES input 0 (drs://drs.example.org/obj-1) needs an absolute `path` and no `content`"
        );
        assert!(matches!(
            adapt_task("t", &json!([])),
            Err(TeskError::Shape(_))
        ));
        let mut t = task();
        t["executors"] = json!({});
        assert!(matches!(adapt_task("t", &t), Err(TeskError::Shape(_))));
    }
}
