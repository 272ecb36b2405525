//! `kubectl c4gh check`: runs the operator's own admission code ([`webhook::admit`] for pods,
//! [`tesk_webhook::admit`] for TESK task ConfigMaps and for the Jobs of TESK's Job webhook: the
//! outputs filer and an older tesk-api's taskmaster) on an object read from a file, with the
//! namespace's policies from the cluster or from a file, and reports what the API server would
//! do: store the object with the injection, or refuse it with the webhook's message.
//!
//! The request is the AdmissionReview the API server would send (operation CREATE, dry run), so
//! the decision, the patch and the message are the webhook's, not a re-implementation.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine;
use c4gh_contract::pod;
use c4gh_operator::admission::{EffectivePolicies, PolicySource};
use c4gh_operator::annotations;
use c4gh_operator::effective::OperatorDefaults;
use c4gh_operator::metrics::Metrics;
use c4gh_operator::policy::Crypt4ghPolicy;
use c4gh_operator::tesk_outputs;
use c4gh_operator::tesk_webhook;
use c4gh_operator::webhook::{self, WebhookState};
use c4gh_operator::webhook_config::{TESK_FILER_WEBHOOK_NAME, TESK_WEBHOOK_NAME, WEBHOOK_NAME};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use serde_json::{Value, json};

use crate::cli::CheckOutput;

/// Policies keyed by namespace and name: the cluster's or a file's.
#[derive(Debug, Default)]
pub struct Policies(BTreeMap<(String, String), Arc<Crypt4ghPolicy>>);

impl Policies {
    /// The given policies; those without a namespace count as `namespace`'s.
    pub fn new(policies: impl IntoIterator<Item = Crypt4ghPolicy>, namespace: &str) -> Self {
        let map = policies
            .into_iter()
            .map(|p| {
                let ns = p
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| namespace.to_owned());
                let name = p.metadata.name.clone().unwrap_or_default();
                ((ns, name), Arc::new(p))
            })
            .collect();
        Policies(map)
    }

    /// Parses a YAML file of one or more `Crypt4ghPolicy` documents.
    ///
    /// # Errors
    ///
    /// The document that is not a policy, or that has no name.
    pub fn from_yaml(yaml: &str, namespace: &str) -> anyhow::Result<Self> {
        let mut policies = Vec::new();
        for (n, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
            let value = <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc)
                .with_context(|| format!("policy document {n} is not YAML"))?;
            if value.is_null() {
                continue;
            }
            let policy: Crypt4ghPolicy = serde_yaml_ng::from_value(value)
                .with_context(|| format!("policy document {n} is not a Crypt4ghPolicy"))?;
            if policy.metadata.name.is_none() {
                bail!("policy document {n} has no metadata.name");
            }
            policies.push(policy);
        }
        Ok(Policies::new(policies, namespace))
    }
}

