//! The pod contract: everything `c4gh-operator` writes into a pod and `c4gh-sidecar` reads from it
//! (and back, through `status.json`). The two programs meet only here; neither defines any of it.
//!
//! # Opting in
//!
//! A pod opts in with the label [`annotations::INJECT_LABEL`]` = `[`annotations::INJECT_ENABLED`]
//! and lists its inputs in the annotation [`annotations::INPUTS`]: a JSON list of
//! [`InputEntry`] objects, `{"url": "drs://…", "path": "/abs/path", "mode": …}` with `mode` one of
//! [`Mode`]'s lowercase names (optional; the policy's `defaultMode`, else `encrypted`). The pod may
//! name its `Crypt4ghPolicy` with [`annotations::POLICY`]; the operator records what it did in
//! [`annotations::STATUS`] and [`annotations::APPLIED_POLICY`]. Other keys under
//! [`annotations::PREFIX`] are refused ([`annotations::KNOWN_POD_ANNOTATIONS`]).
//!
//! # The injected pod
//!
//! - Init container [`pod::SIDECAR_CONTAINER`] (native sidecar, `restartPolicy: Always`, args
//!   `run`, no startup probe) and init container [`pod::GATE_CONTAINER`] (args `gate`), in this
//!   order before the pod's own init containers. The kubelet starts the gate as soon as the
//!   sidecar runs and the task containers once the gate exited 0.
//! - Volume [`pod::KEY_VOLUME`] (memory-backed, [`pod::KEY_VOLUME_SIZE`]) mounted at
//!   [`pod::KEY_DIR`]: read-write in the sidecar, read-only elsewhere. It holds
//!   [`pod::SECRET_KEY_FILE`], [`pod::PUBLIC_KEY_FILE`] and [`status::STATUS_FILE`].
//! - Every task container gets [`env::SECRET_KEY`]` = `[`pod::SECRET_KEY_PATH`].
//! - Optional volumes, mounted in the sidecar only: [`pod::CA_VOLUME`] at [`pod::CA_DIR`]
//!   ([`pod::CA_FILE`]), [`pod::AUTH_VOLUME`] at [`pod::AUTH_DIR`] ([`pod::TOKEN_FILE`]),
//!   [`pod::PASSPORTS_VOLUME`] at [`pod::PASSPORTS_DIR`] ([`pod::PASSPORTS_FILE`]); and
//!   [`pod::INPUTS_VOLUME`] / [`pod::PLAINTEXT_VOLUME`] for inputs outside the task's mounts.
//!   Every volume the operator adds starts with [`pod::OWN_VOLUME_PREFIX`]; inputs may not lie
//!   under [`pod::RESERVED_DIR`].
//!
//! # Outputs
//!
//! A pod may name outputs that leave it encrypted in [`annotations::OUTPUTS`]: a JSON list of
//! [`OutputEntry`] objects `{"path": "/abs/file-or-dir", "recipients": [public keys]}`. The
//! operator validates the keys (adding the policy's required recipients), gives the sidecar the
//! list in [`env::OUTPUTS`] and mounts the volumes holding the outputs into it read-write; at
//! SIGTERM (after the task's containers exited) the sidecar replaces each output file by its
//! Crypt4GH encryption before it destroys the key. TESK's outputs filer gets the same work done
//! by the init container [`pod::SEAL_CONTAINER`] (`c4gh-sidecar seal`).
//!
//! # Exit notices
//!
//! A task container with an explicit `command` runs it behind the wrapper `c4gh-exec`
//! (copied by the gate into [`pod::EXEC_DIR`]), which writes an exit notice into
//! [`pod::EXIT_DIR`] when the command ends. The sidecar, told the task containers and their
//! restart policies in [`env::TASK_CONTAINERS`], destroys the key as soon as every one has ended
//! for good ([`exits`]), instead of waiting for the kubelet's SIGTERM.
//!
//! # The sidecar's environment
//!
//! [`mod@env`] names every variable: the validated input list ([`env::INPUTS`], the
//! [`InputEntry`] list with every `mode` filled in), the key directory, the allowed DRS hosts,
//! the credentials' files, the development switches, limits and the log format.
//!
//! # `status.json`
//!
//! The sidecar reports progress in [`status::STATUS_FILE`] on the key volume: a [`Status`]
//! document with a [`Phase`] and one [`InputStatus`] (with its [`InputState`]) per input, in list
//! order. The gate waits for `Ready` and fails the pod with [`Status::failure_reason`] on
//! `Failed` (`c4gh-sidecar probe`, no longer injected, checks that it has left `Starting`). Either way the gate's termination message
//! ends with a [`termination::Summary`] of the document, which `kubectl c4gh status` reads back
//! through the API.

pub mod annotations;
pub mod env;
pub mod exits;
pub mod inputs;
pub mod outputs;
pub mod pod;
pub mod status;
pub mod termination;

pub use inputs::{InputEntry, Mode};
pub use outputs::OutputEntry;
pub use status::{InputState, InputStatus, Phase, Status, StatusError};
