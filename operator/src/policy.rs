//! The `Crypt4ghPolicy` custom resource (group `c4gh.dev`, version `v1alpha1`, namespaced), its
//! validation, and the [`EffectivePolicy`] the injection uses (policy + operator-wide defaults).
//!
//! The Rust types are the source of truth: `manifests/base/crd.yaml` is generated from them by
//! [`crd_yaml`] and a test fails when the committed file is stale.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use c4gh_contract::Mode;

/// Specification of a `Crypt4ghPolicy`: what opted-in pods in this namespace may fetch and how the
/// sidecar is configured.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "c4gh.dev",
    version = "v1alpha1",
    kind = "Crypt4ghPolicy",
    plural = "crypt4ghpolicies",
    shortname = "c4ghpol",
    namespaced,
    status = "Crypt4ghPolicyStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct Crypt4ghPolicySpec {
    /// DRS hosts inputs may come from, as `host` or `host:port`. A URI whose host is not listed is
    /// denied. Must not be empty.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// PEM CA bundle for TLS to the DRS servers, from a ConfigMap in this namespace. Optional: the
    /// sidecar's built-in roots are used otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<ConfigMapKey>,
    /// Compact-identifier prefix → URL pattern containing `{id}`, e.g.
    /// `ega: https://drs.example.org/ga4gh/drs/v1/objects/{id}`. No live resolver is used.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prefix_map: BTreeMap<String, String>,
    /// The protocol each allowed host speaks, `host[:port]` (an `allowedHosts` entry) → `auto`
    /// (the default for hosts not listed: detected from the server's service-info),
    /// `crypt4gh-drs` (this project's protocol), `sda-v2` (NeIC SDA v2: name its files
    /// `drs://host/DATASET_ID/FILE_PATH`) or `key-header:URL` (a header URL pattern containing
    /// `{id}`; the key is sent in `Htsget-Context-Public-Key`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub server_flavours: BTreeMap<String, String>,
    /// How the sidecar authenticates to DRS. Optional (anonymous).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// Modes pods may request. Default: `[encrypted]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_modes: Option<Vec<Mode>>,
    /// Mode of inputs that do not name one. Default: `encrypted`. Must be in `allowedModes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<Mode>,
    /// Largest plaintext (bytes) one `plaintext` input may have. Required when `plaintext` is
    /// allowed: plaintext lives in a memory-backed volume sized from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_plaintext_bytes: Option<u64>,
    /// What to do with an input whose path is not under any volume a task container mounts:
    /// `EmptyDir` (default: mount a new emptyDir at the input's directory) or `Deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmounted_paths: Option<UnmountedPaths>,
    /// Containers that never get the key (service-mesh proxies). Default:
    /// `[istio-proxy, linkerd-proxy]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_containers: Option<Vec<String>>,
    /// Sidecar image and resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<SidecarSpec>,
    /// Seconds the gate waits for all inputs before failing the pod. Default 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_timeout_seconds: Option<u32>,
    /// Outputs that leave pods encrypted (annotation `c4gh.dev/outputs`): default and required
    /// recipients, and the time the sidecar gets to encrypt them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<OutputsSpec>,
    /// Development only: allow a port in `drs://host:port/id` URIs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_port: bool,
    /// Development only: talk plain HTTP to DRS servers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_http: bool,
}

/// Recipients of encrypted outputs. Keys are Crypt4GH public keys: the PEM file's text or the
/// base64 line inside it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputsSpec {
    /// Recipients of an output that names none (e.g. the submitting group's key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_recipients: Vec<String>,
    /// Recipients added to every output (e.g. the archive's key, so results always come back to
    /// the archive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_recipients: Vec<String>,
    /// The pod's `terminationGracePeriodSeconds` when it declares outputs (at least this; the
    /// sidecar encrypts within it after the task's containers exit). Default 1800.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<u32>,
}

/// A key of a ConfigMap in the policy's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKey {
    /// ConfigMap name.
    pub name: String,
    /// Key holding the PEM bundle. Default `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A key of a Secret in the policy's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key in the Secret. Default: `token` for bearer tokens, `passports` for passports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// DRS authentication. At most one of `bearerTokenSecret` and `serviceAccountToken`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    /// A Secret holding a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret: Option<SecretKeyRef>,
    /// A Secret holding a JSON list of GA4GH passport JWTs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passports_secret: Option<SecretKeyRef>,
    /// A projected, audience-bound ServiceAccount token (preferred).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_token: Option<ServiceAccountToken>,
}

/// A projected ServiceAccount token for DRS.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountToken {
    /// Audience the DRS server expects. Required.
    pub audience: String,
    /// Token lifetime in seconds (≥ 600). Default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_seconds: Option<i64>,
}

/// Policy for inputs outside the task's volume mounts.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum UnmountedPaths {
    /// Mount a new emptyDir at the input's directory in the sidecar and the task containers.
    EmptyDir,
    /// Deny the pod.
    Deny,
}

/// Sidecar image and resources.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSpec {
    /// Image reference. Default: the operator's `--sidecar-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Image pull policy (`Always`, `IfNotPresent`, `Never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Resources of the sidecar and the gate. Default: requests 10m CPU / 32Mi, limit 128Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Parallel fetches. Default 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

/// Status written by the policy controller.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Crypt4ghPolicyStatus {
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (True when the policy is valid and used; False with reason `Invalid` otherwise).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// The CRD as YAML, exactly as committed in `manifests/base/crd.yaml`.
///
/// # Errors
///
/// Fails only if the generated CRD cannot be serialized.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    use kube::CustomResourceExt;
    let yaml = serde_yaml_ng::to_string(&Crypt4ghPolicy::crd())?;
    Ok(format!(
        "# Generated from operator/src/policy.rs by `UPDATE_CRD=1 cargo test -p c4gh-operator --test crd`.\n# Do not edit.\n{yaml}"
    ))
}