impl PolicySource for Policies {
    fn lookup(&self, namespace: &str, name: &str) -> Option<Arc<Crypt4ghPolicy>> {
        self.0
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

/// An object to check, as read from the file.
#[derive(Debug, Clone)]
pub enum Object {
    /// A pod (or a Job's pod template, with the Job's name).
    Pod {
        /// The pod as the webhook would see it.
        pod: Box<Value>,
        /// `Job NAME` when it came from a Job's template.
        from: Option<String>,
        /// The Job itself, when it came from one (TESK's Job webhook may change it first).
        job: Option<Box<Value>>,
    },
    /// A ConfigMap (TESK task input when it holds JSON_INPUT.gz or JSON_INPUT).
    ConfigMap(Box<Value>),
}

impl Object {
    /// Reads the object from a YAML or JSON file (`-`: stdin).
    ///
    /// # Errors
    ///
    /// Unreadable file, not YAML, or a kind that is not Pod, Job or ConfigMap.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let mut text = String::new();
        if path == Path::new("-") {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading stdin")?;
        } else {
            text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
        }
        let value: Value = serde_yaml_ng::from_str(&text)
            .with_context(|| format!("{} is not a YAML or JSON object", path.display()))?;
        Self::from_value(value).with_context(|| format!("checking {}", path.display()))
    }

    /// Classifies a parsed object by its `kind`.
    ///
    /// # Errors
    ///
    /// A kind that is not Pod, Job or ConfigMap.
    pub fn from_value(value: Value) -> anyhow::Result<Self> {
        match value.get("kind").and_then(Value::as_str) {
            Some("Pod") => Ok(Object::Pod {
                pod: Box::new(value),
                from: None,
                job: None,
            }),
            Some("ConfigMap") => Ok(Object::ConfigMap(Box::new(value))),
            Some("Job") => {
                let name = value
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned();
                let Some(template) = value.pointer("/spec/template") else {
                    bail!("Job {name} has no spec.template");
                };
                let mut pod = json!({"apiVersion": "v1", "kind": "Pod"});
                pod["metadata"] = template.get("metadata").cloned().unwrap_or(json!({}));
                pod["spec"] = template.get("spec").cloned().unwrap_or(json!({}));
                if pod.pointer("/metadata/name").is_none() {
                    pod["metadata"]["generateName"] = json!(format!("{name}-"));
                }
                if let Some(ns) = value.pointer("/metadata/namespace") {
                    pod["metadata"]["namespace"] = ns.clone();
                }
                Ok(Object::Pod {
                    pod: Box::new(pod),
                    from: Some(format!("Job {name}")),
                    job: Some(Box::new(value)),
                })
            }
            Some(other) => bail!(
                "kind {other} is not checked: give a Pod, a Job or a TESK task ConfigMap \
                 (the operator's webhooks admit pods and ConfigMaps)"
            ),
            None => bail!("the object has no kind"),
        }
    }

    /// The namespace written in the object, if any.
    pub fn namespace(&self) -> Option<&str> {
        let value = match self {
            Object::Pod { pod, .. } => pod,
            Object::ConfigMap(cm) => cm,
        };
        value.pointer("/metadata/namespace").and_then(Value::as_str)
    }
}

/// What the webhook decided.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Admitted (possibly unchanged) or denied.
    pub allowed: bool,
    /// The webhook's outcome label: injected, skipped, denied, adapted, unchanged, error.
    pub outcome: &'static str,
    /// The webhook that answered (pods.c4gh.dev or tesk.c4gh.dev).
    pub webhook: &'static str,
    /// The denial message as the API server reports it.
    pub message: Option<String>,
    /// The JSON patch, when the object is changed.
    pub patch: Option<json_patch::Patch>,
    /// The object before admission.
    pub before: Value,
    /// The object as it would be stored.
    pub after: Value,
}

/// Runs the webhook's admission on `object` in `namespace`.
///
/// # Errors
///
/// The object cannot be expressed as an admission request, or the patch does not apply.
pub fn check(
    object: &Object,
    namespace: &str,
    policies: Arc<dyn PolicySource>,
    defaults: OperatorDefaults,
) -> anyhow::Result<Verdict> {
    let state = WebhookState {
        policies: Arc::new(EffectivePolicies::new(policies, Arc::new(defaults))),
        metrics: Arc::new(Metrics::new()),
        recorder: None,
    };
    if let Object::Pod { job: Some(job), .. } = object {
        // The TESK webhook sees TESK's Jobs (the outputs filer, an older tesk-api's taskmaster)
        // before their pods exist; any other Job it leaves alone ("skipped").
        let verdict = check_tesk_job(&state, job, namespace)?;
        if verdict.outcome != "skipped" {
            return Ok(verdict);
        }
    }
    let (object_json, resource, kind, webhook) = match object {
        Object::Pod { pod, .. } => (pod.as_ref(), "pods", "Pod", WEBHOOK_NAME),
        Object::ConfigMap(cm) => (cm.as_ref(), "configmaps", "ConfigMap", TESK_WEBHOOK_NAME),
    };
    let mut object_json = object_json.clone();
    object_json["metadata"]["namespace"] = json!(namespace);
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "kubectl-c4gh-check",
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "namespace": namespace,
            "name": object_json.pointer("/metadata/name").cloned().unwrap_or(json!("")),
            "operation": "CREATE",
            "userInfo": {"username": "kubectl-c4gh"},
            "object": object_json,
            "dryRun": true,
        }
    });
    // `before` is the object as the webhook parsed it, which is what its patch applies to.
    let (response, outcome, before) = match object {
        Object::Pod { .. } => {
            let review: AdmissionReview<Pod> =
                serde_json::from_value(review).context("the object is not a valid Pod")?;
            let req: AdmissionRequest<Pod> = review.try_into()?;
            let (response, outcome) = webhook::admit(&state, &req);
            (response, outcome, serde_json::to_value(&req.object)?)
        }
        Object::ConfigMap(_) => {
            let review: AdmissionReview<kube::api::DynamicObject> =
                serde_json::from_value(review).context("the object is not a valid ConfigMap")?;
            let req: AdmissionRequest<kube::api::DynamicObject> = review.try_into()?;
            let (response, outcome) = tesk_webhook::admit(&state, &req);
            (response, outcome, serde_json::to_value(&req.object)?)
        }
    };
    verdict(response, outcome, webhook, before)
}

