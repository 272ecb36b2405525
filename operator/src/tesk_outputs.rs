//! TESK outputs leave encrypted: the outputs filer is a separate pod that runs after the
//! executors, so the operator adds a step to it that encrypts the TES task's outputs on the task
//! volume before the filer uploads them.
//!
//! 1. At the task ConfigMap's CREATE ([`crate::tesk_webhook`]), when the namespace's policy
//!    names output recipients (`spec.outputs.defaultRecipients` and/or
//!    `requiredRecipients`), [`output_list`] turns the TES task's `outputs` into the validated
//!    output list and the webhook stores it in the ConfigMap as `data[`[`OUTPUTS_KEY`]`]`.
//!    TESK's API copies no TES `tags` into the ConfigMap, so the recipients come from the
//!    policy only.
//! 2. At the CREATE of the outputs filer Job (`<task>-outputs-filer`, container `filer`, the
//!    task ConfigMap mounted at `/jsoninput` as TESK's taskmaster does with `-f`),
//!    [`seal_filer_job`] adds the init container [`SEAL_CONTAINER`] (`c4gh-sidecar seal`, the
//!    sidecar image) with the filer's task-volume mounts and `C4GH_OUTPUTS_FILE` pointing at
//!    `/jsoninput/`[`OUTPUTS_KEY`]. The kubelet runs it to completion before the filer; when it
//!    fails (a file that cannot be encrypted), the filer pod fails without uploading anything
//!    and TESK reports the task's `SYSTEM_ERROR`. A task without the key has nothing declared
//!    and the step exits 0 at once.

use k8s_openapi::api::core::v1::{Capabilities, Container, EnvVar, SecurityContext, VolumeMount};
use serde_json::{Value, json};

use c4gh_contract::OutputEntry;
use c4gh_contract::env;
use c4gh_contract::pod::SEAL_CONTAINER;

use crate::effective::EffectivePolicy;

/// The ConfigMap key holding the output list (JSON), next to `JSON_INPUT.gz`.
pub const OUTPUTS_KEY: &str = "c4gh-outputs.json";

/// Where TESK's outputs filer mounts the task ConfigMap.
pub const JSON_INPUT_DIR: &str = "/jsoninput";

/// The name suffix of TESK's outputs filer Job.
pub const FILER_SUFFIX: &str = "-outputs-filer";

/// The name of TESK's filer container.
pub const FILER_CONTAINER: &str = "filer";

/// The output list for a TESK task document (`outputs[].path`), each with the policy's
/// recipients; `None` when the task has no outputs or the policy names no output recipients.
///
/// An output at or under another output's path is left out: every entry has the same
/// recipients, and the seal step walks a directory entry, so the nested entry would be
/// encrypted twice (cwl-tes declares both `stdout` at `OUTDIR/NAME` and the whole `OUTDIR`).
pub fn output_list(task: &Value, policy: &EffectivePolicy) -> Option<String> {
    let mut recipients = policy.output_default_recipients.clone();
    for key in &policy.output_required_recipients {
        if !recipients.contains(key) {
            recipients.push(key.clone());
        }
    }
    if recipients.is_empty() {
        return None;
    }
    let paths: Vec<&str> = task
        .get("outputs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("path").and_then(Value::as_str))
        .filter(|p| p.starts_with('/'))
        .map(|p| p.trim_end_matches('/'))
        .collect();
    let mut kept: Vec<&str> = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let covered = paths
            .iter()
            .enumerate()
            .any(|(j, other)| (j != i && is_under(path, other)) || (j < i && path == other));
        if !covered {
            kept.push(path);
        }
    }
    let list: Vec<OutputEntry> = kept
        .into_iter()
        .map(|path| OutputEntry {
            path: path.to_owned(),
            recipients: recipients.clone(),
        })
        .collect();
    (!list.is_empty()).then(|| OutputEntry::list_to_json(&list))
}

/// Whether `path` lies strictly under the directory `dir` (both without a trailing `/`; the
/// root `/` is the empty string then).
fn is_under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether a Job (as JSON) is TESK's outputs filer: named `…-outputs-filer`, with a container
/// `filer` whose first argument is `outputs`.
pub fn is_outputs_filer(job: &Value) -> bool {
    let named = job
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_some_and(|n| n.ends_with(FILER_SUFFIX));
    let filer = job
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(FILER_CONTAINER))
        })
        .and_then(|c| c.pointer("/args/0"))
        .and_then(Value::as_str)
        == Some("outputs");
    named && filer
}

