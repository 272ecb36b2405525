//! The TESK objects the unit tests start from: captured from the real `tesk-api` (751d482) and
//! taskmaster (tesk-core a50995a) by `tests/tests/tesk_fixtures.rs`, which also fails when they
//! drift from what TESK creates (see `tests/fixtures/tesk/README.md`). A test that needs a
//! shape TESK cannot produce (a corrupt gzip, the env-var era tesk-api, `streamable`, Python
//! client `null`s) derives it from one of these by an explicit edit and says why.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// The task id of the `drs` capture (two `drs://` inputs, an `http://` input, a DIRECTORY
/// output, `volumes`, CPU and RAM, two executors).
pub const DRS_ID: &str = "task-1a2b3c4d";
/// The task id of the `files` capture (an inline input, a FILE output, `volumes`, two
/// executors that ran).
pub const FILES_ID: &str = "task-2b3c4d5e";

fn parse(what: &str, text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("fixture {what}: {e}"))
}

/// The `drs` task's `JSON_INPUT` (the taskmaster's input, as tesk-api wrote it).
pub fn drs_task() -> Value {
    parse(
        "drs/JSON_INPUT.json",
        include_str!("../tests/fixtures/tesk/drs/JSON_INPUT.json"),
    )
}

/// The `files` task's `JSON_INPUT`.
pub fn files_task() -> Value {
    parse(
        "files/JSON_INPUT.json",
        include_str!("../tests/fixtures/tesk/files/JSON_INPUT.json"),
    )
}

/// The `drs` task's ConfigMap, as the apiserver sends it to the webhook.
pub fn drs_config_map() -> Value {
    parse(
        "drs/configmap.json",
        include_str!("../tests/fixtures/tesk/drs/configmap.json"),
    )
}

/// The `files` task's ConfigMap.
pub fn files_config_map() -> Value {
    parse(
        "files/configmap.json",
        include_str!("../tests/fixtures/tesk/files/configmap.json"),
    )
}

/// The `drs` task's taskmaster Job.
pub fn drs_taskmaster() -> Value {
    parse(
        "drs/taskmaster.job.json",
        include_str!("../tests/fixtures/tesk/drs/taskmaster.job.json"),
    )
}

/// The `files` task's inputs filer Job.
pub fn files_inputs_filer() -> Value {
    parse(
        "files/inputs-filer.job.json",
        include_str!("../tests/fixtures/tesk/files/inputs-filer.job.json"),
    )
}

/// The `files` task's outputs filer Job.
pub fn files_outputs_filer() -> Value {
    parse(
        "files/outputs-filer.job.json",
        include_str!("../tests/fixtures/tesk/files/outputs-filer.job.json"),
    )
}

/// The `files` task's first executor Job, as the taskmaster created it.
pub fn files_executor_job() -> Value {
    parse(
        "files/ex-00.job.json",
        include_str!("../tests/fixtures/tesk/files/ex-00.job.json"),
    )
}

/// `config_map` with `task` as its `binaryData["JSON_INPUT.gz"]` (gzip, base64): a captured
/// ConfigMap carrying an edited task.
pub fn with_task(config_map: &Value, task: &Value) -> Value {
    let mut out = config_map.clone();
    out["binaryData"] = json!({
        "JSON_INPUT.gz": STANDARD.encode(crate::tesk_webhook::gzip(task.to_string().as_bytes()))
    });
    out
}
