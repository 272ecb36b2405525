//! Names of the environment variables the operator sets and the sidecar (`run`, `gate`, `probe`)
//! and the task containers read.

/// Task containers (and `c4gh-sidecar fetch`): the ephemeral secret key file,
/// [`crate::pod::SECRET_KEY_PATH`] in an injected pod.
pub const SECRET_KEY: &str = "C4GH_SECRET_KEY";
/// The input list as JSON ([`crate::InputEntry`] objects).
pub const INPUTS: &str = "C4GH_INPUTS";
/// A file holding the input list (alternative to [`INPUTS`], e.g. a downward API file).
pub const INPUTS_FILE: &str = "C4GH_INPUTS_FILE";
/// The validated output list as JSON ([`crate::OutputEntry`] objects, recipients as base64).
pub const OUTPUTS: &str = "C4GH_OUTPUTS";
/// A file holding the output list (alternative to [`OUTPUTS`]); a missing file declares no
/// outputs (TESK tasks whose policy names no output recipients).
pub const OUTPUTS_FILE: &str = "C4GH_OUTPUTS_FILE";
/// Threads that encrypt one output (0: one per core, at most 4; the default).
pub const SEAL_THREADS: &str = "C4GH_SEAL_THREADS";
/// The key directory ([`crate::pod::KEY_DIR`]): key files and `status.json`.
pub const KEY_DIR: &str = "C4GH_KEY_DIR";
/// Comma-separated `host` / `host:port` entries the sidecar may contact.
pub const ALLOWED_HOSTS: &str = "C4GH_ALLOWED_HOSTS";
/// Development only: with [`ALLOWED_HOSTS`] empty, allow every host instead of none.
pub const ALLOW_ANY_HOST: &str = "C4GH_ALLOW_ANY_HOST";
/// PEM CA bundle for TLS to the DRS servers.
pub const CA_BUNDLE: &str = "C4GH_CA_BUNDLE";
/// File holding the DRS bearer token (re-read on every request).
pub const TOKEN_FILE: &str = "C4GH_TOKEN_FILE";
/// File holding GA4GH passports (JSON list of JWTs).
pub const PASSPORTS_FILE: &str = "C4GH_PASSPORTS_FILE";
/// JSON object: compact-identifier prefix → URL pattern containing `{id}`.
pub const PREFIX_MAP: &str = "C4GH_PREFIX_MAP";
/// Comma-separated `host[:port]=flavour` entries: the protocol each DRS server speaks (`auto`,
/// `crypt4gh-drs`, `sda-v2`, `key-header:URL`; see `drs::flavour::ServerFlavours`).
pub const SERVER_FLAVOURS: &str = "C4GH_SERVER_FLAVOURS";
/// Development: accept ports in `drs://` URIs (`true`).
pub const DRS_ALLOW_PORT: &str = "C4GH_DRS_ALLOW_PORT";
/// Development: talk plain HTTP to DRS servers (`true`).
pub const DRS_ALLOW_HTTP: &str = "C4GH_DRS_ALLOW_HTTP";
/// Largest plaintext (bytes) one `plaintext`/`stream` input may produce.
pub const MAX_PLAINTEXT_BYTES: &str = "C4GH_MAX_PLAINTEXT_BYTES";
/// Parallel fetches.
pub const CONCURRENCY: &str = "C4GH_CONCURRENCY";
/// Retry budget of one request, or of one body download without progress (`5m`, `90s`).
pub const RETRY_BUDGET: &str = "C4GH_RETRY_BUDGET";
/// Longest backoff between two retries (`10s`).
pub const RETRY_MAX_BACKOFF: &str = "C4GH_RETRY_MAX_BACKOFF";
/// Deadline for response headers and for a whole small response (`30s`).
pub const RESPONSE_TIMEOUT: &str = "C4GH_RESPONSE_TIMEOUT";
/// Longest wait for the next body bytes before a download resumes (`30s`).
pub const IDLE_TIMEOUT: &str = "C4GH_IDLE_TIMEOUT";
/// Log format of the sidecar and the gate (`text` or `json`).
pub const LOG_FORMAT: &str = "C4GH_LOG_FORMAT";
/// Comma-separated directories inputs may be written under (default: the container's mounts).
pub const INPUT_ROOTS: &str = "C4GH_INPUT_ROOTS";
/// Address of the sidecar's Prometheus metrics endpoint.
pub const METRICS_ADDR: &str = "C4GH_METRICS_ADDR";
/// The gate's timeout in seconds.
pub const GATE_TIMEOUT: &str = "C4GH_GATE_TIMEOUT";
/// Longest time in milliseconds between the gate's reads of `status.json` (it also reads it on
/// every inotify event in the key directory).
pub const GATE_POLL_MS: &str = "C4GH_GATE_POLL_MS";
/// Set on the gate of a TESK executor pod: the directory ([`crate::pod::EXEC_DIR`]) where it
/// puts the command wrapper and its verdict and then exits 0 whatever the verdict, so the
/// executor's own container runs and prints the reason (see crate `c4gh-exec`).
pub const GATE_EXEC_DIR: &str = "C4GH_GATE_EXEC_DIR";
/// Set on the gate of a pod whose task containers run behind `c4gh-exec` without a verdict
/// (every pod but a TESK executor's): the directory ([`crate::pod::EXEC_DIR`]) where it puts the
/// wrapper before it waits; it fails the pod on a failed input as without it.
pub const GATE_WRAPPER_DIR: &str = "C4GH_GATE_WRAPPER_DIR";
/// The sidecar: the directory of the task containers' exit notices
/// ([`crate::pod::EXIT_DIR`], [`crate::exits`]).
pub const EXIT_DIR: &str = "C4GH_EXIT_DIR";
/// The sidecar: the pod's task containers, their restart policies and whether each runs behind
/// `c4gh-exec --notice`, as JSON ([`crate::exits::TaskContainer`] objects).
pub const TASK_CONTAINERS: &str = "C4GH_TASK_CONTAINERS";
/// Where the gate writes its failure reason (default `/dev/termination-log`).
pub const TERMINATION_LOG: &str = "C4GH_TERMINATION_LOG";
