//! Golden-file tests of the injection: `golden/NAME.input.yaml` → `golden/NAME.expected.yaml`,
//! complete pods compared exactly. The TESK executor's input is the executor pod captured from
//! the real TESK (`fixtures/tesk/files/ex-00.pod.json`, see `fixtures/tesk/README.md`) with the
//! keys the operator's TESK adapter puts on its template. Regenerate with `UPDATE_GOLDEN=1
//! cargo test -p c4gh-operator --test golden` and review the diff.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use std::fs;
use std::path::{Path, PathBuf};

use c4gh_operator::effective::{EffectivePolicy, OperatorDefaults};
use c4gh_operator::inject;
use c4gh_operator::policy::Crypt4ghPolicy;
use k8s_openapi::api::core::v1::Pod;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn policy() -> EffectivePolicy {
    let p: Crypt4ghPolicy =
        serde_yaml_ng::from_str(&fs::read_to_string(dir().join("policy.yaml")).unwrap()).unwrap();
    EffectivePolicy::from_spec("default", &p.spec, &OperatorDefaults::default()).unwrap()
}

fn to_yaml(pod: &Pod) -> String {
    serde_yaml_ng::to_string(pod).unwrap()
}

fn case(name: &str) {
    let input_path = dir().join(format!("{name}.input.yaml"));
    let input: Pod = serde_yaml_ng::from_str(&fs::read_to_string(&input_path).unwrap()).unwrap();
    check(name, &input);
}

/// The pod the Job controller made from the real taskmaster's first executor Job of the
/// `files` capture (the task PVC at `/work`, `/data/in` and `/data/out`, subPaths `dir0`..`dir2`),
/// with what the TESK adapter adds to the executor's template when the task has `drs://`
/// inputs: the opt-in label, the inputs (one with a port, one under the `volumes` entry
/// `/work`) and the task id. Derived: in the capture's namespace nothing adapts the task, so
/// the real pod has none of these.
fn tesk_executor_pod() -> Pod {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tesk/files/ex-00.pod.json");
    let mut pod: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let meta = &mut pod["metadata"];
    meta["labels"]["c4gh.dev/inject"] = "enabled".into();
    let notes = meta["annotations"]
        .as_object_mut()
        .cloned()
        .unwrap_or_default();
    meta["annotations"] = serde_json::Value::Object(notes);
    meta["annotations"]["c4gh.dev/inputs"] = r#"[{"url": "drs://drs.example.org/obj-1", "path": "/data/in/sample.bam.c4gh"}, {"url": "drs://localhost:8443/obj-2", "path": "/data/in/sample.bai.c4gh"}, {"url": "drs://drs.example.org/obj-3", "path": "/work/ref/genome.fa.c4gh"}]"#.into();
    meta["annotations"]["c4gh.dev/tes-task"] = "task-2b3c4d5e".into();
    serde_json::from_value(pod).unwrap()
}

fn check(name: &str, input: &Pod) {
    let expected_path = dir().join(format!("{name}.expected.yaml"));
    let policy = policy();
    let output = inject::mutate(input, &policy).unwrap();
    let yaml = to_yaml(&output);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&expected_path, &yaml).unwrap();
    }
    let expected = fs::read_to_string(&expected_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            expected_path.display()
        )
    });
    assert_eq!(
        yaml,
        expected,
        "{name}: injected pod differs from {}; if the change is intended, run with UPDATE_GOLDEN=1 and review the diff",
        expected_path.display()
    );
    // A second pass (webhook reinvocation) changes nothing.
    let again = inject::mutate(&output, &policy).unwrap();
    assert_eq!(to_yaml(&again), yaml, "{name}: second pass changed the pod");
    // The patch the webhook sends turns the input into exactly the expected pod.
    let before = serde_json::to_value(input).unwrap();
    let after = serde_json::to_value(&output).unwrap();
    let patch = json_patch::diff(&before, &after);
    let mut patched = before.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    assert_eq!(patched, after);
}

#[test]
fn plain_job_pod() {
    case("job-pod");
}

#[test]
fn tesk_executor_with_pvc_subpaths() {
    // The input file (which other tests and the admission benchmark read) is the derivation,
    // written out.
    let input_path = dir().join("tesk-executor.input.yaml");
    let derived = tesk_executor_pod();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let text = format!(
            "# Derived by golden.rs (tesk_executor_pod) from fixtures/tesk/files/ex-00.pod.json, the\n# executor pod captured from the real TESK; regenerate with UPDATE_GOLDEN=1.\n{}",
            serde_yaml_ng::to_string(&derived).unwrap()
        );
        fs::write(&input_path, text).unwrap();
    }
    let committed: Pod =
        serde_yaml_ng::from_str(&fs::read_to_string(&input_path).unwrap()).unwrap();
    assert_eq!(
        committed,
        derived,
        "{} is not the captured executor pod with the TESK adapter's keys; run with UPDATE_GOLDEN=1 and review the diff",
        input_path.display()
    );
    case("tesk-executor");
}

#[test]
fn existing_init_containers_and_mesh_sidecar() {
    case("mesh-and-init");
}

#[test]
fn opted_in_without_inputs() {
    case("no-inputs");
}

#[test]
fn not_opted_in_is_unchanged() {
    case("not-opted-in");
    let input = fs::read_to_string(dir().join("not-opted-in.input.yaml")).unwrap();
    let pod: Pod = serde_yaml_ng::from_str(&input).unwrap();
    assert_eq!(inject::mutate(&pod, &policy()).unwrap(), pod);
}

#[test]
fn second_pass_changes_nothing() {
    // second-pass.input.yaml is an already injected pod (a copy of tesk-executor.expected.yaml).
    case("second-pass");
    let input = fs::read_to_string(dir().join("second-pass.input.yaml")).unwrap();
    let expected = fs::read_to_string(dir().join("second-pass.expected.yaml")).unwrap();
    let a: Pod = serde_yaml_ng::from_str(&input).unwrap();
    let b: Pod = serde_yaml_ng::from_str(&expected).unwrap();
    assert_eq!(a, b, "the second pass must produce its input");
}