/// [`tesk_webhook::admit`] on a Job, as the TESK Job webhook ([`TESK_FILER_WEBHOOK_NAME`]) gets it.
fn check_tesk_job(state: &WebhookState, job: &Value, namespace: &str) -> anyhow::Result<Verdict> {
    let mut job = job.clone();
    job["metadata"]["namespace"] = json!(namespace);
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "kubectl-c4gh-check",
            "kind": {"group": "batch", "version": "v1", "kind": "Job"},
            "resource": {"group": "batch", "version": "v1", "resource": "jobs"},
            "namespace": namespace,
            "name": job.pointer("/metadata/name").cloned().unwrap_or(json!("")),
            "operation": "CREATE",
            "userInfo": {"username": "kubectl-c4gh"},
            "object": job,
            "dryRun": true,
        }
    });
    let review: AdmissionReview<kube::api::DynamicObject> =
        serde_json::from_value(review).context("the object is not a valid Job")?;
    let req: AdmissionRequest<kube::api::DynamicObject> = review.try_into()?;
    let (response, outcome) = tesk_webhook::admit(state, &req);
    verdict(
        response,
        outcome,
        TESK_FILER_WEBHOOK_NAME,
        serde_json::to_value(&req.object)?,
    )
}

fn verdict(
    response: AdmissionResponse,
    outcome: &'static str,
    webhook: &'static str,
    before: Value,
) -> anyhow::Result<Verdict> {
    if !response.allowed {
        // The API server's wording for a webhook denial (k8s.io/apiserver, webhookerrors).
        let message = format!(
            "admission webhook \"{webhook}\" denied the request: {}",
            response.result.message
        );
        return Ok(Verdict {
            allowed: false,
            outcome,
            webhook,
            message: Some(message),
            patch: None,
            after: before.clone(),
            before,
        });
    }
    let patch: Option<json_patch::Patch> = match &response.patch {
        Some(bytes) if !bytes.is_empty() => Some(
            serde_json::from_slice(bytes).context("the webhook answered with a malformed patch")?,
        ),
        _ => None,
    };
    let mut after = before.clone();
    if let Some(patch) = &patch {
        json_patch::patch(&mut after, patch).context("the webhook's patch does not apply")?;
    }
    let patch = patch.filter(|p| !p.0.is_empty());
    let refusal = after
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(c4gh_contract::annotations::REFUSAL))
        .and_then(Value::as_str)
        .filter(|_| outcome == "denied");
    if let Some(reason) = refusal {
        // A refused TESK task: the API server stores it, and its executors print the reason.
        let message = format!(
            "webhook \"{webhook}\" refused the TES task: it is admitted so that TESK runs, in place of each executor, one that prints this reason (TESK passes no admission message on to the TES user):\n{reason}"
        );
        return Ok(Verdict {
            allowed: false,
            outcome,
            webhook,
            message: Some(message),
            patch,
            before,
            after,
        });
    }
    Ok(Verdict {
        allowed: true,
        outcome,
        webhook,
        message: None,
        patch,
        before,
        after,
    })
}