/// The outputs filer Job with the seal step added first among its init containers; `None` when
/// the Job is not TESK's outputs filer, does not mount the task ConfigMap, or already has it.
pub fn seal_filer_job(job: &Value, policy: &EffectivePolicy) -> Option<Value> {
    if !is_outputs_filer(job) {
        return None;
    }
    let spec = job.pointer("/spec/template/spec")?;
    let filer = spec
        .get("containers")?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(FILER_CONTAINER))?;
    let mounts: Vec<VolumeMount> = filer
        .get("volumeMounts")
        .and_then(|m| serde_json::from_value::<Vec<VolumeMount>>(m.clone()).ok())
        .unwrap_or_default();
    let json_input = mounts.iter().find(|m| m.mount_path == JSON_INPUT_DIR)?;
    let inits = spec.get("initContainers").and_then(Value::as_array);
    if inits.is_some_and(|i| {
        i.iter()
            .any(|c| c.get("name").and_then(Value::as_str) == Some(SEAL_CONTAINER))
    }) {
        return None;
    }
    let mut seal_mounts = vec![VolumeMount {
        read_only: Some(true),
        ..json_input.clone()
    }];
    seal_mounts.extend(
        mounts
            .iter()
            .filter(|m| m.name == crate::tesk_webhook::TASK_VOLUME)
            .cloned(),
    );
    let env_var = |name: &str, value: String| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    };
    let seal = Container {
        name: SEAL_CONTAINER.to_owned(),
        image: Some(policy.image.clone()),
        image_pull_policy: policy.image_pull_policy.clone(),
        args: Some(vec!["seal".to_owned()]),
        env: Some(vec![
            env_var(env::OUTPUTS_FILE, format!("{JSON_INPUT_DIR}/{OUTPUTS_KEY}")),
            env_var(env::LOG_FORMAT, policy.log_format.clone()),
        ]),
        volume_mounts: Some(seal_mounts),
        resources: Some(policy.resources.clone()),
        // The executors wrote the outputs as whatever user their images run as (root by
        // default); replacing them needs to rename in their directories and read them.
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: Some(vec![
                    "CHOWN".to_owned(),
                    "DAC_OVERRIDE".to_owned(),
                    "FOWNER".to_owned(),
                ]),
            }),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(false),
            run_as_user: Some(0),
            ..SecurityContext::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };
    let mut out = job.clone();
    let spec = out.pointer_mut("/spec/template/spec")?.as_object_mut()?;
    let slot = spec.entry("initContainers").or_insert(json!([]));
    if !slot.is_array() {
        *slot = json!([]);
    }
    slot.as_array_mut()?
        .insert(0, serde_json::to_value(&seal).ok()?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effective::OperatorDefaults;
    use crate::policy::{Crypt4ghPolicySpec, OutputsSpec};
    use crate::tesk_fixtures::{drs_task, files_inputs_filer, files_outputs_filer, files_task};

    fn policy(required: Vec<String>) -> EffectivePolicy {
        let spec = Crypt4ghPolicySpec {
            allowed_hosts: vec!["drs.example.org".into()],
            outputs: Some(OutputsSpec {
                required_recipients: required,
                ..Default::default()
            }),
            ..Default::default()
        };
        EffectivePolicy::from_spec("default", &spec, &OperatorDefaults::default()).unwrap()
    }

    #[test]
    fn the_outputs_filer_gets_the_seal_step_once() {
        let key = crate::outputs::canonical_key(&c4gh::SecretKey::generate().public_key().to_pem())
            .unwrap();
        let p = policy(vec![key.clone()]);
        // The outputs filer Job the real taskmaster created for the `files` capture.
        let filer = files_outputs_filer();
        let sealed = seal_filer_job(&filer, &p).unwrap();
        let init = &sealed["spec"]["template"]["spec"]["initContainers"][0];
        assert_eq!(init["name"], "c4gh-seal");
        assert_eq!(init["args"], json!(["seal"]));
        assert_eq!(init["env"][0]["value"], "/jsoninput/c4gh-outputs.json");
        assert_eq!(
            init["volumeMounts"],
            json!([
                {"name": "jsoninput", "mountPath": "/jsoninput", "readOnly": true},
                {"name": "task-volume", "mountPath": "/work", "subPath": "dir0"},
                {"name": "task-volume", "mountPath": "/data/in", "subPath": "dir1"},
                {"name": "task-volume", "mountPath": "/data/out", "subPath": "dir2"}
            ])
        );
        // Nothing of the filer's own changes.
        let mut unsealed = sealed.clone();
        unsealed["spec"]["template"]["spec"]
            .as_object_mut()
            .unwrap()
            .remove("initContainers");
        assert_eq!(unsealed, filer);
        assert_eq!(seal_filer_job(&sealed, &p), None, "idempotent");
        assert_eq!(
            seal_filer_job(&files_inputs_filer(), &p),
            None,
            "the inputs filer is left alone"
        );
        // A FILE output (`files`) and a DIRECTORY output, the latter written with a trailing
        // `/` (derived from the `drs` capture's: TES allows it, tesk-api passes it on).
        let mut directory = drs_task()["outputs"][0].clone();
        directory["path"] = json!("/data/out/dir/");
        let task = json!({"outputs": [files_task()["outputs"][0], directory]});
        assert_eq!(
            output_list(&task, &p).unwrap(),
            format!(
                r#"[{{"path":"/data/out/count.txt","recipients":["{key}"]}},{{"path":"/data/out/dir","recipients":["{key}"]}}]"#
            )
        );
        // What cwl-tes 0.3.0 declares (docs/e2e.md, "TESK with inputs and outputs"): stdout at
        // OUTDIR/NAME and the whole OUTDIR; the repeated and sibling entries are edits.
        let cwl_tes = json!({"outputs": [
            {"name": "stdout", "path": "/var/spool/cwl/sum.txt", "url": "ftp://h/o/sum.txt"},
            {"name": "workdir", "path": "/var/spool/cwl", "type": "DIRECTORY"},
            {"name": "again", "path": "/var/spool/cwl/", "type": "DIRECTORY"},
            {"name": "sibling", "path": "/var/spool/cwlx/a", "url": "ftp://h/o/a"}]});
        assert_eq!(
            output_list(&cwl_tes, &p).unwrap(),
            format!(
                r#"[{{"path":"/var/spool/cwl","recipients":["{key}"]}},{{"path":"/var/spool/cwlx/a","recipients":["{key}"]}}]"#
            ),
            "nested and repeated outputs are sealed once, through their directory"
        );
        assert_eq!(output_list(&task, &policy(vec![])), None);
        assert_eq!(output_list(&json!({"outputs": []}), &p), None);
    }
}
