//! Why a pod is denied. Every variant's message names the object and says what to fix; the
//! webhook returns it verbatim to the user (`kubectl` prints it).

/// A reason to deny a pod.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    /// No `Crypt4ghPolicy` with the requested name exists in the pod's namespace.
    #[error(
        "no Crypt4ghPolicy {name:?} in namespace {namespace:?}; create one (see manifests/samples/) or set annotation c4gh.dev/policy to an existing policy"
    )]
    NoPolicy {
        /// The pod's namespace.
        namespace: String,
        /// The policy name looked up.
        name: String,
    },
    /// The policy exists but is invalid (see its `status.conditions`).
    #[error(
        "Crypt4ghPolicy {name:?} in namespace {namespace:?} is invalid: {problems}; fix the policy (kubectl describe crypt4ghpolicy {name} -n {namespace})"
    )]
    InvalidPolicy {
        /// The pod's namespace.
        namespace: String,
        /// The policy name.
        name: String,
        /// Everything wrong with it, `; `-separated.
        problems: String,
    },
    /// An annotation under `c4gh.dev/` that the operator does not know.
    #[error(
        "unknown annotation {key:?}; the operator understands {known}; remove it or fix its spelling"
    )]
    UnknownAnnotation {
        /// The key found.
        key: String,
        /// The keys understood.
        known: String,
    },
    /// The inputs annotation is not the expected JSON.
    #[error(
        "annotation {key} is not valid: {error}; expected a JSON list like [{{\"url\": \"drs://host/id\", \"path\": \"/data/in.bam\", \"mode\": \"encrypted\"}}]"
    )]
    MalformedInputs {
        /// The annotation key.
        key: &'static str,
        /// The JSON error.
        error: String,
    },
    /// More inputs than allowed.
    #[error("annotation c4gh.dev/inputs lists {count} inputs; at most {max} are allowed per pod")]
    TooManyInputs {
        /// Inputs listed.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A URI that does not parse.
    #[error("input {index}: {error}")]
    InvalidUrl {
        /// Position in the annotation list (from 0).
        index: usize,
        /// The parser's message.
        error: String,
    },
    /// A host the policy does not allow.
    #[error(
        "input {index} ({url}): host {host:?} is not allowed by Crypt4ghPolicy {policy:?} (allowed: {allowed}); use an allowed DRS server or ask the cluster operator to add the host to spec.allowedHosts"
    )]
    HostNotAllowed {
        /// Position in the annotation list.
        index: usize,
        /// The URI.
        url: String,
        /// `host` or `host:port`.
        host: String,
        /// The policy name.
        policy: String,
        /// The allowed hosts, comma-separated.
        allowed: String,
    },
    /// A compact identifier whose prefix the policy does not map.
    #[error(
        "input {index} ({url}): compact-identifier prefix {prefix:?} is not in spec.prefixMap of Crypt4ghPolicy {policy:?}; use a drs://host/id URI or ask the cluster operator to map the prefix"
    )]
    UnknownPrefix {
        /// Position in the annotation list.
        index: usize,
        /// The URI.
        url: String,
        /// The prefix.
        prefix: String,
        /// The policy name.
        policy: String,
    },
    /// A mode the policy does not allow.
    #[error(
        "input {index} ({url}): mode {mode:?} is not allowed by the policy (allowed: {allowed}); request an allowed mode"
    )]
    ModeNotAllowed {
        /// Position in the annotation list.
        index: usize,
        /// The URI.
        url: String,
        /// The requested (or default) mode.
        mode: &'static str,
        /// The allowed modes.
        allowed: String,
    },
    /// A path that is not absolute/normal, or is reserved.
    #[error("input {index}: path {path:?} is not usable: {why}")]
    InvalidPath {
        /// Position in the annotation list.
        index: usize,
        /// The path (shortened).
        path: String,
        /// What is wrong and what to do.
        why: &'static str,
    },
    /// Two inputs with the same path.
    #[error(
        "input {index}: path {path:?} is used by an earlier input; give every input its own path"
    )]
    DuplicatePath {
        /// Position of the second use.
        index: usize,
        /// The path.
        path: String,
    },
    /// The path is under no task volume mount and the policy does not allow a new emptyDir.
    #[error(
        "input {index}: path {path:?} is outside every volume the task containers mount, and Crypt4ghPolicy {policy:?} sets unmountedPaths: Deny; put the input under a mounted volume (e.g. the task's PVC)"
    )]
    PathOutsideMounts {
        /// Position in the annotation list.
        index: usize,
        /// The path.
        path: String,
        /// The policy name.
        policy: String,
    },
    /// A plaintext/stream input's directory would need a new memory-backed volume where one
    /// cannot go.
    #[error(
        "input {index}: path {path:?} needs a memory-backed volume at {dir:?} ({mode} inputs never touch disk), but {conflict}; put {mode} inputs in a directory of their own"
    )]
    MountConflict {
        /// Position in the annotation list.
        index: usize,
        /// The path.
        path: String,
        /// The directory the volume would be mounted at.
        dir: String,
        /// The mode.
        mode: &'static str,
        /// What is already there.
        conflict: String,
    },
    /// The pod has no containers that could use the inputs.
    #[error(
        "the pod has no task containers (all are excluded by spec.excludeContainers of the policy); nothing could read the inputs"
    )]
    NoTaskContainers,
    /// The pod shares process namespaces (`shareProcessNamespace` or `hostPID`), so task
    /// containers could see the sidecar's processes, which hold the key and the DRS credentials.
    #[error(
        "the pod sets spec.{field}: true, which lets task containers see the c4gh-sidecar's processes (ephemeral key, DRS credentials); remove spec.{field} from pods that read Crypt4GH inputs"
    )]
    SharedProcesses {
        /// `shareProcessNamespace` or `hostPID`.
        field: &'static str,
    },
    /// The pod has no `spec`.
    #[error("the pod has no spec")]
    NoSpec,
    /// The outputs annotation is not the expected JSON.
    #[error(
        "annotation c4gh.dev/outputs is not valid: {error}; expected a JSON list like [{{\"path\": \"/data/out\", \"recipients\": [\"<Crypt4GH public key>\"]}}]"
    )]
    MalformedOutputs {
        /// The JSON error.
        error: String,
    },
    /// An output path that is not a normalized absolute path.
    #[error("output {index}: path {path:?} is not valid: {why}")]
    InvalidOutputPath {
        /// Position in the annotation list.
        index: usize,
        /// The path (shortened).
        path: String,
        /// What is wrong and what to do.
        why: String,
    },
    /// An output without recipients, and the policy names no default.
    #[error(
        "output {index} ({path}) names no recipient and Crypt4ghPolicy {policy:?} has no spec.outputs.defaultRecipients; add \"recipients\": [\"<your Crypt4GH public key>\"] (the .pub file crypt4gh-keygen wrote)"
    )]
    NoOutputRecipient {
        /// Position in the annotation list.
        index: usize,
        /// The path.
        path: String,
        /// The policy name.
        policy: String,
    },
    /// A recipient that is not a Crypt4GH public key.
    #[error(
        "output {index} ({path}), recipient {recipient}: not a Crypt4GH public key ({error}); give the PEM text of the .pub file crypt4gh-keygen wrote, or its base64 line"
    )]
    BadOutputRecipient {
        /// Position in the annotation list.
        index: usize,
        /// The path.
        path: String,
        /// Position of the recipient.
        recipient: usize,
        /// The parser's message.
        error: String,
    },
    /// An output outside every volume the task containers mount: the sidecar could not see it,
    /// and nothing after the pod could either.
    #[error(
        "output {index}: path {path:?} is not on a volume the task containers mount, so the sidecar cannot encrypt it (and it would vanish with the container); mount a volume (emptyDir, PVC) at or above it"
    )]
    OutputOutsideMounts {
        /// Position in the annotation list.
        index: usize,
        /// The path.
        path: String,
    },
    /// A pod with outputs whose task may write them as a user the sidecar does not run as.
    #[error(
        "the pod declares outputs but {why}; the sidecar encrypts the outputs in place as the task's user, so set spec.securityContext.runAsUser to the (non-root) UID the task runs as, and no other runAsUser on task containers"
    )]
    OutputsNeedTaskUser {
        /// What is missing.
        why: String,
    },
    /// An output on a volume the task mounts read-only or on the operator's own volumes.
    #[error(
        "output {index}: path {path:?} lies under {mount:?}, which {why}; put outputs on a writable task volume"
    )]
    OutputOnUnusableMount {
        /// Position in the annotation list.
        index: usize,
        /// The path.
        path: String,
        /// The mount path.
        mount: String,
        /// Why it cannot be used.
        why: &'static str,
    },
}