/// The text `check` prints for `verdict` about `object`.
pub fn render(object: &Object, namespace: &str, verdict: &Verdict, output: CheckOutput) -> String {
    if let Some(message) = &verdict.message {
        return format!("✘ denied\n{message}\n");
    }
    match output {
        CheckOutput::Patch => {
            let patch = verdict.patch.clone().unwrap_or_default();
            return serde_json::to_string_pretty(&patch).unwrap_or_default() + "\n";
        }
        CheckOutput::Yaml => return serde_yaml_ng::to_string(&verdict.after).unwrap_or_default(),
        CheckOutput::Summary => {}
    }
    match object {
        Object::Pod { .. } if verdict.webhook == TESK_FILER_WEBHOOK_NAME => {
            tesk_job_summary(namespace, verdict)
        }
        Object::Pod { from, .. } => pod_summary(namespace, verdict, from.as_deref()),
        Object::ConfigMap(_) => tesk_summary(namespace, verdict),
    }
}

fn name_of(value: &Value) -> String {
    value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            value
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
                .map(|g| format!("{g}*"))
        })
        .unwrap_or_else(|| "(unnamed)".to_owned())
}

fn pod_summary(namespace: &str, verdict: &Verdict, from: Option<&str>) -> String {
    let name = name_of(&verdict.before);
    let what = match from {
        Some(job) => format!("pod {name} of {job} in namespace {namespace}"),
        None => format!("pod {name} in namespace {namespace}"),
    };
    if verdict.outcome == "skipped" {
        return format!(
            "✔ admitted unchanged: {what} does not opt in (label {}: {}), so the webhook leaves it alone\n",
            annotations::INJECT_LABEL,
            annotations::INJECT_ENABLED
        );
    }
    let pod: Pod = match serde_json::from_value(verdict.after.clone()) {
        Ok(p) => p,
        Err(e) => return format!("✔ admitted: {what} (cannot summarise the result: {e})\n"),
    };
    let ann = pod.metadata.annotations.clone().unwrap_or_default();
    let policy = ann
        .get(annotations::APPLIED_POLICY)
        .map_or("?", String::as_str);
    let mut out = format!(
        "✔ admitted: {what} would get the crypt4gh sidecar (webhook {}, Crypt4ghPolicy {policy})\n",
        verdict.webhook
    );
    let Some(spec) = pod.spec.as_ref() else {
        return out;
    };
    for c in spec.init_containers.iter().flatten() {
        if c.name == pod::SIDECAR_CONTAINER || c.name == pod::GATE_CONTAINER {
            out.push_str(&format!(
                "  + init container {} ({}{})\n",
                c.name,
                c.image.as_deref().unwrap_or("?"),
                if c.restart_policy.as_deref() == Some("Always") {
                    ", native sidecar"
                } else {
                    ""
                }
            ));
        }
    }
    let sidecar = spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == pod::SIDECAR_CONTAINER);
    let inputs = sidecar
        .and_then(|c| c.env.as_ref())
        .and_then(|env| env.iter().find(|e| e.name == c4gh_contract::env::INPUTS))
        .and_then(|e| e.value.as_deref())
        .and_then(|v| serde_json::from_str::<Vec<Value>>(v).ok())
        .unwrap_or_default();
    out.push_str(&format!("  inputs ({}):\n", inputs.len()));
    for (n, input) in inputs.iter().enumerate() {
        out.push_str(&format!(
            "    {}. {} -> {} ({})\n",
            n + 1,
            input["url"].as_str().unwrap_or("?"),
            input["path"].as_str().unwrap_or("?"),
            input["mode"].as_str().unwrap_or("encrypted")
        ));
    }
    let keyed: Vec<&str> = spec
        .containers
        .iter()
        .filter(|c| {
            c.env
                .iter()
                .flatten()
                .any(|e| e.name == c4gh_contract::env::SECRET_KEY)
        })
        .map(|c| c.name.as_str())
        .collect();
    out.push_str(&format!(
        "  key: {} read-only in {}\n",
        pod::SECRET_KEY_PATH,
        if keyed.is_empty() {
            "no container".to_owned()
        } else {
            keyed.join(", ")
        }
    ));
    let before_volumes: Vec<String> = verdict
        .before
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(|v| v["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let added: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .filter(|n| !before_volumes.iter().any(|b| b == n))
        .collect();
    out.push_str(&format!("  + volumes: {}\n", added.join(", ")));
    out.push_str(&format!(
        "  patch: {} operations (-o patch prints them, -o yaml the stored pod)\n",
        verdict.patch.as_ref().map_or(0, |p| p.0.len())
    ));
    out
}

fn tesk_summary(namespace: &str, verdict: &Verdict) -> String {
    let name = name_of(&verdict.before);
    let what = format!("ConfigMap {namespace}/{name}");
    match verdict.outcome {
        "skipped" => return format!("✔ admitted unchanged: {what} (not a CREATE)\n"),
        "unchanged" => {
            return format!(
                "✔ admitted unchanged: {what} is not a TESK task with drs:// inputs, so the webhook leaves it alone\n"
            );
        }
        _ => {}
    }
    let mut out = format!(
        "✔ admitted: TES task {name} in namespace {namespace} would be adapted (webhook {})\n",
        verdict.webhook
    );
    let task = task_json(&verdict.after);
    let executors = task
        .as_ref()
        .and_then(|t| t.get("executors"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (n, executor) in executors.iter().enumerate() {
        let inputs = executor
            .pointer("/spec/template/metadata/annotations")
            .and_then(|a| a.get(annotations::INPUTS))
            .and_then(Value::as_str)
            .and_then(|v| serde_json::from_str::<Vec<Value>>(v).ok())
            .unwrap_or_default();
        out.push_str(&format!(
            "  executor {n}: the sidecar fetches {} input(s)\n",
            inputs.len()
        ));
        for input in &inputs {
            out.push_str(&format!(
                "    {} -> {} ({})\n",
                input["url"].as_str().unwrap_or("?"),
                input["path"].as_str().unwrap_or("?"),
                input["mode"].as_str().unwrap_or("encrypted")
            ));
        }
    }
    let left = task
        .as_ref()
        .and_then(|t| t.get("inputs"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    out.push_str(&format!(
        "  inputs left for TESK's filer: {left}; the executor pods are then injected as opted-in pods\n"
    ));
    out
}

/// What TESK's Job webhook does to one of TESK's Jobs.
fn tesk_job_summary(namespace: &str, verdict: &Verdict) -> String {
    let name = name_of(&verdict.before);
    let filer = tesk_outputs::is_outputs_filer(&verdict.before);
    let what = if filer {
        format!("TESK's outputs filer Job {namespace}/{name}")
    } else {
        format!("the taskmaster Job {namespace}/{name} of a tesk-api before 2023-01-24")
    };
    if verdict.outcome != "adapted" {
        let why = if filer {
            format!(
                "namespace {namespace} has no valid Crypt4ghPolicy {}, so no seal step",
                annotations::DEFAULT_POLICY_NAME
            )
        } else {
            "the task in its JSON_INPUT variable has no drs:// inputs and no outputs to encrypt"
                .to_owned()
        };
        return format!(
            "✔ admitted unchanged: {what} (webhook {}): {why}\n",
            verdict.webhook
        );
    }
    let mut out = format!(
        "✔ admitted: {what} would be changed (webhook {})\n",
        verdict.webhook
    );
    let seal = verdict
        .after
        .pointer("/spec/template/spec/initContainers")
        .and_then(Value::as_array)
        .and_then(|inits| inits.iter().find(|c| c["name"] == pod::SEAL_CONTAINER));
    if let Some(seal) = seal {
        out.push_str(&format!(
            "  + init container {} ({}): encrypts the outputs the task ConfigMap lists in {} before the filer uploads them (none listed: it exits at once)\n",
            pod::SEAL_CONTAINER,
            seal["image"].as_str().unwrap_or("?"),
            tesk_outputs::OUTPUTS_KEY
        ));
    } else {
        out.push_str("  the task in its JSON_INPUT variable is adapted: its drs:// inputs move onto the executor pods\n");
    }
    out.push_str(&format!(
        "  patch: {} operations (-o patch prints them, -o yaml the stored Job)\n",
        verdict.patch.as_ref().map_or(0, |p| p.0.len())
    ));
    out
}

/// The task JSON of a (adapted) TESK ConfigMap.
fn task_json(config_map: &Value) -> Option<Value> {
    if let Some(b64) = config_map
        .pointer("/binaryData")
        .and_then(|b| b.get(tesk_webhook::GZIP_KEY))
        .and_then(Value::as_str)
    {
        let gz = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let mut json = Vec::new();
        flate2::read::MultiGzDecoder::new(gz.as_slice())
            .take(tesk_webhook::MAX_TASK_JSON_BYTES)
            .read_to_end(&mut json)
            .ok()?;
        return serde_json::from_slice(&json).ok();
    }
    config_map
        .pointer("/data")
        .and_then(|d| d.get(tesk_webhook::PLAIN_KEY))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
apiVersion: c4gh.dev/v1alpha1
kind: Crypt4ghPolicy
metadata: {name: default, namespace: tasks}
spec:
  allowedHosts: [drs.example.org]
"#;

    fn run(fixture: &str, namespace: &str) -> (Object, Verdict) {
        let value: Value = serde_json::from_str(fixture).unwrap();
        let object = Object::from_value(value).unwrap();
        let policies = Policies::from_yaml(POLICY, "tasks").unwrap();
        let verdict = check(
            &object,
            namespace,
            Arc::new(policies),
            OperatorDefaults::default(),
        )
        .unwrap();
        (object, verdict)
    }

    /// TESK's outputs filer as the real taskmaster created it (the captured fixture): the
    /// prediction is the TESK Job webhook's seal step, not the pod template's (which does not
    /// opt in).
    #[test]
    fn the_real_outputs_filer_is_predicted_with_its_seal_step() {
        let filer = include_str!("../../operator/tests/fixtures/tesk/files/outputs-filer.job.json");
        let (object, verdict) = run(filer, "tasks");
        assert!(verdict.allowed);
        assert_eq!(
            (verdict.webhook, verdict.outcome),
            (TESK_FILER_WEBHOOK_NAME, "adapted")
        );
        let text = render(&object, "tasks", &verdict, CheckOutput::Summary);
        assert!(
            text.starts_with(
                "✔ admitted: TESK's outputs filer Job tasks/task-2b3c4d5e-outputs-filer would be changed (webhook tesk-filer.c4gh.dev)\n  + init container c4gh-seal ("
            ),
            "{text}"
        );
        let (object, verdict) = run(filer, "elsewhere");
        assert_eq!(verdict.outcome, "unchanged");
        assert_eq!(
            render(&object, "elsewhere", &verdict, CheckOutput::Summary),
            "✔ admitted unchanged: TESK's outputs filer Job elsewhere/task-2b3c4d5e-outputs-filer (webhook tesk-filer.c4gh.dev): namespace elsewhere has no valid Crypt4ghPolicy default, so no seal step\n"
        );
        // The inputs filer is an ordinary Job to the operator: its pod template is checked.
        let inputs = include_str!("../../operator/tests/fixtures/tesk/files/inputs-filer.job.json");
        let (_, verdict) = run(inputs, "tasks");
        assert_eq!(
            (verdict.webhook, verdict.outcome),
            (WEBHOOK_NAME, "skipped")
        );
    }
}
