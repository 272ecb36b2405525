//! Every label and annotation key of the pod contract, each a documented constant.
//!
//! Keys under [`PREFIX`] that are not listed in [`KNOWN_POD_ANNOTATIONS`] are denied by the
//! webhook (a typo such as `c4gh.dev/input` would otherwise silently disable an input).

/// The prefix of every key this project owns.
pub const PREFIX: &str = "c4gh.dev/";

/// Label that opts a pod in: `c4gh.dev/inject: enabled`. The webhook's `objectSelector` matches
/// it, so pods without it never reach the operator. Any other value is treated as "not opted in".
pub const INJECT_LABEL: &str = "c4gh.dev/inject";

/// The value of [`INJECT_LABEL`] that opts a pod in.
pub const INJECT_ENABLED: &str = "enabled";

/// Annotation with the pod's encrypted inputs: a JSON list of
/// `{"url": "drs://…", "path": "/abs/path", "mode": "encrypted"|"plaintext"|"stream"}`
/// ([`crate::InputEntry`]). `mode` is optional; its default is the policy's `defaultMode` (else
/// `encrypted`). Absent or `[]`: the pod still gets the sidecar and the key (it may fetch nothing
/// itself).
pub const INPUTS: &str = "c4gh.dev/inputs";

/// Annotation with the outputs that leave the pod encrypted: a JSON list of
/// `{"path": "/abs/file-or-dir", "recipients": ["Crypt4GH public key", …]}`
/// ([`crate::OutputEntry`]). `recipients` is optional when the policy names default
/// recipients; the policy's required recipients are always added. Absent or `[]`: nothing is
/// encrypted on the way out.
pub const OUTPUTS: &str = "c4gh.dev/outputs";

/// Annotation naming the `Crypt4ghPolicy` (in the pod's namespace) that applies.
/// Default: [`DEFAULT_POLICY_NAME`].
pub const POLICY: &str = "c4gh.dev/policy";

/// The policy used when a pod has no [`POLICY`] annotation.
pub const DEFAULT_POLICY_NAME: &str = "default";

/// Annotation written by the operator once the pod is injected: value [`STATUS_INJECTED`].
/// The injection is idempotent with or without it; it tells humans and tools what happened.
pub const STATUS: &str = "c4gh.dev/status";

/// The value of [`STATUS`] after injection.
pub const STATUS_INJECTED: &str = "injected";

/// Annotation written by the operator: the name of the policy that was applied.
pub const APPLIED_POLICY: &str = "c4gh.dev/applied-policy";

/// Annotation on the pods a TESK-style adapter prepares: the TES task id the inputs came from.
/// Informational only.
pub const TES_TASK: &str = "c4gh.dev/tes-task";

/// Namespace label that opts a namespace's TESK tasks in: `c4gh.dev/tesk: enabled`. The TESK
/// webhook's `namespaceSelector` matches it, so TESK's ConfigMaps in other namespaces never reach
/// the operator.
pub const TESK_NAMESPACE_LABEL: &str = "c4gh.dev/tesk";

/// The value of [`STATUS`] on a TESK task ConfigMap whose `drs://` inputs were moved onto the
/// executor pods.
pub const STATUS_ADAPTED: &str = "adapted";

/// The value of [`STATUS`] on a TESK task ConfigMap the policy refused: admitted, with every
/// executor replaced by one that prints the reason (TESK's API would not pass a denial's text
/// on to the TES user).
pub const STATUS_REFUSED: &str = "refused";

/// Annotation on a refused TESK task ConfigMap: the reason, as the executors print it.
pub const REFUSAL: &str = "c4gh.dev/refusal";

/// Pod annotation keys under [`PREFIX`] that the operator accepts.
pub const KNOWN_POD_ANNOTATIONS: &[&str] =
    &[INPUTS, OUTPUTS, POLICY, STATUS, APPLIED_POLICY, TES_TASK];
