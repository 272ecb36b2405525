//! Container, volume, directory and file names of an injected pod.

/// Name of the native sidecar container (first init container); also the sidecar's binary.
pub const SIDECAR_CONTAINER: &str = "c4gh-sidecar";
/// Name of the gate container (second init container).
pub const GATE_CONTAINER: &str = "c4gh-gate";
/// Name of the init container the operator adds to TESK's outputs filer: `c4gh-sidecar seal`
/// encrypts the declared outputs on the task volume before the filer uploads them.
pub const SEAL_CONTAINER: &str = "c4gh-seal";
/// Suffix of the temporary file an output is encrypted into (`.NAME.c4gh-part`, beside it).
pub const SEAL_PART_SUFFIX: &str = ".c4gh-part";
/// Suffix of the name an output's plaintext has while it is being encrypted
/// (`.NAME.c4gh-plain`, beside it): the output's own name is absent until its encryption is
/// complete, so an interrupted encryption never leaves plaintext under the output's name.
pub const SEAL_PLAIN_SUFFIX: &str = ".c4gh-plain";
/// Directory reserved for the operator's own mounts (key, credentials, CA); inputs may not be
/// placed under it.
pub const RESERVED_DIR: &str = "/c4gh";
/// Prefix of every volume the operator adds; such volumes never count as task mounts.
pub const OWN_VOLUME_PREFIX: &str = "c4gh-";
/// Memory-backed volume holding the ephemeral key and `status.json`.
pub const KEY_VOLUME: &str = "c4gh-key";
/// Where the key volume is mounted (sidecar read-write, others read-only).
pub const KEY_DIR: &str = "/c4gh/key";
/// Size limit of the key volume.
pub const KEY_VOLUME_SIZE: &str = "1Mi";
/// File name of the ephemeral secret key in [`KEY_DIR`] (unencrypted Crypt4GH key file, 0440).
pub const SECRET_KEY_FILE: &str = "ephemeral.sec";
/// File name of the ephemeral public key in [`KEY_DIR`] (Crypt4GH PEM, 0444).
pub const PUBLIC_KEY_FILE: &str = "ephemeral.pub";
/// The key file given to task containers as [`crate::env::SECRET_KEY`].
pub const SECRET_KEY_PATH: &str = "/c4gh/key/ephemeral.sec";
/// Disk-backed emptyDir for encrypted inputs outside every task mount.
pub const INPUTS_VOLUME: &str = "c4gh-inputs";
/// Memory-backed emptyDir for plaintext and stream inputs.
pub const PLAINTEXT_VOLUME: &str = "c4gh-plaintext";
/// Volume with the DRS bearer token (Secret or projected ServiceAccount token).
pub const AUTH_VOLUME: &str = "c4gh-auth";
/// Where [`AUTH_VOLUME`] is mounted in the sidecar.
pub const AUTH_DIR: &str = "/c4gh/auth";
/// File name of the token in [`AUTH_DIR`].
pub const TOKEN_FILE: &str = "token";
/// Volume with the passports.
pub const PASSPORTS_VOLUME: &str = "c4gh-passports";
/// Where [`PASSPORTS_VOLUME`] is mounted in the sidecar.
pub const PASSPORTS_DIR: &str = "/c4gh/passports";
/// File name of the passports in [`PASSPORTS_DIR`].
pub const PASSPORTS_FILE: &str = "passports.json";
/// Volume with the DRS CA bundle.
pub const CA_VOLUME: &str = "c4gh-ca";
/// Where [`CA_VOLUME`] is mounted in the sidecar.
pub const CA_DIR: &str = "/c4gh/ca";
/// File name of the CA bundle in [`CA_DIR`].
pub const CA_FILE: &str = "ca.crt";
/// emptyDir of a TESK executor pod holding the command wrapper and the gate's verdict:
/// read-write in the gate, read-only in the task containers.
pub const EXEC_VOLUME: &str = "c4gh-exec";
/// Where [`EXEC_VOLUME`] is mounted.
pub const EXEC_DIR: &str = "/c4gh/exec";
/// The wrapper binary (crate `c4gh-exec`): in the sidecar image next to `c4gh-sidecar`, and
/// copied by the gate into [`EXEC_DIR`].
pub const EXEC_BINARY: &str = "c4gh-exec";
/// Where the sidecar image holds [`EXEC_BINARY`] (the gate copies it from there; refused TESK
/// executors run it there with `--refuse`).
pub const EXEC_IN_SIDECAR_IMAGE: &str = "/usr/local/bin/c4gh-exec";
/// The wrapper's path in task containers.
pub const EXEC_PATH: &str = "/c4gh/exec/c4gh-exec";
/// The gate's verdict in [`EXEC_DIR`]: `ready`, or `failed` and the reason on the next lines.
pub const VERDICT_FILE: &str = "verdict";
/// The verdict's path in task containers.
pub const VERDICT_PATH: &str = "/c4gh/exec/verdict";
/// The first line of a verdict that lets the task's command run.
pub const VERDICT_READY: &str = "ready";
/// The first line of a verdict that refuses it.
pub const VERDICT_FAILED: &str = "failed";
/// Memory-backed emptyDir for the task containers' exit notices ([`crate::exits`]):
/// read-write in the task containers that run behind `c4gh-exec --notice`, read-only in the
/// sidecar.
pub const EXIT_VOLUME: &str = "c4gh-exit";
/// Where [`EXIT_VOLUME`] is mounted.
pub const EXIT_DIR: &str = "/c4gh/exit";
/// Size limit of [`EXIT_VOLUME`] (a notice is a few bytes per container).
pub const EXIT_VOLUME_SIZE: &str = "64Ki";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_built_from_their_parts() {
        assert_eq!(SECRET_KEY_PATH, format!("{KEY_DIR}/{SECRET_KEY_FILE}"));
        assert_eq!(EXEC_PATH, format!("{EXEC_DIR}/{EXEC_BINARY}"));
        assert_eq!(VERDICT_PATH, format!("{EXEC_DIR}/{VERDICT_FILE}"));
        for dir in [KEY_DIR, AUTH_DIR, PASSPORTS_DIR, CA_DIR, EXEC_DIR, EXIT_DIR] {
            assert!(dir.starts_with(&format!("{RESERVED_DIR}/")), "{dir}");
        }
        for volume in [
            KEY_VOLUME,
            INPUTS_VOLUME,
            PLAINTEXT_VOLUME,
            AUTH_VOLUME,
            PASSPORTS_VOLUME,
            CA_VOLUME,
            EXEC_VOLUME,
            EXIT_VOLUME,
        ] {
            assert!(volume.starts_with(OWN_VOLUME_PREFIX), "{volume}");
        }
    }
}
